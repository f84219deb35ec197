//! The embedded default: `vscc serve` without a ClickHouse URL starts its own clickhouse-server
//! and never leaves it behind. These tests run the real binary as a child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

struct Serve {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_vscc"))
            .arg("serve")
            .env("VSCC_ADDR", format!("127.0.0.1:{port}"))
            .env("VSCC__CLICKHOUSE__MANAGED__DIR", dir)
            .env_remove("VSCC__CLICKHOUSE__URL")
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
        serve.signal(sig);
        let status = serve.child.wait().unwrap();
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
