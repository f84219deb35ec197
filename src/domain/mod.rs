//! The domain: the org tree, the record kinds, the metric catalogue and the rules that judge a
//! figure against its target. Pure: no I/O, no clocks read here (callers pass `now`).

pub mod catalogue;
pub mod definition;
pub mod kinds;
pub mod measure;
pub mod metric;
pub mod org;
pub mod pace;
pub mod record;
pub mod revision;
pub mod task;
pub mod time;

pub use org::{Level, OrgNode, OrgTree, OrgTreeError};
