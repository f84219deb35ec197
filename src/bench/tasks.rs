//! `vscc bench tasks`: 督办 at the city's size — issuing a task to every unit below the city
//! (Shenzhen has 864: 10 districts, 74 streets, 780 communities; the API takes up to 1,000)
//! beside posting as many plain records in the same run; and a step on an assignment until a
//! wall screen's stream carries it (the 督办 panel's ticker), beside the step's own
//! acknowledgement.
//!
//! Goals (issue: tasks down the tree): issuing a task to 1,000 units ≤ 1 s; a transition on the
//! wall screen's panel ≤ 1 s.

use std::time::Instant;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use super::{p50_p95 as summary, BenchEnv, ServerChild};
use crate::config::Settings;
use crate::reference;

pub struct TasksBench {
    /// Records stored before measuring.
    pub records: usize,
    /// Measured rounds of each kind.
    pub rounds: usize,
}

pub async fn run(settings: &Settings, opts: TasksBench) -> anyhow::Result<()> {
    let tree = reference::load_org_tree(&settings.reference.divisions_dir, &settings.org.region)?;
    let kinds = crate::dashboards::load_catalogue(&settings.catalogue)?.kinds;
    let env = BenchEnv::start(settings, "tasks").await?;
    let server = ServerChild::spawn(&env, "bench_tasks", &[]).await?;
    let http = reqwest::Client::new();
    let base = server.base.clone();
    let token = server.token.clone();
    let post = |path: String, body: Value| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let res = http
                .post(path)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?;
            let status = res.status();
            let answer: Value = res.json().await.unwrap_or(Value::Null);
            anyhow::ensure!(status.is_success(), "{status}: {answer}");
            Ok::<_, anyhow::Error>(answer)
        }
    };

    let n = opts.records;
    super::store_records(&server, &tree, &kinds, n, "tk").await?;

    // Every unit below the city.
    let units: Vec<String> = tree
        .nodes()
        .filter(|(idx, _)| *idx != tree.root())
        .map(|(_, n)| n.code.clone())
        .collect();
    let due = (time::OffsetDateTime::now_utc() + time::Duration::days(7)).date();
    let (mut issued, mut plain) = (Vec::new(), Vec::new());
    for round in 0..opts.rounds + 1 {
        let t = Instant::now();
        let answer = post(
            format!("{base}/api/v1/tasks"),
            json!({"id": format!("bench-{round}"), "title": "走访慰问", "instruction": "逐户走访",
                "due": due.to_string(), "units": units}),
        )
        .await?;
        let issue_ms = t.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            answer["units"].as_u64() == Some(units.len() as u64),
            "{answer}"
        );
        // The baseline: as many plain records (a headcount per unit) in one request.
        let records: Vec<Value> = units
            .iter()
            .map(|org| json!({"id": format!("bench-hc-{round}-{org}"), "kind": "staff.headcount", "org": org,
                "at": crate::domain::time::rfc3339(time::OffsetDateTime::now_utc()), "data": {"headcount": 7}}))
            .collect();
        let t = Instant::now();
        post(format!("{base}/api/v1/events"), json!(records)).await?;
        let plain_ms = t.elapsed().as_secs_f64() * 1e3;
        // The first round warms caches; it is not counted.
        if round > 0 {
            issued.push(issue_ms);
            plain.push(plain_ms);
        }
    }

    // A step → a wall screen's stream (the screen subscribed to the city, as the wall is).
    let mut req = format!("ws://127.0.0.1:{}/ws", server.port).into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", server.token).parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let sub = json!({"type": "subscribe", "id": "w", "scope": tree.node(tree.root()).code,
        "metrics": ["task_assignments", "task_on_time"]});
    ws.send(Message::Text(sub.to_string().into())).await?;
    let (mut acked, mut shown) = (Vec::new(), Vec::new());
    for (i, org) in units.iter().take(opts.rounds).enumerate() {
        let t = Instant::now();
        post(
            format!("{base}/api/v1/tasks/bench-1/assignments/{org}/sign"),
            json!({}),
        )
        .await
        .with_context(|| format!("sign {i}"))?;
        acked.push(t.elapsed().as_secs_f64() * 1e3);
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
                .await
                .context("no task message within 10 s")?
                .context("the stream closed")??;
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(&text)?;
            if v["type"] == "task" && v["org"] == org.as_str() && v["step"] == "sign" {
                break;
            }
        }
        shown.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (_, peak_kib) = server.memory_kib();
    server.stop().await;
    env.stop().await;

    let (issue50, issue95) = summary(issued);
    let (plain50, plain95) = summary(plain);
    let (ack50, ack95) = summary(acked);
    let (shown50, shown95) = summary(shown);
    let count = units.len();
    println!(
        "vscc bench tasks — {count} units (every unit below the city) on {n} stored records, {} rounds each; server peak RSS {:.0} MiB",
        opts.rounds,
        peak_kib as f64 / 1024.0
    );
    println!("| what | p50 ms | p95 ms | × baseline (p50) | goal |");
    println!("|---|---:|---:|---:|---|");
    println!("| baseline: {count} plain records in one request (POST /api/v1/events) | {plain50:.1} | {plain95:.1} | 1.00 | |");
    println!(
        "| a task issued to {count} units (POST /api/v1/tasks: {} records) | {issue50:.1} | {issue95:.1} | {:.2} | ≤ 1000 ms for 1,000 units |",
        count + 1,
        issue50 / plain50
    );
    println!("| baseline: a step acknowledged (POST …/assignments/{{org}}/sign) | {ack50:.1} | {ack95:.1} | 1.00 | |");
    println!(
        "| the step on a wall screen's stream (the 督办 panel's ticker) | {shown50:.1} | {shown95:.1} | {:.2} | ≤ 1000 ms |",
        shown50 / ack50
    );
    Ok(())
}
