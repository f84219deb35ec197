//! The batch side: the simulated Shenzhen and the daily-snapshot job (ledger imports to come).

pub mod decision;
pub mod ledger;
pub mod simulator;
pub mod snapshots;
