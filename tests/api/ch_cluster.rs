//! A replicated ClickHouse cluster of the test's own, as `scripts/cluster` starts one: ZooKeeper
//! and servers started by `vscc clickhouse --cluster …` on this run's ports. Dropping it stops
//! everything.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::free_port;

pub struct ZooKeeper {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl ZooKeeper {
    pub fn start() -> ZooKeeper {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let port = free_port();
        let config = dir.path().join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=srvr\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("java")
            .args([
                "-Xmx256m",
                "-cp",
                "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar",
            ])
            .arg(format!("-Dzookeeper.log.dir={}", dir.path().display()))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java runs ZooKeeper (scripts/setup installs the zookeeper package)");
        let zk = ZooKeeper {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !zk.ok() {
            assert!(Instant::now() < deadline, "ZooKeeper did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        zk
    }

    fn ok(&self) -> bool {
        use std::io::{Read, Write};
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
        else {
            return false;
        };
        // A ZooKeeper still starting may take the connection and never answer: asked again
        // rather than waited on for ever (a CI run hung here).
        let timeout = Some(Duration::from_secs(2));
        if s.set_read_timeout(timeout).is_err() || s.set_write_timeout(timeout).is_err() {
            return false;
        }
        let mut answer = String::new();
        // `srvr` names the mode only once the server serves requests (`ruok` answers earlier).
        s.write_all(b"srvr").is_ok()
            && s.read_to_string(&mut answer).is_ok()
            && answer.contains("Mode: standalone")
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One server of the cluster, run by `vscc clickhouse`.
pub struct ChServer {
    child: Option<Child>,
    args: Vec<String>,
    dir: std::path::PathBuf,
    pub http: u16,
}

impl ChServer {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    pub fn spawn(&mut self) {
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_vscc"))
                .args(&self.args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("vscc clickhouse starts"),
        );
    }

    /// Waits until the server answers (90 s at most). ClickHouse 18.16 can crash at start when
    /// ZooKeeper is slow to answer its first session (a loaded machine): a server whose process
    /// ended is started again, twice at most.
    pub async fn wait_up(&mut self) {
        // A server that takes the connection and does not answer is asked again.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut restarts = 0;
        while !http
            .get(format!("{}/ping", self.url()))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            let ended = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if ended && restarts < 2 {
                restarts += 1;
                self.spawn();
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start: {}",
                self.url(),
                std::fs::read_to_string(self.dir.join("log/clickhouse-server.err.log"))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server killed with SIGKILL (a machine gone), and the process that ran it stopped.
    pub fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("vscc-clickhouse.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for ChServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

/// `shards` × `replicas` servers under one ZooKeeper, cluster name `vscc`.
pub struct ChCluster {
    pub servers: Vec<ChServer>,
    pub shards: usize,
    _zookeeper: ZooKeeper,
    _dir: tempfile::TempDir,
}

impl ChCluster {
    pub async fn start(shards: usize, replicas: usize) -> ChCluster {
        let zookeeper = ZooKeeper::start();
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let tcp: Vec<Vec<u16>> = (0..shards)
            .map(|_| (0..replicas).map(|_| free_port()).collect())
            .collect();
        let tcp_ports = tcp
            .iter()
            .map(|s| s.iter().map(u16::to_string).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
            .join(";");
        // The analysts' ClickHouse users: one folder every server reads.
        let users = dir.path().join("users.d");
        std::fs::create_dir_all(&users).unwrap();
        let mut servers = Vec::new();
        for (shard, ports) in tcp.iter().enumerate() {
            for (replica, tcp_port) in ports.iter().enumerate() {
                let name = format!("s{}r{}", shard + 1, replica + 1);
                let server_dir = dir.path().join(&name);
                std::fs::create_dir_all(&server_dir).unwrap();
                std::os::unix::fs::symlink(&users, server_dir.join("users.d")).unwrap();
                let http = free_port();
                let args: Vec<String> = vec![
                    "clickhouse".into(),
                    "--dir".into(),
                    server_dir.display().to_string(),
                    "--http-port".into(),
                    http.to_string(),
                    "--tcp-port".into(),
                    tcp_port.to_string(),
                    "--cluster".into(),
                    "vscc".into(),
                    "--cluster-tcp-ports".into(),
                    tcp_ports.clone(),
                    "--zookeeper".into(),
                    format!("127.0.0.1:{}", zookeeper.port),
                    "--shard".into(),
                    (shard + 1).to_string(),
                    "--replica".into(),
                    name,
                    "--interserver-port".into(),
                    free_port().to_string(),
                ];
                let mut server = ChServer {
                    child: None,
                    args,
                    dir: server_dir,
                    http,
                };
                // One after another: starting together on a loaded machine slowed ZooKeeper's
                // first answers enough to crash a server (see `wait_up`).
                server.spawn();
                server.wait_up().await;
                servers.push(server);
            }
        }
        ChCluster {
            servers,
            shards,
            _zookeeper: zookeeper,
            _dir: dir,
        }
    }

    /// The folder of ClickHouse users every server reads (`sql.users_dir` of vscc).
    pub fn users_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("users.d")
    }

    /// `clickhouse.shards` of vscc: each shard's replicas' HTTP URLs.
    pub fn shards_setting(&self) -> String {
        let per_shard = self.servers.len() / self.shards;
        self.servers
            .chunks(per_shard)
            .map(|s| s.iter().map(ChServer::url).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
            .join(";")
    }
}
