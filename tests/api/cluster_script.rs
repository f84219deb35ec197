//! `scripts/cluster` stops as a terminal's Ctrl-C asks: SIGINT to its process group, and every
//! part — the script, NATS, ZooKeeper, the ClickHouse servers and their supervisors, HAProxy,
//! the vscc instances — is gone within 10 s.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// pid → (parent pid, command line) of every process now.
fn processes() -> BTreeMap<i32, (i32, String)> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: the fields follow the last ')'.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        let ppid = fields.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.insert(pid, (ppid, cmdline));
    }
    out
}

/// `root` and every process below it.
fn tree(root: i32) -> BTreeMap<i32, String> {
    let all = processes();
    let mut within: HashSet<i32> = HashSet::from([root]);
    loop {
        let before = within.len();
        for (pid, (ppid, _)) in &all {
            if within.contains(ppid) {
                within.insert(*pid);
            }
        }
        if within.len() == before {
            break;
        }
    }
    all.into_iter()
        .filter(|(pid, _)| within.contains(pid))
        .map(|(pid, (_, cmd))| (pid, cmd))
        .collect()
}

/// An offset for the script's ports at which every one of them is free now.
fn free_offset() -> u16 {
    let ports = [
        14222, 14223, 14224, 16222, 16223, 16224, 12181, 19100, 19101, 19102, 19103, 19104, 19201,
        19202, 19203, 19204, 19301, 19302, 19303, 19304, 18081, 18082, 18083,
    ];
    for _ in 0..50 {
        let offset = 20_000 + rand::random::<u16>() % 20_000;
        let free = ports
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p + offset)).is_ok());
        if free {
            return offset;
        }
    }
    panic!("no free range of ports for scripts/cluster");
}

#[test]
fn ctrl_c_on_the_cluster_script_stops_every_part_within_ten_seconds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let offset = free_offset();
    let wall = crate::helpers::free_port();
    let mut script = Command::new(root.join("scripts/cluster"));
    script
        .current_dir(root)
        .env("VSCC_CLUSTER_DIR", dir.path())
        .env("VSCC_CLUSTER_PORT_OFFSET", offset.to_string())
        .env("VSCC_CLUSTER_ADDR", format!("127.0.0.1:{wall}"))
        // The test binary's build is the one to run.
        .env("VSCC_CLUSTER_NO_BUILD", "1")
        .env_remove("VSCC_CLUSTER_SIGNALS_RESET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, as a terminal's foreground job has.
        .process_group(0);
    // Started as a background job of a non-interactive shell is (SIGINT ignored, which bash
    // cannot trap): the script must still stop on Ctrl-C.
    unsafe {
        script.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = script.spawn().expect("scripts/cluster starts");
    let pgid = child.id() as i32;
    // Whatever happens below, nothing of it outlives the test.
    struct Reap(i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            // The group holds the parts even if the script died first (ClickHouse servers,
            // in sessions of their own, go with their supervisors).
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
            for pid in tree(self.0).keys() {
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }
    let reap = Reap(pgid);

    // Up: the script says so once every instance answers /readyz.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end: the script keeps writing (its summary, then "stopping").
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut said = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let up = line.starts_with("wall screen through");
                said.push(line);
                if up {
                    break;
                }
            }
            Err(_) => panic!(
                "scripts/cluster did not come up within 300 s; it said: {said:?}; logs in {}",
                dir.path().display()
            ),
        }
    }
    let wall_ready = {
        use std::io::{Read, Write};
        let mut http = std::net::TcpStream::connect(("127.0.0.1", wall)).unwrap();
        http.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(http, "GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = http.read_to_string(&mut answer);
        answer.lines().next().unwrap_or("").to_string()
    };
    assert!(
        wall_ready.contains(" 200"),
        "the wall's address answers through HAProxy: {wall_ready}"
    );

    let parts = tree(pgid);
    for part in [
        "nats-server",
        "zookeeper",
        "clickhouse-server",
        "haproxy",
        "vscc demo",
        "vscc serve",
    ] {
        assert!(
            parts.values().any(|cmd| cmd.contains(part)),
            "{part} is not among the cluster's processes: {parts:?}"
        );
    }

    // Ctrl-C: SIGINT to the whole foreground process group.
    let sent = Instant::now();
    unsafe { libc::kill(-pgid, libc::SIGINT) };
    let mut left = parts.clone();
    while !left.is_empty() && sent.elapsed() < Duration::from_secs(10) {
        let _ = child.try_wait();
        let now = processes();
        left.retain(|pid, cmd| now.get(pid).is_some_and(|(_, c)| c == cmd));
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped_in = sent.elapsed();
    assert!(
        left.is_empty(),
        "still running {:.1} s after Ctrl-C: {left:#?}",
        stopped_in.as_secs_f64()
    );
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted script says so in its exit status"
    );
    println!(
        "scripts/cluster: {} processes stopped {:.1} s after Ctrl-C",
        parts.len(),
        stopped_in.as_secs_f64()
    );
    drop(reap);
}
