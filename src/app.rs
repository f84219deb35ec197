//! Wires configuration, reference data, the store, ingest, live figures and the HTTP server
//! into one running app.

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::alert::AlertEngine;
use crate::auth::{Authenticator, LoginThrottle, RateLimits, UserDirectory};
use crate::config::Settings;
use crate::dashboards::Dashboards;
use crate::http::{self, AppState};
use crate::ingest;
use crate::live::hub::{Clock, HubSettings, SystemClock};
use crate::live::Hub;
use crate::prom::Prom;
use crate::reference::{self, DistrictMap};
use crate::store::managed::Supervised;
use crate::store::{ManagedClickHouse, Store};
use crate::stream::Presence;

pub struct Application {
    server: actix_web::dev::Server,
    port: u16,
    state: Arc<AppState>,
    managed: Option<Supervised>,
    checkpoint: watch::Receiver<u64>,
    /// Where checkpoints of the live state go (none: disabled); one is written at a clean stop.
    checkpoints: Option<std::path::PathBuf>,
    /// Background work that queries the store, stopped before the managed ClickHouse is.
    tasks: Vec<tokio::task::AbortHandle>,
}

/// Connects to the configured ClickHouse, or starts a managed one when no URL is set.
pub async fn connect_store(
    settings: &Settings,
) -> anyhow::Result<(Store, Option<ManagedClickHouse>)> {
    let ch = &settings.clickhouse;
    let (url, managed) = match ch.external_url() {
        Some(url) => (url.to_string(), None),
        None => {
            let managed = ManagedClickHouse::start(&ch.managed).await?;
            (managed.url(), Some(managed))
        }
    };
    let store = ch.store(&url)?;
    store
        .wait_until_up(Duration::from_secs(ch.managed.start_timeout_secs))
        .await
        .with_context(|| format!("ClickHouse at {url} does not answer"))?;
    Ok((store, managed))
}

/// The analysts' SQL gateway. Its ClickHouse users go into the configured users folder, else
/// the managed server's `users.d`; with neither, an operator installs them (README).
pub fn sql_gateway(
    settings: &Settings,
    store: &Store,
    tree: &Arc<crate::domain::OrgTree>,
    managed_users_dir: Option<std::path::PathBuf>,
    secret: &[u8],
) -> crate::sql::SqlGateway {
    let users_dir = Some(settings.sql.users_dir.clone())
        .filter(|d| !d.as_os_str().is_empty())
        .or(managed_users_dir);
    let password =
        crate::auth::tokens::derive_secret(secret, &format!("clickhouse-sql:{}", store.database()));
    crate::sql::SqlGateway::new(
        store.clone(),
        tree.clone(),
        settings.sql.clone(),
        users_dir,
        password,
    )
}

/// For admin commands (`vscc user`, `vscc etl`): the managed server a running `vscc serve`
/// owns, when there is one; else as [`connect_store`].
pub async fn connect_store_shared(
    settings: &Settings,
) -> anyhow::Result<(Store, Option<ManagedClickHouse>)> {
    let ch = &settings.clickhouse;
    if ch.external_url().is_none() {
        if let Some(url) = crate::store::managed::running_url(&ch.managed.dir) {
            let store = ch.store(&url)?;
            if store.ping().await.is_ok() {
                return Ok((store, None));
            }
        }
    }
    connect_store(settings).await
}

impl Application {
    /// Loads everything and binds the listener; the server runs once awaited.
    /// `handle_signals`: true for the binary (SIGINT/SIGTERM stop it), false in tests.
    pub async fn build(settings: Settings, handle_signals: bool) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, handle_signals, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        handle_signals: bool,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let tree = Arc::new(
            reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)
                .context("loading the org tree")?,
        );
        // The files on disk, or the last set in service when they are refused (said loudly:
        // log, /readyz, /metrics) — a refused file must not keep a restart from coming back.
        let (catalogue, definitions_refused) =
            crate::dashboards::startup_catalogue(&settings.catalogue, &settings.ingest.spool_dir)
                .context("loading the record kind and metric definitions")?;
        catalogue
            .check_levels(&tree)
            .context("checking the metric definitions against the org tree")?;
        let catalogue = Arc::new(catalogue);
        tracing::info!(
            kinds = catalogue.kinds.all().count(),
            metrics = catalogue.metrics.len(),
            dir = %settings.catalogue.metrics_dir.display(),
            "catalogue loaded"
        );
        let map = Arc::new(
            DistrictMap::load(
                &settings.reference.boundaries_dir,
                &tree,
                settings.reference.simplify_tolerance_deg,
            )
            .context("loading the district map")?,
        );
        let admin_token = Some(settings.auth.admin_token.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(crate::auth::tokens::random_token);
        let secret = crate::auth::load_or_create_secret(&settings.auth)?;

        let (store, managed) = connect_store(&settings).await?;
        let report = store.migrate().await?;
        tracing::info!(applied = ?report.applied, already = report.already_applied, "schema is current");
        store
            .refresh_org_nodes(&tree)
            .await
            .context("refreshing org_nodes")?;
        let directory = UserDirectory::load(store.clone())
            .await
            .context("loading users")?;
        let mut tasks = Vec::new();
        tasks.push(
            tokio::spawn(directory.clone().keep_fresh(Duration::from_millis(
                settings.auth.directory_refresh_ms.max(100),
            )))
            .abort_handle(),
        );
        let auth = Authenticator::new(
            &settings.auth,
            tree.clone(),
            admin_token,
            &secret,
            directory,
        )?;
        let sql = Arc::new(sql_gateway(
            &settings,
            &store,
            &tree,
            managed.as_ref().map(|m| m.users_dir()),
            &secret,
        ));

        let hub = Arc::new(Hub::new(
            tree.clone(),
            catalogue.clone(),
            HubSettings {
                history_ticks: settings.stream.history_ticks,
                history_bytes: settings.stream.history_bytes,
            },
            clock,
        ));
        let live_hub = hub.clone();
        let instance = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let checkpoints = settings
            .checkpoint
            .enabled
            .then(|| settings.checkpoint.dir(&settings.ingest.spool_dir));
        let resume = match &checkpoints {
            Some(dir) => crate::batch::checkpoints::load(&hub, dir).await,
            None => None,
        };
        let ingest = ingest::start(
            &settings.ingest,
            &settings.broker,
            &instance,
            &store,
            Arc::new(move |rows: &[crate::domain::record::EventRow]| live_hub.apply(rows)),
            resume,
        )
        .await?;
        hub.note_imports(&ingest.imports_applied);
        hub.publish_initial();
        hub.tasks().take_in(
            &tree,
            &store
                .task_rows()
                .await
                .context("loading the tasks' records")?,
        );
        tasks.extend(ingest.tasks.iter().cloned());
        hub.set_samples(
            crate::batch::snapshots::recent_samples(&store, &tree, &catalogue)
                .await
                .context("loading recent snapshots")?,
        );
        tasks.push(
            tokio::spawn(
                hub.clone()
                    .run_ticker(Duration::from_millis(settings.stream.tick_ms.max(10))),
            )
            .abort_handle(),
        );

        let dashboards = Dashboards::load(&settings.web.dashboards_dir, tree.clone(), {
            let hub = hub.clone();
            Arc::new(move || hub.catalogue())
        });
        let alerts = Arc::new(AlertEngine::new(
            hub.clone(),
            store.clone(),
            settings.alerts.clone(),
        ));
        let restored = alerts.restore().await.context("restoring alerts")?;
        if restored > 0 {
            tracing::info!(restored, "alerts restored from their last recorded state");
        }
        alerts
            .load_silences()
            .await
            .context("loading alert silences")?;
        // Undelivered notifications are re-queued by whichever instance leads the alerts.
        tasks.push(tokio::spawn(alerts.clone().run(ingest.leader.clone())).abort_handle());
        let (listener, port, local_url) = bind(&settings.server)?;
        let prom = Arc::new(Prom::new());
        prom.org_nodes.set(tree.len() as i64);
        prom.start_checkpoint_seq
            .set(ingest.started.checkpoint_seq.unwrap_or(0) as i64);
        prom.start_replayed_records
            .set(ingest.started.replayed as i64);
        let imports_applied = Arc::new(tokio::sync::Notify::new());
        {
            let hub = hub.clone();
            tasks.push(
                tokio::spawn(crate::batch::ledger::follow::follow(
                    store.clone(),
                    ingest.imports_applied.iter().copied().collect(),
                    move |import, rows| hub.apply_import(import, rows),
                    imports_applied.clone(),
                ))
                .abort_handle(),
            );
        }
        let managed = managed.map(ManagedClickHouse::supervise);
        let checkpoint = ingest.checkpoint.clone();
        let streams = Arc::new(crate::stream::Streams::new(&settings.stream));
        tasks.push(tokio::spawn(streams.clone().run_housekeeping()).abort_handle());
        let store_for_audit = store.clone();
        let state = Arc::new(AppState {
            streams,
            managed_clickhouse: managed.as_ref().map(|m| m.status().clone()),
            tree,
            map,
            store,
            prom,
            hub,
            ingest: Arc::new(ingest),
            auth,
            presence: Arc::new(Presence::default()),
            ingest_limits: settings.ingest.clone(),
            stream_settings: settings.stream.clone(),
            dashboards: dashboards.clone(),
            web: settings.web.clone(),
            alerts,
            sql,
            limits: Arc::new(RateLimits::new(&settings.limits)),
            trusted_proxies: settings.server.trusted_proxies.clone(),
            metrics_token: settings.auth.metrics_token.clone(),
            ingest_budget: Arc::new(tokio::sync::Semaphore::new(
                settings
                    .ingest
                    .max_body_bytes_in_flight
                    .max(settings.ingest.max_body_bytes)
                    .div_ceil(1024)
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            )),
            imports_applied,
            definitions: {
                let status = crate::dashboards::DefinitionsStatus::default();
                status.set_refused(definitions_refused);
                Arc::new(status)
            },
            login_throttle: Arc::new(LoginThrottle::new(
                settings.limits.login_failures,
                Duration::from_secs(settings.limits.login_lockout_secs),
            )),
            brief: settings.brief.clone(),
            audit: crate::store::audit::AuditTrail::start(store_for_audit),
            local_url,
            drain: Duration::from_secs(settings.server.drain_secs),
            instance,
        });
        tasks.extend(background_jobs(&state, &settings, &dashboards, &checkpoint));
        if let Some(dir) = &checkpoints {
            tasks.push(
                tokio::spawn(crate::batch::checkpoints::keep_writing(
                    state.hub.clone(),
                    state.ingest.clone(),
                    dir.clone(),
                    Duration::from_secs(settings.checkpoint.every_secs.max(1)),
                ))
                .abort_handle(),
            );
        }
        let server = http::run(listener, state.clone(), handle_signals)?;
        tracing::info!(addr = %settings.server.addr, port, "vscc is listening");
        Ok(Application {
            server,
            port,
            state,
            managed,
            checkpoint,
            checkpoints,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    pub fn admin_token(&self) -> &str {
        self.state.auth.admin_token()
    }

    /// The highest log seq known to be in ClickHouse.
    pub fn checkpoint(&self) -> watch::Receiver<u64> {
        self.checkpoint.clone()
    }

    /// A handle that stops the HTTP server gracefully.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (a signal or its handle), then stops in dependency
    /// order: the writer lands what it holds (a few seconds at most; the log keeps the rest),
    /// the background work that queries ClickHouse stops, and then the managed ClickHouse, if
    /// any — which exits as soon as no connection of ours is in use.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<()> {
        let served = (&mut self.server).await;
        let committed = self
            .state
            .ingest
            .log
            .counters()
            .committed_seq
            .load(Ordering::SeqCst);
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            self.checkpoint.wait_for(|c| *c >= committed),
        )
        .await;
        for task in &self.tasks {
            task.abort();
        }
        if let Some(dir) = &self.checkpoints {
            crate::batch::checkpoints::write_logged(
                &self.state.hub,
                &self.state.ingest.log,
                dir,
                "stopping",
            )
            .await;
        }
        if let Some(managed) = self.managed.take() {
            managed.stop().await;
        }
        served.context("HTTP server failed")
    }
}

/// The jobs that run beside the server, each from the module it serves: the nightly run
/// (batch), screens shared across instances (stream), and the definition files watched
/// (dashboards).
fn background_jobs(
    state: &Arc<AppState>,
    settings: &Settings,
    dashboards: &Dashboards,
    checkpoint: &watch::Receiver<u64>,
) -> Vec<tokio::task::AbortHandle> {
    let mut tasks = Vec::new();
    {
        let printing = state.clone();
        let print = move || {
            let state = printing.clone();
            async move {
                if state.brief.printer().is_some() {
                    match crate::http::print_newest_brief(&state).await {
                        Ok((day, bytes)) => tracing::info!(%day, bytes, "the brief is printed"),
                        Err(e) => tracing::warn!(error = %e, "could not print the brief"),
                    }
                }
            }
        };
        tasks.push(
            tokio::spawn(crate::batch::nightly::run_every_night(
                state.store.clone(),
                state.tree.clone(),
                state.hub.clone(),
                print,
            ))
            .abort_handle(),
        );
    }
    if state.ingest.log.broker().is_some() {
        let state = state.clone();
        tasks.push(
            tokio::spawn(async move {
                if let Some(broker) = state.ingest.log.broker() {
                    let local = || crate::http::local_screens(&state);
                    crate::stream::across::share_screens(state.streams.clone(), broker, local)
                        .await;
                }
            })
            .abort_handle(),
        );
    }
    tasks.push(tokio::spawn(dashboards.clone().watch(Duration::from_secs(2))).abort_handle());
    tasks.push(
        tokio::spawn(crate::dashboards::switch::watch_metric_definitions(
            crate::dashboards::switch::Services {
                hub: state.hub.clone(),
                store: state.store.clone(),
                tree: state.tree.clone(),
                definitions: state.definitions.clone(),
                audit: state.audit.clone(),
                dashboards: state.dashboards.clone(),
                revalidate: {
                    let alerts = state.alerts.clone();
                    Arc::new(move || {
                        // A refused rule set is reported by the engine itself.
                        let _ = alerts.revalidate_rules();
                    })
                },
            },
            settings.catalogue.clone(),
            settings.ingest.spool_dir.clone(),
            checkpoint.clone(),
            Duration::from_secs(1),
        ))
        .abort_handle(),
    );
    tasks
}

/// The listener, its port (the one asked for, or the one the system chose for port 0) and the
/// URL this instance reaches itself at.
fn bind(server: &crate::config::ServerSettings) -> anyhow::Result<(TcpListener, u16, String)> {
    let listener = listen(&server.addr, server.reuse_port)
        .with_context(|| format!("cannot listen on {}", server.addr))?;
    let local = listener.local_addr()?;
    // A server listening on every address is reached on loopback.
    let ip = if local.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        local.ip()
    };
    let url = format!("http://{}", std::net::SocketAddr::new(ip, local.port()));
    Ok((listener, local.port(), url))
}

/// The listening socket. `reuse_port`: several processes on this machine may listen on the same
/// address (SO_REUSEPORT), and the kernel spreads new connections over them.
fn listen(addr: &str, reuse_port: bool) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    use std::net::ToSocketAddrs;
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std's TcpListener::bind: a restarted server can listen while old connections linger.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    // A wall of screens reconnects at once when an instance dies: a short accept queue drops
    // their SYNs, and each waits a second or three to try again (the kernel caps this at
    // net.core.somaxconn).
    socket.listen(4096)?;
    Ok(socket.into())
}
