//! Alerts for duty officers: rules as files, per-(rule, node) lifecycle, history in
//! ClickHouse, notifications on the duty stream.

pub mod delivery;
pub mod engine;
pub mod hotspots;
pub mod lifecycle;
pub mod notice;
pub mod observe;
pub mod rules;
pub mod silence;

pub use engine::{AlertEngine, AlertInstance, AlertSettings};
pub use notice::AlertNotice;
