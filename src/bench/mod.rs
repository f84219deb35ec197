//! `vscc bench ingest|corrections|stream|stalled|import|rebuild|workspace|tasks`: measured speed, each figure beside a baseline measured in the
//! same run. Run them on a release build: `cargo run --release -- bench ingest`.

pub mod corrections;
pub mod fleet;
pub mod import;
pub mod ingest;
pub mod rebuild;
pub mod stalled;
pub mod stream;
pub mod tasks;
pub mod workload;
pub mod workspace;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::config::Settings;
use crate::store::ManagedClickHouse;

/// ClickHouse and a scratch folder for one benchmark run.
pub struct BenchEnv {
    pub clickhouse_url: String,
    pub dir: PathBuf,
    managed: Option<ManagedClickHouse>,
}

impl BenchEnv {
    /// The native-protocol port of the managed server (for `clickhouse-client`).
    pub fn tcp_port(&self) -> Option<u16> {
        self.managed.as_ref().map(|m| m.tcp_port())
    }
}

impl BenchEnv {
    pub async fn start(settings: &Settings, name: &str) -> anyhow::Result<Self> {
        let dir = Path::new("var/bench").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let dir = dir.canonicalize()?;
        let (clickhouse_url, managed) = match settings.clickhouse.external_url() {
            Some(url) => (url.to_string(), None),
            None => {
                let mut m = settings.clickhouse.managed.clone();
                m.dir = dir.join("clickhouse");
                let managed = ManagedClickHouse::start(&m).await?;
                (managed.url(), Some(managed))
            }
        };
        Ok(BenchEnv {
            clickhouse_url,
            dir,
            managed,
        })
    }

    pub async fn stop(mut self) {
        if let Some(m) = self.managed.as_mut() {
            m.stop().await;
        }
    }
}

/// Lets one process hold tens of thousands of sockets (children inherit the limit).
pub fn raise_fd_limit(want: u64) {
    // SAFETY: plain get/setrlimit on this process.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want.max(lim.rlim_max),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                let soft = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
            }
        }
    }
}

/// A `vscc serve` child process of this same binary.
pub struct ServerChild {
    pub child: Child,
    pub base: String,
    pub port: u16,
    pub token: String,
}

impl ServerChild {
    pub async fn spawn(
        env: &BenchEnv,
        database: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Self::spawn_at(env, database, port, extra).await
    }

    /// A server on `port` (with `VSCC__SERVER__REUSE_PORT`, one of several there: it is
    /// ready when the port answers ready, which another may).
    pub async fn spawn_at(
        env: &BenchEnv,
        database: &str,
        port: u16,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let token = "bench-admin".to_string();
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("serve")
            .env("VSCC_ADDR", format!("127.0.0.1:{port}"))
            .env("VSCC__CLICKHOUSE__URL", &env.clickhouse_url)
            .env("VSCC__CLICKHOUSE__DATABASE", database)
            .env(
                "VSCC__INGEST__SPOOL_DIR",
                env.dir.join(format!("spool-{database}")),
            )
            .env("VSCC_ADMIN_TOKEN", &token)
            // The load generators are the only clients: rate limits would measure themselves.
            .env("VSCC__LIMITS__INGEST_PER_SEC", "1000000")
            .env("VSCC__LIMITS__INGEST_BURST", "1000000")
            .env("VSCC__AUTH__SECRET_FILE", env.dir.join("auth-secret"))
            .env(
                "RUST_LOG",
                std::env::var("VSCC_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting the vscc server")?;
        let server = ServerChild {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            token,
        };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", server.base)).send().await {
                if r.status().is_success() {
                    return Ok(server);
                }
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// (current RSS, peak RSS) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        memory_kib(self.child.id().unwrap_or_default())
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After the ")" the fields start at state (3rd of stat(5)); utime/stime are 14th/15th.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

impl BenchEnv {
    pub fn clickhouse_pid(&self) -> Option<u32> {
        self.managed.as_ref().map(|m| m.pid())
    }
}

/// p50 and p95 of milliseconds measured.
pub fn p50_p95(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.95))
}

/// Stores `n` records of every kind over the tree through the server's API, 5,000 a request:
/// what a bench measures against.
pub async fn store_records(
    server: &ServerChild,
    tree: &crate::domain::OrgTree,
    kinds: &crate::domain::kinds::Kinds,
    n: usize,
    prefix: &str,
) -> anyhow::Result<()> {
    eprintln!("bench: storing {n} records …");
    let http = reqwest::Client::new();
    let events = workload::Workload::new(tree, 7, 365, prefix, n / 4 + 1)
        .with_kinds(tree, kinds)
        .events(n);
    for chunk in events.chunks(5_000) {
        let res = http
            .post(format!("{}/api/v1/events", server.base))
            .bearer_auth(&server.token)
            .json(chunk)
            .send()
            .await?;
        anyhow::ensure!(
            res.status().is_success(),
            "ingest answered {}",
            res.status()
        );
    }
    Ok(())
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// A `nats-server -js` of the bench's own, killed when dropped.
pub struct NatsChild {
    child: std::process::Child,
    pub url: String,
}

impl NatsChild {
    pub fn spawn(dir: &std::path::Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("nats"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "nats-server did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Ok(NatsChild {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

impl Drop for NatsChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster of `nats-server -js` of the bench's own (servers `nats0`…), killed when dropped.
pub struct NatsCluster {
    servers: Vec<(Vec<String>, Option<std::process::Child>)>,
    pub url: String,
}

impl NatsCluster {
    pub fn spawn(dir: &Path, size: usize) -> anyhow::Result<Self> {
        let free = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let ports: Vec<u16> = (0..size).map(|_| free()).collect::<Result<_, _>>()?;
        let routes: Vec<String> = (0..size)
            .map(|_| free().map(|p| format!("nats://127.0.0.1:{p}")))
            .collect::<Result<_, _>>()?;
        let mut cluster = NatsCluster {
            servers: Vec::new(),
            url: ports
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        for (i, port) in ports.iter().enumerate() {
            let args = vec![
                "-js".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-n".into(),
                format!("nats{i}"),
                "-p".into(),
                port.to_string(),
                "-sd".into(),
                dir.join(format!("nats{i}")).display().to_string(),
                "--cluster_name".into(),
                "vscc-bench".into(),
                "--cluster".into(),
                routes[i].clone(),
                "--routes".into(),
                routes.join(","),
            ];
            cluster.servers.push((args, None));
            cluster.start(i)?;
        }
        for port in &ports {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "nats-server did not listen"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// Starts server `i` (again).
    pub fn start(&mut self, i: usize) -> anyhow::Result<()> {
        let (args, child) = &mut self.servers[i];
        *child = Some(
            std::process::Command::new("nats-server")
                .args(args.iter())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("nats-server (scripts/setup installs it)")?,
        );
        Ok(())
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.servers[i].1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}
