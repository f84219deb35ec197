//! The daily-snapshot job: history behind the trend lines, equal to the live figures.

mod common;

use common::{sample_events, spawn_app};
use serde_json::{json, Value};
use vscc::domain::metric::MetricId;

#[tokio::test]
async fn todays_snapshot_equals_the_live_figures_and_trends_are_served() {
    let app = spawn_app().await;
    let events = sample_events(&app.state.tree, 3000, 11, 40, "snap");
    for chunk in events.chunks(1000) {
        app.post_events(&json!(chunk)).await;
    }
    app.wait_landed().await;
    let res = app
        .http
        .post(format!("{}/api/v1/jobs/snapshots", app.base))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let rows = res.json::<Value>().await.unwrap()["rows"].as_u64().unwrap();
    assert!(
        rows > 40 * 85 * 5,
        "about 40 days × 85 nodes × metrics ({rows})"
    );

    // Today's snapshot (the day is not over: it is read at 23:59:59) has the live num/den.
    let snap: Vec<(String, String, i64, Option<i64>)> = app.store().client()
        .query("SELECT node, metric, num, den FROM metric_snapshots FINAL WHERE day = (SELECT max(day) FROM metric_snapshots)")
        .fetch_all().await.unwrap();
    let live: std::collections::HashMap<(String, String), (i64, Option<i64>)> = app
        .state
        .hub
        .all_current()
        .into_iter()
        .flat_map(|(code, figures)| {
            figures
                .into_iter()
                .map(move |(m, f)| ((code.clone(), m.as_str().to_string()), (f.num, f.den)))
        })
        .collect();
    let mut compared = 0;
    for (node, metric, num, den) in &snap {
        // Overdue and age figures depend on the hour; the counts and ratios do not.
        if metric == MetricId::OpenAppeals.as_str() {
            continue;
        }
        assert_eq!(
            live[&(node.clone(), metric.clone())],
            (*num, *den),
            "{node} {metric}"
        );
        compared += 1;
    }
    assert!(compared > 300, "compared {compared}");

    let trends = app
        .get_json("/api/v1/trends?scope=440300&metrics=staffing_rate,veteran_hire_share&days=60")
        .await;
    let city = trends["veteran_hire_share"]["440300"].as_array().unwrap();
    assert!(city.len() >= 35, "a point a day ({})", city.len());
    assert_eq!(
        trends["staffing_rate"].as_object().unwrap().len(),
        11,
        "the city and its 10 districts"
    );
    let jobs = app.get_json("/api/v1/jobs").await;
    assert_eq!(
        (jobs[0]["job"].as_str(), jobs[0]["outcome"].as_str()),
        (Some("snapshots"), Some("ok"))
    );
    app.stop().await;
}
