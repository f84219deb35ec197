//! Live figures: the in-memory aggregates behind a lock, fed by committed records, and the
//! publisher that turns changes into per-tick change sets for the streams.

pub mod aggregate;
pub mod checkpoint;
pub mod hub;
pub mod rebuild;
pub mod tasks;

pub use aggregate::Aggregates;
pub use hub::{Hub, Position, TickChanges};

#[cfg(test)]
mod retraction_tests;
