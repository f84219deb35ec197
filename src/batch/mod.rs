//! The batch side: the simulated Shenzhen (ledger imports and decision-support jobs to come).

pub mod simulator;
