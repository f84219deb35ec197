//! Alert routing and delivery: webhooks that fail and recover, escalation up the roster,
//! acknowledgement stopping it. Time is driven by the test; webhook receivers are real local
//! HTTP servers.

use crate::helpers as common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use common::{spawn_app_with, test_settings};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// A webhook receiver that answers 500 to its first `fail` requests, then logs and answers 200.
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<Mutex<u32>>,
}

fn receiver(fail: u32) -> Receiver {
    let log: Arc<Mutex<Vec<Value>>> = Arc::default();
    let attempts: Arc<Mutex<u32>> = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (l, a) = (log.clone(), attempts.clone());
    let server = HttpServer::new(move || {
        let (l, a) = (l.clone(), a.clone());
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Bytes| {
                let (l, a) = (l.clone(), a.clone());
                async move {
                    let n = {
                        let mut a = a.lock().unwrap();
                        *a += 1;
                        *a
                    };
                    if n <= fail {
                        return HttpResponse::InternalServerError().finish();
                    }
                    l.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    HttpResponse::Ok().json(json!({"errcode": 0}))
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    Receiver { url, log, attempts }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

const RULE: &str = r#"
[[rule]]
name = "overdue"
type = "appeal_overdue"
levels = ["street"]
for = "0s"
severity = "critical"
summary = "{node}有 {value} 件信访超期"
"#;

fn roster(district: &Receiver, city: &Receiver, district_kind: &str) -> String {
    format!(
        "escalate_after = \"30m\"\n\n[[duty]]\norg = \"440303\"\nname = \"罗湖区值班室\"\nkind = \"{district_kind}\"\nurl = \"{}\"\n\n[[duty]]\norg = \"440300\"\nname = \"市值班室\"\nkind = \"json\"\nurl = \"{}\"\n",
        district.url, city.url
    )
}

fn overdue_appeal(id: &str, street: &str) -> Value {
    let at = (OffsetDateTime::now_utc() - Duration::from_secs(20 * 86_400))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    json!([{"id": id, "kind": "appeal.received", "org": street, "at": at, "data": {"appeal_id": id}}])
}

/// An app whose rules are RULE and whose roster sends 罗湖 to `district`, the city to `city`.
async fn app_with_roster(
    district: &Receiver,
    city: &Receiver,
    district_kind: &str,
) -> (common::TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(dir.path().join("rules.toml"), RULE).unwrap();
    std::fs::write(
        dir.path().join("oncall.toml"),
        roster(district, city, district_kind),
    )
    .unwrap();
    let mut settings = test_settings();
    settings.alerts.rules_dir = dir.path().to_path_buf();
    settings.alerts.eval_interval_ms = 0;
    settings.alerts.delivery_backoff_ms = 50;
    (spawn_app_with(settings).await, dir)
}

#[tokio::test]
async fn a_webhook_that_fails_twice_gets_the_notification_exactly_once() {
    let district = receiver(2);
    let city = receiver(0);
    let (app, _dir) = app_with_roster(&district, &city, "wecom").await;
    app.post_events(&overdue_appeal("A-1", "440303001")).await;
    let events = app
        .state
        .alerts
        .evaluate(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.fingerprint == "overdue/440303001" && e.state == "firing"),
        "{events:?}"
    );

    wait_for("the district's robot to log the alert", || {
        !district.log.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = district.log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "exactly once in the receiver's log");
    assert_eq!(
        *district.attempts.lock().unwrap(),
        3,
        "two failures, then success"
    );
    assert_eq!(log[0]["msgtype"], "markdown", "WeCom robot format");
    assert!(log[0]["markdown"]["content"]
        .as_str()
        .unwrap()
        .contains("桂园街道有 1 件信访超期"));
    assert!(city.log.lock().unwrap().is_empty(), "not escalated yet");
    let statuses: Vec<String> = app
        .store()
        .client()
        .query("SELECT status FROM alert_notifications ORDER BY at, attempts")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(statuses, ["queued", "failed", "failed", "delivered"]);
    app.stop().await;
}

#[tokio::test]
async fn unacknowledged_alerts_escalate_to_the_parent_then_stop_when_acknowledged() {
    let district = receiver(0);
    let city = receiver(0);
    let (app, _dir) = app_with_roster(&district, &city, "dingtalk").await;
    app.post_events(&overdue_appeal("B-1", "440303002")).await;
    app.post_events(&overdue_appeal("B-2", "440303003")).await;
    let t0 = OffsetDateTime::now_utc();
    app.state.alerts.evaluate(t0).await.unwrap();
    // The streets have no roster entry: they fall through to their district at once, and the
    // two alerts of the same rule go out as one grouped message.
    wait_for("the district notification", || {
        district.log.lock().unwrap().len() == 1
    })
    .await;
    let grouped = district.log.lock().unwrap()[0].clone();
    assert_eq!(grouped["msgtype"], "markdown", "DingTalk robot format");
    assert!(
        grouped["markdown"]["title"]
            .as_str()
            .unwrap()
            .contains("2 个节点"),
        "{grouped}"
    );
    let text = grouped["markdown"]["text"].as_str().unwrap();
    assert!(
        text.contains("黄贝街道") && text.contains("东门街道"),
        "{text}"
    );

    // 440303003's alert is acknowledged; 440303002's is not.
    let res = app
        .http
        .post(format!("{}/api/v1/alerts/overdue/440303003/ack", app.base))
        .bearer_auth(app.admin_token())
        .json(&json!({"comment": "已处理"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let events = app
        .state
        .alerts
        .evaluate(t0 + Duration::from_secs(31 * 60))
        .await
        .unwrap();
    let escalated: Vec<&str> = events
        .iter()
        .filter(|e| e.state == "escalated")
        .map(|e| e.fingerprint.as_str())
        .collect();
    assert_eq!(
        escalated,
        ["overdue/440303002"],
        "only the unacknowledged alert escalates"
    );
    wait_for("the city's duty officer to be told", || {
        city.log.lock().unwrap().len() == 1
    })
    .await;
    let at_city = city.log.lock().unwrap()[0].clone();
    assert_eq!(
        (at_city["node"].as_str(), at_city["level"].as_u64()),
        (Some("440303002"), Some(1))
    );
    // The top of the chain is the city: nothing further to escalate to.
    app.state
        .alerts
        .evaluate(t0 + Duration::from_secs(65 * 60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(city.log.lock().unwrap().len(), 1);
    assert_eq!(district.log.lock().unwrap().len(), 1);
    app.stop().await;
}

/// 督办 reaches the units' robots: a task issued to 罗湖's streets is one message to 罗湖's duty
/// target listing them (the city's target, above, gets nothing); a return, one naming the unit
/// and the reason.
#[tokio::test]
async fn a_task_issued_and_returned_reaches_the_units_duty_target() {
    let district = receiver(0);
    let city = receiver(0);
    let (app, _dir) = app_with_roster(&district, &city, "json").await;
    let due = (OffsetDateTime::now_utc() + Duration::from_secs(3 * 86_400)).date();
    let post = |path: String, body: Value| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}{path}", app.base))
                .bearer_auth(app.admin_token())
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let status = post(
        "/api/v1/tasks".into(),
        json!({"id": "notify-1", "title": "走访慰问", "instruction": "逐户走访", "due": due.to_string(),
            "priority": "urgent", "units": ["440303001", "440303002"]}),
    )
    .await;
    assert_eq!(status, 201);
    wait_for("the district's robot to get the task", || {
        !district.log.lock().unwrap().is_empty()
    })
    .await;
    let issued = district.log.lock().unwrap()[0].clone();
    assert_eq!(issued["type"], "task");
    assert_eq!(issued["event"], "task_issued");
    assert_eq!(
        issued["units"],
        json!(["440303001", "440303002"]),
        "one message for both streets: {issued}"
    );
    assert!(
        issued["heading"].as_str().unwrap().contains("走访慰问"),
        "{issued}"
    );
    assert!(
        issued["text"].as_str().unwrap().contains("紧急"),
        "{issued}"
    );
    for action in ["sign", "submit"] {
        let s = post(
            format!("/api/v1/tasks/notify-1/assignments/440303001/{action}"),
            json!({"text": "完成"}),
        )
        .await;
        assert_eq!(s, 200, "{action}");
    }
    let s = post(
        "/api/v1/tasks/notify-1/assignments/440303001/return".into(),
        json!({"reason": "缺少走访名单"}),
    )
    .await;
    assert_eq!(s, 200);
    wait_for("the return to reach the robot", || {
        district.log.lock().unwrap().len() >= 2
    })
    .await;
    let returned = district.log.lock().unwrap()[1].clone();
    assert_eq!(returned["event"], "task_returned");
    assert_eq!(returned["units"], json!(["440303001"]));
    assert!(
        returned["text"].as_str().unwrap().contains("缺少走访名单"),
        "{returned}"
    );
    assert!(
        city.log.lock().unwrap().is_empty(),
        "the level above hears of overdue ones, not of each task"
    );
    app.stop().await;
}

/// A duty officer raises an alert group to an incident (应急事件): a task whose timeline gathers
/// the group's alerts beside its assignments' steps, shown among the open incidents of the
/// wall's feed.
#[tokio::test]
async fn an_alert_raised_to_an_incident_gathers_its_alerts_in_the_timeline() {
    let district = receiver(0);
    let city = receiver(0);
    let (app, _dir) = app_with_roster(&district, &city, "json").await;
    app.post_events(&overdue_appeal("I-1", "440303001")).await;
    app.state
        .alerts
        .evaluate(OffsetDateTime::now_utc())
        .await
        .unwrap();
    let due = (OffsetDateTime::now_utc() + Duration::from_secs(86_400)).date();
    let r = app
        .http
        .post(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(app.admin_token())
        .json(
            &json!({"id": "incident-1", "title": "桂园街道信访超期处置", "instruction": "立即核查",
            "due": due.to_string(), "priority": "incident", "units": ["440303001"],
            "source": {"alert": "overdue/440303"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let view = app.get_json("/api/v1/tasks/incident-1").await;
    let steps: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert!(steps.contains(&"alert_firing"), "{steps:?}");
    assert!(steps.contains(&"issued"), "{steps:?}");
    let alert = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "alert_firing")
        .unwrap();
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains("桂园街道有 1 件信访超期"),
        "{alert}"
    );
    let feed = app.get_json("/api/v1/tasks/feed?scope=440303").await;
    assert_eq!(feed["incidents"][0]["id"], "incident-1", "{feed}");
    app.stop().await;
}
