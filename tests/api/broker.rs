//! Several instances on one record stream (NATS JetStream, `[broker] url`): every instance
//! reads the whole stream and reaches the same verdicts and figures, each record lands in
//! ClickHouse once, and when the writer dies another instance takes its lease and nothing
//! acknowledged is lost. Each test starts its own `nats-server -js` (Debian's, from
//! scripts/setup) and real vscc binaries on the run's ClickHouse.

use crate::helpers as common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    free_port, sample_events, serve_command, spawn_app, spawn_app_with, test_settings, wait_ready,
};
use serde_json::{json, Value};

/// JetStream servers of their own on free ports (one server, or a cluster of several that
/// keeps the stream on each); killed when dropped.
pub struct Nats {
    pub servers: Vec<NatsServer>,
    pub url: String,
}

pub struct NatsServer {
    child: Option<Child>,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl NatsServer {
    pub fn spawn(&mut self) {
        self.child = Some(
            Command::new("nats-server")
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server runs (scripts/setup installs it)"),
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Nats {
    fn start() -> Nats {
        Nats::cluster(1)
    }

    pub fn cluster(size: usize) -> Nats {
        let ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes: Vec<String> = (0..size)
            .map(|_| format!("nats://127.0.0.1:{}", free_port()))
            .collect();
        let mut servers = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let mut args: Vec<String> = ["-js", "-a", "127.0.0.1", "-n"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.extend([
                format!("nats{i}"),
                "-p".into(),
                port.to_string(),
                "-sd".into(),
            ]);
            args.push(dir.path().display().to_string());
            if size > 1 {
                args.extend([
                    "--cluster_name".into(),
                    "vscc-test".into(),
                    "--cluster".into(),
                    routes[i].clone(),
                    "--routes".into(),
                    routes.join(","),
                ]);
            }
            let mut server = NatsServer {
                child: None,
                args,
                _dir: dir,
            };
            server.spawn();
            servers.push(server);
        }
        for port in &ports {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "nats-server did not listen");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let url = ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        Nats { servers, url }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
    }
}

/// A vscc instance on the stream.
struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(
        nats: &Nats,
        database: &str,
        spool: &std::path::Path,
        http: &reqwest::Client,
    ) -> Instance {
        Instance::start_with(nats, database, spool, http, 1).await
    }

    /// An instance whose stream keeps `replicas` copies (one per server of a cluster).
    async fn start_with(
        nats: &Nats,
        database: &str,
        spool: &std::path::Path,
        http: &reqwest::Client,
        replicas: usize,
    ) -> Instance {
        let port = free_port();
        let child = serve_command(port, database, spool, "stream-admin")
            .env("VSCC__BROKER__URL", &nats.url)
            .env("VSCC__BROKER__LEASE_SECS", "3")
            .env("VSCC__BROKER__REPLICAS", replicas.to_string())
            .env("VSCC__SERVER__DRAIN_SECS", "0")
            .env("VSCC__ALERTS__EVAL_INTERVAL_MS", "200")
            .spawn()
            .expect("vscc starts");
        let base = format!("http://127.0.0.1:{port}");
        wait_ready(http, &base).await;
        Instance { child, base }
    }

    async fn post(&self, http: &reqwest::Client, events: &[Value]) -> Option<(u64, u64)> {
        post(&self.base, http, events).await
    }

    /// GET `path` as the admin: the JSON answer.
    async fn get_json(&self, http: &reqwest::Client, path: &str) -> Value {
        get_json(http, &self.base, path).await
    }

    /// Every figure of the city and its districts: (node, metric) → (num, den, status).
    async fn figures(&self, http: &reqwest::Client) -> BTreeMap<String, Value> {
        let body = self.get_json(http, "/api/v1/metrics?scope=440300").await;
        let mut out = BTreeMap::new();
        for (node, metrics) in body["nodes"].as_object().unwrap() {
            for (metric, f) in metrics.as_object().unwrap() {
                out.insert(
                    format!("{node} {metric}"),
                    json!([f["num"], f["den"], f["status"]]),
                );
            }
        }
        out
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` of the server at `base` as the admin: the JSON answer.
pub async fn get_json(http: &reqwest::Client, base: &str, path: &str) -> Value {
    http.get(format!("{base}{path}"))
        .bearer_auth("stream-admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Two instances on `nats` (the stream kept in `replicas` copies) on a fresh database, the
/// first started first (it takes the lease); what a test needs besides.
struct Two {
    tree: std::sync::Arc<vscc::domain::OrgTree>,
    db: String,
    spool: std::path::PathBuf,
    http: reqwest::Client,
    a: Instance,
    b: Instance,
}

impl Two {
    async fn start(nats: &Nats, replicas: usize) -> Two {
        let tree = spawn_app().await.state.tree.clone();
        let settings = test_settings();
        let db = settings.clickhouse.database.clone();
        let spool = settings.ingest.spool_dir.clone();
        let http = reqwest::Client::new();
        let a = Instance::start_with(nats, &db, &spool.join("a"), &http, replicas).await;
        let b = Instance::start_with(nats, &db, &spool.join("b"), &http, replicas).await;
        Two {
            tree,
            db,
            spool,
            http,
            a,
            b,
        }
    }
}

/// Posts records to the server at `base`: (accepted, duplicates), or `None` if refused.
pub async fn post(base: &str, http: &reqwest::Client, events: &[Value]) -> Option<(u64, u64)> {
    let res = http
        .post(format!("{base}/api/v1/events"))
        .bearer_auth("stream-admin")
        .json(&json!(events))
        .send()
        .await
        .ok()?;
    if res.status() != 200 {
        return None;
    }
    let body: Value = res.json().await.ok()?;
    Some((body["accepted"].as_u64()?, body["duplicates"].as_u64()?))
}

/// Rows and distinct ids in `events`, once `expected` rows are there (30 s at most).
async fn landed(store: &vscc::Store, expected: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (rows, ids): (u64, u64) = store
            .client()
            .query("SELECT count(), uniqExact(id) FROM events")
            .fetch_one()
            .await
            .unwrap();
        if rows >= expected || Instant::now() > deadline {
            return (rows, ids);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every instance shows the same figures (10 s at most) and answers them.
async fn agreed(instances: &[&Instance], http: &reqwest::Client) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = Vec::new();
        for i in instances {
            all.push(i.figures(http).await);
        }
        if all.windows(2).all(|w| w[0] == w[1]) {
            return all.swap_remove(0);
        }
        if Instant::now() > deadline {
            let differ: Vec<_> = all[0]
                .iter()
                .filter(|(k, v)| all[1].get(*k) != Some(v))
                .take(5)
                .collect();
            panic!("instances disagree: {differ:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn instances_on_one_stream_agree_and_each_record_lands_once() {
    let nats = Nats::start();
    let Two {
        tree,
        db,
        spool,
        http,
        a,
        b,
    } = Two::start(&nats, 1).await;

    // Batches to either instance; every third batch is sent again to the other one.
    let events = sample_events(&tree, 6000, 17, 40, "stream");
    let (mut accepted, mut duplicates, mut resent) = (0, 0, 0);
    for (i, chunk) in events.chunks(500).enumerate() {
        let (first, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (acc, dup) = first.post(&http, chunk).await.expect("accepted");
        accepted += acc;
        duplicates += dup;
        if i % 3 == 0 {
            let (acc, dup) = other.post(&http, chunk).await.expect("accepted");
            assert_eq!(
                (acc, dup),
                (0, chunk.len() as u64),
                "a resent batch is all duplicates"
            );
            duplicates += dup;
            resent += dup;
        }
    }
    // One request larger than the largest NATS message (1 MiB): several messages, in order.
    let big = sample_events(&tree, 30000, 18, 40, "stream-big");
    let (acc, dup) = b.post(&http, &big).await.expect("accepted");
    assert_eq!((acc, dup), (30000, 0));
    accepted += acc;
    assert_eq!(accepted + duplicates, 6000 + 30000 + resent);
    assert!(resent >= 1500);
    let figures = agreed(&[&a, &b], &http).await;
    assert!(figures.len() > 200, "{} figures", figures.len());

    let store = vscc::Store::new(&common::clickhouse_url(), "default", "", &db).unwrap();
    assert_eq!(
        landed(&store, accepted).await,
        (accepted, accepted),
        "each record once"
    );

    // Alerts are evaluated by one instance (the lease holder): an alert fires again only after
    // it resolved or lost its data (as records arrive: a case moved to another street by an
    // earlier record leaves a street with none), never once more for another instance.
    let deadline = Instant::now() + Duration::from_secs(10);
    let firing = loop {
        let (fingerprints, repeated): (u64, u64) = store
            .client()
            .query(
                "SELECT count(), countIf(c > r + 1) FROM (SELECT fingerprint, countIf(state = 'firing') AS c, \
                 countIf(state IN ('resolved', 'no_data')) AS r FROM alert_events GROUP BY fingerprint HAVING c > 0)",
            )
            .fetch_one()
            .await
            .unwrap();
        if repeated > 0 {
            let rows: Vec<(u32, String, String, String)> = store
                .client()
                .query(
                    "SELECT toUInt32(at), fingerprint, state, summary FROM alert_events WHERE fingerprint IN \
                     (SELECT fingerprint FROM alert_events GROUP BY fingerprint \
                      HAVING countIf(state = 'firing') > countIf(state IN ('resolved', 'no_data')) + 1) ORDER BY fingerprint, at",
                )
                .fetch_all()
                .await
                .unwrap();
            panic!("an alert fired twice: {rows:#?}");
        }
        if fingerprints > 0 || Instant::now() > deadline {
            break fingerprints;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(firing > 0, "the sample fires some alerts");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A screen on one instance is listed by the other (presence covers every instance).
    let port: u16 = a.base.rsplit(':').next().unwrap().parse().unwrap();
    let (mut screen, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?token=stream-admin"))
            .await
            .expect("a screen connects");
    common::ws::subscribe(&mut screen, "wall", "440305", None).await;
    assert!(common::ws::next_json(&mut screen, Duration::from_secs(10))
        .await
        .is_some());
    let a_instance = a.get_json(&http, "/healthz").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let listed = b.get_json(&http, "/api/v1/screens").await;
        let found = listed.as_array().unwrap().iter().any(|s| {
            s["instance"] == a_instance["instance"] && s["subscriptions"][0]["scope"] == "440305"
        });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B does not list A's screen: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(screen);

    // A third instance started now rebuilds from ClickHouse and the stream to the same figures.
    let c = Instance::start(&nats, &db, &spool.join("c"), &http).await;
    assert_eq!(agreed(&[&a, &c], &http).await, figures);
    let repeated: u64 = store
        .client()
        .query(
            "SELECT countIf(c > r + 1) FROM (SELECT fingerprint, countIf(state = 'firing') AS c, \
             countIf(state IN ('resolved', 'no_data')) AS r FROM alert_events GROUP BY fingerprint)",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(repeated, 0, "an alert fired twice");
}

#[tokio::test]
async fn when_the_writer_is_killed_another_instance_takes_over_and_nothing_acknowledged_is_lost() {
    let nats = Nats::start();
    // The first to start takes the lease.
    let Two {
        tree,
        db,
        spool,
        http,
        mut a,
        b,
    } = Two::start(&nats, 1).await;

    let events = sample_events(&tree, 8000, 23, 40, "failover");
    let mut acknowledged = 0;
    let mut killed = None;
    for (i, chunk) in events.chunks(400).enumerate() {
        if i == 8 {
            // SIGKILL: no drain, no last insert.
            unsafe { libc::kill(a.child.id() as i32, libc::SIGKILL) };
            let _ = a.child.wait();
            killed = Some(Instant::now());
        }
        // Clients of a dead instance go to the other one (as a balancer would send them).
        let target = if i % 2 == 0 && i < 8 { &a } else { &b };
        if let Some((acc, _)) = target.post(&http, chunk).await {
            acknowledged += acc;
        }
    }
    assert!(acknowledged >= 6000, "{acknowledged}");
    let store = vscc::Store::new(&common::clickhouse_url(), "default", "", &db).unwrap();
    let (rows, ids) = landed(&store, acknowledged).await;
    assert_eq!(
        (rows, ids),
        (acknowledged, acknowledged),
        "every acknowledged record once"
    );
    // For the record (not a goal): how long the records took to land once the writer died
    // (the lease lives 3 s here, 6 s by default).
    if let Some(k) = killed {
        println!(
            "writer killed → every acknowledged record in ClickHouse: {:.1} s",
            k.elapsed().as_secs_f64()
        );
    }

    // A restarted instance agrees with the one that kept going.
    let a2 = Instance::start(&nats, &db, &spool.join("a2"), &http).await;
    agreed(&[&a2, &b], &http).await;
}

/// Which server of the test cluster (`nats<i>`) leads the record stream.
pub async fn stream_leader(url: &str) -> usize {
    let servers: Vec<async_nats::ServerAddr> = url.split(',').map(|u| u.parse().unwrap()).collect();
    let client = async_nats::connect(servers).await.expect("NATS answers");
    let mut stream = async_nats::jetstream::new(client)
        .get_stream("VSCC_RECORDS")
        .await
        .expect("the record stream exists");
    let info = stream.info().await.expect("stream info");
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");
    leader
        .trim_start_matches("nats")
        .parse()
        .expect("servers are named nats<i>")
}

/// The server leading the record stream in a 3-server NATS cluster is killed mid-ingest and started again: clients that
/// were refused send again (as the answer says is safe); every acknowledged record lands
/// once, and the instances agree.
#[tokio::test]
async fn a_nats_server_killed_and_restarted_loses_nothing_acknowledged() {
    let mut nats = Nats::cluster(3);
    let Two {
        tree,
        db,
        http,
        a,
        b,
        ..
    } = Two::start(&nats, 3).await;

    let events = sample_events(&tree, 6000, 31, 40, "natsdown");
    let mut acknowledged = std::collections::HashSet::new();
    let mut nats_killed: Option<Instant> = None;
    let mut leader = 0;
    for (i, chunk) in events.chunks(300).enumerate() {
        if i == 5 {
            leader = stream_leader(&nats.url).await;
            nats.servers[leader].kill();
            nats_killed = Some(Instant::now());
        }
        if i == 14 {
            nats.servers[leader].spawn();
        }
        let target = if i % 2 == 0 { &a } else { &b };
        // A refused request is sent again, as a client does (ids make it safe).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if target.post(&http, chunk).await.is_some() {
                acknowledged.extend(chunk.iter().map(|e| e["id"].as_str().unwrap().to_string()));
                if let (5, Some(k)) = (i, nats_killed) {
                    // For the record (not a goal).
                    println!(
                        "NATS server killed → a write accepted again: {:.1} s",
                        k.elapsed().as_secs_f64()
                    );
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no instance took batch {i} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(acknowledged.len(), 6000);
    let store = vscc::Store::new(&common::clickhouse_url(), "default", "", &db).unwrap();
    assert_eq!(
        landed(&store, 6000).await,
        (6000, 6000),
        "every record once"
    );
    agreed(&[&a, &b], &http).await;
}

/// A wall screen's view: the subscription's epoch, its last seq, and the figures it shows.
struct Screen {
    ws: common::ws::Ws,
    scope: String,
    epoch: String,
    seq: u64,
    view: Value,
}

impl Screen {
    async fn open(port: u16, scope: &str) -> Screen {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{port}/ws?token=stream-admin"
        ))
        .await
        .expect("a screen connects");
        common::ws::subscribe(&mut ws, "wall", scope, None).await;
        let snapshot = next_figures(&mut ws, Duration::from_secs(10))
            .await
            .expect("a snapshot");
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        Screen {
            ws,
            scope: scope.to_string(),
            epoch: snapshot["epoch"].as_str().unwrap().to_string(),
            seq: snapshot["seq"].as_u64().unwrap(),
            view: snapshot["nodes"].clone(),
        }
    }

    /// Takes in a delta: its seq must follow the last one.
    fn take(&mut self, msg: &Value) {
        assert_eq!(msg["type"], "delta", "{msg}");
        assert_eq!(msg["epoch"], self.epoch.as_str());
        assert_eq!(
            msg["seq"].as_u64().unwrap(),
            self.seq + 1,
            "seqs go on unbroken"
        );
        self.seq += 1;
        for (code, metrics) in msg["nodes"].as_object().unwrap() {
            for (m, f) in metrics.as_object().unwrap() {
                self.view[code][m] = f.clone();
            }
        }
    }

    /// Takes in what arrived within `within` (until the connection closes; alert notices
    /// skipped).
    async fn read_for(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while let Some(msg) = common::ws::next_json(
            &mut self.ws,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
        {
            if msg["type"] == "delta" {
                self.take(&msg);
            }
        }
    }
}

/// Screens on an instance killed with SIGKILL reconnect to another (as HAProxy sends them)
/// and resume their epochs there, from the positions the first one shared: no fresh
/// snapshot, seqs unbroken, and once ingest stops every screen shows what the survivor's REST
/// answers.
#[tokio::test]
async fn screens_of_a_killed_instance_resume_on_another_with_unbroken_seqs() {
    let nats = Nats::start();
    let Two {
        tree,
        http,
        mut a,
        b,
        ..
    } = Two::start(&nats, 1).await;
    let b_up = Instant::now();

    // Records arrive all along, through the instance that lives.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poster = {
        let (stop, http, base) = (stop.clone(), http.clone(), b.base.clone());
        let events = sample_events(&tree, 40_000, 41, 40, "resume");
        tokio::spawn(async move {
            let mut acknowledged = 0u64;
            for chunk in events.chunks(100) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if let Some((acc, _)) = post(&base, &http, chunk).await {
                    acknowledged += acc;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            acknowledged
        })
    };
    // A resume elsewhere looks back 10 s before the screen's position for what moves with
    // the clock: the other instance must have been up that long.
    while b_up.elapsed() < Duration::from_secs(11) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let port = |i: &Instance| -> u16 { i.base.rsplit(':').next().unwrap().parse().unwrap() };
    let root = tree.root();
    let scopes: Vec<String> = tree
        .with_children(root)
        .into_iter()
        .map(|n| tree.node(n).code.clone())
        .collect();
    let mut screens = Vec::new();
    for i in 0..20 {
        screens.push(Screen::open(port(&a), &scopes[i % scopes.len()]).await);
    }
    for s in &mut screens {
        s.read_for(Duration::from_millis(150)).await;
    }
    unsafe { libc::kill(a.child.id() as i32, libc::SIGKILL) };
    let _ = a.child.wait();
    // What was on its way, until each connection drops.
    for s in &mut screens {
        s.read_for(Duration::from_millis(500)).await;
    }
    let mut resumed = 0;
    for s in &mut screens {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{}/ws?token=stream-admin",
            port(&b)
        ))
        .await
        .expect("the screen reconnects to the other instance");
        common::ws::subscribe(
            &mut ws,
            "wall",
            &s.scope,
            Some(json!({"epoch": s.epoch, "seq": s.seq})),
        )
        .await;
        s.ws = ws;
        let first = next_figures(&mut s.ws, Duration::from_secs(10))
            .await
            .expect("records keep arriving: the resumed screen gets a delta");
        assert_ne!(
            first["type"], "snapshot",
            "resumed, not started over: {first}"
        );
        s.take(&first);
        resumed += 1;
    }
    assert_eq!(resumed, screens.len());
    for s in &mut screens {
        s.read_for(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = poster.await.unwrap();
    assert!(acknowledged > 1000, "{acknowledged}");

    // Ingest stopped: every screen converges to the survivor's figures.
    for s in &mut screens {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let rest = b
                .get_json(&http, &format!("/api/v1/metrics?scope={}", s.scope))
                .await;
            if rest["nodes"] == s.view {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "screen of {} differs from REST: {}",
                s.scope,
                first_difference(&rest["nodes"], &s.view)
            );
            s.read_for(Duration::from_millis(300)).await;
        }
    }
}

/// The next snapshot or delta (alert notices arrive on the same socket).
async fn next_figures(ws: &mut common::ws::Ws, within: Duration) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let msg =
            common::ws::next_json(ws, deadline.saturating_duration_since(Instant::now())).await?;
        if msg["type"] == "snapshot" || msg["type"] == "delta" {
            return Some(msg);
        }
    }
}

fn first_difference(rest: &Value, view: &Value) -> String {
    for (code, metrics) in rest.as_object().unwrap() {
        for (m, f) in metrics.as_object().unwrap() {
            if &view[code][m] != f {
                return format!("{code} {m}: REST {f}, screen {}", view[code][m]);
            }
        }
    }
    "the screen has more".into()
}

/// The record stream's writer goes through the one insert path and its one retry policy: an
/// insert that retrying cannot fix (a column the rows need was dropped) is said in /readyz and
/// /metrics exactly as the local log's writer says it, and the records land once the store is
/// fixed.
#[tokio::test]
async fn a_stream_writer_stuck_on_an_insert_says_so_as_the_local_one_does() {
    let nats = Nats::start();
    let mut settings = test_settings();
    settings.broker.url = nats.url.clone();
    settings.ingest.blocked_retry_secs = 1;
    let app = common::spawn_app_with(settings).await;
    let store = app.store().clone();
    let ddl = |sql: &'static str| {
        let store = store.clone();
        async move { store.client().query(sql).execute().await.unwrap() }
    };
    ddl("ALTER TABLE events DROP COLUMN num_values").await;
    let events: Vec<Value> = (0..3)
        .map(|i| {
            json!({"id": format!("stuck-{i}"), "kind": "veteran.registered", "org": "440305007003",
                   "at": "2021-03-04T10:15:00+08:00", "data": {"person_id": format!("stuck-{i}")}})
        })
        .collect();
    assert_eq!(app.post_events(&json!(events)).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let readiness = loop {
        let res = app.get("/readyz").await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        if status == 503 && body["writer"] != "ok" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never said the stream's writer is stuck: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        readiness["writer"].as_str().unwrap().contains("num_values"),
        "{readiness}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("vscc_ingest_writer_blocked 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"vscc_ingest_insert_failures_total{retryable="no"}"#),
        "{metrics}"
    );
    ddl("ALTER TABLE events ADD COLUMN num_values Array(Int64)").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (rows, ids): (u64, u64) = store
            .client()
            .query("SELECT count(), uniqExact(id) FROM events")
            .fetch_one()
            .await
            .unwrap();
        if rows == 3 {
            assert_eq!(ids, 3);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the records did not land once the store was fixed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/readyz").await.status() != 200 {
        assert!(
            Instant::now() < deadline,
            "readyz stayed unready after the fix"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("vscc_ingest_writer_blocked 0"),
        "{metrics}"
    );
    app.stop().await;
}

/// Corrections and withdrawals sent to either instance of one stream: both instances reach the
/// same figures, two corrections of one version racing on the two instances never both land,
/// and the figures equal the SQL recomputation over the effective records.
#[tokio::test]
async fn corrections_on_either_instance_agree_and_equal_sql() {
    let nats = Nats::start();
    let Two {
        tree,
        db,
        http,
        a,
        b,
        ..
    } = Two::start(&nats, 1).await;
    let events = sample_events(&tree, 2000, 23, 60, "fix");
    for chunk in events.chunks(500) {
        a.post(&http, chunk).await.expect("accepted");
    }
    let send = |instance: &Instance, id: &str, body: Value, withdraw: bool| {
        let request = if withdraw {
            http.delete(format!("{}/api/v1/events/{id}", instance.base))
        } else {
            http.put(format!("{}/api/v1/events/{id}", instance.base))
        };
        let request = request.bearer_auth("stream-admin").json(&body).send();
        async move {
            let r = request.await.expect("request sent");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let content = |i: usize| {
        let mut record = events[i].clone();
        record.as_object_mut().unwrap().remove("id");
        record
    };
    let same_kind = |i: usize, k: usize| {
        let kind = &events[i]["kind"];
        let others: Vec<usize> = (0..events.len())
            .filter(|&j| events[j]["kind"] == *kind && j != i)
            .collect();
        others[k % others.len()]
    };
    let mut changed = 0;
    // Rows the stream lands: the records, two per correction, one per withdrawal.
    let mut rows = events.len() as u64;
    for i in (0..events.len()).step_by(17) {
        let id = events[i]["id"].as_str().unwrap();
        let instance = if i % 2 == 0 { &a } else { &b };
        let (status, answer) = if i % 3 == 0 {
            send(instance, id, json!({"reason": "重复上报"}), true).await
        } else {
            let body = json!({"record": content(same_kind(i, i)), "reason": "更正"});
            send(instance, id, body, false).await
        };
        assert_eq!(status, 200, "{id}: {answer}");
        changed += 1;
        rows += if i % 3 == 0 { 1 } else { 2 };
    }
    // Two corrections of one version at once, one on each instance.
    let mut raced = 0;
    // (Records the loop above left alone: a withdrawn one would refuse both.)
    for i in (5..events.len())
        .step_by(97)
        .filter(|i| i % 17 != 0)
        .take(8)
    {
        let id = events[i]["id"].as_str().unwrap();
        let first = json!({"record": content(same_kind(i, 1)), "reason": "A 更正"});
        let second = json!({"record": content(same_kind(i, 2)), "reason": "B 更正"});
        let ((s1, _), (s2, _)) =
            tokio::join!(send(&a, id, first, false), send(&b, id, second, false));
        let ok = [s1, s2].iter().filter(|s| **s == 200).count();
        assert!(
            ok >= 1 && [s1, s2].iter().all(|s| *s == 200 || *s == 409),
            "{id}: {s1} {s2}"
        );
        // Read on A: B's rows reach A's reader a moment after B answered.
        let deadline = Instant::now() + Duration::from_secs(10);
        let versions = loop {
            let history = a.get_json(&http, &format!("/api/v1/events/{id}")).await;
            let versions = history["versions"].as_array().expect("versions").len();
            if versions == 1 + ok || Instant::now() > deadline {
                break versions;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            versions,
            1 + ok,
            "{id}: one version per correction that landed"
        );
        raced += 1;
        rows += 2 * ok as u64;
    }
    assert!(changed > 100 && raced == 8);
    let figures = agreed(&[&a, &b], &http).await;

    // Another instance, and a process of its own reading ClickHouse alone once every row has
    // landed, rebuild the same figures, and they equal SQL.
    let store = vscc::Store::new(&common::clickhouse_url(), "default", "", &db).unwrap();
    assert_eq!(
        landed(&store, rows).await.0,
        rows,
        "each row of a change once"
    );
    let mut settings = test_settings();
    settings.clickhouse.database = db.clone();
    let third = Instance::start(&nats, &db, &settings.ingest.spool_dir.join("c"), &http).await;
    assert_eq!(agreed(&[&a, &third], &http).await, figures);
    let rebuilt = spawn_app_with(settings).await;
    common::compared_with_sql(
        &rebuilt,
        &rebuilt.state.hub.all_current(),
        rebuilt.state.hub.now(),
    )
    .await;
    rebuilt.stop().await;
}

/// A step on an assignment through instance `i`: the status and the answer.
async fn task_step(
    http: &reqwest::Client,
    i: &Instance,
    task: &str,
    org: &str,
    action: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .post(format!(
            "{}/api/v1/tasks/{task}/assignments/{org}/{action}",
            i.base
        ))
        .bearer_auth("stream-admin")
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The task as every instance shows it, once they all show the same (10 s at most).
async fn task_agreed(instances: &[&Instance], http: &reqwest::Client, task: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut all = Vec::new();
        for i in instances {
            let mut v = i.get_json(http, &format!("/api/v1/tasks/{task}")).await;
            // Read at slightly different moments: the overdue flags are the same records'.
            v.as_object_mut().map(|o| o.remove("overdue"));
            all.push(v);
        }
        if all.windows(2).all(|w| w[0] == w[1]) {
            return all.swap_remove(0);
        }
        assert!(
            Instant::now() < deadline,
            "instances disagree on task {task}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tasks on two instances of one stream: steps taken through either reach the same states,
/// the same step raced through both lands once (the other is told so), an instance killed
/// with -9 mid-way loses none of the steps it acknowledged, and the task figures agree.
#[tokio::test]
async fn task_steps_through_two_instances_agree_land_once_and_survive_kill_9() {
    let nats = Nats::start();
    let Two {
        db,
        spool,
        http,
        a,
        mut b,
        ..
    } = Two::start(&nats, 1).await;
    let streets = [
        "440304001",
        "440304002",
        "440304004",
        "440304005",
        "440304006",
        "440304007",
    ];
    let due = (time::OffsetDateTime::now_utc() + time::Duration::days(3)).date();
    let r = http
        .post(format!("{}/api/v1/tasks", a.base))
        .bearer_auth("stream-admin")
        .json(
            &json!({"id": "stream-task", "title": "走访", "instruction": "逐户走访",
            "due": due.to_string(), "units": streets}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    task_agreed(&[&a, &b], &http, "stream-task").await;

    // The same sign through both instances at once: one lands, the other is refused.
    let (x, y) = tokio::join!(
        task_step(&http, &a, "stream-task", streets[0], "sign", json!({})),
        task_step(&http, &b, "stream-task", streets[0], "sign", json!({}))
    );
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{x:?} {y:?}");
    let view = task_agreed(&[&a, &b], &http, "stream-task").await;
    let signs = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["org"] == streets[0] && e["step"] == "sign")
        .count();
    assert_eq!(signs, 1, "the raced sign is on the timeline once");

    // Steps alternate between the instances; each acknowledged one is remembered.
    let mut acked: Vec<(String, &str)> = Vec::new();
    for (n, org) in streets.iter().enumerate() {
        let via = |k: usize| if (n + k) % 2 == 0 { &a } else { &b };
        for (k, (action, body)) in [
            ("sign", json!({})),
            ("feedback", json!({"text": "进展"})),
            ("submit", json!({"text": "完成"})),
        ]
        .into_iter()
        .enumerate()
        {
            if n == 0 && action == "sign" {
                continue;
            }
            // The other instance has read the step before (the stream carries it).
            task_agreed(&[&a, &b], &http, "stream-task").await;
            let (status, answer) = task_step(&http, via(k), "stream-task", org, action, body).await;
            assert_eq!(status, 200, "{org} {action}: {answer}");
            acked.push((org.to_string(), action));
        }
    }
    // Instance b takes some acceptances, and is killed with -9 right after acknowledging them.
    for org in &streets[..3] {
        task_agreed(&[&a, &b], &http, "stream-task").await;
        let (status, answer) = task_step(&http, &b, "stream-task", org, "accept", json!({})).await;
        assert_eq!(status, 200, "{answer}");
        acked.push((org.to_string(), "accept"));
    }
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(b.child.id() as i32, libc::SIGKILL) };
    let _ = b.child.wait();
    let (status, _) = task_step(
        &http,
        &a,
        "stream-task",
        streets[3],
        "return",
        json!({"reason": "补材料"}),
    )
    .await;
    assert_eq!(status, 200);
    acked.push((streets[3].to_string(), "return"));

    // b again, from ClickHouse and the stream: every acknowledged step, on both, once.
    b = Instance::start(&nats, &db, &spool.join("b2"), &http).await;
    let view = task_agreed(&[&a, &b], &http, "stream-task").await;
    let timeline = view["timeline"].as_array().unwrap();
    for (org, action) in &acked {
        let n = timeline
            .iter()
            .filter(|e| e["org"] == org.as_str() && e["step"] == *action)
            .count();
        assert_eq!(n, 1, "{org} {action} once on the timeline");
    }
    let states: BTreeMap<String, String> = view["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["org"].as_str().unwrap().to_string(),
                x["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states[streets[0]], "accepted");
    assert_eq!(states[streets[3]], "returned");
    assert_eq!(states[streets[5]], "submitted");
    let figures = agreed(&[&a, &b], &http).await;
    assert_eq!(
        figures["440304 task_assignments"][0], 3,
        "three open in 福田: {figures:?}"
    );
    assert_eq!(figures["440300 task_on_time"], json!([3, 3, "met"]));
}
