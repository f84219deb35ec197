//! Start-up from a checkpoint of the live state: a start loads the newest checkpoint and
//! replays only the records stored after it — corrections and withdrawals of records it holds
//! included — and gets every figure a full replay gets; a checkpoint written for other
//! definitions, or damaged, or cut short by kill -9 mid-write, is refused (a full replay, or
//! the checkpoint before it) and never gives a wrong figure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    compared_with_sql, figures_text, free_port, sample_events, serve_command, spawn_app_with,
    test_settings, wait_ready, TestApp,
};

/// Every figure of an answer of `/api/v1/metrics`: node and metric → (num, den, status).
fn nums(body: &Value) -> std::collections::BTreeMap<String, Value> {
    let mut out = std::collections::BTreeMap::new();
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

/// A value of a `/metrics` answer.
fn gauge_in(body: &str, name: &str) -> i64 {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("vscc_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// A value of this app's `/metrics`.
async fn gauge(app: &TestApp, name: &str) -> i64 {
    gauge_in(&app.get("/metrics").await.text().await.unwrap(), name)
}

/// Corrects every `every`-th record of `events` to another record's content of its kind, and
/// withdraws every `withdraw`-th.
async fn change(
    app: &TestApp,
    events: &[Value],
    every: usize,
    withdraw: usize,
    reason: &str,
    withdrawn: &mut std::collections::HashSet<String>,
) {
    let token = app.admin_token().to_string();
    for (i, e) in events.iter().enumerate() {
        let id = e["id"].as_str().unwrap();
        if withdrawn.contains(id) {
            continue;
        }
        if i % withdraw == 0 {
            withdrawn.insert(id.to_string());
        }
        let url = format!("{}/api/v1/events/{id}", app.base);
        let request = if i % withdraw == 0 {
            app.http.delete(url).json(&json!({"reason": reason}))
        } else if i % every == 0 {
            let same: Vec<&Value> = events.iter().filter(|o| o["kind"] == e["kind"]).collect();
            let mut record = same[(i * 7 + 3) % same.len()].clone();
            record.as_object_mut().unwrap().remove("id");
            app.http
                .put(url)
                .json(&json!({"record": record, "reason": reason}))
        } else {
            continue;
        };
        let r = request.bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200, "{id}: {}", r.text().await.unwrap());
    }
}

async fn post_all(app: &TestApp, events: &[Value]) {
    for chunk in events.chunks(1000) {
        let answer: Value = app.post_events(&json!(chunk)).await.json().await.unwrap();
        assert_eq!(answer["rejected"], 0, "{answer}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// A second instance on the same store, starting from a folder holding the checkpoint file
/// `checkpoint` alone (it writes its own there when it stops).
async fn instance_from(database: &str, checkpoint: &Path, metrics_dir: Option<PathBuf>) -> TestApp {
    let mut settings = test_settings();
    settings.clickhouse.database = database.to_string();
    let dir = settings.ingest.spool_dir.with_extension("checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(checkpoint, dir.join(checkpoint.file_name().unwrap())).unwrap();
    settings.checkpoint.dir = dir;
    settings.checkpoint.every_secs = 3600;
    if let Some(dir) = metrics_dir {
        settings.catalogue.metrics_dir = dir;
    }
    spawn_app_with(settings).await
}

#[tokio::test]
async fn a_start_from_a_checkpoint_replays_only_what_came_after_and_every_figure_equals_sql() {
    let mut settings = test_settings();
    settings.checkpoint.every_secs = 3600;
    let database = settings.clickhouse.database.clone();
    let app = spawn_app_with(settings.clone()).await;
    let tree = app.state.tree.clone();
    let before = sample_events(&tree, 2000, 41, 120, "ck-a");
    post_all(&app, &before).await;
    let mut withdrawn = std::collections::HashSet::new();
    change(&app, &before, 23, 37, "核对台账后更正", &mut withdrawn).await;
    app.wait_landed().await;

    let dir = settings.ingest.spool_dir.join("checkpoints");
    let written = vscc::write_checkpoint(&app.state.hub, &app.state.ingest.log, &dir)
        .await
        .unwrap()
        .expect("an instance with its own log writes checkpoints");
    assert!(written.upto_seq > 0 && written.bytes > 0, "{written:?}");
    // Kept aside: this instance writes its own when it stops.
    let kept = settings.ingest.spool_dir.with_extension("kept");
    std::fs::create_dir_all(&kept).unwrap();
    let kept = kept.join(written.path.file_name().unwrap());
    std::fs::copy(&written.path, &kept).unwrap();

    // After the checkpoint: new records, and changes of records it holds and of new ones.
    let after = sample_events(&tree, 1000, 43, 120, "ck-b");
    post_all(&app, &after).await;
    change(&app, &before, 19, 29, "再次核对", &mut withdrawn).await;
    change(&app, &after, 17, 31, "更正", &mut withdrawn).await;
    app.wait_landed().await;
    let live = app.state.hub.all_current();
    compared_with_sql(&app, &live, app.state.hub.now()).await;
    let (rows, rows_after): (u64, u64) = app
        .store()
        .client()
        .query("SELECT count(), countIf(seq > ?) FROM events")
        .bind(written.upto_seq)
        .fetch_one()
        .await
        .unwrap();

    // Another instance starts from the checkpoint: it replays only the rows after it, and has
    // every figure the first one has.
    let resumed = instance_from(&database, &kept, None).await;
    assert_eq!(
        gauge(&resumed, "start_checkpoint_seq").await,
        written.upto_seq as i64
    );
    assert_eq!(
        gauge(&resumed, "start_replayed_records").await,
        rows_after as i64,
        "only the rows after the checkpoint are replayed"
    );
    assert!(rows_after < rows / 2, "{rows_after} of {rows}");
    assert_eq!(
        figures_text(&resumed.state.hub.all_current()),
        figures_text(&live)
    );
    compared_with_sql(
        &resumed,
        &resumed.state.hub.all_current(),
        resumed.state.hub.now(),
    )
    .await;
    resumed.stop().await;

    // Written for other definitions (a target changed): refused, every record replayed.
    let metrics = settings.ingest.spool_dir.with_extension("metrics");
    copy_dir(&settings.catalogue.metrics_dir, &metrics);
    let file = std::fs::read_dir(&metrics)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "toml"))
        .unwrap();
    let text_of = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text_of}\n# 修改过\n")).unwrap();
    let refreshed = refused_then_replayed(&database, &kept, Some(metrics), &live).await;
    assert_eq!(
        gauge(&refreshed, "start_replayed_records").await,
        rows as i64
    );
    refreshed.stop().await;

    // Damaged: a byte flipped in the middle, then cut short. Refused, every record replayed.
    let newest = kept.clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&newest, &bytes).unwrap();
    refused_then_replayed(&database, &kept, None, &live)
        .await
        .stop()
        .await;
    std::fs::write(&newest, &bytes[..middle]).unwrap();
    refused_then_replayed(&database, &kept, None, &live)
        .await
        .stop()
        .await;
    app.stop().await;
}

/// An instance given `checkpoint` refuses it, replays every record, and has the figures
/// `live`.
async fn refused_then_replayed(
    database: &str,
    checkpoint: &Path,
    metrics_dir: Option<PathBuf>,
    live: &[(
        String,
        Vec<(vscc::domain::metric::MetricId, vscc::domain::metric::Figure)>,
    )],
) -> TestApp {
    let app = instance_from(database, checkpoint, metrics_dir).await;
    assert_eq!(gauge(&app, "start_checkpoint_seq").await, 0);
    assert_eq!(
        figures_text(&app.state.hub.all_current()),
        figures_text(live)
    );
    app
}

/// The binary writes a checkpoint every second while clients send records; it is killed with
/// SIGKILL while one is being written. The restart starts from the newest whole checkpoint,
/// replays what came after it (the log's records not yet in ClickHouse included), and has
/// every acknowledged record once and every figure equal to SQL.
#[tokio::test]
async fn sigkill_during_a_checkpoint_write_loses_nothing_and_the_figures_equal_sql() {
    let settings = test_settings();
    let database = settings.clickhouse.database.clone();
    let spool = settings.ingest.spool_dir.clone();
    let checkpoints = spool.join("checkpoints");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = serve_command(port, &database, &spool, "ckpt-kill")
        .env("VSCC__CHECKPOINT__EVERY_SECS", "1")
        .env("VSCC__LIMITS__INGEST_PER_SEC", "1000000")
        .env("VSCC__LIMITS__INGEST_BURST", "1000000")
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_ready(&http, &base).await;
    let tree =
        vscc::load_org_tree(&settings.reference.divisions_dir, &settings.org.region).unwrap();
    let events = sample_events(&tree, 20_000, 47, 200, "ck-k");

    // One client sends 200 records at a time and keeps what was acknowledged.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sender = {
        let (acked, http, base, events) =
            (acked.clone(), http.clone(), base.clone(), events.clone());
        tokio::spawn(async move {
            for chunk in events.chunks(200) {
                match http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth("ckpt-kill")
                    .json(&chunk)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => acked
                        .lock()
                        .unwrap()
                        .extend(chunk.iter().map(|e| e["id"].as_str().unwrap().to_string())),
                    _ => return,
                }
            }
        })
    };
    // Killed as soon as a checkpoint is being written after a whole one exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught = loop {
        let names: Vec<String> = std::fs::read_dir(&checkpoints)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let whole = names.iter().any(|n| n.ends_with(".vscc"));
        if whole && names.iter().any(|n| n.ends_with(".tmp")) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    sender.await.unwrap();
    assert!(caught, "no checkpoint write was caught under way");
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());

    // The binary again: from the newest whole checkpoint (the records it logged but had not
    // landed go to ClickHouse first, then everything after the checkpoint is replayed).
    let mut child = serve_command(port, &database, &spool, "ckpt-kill")
        .spawn()
        .unwrap();
    wait_ready(&http, &base).await;
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth("ckpt-kill")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let from_seq = gauge_in(&metrics, "start_checkpoint_seq");
    assert!(
        from_seq > 0,
        "the whole checkpoint before the killed write is used"
    );
    // Sent again, acknowledged records are duplicates: the ids seen came back too.
    let again: Vec<&Value> = events
        .iter()
        .filter(|e| acked.iter().take(400).any(|id| e["id"] == *id))
        .collect();
    let answer: Value = http
        .post(format!("{base}/api/v1/events"))
        .bearer_auth("ckpt-kill")
        .json(&again)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["duplicates"], again.len(), "{answer}");
    // The city and each district: every figure of theirs and of their children.
    let scopes: Vec<String> = tree
        .with_children(tree.root())
        .into_iter()
        .map(|n| tree.node(n).code.clone())
        .collect();
    let mut figures = Vec::new();
    for district in &scopes {
        let body: Value = http
            .get(format!("{base}/api/v1/metrics?scope={district}"))
            .bearer_auth("ckpt-kill")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        figures.push(nums(&body));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();

    // The same store replayed in full (this test's own build refuses the binary's
    // checkpoints): the same figures, and those equal SQL.
    let mut restarted = settings.clone();
    restarted.ingest.spool_dir = spool.clone();
    let app = spawn_app_with(restarted).await;
    app.wait_landed().await;
    assert_eq!(gauge(&app, "start_checkpoint_seq").await, 0);
    for (i, district) in scopes.iter().enumerate() {
        let body = app
            .get_json(&format!("/api/v1/metrics?scope={district}"))
            .await;
        assert_eq!(
            nums(&body),
            figures[i],
            "{district}: from the checkpoint and in full"
        );
    }
    let (rows, distinct): (u64, u64) = app
        .store()
        .client()
        .query("SELECT count(), uniqExact(id) FROM events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, distinct, "nothing landed twice");
    let stored: std::collections::HashSet<String> = app
        .store()
        .client()
        .query("SELECT id FROM events")
        .fetch_all::<String>()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert!(
        acked.iter().all(|id| stored.contains(id)),
        "every acknowledged record is stored"
    );
    compared_with_sql(&app, &app.state.hub.all_current(), app.state.hub.now()).await;
    app.stop().await;
}
