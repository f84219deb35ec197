//! A `clickhouse-server` child process that vscc starts, owns and stops: its own config, data
//! and logs under one folder, loopback only, on free ports.
//!
//! No orphans: the child runs in its own process group (a terminal's Ctrl-C reaches vscc,
//! which then stops the child in order) and gets SIGTERM from the kernel if vscc dies
//! (`PR_SET_PDEATHSIG`). A server left behind anyway (recorded in `vscc-clickhouse.pid`) is
//! stopped before a new one starts, so a stale pid file never blocks a start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError};

#[derive(Debug, Clone, serde::Deserialize)]
pub struct ManagedClickHouseSettings {
    /// Config, data and logs of the managed server live here.
    pub dir: PathBuf,
    /// The `clickhouse-server` executable (a name on PATH or a path).
    pub binary: PathBuf,
    pub start_timeout_secs: u64,
}

pub struct ManagedClickHouse {
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
    binary: PathBuf,
    http_port: u16,
    tcp_port: u16,
    start_timeout: Duration,
}

const PID_FILE: &str = "vscc-clickhouse.pid";

impl ManagedClickHouse {
    /// Starts the server and waits until it answers queries.
    pub async fn start(settings: &ManagedClickHouseSettings) -> Result<Self, StoreError> {
        let binary = resolve_binary(&settings.binary).ok_or_else(|| StoreError::BinaryMissing {
            binary: settings.binary.display().to_string(),
        })?;
        std::fs::create_dir_all(&settings.dir).map_err(|e| {
            StoreError::ManagedStart(format!("cannot create {}: {e}", settings.dir.display()))
        })?;
        let dir = settings
            .dir
            .canonicalize()
            .map_err(|e| StoreError::ManagedStart(format!("{}: {e}", settings.dir.display())))?;
        for sub in ["data", "tmp", "log", "user_files", "users.d"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| StoreError::ManagedStart(format!("cannot create {sub}: {e}")))?;
        }
        stop_leftover(&dir).await;

        // A port picked free can be taken before the server binds it: try a few times.
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let mut managed = ManagedClickHouse {
                child: None,
                pid: 0,
                dir: dir.clone(),
                binary: binary.clone(),
                http_port: free_port()?,
                tcp_port: free_port()?,
                start_timeout: Duration::from_secs(settings.start_timeout_secs),
            };
            match managed.spawn().await {
                Ok(()) => return Ok(managed),
                Err(e) => {
                    last_error = e;
                    managed.stop().await;
                }
            }
        }
        Err(StoreError::ManagedStart(last_error))
    }

    /// Starts the server process on this instance's ports and waits until it answers.
    async fn spawn(&mut self) -> Result<(), String> {
        write_configs(&self.dir, self.http_port, self.tcp_port).map_err(|e| e.to_string())?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log/stdout.log"))
            .map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(&self.binary);
        command
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        self.pid = child.id().unwrap_or_default();
        self.child = Some(child);
        let _ = std::fs::write(self.dir.join(PID_FILE), self.pid.to_string());
        self.wait_ready(self.start_timeout).await?;
        tracing::info!(pid = self.pid, http_port = self.http_port, tcp_port = self.tcp_port, dir = %self.dir.display(), "managed ClickHouse is up");
        Ok(())
    }

    /// Stops the server and starts it again on the same ports and data (for operators and
    /// for tests of ClickHouse outages).
    pub async fn restart(&mut self) -> Result<(), StoreError> {
        self.stop().await;
        self.spawn().await.map_err(StoreError::ManagedStart)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let store = Store::new(&self.url(), "default", "", "default").map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if store.ping().await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "clickhouse-server exited with {status}: {}",
                        self.error_log_tail()
                    ));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "no answer within {timeout:?}: {}",
                    self.error_log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn error_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("log/clickhouse-server.err.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The native-protocol port, for `clickhouse-client --port`.
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
    }

    /// ClickHouse merges every file here into its users; vscc writes the analysts' users here.
    pub fn users_dir(&self) -> PathBuf {
        self.dir.join("users.d")
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGTERM, then SIGKILL if the server has not exited within `STOP_GRACE`. ClickHouse
    /// finishes after SIGTERM once no connection is in use (it serves a keep-alive connection
    /// until it has been idle for `keep_alive_timeout`); vscc stops its own background work
    /// first, so that takes about that long.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let started = std::time::Instant::now();
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(_) => tracing::info!(
                    pid,
                    ms = started.elapsed().as_millis() as u64,
                    "managed ClickHouse stopped"
                ),
                Err(_) => {
                    tracing::warn!(
                        pid,
                        "managed ClickHouse did not stop within {STOP_GRACE:?} of SIGTERM; killing it"
                    );
                    let _ = child.kill().await;
                }
            }
        }
        let _ = std::fs::remove_file(self.dir.join(PID_FILE));
    }

    /// Hands the server to a supervisor task that starts it again, with backoff, whenever
    /// it dies, until [`Supervised::stop`].
    pub fn supervise(self) -> Supervised {
        let status = Arc::new(ManagedStatus::default());
        status.up.store(true, Ordering::Relaxed);
        status.pid.store(self.pid, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(1);
        let supervised = Supervised {
            stop: tx,
            status: status.clone(),
            url: self.url(),
            users_dir: self.users_dir(),
        };
        tokio::spawn(supervise(self, status, rx));
        supervised
    }
}

/// How long a stopping server may take after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(4);
/// Waits between restarts of a server that keeps dying: doubling from the first, up to the most.
const RESTART_FIRST: Duration = Duration::from_millis(500);
const RESTART_MOST: Duration = Duration::from_secs(30);

/// What the supervisor reports (`/metrics`).
#[derive(Debug, Default)]
pub struct ManagedStatus {
    pub up: AtomicBool,
    pub restarts: AtomicU64,
    pub pid: AtomicU32,
}

/// A managed server under supervision.
pub struct Supervised {
    stop: mpsc::Sender<oneshot::Sender<()>>,
    status: Arc<ManagedStatus>,
    url: String,
    users_dir: PathBuf,
}

impl Supervised {
    pub fn status(&self) -> &Arc<ManagedStatus> {
        &self.status
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn users_dir(&self) -> PathBuf {
        self.users_dir.clone()
    }

    /// Stops supervising and stops the server; returns once it is gone.
    pub async fn stop(&self) {
        let (reply, done) = oneshot::channel();
        if self.stop.send(reply).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn supervise(
    mut ch: ManagedClickHouse,
    status: Arc<ManagedStatus>,
    mut stop: mpsc::Receiver<oneshot::Sender<()>>,
) {
    let finish = |ch: ManagedClickHouse, reply: Option<oneshot::Sender<()>>| async move {
        let mut ch = ch;
        ch.stop().await;
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    };
    loop {
        let exited = match ch.child.as_mut() {
            Some(child) => tokio::select! {
                exit = child.wait() => exit,
                reply = stop.recv() => {
                    status.up.store(false, Ordering::Relaxed);
                    return finish(ch, reply).await;
                }
            },
            None => return,
        };
        status.up.store(false, Ordering::Relaxed);
        let how = match &exited {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(pid = ch.pid, exit = %how, "managed ClickHouse died; starting it again");
        ch.child = None;
        let mut backoff = super::retry::Backoff::new(RESTART_FIRST, RESTART_MOST);
        loop {
            tokio::select! {
                () = tokio::time::sleep(backoff.next_wait()) => {}
                reply = stop.recv() => return finish(ch, reply).await,
            }
            let started = tokio::select! {
                started = ch.spawn() => started,
                reply = stop.recv() => return finish(ch, reply).await,
            };
            match started {
                Ok(()) => {
                    status.restarts.fetch_add(1, Ordering::Relaxed);
                    status.pid.store(ch.pid, Ordering::Relaxed);
                    status.up.store(true, Ordering::Relaxed);
                    tracing::warn!(pid = ch.pid, "managed ClickHouse started again");
                    break;
                }
                Err(e) => {
                    ch.stop().await;
                    tracing::error!(error = %e, "managed ClickHouse did not start again; trying later");
                }
            }
        }
    }
}

impl Drop for ManagedClickHouse {
    fn drop(&mut self) {
        // Last resort when `stop` was not awaited: never leave the server behind.
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = std::fs::remove_file(self.dir.join(PID_FILE));
        }
    }
}

/// The HTTP URL of a managed server already running in `dir` (started by a `vscc serve`), so
/// that admin commands can use it instead of starting a second one.
pub fn running_url(dir: &Path) -> Option<String> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let config = dir.canonicalize().ok()?.join("config.xml");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if !String::from_utf8_lossy(&cmdline).contains(&config.display().to_string()) {
        return None;
    }
    let text = std::fs::read_to_string(&config).ok()?;
    let port = text
        .split("<http_port>")
        .nth(1)?
        .split("</http_port>")
        .next()?
        .trim()
        .parse::<u16>()
        .ok()?;
    Some(format!("http://127.0.0.1:{port}"))
}

/// A bare name is looked up on PATH and in the sbin folders Debian installs servers into.
fn resolve_binary(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16, StoreError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| StoreError::ManagedStart(format!("no free port: {e}")))
}

/// Stops a server that an earlier vscc left running in the same folder.
async fn stop_leftover(dir: &Path) {
    let Ok(text) = std::fs::read_to_string(dir.join(PID_FILE)) else {
        return;
    };
    let _ = std::fs::remove_file(dir.join(PID_FILE));
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours =
        String::from_utf8_lossy(&cmdline).contains(&dir.join("config.xml").display().to_string());
    if !ours {
        return;
    }
    tracing::warn!(
        pid,
        "stopping a managed ClickHouse left behind by an earlier run"
    );
    // SAFETY: plain kill(2); the pid was checked to be our server.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..150 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn write_configs(dir: &Path, http_port: u16, tcp_port: u16) -> Result<(), StoreError> {
    let d = dir.display();
    let config = format!(
        r#"<?xml version="1.0"?>
<!-- Generated by vscc at every start; edits are overwritten. -->
<yandex>
  <logger>
    <level>warning</level>
    <log>{d}/log/clickhouse-server.log</log>
    <errorlog>{d}/log/clickhouse-server.err.log</errorlog>
    <size>100M</size>
    <count>3</count>
  </logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <max_connections>4096</max_connections>
  <!-- ClickHouse's default, just above the client pool's 2 s idle timeout (so the pool never
       reuses a connection the server is closing); and how long a stopping server waits for an
       idle keep-alive connection. -->
  <keep_alive_timeout>3</keep_alive_timeout>
</yandex>
"#
    );
    let users = r#"<?xml version="1.0"?>
<!-- Generated by vscc at every start; edits are overwritten. -->
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <use_uncompressed_cache>0</use_uncompressed_cache>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval>
        <duration>3600</duration>
        <queries>0</queries>
        <errors>0</errors>
        <result_rows>0</result_rows>
        <read_rows>0</read_rows>
        <execution_time>0</execution_time>
      </interval>
    </default>
  </quotas>
</yandex>
"#;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| StoreError::ManagedStart(format!("{name}: {e}")))
    };
    write("config.xml", &config)?;
    write("users.xml", users)
}
