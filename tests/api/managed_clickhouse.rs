//! The embedded default: `vscc serve` without a ClickHouse URL starts its own clickhouse-server
//! and never leaves it behind. These tests run the real binary as a child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The admin token of the servers these tests start (`/metrics` needs one).
const ADMIN: &str = "managed-admin";

struct Serve {
    child: Child,
    port: u16,
    dir: PathBuf,
}

/// A failed test leaves neither vscc nor its ClickHouse behind (SIGKILL; the ClickHouse it
/// started gets SIGTERM from the kernel when vscc dies).
impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let port = crate::helpers::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_vscc"))
            .arg("serve")
            .env("VSCC_ADDR", format!("127.0.0.1:{port}"))
            .env("VSCC__CLICKHOUSE__MANAGED__DIR", dir)
            .env_remove("VSCC__CLICKHOUSE__URL")
            .env("VSCC_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("vscc starts");
        let serve = Serve {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        wait_until("/readyz", Duration::from_secs(60), || serve.ready());
        serve
    }

    fn ready(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        use std::io::{Read, Write};
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = write!(
            s,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        buf.starts_with("HTTP/1.1 200")
    }

    fn clickhouse_pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("vscc-clickhouse.pid"))
            .expect("pid file of the managed server")
            .trim()
            .parse()
            .unwrap()
    }

    fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

#[test]
fn sigterm_and_sigint_stop_the_managed_clickhouse_too() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut serve = Serve::start(tmp.path());
        let ch = serve.clickhouse_pid();
        assert!(alive(ch));
        let asked = Instant::now();
        serve.signal(sig);
        let status = serve.child.wait().unwrap();
        // Background work stops before ClickHouse is asked to, so it is not held up by a
        // connection of ours (it took 15 s, then a SIGKILL, in 8 of 15 stops before).
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "vscc took {:?} to stop on signal {sig}",
            asked.elapsed()
        );
        assert!(
            status.success(),
            "vscc exits cleanly on signal {sig}: {status}"
        );
        assert!(!alive(ch), "clickhouse-server {ch} outlived vscc");
        assert!(!tmp.path().join("vscc-clickhouse.pid").exists());
    }
}

#[test]
fn a_killed_vscc_takes_its_clickhouse_along_and_the_next_start_works() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut serve = Serve::start(tmp.path());
    let ch = serve.clickhouse_pid();
    serve.signal(libc::SIGKILL);
    serve.child.wait().unwrap();
    wait_until(
        "the orphaned clickhouse-server to exit",
        Duration::from_secs(30),
        || !alive(ch),
    );
    // The pid file is still there (nobody removed it): it must not block the next start.
    assert!(tmp.path().join("vscc-clickhouse.pid").exists());
    let mut again = Serve::start(tmp.path());
    assert_ne!(again.clickhouse_pid(), ch);
    again.signal(libc::SIGTERM);
    again.child.wait().unwrap();
}

#[test]
fn a_missing_clickhouse_binary_gets_one_clear_line() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vscc"))
        .arg("migrate")
        .env("VSCC__CLICKHOUSE__MANAGED__DIR", tmp.path())
        .env(
            "VSCC__CLICKHOUSE__MANAGED__BINARY",
            "no-such-clickhouse-server",
        )
        .env_remove("VSCC__CLICKHOUSE__URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-clickhouse-server was not found: run scripts/setup"),
        "{stderr}"
    );
}

impl Serve {
    /// GET a path: status and body, or `None` when no answer came within `timeout`.
    fn get(&self, path: &str, timeout: Duration) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let status = buf.get(9..12)?.parse().ok()?;
        Some((status, buf))
    }
}

#[test]
fn a_frozen_or_dead_managed_clickhouse_is_noticed_and_started_again() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut serve = Serve::start(tmp.path());
    let ch = serve.clickhouse_pid();

    // Frozen: a readiness probe still gets its answer, within a second.
    unsafe { libc::kill(ch as i32, libc::SIGSTOP) };
    let asked = Instant::now();
    let answer = serve.get("/readyz", Duration::from_secs(5));
    let took = asked.elapsed();
    unsafe { libc::kill(ch as i32, libc::SIGCONT) };
    let (status, body) = answer.expect("/readyz answers while ClickHouse is frozen");
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_millis(1500), "/readyz took {took:?}");
    wait_until("/readyz after SIGCONT", Duration::from_secs(30), || {
        serve.ready()
    });

    // Dead: vscc starts it again, says so in /metrics, and is ready again.
    unsafe { libc::kill(ch as i32, libc::SIGKILL) };
    wait_until("a new clickhouse-server", Duration::from_secs(30), || {
        std::fs::read_to_string(tmp.path().join("vscc-clickhouse.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|p| p != ch && alive(p))
    });
    wait_until("/readyz after the restart", Duration::from_secs(60), || {
        serve.ready()
    });
    // The supervisor counts the restart once its own readiness check passes, which may be a
    // moment after ours.
    wait_until("the restart in /metrics", Duration::from_secs(10), || {
        serve
            .get("/metrics", Duration::from_secs(5))
            .is_some_and(|(_, m)| {
                m.contains("vscc_clickhouse_managed_restarts_total 1")
                    && m.contains("vscc_clickhouse_managed_up 1")
            })
    });
    let again = serve.clickhouse_pid();
    serve.signal(libc::SIGTERM);
    assert!(serve.child.wait().unwrap().success());
    assert!(
        !alive(again),
        "the restarted clickhouse-server outlived vscc"
    );
}
