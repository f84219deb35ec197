//! One truth at a glance: the status rules, the alert groups and the brief's scope through the
//! API, and (`tests/browser/one_truth.mjs`) the same status of every node × metric on every
//! page, text legible from five metres, the duty console's groups and a scoped ticker.

use crate::helpers as common;

use serde_json::{json, Value};

#[test]
fn every_page_reads_the_same_status_legibly_and_duty_officers_get_groups() {
    let stdout = common::run_browser_script("one_truth.mjs");
    assert!(stdout.contains("reads the same status on the wall, the board, its page and the brief"));
    assert!(stdout.contains("3840×2160 board page 1: no text under 2.4 %"));
    assert!(stdout.contains("a group opens to its units by name"));
    assert!(stdout.contains("wall shows its own"));
}

/// An appeal received `days_ago` days and 12 hours ago at `org`, not accepted (the half day
/// keeps whole-day counts away from their boundaries however long the test takes).
fn appeal(id: &str, org: &str, days_ago: i64) -> Value {
    let at = time::OffsetDateTime::now_utc()
        - time::Duration::days(days_ago)
        - time::Duration::hours(12);
    json!({"id": id, "kind": "appeal.received", "org": org,
        "at": vscc::domain::time::rfc3339(at), "data": {"appeal_id": id}})
}

#[tokio::test]
async fn a_metric_without_a_target_is_tracked_on_every_node_never_on_track() {
    let app = common::spawn_app().await;
    let events = common::sample_events(&app.state.tree, 3000, 7, 200, "ot");
    assert_eq!(app.post_events(&json!(events)).await.status(), 200);
    let catalogue: Value = app.get_json("/api/v1/catalogue").await;
    let untargeted: Vec<&str> = catalogue
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["target"].is_null())
        .map(|m| {
            assert_eq!(m["target_zh"], "跟踪（无目标）");
            m["id"].as_str().unwrap()
        })
        .collect();
    assert!(untargeted.len() >= 5, "{untargeted:?}");
    let mut tracked = 0;
    for scope in ["440300", "440303", "440305001"] {
        let figures: Value = app
            .get_json(&format!("/api/v1/metrics?scope={scope}"))
            .await;
        for (code, metrics) in figures["nodes"].as_object().unwrap() {
            for m in &untargeted {
                let Some(f) = metrics.get(*m) else { continue };
                let status = f["status"].as_str().unwrap();
                assert!(
                    status == "tracked" || status == "no_data",
                    "{code} {m}: {status}"
                );
                tracked += usize::from(status == "tracked");
            }
        }
    }
    assert!(tracked > 10, "{tracked} tracked figures");
    // The target as every page words it, the way the definition judges it.
    let target = |id: &str| {
        catalogue
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()["target_zh"]
            .clone()
    };
    assert_eq!(target("open_appeals"), "无超期");
    assert_eq!(target("staffing_rate"), "≥95% · 2020-12-31 前");
    assert_eq!(target("training_classes"), "≥2 · 每年");
    app.stop().await;
}

#[tokio::test]
async fn alerts_come_grouped_by_rule_and_district_dated_from_the_data_also_after_a_restart() {
    let mut settings = common::test_settings();
    settings.alerts.eval_interval_ms = 0; // the test evaluates by hand
    let app = common::spawn_app_with(settings.clone()).await;
    // Two streets of 罗湖 and one of 福田 with appeals past their 15-day acceptance deadline,
    // one street with five (a bigger breach).
    let mut events = vec![
        appeal("ot-a1", "440303001", 20),
        appeal("ot-a2", "440303002", 40),
        appeal("ot-a3", "440304001", 18),
    ];
    events.extend((0..5).map(|i| appeal(&format!("ot-b{i}"), "440303003", 17)));
    assert_eq!(app.post_events(&json!(events)).await.status(), 200);
    app.wait_landed().await;
    let now = app.state.hub.now();
    app.state.alerts.evaluate(now).await.unwrap();
    let answer: Value = app.get_json("/api/v1/alerts?state=firing").await;
    let groups = answer["groups"].as_array().unwrap();
    let luohu = groups
        .iter()
        .find(|g| g["key"] == "appeals_overdue/440303")
        .expect("a group of 罗湖's overdue appeals");
    assert_eq!(luohu["district_name"], "罗湖区");
    assert_eq!(luohu["counts"]["total"], 3, "{luohu}");
    assert_eq!(luohu["value_sum"], 7.0, "{luohu}");
    assert_eq!(luohu["title"], "信访超期");
    // Five overdue in one street is critical, one is a warning; the district's group of seven
    // is critical.
    let alert = |code: &str| {
        luohu["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["node"] == code)
            .unwrap()
            .clone()
    };
    assert_eq!(alert("440303003")["severity"], "critical");
    // The value as the pages say it: a count whole; a share (none here but the city's own
    // targets) in per cent, never a raw fraction.
    assert_eq!(alert("440303003")["value_text"], "5");
    let everything: Value = app.get_json("/api/v1/alerts").await;
    for a in everything["alerts"].as_array().unwrap() {
        if let Some(v) = a["value"].as_f64().filter(|v| v.fract() != 0.0) {
            let text = a["value_text"].as_str().unwrap();
            assert!(text.ends_with('%'), "{v} is said as {text}: {a}");
        }
    }
    assert_eq!(alert("440303001")["severity"], "warning");
    assert_eq!(luohu["severity"], "critical");
    let futian = groups
        .iter()
        .find(|g| g["key"] == "appeals_overdue/440304")
        .unwrap();
    assert_eq!(futian["severity"], "warning", "{futian}");
    // The breach began when the appeal received 40½ days ago passed its 15th day: 25½ days ago.
    let oldest = alert("440303002");
    assert_eq!(oldest["node_name"], "黄贝街道", "{oldest}");
    assert_eq!(oldest["days_overdue"], 25, "{oldest}");
    assert_eq!(oldest["breach_days"], 25);
    assert_eq!(oldest["case_age_days"], 40);
    let since = oldest["breach_since"].as_str().unwrap().to_string();
    // A scope asked for: only its alerts.
    let scoped: Value = app.get_json("/api/v1/alerts?scope=440304").await;
    assert!(scoped["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["district"] == "440304"));
    assert_eq!(app.get("/api/v1/alerts?state=burning").await.status(), 400);
    // An acknowledgement, with its author and note, outlives the restart too.
    let acked = app
        .http
        .post(format!(
            "{}/api/v1/alerts/appeals_overdue/440303002/ack",
            app.base
        ))
        .bearer_auth(app.admin_token())
        .json(&json!({"comment": "已致电街道"}))
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status(), 200);
    let acked: Value = acked.json().await.unwrap();
    app.stop().await;

    // After a restart the breach still dates from the data, not from the restart.
    let again = common::spawn_app_with(settings).await;
    again.state.alerts.restore().await.unwrap();
    again
        .state
        .alerts
        .evaluate(again.state.hub.now())
        .await
        .unwrap();
    let answer: Value = again.get_json("/api/v1/alerts?state=firing").await;
    let same = answer["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["node"] == "440303002" && a["rule"] == "appeals_overdue")
        .unwrap()
        .clone();
    assert_eq!(same["breach_since"].as_str().unwrap(), since);
    assert_eq!(same["ack"]["comment"], "已致电街道", "{same}");
    assert_eq!(same["ack"]["by"], acked["ack"]["by"], "{same}");
    assert!(
        !same["ack"]["by"].as_str().unwrap_or("").is_empty(),
        "{same}"
    );
    // Recorded to the second.
    let second = |v: &Value| {
        v.as_str()
            .unwrap_or("")
            .chars()
            .take(19)
            .collect::<String>()
    };
    assert_eq!(
        second(&same["ack"]["at"]),
        second(&acked["ack"]["at"]),
        "{same}"
    );
    again.stop().await;
}

#[tokio::test]
async fn a_resolution_keeps_the_text_as_fired_and_records_its_value() {
    let mut settings = common::test_settings();
    settings.alerts.eval_interval_ms = 0;
    let app = common::spawn_app_with(settings).await;
    let events = vec![
        appeal("ot-r1", "440305001", 30),
        appeal("ot-r2", "440305001", 25),
    ];
    assert_eq!(app.post_events(&json!(events)).await.status(), 200);
    app.wait_landed().await;
    app.state
        .alerts
        .evaluate(app.state.hub.now())
        .await
        .unwrap();
    let closed: Vec<Value> = ["ot-r1", "ot-r2"]
        .iter()
        .map(|id| {
            json!({"id": format!("{id}-closed"), "kind": "appeal.closed", "org": "440305001",
                "at": vscc::domain::time::rfc3339(time::OffsetDateTime::now_utc()), "data": {"appeal_id": id}})
        })
        .collect();
    assert_eq!(app.post_events(&json!(closed)).await.status(), 200);
    app.wait_landed().await;
    app.state
        .alerts
        .evaluate(app.state.hub.now())
        .await
        .unwrap();
    let history: Value = app.get_json("/api/v1/alerts/history?limit=50").await;
    let resolved = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == "resolved" && h["node"] == "440305001")
        .expect("the alert resolved");
    assert!(
        resolved["summary"]
            .as_str()
            .unwrap()
            .contains("有 2 件信访超期"),
        "{resolved}"
    );
    assert_eq!(resolved["value"], 0.0);
    assert_eq!(resolved["node_name"], "南头街道");
    assert_eq!(resolved["district_name"], "南山区");
    app.stop().await;
}

#[tokio::test]
async fn the_scorecard_counts_every_cell_and_judges_one_off_targets() {
    let app = common::spawn_app().await;
    let staffing = |id: &str, org: &str, filled: i64| {
        json!({"id": id, "kind": "staffing.reported", "org": org, "at": "2026-01-05T09:00:00+08:00",
            "data": {"approved_posts": 100, "filled_posts": filled}})
    };
    let events = vec![
        staffing("sc-1", "440303", 99),
        staffing("sc-2", "440304", 80),
    ];
    assert_eq!(app.post_events(&json!(events)).await.status(), 200);
    let card: Value = app.get_json("/api/v1/scorecard?scope=440300").await;
    let cells: u64 = card["overall"]["cells"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let figures: Value = app.get_json("/api/v1/metrics?scope=440300").await;
    let expected: usize = figures["nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m.as_object().unwrap().len())
        .sum();
    assert_eq!(cells as usize, expected);
    let per_clause: u64 = card["clauses"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["cells"].as_object().unwrap().values())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(per_clause, cells);
    // Staffing's deadline (2020-12-31) passed with no snapshot of that day: 罗湖 met it (when,
    // nobody kept), 福田 missed it.
    let staffing = card["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["metric"] == "staffing_rate")
        .unwrap();
    let outcome = |code: &str| {
        staffing["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["code"] == code)
            .unwrap()["outcome"]
            .clone()
    };
    assert_eq!(outcome("440303"), "met_undated");
    assert_eq!(outcome("440304"), "missed");
    assert_eq!(outcome("440305"), "no_data");
    app.stop().await;
}

#[tokio::test]
async fn a_districts_brief_speaks_of_the_district() {
    let app = common::spawn_app().await;
    let events = common::sample_events(&app.state.tree, 2000, 3, 30, "br");
    assert_eq!(app.post_events(&json!(events)).await.status(), 200);
    app.wait_landed().await;
    let res = app.post_empty("/api/v1/jobs/snapshots").await;
    assert_eq!(res.status(), 200);
    let brief: Value = app.get_json("/api/v1/brief?scope=440303").await;
    assert_eq!(brief["scope_name"], "罗湖区");
    assert_eq!(brief["scope_level"], "district");
    assert_eq!(brief["child_level"], "street");
    let ids: Vec<&str> = brief["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(&"legal_aid_stations") && ids.contains(&"staffing_rate"),
        "{ids:?}"
    );
    for m in brief["metrics"].as_array().unwrap() {
        if m["target"].is_null() {
            assert_ne!(m["day"]["status"], "on_track", "{}", m["id"]);
        }
        assert!(m["target_zh"].is_string() && m["lower_is_better"].is_boolean());
    }
    assert!(brief["alert_groups"].is_array());
    app.stop().await;
}

#[tokio::test]
async fn a_missed_one_off_target_dates_from_its_deadline_and_a_yearly_one_from_the_year() {
    let mut settings = common::test_settings();
    settings.alerts.eval_interval_ms = 0; // the test evaluates by hand
    let app = common::spawn_app_with(settings).await;
    let tree = &app.state.tree;
    let street = tree.with_children(tree.get("440304").unwrap())[1];
    let community = tree.node(tree.with_children(street)[1]).code.clone();
    let now = vscc::domain::time::rfc3339(time::OffsetDateTime::now_utc());
    // 福田: one of two veterans with a file (50 % against 100 % by 2022-12-31: missed), and
    // one of four staff trained this year (25 % against a yearly 90 %: at risk or missed).
    let events = json!([
        {"id": "bd-r1", "kind": "veteran.registered", "org": community, "at": now, "data": {"person_id": "440304199001011234"}},
        {"id": "bd-r2", "kind": "veteran.registered", "org": community, "at": now, "data": {"person_id": "440304199001015678"}},
        {"id": "bd-a1", "kind": "archive.completed", "org": community, "at": now, "data": {"person_id": "440304199001011234"}},
        {"id": "bd-h1", "kind": "staff.headcount", "org": community, "at": now, "data": {"headcount": 4}},
        {"id": "bd-t1", "kind": "training.attended", "org": community, "at": now, "data": {"staff_id": "S1", "class_id": "C1"}},
    ]);
    let res = app.post_events(&events).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    app.wait_landed().await;
    // The snapshots say both were short every day since mid-2021.
    app.store()
        .client()
        .query(
            "INSERT INTO metric_snapshots (day, node, metric, value, num, den, status) VALUES \
             ('2021-06-01', '440304', 'archive_coverage', 0.5, 1, 2, 'at_risk'), \
             ('2022-06-01', '440304', 'archive_coverage', 0.5, 1, 2, 'at_risk'), \
             ('2024-06-01', '440304', 'archive_coverage', 0.5, 1, 2, 'missed'), \
             ('2021-06-01', '440304', 'training_coverage', 0.25, 1, 4, 'at_risk'), \
             ('2024-06-01', '440304', 'training_coverage', 0.25, 1, 4, 'at_risk')",
        )
        .execute()
        .await
        .unwrap();
    let at = app.state.hub.now();
    app.state.alerts.evaluate(at).await.unwrap();
    app.state.alerts.evaluate(at).await.unwrap();
    let answer: Value = app.get_json("/api/v1/alerts").await;
    let since = |rule: &str| {
        answer["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["rule"] == rule && a["node"] == "440304")
            .unwrap_or_else(|| panic!("{rule} at 福田 in {answer:#}"))["breach_since"]
            .as_str()
            .unwrap()
            .chars()
            .take(10)
            .collect::<String>()
    };
    // Missed since the day after its deadline, not "at risk since 2021".
    assert_eq!(since("archive_coverage_at_risk"), "2023-01-01");
    // A yearly target starts afresh each year.
    let year = vscc::domain::time::local_date(at).year();
    assert_eq!(since("training_coverage_at_risk"), format!("{year}-01-01"));
    app.stop().await;
}
