//! Live figures: the in-memory aggregates behind a lock, fed by committed records, and the
//! publisher that turns changes into per-tick change sets for the streams.

pub mod aggregate;
pub mod hub;

pub use aggregate::{Aggregates, AppealSla};
pub use hub::{Hub, TickChanges};
