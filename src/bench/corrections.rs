//! `vscc bench corrections`: N corrections and withdrawals, spread over every record kind,
//! through `POST /api/v1/corrections` of a real server process, beside plain ingest of
//! the same count of records (`POST /api/v1/events`) on the same server in the same run —
//! before and after, each ratio against the faster of the two.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::{workload::Workload, BenchEnv, ServerChild};
use crate::config::Settings;
use crate::reference;
use crate::store::Store;

pub struct CorrectionsBench {
    pub records: usize,
    /// Records (or changes) per request.
    pub batch: usize,
    pub concurrency: usize,
}

async fn count(store: &Store, sql: &str) -> anyhow::Result<u64> {
    Ok(store.client().query(sql).fetch_one::<u64>().await?)
}

/// Posts `bodies` to `url` from `concurrency` clients; the seconds until every request was
/// answered 200, and the answers' `corrected` and `withdrawn` summed.
async fn post_all(
    http: &reqwest::Client,
    url: String,
    token: &str,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
) -> anyhow::Result<(f64, u64, u64)> {
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let made = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (queue, http, url, token, made) = (
            queue.clone(),
            http.clone(),
            url.clone(),
            token.to_string(),
            made.clone(),
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
                let status = res.status();
                let answer: Value = res.json().await.unwrap_or(Value::Null);
                anyhow::ensure!(status.is_success(), "{url} answered {status}: {answer}");
                let field = |k: &str| answer[k].as_u64().unwrap_or(0);
                let mut made = made.lock().unwrap_or_else(|p| p.into_inner());
                made.0 += field("corrected");
                made.1 += field("withdrawn");
            }
        }));
    }
    for task in tasks {
        task.await.context("client task")??;
    }
    let secs = t.elapsed().as_secs_f64();
    let (corrected, withdrawn) = *made.lock().unwrap_or_else(|p| p.into_inner());
    Ok((secs, corrected, withdrawn))
}

/// Waits until `sql` counts at least `n`; the seconds since `t`.
async fn landed(store: &Store, sql: &str, n: u64, t: Instant) -> anyhow::Result<f64> {
    while count(store, sql).await? < n {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(t.elapsed().as_secs_f64())
}

pub async fn run(settings: &Settings, opts: CorrectionsBench) -> anyhow::Result<()> {
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let kinds = crate::dashboards::load_catalogue(&settings.catalogue)?.kinds;
    let env = BenchEnv::start(settings, "corrections").await?;
    let n = opts.records;
    eprintln!("bench corrections: generating {n} records and {n} changes …");
    let generate = |seed: u64, prefix: &str| {
        Workload::new(&tree, seed, 365, prefix, n / 4 + 1)
            .with_kinds(&tree, &kinds)
            .events(n)
    };
    let records = generate(42, "bench");
    let before = generate(43, "plain-a");
    let after = generate(44, "plain-b");
    let bodies = |events: &[Value]| -> Vec<Vec<u8>> {
        events
            .chunks(opts.batch)
            .map(|c| serde_json::to_vec(c).unwrap_or_default())
            .collect()
    };
    // Half the records corrected to another record's content of the same kind (its org, time,
    // subject and values), half withdrawn: every kind, as the workload mixes them.
    let mut by_kind: std::collections::HashMap<String, Vec<usize>> = Default::default();
    for (i, e) in records.iter().enumerate() {
        by_kind
            .entry(e["kind"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push(i);
    }
    let changes: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let same = &by_kind[e["kind"].as_str().unwrap_or_default()];
            let other = &records[same[(i * 7 + 1) % same.len()]];
            if i % 2 == 0 && other["id"] != e["id"] {
                let mut record = other.clone();
                if let Some(o) = record.as_object_mut() {
                    o.remove("id");
                }
                json!({"id": e["id"], "record": record, "reason": "核对台账后更正"})
            } else {
                json!({"id": e["id"], "withdraw": true, "reason": "重复上报"})
            }
        })
        .collect();
    let kinds_changed = by_kind.len();

    let server = ServerChild::spawn(&env, "bench_corrections", &[]).await?;
    let store = Store::new(&env.clickhouse_url, "default", "", "bench_corrections")?;
    let http = reqwest::Client::new();
    let events_url = format!("{}/api/v1/events", server.base);
    let rows = "SELECT count() FROM events";

    let t = Instant::now();
    post_all(
        &http,
        events_url.clone(),
        &server.token,
        bodies(&records),
        opts.concurrency,
    )
    .await?;
    landed(&store, rows, n as u64, t).await?;

    // Plain ingest of N new records, before the changes …
    let t = Instant::now();
    let (plain_a_acked, _, _) = post_all(
        &http,
        events_url.clone(),
        &server.token,
        bodies(&before),
        opts.concurrency,
    )
    .await?;
    let plain_a = landed(&store, rows, 2 * n as u64, t).await?;

    // … the N changes …
    let t = Instant::now();
    let (changes_acked, corrections, withdrawals) = post_all(
        &http,
        format!("{}/api/v1/corrections", server.base),
        &server.token,
        bodies(&changes),
        opts.concurrency,
    )
    .await?;
    let with_changes = 2 * n as u64 + 2 * corrections + withdrawals;
    let changed = landed(&store, rows, with_changes, t).await?;

    // … and after.
    let t = Instant::now();
    let (plain_b_acked, _, _) = post_all(
        &http,
        events_url,
        &server.token,
        bodies(&after),
        opts.concurrency,
    )
    .await?;
    let plain_b = landed(&store, rows, with_changes + n as u64, t).await?;

    // The floor of the changes' own reading: ClickHouse alone answering the same reads of the
    // stored versions (one per request, one request at a time).
    let ids: Vec<String> = records
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect();
    let t = Instant::now();
    for chunk in ids.chunks(opts.batch) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        store.records_rows(&chunk).await?;
    }
    let read_floor = t.elapsed().as_secs_f64();

    let effective = count(&store, "SELECT count() FROM events_effective").await?;
    anyhow::ensure!(
        effective == 3 * n as u64 - withdrawals,
        "effective records: {effective}, expected {}",
        3 * n as u64 - withdrawals
    );
    let (_, peak_kib) = server.memory_kib();
    server.stop().await;
    env.stop().await;

    let rate = |secs: f64| n as f64 / secs;
    let plain = plain_a.min(plain_b);
    let plain_acked = plain_a_acked.min(plain_b_acked);
    let unchanged = n as u64 - corrections - withdrawals;
    println!(
        "vscc bench corrections — {n} changes ({corrections} corrections, {withdrawals} withdrawals, {unchanged} changing nothing) over {kinds_changed} record kinds, {} per request, {} concurrent clients, on a store of {n} records; plain ingest of {n} new records before and after on the same server",
        opts.batch, opts.concurrency
    );
    println!("| path | acknowledged s | all rows in ClickHouse s | changes or records/s | × plain ingest (the faster run) |");
    println!("|---|---:|---:|---:|---:|");
    for (name, acked, secs) in [
        (
            "plain ingest, before: POST /api/v1/events",
            plain_a_acked,
            plain_a,
        ),
        (
            "plain ingest, after: POST /api/v1/events",
            plain_b_acked,
            plain_b,
        ),
        (
            "corrections and withdrawals: POST /api/v1/corrections",
            changes_acked,
            changed,
        ),
    ] {
        println!(
            "| {name} | {acked:.2} | {secs:.2} | {:.0} | {:.2} |",
            rate(secs),
            plain / secs
        );
    }
    println!(
        "| floor: ClickHouse alone reading the stored versions the changes read ({} requests, one at a time) | — | {read_floor:.2} | {:.0} | {:.2} |",
        n.div_ceil(opts.batch),
        rate(read_floor),
        plain / read_floor
    );
    println!(
        "acknowledged: the changes {:.2}× plain ingest; server peak RSS {:.0} MiB",
        plain_acked / changes_acked,
        peak_kib as f64 / 1024.0
    );
    Ok(())
}
