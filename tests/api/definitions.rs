//! Metrics as definition files, changed while the server runs: a broken file is refused and the
//! catalogue in service stays; a valid change is rebuilt from ClickHouse, switched to, and every
//! screen starts over with a snapshot that has it.

use crate::helpers as common;

use std::time::Duration;

use common::ws::{connect, next_json, subscribe};
use common::{compared_with_sql, sample_events, spawn_app_with, test_settings, TestApp};
use serde_json::{json, Value};

const HIRES_THIS_YEAR: &str = r#"# Hires this calendar year (a test's metric).
name = "hires_this_year"
label_zh = "本年招录"
clause = "三"
levels = ["city", "district"]
unit = "count"

[measure]
type = "count"
kind = "staff.hired"
period = "year"
"#;

async fn catalogue_ids(app: &TestApp) -> Vec<String> {
    app.get_json("/api/v1/catalogue")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn prometheus(app: &TestApp, name: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("vscc_{name} ")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Polls until `check` holds (definitions are looked at every second).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within 30 s: {what}");
}

#[tokio::test]
async fn a_changed_metric_definition_is_switched_to_while_serving_and_a_broken_one_is_not() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("metrics-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir("dashboards/metrics").unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let mut settings = test_settings();
    settings.catalogue.metrics_dir = dir.clone();
    let app = spawn_app_with(settings).await;
    let events = sample_events(&app.state.tree, 3000, 5, 60, "def");
    let answer: Value = app.post_events(&json!(events)).await.json().await.unwrap();
    assert_eq!(answer["rejected"], 0, "{answer}");
    app.wait_landed().await;
    let before = catalogue_ids(&app).await;
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(before.len(), files, "one metric per file");

    let mut ws = connect(&app, Some(app.admin_token()), None).await.unwrap();
    subscribe(&mut ws, "all", "440300", None).await;
    let first = next_json(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first["type"], "snapshot");

    // A broken file: refused with its file and line, and the catalogue in service stays.
    std::fs::write(
        dir.join("broken.toml"),
        HIRES_THIS_YEAR.replace("staff.hired", "staff.fired"),
    )
    .unwrap();
    eventually("the broken file is reported", || async {
        prometheus(&app, "metric_definitions_last_reload_successful").await == Some(0.0)
    })
    .await;
    let refused = app.state.definitions.refused().unwrap();
    assert!(
        refused.contains("broken.toml:8") && refused.contains("staff.fired"),
        "{refused}"
    );
    assert_eq!(catalogue_ids(&app).await, before);
    std::fs::remove_file(dir.join("broken.toml")).unwrap();

    // A new metric, while records keep arriving: those taken in during the rebuild must count
    // once in the new state (neither lost nor read twice from ClickHouse).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poster = {
        let (http, base, token) = (
            app.http.clone(),
            app.base.clone(),
            app.admin_token().to_string(),
        );
        let more = sample_events(&app.state.tree, 20_000, 2, 60, "def-during");
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut posted = 0;
            for chunk in more.chunks(20) {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let answer: Value = http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&token)
                    .json(&json!(chunk))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(answer["rejected"], 0, "{answer}");
                posted += chunk.len();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            posted
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.join("hires_this_year.toml"), HIRES_THIS_YEAR).unwrap();
    eventually("the new metric is in service", || async {
        catalogue_ids(&app)
            .await
            .contains(&"hires_this_year".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let posted = poster.await.unwrap();
    assert!(
        posted > 0 && posted < 20_000,
        "posted {posted} records around the switch"
    );
    assert_eq!(
        prometheus(&app, "metric_definitions_last_reload_successful").await,
        Some(1.0)
    );

    // The screen subscribed to "all metrics" starts over with a snapshot that has it.
    let mut snapshot = None;
    while let Some(msg) = next_json(&mut ws, Duration::from_secs(5)).await {
        if msg["type"] == "snapshot" {
            snapshot = Some(msg);
            break;
        }
    }
    let snapshot = snapshot.expect("a fresh snapshot after the switch");
    assert_ne!(snapshot["epoch"], first["epoch"]);
    let city = &snapshot["nodes"]["440300"];
    assert!(city["hires_this_year"]["status"].is_string(), "{city}");

    // Every figure, the new one included, equals the SQL generated from the definitions —
    // the records posted during the rebuild counted once.
    app.wait_landed().await;
    let live = app.state.hub.all_current();
    compared_with_sql(&app, &live, app.state.hub.now()).await;
    let rest = app
        .get_json("/api/v1/metrics?scope=440300&metrics=hires_this_year")
        .await;
    assert!(rest["nodes"]["440300"]["hires_this_year"]["num"]
        .as_i64()
        .is_some());
    app.stop().await;
}
