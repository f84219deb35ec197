//! The `vscc` command line.

use std::path::PathBuf;

use std::io::IsTerminal;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::Application;
use crate::config::{LogFormat, Settings};
use crate::domain::{Level, OrgTree};
use crate::reference;
use crate::store::ManagedClickHouse;

#[derive(Parser)]
#[command(
    name = "vscc",
    version,
    about = "Veterans Service Command Center: live figures, targets and alerts for Shenzhen's veterans service system",
    long_about = "Veterans Service Command Center (深圳退役军人服务指挥中心).\n\n\
        Records flow in over HTTP and from ledger imports, land in ClickHouse, roll up over the \
        org tree (city → district → street → community) and stream to wall screens.\n\n\
        Configuration layers, later wins: built-in defaults, the TOML file (--config, else \
        ./vscc.toml when present), VSCC__SECTION__KEY environment variables (e.g. \
        VSCC__CLICKHOUSE__URL=http://ch:8123), then VSCC_ADDR and command-line flags."
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "VSCC_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format (overrides server.log_format).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API, the WebSocket stream and the wall screen.
    Serve(ServeArgs),
    /// Serve, and print the admin token; the demo of `scripts/run`.
    Demo(ServeArgs),
    /// Apply pending ClickHouse schema migrations, then exit.
    Migrate(StoreArgs),
    /// Print the org tree, or the subtree under CODE.
    Org(OrgArgs),
    /// Run a managed ClickHouse in the foreground until Ctrl-C (used by scripts/test).
    Clickhouse(ClickhouseArgs),
    /// Batch jobs (decision support): `vscc etl run snapshots`.
    #[command(subcommand)]
    Etl(EtlCommand),
    /// Simulate Shenzhen's service system from 2020-01-01: print NDJSON, or post to a server.
    Simulate(SimulateArgs),
    /// Benchmarks with a printed report (build with --release first).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Users: add, list, revoke; screen tokens. Works on the store directly (the running
    /// server's managed ClickHouse, or the configured one); servers see changes within
    /// auth.directory_refresh_ms.
    #[command(subcommand)]
    User(UserCommand),
    /// The analysts' SQL: print the ClickHouse users file for an external server.
    #[command(subcommand)]
    Sql(SqlCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. The password is read from VSCC_USER_PASSWORD, else from standard input
    /// (first line).
    Add {
        name: String,
        /// leader | analyst | duty_officer | clerk | admin
        #[arg(long)]
        role: String,
        /// Org code whose subtree the user sees (440300: the whole city).
        #[arg(long)]
        scope: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users and screen tokens.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user (every token of theirs stops working), or with --screen-token revoke one
    /// screen token by id.
    Revoke {
        /// User name, or screen token id with --screen-token.
        name: String,
        #[arg(long)]
        screen_token: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Issue a long-lived screen token for a user's wall screen; prints the token.
    ScreenToken {
        user: String,
        /// Org code the screen watches (default: the user's scope).
        #[arg(long)]
        scope: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum SqlCommand {
    /// Print the users file (profile, quota, one read-only user per scope) to install as
    /// users.d/vscc-<database>.xml on an external ClickHouse.
    UsersXml {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum EtlCommand {
    /// Import ledger files (CSV or Excel, Chinese headers) into the store. Which ledger a file
    /// is comes from its headers (or --family); rejected rows go to <file>.rejects.csv with
    /// their row number, column and reason; a re-imported file changes nothing.
    Import {
        /// Ledger files: .csv (UTF-8) or .xlsx/.xls/.ods (first sheet).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// staffing | hires | headcount | classes | attendance | ratings | appeals | veterans |
        /// archives (or the Chinese title, e.g. 招聘台账).
        #[arg(long)]
        family: Option<String>,
        /// Folder for the reject files (default: beside each input).
        #[arg(long, value_name = "DIR")]
        rejects: Option<PathBuf>,
        /// Rows per chunk: memory grows with it.
        #[arg(long, default_value_t = 200_000)]
        chunk_rows: usize,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Run a job once against the configured ClickHouse.
    Run {
        /// snapshots: every metric of the city, districts and streets at each day's end;
        /// progress: target progress with projections; league: district and street rankings;
        /// freshness: newest record per node and kind; all: the four in that order.
        job: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Ledger import of an N-row CSV beside `clickhouse-client … FORMAT CSVWithNames` of the
    /// same file into an equivalent table; peak memory of the import.
    Import {
        #[arg(long, default_value_t = 10_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 200_000)]
        chunk_rows: usize,
    },
    /// Records/s end to end beside ClickHouse's own insert rate of the same rows.
    Ingest {
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Records per POST.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Event → delta latency at N screens, memory per screen, most screens at 1 update/s.
    Stream {
        #[arg(long, default_value_t = 1_000)]
        screens: usize,
        /// Records/s of steady ingest during the latency run.
        #[arg(long, default_value_t = 5_000)]
        rate: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Publishing tick (the maximum message rate per subscription).
        #[arg(long, default_value_t = 250)]
        tick_ms: u64,
        /// Steps of the 1 update/s ramp, comma-separated (0: skip). Each process here may hold
        /// at most 20,000 file descriptors (hard limit), so the ramp stops below that.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "2000,5000,10000,15000,19500"
        )]
        max_screens: Vec<usize>,
    },
}

#[derive(Args)]
struct StoreArgs {
    /// HTTP URL of an external ClickHouse (clickhouse.url). Without one, vscc starts a managed
    /// clickhouse-server under clickhouse.managed.dir (default var/clickhouse).
    #[arg(long, value_name = "URL")]
    clickhouse_url: Option<String>,
    /// ClickHouse database for vscc's tables (clickhouse.database, default vscc).
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on, host:port (server.addr; env VSCC_ADDR; default 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    addr: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct OrgArgs {
    /// Org code of the subtree's root (default: the city, 440300).
    code: Option<String>,
    /// Levels below the root to print (default: all).
    #[arg(long)]
    depth: Option<usize>,
    /// Print JSON, as GET /api/v1/org does.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SimulateArgs {
    /// Same seed, same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Multiplies veterans and appeals (1 ≈ 300,000 veterans, 20 appeals a weekday).
    #[arg(long, default_value_t = 0.1)]
    scale: f64,
    /// Last day of the history, YYYY-MM-DD (default: today in Shenzhen).
    #[arg(long)]
    until: Option<String>,
    /// Post to this vscc instead of printing NDJSON, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Token for --server (default: VSCC_ADMIN_TOKEN).
    #[arg(long, env = "VSCC_ADMIN_TOKEN")]
    token: Option<String>,
    /// After the history, keep posting the simulated future at --rate records a second.
    #[arg(long)]
    live: bool,
    #[arg(long, default_value_t = 5)]
    rate: usize,
    /// Write ledger files instead (one per family, Chinese headers, as clerks keep them).
    #[arg(long, value_enum)]
    format: Option<crate::batch::ledger::write::LedgerFormat>,
    /// Folder for the ledger files of --format.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ClickhouseArgs {
    /// Folder for the server's config, data and logs (default: clickhouse.managed.dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Write `VSCC__CLICKHOUSE__URL=…`, `VSCC_CLICKHOUSE_TCP_PORT=…` and
    /// `VSCC__SQL__USERS_DIR=…` to this file once up.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
}

impl StoreArgs {
    fn apply(&self, settings: &mut Settings) {
        if let Some(url) = &self.clickhouse_url {
            settings.clickhouse.url = url.clone();
        }
        if let Some(db) = &self.database {
            settings.clickhouse.database = db.clone();
        }
    }
}

pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(f) = cli.log_format {
        settings.server.log_format = f;
    }
    crate::telemetry::init(settings.server.log_format, "info,actix_server=warn");

    match cli.command {
        Command::Serve(args) => serve(settings, args, false).await,
        Command::Demo(args) => serve(settings, args, true).await,
        Command::Migrate(args) => {
            args.apply(&mut settings);
            let (store, managed) = crate::app::connect_store_shared(&settings).await?;
            let result = store.migrate().await;
            if let Some(mut m) = managed {
                m.stop().await;
            }
            let report = result?;
            println!(
                "migrations: {} applied now ({}), {} already applied",
                report.applied.len(),
                report.applied.join(", "),
                report.already_applied
            );
            Ok(())
        }
        Command::Org(args) => print_org(&settings, args),
        Command::Simulate(args) => simulate(&settings, args).await,
        Command::Etl(EtlCommand::Import {
            files,
            family,
            rejects,
            chunk_rows,
            store,
        }) => {
            store.apply(&mut settings);
            import_ledgers(&settings, files, family, rejects, chunk_rows).await
        }
        Command::Etl(EtlCommand::Run { job, store }) => {
            let jobs = crate::batch::decision::JOBS;
            anyhow::ensure!(
                jobs.contains(&job.as_str()),
                "unknown job '{job}'; jobs: {}",
                jobs.join(", ")
            );
            store.apply(&mut settings);
            let tree =
                std::sync::Arc::new(reference::load_org_tree(&settings.reference.divisions_dir)?);
            let (store, managed) = crate::app::connect_store_shared(&settings).await?;
            let result = async {
                store.migrate().await?;
                store.refresh_org_nodes(&tree).await?;
                let now = time::OffsetDateTime::now_utc();
                Ok::<_, anyhow::Error>(
                    crate::batch::decision::run_named(&store, &tree, settings.appeals, &job, now)
                        .await?,
                )
            }
            .await;
            if let Some(mut m) = managed {
                m.stop().await;
            }
            for (job, rows) in result? {
                println!("{job}: {rows} rows");
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Ingest {
            records,
            batch,
            concurrency,
        }) => {
            crate::bench::ingest::run(
                &settings,
                crate::bench::ingest::IngestBench {
                    records,
                    batch,
                    concurrency,
                },
            )
            .await
        }
        Command::Bench(BenchCommand::Import { rows, chunk_rows }) => {
            crate::bench::import::run(
                &settings,
                crate::bench::import::ImportBench { rows, chunk_rows },
            )
            .await
        }
        Command::Bench(BenchCommand::Stream {
            screens,
            rate,
            seconds,
            tick_ms,
            max_screens,
        }) => {
            let max_screens = max_screens.into_iter().filter(|&n| n > 0).collect();
            let opts = crate::bench::stream::StreamBench {
                screens,
                rate,
                seconds,
                tick_ms,
                max_screens,
            };
            crate::bench::stream::run(&settings, opts).await
        }
        Command::User(command) => user_command(settings, command).await,
        Command::Sql(SqlCommand::UsersXml { store }) => {
            store.apply(&mut settings);
            let tree =
                std::sync::Arc::new(reference::load_org_tree(&settings.reference.divisions_dir)?);
            let secret = crate::auth::load_or_create_secret(&settings.auth)?;
            let store = crate::store::Store::new(
                &settings.clickhouse.url,
                "default",
                "",
                &settings.clickhouse.database,
            )?;
            let gateway = crate::app::sql_gateway(&settings, &store, &tree, None, &secret);
            print!("{}", gateway.users_xml_for_all_scopes());
            Ok(())
        }
        Command::Clickhouse(args) => {
            if let Some(dir) = args.dir {
                settings.clickhouse.managed.dir = dir;
            }
            let mut managed = ManagedClickHouse::start(&settings.clickhouse.managed).await?;
            println!(
                "clickhouse: {} (native port {}, pid {})",
                managed.url(),
                managed.tcp_port(),
                managed.pid()
            );
            if let Some(file) = args.env_file {
                std::fs::write(
                    &file,
                    format!(
                        "VSCC__CLICKHOUSE__URL={}\nVSCC_CLICKHOUSE_TCP_PORT={}\nVSCC__SQL__USERS_DIR={}\n",
                        managed.url(),
                        managed.tcp_port(),
                        managed.users_dir().display()
                    ),
                )
                .with_context(|| format!("writing {}", file.display()))?;
            }
            wait_for_stop_signal().await;
            managed.stop().await;
            Ok(())
        }
    }
}

async fn user_command(mut settings: Settings, command: UserCommand) -> anyhow::Result<()> {
    use crate::auth::{Authenticator, Role, UserDirectory};
    let store_args = match &command {
        UserCommand::Add { store, .. }
        | UserCommand::List { store }
        | UserCommand::Revoke { store, .. }
        | UserCommand::ScreenToken { store, .. } => store,
    };
    store_args.apply(&mut settings);
    let tree = std::sync::Arc::new(reference::load_org_tree(&settings.reference.divisions_dir)?);
    let (store, managed) = crate::app::connect_store_shared(&settings).await?;
    let result = async {
        store.migrate().await?;
        let directory = UserDirectory::load(store.clone()).await?;
        let by = format!("cli:{}", std::env::var("USER").unwrap_or_default());
        match command {
            UserCommand::Add {
                name, role, scope, ..
            } => {
                let role = Role::parse(&role).with_context(|| {
                    format!("--role {role}: one of leader, analyst, duty_officer, clerk, admin")
                })?;
                anyhow::ensure!(
                    tree.get(&scope).is_some(),
                    "--scope {scope}: no such org code (see `vscc org`)"
                );
                let password = match std::env::var("VSCC_USER_PASSWORD") {
                    Ok(p) => p,
                    Err(_) => {
                        if std::io::stdin().is_terminal() {
                            eprint!("password for {name}: ");
                        }
                        let mut line = String::new();
                        std::io::stdin().read_line(&mut line)?;
                        line.trim_end_matches(['\r', '\n']).to_string()
                    }
                };
                let user = directory
                    .add_user(&name, role, &scope, &password, &by)
                    .await?;
                println!(
                    "added {} ({}, scope {} {})",
                    user.name,
                    user.role.as_str(),
                    user.scope,
                    tree.node(tree.get(&scope).unwrap_or(tree.root())).name
                );
            }
            UserCommand::List { .. } => {
                println!(
                    "{:<24} {:<13} {:<10} {:<8} changed",
                    "user", "role", "scope", "state"
                );
                for u in directory.users() {
                    let state = if u.disabled { "revoked" } else { "active" };
                    println!(
                        "{:<24} {:<13} {:<10} {:<8} {} by {}",
                        u.name,
                        u.role.as_str(),
                        u.scope,
                        state,
                        u.changed_at,
                        u.changed_by
                    );
                }
                let tokens = directory.screen_tokens();
                if !tokens.is_empty() {
                    println!(
                        "\n{:<34} {:<16} {:<10} {:<8} expires",
                        "screen token", "user", "scope", "state"
                    );
                    for t in tokens {
                        let state = if t.revoked { "revoked" } else { "active" };
                        println!(
                            "{:<34} {:<16} {:<10} {:<8} {}  {}",
                            t.id,
                            t.user,
                            t.scope,
                            state,
                            t.expires_at.date(),
                            t.label
                        );
                    }
                }
            }
            UserCommand::Revoke {
                name,
                screen_token: true,
                ..
            } => {
                let t = directory.revoke_screen_token(&name).await?;
                println!("revoked screen token {} of {}", t.id, t.user);
            }
            UserCommand::Revoke { name, .. } => {
                let u = directory.revoke_user(&name, &by).await?;
                println!(
                    "revoked {}: its tokens are refused from their next use",
                    u.name
                );
            }
            UserCommand::ScreenToken {
                user, scope, label, ..
            } => {
                let record = directory
                    .user(&user)
                    .filter(|u| !u.disabled)
                    .with_context(|| format!("no active user {user}"))?;
                let scope = scope.unwrap_or_else(|| record.scope.clone());
                let (Some(s), Some(us)) = (tree.get(&scope), tree.get(&record.scope)) else {
                    anyhow::bail!("--scope {scope}: no such org code");
                };
                anyhow::ensure!(
                    tree.is_within(s, us),
                    "--scope {scope} is outside {user}'s scope ({})",
                    record.scope
                );
                let secret = crate::auth::load_or_create_secret(&settings.auth)?;
                let auth = Authenticator::new(
                    &settings.auth,
                    tree.clone(),
                    crate::auth::tokens::random_token(),
                    &secret,
                    directory,
                )?;
                let issued = auth.issue_screen_token(&record, &scope, &label).await?;
                eprintln!(
                    "screen token {} for {user}, scope {scope}, expires {}",
                    issued.id,
                    issued.expires_at.date()
                );
                println!("{}", issued.token);
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Some(mut m) = managed {
        m.stop().await;
    }
    result
}

async fn serve(mut settings: Settings, args: ServeArgs, demo: bool) -> anyhow::Result<()> {
    if let Some(addr) = args.addr {
        settings.server.addr = addr;
    }
    args.store.apply(&mut settings);
    if demo {
        // Unattended demo screens on this machine need no token to read figures.
        settings
            .auth
            .anonymous_role
            .get_or_insert(crate::auth::Role::Leader);
    }
    let app = Application::build(settings.clone(), true).await?;
    if demo {
        println!("admin token: {}", app.admin_token());
        println!("wall screen: http://{}", settings.server.addr);
        println!(
            "duty console: http://{}/duty?token={}",
            settings.server.addr,
            app.admin_token()
        );
        println!(
            "SQL console: http://{}/sql?token={}",
            settings.server.addr,
            app.admin_token()
        );
        tokio::spawn(demo_feed(
            format!("http://127.0.0.1:{}", app.port()),
            app.admin_token().to_string(),
            app.state().tree.clone(),
            app.state().map.clone(),
            app.state().streams.closing(),
        ));
    }
    app.run_until_stopped().await
}

/// The demo's records: the simulated history since 2020 (same ids every run, so a re-run adds
/// nothing), then the simulated future, live.
async fn demo_feed(
    base: String,
    token: String,
    tree: std::sync::Arc<OrgTree>,
    map: std::sync::Arc<crate::reference::DistrictMap>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let run = feed(
        &base,
        &token,
        &tree,
        &map,
        1,
        0.05,
        crate::batch::simulator::today(),
        true,
        5,
        false,
    );
    tokio::select! {
        result = run => if let Err(e) = result {
            tracing::warn!(error = %e, "demo feed stopped");
        },
        _ = closing.wait_for(|c| *c) => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn feed(
    base: &str,
    token: &str,
    tree: &OrgTree,
    map: &crate::reference::DistrictMap,
    seed: u64,
    scale: f64,
    until: time::Date,
    live: bool,
    rate: usize,
    progress: bool,
) -> anyhow::Result<()> {
    use crate::batch::simulator::{LivePlayer, Simulator, START};
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/events");
    let post = |events: Vec<serde_json::Value>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            loop {
                let res = http
                    .post(&url)
                    .bearer_auth(token)
                    .json(&events)
                    .send()
                    .await?;
                let status = res.status().as_u16();
                // Over the rate limit or the spool bound: wait as told, then send the same body
                // again (ids make the re-send safe).
                if status == 429 || status == 503 {
                    let wait = res
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(std::time::Duration::from_secs(wait.min(60))).await;
                    continue;
                }
                anyhow::ensure!(
                    res.status().is_success(),
                    "the server answered {}",
                    res.status()
                );
                return Ok::<_, anyhow::Error>(());
            }
        }
    };
    let mut sim = Simulator::new(tree, map, seed, scale);
    let days = (until - START).whole_days().max(0) as u64 + 1;
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(days);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} days {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut batch = Vec::new();
    let mut sent = 0usize;
    while let Some((_, events)) = sim.next_day(until) {
        batch.extend(events);
        if let Some(b) = &bar {
            b.inc(1);
        }
        if batch.len() >= 5000 {
            sent += batch.len();
            post(std::mem::take(&mut batch)).await?;
            if let Some(b) = &bar {
                b.set_message(format!("{sent} records"));
            }
        }
    }
    sent += batch.len();
    post(batch).await?;
    if let Some(b) = bar {
        b.finish_with_message(format!("{sent} records"));
    }
    tracing::info!(records = sent, "simulated history sent");
    if live {
        // Trend lines need the daily snapshots of the history just sent.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let res = http
            .post(format!("{base}/api/v1/jobs/all"))
            .bearer_auth(token)
            .send()
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not run the snapshot job");
        }
    }
    if live {
        let mut player = LivePlayer::new(sim);
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            let events = player.next(rate, time::OffsetDateTime::now_utc());
            if let Err(e) = post(events).await {
                tracing::warn!(error = %e, "live record not accepted; retrying next second");
            }
        }
    }
    Ok(())
}

async fn import_ledgers(
    settings: &Settings,
    files: Vec<PathBuf>,
    family: Option<String>,
    rejects: Option<PathBuf>,
    chunk_rows: usize,
) -> anyhow::Result<()> {
    use crate::batch::ledger::{import, Family};
    let family = match family {
        Some(f) => Some(Family::parse(&f).with_context(|| {
            let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
            format!("--family {f}: one of {}", names.join(", "))
        })?),
        None => None,
    };
    let tree = std::sync::Arc::new(reference::load_org_tree(&settings.reference.divisions_dir)?);
    let map = crate::reference::DistrictMap::load(
        &settings.reference.boundaries_dir,
        &tree,
        settings.reference.simplify_tolerance_deg,
    )?;
    let locator: std::sync::Arc<dyn crate::domain::record::Locator + Send + Sync> =
        std::sync::Arc::new(map);
    let (store, managed) = crate::app::connect_store_shared(settings).await?;
    let result = async {
        store.migrate().await?;
        let mut summaries = Vec::new();
        for file in &files {
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(1);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:40} {percent:>3}% {elapsed} (eta {eta})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar.set_message(file.display().to_string());
                bar
            });
            let progress_bar = bar.clone();
            let options = import::ImportOptions {
                family,
                reject_dir: rejects.clone(),
                chunk_rows,
                by: format!("cli:{}", std::env::var("USER").unwrap_or_default()),
                progress: Some(Box::new(move |done, total| {
                    if let Some(b) = &progress_bar {
                        b.set_length(total.max(1));
                        b.set_position(done);
                    }
                })),
                ..Default::default()
            };
            let summary = import::import_file(&store, &tree, locator.clone(), file, options).await;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            summaries.push(summary.with_context(|| format!("importing {}", file.display()))?);
        }
        Ok::<_, anyhow::Error>(summaries)
    }
    .await;
    if let Some(mut m) = managed {
        m.stop().await;
    }
    let summaries = result?;
    println!(
        "{:<11} {:>10} {:>10} {:>10} {:>9} {:>8}  file",
        "ledger", "rows", "accepted", "duplicate", "rejected", "seconds"
    );
    for s in &summaries {
        println!(
            "{:<11} {:>10} {:>10} {:>10} {:>9} {:>8.1}  {}",
            s.family, s.rows, s.accepted, s.duplicates, s.rejected, s.seconds, s.file
        );
    }
    for s in summaries
        .iter()
        .filter(|s| s.rejected > 0 || !s.ignored_columns.is_empty())
    {
        if let Some(file) = &s.reject_file {
            println!("{}: {} rejected rows in {file}", s.file, s.rejected);
            for r in s.rejects.iter().take(5) {
                println!("  row {} {} '{}': {}", r.row, r.column, r.value, r.reason);
            }
        }
        if !s.ignored_columns.is_empty() {
            println!(
                "{}: columns ignored: {}",
                s.file,
                s.ignored_columns.join(", ")
            );
        }
    }
    Ok(())
}

async fn simulate(settings: &Settings, args: SimulateArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let tree = reference::load_org_tree(&settings.reference.divisions_dir)?;
    let map = crate::reference::DistrictMap::load(
        &settings.reference.boundaries_dir,
        &tree,
        settings.reference.simplify_tolerance_deg,
    )?;
    let until = match &args.until {
        Some(d) => time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
            .with_context(|| format!("--until {d}: expected YYYY-MM-DD"))?,
        None => crate::batch::simulator::today(),
    };
    if let Some(format) = args.format {
        let out = args
            .out
            .clone()
            .context("--format csv|xlsx writes ledger files: give --out DIR")?;
        let mut sim = crate::batch::simulator::Simulator::new(&tree, &map, args.seed, args.scale);
        let mut rows = crate::batch::ledger::write::LedgerRows::new(&tree, args.seed);
        let mut writer = crate::batch::ledger::write::LedgerWriter::new(&out, format)?;
        while let Some((_, events)) = sim.next_day(until) {
            for e in &events {
                if let Some((family, cells)) = rows.row(e) {
                    writer.write(family, &cells)?;
                }
            }
        }
        let total = writer.rows;
        for path in writer.finish()? {
            eprintln!("wrote {}", path.display());
        }
        eprintln!("{total} ledger rows");
        return Ok(());
    }
    match &args.server {
        Some(server) => {
            let token = args
                .token
                .clone()
                .context("--server needs --token (or VSCC_ADMIN_TOKEN)")?;
            feed(
                server,
                &token,
                &tree,
                &map,
                args.seed,
                args.scale,
                until,
                args.live,
                args.rate,
                std::io::stderr().is_terminal(),
            )
            .await
        }
        None => {
            let mut sim =
                crate::batch::simulator::Simulator::new(&tree, &map, args.seed, args.scale);
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            while let Some((_, events)) = sim.next_day(until) {
                for e in events {
                    writeln!(out, "{e}")?;
                }
            }
            out.flush()?;
            Ok(())
        }
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

fn print_org(settings: &Settings, args: OrgArgs) -> anyhow::Result<()> {
    let tree = reference::load_org_tree(&settings.reference.divisions_dir)?;
    let root = match &args.code {
        Some(code) => tree
            .get(code)
            .with_context(|| format!("no org with code {code}"))?,
        None => tree.root(),
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::wire::org::OrgView::of(&tree, root, args.depth))?
        );
        return Ok(());
    }
    let mut out = String::new();
    write_node(&tree, root, 0, args.depth, &mut out);
    print!("{out}");
    let sub = tree.subtree(root);
    let count = |l: Level| sub.iter().filter(|&&i| tree.node(i).level == l).count();
    println!(
        "— {} districts, {} streets, {} communities",
        count(Level::District),
        count(Level::Street),
        count(Level::Community)
    );
    Ok(())
}

fn write_node(tree: &OrgTree, idx: u32, indent: usize, depth: Option<usize>, out: &mut String) {
    let n = tree.node(idx);
    out.push_str(&format!(
        "{}{} {} ({})\n",
        "  ".repeat(indent),
        n.code,
        n.name,
        n.level.label_zh()
    ));
    if depth == Some(0) {
        return;
    }
    for &c in &n.children {
        write_node(tree, c, indent + 1, depth.map(|d| d - 1), out);
    }
}
