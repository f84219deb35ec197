//! `vscc bench stream`: event → delta latency at many connected screens under steady ingest,
//! server memory per connection, and the most screens sustained at one update a second.
//!
//! The baseline for latency is the publishing tick itself: a delta can leave at the earliest at
//! the next tick, so latency is reported beside `tick_ms`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use super::{percentile, raise_fd_limit, workload::Workload, BenchEnv, ServerChild};
use crate::config::Settings;
use crate::domain::time::SHANGHAI;
use crate::reference;

pub struct StreamBench {
    pub screens: usize,
    pub rate: usize,
    pub seconds: u64,
    pub tick_ms: u64,
    pub max_screens: Vec<usize>,
}

const PROBE_ORG: &str = "440303";
/// What every bench screen watches: the five headline metrics.
pub(super) const METRICS: [&str; 5] = [
    "staffing_rate",
    "training_coverage",
    "five_star_share",
    "open_appeals",
    "archive_coverage",
];

#[derive(Default)]
pub(super) struct Probes {
    sent: Mutex<HashMap<i64, Instant>>,
    /// When the server made each probe durable (its answer's `accepted_at`), µs since the
    /// epoch: same host, same clock as the screens' receipt times.
    accepted: Mutex<HashMap<i64, i64>>,
    /// Every (probe, screen) delivery: the probe and when the screen had it.
    delivered: Mutex<Vec<Delivery>>,
    /// Probe sent → its POST answered (accepted, durable, in the live figures): the ingest
    /// part of the latency.
    acks_ms: Mutex<Vec<f64>>,
}

struct Delivery {
    probe: i64,
    at: Instant,
    wall_us: i64,
}

/// Latency percentiles of the deliveries so far, from two starting points.
pub(super) struct Latency {
    samples: usize,
    /// Event accepted (durable on the server) → delta received: the issue's measure.
    accepted: (f64, f64, f64),
    /// Probe sent → delta received: adds the POST's trip and its wait for a CPU.
    sent: (f64, f64, f64),
}

impl Probes {
    fn clear_deliveries(&self) {
        lock(&self.delivered).clear();
    }

    pub(super) fn latency(&self) -> Latency {
        let (sent, accepted) = (lock(&self.sent), lock(&self.accepted));
        let delivered = lock(&self.delivered);
        let from_sent: Vec<f64> = delivered
            .iter()
            .filter_map(|d| sent.get(&d.probe).map(|t| ms(d.at - *t)))
            .collect();
        let from_accepted: Vec<f64> = delivered
            .iter()
            .filter_map(|d| {
                accepted
                    .get(&d.probe)
                    .map(|us| (d.wall_us - us) as f64 / 1000.0)
            })
            .collect();
        Latency {
            samples: from_sent.len(),
            accepted: percentiles(from_accepted),
            sent: percentiles(from_sent),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn unix_micros(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1000) as i64
}

struct Screen {
    deltas: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

async fn connect_screen(
    port: u16,
    token: &str,
    probes: Arc<Probes>,
    ready: Arc<AtomicUsize>,
) -> anyhow::Result<Screen> {
    let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    // Messages are a few KiB: tungstenite's default 128 KiB read buffer is zeroed on every
    // read, which made memset the load generator's main cost.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true).await?;
    let sub = json!({"type": "subscribe", "id": "s", "scope": "440300", "metrics": METRICS});
    ws.send(Message::Text(sub.to_string().into())).await?;
    let deltas = Arc::new(AtomicU64::new(0));
    let counter = deltas.clone();
    let task = tokio::spawn(async move {
        let mut last_seen: Option<i64> = None;
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(text) = msg else { continue };
            if text.contains(r#""type":"snapshot""#) {
                ready.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !text.contains(r#""type":"delta""#) {
                continue;
            }
            counter.fetch_add(1, Ordering::Relaxed);
            if !text.contains(PROBE_ORG) {
                continue;
            }
            let Some(k) = probe_num(&text) else { continue };
            // Probes count up and the latest replaces earlier ones, so a delta showing probe
            // k delivers every probe after the last one this screen saw: coalesced probes get
            // their (longer) latency too, instead of only the last of each tick being timed.
            // They are timed at the end: the delta may arrive before the POST's answer.
            let (at, wall_us) = (Instant::now(), unix_micros(time::OffsetDateTime::now_utc()));
            let from = last_seen.map_or(k, |last| last + 1);
            last_seen = Some(last_seen.map_or(k, |last| last.max(k)));
            lock(&probes.delivered).extend((from..=k).map(|probe| Delivery { probe, at, wall_us }));
        }
    });
    Ok(Screen { deltas, task })
}

/// The probe district's staffing numerator in a delta, found by searching the text: the
/// screens share the 2 cores with the server, so the load generator must not parse every
/// message it receives as a whole JSON value.
fn probe_num(text: &str) -> Option<i64> {
    let node_start = text.find(&format!(r#""{PROBE_ORG}":{{"#))?;
    let node = &text[node_start..];
    // A figure holds no objects, so a node's object ends at the first "}}".
    let node = &node[..node.find("}}")? + 2];
    let figure = &node[node.find(r#""staffing_rate":{"#)?..];
    let figure = &figure[..figure.find('}')?];
    let num = &figure[figure.find(r#""num":"#)? + 6..];
    let end = num
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(num.len());
    num[..end].parse().ok()
}

/// The screens' own runtime: a probe posted by the load generator must not queue behind a
/// thousand screens' reads in one task scheduler (the OS shares the cores between the two, as
/// it would between real screens and a real station). Tasks spawned by a screen stay here.
fn screens_runtime() -> anyhow::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-screens")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

async fn connect_many(
    server: &ServerChild,
    n: usize,
    probes: &Arc<Probes>,
    screens: &mut Vec<Screen>,
) -> anyhow::Result<()> {
    let ready = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(256));
    let mut pending = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (port, token, probes, ready) = (
            server.port,
            server.token.to_string(),
            probes.clone(),
            ready.clone(),
        );
        pending.push(screens_runtime()?.spawn(async move {
            let s = connect_screen(port, &token, probes, ready).await;
            drop(permit);
            s
        }));
    }
    for p in pending {
        screens.push(p.await??);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Where the load goes: a server's base URL and its admin token.
pub(super) struct ServerAddr<'a> {
    pub base: &'a str,
    pub token: &'a str,
}

impl<'a> From<&'a ServerChild> for ServerAddr<'a> {
    fn from(s: &'a ServerChild) -> Self {
        ServerAddr {
            base: &s.base,
            token: &s.token,
        }
    }
}

/// Posts `rate` records/s of the workload (staffing records excluded: the probe owns that
/// figure) and a probe every `probe_every`, until `stop`.
pub(super) async fn drive_load(
    server: &ServerAddr<'_>,
    rate: usize,
    probe_every: Duration,
    run_for: Duration,
    probes: Arc<Probes>,
    tree: &crate::domain::OrgTree,
    seed: u64,
) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/events", server.base);
    let mut workload = Workload::new(tree, seed, 300, &format!("load{seed}"), 5000);
    let per_tick = (rate / 100).max(1);
    let started = Instant::now();
    let mut sent = 0usize;
    let mut next_probe = Instant::now();
    let mut probe_num = lock(&probes.sent).len() as i64 * 10 + 1_000;
    let mut every = tokio::time::interval(Duration::from_millis(10));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while started.elapsed() < run_for {
        every.tick().await;
        let events: Vec<Value> = std::iter::repeat_with(|| workload.next_event())
            .filter(|e| e["kind"] != "staffing.reported")
            .take(per_tick)
            .collect();
        let (http2, url2, token) = (http.clone(), url.clone(), server.token.to_string());
        sent += events.len();
        tokio::spawn(async move {
            let _ = http2
                .post(&url2)
                .bearer_auth(&token)
                .json(&events)
                .send()
                .await;
        });
        if Instant::now() >= next_probe {
            // Random gaps (0.5–1.5 × probe_every), so that probes fall at every phase of the
            // publishing tick instead of locking onto one.
            next_probe += probe_every.mul_f64(rng.random_range(0.5..1.5));
            probe_num += 1;
            let at = time::OffsetDateTime::now_utc()
                .to_offset(SHANGHAI)
                .replace_nanosecond(0)
                .unwrap_or(time::OffsetDateTime::now_utc())
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            // Within the plausible range validation enforces (posts ≤ 10,000): probes number
            // from 1,000 up, a few hundred a run.
            let probe = json!([{"id": format!("probe-{seed}-{probe_num}"), "kind": "staffing.reported", "org": PROBE_ORG, "at": at,
                                "data": {"approved_posts": 10_000, "filled_posts": probe_num.min(10_000)}}]);
            lock(&probes.sent).insert(probe_num, Instant::now());
            let (http2, url2, token) = (http.clone(), url.clone(), server.token.to_string());
            let (probes, sent_at) = (probes.clone(), Instant::now());
            tokio::spawn(async move {
                let answered = http2
                    .post(&url2)
                    .bearer_auth(&token)
                    .json(&probe)
                    .send()
                    .await;
                let Ok(answer) = answered else { return };
                let waited = ms(sent_at.elapsed());
                let Ok(body) = answer.json::<Value>().await else {
                    return;
                };
                let accepted_at = body["accepted_at"].as_str().and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                });
                match accepted_at {
                    Some(t) => {
                        lock(&probes.acks_ms).push(waited);
                        lock(&probes.accepted).insert(probe_num, unix_micros(t));
                    }
                    None => tracing::warn!(%body, "a probe was not accepted; it will not be timed"),
                }
            });
        }
    }
    Ok(sent as f64 / started.elapsed().as_secs_f64())
}

fn summary(samples: &Mutex<Vec<f64>>) -> (f64, f64, f64) {
    percentiles(lock(samples).clone())
}

/// p50, p99 and max.
pub(super) fn percentiles(mut l: Vec<f64>) -> (f64, f64, f64) {
    l.sort_by(|a, b| a.total_cmp(b));
    (
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN),
    )
}

pub async fn run(settings: &Settings, opts: StreamBench) -> anyhow::Result<()> {
    raise_fd_limit(200_000);
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let env = BenchEnv::start(settings, "stream").await?;

    // Phase 1: latency and memory at `screens` sockets under steady ingest.
    let server = ServerChild::spawn(
        &env,
        "bench_stream",
        &[("VSCC__STREAM__TICK_MS", opts.tick_ms.to_string())],
    )
    .await?;
    let (rss0, _) = server.memory_kib();
    let probes = Arc::new(Probes::default());
    let mut screens = Vec::new();
    eprintln!("bench stream: connecting {} screens …", opts.screens);
    connect_many(&server, opts.screens, &probes, &mut screens).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, _) = server.memory_kib();
    eprintln!(
        "bench stream: {} records/s for {} s …",
        opts.rate, opts.seconds
    );
    let achieved = drive_load(
        &(&server).into(),
        opts.rate,
        Duration::from_millis(100),
        Duration::from_secs(opts.seconds),
        probes.clone(),
        &tree,
        1,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deltas: u64 = screens
        .iter()
        .map(|s| s.deltas.load(Ordering::Relaxed))
        .sum();
    let latency = probes.latency();
    let (_, peak) = server.memory_kib();
    for s in screens.drain(..) {
        s.task.abort();
    }
    server.stop().await;

    println!(
        "vscc bench stream — {} screens, tick {} ms (at most {} messages/s per subscription)",
        opts.screens,
        opts.tick_ms,
        1000 / opts.tick_ms.max(1)
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| ingest offered / achieved (records/s) | {} / {:.0} |",
        opts.rate, achieved
    );
    println!(
        "| probe records → delta at every screen, samples | {} |",
        latency.samples
    );
    let (p50, p99, max) = latency.accepted;
    println!(
        "| **accepted → delta received** p50 / p99 / max (ms); baseline: tick/2 = {:.1} / tick = {} | {p50:.1} / {p99:.1} / {max:.1} |",
        opts.tick_ms as f64 / 2.0,
        opts.tick_ms
    );
    let (p50, p99, max) = latency.sent;
    println!(
        "| probe sent → delta received p50 / p99 / max (ms) | {p50:.1} / {p99:.1} / {max:.1} |"
    );
    let (ack50, ack99, _) = summary(&probes.acks_ms);
    println!("| of which probe sent → POST answered (ingest path) p50 / p99 (ms) | {ack50:.1} / {ack99:.1} |");
    println!(
        "| deltas per screen per second | {:.2} |",
        deltas as f64 / opts.screens.max(1) as f64 / opts.seconds as f64
    );
    println!(
        "| server memory per connected screen (KiB) | {:.1} |",
        (rss1.saturating_sub(rss0)) as f64 / opts.screens.max(1) as f64
    );
    println!("| server peak RSS (MiB) | {:.0} |", peak as f64 / 1024.0);

    // Phase 2: how many screens at one update a second.
    if !opts.max_screens.is_empty() {
        let server = ServerChild::spawn(
            &env,
            "bench_screens",
            &[("VSCC__STREAM__TICK_MS", "1000".to_string())],
        )
        .await?;
        let mut screens = Vec::new();
        let mut best = 0;
        println!("\n| screens at 1 update/s | connected | got ≥ 8 updates in 10 s | accepted → delta p99 (ms) | server RSS (MiB) | sustained |");
        println!("|---:|---:|---:|---:|---:|---|");
        for &target in &opts.max_screens {
            let more = target.saturating_sub(screens.len());
            if let Err(e) = connect_many(&server, more, &probes, &mut screens).await {
                println!("| {target} | {} | – | – | – | no: {e} |", screens.len());
                break;
            }
            let before: Vec<u64> = screens
                .iter()
                .map(|s| s.deltas.load(Ordering::Relaxed))
                .collect();
            probes.clear_deliveries();
            drive_load(
                &(&server).into(),
                200,
                Duration::from_millis(1000),
                Duration::from_secs(10),
                probes.clone(),
                &tree,
                target as u64,
            )
            .await?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let ok = screens
                .iter()
                .zip(&before)
                .filter(|(s, b)| s.deltas.load(Ordering::Relaxed) - **b >= 8)
                .count();
            let (_, p99, _) = probes.latency().accepted;
            let (rss, _) = server.memory_kib();
            let sustained = ok as f64 >= 0.95 * screens.len() as f64 && p99 < 2000.0;
            println!(
                "| {target} | {} | {ok} | {p99:.0} | {:.0} | {} |",
                screens.len(),
                rss as f64 / 1024.0,
                if sustained { "yes" } else { "no" }
            );
            if !sustained {
                break;
            }
            best = target;
        }
        println!("largest number of screens sustained at 1 update/s: {best}");
        for s in screens.drain(..) {
            s.task.abort();
        }
        server.stop().await;
    }
    env.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::probe_num;

    #[test]
    fn the_probe_figure_is_found_only_in_the_probe_district() {
        let delta = r#"{"type":"delta","nodes":{"440300":{"staffing_rate":{"den":9,"num":1}},"440303":{"five_star_share":{"num":3},"staffing_rate":{"den":1000000,"due":null,"num":1234,"status":"at_risk"}}}}"#;
        assert_eq!(probe_num(delta), Some(1234));
        let other = r#"{"nodes":{"440303":{"open_appeals":{"num":5}},"440304":{"staffing_rate":{"num":77}}}}"#;
        assert_eq!(probe_num(other), None);
    }
}
