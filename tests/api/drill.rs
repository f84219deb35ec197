//! The drill of the multi-instance layout, as `scripts/cluster` runs it: 3 NATS servers
//! keeping the record stream (3 replicas), a ClickHouse cluster of one shard with 2 replicas
//! (ZooKeeper; quorum inserts), 2 vscc instances, HAProxy in front of the instances and of
//! ClickHouse's reads (the shipped `scripts/cluster.haproxy.cfg` with this run's ports). While
//! a client posts unique records through HAProxy (sending a refused batch again, as the answer
//! says is safe) and 200 screens watch through it: one vscc instance is killed with SIGKILL
//! (and started again later), then the NATS server leading the stream is killed and restarted,
//! then the ClickHouse replica serving the reads is killed for 30 s. Then every acknowledged id
//! is in ClickHouse exactly once, on both replicas, and nothing else is; every instance's
//! figures equal the recomputation in plain SQL; every screen that lost its instance
//! reconnected and either resumed with unbroken seqs or got a fresh snapshot; and the screens,
//! wherever they are served, show the same figures once ingest stops.

use crate::helpers as common;

use std::collections::{BTreeSet, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, sample_events, serve_command, spawn_app, test_settings, wait_ready};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::broker::{get_json, stream_leader, Nats};
use crate::ch_cluster::ChCluster;

/// HAProxy with the shipped configuration, its frontend and servers on this run's ports.
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// `clickhouse`: the frontend for reads and the ClickHouse servers' HTTP ports.
    fn start(frontend: u16, servers: &[u16], clickhouse: (u16, &[u16])) -> Haproxy {
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster.haproxy.cfg"),
        )
        .unwrap();
        let mut config: String = shipped
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                !l.starts_with("server vscc") && !l.starts_with("server ch")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let lines = |name: &str, ports: &[u16]| -> String {
            ports
                .iter()
                .enumerate()
                .map(|(i, port)| format!("    server {name}{} 127.0.0.1:{port} check\n", i + 1))
                .collect()
        };
        // The server lines go at the end of their backend: ClickHouse's last, then the
        // instances' before the ClickHouse frontend.
        config.push_str(&lines("ch", clickhouse.1));
        let vscc_end = config
            .find("\nfrontend clickhouse")
            .expect("the shipped config has a clickhouse frontend");
        config.insert_str(vscc_end, &lines("vscc", servers));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let haproxy = ["haproxy", "/usr/sbin/haproxy"]
            .into_iter()
            .find(|h| Command::new(h).arg("-v").output().is_ok())
            .expect("haproxy is installed (scripts/setup installs it)");
        let child = Command::new(haproxy)
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .env("VSCC_CLUSTER_ADDR", format!("127.0.0.1:{frontend}"))
            .env(
                "VSCC_CLUSTER_CLICKHOUSE_ADDR",
                format!("127.0.0.1:{}", clickhouse.0),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        Haproxy { child, _dir: dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where an instance finds ClickHouse: reads through HAProxy, inserts to the shards.
struct Store<'a> {
    url: &'a str,
    shards: &'a str,
}

fn instance(port: u16, nats: &Nats, db: &str, spool: &std::path::Path, store: &Store) -> Child {
    serve_command(port, db, spool, "stream-admin")
        .env("VSCC__CLICKHOUSE__URL", store.url)
        .env("VSCC__CLICKHOUSE__CLUSTER", "vscc")
        .env("VSCC__CLICKHOUSE__SHARDS", store.shards)
        .env("VSCC__BROKER__URL", &nats.url)
        .env("VSCC__BROKER__LEASE_SECS", "3")
        .env("VSCC__BROKER__REPLICAS", "3")
        .env("VSCC__SERVER__DRAIN_SECS", "0")
        .env("VSCC__STREAM__TICK_MS", "250")
        .spawn()
        .expect("vscc starts")
}

/// What one screen shows and went through.
#[derive(Default)]
struct ScreenLog {
    scope: String,
    epoch: String,
    seq: u64,
    view: Value,
    /// Connections lost, and how each came back.
    drops: usize,
    resumed: usize,
    fresh_snapshots: usize,
    seq_gaps: usize,
    /// Connected, with figures, now.
    live: bool,
}

/// A wall screen through HAProxy: reconnects as the page does (after 0.5–1 s) with `resume`.
async fn screen(port: u16, log: Arc<Mutex<ScreenLog>>, stop: Arc<AtomicBool>) {
    let scope = log.lock().unwrap().scope.clone();
    let mut reconnect = false;
    while !stop.load(Ordering::Relaxed) {
        let url = format!("ws://127.0.0.1:{port}/ws?token=stream-admin");
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mut sub = json!({"type": "subscribe", "id": "wall", "scope": scope, "metrics": []});
        {
            let l = log.lock().unwrap();
            if !l.epoch.is_empty() {
                sub["resume"] = json!({"epoch": l.epoch, "seq": l.seq});
            }
        }
        if ws
            .send(Message::Text(sub.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        let mut first = true;
        loop {
            let msg = tokio::select! {
                m = ws.next() => m,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) { return; }
                    continue;
                }
            };
            let Some(Ok(Message::Text(text))) = msg else {
                if matches!(msg, Some(Ok(_))) {
                    continue;
                }
                break;
            };
            let m: Value = serde_json::from_str(&text).unwrap();
            let mut l = log.lock().unwrap();
            match m["type"].as_str() {
                Some("snapshot") => {
                    if reconnect && first {
                        l.fresh_snapshots += 1;
                    }
                    l.epoch = m["epoch"].as_str().unwrap().to_string();
                    l.seq = m["seq"].as_u64().unwrap();
                    l.view = m["nodes"].clone();
                }
                Some("delta") => {
                    if reconnect && first {
                        l.resumed += 1;
                    }
                    let seq = m["seq"].as_u64().unwrap();
                    if seq != l.seq + 1 || m["epoch"] != l.epoch.as_str() {
                        l.seq_gaps += 1;
                    }
                    l.seq = seq;
                    for (code, metrics) in m["nodes"].as_object().unwrap() {
                        for (k, f) in metrics.as_object().unwrap() {
                            l.view[code][k] = f.clone();
                        }
                    }
                }
                _ => continue,
            }
            l.live = true;
            first = false;
        }
        {
            let mut l = log.lock().unwrap();
            l.live = false;
            l.drops += 1;
        }
        reconnect = true;
        let wait = 500.0 + 500.0 * rand::random::<f64>();
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

#[tokio::test]
async fn the_cluster_drill_through_haproxy_loses_nothing_and_every_screen_comes_back() {
    let app = spawn_app().await;
    let tree = app.state.tree.clone();
    let catalogue = app.state.hub.catalogue();
    let mut nats = Nats::cluster(3);
    let settings = test_settings();
    let db = settings.clickhouse.database.clone();
    let spool = settings.ingest.spool_dir.clone();
    let http = reqwest::Client::new();
    // ClickHouse: one shard of two replicas (ZooKeeper), reads through HAProxy.
    let mut clickhouse = ChCluster::start(1, 2).await;
    let (port_a, port_b, front, ch_front) = (free_port(), free_port(), free_port(), free_port());
    let ch_ports: Vec<u16> = clickhouse.servers.iter().map(|s| s.http).collect();
    let _haproxy = Haproxy::start(front, &[port_a, port_b], (ch_front, &ch_ports));
    let ch_url = format!("http://127.0.0.1:{ch_front}");
    let shards = clickhouse.shards_setting();
    let ch = Store {
        url: &ch_url,
        shards: &shards,
    };
    let mut a = instance(port_a, &nats, &db, &spool.join("a"), &ch);
    let base_a = format!("http://127.0.0.1:{port_a}");
    wait_ready(&http, &base_a).await;
    let b = instance(port_b, &nats, &db, &spool.join("b"), &ch);
    let base_b = format!("http://127.0.0.1:{port_b}");
    wait_ready(&http, &base_b).await;
    let b_up = Instant::now();
    let base = format!("http://127.0.0.1:{front}");
    wait_ready(&http, &base).await;
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let b = KillOnDrop(b);

    // 200 screens through HAProxy (leastconn: about half on each instance).
    let scopes: Vec<String> = tree
        .with_children(tree.root())
        .into_iter()
        .map(|n| tree.node(n).code.clone())
        .collect();
    let stop_screens = Arc::new(AtomicBool::new(false));
    let mut screens = Vec::new();
    for i in 0..200 {
        let log = Arc::new(Mutex::new(ScreenLog {
            scope: scopes[i % scopes.len()].clone(),
            ..Default::default()
        }));
        tokio::spawn(screen(front, log.clone(), stop_screens.clone()));
        screens.push(log);
    }

    // A client posting unique records through HAProxy; a refused batch is sent again until
    // it is acknowledged.
    let stop_posting = Arc::new(AtomicBool::new(false));
    let acknowledged_count = Arc::new(AtomicUsize::new(0));
    let poster = {
        let (stop, http, base) = (stop_posting.clone(), http.clone(), base.clone());
        let count = acknowledged_count.clone();
        let events = sample_events(&tree, 200_000, 53, 40, "drill");
        tokio::spawn(async move {
            let mut acknowledged: HashSet<String> = HashSet::new();
            for chunk in events.chunks(100) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let deadline = Instant::now() + Duration::from_secs(90);
                while crate::broker::post(&base, &http, chunk).await.is_none() {
                    assert!(Instant::now() < deadline, "a batch refused for 90 s");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                acknowledged.extend(chunk.iter().map(|e| e["id"].as_str().unwrap().to_string()));
                count.store(acknowledged.len(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            acknowledged
        })
    };

    // Resuming elsewhere needs the other instance up 10 s before the screen's position: the
    // position A shares every 5 s, and B reads every 5 s.
    while b_up.elapsed() < Duration::from_secs(21) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live = |screens: &[Arc<Mutex<ScreenLog>>]| {
        screens.iter().filter(|s| s.lock().unwrap().live).count()
    };
    assert_eq!(live(&screens), 200, "every screen has its figures");

    // 1. One vscc instance killed with SIGKILL.
    unsafe { libc::kill(a.id() as i32, libc::SIGKILL) };
    let _ = a.wait();
    let killed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while live(&screens) < 200 || screens.iter().all(|s| s.lock().unwrap().drops == 0) {
        assert!(
            Instant::now() < deadline,
            "screens not back within 30 s: {} live",
            live(&screens)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "vscc instance killed → every screen back through HAProxy: {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    // Started again: HAProxy takes it back once /readyz answers.
    let a = KillOnDrop(instance(port_a, &nats, &db, &spool.join("a2"), &ch));
    wait_ready(&http, &base_a).await;

    // 2. The NATS server leading the record stream killed, and restarted.
    let leader = stream_leader(&nats.url).await;
    nats.servers[leader].kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.servers[leader].spawn();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // 3. The ClickHouse replica that serves the reads (HAProxy's first) killed for 30 s:
    // reads move to the other; quorum inserts cannot be acknowledged by one replica, so the
    // writer retries them, and records keep being acknowledged from the stream meanwhile.
    let acknowledged_before = acknowledged_count.load(Ordering::Relaxed);
    clickhouse.servers[0].kill();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let acknowledged_during = acknowledged_count.load(Ordering::Relaxed) - acknowledged_before;
    clickhouse.servers[0].spawn();
    clickhouse.servers[0].wait_up().await;
    println!("records acknowledged while a ClickHouse replica was down: {acknowledged_during}");
    assert!(
        acknowledged_during >= 1000,
        "ingest went on: {acknowledged_during}"
    );
    // Records keep being acknowledged afterwards.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop_posting.store(true, Ordering::Relaxed);
    let acknowledged = poster.await.unwrap();
    assert!(acknowledged.len() >= 5000, "{}", acknowledged.len());

    // Every acknowledged id once in ClickHouse, and no other: through the Distributed table,
    // and on each replica.
    let store = vscc::Store::new(&ch_url, "default", "", &db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let stored: Vec<String> = loop {
        let ids: Vec<String> = store
            .client()
            .query("SELECT id FROM events WHERE startsWith(id, 'drill')")
            .fetch_all()
            .await
            .unwrap();
        if ids.len() >= acknowledged.len() || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let distinct: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "an id stored twice");
    assert_eq!(stored.len(), acknowledged.len());
    assert!(
        stored.iter().all(|id| acknowledged.contains(id)),
        "an id stored that was never acknowledged"
    );
    for server in &clickhouse.servers {
        let replica = vscc::Store::new(&server.url(), "default", "", &db).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (rows, ids): (u64, u64) = replica
                .client()
                .query(
                    "SELECT count(), uniqExact(id) FROM events_local WHERE startsWith(id, 'drill')",
                )
                .fetch_one()
                .await
                .unwrap();
            if (rows, ids) == (acknowledged.len() as u64, acknowledged.len() as u64) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {rows} rows, {ids} ids of {}",
                server.url(),
                acknowledged.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Both instances' figures equal the plain-SQL recomputation.
    let codes = scopes.clone();
    let now = time::OffsetDateTime::now_utc();
    let sql = store.recompute(&catalogue, &codes, now).await.unwrap();
    for base in [&base_a, &base_b] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let body = get_json(&http, base, "/api/v1/metrics?scope=440300").await;
            let mut differ = Vec::new();
            for code in &codes {
                for (name, f) in body["nodes"][code].as_object().unwrap() {
                    let metric = catalogue.parse_name(name).unwrap();
                    let expected = vscc::domain::metric::judge(
                        catalogue.get(metric).unwrap(),
                        sql[&(code.clone(), metric)].clone(),
                        now,
                        &[],
                    );
                    let live = (f["num"].as_i64(), f["den"].as_i64(), f["status"].clone());
                    let sql = (
                        Some(expected.num),
                        expected.den,
                        json!(expected.status.as_str()),
                    );
                    if live != sql {
                        differ.push(format!("{code} {name}: live {live:?}, SQL {sql:?}"));
                    }
                }
            }
            if differ.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{base}: {:?}",
                &differ[..differ.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // A few screens more: leastconn sends them to the restarted instance.
    for i in 0..20 {
        let log = Arc::new(Mutex::new(ScreenLog {
            scope: scopes[i % scopes.len()].clone(),
            ..Default::default()
        }));
        tokio::spawn(screen(front, log.clone(), stop_screens.clone()));
        screens.push(log);
    }
    // Every screen, wherever served, shows what REST answers (both instances agree).
    for s in &screens {
        let scope = s.lock().unwrap().scope.clone();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rest_a = get_json(&http, &base_a, &format!("/api/v1/metrics?scope={scope}")).await;
            let rest_b = get_json(&http, &base_b, &format!("/api/v1/metrics?scope={scope}")).await;
            let same = {
                let l = s.lock().unwrap();
                l.live && rest_a["nodes"] == rest_b["nodes"] && l.view == rest_b["nodes"]
            };
            if same {
                break;
            }
            assert!(Instant::now() < deadline, "a screen of {scope} differs");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    stop_screens.store(true, Ordering::Relaxed);
    let (mut dropped, mut resumed, mut fresh, mut gaps) = (0, 0, 0, 0);
    for s in &screens {
        let l = s.lock().unwrap();
        dropped += usize::from(l.drops > 0);
        resumed += l.resumed;
        fresh += l.fresh_snapshots;
        gaps += l.seq_gaps;
        assert_eq!(
            l.resumed + l.fresh_snapshots,
            l.drops,
            "each drop came back one way"
        );
    }
    println!("screens that lost their instance: {dropped}; came back resumed: {resumed}, with a fresh snapshot: {fresh}");
    assert!(
        dropped >= 50,
        "about half the screens were on the killed instance: {dropped}"
    );
    assert_eq!(gaps, 0, "seqs unbroken within each epoch");
    assert!(
        resumed >= dropped * 9 / 10,
        "{resumed} of {dropped} resumed"
    );
    drop(a);
    drop(b);
}
