//! Shared test helpers: one app per test on port 0, each in its own ClickHouse database on the
//! one server `scripts/test` starts for the run.
#![allow(dead_code)]

use std::sync::Arc;

use vscc::app::Application;
use vscc::config::{LogFormat, Settings};
use vscc::http::AppState;
use vscc::store::Store;

pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub state: Arc<AppState>,
    pub settings: Settings,
    pub http: reqwest::Client,
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
    settings.clickhouse.database = format!("test_{}", uuid::Uuid::new_v4().simple());
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
    let app = Application::build(settings.clone(), false).await.expect("app builds");
    let port = app.port();
    let handle = app.server_handle();
    let state = app.state().clone();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        port,
        state,
        settings,
        http: reqwest::Client::new(),
        handle,
    }
}

impl TestApp {
    pub fn from_parts(port: u16, state: Arc<AppState>, settings: Settings, handle: actix_web::dev::ServerHandle) -> Self {
        TestApp { base: format!("http://127.0.0.1:{port}"), port, state, settings, http: reqwest::Client::new(), handle }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).send().await.expect("request sent")
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let res = self.get(path).await;
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("JSON body")
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
