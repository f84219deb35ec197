//! The `vscc` command line: the commands and their options here, each family of commands in
//! a file of its own (serve and demo, users, ledgers, the simulator, the org tree).

mod demo_tasks;
mod ledgers;
mod org;
mod serve;
mod simulate;
mod users;

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
    /// Print every setting with its default and what it does: a starting vscc.toml
    /// (`vscc config > vscc.toml`, then keep what you change).
    Config,
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
        /// The file is the whole truth of its family at the orgs it names: records of earlier
        /// imports it no longer holds are withdrawn. (A row whose 记录编号 an earlier import
        /// loaded, with other content, is always a correction; see the change report.)
        #[arg(long)]
        withdraw_missing: bool,
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
    /// Rebuilding the live state from N stored records (start-up, a changed metric definition)
    /// beside reading the same rows out of ClickHouse; the memory the state holds.
    Rebuild {
        #[arg(long, default_value_t = 10_000_000)]
        records: usize,
        /// Of the records, this share (percent) corrected once (a cancelling row and a new
        /// version each).
        #[arg(long, default_value_t = 5)]
        corrected_percent: u32,
        /// Of the stored rows, this share (percent) came after the checkpoint that the start
        /// from a checkpoint loads (the records since the last periodic checkpoint).
        #[arg(long, default_value_t = 1)]
        after_checkpoint_percent: u32,
        /// Internal: runs one measured phase (read | apply | start | resume) in a process of
        /// its own.
        #[arg(long, hide = true)]
        phase: Option<String>,
    },
    /// N corrections and withdrawals over every record kind (POST /api/v1/corrections)
    /// beside plain ingest of N records on the same server, before and after.
    Corrections {
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// Records (or changes) per request.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// Concurrent HTTP clients.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// A unit's workspace on N stored records: the page's data for a street beside a wall's
    /// figures of it, and a form's record until a subscribed screen shows it beside its
    /// acknowledgement.
    Workspace {
        #[arg(long, default_value_t = 800_000)]
        records: usize,
        /// Measured rounds of each.
        #[arg(long, default_value_t = 30)]
        rounds: usize,
    },
    /// 督办 at the city's size: a task issued to every unit below the city beside as many
    /// plain records, and a step until a wall screen's stream carries it beside its
    /// acknowledgement.
    Tasks {
        #[arg(long, default_value_t = 200_000)]
        records: usize,
        /// Measured rounds of each.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
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
        /// Rounds of vscc's own-log path, each between two runs of the RowBinary baseline;
        /// the report gives every round's ratio and their median.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
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
    /// Screens that subscribe to every district and never read: the kernel memory they hold
    /// with the screens' send buffer bounded beside the kernel's autotuning, and how soon the
    /// server lets go of them.
    Stalled {
        #[arg(long, default_value_t = 10_000)]
        clients: usize,
        /// How long to watch (the send timeout and the silence rule drop them within it).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Several instances on one port and one record stream (a nats-server of the bench's
    /// own): screens sustained at 1 update/s from several client processes, memory per
    /// screen, and the time for the screens of a killed instance to reconnect and resume.
    Fleet {
        /// Screens on two instances (each process here may hold at most 20,000 descriptors).
        #[arg(long, default_value_t = 24_000)]
        screens: usize,
        /// Load-generator processes the screens are spread over.
        #[arg(long, default_value_t = 3)]
        clients: usize,
        /// Screens on the instance killed in the failover run (0: skip).
        #[arg(long, default_value_t = 10_000)]
        failover_screens: usize,
        /// Times the NATS server leading the record stream is killed and started again, in
        /// a 3-server cluster (0: skip).
        #[arg(long, default_value_t = 3)]
        leader_kills: usize,
    },
    /// Internal: `screens` screens of the fleet bench in a process of their own, driven over
    /// stdin (ready | mark | report | quit).
    #[command(hide = true)]
    ScreenClients {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        token: String,
        #[arg(long)]
        screens: usize,
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
    /// HTTP port (default: any free one).
    #[arg(long, value_name = "PORT")]
    http_port: Option<u16>,
    /// Native-protocol port (default: any free one).
    #[arg(long, value_name = "PORT")]
    tcp_port: Option<u16>,
    /// Run as one server of a cluster on this machine, named NAME in remote_servers. With
    /// --cluster-tcp-ports, --zookeeper, --shard, --replica and --interserver-port.
    #[arg(long, value_name = "NAME", requires_all = ["cluster_tcp_ports", "zookeeper", "shard", "replica", "interserver_port", "tcp_port"])]
    cluster: Option<String>,
    /// Every server's native port: shards separated by ';', replicas by ','
    /// (e.g. "9001,9002;9003,9004").
    #[arg(long, value_name = "PORTS")]
    cluster_tcp_ports: Option<String>,
    /// ZooKeeper's host:port (several separated by ',').
    #[arg(long, value_name = "HOST:PORT")]
    zookeeper: Option<String>,
    /// This server's shard, from 1.
    #[arg(long, value_name = "N")]
    shard: Option<u32>,
    /// This server's replica name, unique in the cluster.
    #[arg(long, value_name = "NAME")]
    replica: Option<String>,
    /// Port the shard's other replicas fetch parts from.
    #[arg(long, value_name = "PORT")]
    interserver_port: Option<u16>,
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
        Command::Config => {
            print!("{}", crate::config::DEFAULTS.trim_start());
            Ok(())
        }
        Command::Serve(args) => serve::serve(settings, args, false).await,
        Command::Demo(args) => serve::serve(settings, args, true).await,
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
        Command::Org(args) => org::print_org(&settings, args),
        Command::Simulate(args) => simulate::simulate(&settings, args).await,
        Command::Etl(EtlCommand::Import {
            files,
            family,
            rejects,
            chunk_rows,
            withdraw_missing,
            store,
        }) => {
            store.apply(&mut settings);
            ledgers::import_ledgers(
                &settings,
                files,
                family,
                rejects,
                chunk_rows,
                withdraw_missing,
            )
            .await
        }
        Command::Etl(EtlCommand::Run { job, store }) => {
            let jobs = crate::batch::decision::JOBS;
            anyhow::ensure!(
                jobs.contains(&job.as_str()),
                "unknown job '{job}'; jobs: {}",
                jobs.join(", ")
            );
            store.apply(&mut settings);
            let tree = std::sync::Arc::new(reference::load_org_tree(
                &settings.reference.divisions_dir,
                &settings.org.region,
            )?);
            let catalogue = crate::dashboards::load_catalogue(&settings.catalogue)?;
            let (store, managed) = crate::app::connect_store_shared(&settings).await?;
            let result = async {
                store.migrate().await?;
                store.refresh_org_nodes(&tree).await?;
                let now = time::OffsetDateTime::now_utc();
                Ok::<_, anyhow::Error>(
                    crate::batch::decision::run_named(&store, &tree, &catalogue, &job, now).await?,
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
            rounds,
        }) => {
            crate::bench::ingest::run(
                &settings,
                crate::bench::ingest::IngestBench {
                    records,
                    batch,
                    concurrency,
                    rounds: rounds.max(1),
                },
            )
            .await
        }
        Command::Bench(BenchCommand::Fleet {
            screens,
            clients,
            failover_screens,
            leader_kills,
        }) => {
            crate::bench::fleet::run(
                &settings,
                crate::bench::fleet::FleetBench {
                    screens,
                    clients,
                    failover_screens,
                    leader_kills,
                },
            )
            .await
        }
        Command::Bench(BenchCommand::ScreenClients {
            port,
            token,
            screens,
        }) => crate::bench::fleet::screen_clients(port, token, screens).await,
        Command::Bench(BenchCommand::Stalled { clients, seconds }) => {
            crate::bench::stalled::run(
                &settings,
                crate::bench::stalled::StalledBench { clients, seconds },
            )
            .await
        }
        Command::Bench(BenchCommand::Tasks { records, rounds }) => {
            crate::bench::tasks::run(
                &settings,
                crate::bench::tasks::TasksBench {
                    records,
                    rounds: rounds.max(1),
                },
            )
            .await
        }
        Command::Bench(BenchCommand::Workspace { records, rounds }) => {
            crate::bench::workspace::run(
                &settings,
                crate::bench::workspace::WorkspaceBench {
                    records,
                    rounds: rounds.max(1),
                },
            )
            .await
        }
        Command::Bench(BenchCommand::Corrections {
            records,
            batch,
            concurrency,
        }) => {
            crate::bench::corrections::run(
                &settings,
                crate::bench::corrections::CorrectionsBench {
                    records,
                    batch: batch.max(1),
                    concurrency,
                },
            )
            .await
        }
        Command::Bench(BenchCommand::Rebuild {
            records,
            corrected_percent,
            after_checkpoint_percent,
            phase,
        }) => {
            crate::bench::rebuild::run(
                &settings,
                crate::bench::rebuild::RebuildBench {
                    records,
                    corrected_percent,
                    after_checkpoint_percent,
                    phase,
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
        Command::User(command) => users::user_command(settings, command).await,
        Command::Sql(SqlCommand::UsersXml { store }) => {
            store.apply(&mut settings);
            let tree = std::sync::Arc::new(reference::load_org_tree(
                &settings.reference.divisions_dir,
                &settings.org.region,
            )?);
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
            let managed = &mut settings.clickhouse.managed;
            if let Some(dir) = args.dir {
                managed.dir = dir;
            }
            managed.http_port = args.http_port.unwrap_or(managed.http_port);
            managed.tcp_port = args.tcp_port.unwrap_or(managed.tcp_port);
            if let Some(name) = args.cluster {
                managed.cluster = Some(crate::store::managed::ClusterNode {
                    name,
                    tcp_ports: args.cluster_tcp_ports.unwrap_or_default(),
                    zookeeper: args.zookeeper.unwrap_or_default(),
                    shard: args.shard.unwrap_or(1),
                    replica: args.replica.unwrap_or_default(),
                    interserver_port: args.interserver_port.unwrap_or_default(),
                });
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
            serve::wait_for_stop_signal().await;
            managed.stop().await;
            Ok(())
        }
    }
}
