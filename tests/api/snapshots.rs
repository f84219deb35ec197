//! The daily-snapshot job: history behind the trend lines, equal to the live figures.

use crate::helpers as common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{sample_events, spawn_app, spawn_app_with, test_settings, TestApp};
use serde_json::{json, Value};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};
use vscc::domain::time::SHANGHAI;

/// A clock the test sets: the live side believes it is that moment.
struct ManualClock(Mutex<OffsetDateTime>);

impl vscc::Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

fn end_of(day: Date) -> OffsetDateTime {
    PrimitiveDateTime::new(day, Time::from_hms(23, 59, 59).unwrap()).assume_offset(SHANGHAI)
}

/// (node, metric) → (num, den) of the live figures, open appeals aside (their ages depend on the
/// hour, not only the day).
fn live_counts(app: &TestApp) -> HashMap<(String, String), (i64, Option<i64>)> {
    app.state
        .hub
        .all_current()
        .into_iter()
        .flat_map(|(code, figures)| {
            figures
                .into_iter()
                .map(move |(m, f)| ((code.clone(), m.as_str().to_string()), (f.num, f.den)))
        })
        .filter(|((_, m), _)| m != "open_appeals")
        .collect()
}

#[tokio::test]
async fn a_past_days_snapshot_equals_what_the_live_side_showed_at_that_days_end() {
    let day_one = Date::from_calendar_date(2020, Month::June, 30).unwrap();
    let later = Date::from_calendar_date(2020, Month::August, 31).unwrap();
    let clock = Arc::new(ManualClock(Mutex::new(end_of(day_one))));
    let settings = test_settings();
    let built = vscc::app::Application::build_with_clock(settings.clone(), false, clock.clone())
        .await
        .unwrap();
    let app = TestApp::running(built, settings);

    // The simulated Shenzhen up to the end of 30 June 2020, as the wall screen saw it then.
    let (tree, map) = (app.state.tree.clone(), app.state.map.clone());
    let mut sim = vscc::Simulator::new(&tree, &map, 5, 0.02);
    let post_until = |sim: &mut vscc::Simulator<'_>, until: Date| {
        let mut batch = Vec::new();
        while let Some((_, events)) = sim.next_day(until) {
            batch.extend(events);
        }
        batch
    };
    let first = post_until(&mut sim, day_one);
    assert!(
        first.len() > 1000,
        "half a year of records ({})",
        first.len()
    );
    for chunk in first.chunks(5000) {
        assert_eq!(app.post_events(&json!(chunk)).await.status(), 200);
    }
    app.wait_landed().await;
    let then = live_counts(&app);

    // Two more months arrive; the clock moves on; the nightly job replays the history.
    let second = post_until(&mut sim, later);
    for chunk in second.chunks(5000) {
        assert_eq!(app.post_events(&json!(chunk)).await.status(), 200);
    }
    app.wait_landed().await;
    *clock.0.lock().unwrap() = end_of(later);
    assert_ne!(
        live_counts(&app),
        then,
        "the later records changed the live figures"
    );
    vscc::run_snapshots(app.store(), tree.clone(), app.state.hub.catalogue(), later)
        .await
        .unwrap();

    let snap: Vec<(String, String, i64, Option<i64>)> = app.store().client()
        .query("SELECT node, metric, num, den FROM metric_snapshots FINAL WHERE day = toDate(?) AND metric != 'open_appeals'")
        .bind(day_one.to_string())
        .fetch_all().await.unwrap();
    assert!(snap.len() > 300, "every node and metric ({})", snap.len());
    for (node, metric, num, den) in &snap {
        assert_eq!(
            then[&(node.clone(), metric.clone())],
            (*num, *den),
            "{node} {metric} on {day_one}"
        );
    }
    app.stop().await;
}

/// An app given `n` sample records (landed in ClickHouse), then batch job `job` run by the
/// admin: what it answered.
async fn with_records_and_job(n: usize, seed: u64, prefix: &str, job: &str) -> (TestApp, Value) {
    let app = spawn_app().await;
    let events = sample_events(&app.state.tree, n, seed, 40, prefix);
    for chunk in events.chunks(1000) {
        app.post_events(&json!(chunk)).await;
    }
    app.wait_landed().await;
    let res = app.post_empty(&format!("/api/v1/jobs/{job}")).await;
    assert_eq!(res.status(), 200);
    let ran = res.json().await.unwrap();
    (app, ran)
}

#[tokio::test]
async fn decision_tables_agree_with_the_live_figures() {
    let (app, ran) = with_records_and_job(4000, 21, "dec", "all").await;
    for job in ["snapshots", "progress", "league", "freshness"] {
        assert!(
            ran["jobs"][job].as_u64().unwrap() > 0,
            "{job} wrote rows: {ran}"
        );
    }

    // Progress: today's status per node and metric is the wall screen's.
    let progress: Vec<(String, String, String, Option<f64>)> = app.store().client()
        .query("SELECT node, metric, status, value FROM target_progress FINAL WHERE day = (SELECT max(day) FROM target_progress)")
        .fetch_all().await.unwrap();
    let live: HashMap<(String, String), (String, Option<f64>)> = app
        .state
        .hub
        .all_current()
        .into_iter()
        .flat_map(|(code, figures)| {
            figures.into_iter().map(move |(m, f)| {
                let status = f.status.as_str().to_string();
                ((code.clone(), m.as_str().to_string()), (status, f.value))
            })
        })
        .collect();
    // Metrics judged on overdue cases take the snapshot's status, judged as of the end of the
    // day: cases falling overdue later today make them differ from now (open appeals, the
    // feedback mailbox).
    let catalogue = app.state.hub.catalogue();
    let judged_on_overdue = |metric: &str| {
        catalogue
            .parse_name(metric)
            .and_then(|id| catalogue.get(id))
            .and_then(|d| d.target)
            .is_some_and(|t| t.on == vscc::domain::catalogue::Judged::Overdue)
    };
    let mut compared = 0;
    for (node, metric, status, value) in &progress {
        if judged_on_overdue(metric) {
            continue;
        }
        let (live_status, live_value) = &live[&(node.clone(), metric.clone())];
        assert_eq!(
            (status, value),
            (live_status, live_value),
            "{node} {metric}"
        );
        compared += 1;
    }
    assert!(compared > 300, "compared {compared}");

    // League: districts by staffing rate, best first, as the live values order them.
    let league: Vec<(String, f64, u32, u32)> = app.store().client()
        .query("SELECT node, value, rank, of FROM league_tables FINAL WHERE metric = 'staffing_rate' AND level = 'district' AND within = '440300' ORDER BY rank, node")
        .fetch_all().await.unwrap();
    assert!(league.len() >= 5, "{league:?}");
    assert!(
        league.windows(2).all(|w| w[0].1 >= w[1].1),
        "ranked by value: {league:?}"
    );
    assert_eq!(league[0].2, 1);
    assert!(league.iter().all(|r| r.3 as usize == league.len()));
    for (node, value, ..) in &league {
        assert_eq!(
            live[&(node.clone(), "staffing_rate".to_string())].1,
            Some(*value)
        );
    }

    // Freshness: a district's newest record of a kind, and of any kind, as plain SQL finds it.
    let (district, kind) = ("440305", "staff.hired");
    let fresh: Vec<(String, u32)> = app.store().client()
        .query("SELECT kind, toUInt32(last_at) FROM data_freshness FINAL WHERE node = ? AND (kind = ? OR kind = '*') ORDER BY kind")
        .bind(district).bind(kind)
        .fetch_all().await.unwrap();
    let newest = |filter: &'static str| {
        let client = app.store().client().clone();
        async move {
            client
                .query(&format!(
                    "SELECT toUInt32(max(at)) FROM events WHERE district = '440305' {filter}"
                ))
                .fetch_one::<u32>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        fresh,
        vec![
            ("*".to_string(), newest("").await),
            (kind.to_string(), newest("AND kind = 'staff.hired'").await)
        ]
    );

    let jobs = app.get_json("/api/v1/jobs").await;
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["outcome"] == "ok")
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    for job in ["snapshots", "progress", "league", "freshness"] {
        assert!(names.contains(&job), "{job} recorded: {names:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn todays_snapshot_equals_the_live_figures_and_trends_are_served() {
    let (app, ran) = with_records_and_job(3000, 11, "snap", "snapshots").await;
    let rows = ran["rows"].as_u64().unwrap();
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
        if metric == "open_appeals" {
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
    // A cases metric's trend carries each day's overdue count (what its status is judged on,
    // and what the pages plot), the same as the snapshot's; other metrics carry null there.
    let trends = app
        .get_json("/api/v1/trends?scope=440300&metrics=open_appeals,staffing_rate&days=60")
        .await;
    let kept: std::collections::HashMap<String, Option<i64>> = app
        .store()
        .client()
        .query("SELECT toString(day), overdue FROM metric_snapshots FINAL WHERE metric = 'open_appeals' AND node = '440300'")
        .fetch_all::<(String, Option<i64>)>()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let appeals = trends["open_appeals"]["440300"].as_array().unwrap();
    assert!(appeals.len() >= 35, "a point a day ({})", appeals.len());
    assert!(
        kept.values().any(|o| o.unwrap_or(0) > 0),
        "some day had overdue appeals: {kept:?}"
    );
    for point in appeals {
        let day = point[0].as_str().unwrap();
        assert_eq!(point[2].as_i64(), kept[day], "overdue of {day}: {point}");
    }
    for point in trends["staffing_rate"]["440300"].as_array().unwrap() {
        assert!(point[2].is_null(), "no overdue count for a ratio: {point}");
    }
    let jobs = app.get_json("/api/v1/jobs").await;
    assert_eq!(
        (jobs[0]["job"].as_str(), jobs[0]["outcome"].as_str()),
        (Some("snapshots"), Some("ok"))
    );
    app.stop().await;
}

/// The daily brief of a past day shows that day's figures as the snapshots kept them (not
/// today's), beside the day before's, with each district's; a bad or missing day is refused.
#[tokio::test]
async fn the_brief_of_a_past_day_is_that_days_snapshot() {
    let (app, _) = with_records_and_job(3000, 12, "brief", "snapshots").await;
    let days = app.get_json("/api/v1/brief/days").await;
    let days: Vec<&str> = days
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(days.len() >= 35, "{days:?}");
    let past = days[10];
    let brief = app.get_json(&format!("/api/v1/brief?date={past}")).await;
    assert_eq!(brief["date"], past);
    // (node, metric, value, status, overdue)
    type Snapshot = (String, String, Option<f64>, String, Option<i64>);
    let snapshot: Vec<Snapshot> = app
        .store()
        .client()
        .query(
            "SELECT node, metric, value, status, overdue FROM metric_snapshots FINAL \
             WHERE day = toDate(?) AND node IN ('440300', '440305')",
        )
        .bind(past)
        .fetch_all()
        .await
        .unwrap();
    let metrics = brief["metrics"].as_array().unwrap();
    // Every metric but the reporting rates of single kinds, which the brief's line on late
    // reports speaks of instead (one sheet).
    let per_kind = |m: &vscc::domain::catalogue::MetricDef| {
        m.measure.type_name() == "reporting" && m.measure.kinds().len() == 1
    };
    let catalogue = app.state.hub.catalogue();
    assert_eq!(
        metrics.len(),
        catalogue.metrics.iter().filter(|m| !per_kind(m)).count()
    );
    let mut compared = 0;
    let mut overdue_seen = 0;
    for (node, metric, value, status, overdue) in &snapshot {
        let Some(m) = metrics.iter().find(|m| m["id"] == *metric) else {
            let def = catalogue
                .metrics
                .iter()
                .find(|d| d.name == *metric)
                .unwrap();
            assert!(per_kind(def), "{metric} is missing from the brief");
            continue;
        };
        let shown = if node == "440300" {
            m["day"].clone()
        } else {
            m["children"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["code"] == *node)
                .cloned()
                .unwrap()
        };
        // serde_json parses floats to within an ulp (no float_roundtrip): equal to 1e-12.
        match (shown["value"].as_f64(), value) {
            (Some(a), Some(b)) => assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{node} {metric}: {a} {b}"
            ),
            (a, b) => assert_eq!(a, *b, "{node} {metric}"),
        }
        assert_eq!(shown["status"], *status, "{node} {metric}");
        // Cases metrics carry that day's overdue count too.
        assert_eq!(shown["overdue"].as_i64(), *overdue, "{node} {metric}");
        overdue_seen += usize::from(overdue.is_some());
        compared += 1;
    }
    // The city's every metric and 南山's that apply to a district.
    assert!(compared > metrics.len(), "compared {compared}");
    assert!(
        overdue_seen >= 2,
        "the cases metrics' overdue counts ({overdue_seen})"
    );
    // The day before is there to compare with.
    assert!(metrics.iter().any(|m| m["before"]["value"].is_number()));

    let (bad, missing) = (
        app.get("/api/v1/brief?date=2021-02-30").await,
        app.get("/api/v1/brief?date=1999-01-01").await,
    );
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("date"));
    assert_eq!(missing.status(), 404);
    let page = app.get("/brief?date=2021-01-01").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("每日简报"));

    // Printed as the nightly job prints it: an A4 PDF of that day's page, served, and linked
    // from the brief; a day not printed is a 404 that says where the page is.
    assert!(brief["pdf"].is_null(), "{}", brief["pdf"]);
    let printed = app
        .post_empty(&format!("/api/v1/brief/pdf?date={past}"))
        .await;
    assert_eq!(printed.status(), 200, "{}", printed.text().await.unwrap());
    let pdf = app.get(&format!("/api/v1/brief/pdf?date={past}")).await;
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let bytes = pdf.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF"), "not a PDF");
    let text = String::from_utf8_lossy(&bytes);
    // A4 portrait in points, on every page.
    assert!(
        text.contains("/MediaBox [0 0 594.95996 841.91998]"),
        "not A4"
    );
    let sheets = text.matches("/Type /Page\n").count()
        + text.matches("/Type /Page\r").count()
        + text.matches("/Type /Page ").count()
        + text.matches("/Type /Page>").count()
        + text.matches("/Type /Page/").count();
    assert_eq!(sheets, 1, "the brief prints on one sheet");
    let brief = app.get_json(&format!("/api/v1/brief?date={past}")).await;
    assert_eq!(brief["pdf"], format!("/api/v1/brief/pdf?date={past}"));
    let other = app
        .get(&format!("/api/v1/brief/pdf?date={}", days[11]))
        .await;
    assert_eq!(other.status(), 404);
    assert!(other.text().await.unwrap().contains("/brief?date="));
    app.stop().await;
}

/// Where Chromium is missing the brief is still served as a page; printing it is refused
/// with the reason.
#[tokio::test]
async fn without_chromium_the_brief_is_a_page_and_printing_says_why_not() {
    let mut settings = test_settings();
    settings.brief.chromium = String::new();
    let app = spawn_app_with(settings).await;
    app.post_events(&json!(sample_events(
        &app.state.tree,
        200,
        5,
        3,
        "nochrome"
    )))
    .await;
    app.wait_landed().await;
    let res = app.post_empty("/api/v1/jobs/snapshots").await;
    assert_eq!(res.status(), 200);
    let printed = app.post_empty("/api/v1/brief/pdf").await;
    assert_eq!(printed.status(), 503);
    assert!(printed.text().await.unwrap().contains("Chromium"));
    let brief = app.get_json("/api/v1/brief").await;
    assert!(brief["pdf"].is_null());
    assert_eq!(app.get("/api/v1/brief/pdf").await.status(), 404);
    app.stop().await;
}
