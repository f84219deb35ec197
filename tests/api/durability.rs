//! Acknowledged records are never lost and never counted twice: a real vscc process killed
//! with SIGKILL mid-ingest, and ClickHouse stopped and restarted under ingest.

use crate::helpers as common;

use std::collections::HashSet;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, spawn_app_with, test_settings, wait_ready};
use serde_json::{json, Value};

fn batch(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"id": format!("{prefix}-{i}"), "kind": "veteran.registered", "org": "440305007003",
                   "at": "2021-03-04T10:15:00+08:00", "data": {"person_id": format!("{prefix}-{i}")}})
        })
        .collect()
}

/// Rows in `events` and distinct ids among them: equal when nothing landed twice.
async fn rows_and_distinct_ids(store: &vscc::Store) -> (u64, u64) {
    store
        .client()
        .query("SELECT count(), uniqExact(id) FROM events")
        .fetch_one()
        .await
        .unwrap()
}

struct Server {
    child: Child,
    base: String,
}

fn start_server(port: u16, database: &str, spool: &std::path::Path) -> Server {
    let child = common::serve_command(port, database, spool, "kill-test")
        .env("VSCC__INGEST__FLUSH_INTERVAL_MS", "200")
        // Small batches, so that the kill finds two inserts in flight (the writer's default).
        .env("VSCC__INGEST__BATCH_ROWS", "1000")
        // Bulk clients re-send everything as fast as they can: no rate limit here.
        .env("VSCC__LIMITS__INGEST_PER_SEC", "1000000")
        .env("VSCC__LIMITS__INGEST_BURST", "1000000")
        .spawn()
        .unwrap();
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn sigkill_mid_ingest_loses_nothing_acknowledged_and_counts_nothing_twice() {
    let settings = test_settings();
    let database = settings.clickhouse.database.clone();
    let spool = settings.ingest.spool_dir.clone();
    let port = free_port();
    let http = reqwest::Client::new();
    let mut server = start_server(port, &database, &spool);
    wait_ready(&http, &server.base).await;

    // Two clients post batches as fast as they can; each remembers what was acknowledged.
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let sent: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..2 {
        let (acked, sent, http, base) = (
            acked.clone(),
            sent.clone(),
            http.clone(),
            server.base.clone(),
        );
        clients.push(tokio::spawn(async move {
            for b in 0.. {
                let events = batch(&format!("k{c}-{b}"), 200);
                sent.lock().unwrap().push(events.clone());
                let res = http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth("kill-test")
                    .json(&events)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == 200 => {
                        let ids = events.iter().map(|e| e["id"].as_str().unwrap().to_string());
                        acked.lock().unwrap().extend(ids);
                    }
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    server.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 1000,
        "ingest was under way ({} acknowledged)",
        acked.len()
    );

    let mut server = start_server(port, &database, &spool);
    wait_ready(&http, &server.base).await;
    let store = vscc::Store::new(&common::clickhouse_url(), "default", "", &database).unwrap();
    let (rows, distinct) = rows_and_distinct_ids(&store).await;
    assert_eq!(rows, distinct, "no record is in ClickHouse twice");
    let stored: HashSet<String> = store
        .client()
        .query("SELECT id FROM events")
        .fetch_all::<String>()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );

    // Re-sending everything, acknowledged or not, leaves every id exactly once.
    let all: Vec<Vec<Value>> = sent.lock().unwrap().clone();
    let mut total = HashSet::new();
    for events in &all {
        let r = http
            .post(format!("{}/api/v1/events", server.base))
            .bearer_auth("kill-test")
            .json(events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: Value = r.json().await.unwrap();
        if events
            .iter()
            .all(|e| acked.contains(e["id"].as_str().unwrap()))
        {
            assert_eq!(
                answer["accepted"], 0,
                "acknowledged ids stay no-ops across restarts"
            );
        }
        total.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
    }
    let figures: Value = http
        .get(format!(
            "{}/api/v1/metrics?scope=440305007003&metrics=archive_coverage",
            server.base
        ))
        .bearer_auth("kill-test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        figures["nodes"]["440305007003"]["archive_coverage"]["den"].as_u64(),
        Some(total.len() as u64),
        "live figures count each record once"
    );
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    server.child.wait().unwrap();
    let (rows, distinct) = rows_and_distinct_ids(&store).await;
    assert_eq!((rows, distinct), (total.len() as u64, total.len() as u64));
}

#[tokio::test]
async fn ingest_rides_out_a_clickhouse_outage_and_everything_lands_once_it_returns() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut settings = test_settings();
    settings.clickhouse.managed.dir = tmp.path().to_path_buf();
    settings.ingest.max_spool_bytes = 400_000;
    // Small batches: the outage cuts off inserts while another is in flight.
    settings.ingest.batch_rows = 150;
    let mut clickhouse = vscc::ManagedClickHouse::start(&settings.clickhouse.managed)
        .await
        .unwrap();
    settings.clickhouse.url = clickhouse.url();
    let app = spawn_app_with(settings).await;

    let mut accepted = 0u64;
    let answer: Value = app
        .post_events(&json!(batch("before", 100)))
        .await
        .json()
        .await
        .unwrap();
    accepted += answer["accepted"].as_u64().unwrap();
    clickhouse.stop().await;

    // ClickHouse is down: ingest keeps answering from the spool until its bound…
    let mut refused = None;
    for b in 0..200 {
        let res = app
            .post_events(&json!(batch(&format!("during-{b}"), 100)))
            .await;
        if res.status() == 503 {
            refused = Some(
                res.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            break;
        }
        assert_eq!(res.status(), 200);
        accepted += res.json::<Value>().await.unwrap()["accepted"]
            .as_u64()
            .unwrap();
    }
    assert!(
        accepted > 200,
        "ingest answered while ClickHouse was down ({accepted} accepted)"
    );
    let retry_after = refused.expect("a full spool answers 503");
    assert_eq!(retry_after.as_deref(), Some("5"));

    // …and everything spooled lands once ClickHouse is back.
    clickhouse.restart().await.unwrap();
    app.wait_landed().await;
    let (rows, distinct) = rows_and_distinct_ids(app.store()).await;
    assert_eq!((rows, distinct), (accepted, accepted));
    let res = app.post_events(&json!(batch("after", 10))).await;
    assert_eq!(
        res.status(),
        200,
        "the spool drained, so ingest accepts again"
    );
    app.stop().await;
    clickhouse.stop().await;
}

/// A TCP proxy in front of ClickHouse. While `lose_answers` is set it passes requests on but
/// swallows ClickHouse's answers and closes the connection: an insert commits and vscc hears
/// only that the connection dropped.
struct AnswerEatingProxy {
    url: String,
    lose_answers: Arc<std::sync::atomic::AtomicBool>,
}

async fn answer_eating_proxy(upstream: &str) -> AnswerEatingProxy {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upstream.trim_start_matches("http://").to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let lose_answers = Arc::new(AtomicBool::new(false));
    let lose = lose_answers.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
            });
            let lose = lose.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                    if lose.load(Ordering::SeqCst) {
                        break; // dropping `to_client` closes the client's side, answer unsent
                    }
                    if to_client.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    AnswerEatingProxy { url, lose_answers }
}

#[tokio::test]
async fn an_insert_that_landed_but_whose_answer_was_lost_is_not_inserted_again() {
    use std::sync::atomic::Ordering;
    let proxy = answer_eating_proxy(&common::clickhouse_url()).await;
    let mut settings = test_settings();
    settings.clickhouse.url = proxy.url.clone();
    // Several batches, so that answers are lost while two inserts are in flight.
    settings.ingest.batch_rows = 100;
    let database = settings.clickhouse.database.clone();
    let app = spawn_app_with(settings).await;
    let direct = vscc::Store::new(&common::clickhouse_url(), "default", "", &database).unwrap();

    proxy.lose_answers.store(true, Ordering::SeqCst);
    let answer: Value = app
        .post_events(&json!(batch("lost", 450)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 450);
    // Inserts land while vscc hears of none succeeding; a retry that re-sent them blindly
    // would land them again, so give it time to.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rows_and_distinct_ids(&direct).await.0 < 100 {
        assert!(Instant::now() < deadline, "inserts reached ClickHouse");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.lose_answers.store(false, Ordering::SeqCst);

    app.wait_landed().await;
    assert_eq!(
        rows_and_distinct_ids(&direct).await,
        (450, 450),
        "each record once in ClickHouse"
    );
    app.stop().await;
}

/// An insert that retrying cannot fix (here: a column the rows need was dropped) keeps the
/// records in the log, says so in /readyz and /metrics instead of retrying silently, and the
/// records land — once — when the store is fixed.
#[tokio::test]
async fn an_insert_that_cannot_succeed_keeps_the_records_and_says_so() {
    let mut settings = test_settings();
    settings.ingest.blocked_retry_secs = 1;
    let app = spawn_app_with(settings).await;
    let store = app.store().clone();
    let ddl = |sql: &'static str| {
        let store = store.clone();
        async move { store.client().query(sql).execute().await.unwrap() }
    };
    ddl("ALTER TABLE events DROP COLUMN num_values").await;
    let events = batch("blocked", 3);
    let res = app.post_events(&json!(events)).await;
    assert_eq!(res.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(20);
    let readiness = loop {
        let res = app.get("/readyz").await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        if status == 503 && body["writer"] != "ok" {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz never said the writer is stuck"
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
    assert_eq!(rows_and_distinct_ids(app.store()).await, (0, 0));

    ddl("ALTER TABLE events ADD COLUMN num_values Array(Int64)").await;
    app.wait_landed().await;
    assert_eq!(rows_and_distinct_ids(app.store()).await, (3, 3));
    assert_eq!(app.get("/readyz").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("vscc_ingest_writer_blocked 0"),
        "{metrics}"
    );
    app.stop().await;
}

/// Corrections and withdrawals under way when the process is killed: each acknowledged one is
/// there after the restart, none twice, and the figures the restarted process rebuilds equal
/// the SQL recomputation over the effective records.
#[tokio::test]
async fn sigkill_mid_corrections_loses_none_acknowledged_and_the_figures_equal_sql() {
    let settings = test_settings();
    let database = settings.clickhouse.database.clone();
    let spool = settings.ingest.spool_dir.clone();
    let port = free_port();
    let http = reqwest::Client::new();
    let mut server = start_server(port, &database, &spool);
    wait_ready(&http, &server.base).await;
    let events = batch("c", 400);
    let r = http
        .post(format!("{}/api/v1/events", server.base))
        .bearer_auth("kill-test")
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Four clients correct (odd records: another person) or withdraw (even) one record after
    // another; each remembers what was acknowledged.
    let acked: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..4usize {
        let (acked, http, base, events) = (
            acked.clone(),
            http.clone(),
            server.base.clone(),
            events.clone(),
        );
        clients.push(tokio::spawn(async move {
            for (i, e) in events.iter().enumerate().skip(c).step_by(4) {
                let id = e["id"].as_str().unwrap().to_string();
                let withdraw = i % 2 == 0;
                let request = if withdraw {
                    http.delete(format!("{base}/api/v1/events/{id}"))
                        .json(&json!({"reason": "重复"}))
                } else {
                    let mut record = e.clone();
                    record.as_object_mut().unwrap().remove("id");
                    record["data"]["person_id"] = json!(format!("fixed-{i}"));
                    http.put(format!("{base}/api/v1/events/{id}"))
                        .json(&json!({"record": record, "reason": "身份证号录错"}))
                };
                match request.bearer_auth("kill-test").send().await {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push((id, withdraw)),
                    _ => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    server.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 40,
        "corrections were under way ({})",
        acked.len()
    );

    let mut restarted = settings.clone();
    restarted.ingest.spool_dir = spool.clone();
    let app = spawn_app_with(restarted).await;
    app.wait_landed().await;
    let store = app.store();
    // Each row of a change once: (id, version, sign) never twice.
    let (rows, distinct): (u64, u64) = store
        .client()
        .query("SELECT count(), uniqExact(id, version, sign) FROM events")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, distinct, "no row of a change is in ClickHouse twice");
    let effective: Vec<(String, u32)> = store
        .client()
        .query("SELECT id, version FROM events_effective")
        .fetch_all()
        .await
        .unwrap();
    for (id, withdrawn) in &acked {
        let versions: Vec<u32> = effective
            .iter()
            .filter(|(e, _)| e == id)
            .map(|(_, v)| *v)
            .collect();
        if *withdrawn {
            assert!(versions.is_empty(), "{id} was withdrawn: {versions:?}");
        } else {
            assert_eq!(versions, [2], "{id} was corrected");
        }
    }
    crate::helpers::compared_with_sql(&app, &app.state.hub.all_current(), app.state.hub.now())
        .await;
    app.stop().await;
}

/// Task steps under way when the process is killed: every acknowledged step is on the task's
/// timeline after the restart, once, and the task figures the restarted process rebuilds equal
/// the SQL recomputation.
#[tokio::test]
async fn sigkill_mid_task_steps_loses_none_acknowledged() {
    let settings = test_settings();
    let database = settings.clickhouse.database.clone();
    let spool = settings.ingest.spool_dir.clone();
    let port = free_port();
    let http = reqwest::Client::new();
    let mut server = start_server(port, &database, &spool);
    wait_ready(&http, &server.base).await;
    let due = (time::OffsetDateTime::now_utc() + time::Duration::days(3)).date();
    let r = http
        .post(format!("{}/api/v1/tasks", server.base))
        .bearer_auth("kill-test")
        .json(&json!({"id": "kill-task", "title": "走访", "instruction": "逐户走访", "due": due.to_string(),
            "selector": {"scope": "440300", "level": "street"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let streets: Vec<String> = r.json::<Value>().await.unwrap()["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();

    // Four clients take the streets' steps (sign, answer, submit), each remembering what was
    // acknowledged.
    let acked: Arc<Mutex<Vec<(String, &'static str)>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..4usize {
        let (acked, http, base, streets) = (
            acked.clone(),
            http.clone(),
            server.base.clone(),
            streets.clone(),
        );
        clients.push(tokio::spawn(async move {
            for org in streets.iter().skip(c).step_by(4) {
                for (action, body) in [
                    ("sign", json!({})),
                    ("feedback", json!({"text": "进展"})),
                    ("submit", json!({"text": "完成"})),
                ] {
                    let sent = http
                        .post(format!(
                            "{base}/api/v1/tasks/kill-task/assignments/{org}/{action}"
                        ))
                        .bearer_auth("kill-test")
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().push((org.clone(), action))
                        }
                        _ => return,
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    unsafe { libc::kill(server.child.id() as i32, libc::SIGKILL) };
    server.child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 60, "steps were under way ({})", acked.len());

    let mut restarted = settings.clone();
    restarted.ingest.spool_dir = spool.clone();
    let app = spawn_app_with(restarted).await;
    app.wait_landed().await;
    let view = app.get_json("/api/v1/tasks/kill-task").await;
    let timeline = view["timeline"].as_array().unwrap();
    let step_of = |a: &str| match a {
        "sign" => "sign",
        "feedback" => "feedback",
        _ => "submit",
    };
    for (org, action) in &acked {
        let n = timeline
            .iter()
            .filter(|e| e["org"] == org.as_str() && e["step"] == step_of(action))
            .count();
        assert_eq!(n, 1, "{org} {action} acknowledged, on the timeline once");
    }
    let (rows, ids): (u64, u64) = app
        .store()
        .client()
        .query("SELECT count(), uniqExact(id) FROM events WHERE startsWith(kind, 'task.')")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(rows, ids, "no step is in ClickHouse twice");
    crate::helpers::compared_with_sql(&app, &app.state.hub.all_current(), app.state.hub.now())
        .await;
    app.stop().await;
}
