//! Dashboards as files: served, validated, reloaded on change without a restart.

use crate::helpers as common;

use std::time::Duration;

use common::{spawn_app_with, test_settings};

const TRAINING: &str = r#"{
  "title": "业务培训 · 年度轮训",
  "scope": "440300",
  "tiles": ["training_coverage", "training_classes"],
  "map_metrics": ["training_coverage"],
  "map_rotate_seconds": 30,
  "league_metric": "training_coverage"
}"#;

#[tokio::test]
async fn a_changed_dashboard_file_is_served_without_a_restart_and_a_broken_one_keeps_the_last() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("training.json");
    std::fs::write(&file, TRAINING).unwrap();
    let mut settings = test_settings();
    settings.web.dashboards_dir = dir.path().to_path_buf();
    let app = spawn_app_with(settings).await;

    let first = app.get_json("/api/v1/dashboards/training").await;
    assert_eq!(first["dashboard"]["title"], "业务培训 · 年度轮训");
    let version = first["version"].as_str().unwrap().to_string();

    // An edit reaches the API (and so the open screens, which poll it) within seconds.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(
        &file,
        TRAINING.replace("业务培训 · 年度轮训", "业务培训 · 年终冲刺"),
    )
    .unwrap();
    let mut updated = None;
    for _ in 0..100 {
        let d = app.get_json("/api/v1/dashboards/training").await;
        if d["version"] != version.as_str() {
            updated = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let updated = updated.expect("the edit is picked up within 10 s");
    assert_eq!(updated["dashboard"]["title"], "业务培训 · 年终冲刺");

    // A broken edit is reported and the last good version stays.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(
        &file,
        TRAINING.replace("training_coverage\"],", "no_such_metric\"],"),
    )
    .unwrap();
    let mut reported = None;
    for _ in 0..100 {
        let d = app.get_json("/api/v1/dashboards/training").await;
        if d["error"].is_string() {
            reported = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reported = reported.expect("the broken file is reported within 10 s");
    assert!(reported["error"]
        .as_str()
        .unwrap()
        .contains("no_such_metric"));
    assert_eq!(
        reported["dashboard"]["title"], "业务培训 · 年终冲刺",
        "the last good version stays"
    );
    assert_eq!(app.get("/api/v1/dashboards/nope").await.status(), 404);
    app.stop().await;
}
