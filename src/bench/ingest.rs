//! `vscc bench ingest`: records/s end to end (HTTP → validation → durable log → ClickHouse)
//! beside ClickHouse's own insert rate of the same rows, measured in the same run.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::Mutex;

use super::NatsChild;
use super::{workload::Workload, BenchEnv, ServerChild};
use crate::config::Settings;
use crate::domain::record::EventRow;
use crate::reference::{self, DistrictMap};
use crate::store::insert::insert_events;
use crate::store::Store;
use crate::wire::events::validate;

pub struct IngestBench {
    pub records: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// Rounds of the own-log path, each between two baseline runs.
    pub rounds: usize,
}

/// Waits until ClickHouse has no merges running, so that one phase's background work does not
/// slow the next.
async fn quiesce(store: &Store) -> anyhow::Result<()> {
    for _ in 0..600 {
        let merges: u64 = store
            .client()
            .query("SELECT count() FROM system.merges")
            .fetch_one()
            .await?;
        if merges == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// ClickHouse's own insert of the rows, in the order they were generated (as a client sending
/// them would), or — `presorted` — after sorting each batch by the table's key as vscc does.
async fn rowbinary_baseline(
    url: &str,
    database: &str,
    rows: &[EventRow],
    presorted: bool,
) -> anyhow::Result<f64> {
    let base = Store::new(url, "default", "", database)?;
    base.migrate().await?;
    quiesce(&base).await?;
    let t = Instant::now();
    for chunk in rows.chunks(100_000) {
        if presorted {
            insert_events(&base, chunk).await?;
        } else {
            let mut insert = base.bulk_client().insert::<EventRow>("events").await?;
            for row in chunk {
                insert.write(row).await?;
            }
            insert.end().await?;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        count(&base).await? == rows.len() as u64,
        "baseline row count"
    );
    quiesce(&base).await?;
    Ok(secs)
}

async fn count(store: &Store) -> anyhow::Result<u64> {
    Ok(store
        .client()
        .query("SELECT count() FROM events")
        .fetch_one()
        .await?)
}

pub async fn run(settings: &Settings, opts: IngestBench) -> anyhow::Result<()> {
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let map = DistrictMap::load(
        &settings.reference.boundaries_dir,
        &tree,
        settings.reference.simplify_tolerance_deg,
    )?;
    let kinds = crate::dashboards::load_catalogue(&settings.catalogue)?.kinds;
    let env = BenchEnv::start(settings, "ingest").await?;
    let n = opts.records;
    eprintln!("bench ingest: generating {n} records …");
    // Every kind of the catalogue, so that all its metrics are live and fed.
    let events = Workload::new(&tree, 42, 365, "bench", n / 4 + 1)
        .with_kinds(&tree, &kinds)
        .events(n);
    let bodies: Vec<Vec<u8>> = events
        .chunks(opts.batch)
        .map(|c| serde_json::to_vec(c).unwrap_or_default())
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let rows: Vec<EventRow> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            validate(e, &kinds, &tree, &map, now, "bench")
                .map(|mut r| {
                    r.seq = i as u64 + 1;
                    r
                })
                .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message()))
        })
        .collect::<anyhow::Result<_>>()?;
    let json_bytes: usize = bodies.iter().map(Vec::len).sum();

    // Baseline 1: the same rows straight into ClickHouse (RowBinary, 100k-row INSERTs). It
    // runs before and after every round of vscc's own-log path below, and each round is
    // judged against the faster of the two runs around it: this VM's speed drifts by a fifth
    // from minute to minute, for ClickHouse alone as for vscc.
    let mut rowbinary_runs =
        vec![rowbinary_baseline(&env.clickhouse_url, "bench_rowbinary_0", &rows, false).await?];

    // Baseline 2: the same rows as JSON, parsed by ClickHouse (INSERT … FORMAT JSONEachRow).
    let json_store = Store::new(&env.clickhouse_url, "default", "", "bench_jsoneachrow")?;
    json_store.migrate().await?;
    let ndjson: Vec<Vec<u8>> = rows
        .chunks(50_000)
        .map(|c| {
            let mut out = Vec::new();
            for r in c {
                let _ = serde_json::to_writer(&mut out, r);
                out.push(b'\n');
            }
            out
        })
        .collect();
    let http = reqwest::Client::new();
    let t = Instant::now();
    for body in &ndjson {
        let res = http
            .post(format!("{}/?database=bench_jsoneachrow&query=INSERT%20INTO%20events%20FORMAT%20JSONEachRow", env.clickhouse_url))
            .body(body.clone())
            .send()
            .await?;
        anyhow::ensure!(
            res.status().is_success(),
            "JSONEachRow insert: {}",
            res.text().await.unwrap_or_default()
        );
    }
    let json_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        count(&json_store).await? == n as u64,
        "JSON baseline row count"
    );
    quiesce(&json_store).await?;

    // End to end through a real vscc server process: its own log (every round), then (where
    // nats-server is installed) a NATS JetStream record stream (once).
    let mut rounds = Vec::new();
    for round in 0..opts.rounds {
        let phase = e2e_phase(
            &env,
            &format!("bench_e2e_{round}"),
            bodies.clone(),
            opts.concurrency,
            n,
            &http,
            &[],
        )
        .await?;
        rounds.push(phase);
        rowbinary_runs.push(
            rowbinary_baseline(
                &env.clickhouse_url,
                &format!("bench_rowbinary_{}", round + 1),
                &rows,
                false,
            )
            .await?,
        );
    }
    let nats = NatsChild::spawn(&env.dir).ok();
    let broker = match &nats {
        Some(nats) => Some(
            e2e_phase(
                &env,
                "bench_e2e_broker",
                bodies,
                opts.concurrency,
                n,
                &http,
                &[("VSCC__BROKER__URL", nats.url.clone())],
            )
            .await?,
        ),
        None => None,
    };
    drop(nats);
    // For scale: the same insert with each batch sorted by the table key first, as vscc sends it.
    let presorted_secs =
        rowbinary_baseline(&env.clickhouse_url, "bench_rowbinary_sorted", &rows, true).await?;
    env.stop().await;

    // Each round against the faster baseline run on either side of it; the median round is
    // the one reported in the table.
    let mut judged: Vec<(f64, &Phase, f64)> = rounds
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let baseline = rowbinary_runs[i].min(rowbinary_runs[i + 1]);
            (baseline / phase.landed_secs, phase, baseline)
        })
        .collect();
    let by_round: Vec<String> = judged
        .iter()
        .map(|(ratio, phase, baseline)| {
            format!(
                "{ratio:.2} ({:.2} s against {baseline:.2} s)",
                phase.landed_secs
            )
        })
        .collect();
    judged.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median_ratio, local, rowbinary_secs) = judged[judged.len() / 2];
    let baseline_runs: Vec<String> = rowbinary_runs.iter().map(|s| format!("{s:.2}")).collect();

    let rate = |secs: f64| n as f64 / secs;
    println!(
        "vscc bench ingest — {n} records, {} per request, {} concurrent clients, {:.1} MB of JSON",
        opts.batch,
        opts.concurrency,
        json_bytes as f64 / 1e6
    );
    println!(
        "RowBinary baseline runs, before, between and after the rounds of vscc's own log: {} s",
        baseline_runs.join(", ")
    );
    println!(
        "vscc's own log, all rows in ClickHouse, × the faster baseline run beside each round: {}; median {median_ratio:.2}",
        by_round.join(", ")
    );
    println!("The table shows the median round and its baseline:");
    println!("| path | seconds | records/s | × ClickHouse RowBinary | × ClickHouse JSONEachRow |");
    println!("|---|---:|---:|---:|---:|");
    for (name, secs) in [
        (
            "baseline: ClickHouse INSERT RowBinary (100k rows each)",
            rowbinary_secs,
        ),
        (
            "baseline: ClickHouse INSERT JSONEachRow (100k rows each)",
            json_secs,
        ),
        (
            "for scale: ClickHouse INSERT RowBinary, each batch sorted by the table key first",
            presorted_secs,
        ),
    ] {
        println!(
            "| {name} | {secs:.2} | {:.0} | {:.2} | {:.2} |",
            rate(secs),
            rate(secs) / rate(rowbinary_secs),
            rate(secs) / rate(json_secs)
        );
    }
    for (path, phase) in std::iter::once(("its own log", local))
        .chain(broker.as_ref().map(|b| ("NATS JetStream, 1 server", b)))
    {
        for (what, secs) in [
            ("acknowledged (durable)", phase.acked_secs),
            ("all rows in ClickHouse", phase.landed_secs),
        ] {
            println!(
                "| vscc ({path}): POST /api/v1/events → {what} | {secs:.2} | {:.0} | {:.2} | {:.2} |",
                rate(secs),
                rate(secs) / rate(rowbinary_secs),
                rate(secs) / rate(json_secs)
            );
        }
    }
    for (path, phase) in std::iter::once(("its own log", local))
        .chain(broker.as_ref().map(|b| ("NATS JetStream", b)))
    {
        println!(
            "vscc ({path}): rows in ClickHouse when the last request was acknowledged: {}; CPU: vscc server {:.1} s ({:.1} µs a record), ClickHouse {:.1} s, on 2 cores shared with this load generator{}; server peak RSS {:.0} MiB",
            phase.landed_at_ack,
            phase.vscc_cpu,
            phase.vscc_cpu * 1e6 / n as f64,
            phase.ch_cpu,
            if path == "NATS JetStream" { " and nats-server" } else { "" },
            phase.peak_kib as f64 / 1024.0
        );
    }
    if broker.is_none() {
        println!("(no nats-server on PATH: the record-stream path was not measured)");
    }
    Ok(())
}

/// One end-to-end run through a vscc server process.
struct Phase {
    acked_secs: f64,
    landed_secs: f64,
    landed_at_ack: u64,
    peak_kib: u64,
    vscc_cpu: f64,
    ch_cpu: f64,
}

async fn e2e_phase(
    env: &BenchEnv,
    database: &str,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
    n: usize,
    http: &reqwest::Client,
    extra: &[(&str, String)],
) -> anyhow::Result<Phase> {
    let server = ServerChild::spawn(env, database, extra).await?;
    let e2e = Store::new(&env.clickhouse_url, "default", "", database)?;
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let ch_cpu0 = env.clickhouse_pid().map(super::cpu_secs).unwrap_or(0.0);
    let vscc_cpu0 = server.child.id().map(super::cpu_secs).unwrap_or(0.0);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (queue, http, url, token) = (
            queue.clone(),
            http.clone(),
            format!("{}/api/v1/events", server.base),
            server.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().await.next() else {
                    return Ok::<_, anyhow::Error>(());
                };
                let res = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(
                    res.status().is_success(),
                    "ingest answered {}",
                    res.status()
                );
            }
        }));
    }
    for task in tasks {
        task.await.context("client task")??;
    }
    let acked_secs = t.elapsed().as_secs_f64();
    let landed_at_ack = count(&e2e).await?;
    while count(&e2e).await? < n as u64 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let landed_secs = t.elapsed().as_secs_f64();
    let (_, peak_kib) = server.memory_kib();
    let vscc_cpu = server.child.id().map(super::cpu_secs).unwrap_or(0.0) - vscc_cpu0;
    let ch_cpu = env.clickhouse_pid().map(super::cpu_secs).unwrap_or(0.0) - ch_cpu0;
    server.stop().await;
    quiesce(&e2e).await?;
    Ok(Phase {
        acked_secs,
        landed_secs,
        landed_at_ack,
        peak_kib,
        vscc_cpu,
        ch_cpu,
    })
}
