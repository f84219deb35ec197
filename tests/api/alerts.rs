//! Alerts with controlled time: the tests call `evaluate(now)` with chosen instants (the
//! background evaluation is off), against the real app and ClickHouse.

use crate::helpers as common;

use std::time::Duration;

use common::{spawn_app_with, test_settings, TestApp};
use serde_json::{json, Value};
use time::OffsetDateTime;
use vscc::config::Settings;

const RULES: &str = r#"
[[rule]]
name = "staffing_low"
type = "threshold"
metric = "staffing_rate"
op = "<"
value = 0.95
levels = ["district"]
for = "10m"
severity = "warning"
summary = "{node}编制人员到位率 {value}，低于 {target}"

[[rule]]
name = "staffing_flap"
type = "threshold"
metric = "staffing_rate"
op = "<"
value = 0.95
scope = "440304"
levels = ["district"]
for = "0s"
severity = "critical"
summary = "{node} {value}"
"#;

fn settings_with_rules(rules: &str) -> (Settings, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
    let mut s = test_settings();
    s.alerts.rules_dir = dir.path().to_path_buf();
    s.alerts.eval_interval_ms = 0;
    s.alerts.repeat_minutes = 60;
    s.auth.tokens = vec![
        vscc::TokenConfig {
            token: "duty-luohu".into(),
            name: "罗湖值班员".into(),
            role: vscc::Role::DutyOfficer,
            scope: "440303".into(),
        },
        vscc::TokenConfig {
            token: "leader".into(),
            name: "领导".into(),
            role: vscc::Role::Leader,
            scope: "440300".into(),
        },
    ];
    (s, dir)
}

fn staffing(id: &str, org: &str, approved: i64, filled: i64) -> Value {
    json!({"id": id, "kind": "staffing.reported", "org": org, "at": "2021-06-01T09:00:00+08:00",
           "data": {"approved_posts": approved, "filled_posts": filled}})
}

fn states(events: &[vscc::AlertEventRow], fp: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.fingerprint == fp)
        .map(|e| e.state.clone())
        .collect()
}

async fn eval(app: &TestApp, at: OffsetDateTime) -> Vec<vscc::AlertEventRow> {
    app.state.alerts.evaluate(at).await.unwrap()
}

#[tokio::test]
async fn pending_becomes_firing_after_for_and_no_data_is_not_false() {
    let (settings, _dir) = settings_with_rules(RULES);
    let app = spawn_app_with(settings).await;
    let mut notices = app.state.alerts.subscribe();
    app.post_events(&json!([
        staffing("a1", "440303", 100, 90),
        staffing("a2", "440305", 100, 99)
    ]))
    .await;
    let t0 = OffsetDateTime::now_utc();
    let fp = "staffing_low/440303";
    assert_eq!(states(&eval(&app, t0).await, fp), ["pending"]);
    assert!(
        states(&eval(&app, t0 + Duration::from_secs(300)).await, fp).is_empty(),
        "still pending inside `for`"
    );
    assert_eq!(
        states(&eval(&app, t0 + Duration::from_secs(660)).await, fp),
        ["firing", "notified"]
    );
    let n = notices.try_recv().unwrap();
    assert_eq!((n.state.as_str(), n.node.as_str()), ("firing", "440303"));
    assert!(
        n.summary.contains("罗湖区") && n.summary.contains("90.0%"),
        "{}",
        n.summary
    );

    let current = app.get_json("/api/v1/alerts").await;
    let alerts = current["alerts"].as_array().unwrap();
    let fps: Vec<&str> = alerts
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect();
    assert!(fps.contains(&fp));
    // 南山 meets the target (condition false) and 福田 has no data: neither alerts.
    assert!(!fps.contains(&"staffing_low/440305"));
    assert!(
        !fps.iter().any(|f| f.ends_with("/440304")),
        "no data is not a breach: {fps:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn flapping_does_not_renotify_inside_the_repeat_interval_and_ack_is_recorded() {
    let (settings, _dir) = settings_with_rules(RULES);
    let app = spawn_app_with(settings).await;
    let fp = "staffing_flap/440304";
    let t0 = OffsetDateTime::now_utc();
    app.post_events(&json!([staffing("f1", "440304", 100, 80)]))
        .await;
    assert_eq!(states(&eval(&app, t0).await, fp), ["firing", "notified"]);
    let later = |id: &str, filled: i64| {
        json!([{"id": id, "kind": "staffing.reported", "org": "440304",
        "at": format!("2021-06-0{}T09:00:00+08:00", 1 + filled % 7), "data": {"approved_posts": 100, "filled_posts": filled}}])
    };
    app.post_events(&later("f2", 99)).await;
    assert_eq!(
        states(&eval(&app, t0 + Duration::from_secs(60)).await, fp),
        ["resolved"]
    );
    app.post_events(&later("f3", 81)).await;
    assert_eq!(
        states(&eval(&app, t0 + Duration::from_secs(120)).await, fp),
        ["firing"],
        "fires again, but no second notification within the hour"
    );

    // Acknowledge: only a duty officer in scope may; 福田 is outside 罗湖's officer.
    let ack = |token: &str| {
        app.http
            .post(format!(
                "{}/api/v1/alerts/staffing_flap/440304/ack",
                app.base
            ))
            .bearer_auth(token.to_string())
            .json(&json!({"comment": "已电话联系"}))
            .send()
    };
    assert_eq!(ack("leader").await.unwrap().status(), 403);
    assert_eq!(ack("duty-luohu").await.unwrap().status(), 403);
    let res = ack(app.admin_token()).await.unwrap();
    assert_eq!(res.status(), 200);
    // Acknowledged: the repeat interval passes without a new notification.
    let ev = eval(&app, t0 + Duration::from_secs(4000)).await;
    assert!(states(&ev, fp).is_empty(), "{ev:?}");
    let history = app.get_json("/api/v1/alerts/history").await;
    let acked = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == "acknowledged")
        .expect("ack in history");
    assert_eq!(
        (acked["actor"].as_str(), acked["comment"].as_str()),
        (Some("admin"), Some("已电话联系"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_broken_rule_file_keeps_the_previous_rules() {
    let (settings, dir) = settings_with_rules(RULES);
    let app = spawn_app_with(settings).await;
    assert_eq!(app.state.alerts.rules().len(), 2);
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(
        dir.path().join("rules.toml"),
        RULES.replace("staffing_rate\"\nop", "no_such_metric\"\nop"),
    )
    .unwrap();
    let err = app
        .state
        .alerts
        .reload_rules()
        .expect("the broken file is reported");
    assert!(err.contains("unknown metric"), "{err}");
    assert_eq!(app.state.alerts.rules().len(), 2, "previous rules stay");
    assert!(app.get_json("/api/v1/alerts").await["rules_error"]
        .as_str()
        .unwrap()
        .contains("unknown metric"));
    app.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_a_firing_alert_without_notifying_it_again() {
    let (settings, _dir) = settings_with_rules(RULES);
    let app = spawn_app_with(settings.clone()).await;
    app.post_events(&json!([staffing("r1", "440304", 100, 70)]))
        .await;
    let t0 = OffsetDateTime::now_utc();
    assert_eq!(
        states(&eval(&app, t0).await, "staffing_flap/440304"),
        ["firing", "notified"]
    );
    app.stop().await;

    let again = spawn_app_with(settings).await;
    let current = again.state.alerts.current();
    assert!(
        current
            .iter()
            .any(|a| a.fingerprint == "staffing_flap/440304"),
        "restored: {current:?}"
    );
    let ev = eval(&again, t0 + Duration::from_secs(30)).await;
    assert!(
        states(&ev, "staffing_flap/440304").is_empty(),
        "no second notification after the restart: {ev:?}"
    );
    again.stop().await;
}

#[tokio::test]
async fn a_recurring_silence_holds_back_notifications_only_inside_its_window() {
    let (settings, _dir) = settings_with_rules(RULES);
    let app = spawn_app_with(settings).await;
    let post = |token: &str, body: Value| {
        app.http
            .post(format!("{}/api/v1/silences", app.base))
            .bearer_auth(token.to_string())
            .json(&body)
            .send()
    };
    // Nights of the 2027 Spring Festival holiday, for 福田 only.
    let spec = json!({"rule": "staffing_flap", "scope": "440304", "starts_at": "2027-02-05T00:00:00+08:00",
        "ends_at": "2027-02-13T00:00:00+08:00", "daily": {"from": "22:00", "to": "08:00"}, "comment": "春节夜间静默"});
    assert_eq!(
        post("duty-luohu", spec.clone()).await.unwrap().status(),
        403,
        "福田 is outside 罗湖's scope"
    );
    let mut bad = spec.clone();
    bad["ends_at"] = json!("2027-02-01T00:00:00+08:00");
    let res = post(app.admin_token(), bad).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "ends_at");
    assert_eq!(post(app.admin_token(), spec).await.unwrap().status(), 201);

    app.post_events(&json!([staffing("sf1", "440304", 100, 80)]))
        .await;
    let night = OffsetDateTime::parse(
        "2027-02-07T23:00:00+08:00",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let fp = "staffing_flap/440304";
    assert_eq!(
        states(&eval(&app, night).await, fp),
        ["firing", "silenced"],
        "firing is recorded, not notified"
    );
    let morning = OffsetDateTime::parse(
        "2027-02-08T12:00:00+08:00",
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        states(&eval(&app, morning).await, fp),
        ["notified"],
        "outside the window the alert is notified"
    );
    let listed = app.get_json("/api/v1/silences").await;
    assert_eq!(listed[0]["comment"], "春节夜间静默");
    app.stop().await;
}

const DETECTION_RULES: &str = r#"
[[rule]]
name = "appeal_spike"
type = "spike"
record = "appeal.received"
window = "1d"
baseline_windows = 7
factor = 3.0
min_count = 5
levels = ["street"]
for = "0s"
severity = "warning"
summary = "{node}近一日信访 {value} 件，显著高于平时"

[[rule]]
name = "appeal_cluster"
type = "cluster"
record = "appeal.received"
window = "7d"
radius_km = 0.5
min_points = 3
levels = ["district"]
for = "0s"
severity = "critical"
summary = "{node}出现 {value} 件相邻信访聚集"
"#;

fn appeal(id: &str, org: &str, hours_ago: i64, loc: Option<(f64, f64)>) -> Value {
    let at = (OffsetDateTime::now_utc() - Duration::from_secs(hours_ago as u64 * 3600))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut e = json!({"id": id, "kind": "appeal.received", "org": org, "at": at, "data": {"appeal_id": id}});
    if let Some((lon, lat)) = loc {
        e["location"] = json!({"lon": lon, "lat": lat});
    }
    e
}

#[tokio::test]
async fn a_spike_against_its_own_baseline_and_a_geographic_cluster_each_fire_once() {
    let (settings, _dir) = settings_with_rules(DETECTION_RULES);
    let app = spawn_app_with(settings).await;
    let mut events = Vec::new();
    // Two streets with one appeal a day for a week; 南园 then gets six in the last day.
    for day in 1..=7 {
        events.push(appeal(
            &format!("base-nanyuan-{day}"),
            "440304001",
            day * 24 + 3,
            None,
        ));
        events.push(appeal(
            &format!("base-yuanling-{day}"),
            "440304002",
            day * 24 + 3,
            None,
        ));
    }
    for i in 0..6 {
        events.push(appeal(&format!("spike-{i}"), "440304001", 2, None));
    }
    events.push(appeal("steady-today", "440304002", 2, None));
    // Three located appeals within a few hundred metres in 福田, two far apart in 南山.
    events.push(appeal("c1", "440304", 5, Some((114.0650, 22.5400))));
    events.push(appeal("c2", "440304", 6, Some((114.0670, 22.5410))));
    events.push(appeal("c3", "440304", 7, Some((114.0660, 22.5425))));
    events.push(appeal("n1", "440305", 5, Some((113.9300, 22.5300))));
    events.push(appeal("n2", "440305", 5, Some((113.9500, 22.5600))));
    let answer: Value = app.post_events(&json!(events)).await.json().await.unwrap();
    assert_eq!(answer["rejected"], 0, "{answer}");

    let ev = eval(&app, OffsetDateTime::now_utc()).await;
    let firing: Vec<&str> = ev
        .iter()
        .filter(|e| e.state == "firing")
        .map(|e| e.fingerprint.as_str())
        .collect();
    assert_eq!(
        firing,
        ["appeal_spike/440304001", "appeal_cluster/440304"],
        "{ev:?}"
    );
    let cluster = ev
        .iter()
        .find(|e| e.fingerprint == "appeal_cluster/440304")
        .unwrap();
    assert_eq!(cluster.value, Some(3.0));
    assert!(
        cluster.summary.contains("福田区出现 3 件"),
        "{}",
        cluster.summary
    );
    app.stop().await;
}

#[test]
fn the_shipped_rules_and_roster_example_load() {
    let s = vscc::config::Settings::load(None).unwrap();
    let tree = vscc::load_org_tree(&s.reference.divisions_dir, &s.org.region).unwrap();
    let catalogue = vscc::load_catalogue(&s.catalogue).unwrap();
    let rules = vscc::load_rules(std::path::Path::new("dashboards/alerts"), &tree, &catalogue)
        .expect("shipped rules are valid");
    // Every target of the plan is watched by a shipped rule (the reporting rates by the rules
    // on scheduled reports).
    for def in catalogue.metrics.iter().filter(|m| m.target.is_some()) {
        let reporting = def.measure.type_name() == "reporting";
        assert!(
            rules.iter().any(|r| r.condition.metric() == Some(def.id)
                || (reporting && r.watches_reports())),
            "no shipped rule watches {}",
            def.name
        );
    }
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    for covered in [
        "staffing_rate_below_95",
        "five_star_share_at_risk",
        "archive_coverage_at_risk",
        "appeals_overdue",
        "station_silent",
        "appeal_cluster",
        "reports_due_soon",
        "reports_late",
        "tasks_overdue",
        "task_on_time_at_risk",
    ] {
        assert!(names.contains(&covered), "{covered} missing from {names:?}");
    }
    let roster = vscc::Roster::load(
        std::path::Path::new("dashboards/alerts/oncall.toml.example"),
        &tree,
    )
    .expect("the example roster is valid")
    .expect("present");
    let street = tree.get("440303001").unwrap();
    let chain: Vec<String> = roster
        .chain(&tree, street)
        .into_iter()
        .map(|d| d.org)
        .collect();
    assert_eq!(
        chain,
        ["440303", "440300"],
        "a street without an entry falls through to its district, then the city"
    );
}

const REPORTING_RULES: &str = r#"
[[rule]]
name = "headcount_due"
type = "reporting_due"
record = "staff.headcount"
days = 2
levels = ["community"]
for = "0s"
severity = "info"
summary = "{node}在岗人数即将到期未报"

[[rule]]
name = "headcount_late"
type = "reporting_late"
record = "staff.headcount"
levels = ["street"]
for = "0s"
severity = "warning"
summary = "{node}下属 {value} 个社区逾期未报在岗人数：{detail}"
"#;

#[tokio::test]
async fn a_report_due_soon_warns_the_unit_and_once_late_the_level_above_hears_once() {
    let (settings, _dir) = settings_with_rules(REPORTING_RULES);
    let app = spawn_app_with(settings).await;
    // 南园街道's communities: one reports November's headcount on the 2nd (before the 5th).
    let street = app.get_json("/api/v1/org/440304001?depth=1").await;
    let communities: Vec<String> = street["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap().to_string())
        .collect();
    assert!(communities.len() >= 3, "{street}");
    let on_time = &communities[0];
    // Every community is on vscc (each sent a visit in October); a unit that never sent
    // anything is no data, not late.
    let mut records: Vec<Value> = communities
        .iter()
        .map(|c| {
            json!({"id": format!("visit-{c}"), "kind": "veteran.visited", "org": c,
            "at": "2026-10-20T09:00:00+08:00", "data": {"person_id": format!("p-{c}")}})
        })
        .collect();
    records.push(
        json!({"id": "hc-nov", "kind": "staff.headcount", "org": on_time,
            "at": "2026-11-02T09:00:00+08:00", "data": {"headcount": 3}}),
    );
    let answer: Value = app.post_events(&json!(records)).await.json().await.unwrap();
    assert_eq!(answer["rejected"], 0, "{answer}");
    let at = |text: &str| {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
    };

    // Two days before the due day: every other community of the street is warned, itself.
    let ev = eval(&app, at("2026-11-03T10:00:00+08:00")).await;
    let warned: Vec<&str> = ev
        .iter()
        .filter(|e| e.rule == "headcount_due" && e.state == "firing")
        .map(|e| e.node.as_str())
        .collect();
    for c in &communities[1..] {
        assert!(warned.contains(&c.as_str()), "{c} warned: {warned:?}");
    }
    assert!(!warned.contains(&on_time.as_str()), "the one that reported");
    assert!(
        ev.iter()
            .all(|e| e.rule != "headcount_late" || e.state != "firing"),
        "not late yet"
    );

    // After the due day: one alert at the street, naming how many communities are late; the
    // communities' warnings are over (they are the street's to chase now).
    let ev = eval(&app, at("2026-11-06T10:00:00+08:00")).await;
    let late: Vec<&vscc::AlertEventRow> = ev
        .iter()
        .filter(|e| e.rule == "headcount_late" && e.state == "firing")
        .collect();
    assert!(
        late.iter().all(|e| e.node != "440304002"),
        "a street whose units never sent anything is no data, not late: {late:?}"
    );
    let here: Vec<_> = late.iter().filter(|e| e.node == "440304001").collect();
    assert_eq!(here.len(), 1, "{late:?}");
    assert_eq!(here[0].value, Some((communities.len() - 1) as f64));
    assert!(
        here[0]
            .summary
            .contains(&format!("{} 个社区", communities.len() - 1)),
        "{}",
        here[0].summary
    );
    // Which report, and which communities (the first three by name, then how many).
    let late_name = street["children"][1]["name"].as_str().unwrap();
    assert!(
        here[0]
            .summary
            .contains(&format!("：在岗人数：{late_name}")),
        "{}",
        here[0].summary
    );
    let still_due = app
        .state
        .alerts
        .current()
        .into_iter()
        .filter(|a| a.rule == "headcount_due" && a.state.as_str() == "firing")
        .count();
    assert_eq!(still_due, 0, "past the due day nothing is due soon: {ev:?}");
    app.stop().await;
}
