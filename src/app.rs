//! Wires configuration, reference data, the store and the HTTP server into one running app.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
use crate::http::{self, AppState};
use crate::prom::Prom;
use crate::reference::{self, DistrictMap};
use crate::store::{ManagedClickHouse, Store};

pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    state: Arc<AppState>,
    managed: Option<ManagedClickHouse>,
}

/// Connects to the configured ClickHouse, or starts a managed one when no URL is set.
pub async fn connect_store(settings: &Settings) -> anyhow::Result<(Store, Option<ManagedClickHouse>)> {
    let ch = &settings.clickhouse;
    let (url, managed) = match ch.external_url() {
        Some(url) => (url.to_string(), None),
        None => {
            let managed = ManagedClickHouse::start(&ch.managed).await?;
            (managed.url(), Some(managed))
        }
    };
    let store = Store::new(&url, &ch.user, &ch.password, &ch.database)?;
    store
        .wait_until_up(Duration::from_secs(ch.managed.start_timeout_secs))
        .await
        .with_context(|| format!("ClickHouse at {url} does not answer"))?;
    Ok((store, managed))
}

impl Application {
    /// Loads everything and binds the listener; the server runs once awaited.
    /// `handle_signals`: true for the binary (SIGINT/SIGTERM stop it), false in tests.
    pub async fn build(settings: Settings, handle_signals: bool) -> anyhow::Result<Self> {
        let tree = Arc::new(
            reference::load_org_tree(&settings.reference.divisions_dir).context("loading the org tree")?,
        );
        let map = Arc::new(
            DistrictMap::load(
                &settings.reference.boundaries_dir,
                &tree,
                settings.reference.simplify_tolerance_deg,
            )
            .context("loading the district map")?,
        );
        let (store, managed) = connect_store(&settings).await?;
        let report = store.migrate().await?;
        tracing::info!(applied = ?report.applied, already = report.already_applied, "schema is current");

        let listener = TcpListener::bind(&settings.server.addr)
            .with_context(|| format!("cannot listen on {}", settings.server.addr))?;
        let port = listener.local_addr()?.port();
        let prom = Arc::new(Prom::new());
        prom.org_nodes.set(tree.len() as i64);
        let state = Arc::new(AppState { tree, map, store, prom });
        let server = http::run(listener, state.clone(), handle_signals)?;
        tracing::info!(addr = %settings.server.addr, port, "vscc is listening");
        Ok(Application { server, port, state, managed })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// A handle that stops the HTTP server gracefully.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (a signal or its handle), then stops the managed
    /// ClickHouse, if any.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let served = (&mut self.server).await;
        if let Some(mut managed) = self.managed.take() {
            managed.stop().await;
        }
        served.context("HTTP server failed")
    }
}
