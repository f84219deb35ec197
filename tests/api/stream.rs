//! The live stream: snapshot and deltas agree with REST, resume, slow clients, access.

use crate::helpers as common;

use std::time::Duration;

use common::ws::{connect, next_json, subscribe, Ws};
use common::{spawn_app, spawn_app_with, test_settings, TestApp};
use serde_json::{json, Value};

/// Applies a delta's nodes onto a snapshot's nodes.
fn merge(into: &mut Value, delta: &Value) {
    for (code, metrics) in delta["nodes"].as_object().unwrap() {
        for (m, f) in metrics.as_object().unwrap() {
            into[code][m] = f.clone();
        }
    }
}

fn hire(id: &str, org: &str, veteran: bool) -> Value {
    json!({"id": id, "kind": "staff.hired", "org": org, "at": "2021-03-04T10:15:00+08:00", "data": {"staff_id": id, "veteran": veteran}})
}

/// Receives deltas until the merged view equals the REST answer.
async fn converge(app: &TestApp, ws: &mut Ws, view: &mut Value, last_seq: &mut u64, scope: &str) {
    for _ in 0..200 {
        let rest = app
            .get_json(&format!("/api/v1/metrics?scope={scope}"))
            .await;
        if &rest["nodes"] == view {
            return;
        }
        let Some(msg) = next_json(ws, Duration::from_secs(5)).await else {
            break;
        };
        assert_eq!(msg["type"], "delta", "{msg}");
        assert_eq!(
            msg["seq"].as_u64().unwrap(),
            *last_seq + 1,
            "seq rises by one per message"
        );
        *last_seq += 1;
        merge(view, &msg);
    }
    let rest = app
        .get_json(&format!("/api/v1/metrics?scope={scope}"))
        .await;
    assert_eq!(
        &rest["nodes"], view,
        "the stream converges on the REST answer"
    );
}

#[tokio::test]
async fn snapshot_and_deltas_equal_the_rest_answer() {
    let app = spawn_app().await;
    app.post_events(&json!([hire("h0", "440305", true)])).await;
    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await; // let one tick publish h0
    subscribe(&mut ws, "s1", "440300", None).await;
    let snap = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["seq"], 1);
    assert_eq!(
        snap["nodes"].as_object().unwrap().len(),
        11,
        "the city and its 10 districts"
    );
    let mut view = snap["nodes"].clone();
    assert_eq!(
        view,
        app.get_json("/api/v1/metrics?scope=440300").await["nodes"]
    );
    let mut seq = 1;
    for i in 0..5 {
        app.post_events(&json!([hire(
            &format!("h{}", i + 1),
            "440303001001",
            i % 2 == 0
        )]))
        .await;
        converge(&app, &mut ws, &mut view, &mut seq, "440300").await;
    }
    assert!(seq > 1, "deltas arrived");
    assert_eq!(view["440303"]["veteran_hire_share"]["den"], 5);
    app.stop().await;
}

#[tokio::test]
async fn resume_replays_exactly_the_missed_deltas_or_starts_over() {
    let app = spawn_app().await;
    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(&mut ws, "s", "440305", None).await;
    let snap = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    let epoch = snap["epoch"].as_str().unwrap().to_string();
    let mut view = snap["nodes"].clone();
    let mut seq = 1;
    app.post_events(&json!([hire("r1", "440305001", true)]))
        .await;
    converge(&app, &mut ws, &mut view, &mut seq, "440305").await;
    drop(ws);

    // Changes while away, then resume from the last seq seen.
    for i in 0..3 {
        app.post_events(&json!([hire(&format!("r{}", i + 2), "440305002", false)]))
            .await;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(
        &mut ws,
        "s",
        "440305",
        Some(json!({"epoch": epoch, "seq": seq})),
    )
    .await;
    let first = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        first["type"], "delta",
        "a known epoch resumes with deltas: {first}"
    );
    assert_eq!(first["seq"].as_u64().unwrap(), seq + 1);
    assert_eq!(first["epoch"], epoch.as_str());
    seq += 1;
    merge(&mut view, &first);
    converge(&app, &mut ws, &mut view, &mut seq, "440305").await;
    assert_eq!(view["440305"]["veteran_hire_share"]["den"], 4);

    // Nothing missed: resuming at the latest seq sends nothing until something changes.
    drop(ws);
    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(
        &mut ws,
        "s",
        "440305",
        Some(json!({"epoch": epoch, "seq": seq})),
    )
    .await;
    assert!(next_json(&mut ws, Duration::from_millis(400))
        .await
        .is_none());
    app.post_events(&json!([hire("r9", "440305002", true)]))
        .await;
    let next = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("delta"), Some(seq + 1))
    );

    // An unknown epoch, or a seq beyond what was sent, gets a fresh snapshot with a new epoch.
    subscribe(
        &mut ws,
        "t",
        "440305",
        Some(json!({"epoch": "nope", "seq": 3})),
    )
    .await;
    let fresh = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(fresh["type"], "snapshot");
    assert_ne!(fresh["epoch"], epoch.as_str());
    app.stop().await;
}

#[tokio::test]
async fn resume_after_history_ran_out_starts_over_with_a_snapshot() {
    let mut settings = test_settings();
    settings.stream.history_ticks = 16;
    let app = spawn_app_with(settings).await;
    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(&mut ws, "s", "440300", None).await;
    let snap = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    let epoch = snap["epoch"].as_str().unwrap().to_string();
    drop(ws);
    for i in 0..25 {
        app.post_events(&json!([hire(&format!("g{i}"), "440303", true)]))
            .await;
        tokio::time::sleep(Duration::from_millis(70)).await;
    }
    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(
        &mut ws,
        "s",
        "440300",
        Some(json!({"epoch": epoch, "seq": 1})),
    )
    .await;
    let msg = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(msg["type"], "snapshot", "{msg}");
    assert_ne!(msg["epoch"], epoch.as_str());
    assert_eq!(msg["nodes"]["440303"]["veteran_hire_share"]["den"], 25);
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_while_others_keep_receiving() {
    let mut settings = test_settings();
    settings.stream.send_timeout_ms = 500;
    let app = spawn_app_with(settings).await;
    // The stalled client: many snapshots asked for (16 subscriptions, the most one connection
    // may hold, each re-sent), a tiny receive buffer, and it never reads.
    let (mut stalled, _) = common::ws::slow_reader(&app).await;
    for i in 0..400 {
        subscribe(&mut stalled, &format!("s{}", i % 16), "440300", None).await;
    }
    let mut healthy = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(&mut healthy, "h", "440300", None).await;
    assert_eq!(
        next_json(&mut healthy, Duration::from_secs(5))
            .await
            .unwrap()["type"],
        "snapshot"
    );
    let screens = app.get_json("/api/v1/screens").await;
    assert_eq!(screens.as_array().unwrap().len(), 2);

    let mut received = 0;
    let mut dropped = false;
    for i in 0..150 {
        app.post_events(&json!([hire(&format!("x{i}"), "440303", i % 3 == 0)]))
            .await;
        while let Some(m) = next_json(&mut healthy, Duration::from_millis(30)).await {
            assert_eq!(m["type"], "delta");
            received += 1;
        }
        if app
            .get_json("/api/v1/screens")
            .await
            .as_array()
            .unwrap()
            .len()
            == 1
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the non-reading client was dropped");
    assert!(
        received > 5,
        "the healthy screen kept receiving ({received} deltas)"
    );
    app.post_events(&json!([hire("after", "440303", true)]))
        .await;
    assert_eq!(
        next_json(&mut healthy, Duration::from_secs(5))
            .await
            .unwrap()["type"],
        "delta"
    );
    app.stop().await;
}

#[tokio::test]
async fn scope_origin_and_token_are_checked() {
    let mut settings = test_settings();
    settings.auth.tokens = vec![vscc::TokenConfig {
        token: "nanshan-screen".into(),
        name: "南山 screen".into(),
        role: vscc::Role::Leader,
        scope: "440305".into(),
    }];
    let app = spawn_app_with(settings).await;
    assert_eq!(connect(&app, None, None).await.err(), Some(401));
    assert_eq!(connect(&app, Some("forged"), None).await.err(), Some(401));
    assert_eq!(
        connect(&app, Some("nanshan-screen"), Some("http://evil.example"))
            .await
            .err(),
        Some(403)
    );
    let mut ws = connect(&app, Some("nanshan-screen"), Some("http://127.0.0.1:8080"))
        .await
        .unwrap();
    subscribe(&mut ws, "city", "440300", None).await;
    let refused = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (refused["type"].as_str(), refused["sub"].as_str()),
        (Some("error"), Some("city"))
    );
    assert!(
        refused["reason"].as_str().unwrap().contains("outside"),
        "{refused}"
    );
    subscribe(&mut ws, "own", "440305", None).await;
    let ok = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ok["type"], "snapshot");
    assert!(ok["nodes"].get("440305").is_some());
    let screens = app.get_json("/api/v1/screens").await;
    assert_eq!(screens[0]["name"], "南山 screen");
    assert_eq!(screens[0]["subscriptions"][0]["scope"], "440305");
    app.stop().await;
}

#[tokio::test]
async fn when_the_last_case_closes_the_delta_leaves_oldest_days_out_and_replaces_the_object() {
    let app = spawn_app().await;
    let street = "440303001";
    let appeal = |id: &str, kind: &str, at: &str| json!({"id": id, "kind": kind, "org": "440303001001", "at": at, "data": {"appeal_id": "A-1"}});
    let received = (time::OffsetDateTime::now_utc() - time::Duration::days(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    app.post_events(&json!([appeal("a1", "appeal.received", &received)]))
        .await;
    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(&mut ws, "s1", street, None).await;
    let snap = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(snap["type"], "snapshot");
    let mut view = snap["nodes"].clone();
    let mut seq = snap["seq"].as_u64().unwrap();
    // The open case, as the stream shows it: its age in days.
    while view[street]["open_appeals"]["num"] != 1 {
        let msg = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("the open case arrives");
        seq = msg["seq"].as_u64().unwrap();
        merge(&mut view, &msg);
    }
    assert_eq!(view[street]["open_appeals"]["num"], 1, "{}", view[street]);
    assert_eq!(view[street]["open_appeals"]["oldest_days"], 3);

    let closed = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    app.post_events(&json!([appeal("a2", "appeal.closed", &closed)]))
        .await;
    let delta = loop {
        let msg = next_json(&mut ws, Duration::from_secs(5))
            .await
            .expect("a delta when the case closes");
        assert_eq!(msg["type"], "delta", "{msg}");
        assert_eq!(msg["seq"].as_u64().unwrap(), seq + 1);
        seq += 1;
        if msg["nodes"][street]["open_appeals"].is_object() {
            break msg;
        }
    };
    let figure = &delta["nodes"][street]["open_appeals"];
    assert_eq!(figure["num"], 0);
    assert!(
        figure.get("oldest_days").is_none(),
        "no open case, no age: the field is left out, {figure}"
    );
    // Replacing the object (not merging into it) is what equals the REST answer.
    merge(&mut view, &delta);
    let rest = app
        .get_json(&format!("/api/v1/metrics?scope={street}"))
        .await;
    assert_eq!(
        rest["nodes"][street]["open_appeals"],
        view[street]["open_appeals"]
    );
    assert!(rest["nodes"][street]["open_appeals"]
        .get("oldest_days")
        .is_none());
    app.stop().await;
}
