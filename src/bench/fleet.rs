//! `vscc bench fleet`: several instances on one port (SO_REUSEPORT) on one record stream (a
//! bench-owned `nats-server -js`), watched by screens from several load-generator processes
//! (each process here may hold at most 20,000 descriptors, a server as well).
//!
//! 1. **Screens sustained:** two instances share the port; `--screens` screens (city scope,
//!    five headline metrics, tick 1 s) connect from `--clients` processes; 200 records/s for
//!    10 s; sustained when ≥ 95 % of the screens got ≥ 8 updates. Memory per screen from the
//!    servers' RSS before and after connecting; presence (`/api/v1/screens` on either) must
//!    list every screen of both instances.
//! 2. **Failover:** `--failover-screens` screens connect while one instance listens; a second
//!    starts on the port; records keep arriving; the first is killed with SIGKILL. Each screen
//!    reconnects as the wall screen does (after 0.5–1 s, doubling) with `resume`, and the run
//!    reports how many resumed with unbroken seqs or got a fresh snapshot, and how long
//!    until every one was back.
//!
//! 3. **The stream's leader killed:** a 3-server NATS cluster keeps the stream (3 replicas);
//!    one instance takes records one request after another; the server leading the stream is
//!    killed (SIGKILL) and started again, `--leader-kills` times. Reported: the time from the
//!    kill until the instance acknowledges writes again, beside NATS alone — a bare JetStream
//!    publisher (the same time-outs and retries) on a stream led by the same server.
//!
//! The client side is `vscc bench screen-clients` (a child process of this same binary), told
//! what to do over stdin and answering in JSON lines on stdout.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use super::stream::METRICS;
use super::{raise_fd_limit, BenchEnv, NatsChild, ServerChild};
use crate::config::Settings;
use crate::reference;

pub struct FleetBench {
    pub screens: usize,
    pub clients: usize,
    pub failover_screens: usize,
    pub leader_kills: usize,
}

// ---------------------------------------------------------------------------------------
// The client side: `vscc bench screen-clients --port P --screens N`.

/// One screen's counters, shared with the process's reports.
#[derive(Default)]
struct ScreenState {
    /// Deltas since the last `mark`.
    window: AtomicU64,
    ready: AtomicBool,
    connected: AtomicBool,
}

#[derive(Default)]
struct Tally {
    screens: Vec<Arc<ScreenState>>,
    /// Per reconnect: ms from the drop to the socket open again and subscribed, and to the
    /// first figures.
    reopened_ms: Mutex<Vec<f64>>,
    back_ms: Mutex<Vec<f64>>,
    resumed: AtomicUsize,
    fresh_snapshots: AtomicUsize,
    seq_gaps: AtomicUsize,
    drops: AtomicUsize,
    /// When the last screen got its first figures after a reconnect (Unix ms).
    last_back_ms: AtomicU64,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

async fn screen_loop(port: u16, token: String, me: Arc<ScreenState>, tally: Arc<Tally>) {
    let mut resume: Option<(String, u64)> = None;
    let mut dropped_at: Option<Instant> = None;
    let mut backoff_ms = 500.0;
    loop {
        let url = format!("ws://127.0.0.1:{port}/ws");
        let Ok(mut req) = url.into_client_request() else {
            return;
        };
        if let Ok(v) = format!("Bearer {token}").parse() {
            req.headers_mut().insert("authorization", v);
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(16 * 1024);
        let connected = tokio_tungstenite::connect_async_with_config(req, Some(config), true).await;
        let mut ws = match connected {
            Ok((ws, _)) => ws,
            Err(_) => {
                // As the wall screen: 0.5–1 × a doubling backoff, at most 10 s.
                backoff_ms = f64::min(backoff_ms * 2.0, 10_000.0);
                let wait = backoff_ms * (0.5 + rand::random::<f64>() / 2.0);
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                continue;
            }
        };
        let mut sub =
            json!({"type": "subscribe", "id": "s", "scope": "440300", "metrics": METRICS});
        if let Some((epoch, seq)) = &resume {
            sub["resume"] = json!({"epoch": epoch, "seq": seq});
        }
        if ws
            .send(Message::Text(sub.to_string().into()))
            .await
            .is_err()
        {
            continue;
        }
        me.connected.store(true, Ordering::Relaxed);
        if let Some(d) = dropped_at {
            tally
                .reopened_ms
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(d.elapsed().as_secs_f64() * 1000.0);
        }
        let mut first = true;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            let is_snapshot = text.contains(r#""type":"snapshot""#);
            if !is_snapshot && !text.contains(r#""type":"delta""#) {
                continue;
            }
            // Only the small head is parsed: epoch and seq come before the figures.
            let seq = field_u64(&text, r#""seq":"#);
            if first {
                if let Some(d) = dropped_at.take() {
                    tally
                        .back_ms
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(d.elapsed().as_secs_f64() * 1000.0);
                    tally.last_back_ms.fetch_max(unix_ms(), Ordering::Relaxed);
                    if is_snapshot {
                        tally.fresh_snapshots.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tally.resumed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                first = false;
            }
            if is_snapshot {
                let epoch = field_str(&text, r#""epoch":""#).unwrap_or_default();
                resume = Some((epoch, seq.unwrap_or(1)));
                me.ready.store(true, Ordering::Relaxed);
            } else if let (Some((_, last)), Some(seq)) = (resume.as_mut(), seq) {
                if seq != *last + 1 {
                    tally.seq_gaps.fetch_add(1, Ordering::Relaxed);
                }
                *last = seq;
                me.window.fetch_add(1, Ordering::Relaxed);
            }
        }
        me.connected.store(false, Ordering::Relaxed);
        tally.drops.fetch_add(1, Ordering::Relaxed);
        dropped_at = Some(Instant::now());
        backoff_ms = 1000.0;
        let wait = backoff_ms * (0.5 + rand::random::<f64>() / 2.0);
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

fn field_u64(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn field_str(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(key)? + key.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// `[p50, p99, max]`.
fn ms_summary(v: &Mutex<Vec<f64>>) -> Value {
    let (p50, p99, max) =
        super::stream::percentiles(v.lock().unwrap_or_else(|p| p.into_inner()).clone());
    json!([p50, p99, max])
}

/// Runs `screens` screens until stdin says `quit`; answers `ready`, `mark` and `report`.
pub async fn screen_clients(port: u16, token: String, screens: usize) -> anyhow::Result<()> {
    raise_fd_limit(200_000);
    let tally = Arc::new(Tally {
        screens: (0..screens)
            .map(|_| Arc::new(ScreenState::default()))
            .collect(),
        ..Default::default()
    });
    let connecting = Arc::new(tokio::sync::Semaphore::new(256));
    for me in tally.screens.clone() {
        let (token, tally, connecting) = (token.clone(), tally.clone(), connecting.clone());
        tokio::spawn(async move {
            // Connect at most 256 at once (the first time only).
            let permit = connecting.acquire_owned().await;
            let watch = me.clone();
            let task = tokio::spawn(screen_loop(port, token, me, tally));
            while !watch.ready.load(Ordering::Relaxed) && !task.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            drop(permit);
            let _ = task.await;
        });
    }
    let mut stdout = tokio::io::stdout();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match line.trim() {
            "ready" => {
                let deadline = Instant::now() + Duration::from_secs(180);
                while tally
                    .screens
                    .iter()
                    .any(|s| !s.ready.load(Ordering::Relaxed))
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let ready = tally
                    .screens
                    .iter()
                    .filter(|s| s.ready.load(Ordering::Relaxed))
                    .count();
                json!({"ready": ready})
            }
            "mark" => {
                for s in &tally.screens {
                    s.window.store(0, Ordering::Relaxed);
                }
                json!({"marked": true})
            }
            "report" => {
                let updated8 = tally
                    .screens
                    .iter()
                    .filter(|s| s.window.load(Ordering::Relaxed) >= 8)
                    .count();
                let connected = tally
                    .screens
                    .iter()
                    .filter(|s| s.connected.load(Ordering::Relaxed))
                    .count();
                json!({
                    "connected": connected,
                    "updated8": updated8,
                    "drops": tally.drops.load(Ordering::Relaxed),
                    "resumed": tally.resumed.load(Ordering::Relaxed),
                    "fresh_snapshots": tally.fresh_snapshots.load(Ordering::Relaxed),
                    "seq_gaps": tally.seq_gaps.load(Ordering::Relaxed),
                    "reopened_ms": ms_summary(&tally.reopened_ms),
                    "back_ms": ms_summary(&tally.back_ms),
                    "last_back_unix_ms": tally.last_back_ms.load(Ordering::Relaxed),
                })
            }
            "quit" => return Ok(()),
            other => json!({"error": format!("unknown command {other}")}),
        };
        stdout.write_all(format!("{answer}\n").as_bytes()).await?;
        stdout.flush().await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The controller.

/// A `vscc bench screen-clients` child process.
struct Clients {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Clients {
    fn spawn(port: u16, token: &str, screens: usize) -> anyhow::Result<Clients> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["bench", "screen-clients", "--port"])
            .arg(port.to_string())
            .args(["--token", token, "--screens"])
            .arg(screens.to_string())
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a screen-clients process")?;
        let stdin = child.stdin.take().context("its stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("its stdout")?).lines();
        Ok(Clients {
            child,
            stdin,
            stdout,
        })
    }

    async fn ask(&mut self, command: &str) -> anyhow::Result<Value> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = self
            .stdout
            .next_line()
            .await?
            .context("a screen-clients process ended")?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

async fn ask_all(clients: &mut [Clients], command: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for c in clients.iter_mut() {
        out.push(c.ask(command).await?);
    }
    Ok(out)
}

fn sum(answers: &[Value], key: &str) -> u64 {
    answers.iter().filter_map(|a| a[key].as_u64()).sum()
}

/// Starts an instance on `port` (shared with others), on the record stream at `nats`.
async fn instance(
    env: &BenchEnv,
    port: u16,
    nats: &str,
    name: &str,
) -> anyhow::Result<ServerChild> {
    ServerChild::spawn_at(
        env,
        "bench_fleet",
        port,
        &[
            ("VSCC__SERVER__REUSE_PORT", "true".into()),
            ("VSCC__BROKER__URL", nats.into()),
            ("VSCC__STREAM__TICK_MS", "1000".into()),
            ("VSCC__SERVER__DRAIN_SECS", "0".into()),
            (
                "VSCC__INGEST__SPOOL_DIR",
                env.dir.join(format!("spool-{name}")).display().to_string(),
            ),
        ],
    )
    .await
}

/// Instances answering on the shared port, by their `/healthz` names (asked `tries` times:
/// the kernel spreads new connections over the listeners).
async fn instances_seen(base: &str, tries: usize) -> std::collections::BTreeSet<String> {
    let http = reqwest::Client::new();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..tries {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A fresh connection each time.
        let Ok(r) = http
            .get(format!("{base}/healthz"))
            .header("connection", "close")
            .send()
            .await
        else {
            continue;
        };
        if let Ok(v) = r.json::<Value>().await {
            if let Some(i) = v["instance"].as_str() {
                seen.insert(i.to_string());
            }
        }
    }
    seen
}

pub async fn run(settings: &Settings, opts: FleetBench) -> anyhow::Result<()> {
    raise_fd_limit(200_000);
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let env = BenchEnv::start(settings, "fleet").await?;
    let nats = NatsChild::spawn(&env.dir).context("nats-server (scripts/setup installs it)")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let clients_n = opts.clients.max(1);

    // Phase 1: two instances on one port, `screens` screens.
    if opts.screens > 0 {
        let a = instance(&env, port, &nats.url, "a").await?;
        let b = instance(&env, port, &nats.url, "b").await?;
        let base = a.base.clone();
        anyhow::ensure!(
            instances_seen(&base, 40).await.len() == 2,
            "both instances answer on port {port}"
        );
        let rss0 = a.memory_kib().0 + b.memory_kib().0;
        eprintln!(
            "bench fleet: {} screens from {clients_n} processes onto two instances on port {port} …",
            opts.screens
        );
        let started = Instant::now();
        let mut clients = Vec::new();
        for i in 0..clients_n {
            let share = opts.screens / clients_n + usize::from(i < opts.screens % clients_n);
            clients.push(Clients::spawn(port, &a.token, share)?);
        }
        let ready = sum(&ask_all(&mut clients, "ready").await?, "ready");
        let connect_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = a.memory_kib().0 + b.memory_kib().0;
        // Presence on one instance lists the screens of both (shared every 5 s).
        let http = reqwest::Client::new();
        let mut listed = (0usize, std::collections::BTreeMap::<String, usize>::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let list: Value = http
                .get(format!("{base}/api/v1/screens"))
                .bearer_auth(&a.token)
                .send()
                .await?
                .json()
                .await?;
            let mut per = std::collections::BTreeMap::new();
            for s in list.as_array().into_iter().flatten() {
                *per.entry(s["instance"].as_str().unwrap_or("?").to_string())
                    .or_insert(0) += 1;
            }
            listed = (per.values().sum(), per);
            if listed.0 >= ready as usize {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ask_all(&mut clients, "mark").await?;
        let probes = Arc::new(super::stream::Probes::default());
        let achieved = super::stream::drive_load(
            &(&a).into(),
            200,
            Duration::from_millis(1000),
            Duration::from_secs(10),
            probes.clone(),
            &tree,
            7,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let report = ask_all(&mut clients, "report").await?;
        let updated = sum(&report, "updated8");
        let (rss_a, rss_b) = (a.memory_kib().0, b.memory_kib().0);
        for c in clients.drain(..) {
            c.quit().await;
        }
        a.stop().await;
        b.stop().await;

        println!(
            "vscc bench fleet — instances on one port (SO_REUSEPORT), one NATS JetStream record stream, tick 1 s"
        );
        println!("\n| screens, two instances | measure |");
        println!("|---|---:|");
        println!(
            "| screens connected and with a snapshot ({clients_n} client processes) | {ready} of {} in {connect_secs:.0} s |",
            opts.screens
        );
        println!(
            "| listed by `/api/v1/screens` on one instance | {} ({}) |",
            listed.0,
            listed
                .1
                .values()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" + ")
        );
        println!(
            "| got ≥ 8 updates in 10 s at 200 records/s | {updated} ({:.1} %) |",
            100.0 * updated as f64 / opts.screens.max(1) as f64
        );
        println!("| records sent during the 10 s | {:.0}/s |", achieved);
        println!(
            "| server RSS, two instances (MiB) | {:.0} + {:.0} |",
            rss_a as f64 / 1024.0,
            rss_b as f64 / 1024.0
        );
        println!(
            "| server memory per connected screen (KiB) | {:.1} |",
            rss1.saturating_sub(rss0) as f64 / ready.max(1) as f64
        );
        let sustained = updated as f64 >= 0.95 * opts.screens as f64;
        println!(
            "| **sustained at 1 update/s** | {} |",
            if sustained { "yes" } else { "no" }
        );
    }

    // Phase 2: failover.
    if opts.failover_screens > 0 {
        let a = instance(&env, port, &nats.url, "a2").await?;
        eprintln!(
            "bench fleet: {} screens on one instance, a second starts, the first is killed …",
            opts.failover_screens
        );
        let mut clients = Vec::new();
        for i in 0..clients_n {
            let share = opts.failover_screens / clients_n
                + usize::from(i < opts.failover_screens % clients_n);
            clients.push(Clients::spawn(port, &a.token, share)?);
        }
        let ready = sum(&ask_all(&mut clients, "ready").await?, "ready");
        let b = instance(&env, port, &nats.url, "b2").await?;
        // Records keep arriving; the instances share how far each screen got (every 5 s); a
        // resume elsewhere needs the survivor up 10 s before the screen's position.
        let load = {
            let probes = Arc::new(super::stream::Probes::default());
            let tree = tree.clone();
            let (base, token) = (b.base.clone(), b.token.clone());
            tokio::spawn(async move {
                let server = super::stream::ServerAddr {
                    base: &base,
                    token: &token,
                };
                let _ = super::stream::drive_load(
                    &server,
                    200,
                    Duration::from_millis(1000),
                    Duration::from_secs(45),
                    probes,
                    &tree,
                    11,
                )
                .await;
            })
        };
        tokio::time::sleep(Duration::from_secs(17)).await;
        let mut a = a;
        let killed_ms = unix_ms();
        let killed = Instant::now();
        if let Some(pid) = a.child.id() {
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = a.child.wait().await;
        // Until every screen is back (or 60 s).
        let mut report = Vec::new();
        while killed.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            report = ask_all(&mut clients, "report").await?;
            let back = sum(&report, "resumed") + sum(&report, "fresh_snapshots");
            if back >= ready {
                break;
            }
        }
        let all_back_s = report
            .iter()
            .filter_map(|r| r["last_back_unix_ms"].as_u64())
            .max()
            .unwrap_or(killed_ms)
            .saturating_sub(killed_ms) as f64
            / 1000.0;
        let worst = |key: &str, i: usize| {
            report
                .iter()
                .filter_map(|r| r[key][i].as_f64())
                .fold(f64::NAN, f64::max)
        };
        load.abort();
        for c in clients.drain(..) {
            c.quit().await;
        }
        b.stop().await;
        println!(
            "\n| failover: {ready} screens on the instance killed (SIGKILL), one survivor | measure |"
        );
        println!("|---|---:|");
        println!(
            "| resumed with unbroken seqs / fresh snapshot / seq gaps | {} / {} / {} |",
            sum(&report, "resumed"),
            sum(&report, "fresh_snapshots"),
            sum(&report, "seq_gaps")
        );
        println!(
            "| drop → socket open and subscribed again, p50 / p99 / max (s) (largest of the client processes) | {:.2} / {:.2} / {:.2} |",
            worst("reopened_ms", 0) / 1000.0,
            worst("reopened_ms", 1) / 1000.0,
            worst("reopened_ms", 2) / 1000.0
        );
        println!(
            "| drop → first figures again, p50 / p99 / max (s) | {:.2} / {:.2} / {:.2} |",
            worst("back_ms", 0) / 1000.0,
            worst("back_ms", 1) / 1000.0,
            worst("back_ms", 2) / 1000.0
        );
        println!("| **kill → every screen back** (s) | {all_back_s:.1} |");
        println!(
            "| baseline: the screens' own reconnect delay (0.5–1 s) plus one tick (1 s) | 1.0–2.0 |"
        );
    }
    drop(nats);
    if opts.leader_kills > 0 {
        leader_kills(&env, &tree, opts.leader_kills).await?;
    }
    env.stop().await;
    Ok(())
}

/// Which server (`nats<i>`) leads `stream`.
async fn stream_leader(js: &async_nats::jetstream::Context, stream: &str) -> anyhow::Result<usize> {
    let mut s = js.get_stream(stream).await?;
    let info = s.info().await?;
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .context("the stream has no leader")?;
    Ok(leader.trim_start_matches("nats").parse()?)
}

/// Until a publish to `subject` is acknowledged, retried as vscc does (3 s for the
/// acknowledgement, again after 200 ms): when it was.
async fn bare_publisher(js: async_nats::jetstream::Context, subject: &'static str) -> Instant {
    loop {
        let attempt = async { js.publish(subject, "probe".into()).await?.await };
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), attempt).await {
            return Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn leader_kills(
    env: &BenchEnv,
    tree: &crate::domain::OrgTree,
    rounds: usize,
) -> anyhow::Result<()> {
    let mut cluster = super::NatsCluster::spawn(&env.dir.join("nats-cluster"), 3)?;
    let server = ServerChild::spawn(
        env,
        "bench_fleet_nats",
        &[
            ("VSCC__BROKER__URL", cluster.url.clone()),
            ("VSCC__BROKER__REPLICAS", "3".into()),
        ],
    )
    .await?;
    let servers: Vec<async_nats::ServerAddr> = cluster
        .url
        .split(',')
        .map(|u| u.parse())
        .collect::<Result<_, _>>()?;
    let client = async_nats::connect(servers).await?;
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "BENCH_PROBE".into(),
        subjects: vec!["bench.probe".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await?;
    eprintln!(
        "bench fleet: killing the NATS server that leads the record stream, {rounds} times …"
    );
    // Records, one request after another (each answered within 15 s or counted refused).
    let answers: Arc<Mutex<Vec<(Instant, Instant, bool)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poster = {
        let (answers, stop) = (answers.clone(), stop.clone());
        let (base, token) = (server.base.clone(), server.token.clone());
        let mut workload = super::workload::Workload::new(tree, 5, 300, "leaderkill", 5000);
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap_or_default();
            while !stop.load(Ordering::Relaxed) {
                let events: Vec<Value> = (0..100).map(|_| workload.next_event()).collect();
                let sent = Instant::now();
                let ok = http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&token)
                    .json(&events)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                answers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((sent, Instant::now(), ok));
                if !ok {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        })
    };
    let mut rows = Vec::new();
    for round in 1..=rounds {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let leader = stream_leader(&js, "VSCC_RECORDS").await?;
        // The probe stream led by the same server (asked to step down until it is).
        for _ in 0..20 {
            if stream_leader(&js, "BENCH_PROBE").await? == leader {
                break;
            }
            let _ = client
                .request("$JS.API.STREAM.LEADER.STEPDOWN.BENCH_PROBE", "".into())
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let same_leader = stream_leader(&js, "BENCH_PROBE").await? == leader;
        let killed = Instant::now();
        cluster.kill(leader);
        let bare = tokio::spawn(bare_publisher(js.clone(), "bench.probe"));
        // Until a request sent after the kill is acknowledged (60 s at most).
        let deadline = killed + Duration::from_secs(60);
        let back = loop {
            let found = answers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(sent, _, ok)| *ok && *sent >= killed)
                .map(|(_, answered, _)| *answered)
                .min();
            if let Some(t) = found {
                break Some(t);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let bare_back = tokio::time::timeout(Duration::from_secs(60), bare).await;
        let refused = answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, answered, ok)| !*ok && *answered >= killed)
            .count();
        let secs = |t: Option<Instant>| {
            t.map_or("—".to_string(), |t| {
                format!("{:.1}", t.saturating_duration_since(killed).as_secs_f64())
            })
        };
        let bare_secs = secs(bare_back.ok().and_then(|r| r.ok()));
        rows.push(format!(
            "| {round} | nats{leader} | {} | {bare_secs}{} | {refused} |",
            secs(back),
            if same_leader {
                ""
            } else {
                " (probe led elsewhere)"
            }
        ));
        cluster.start(leader)?;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = poster.await;
    let total = answers.lock().unwrap_or_else(|p| p.into_inner()).len();
    server.stop().await;
    println!("\n| stream leader killed (3 NATS servers, 3 replicas; one instance, {total} requests of 100 records in all) | leader | kill → writes acknowledged again (s) | NATS alone: bare publisher (s) | requests refused |");
    println!("|---|---|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
