//! `vscc bench workspace`: what a unit's workspace costs on a city's worth of records — the
//! page's own API calls for a street (who am I, its standing and pace, its forms, the units
//! below, its records), all answered, beside the call a wall screen makes for the same street
//! (`GET /api/v1/metrics`) in the same run; and a record sent through the form until a screen
//! subscribed to the street shows it, beside the form's acknowledgement alone.
//!
//! Goals (issue: the unit workspace): the workspace's data ≤ 1 s after the page opens; a form's
//! record on a subscribed screen ≤ 1 s.

use std::time::Instant;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use super::{p50_p95 as summary, BenchEnv, ServerChild};
use crate::config::Settings;
use crate::reference;

pub struct WorkspaceBench {
    /// Records stored before measuring.
    pub records: usize,
    /// Measured rounds of each kind.
    pub rounds: usize,
}

const STREET: &str = "440304001";

pub async fn run(settings: &Settings, opts: WorkspaceBench) -> anyhow::Result<()> {
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let kinds = crate::dashboards::load_catalogue(&settings.catalogue)?.kinds;
    let env = BenchEnv::start(settings, "workspace").await?;
    let server = ServerChild::spawn(&env, "bench_workspace", &[]).await?;
    let http = reqwest::Client::new();
    let base = server.base.clone();

    // A city's worth of records, over every kind and org.
    let n = opts.records;
    super::store_records(&server, &tree, &kinds, n, "ws").await?;

    // A clerk of the street.
    let res = http
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&server.token)
        .json(&json!({"name": "bench-clerk", "role": "clerk", "scope": STREET, "password": "bench-clerk-pw"}))
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "user: {}", res.status());
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"name": "bench-clerk", "password": "bench-clerk-pw"}))
        .send()
        .await?
        .json()
        .await?;
    let clerk = login["token"]
        .as_str()
        .context("a session token")?
        .to_string();
    let get = |path: String| {
        let (http, clerk) = (http.clone(), clerk.clone());
        async move {
            let res = http.get(path).bearer_auth(clerk).send().await?;
            anyhow::ensure!(res.status().is_success(), "{}", res.status());
            res.bytes().await?;
            Ok::<_, anyhow::Error>(())
        }
    };

    // The page's data: /me first (it names the unit), then the rest at once, as the page asks.
    let (mut page, mut wall) = (Vec::new(), Vec::new());
    for round in 0..opts.rounds + 1 {
        let t = Instant::now();
        get(format!("{base}/api/v1/me")).await?;
        let (a, b, c, d) = tokio::join!(
            get(format!("{base}/api/v1/pace?scope={STREET}")),
            get(format!("{base}/api/v1/kinds?scope={STREET}")),
            get(format!("{base}/api/v1/org/{STREET}?depth=1")),
            get(format!(
                "{base}/api/v1/records?days=30&limit=1000&scope={STREET}"
            )),
        );
        a?;
        b?;
        c?;
        d?;
        let page_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        get(format!("{base}/api/v1/metrics?scope={STREET}")).await?;
        let wall_ms = t.elapsed().as_secs_f64() * 1e3;
        // The first round warms caches; it is not counted.
        if round > 0 {
            page.push(page_ms);
            wall.push(wall_ms);
        }
    }

    // A form's record → a screen subscribed to the street.
    let mut req = format!("ws://127.0.0.1:{}/ws", server.port).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {clerk}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let sub =
        json!({"type": "subscribe", "id": "w", "scope": STREET, "metrics": ["training_coverage"]});
    ws.send(Message::Text(sub.to_string().into())).await?;
    let (mut acked, mut shown) = (Vec::new(), Vec::new());
    for i in 0..opts.rounds {
        let headcount = 5_000 + i as i64;
        let record = json!([{"id": format!("bench-form-{i}"), "kind": "staff.headcount", "org": STREET,
            "at": crate::domain::time::rfc3339(time::OffsetDateTime::now_utc()), "data": {"headcount": headcount}}]);
        let t = Instant::now();
        let res = http
            .post(format!("{base}/api/v1/events?via=form"))
            .bearer_auth(&clerk)
            .json(&record)
            .send()
            .await?;
        anyhow::ensure!(res.status().is_success(), "form answered {}", res.status());
        acked.push(t.elapsed().as_secs_f64() * 1e3);
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .context("no delta within 10 s")?
                .context("the stream closed")??;
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text)?;
            let den = v["nodes"][STREET]["training_coverage"]["den"].as_i64();
            if v["type"] == "delta" && den.is_some_and(|d| d >= headcount) {
                break;
            }
        }
        shown.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (_, peak_kib) = server.memory_kib();
    server.stop().await;
    env.stop().await;

    let (page50, page95) = summary(page);
    let (wall50, wall95) = summary(wall);
    let (ack50, ack95) = summary(acked);
    let (shown50, shown95) = summary(shown);
    println!(
        "vscc bench workspace — a street's workspace ({STREET}) on {n} stored records, {} rounds each; server peak RSS {:.0} MiB",
        opts.rounds,
        peak_kib as f64 / 1024.0
    );
    println!("| what | p50 ms | p95 ms | × baseline (p50) | goal |");
    println!("|---|---:|---:|---:|---|");
    println!("| baseline: a wall's figures of the street (GET /api/v1/metrics) | {wall50:.1} | {wall95:.1} | 1.00 | |");
    println!(
        "| the workspace's data: /me, then pace, kinds, org and 30 days of records at once | {page50:.1} | {page95:.1} | {:.2} | ≤ 1000 ms |",
        page50 / wall50
    );
    println!("| baseline: a form's record acknowledged (POST /api/v1/events?via=form) | {ack50:.1} | {ack95:.1} | 1.00 | |");
    println!(
        "| a form's record on a screen subscribed to the street (delta received) | {shown50:.1} | {shown95:.1} | {:.2} | ≤ 1000 ms |",
        shown50 / ack50
    );
    Ok(())
}
