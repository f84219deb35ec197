//! Shared test helpers: one app per test on port 0, each in its own ClickHouse database on the
//! one server `scripts/test` starts for the run.
#![allow(dead_code)]

pub mod ws;

use std::sync::Arc;

use vscc::app::Application;
use vscc::config::{LogFormat, Settings};
use vscc::AppState;
use vscc::Store;

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub state: Arc<AppState>,
    pub settings: Settings,
    pub http: reqwest::Client,
    pub checkpoint: tokio::sync::watch::Receiver<u64>,
    handle: actix_web::dev::ServerHandle,
}

/// The URL of the run's shared ClickHouse.
pub fn clickhouse_url() -> String {
    std::env::var("VSCC_TEST_CLICKHOUSE_URL").expect(
        "VSCC_TEST_CLICKHOUSE_URL is not set: run the tests with scripts/test, which starts one ClickHouse for the run",
    )
}

/// Settings for a test app: port 0, the shared ClickHouse, a fresh database.
pub fn test_settings() -> Settings {
    let mut settings = Settings::load(None).expect("default settings load");
    settings.server.addr = "127.0.0.1:0".into();
    settings.clickhouse.url = clickhouse_url();
    // A run against a cluster (the suite's own checks of the cluster schema, by hand).
    if let Ok(cluster) = std::env::var("VSCC_TEST_CLICKHOUSE_CLUSTER") {
        settings.clickhouse.cluster = cluster;
        settings.clickhouse.shards =
            std::env::var("VSCC_TEST_CLICKHOUSE_SHARDS").unwrap_or_default();
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    settings.clickhouse.database = format!("test_{id}");
    settings.ingest.spool_dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("spool-{id}"));
    settings.ingest.imports_dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("imports-{id}"));
    settings.brief.dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("briefs-{id}"));
    settings.auth.admin_token = format!("admin-{id}");
    settings.auth.secret = format!("secret-{id}-{id}");
    settings.auth.directory_refresh_ms = 500;
    if let Ok(dir) = std::env::var("VSCC_TEST_CLICKHOUSE_USERS_DIR") {
        settings.sql.users_dir = dir.into();
    }
    settings.ingest.flush_interval_ms = 100;
    settings.stream.tick_ms = 50;
    settings
}

pub fn init_test_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        vscc::telemetry::init(LogFormat::Human, "debug");
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

pub async fn spawn_app_with(settings: Settings) -> TestApp {
    init_test_logs();
    let app = Application::build(settings.clone(), false)
        .await
        .expect("app builds");
    TestApp::running(app, settings)
}

impl TestApp {
    /// Serves an app built by the test (e.g. with its own clock) until the test stops it.
    pub fn running(app: Application, settings: Settings) -> Self {
        let port = app.port();
        let handle = app.server_handle();
        let state = app.state().clone();
        let checkpoint = app.checkpoint();
        tokio::spawn(app.run_until_stopped());
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            port,
            state,
            settings,
            http: reqwest::Client::new(),
            checkpoint,
            handle,
        }
    }

    /// A user's SQL history (`GET /api/v1/query/history`).
    pub async fn query_history(&self, token: &str) -> serde_json::Value {
        self.http
            .get(format!("{}/api/v1/query/history", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON")
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn admin_token(&self) -> &str {
        &self.settings.auth.admin_token
    }

    /// Creates a user through the API (as the admin) and logs in: the session token.
    pub async fn user_token(&self, name: &str, role: &str, scope: &str) -> String {
        let password = format!("pw-{name}-0123");
        let res = self
            .http
            .post(format!("{}/api/v1/users", self.base))
            .bearer_auth(self.admin_token())
            .json(&serde_json::json!({"name": name, "role": role, "scope": scope, "password": password}))
            .send()
            .await
            .expect("request sent");
        assert_eq!(
            res.status(),
            201,
            "user {name} created: {}",
            res.text().await.unwrap_or_default()
        );
        self.login(name, &password).await
    }

    pub async fn login(&self, name: &str, password: &str) -> String {
        let res = self
            .http
            .post(format!("{}/api/v1/login", self.base))
            .json(&serde_json::json!({"name": name, "password": password}))
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), 200, "login as {name}");
        let body: serde_json::Value = res.json().await.expect("JSON");
        body["token"].as_str().expect("a token").to_string()
    }

    /// Runs SQL through the API: status and JSON (or the error body).
    pub async fn query(&self, token: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let res = self
            .http
            .post(format!("{}/api/v1/query", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }

    /// POSTs to `path` with no body, as the admin (runs a job, prints a brief …).
    pub async fn post_empty(&self, path: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("request sent")
    }

    /// POSTs a JSON array of events with the admin token.
    pub async fn post_events(&self, events: &serde_json::Value) -> reqwest::Response {
        self.post_events_as(events, self.admin_token()).await
    }

    pub async fn post_events_as(
        &self,
        events: &serde_json::Value,
        token: &str,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/api/v1/events", self.base))
            .bearer_auth(token)
            .json(events)
            .send()
            .await
            .expect("request sent")
    }

    /// Waits until every accepted record is in ClickHouse.
    pub async fn wait_landed(&self) {
        let committed = self
            .state
            .ingest
            .log
            .counters()
            .committed_seq
            .load(std::sync::atomic::Ordering::SeqCst);
        let mut rx = self.checkpoint.clone();
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            rx.wait_for(|c| *c >= committed),
        )
        .await
        .expect("records land in ClickHouse within 30 s")
        .expect("writer alive");
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = self.get(path).await;
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("JSON body")
    }

    /// Stops as the binary does on SIGTERM: streams closed first, then a graceful stop.
    pub async fn stop(self) {
        self.state.streams.close_all(std::time::Duration::ZERO);
        self.handle.stop(true).await;
    }
}

/// A reproducible mix of every record kind of the shipped definitions over the real tree,
/// dated within the last `days` days (so this year's training figures and the deadlines of
/// cases both matter).
pub fn sample_events(
    tree: &vscc::domain::OrgTree,
    n: usize,
    seed: u64,
    days: i64,
    prefix: &str,
) -> Vec<serde_json::Value> {
    let settings = Settings::load(None).expect("default settings load");
    let catalogue = vscc::load_catalogue(&settings.catalogue).expect("shipped definitions");
    vscc::Workload::new(tree, seed, days, prefix, n / 4 + 1)
        .with_kinds(tree, &catalogue.kinds)
        .events(n)
}

/// A port free at this moment, for a server a test starts itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The real binary as a process of its own (its own memory; it can be killed), serving on
/// `port` with the run's ClickHouse, database `database`, its log in `spool`, and `token` as
/// the admin token. Callers add their own settings and spawn it.
pub fn serve_command(
    port: u16,
    database: &str,
    spool: &std::path::Path,
    token: &str,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vscc"));
    command
        .arg("serve")
        .env("VSCC_ADDR", format!("127.0.0.1:{port}"))
        .env("VSCC__CLICKHOUSE__URL", clickhouse_url())
        .env(
            "VSCC__CLICKHOUSE__CLUSTER",
            std::env::var("VSCC_TEST_CLICKHOUSE_CLUSTER").unwrap_or_default(),
        )
        .env(
            "VSCC__CLICKHOUSE__SHARDS",
            std::env::var("VSCC_TEST_CLICKHOUSE_SHARDS").unwrap_or_default(),
        )
        .env("VSCC__CLICKHOUSE__DATABASE", database)
        .env("VSCC__INGEST__SPOOL_DIR", spool)
        .env("VSCC__AUTH__SECRET_FILE", spool.join("auth-secret"))
        .env("VSCC_ADMIN_TOKEN", token)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// Waits until a server answers /readyz with 200 (60 s at most).
pub async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "server not ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every figure as text (node, metric, num, den, status, overdue, extras): two states compare
/// equal as these do.
pub fn figures_text(
    v: &[(
        String,
        Vec<(vscc::domain::metric::MetricId, vscc::domain::metric::Figure)>,
    )],
) -> Vec<String> {
    v.iter()
        .map(|(c, f)| {
            let f: Vec<_> = f
                .iter()
                .map(|(m, x)| {
                    (
                        m.as_str(),
                        x.num,
                        x.den,
                        x.status.as_str(),
                        x.overdue,
                        x.extras.clone(),
                    )
                })
                .collect();
            format!("{c}:{f:?}")
        })
        .collect()
}

/// Asserts that every live figure equals the one the SQL generated from the same definitions
/// gives (num, den, value, status, overdue and the per-deadline counts).
pub async fn compared_with_sql(
    app: &TestApp,
    live: &[(
        String,
        Vec<(vscc::domain::metric::MetricId, vscc::domain::metric::Figure)>,
    )],
    now: time::OffsetDateTime,
) {
    let catalogue = app.state.hub.catalogue();
    let codes: Vec<String> = live.iter().map(|(c, _)| c.clone()).collect();
    let sql = app
        .store()
        .recompute(&catalogue, &codes, now)
        .await
        .unwrap();
    for (code, figures) in live {
        for (metric, live_figure) in figures {
            let reading = sql[&(code.clone(), *metric)].clone();
            let expected =
                vscc::domain::metric::judge(catalogue.get(*metric).unwrap(), reading, now, &[]);
            assert_eq!(
                (
                    live_figure.num,
                    live_figure.den,
                    live_figure.value,
                    live_figure.status,
                    live_figure.overdue,
                    &live_figure.extras
                ),
                (
                    expected.num,
                    expected.den,
                    expected.value,
                    expected.status,
                    expected.overdue,
                    &expected.extras
                ),
                "{code} {metric}"
            );
        }
    }
}

/// Runs a browser script of `tests/browser/` (Debian's headless Chromium through
/// playwright-core) against the real binary, the run's ClickHouse and a fresh database; fails
/// with its output unless it succeeds, else answers what it printed.
pub fn run_browser_script(script: &str) -> String {
    let settings = test_settings();
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("node")
        .arg(format!("{root}/tests/browser/{script}"))
        .env("VENDOR_DIR", format!("{root}/var/web/node_modules"))
        .env("VSCC_BIN", env!("CARGO_BIN_EXE_vscc"))
        .env("CLICKHOUSE_URL", clickhouse_url())
        .env("DATABASE", &settings.clickhouse.database)
        .env("SPOOL_DIR", &settings.ingest.spool_dir)
        .env("PORT", free_port().to_string())
        .env("SCREENSHOTS", format!("{root}/target/screenshots"))
        .env(
            "SQL_USERS_DIR",
            std::env::var("VSCC_TEST_CLICKHOUSE_USERS_DIR").unwrap_or_default(),
        )
        .current_dir(root)
        .output()
        .expect("node runs (scripts/setup installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// The staff on duty at `org` (the training coverage's denominator: the latest headcounts);
/// `None` while it has no data.
pub async fn staff_on_duty(app: &TestApp, org: &str) -> Option<i64> {
    let f = app
        .get_json(&format!(
            "/api/v1/metrics?scope={org}&metrics=training_coverage"
        ))
        .await;
    let figure = &f["nodes"][org]["training_coverage"];
    (figure["status"] != "no_data")
        .then(|| figure["den"].as_i64())
        .flatten()
}
