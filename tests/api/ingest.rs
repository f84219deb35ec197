//! Records in: validation, idempotency, limits, scope, and live figures that equal a plain-SQL
//! recomputation from the raw rows in ClickHouse.

use crate::helpers as common;

use common::{compared_with_sql, sample_events, spawn_app, spawn_app_with, test_settings};
use serde_json::{json, Value};
use vscc::domain::metric::MetricId;

fn event(id: &str, kind: &str, org: &str, data: Value) -> Value {
    json!({"id": id, "kind": kind, "org": org, "at": "2021-03-04T10:15:00+08:00", "data": data})
}

async fn count_rows(app: &common::TestApp, sql: &str) -> u64 {
    app.store()
        .client()
        .query(sql)
        .fetch_one::<u64>()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_resent_event_changes_nothing() {
    let app = spawn_app().await;
    let batch = json!([
        event(
            "e1",
            "staff.hired",
            "440305007003",
            json!({"staff_id": "p1", "veteran": true})
        ),
        event(
            "e2",
            "staff.hired",
            "440305007003",
            json!({"staff_id": "p2", "veteran": false})
        ),
        event(
            "e2",
            "staff.hired",
            "440305007003",
            json!({"staff_id": "p2", "veteran": false})
        ),
    ]);
    let before = time::OffsetDateTime::now_utc();
    let first: Value = app.post_events(&batch).await.json().await.unwrap();
    let after = time::OffsetDateTime::now_utc();
    assert_eq!(
        (first["accepted"].as_u64(), first["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    // The answer says when the records became durable: within the request, to the µs.
    let accepted_at = time::OffsetDateTime::parse(
        first["accepted_at"]
            .as_str()
            .expect("accepted_at when records were accepted"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let micros = |t: time::OffsetDateTime| t.unix_timestamp_nanos() / 1000;
    assert!(
        micros(before) <= micros(accepted_at) && micros(accepted_at) <= micros(after),
        "{first}"
    );
    let again = app.post_events(&batch).await;
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    assert!(
        again.get("accepted_at").is_none(),
        "nothing new was accepted: {again}"
    );
    app.wait_landed().await;
    assert_eq!(count_rows(&app, "SELECT count() FROM events").await, 2);
    let figures = app
        .get_json("/api/v1/metrics?scope=440305&metrics=veteran_hire_share")
        .await;
    assert_eq!(figures["nodes"]["440305"]["veteran_hire_share"]["num"], 1);
    assert_eq!(figures["nodes"]["440305"]["veteran_hire_share"]["den"], 2);
    app.stop().await;
}

#[tokio::test]
async fn each_bad_record_is_named_and_the_good_ones_still_land() {
    let app = spawn_app().await;
    let mut bad_time = event(
        "b4",
        "staff.hired",
        "440305",
        json!({"staff_id": "x", "veteran": true}),
    );
    bad_time["at"] = json!("04/03/2021 10:15");
    let mut far = event(
        "b7",
        "appeal.received",
        "440305",
        json!({"appeal_id": "A1"}),
    );
    far["location"] = json!({"lon": 113.26, "lat": 23.13});
    let body = json!([
        event(
            "g0",
            "staff.hired",
            "440305",
            json!({"staff_id": "x", "veteran": true})
        ),
        event(
            "b1",
            "staff.hired",
            "999999",
            json!({"staff_id": "x", "veteran": true})
        ),
        event(
            "b2",
            "veteran.registered",
            "440305",
            json!({"person_id": "p"})
        ),
        event("b3", "staff.fired", "440305", json!({})),
        bad_time,
        event(
            "b5",
            "staffing.reported",
            "440305",
            json!({"approved_posts": 10})
        ),
        event(
            "b6",
            "station.rated",
            "440305",
            json!({"stars": "five", "demonstration": true})
        ),
        far,
        event(
            "g8",
            "staffing.reported",
            "440305",
            json!({"approved_posts": 10, "filled_posts": 9})
        ),
    ]);
    let res = app.post_events(&body).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"], 7);
    let got: Vec<(u64, String)> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = [
        (1, "org"),
        (2, "org"),
        (3, "kind"),
        (4, "at"),
        (5, "data.filled_posts"),
        (6, "data.stars"),
        (7, "location"),
    ]
    .iter()
    .map(|(i, f)| (*i, f.to_string()))
    .collect();
    assert_eq!(got, expected, "{answer}");
    let reasons: Vec<&str> = answer["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].contains("unknown org code '999999'"));
    assert!(reasons[1].contains("community"), "{}", reasons[1]);
    assert!(reasons[6].contains("outside Shenzhen"));

    // All rejected: 422, and nothing lands.
    let res = app
        .post_events(&json!([event("b9", "nope", "440305", json!({}))]))
        .await;
    assert_eq!(res.status(), 422);
    // Not a JSON array at all: 400 naming the body.
    let res = app
        .http
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    app.wait_landed().await;
    assert_eq!(count_rows(&app, "SELECT count() FROM events").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn ndjson_bodies_and_located_records_are_accepted() {
    let app = spawn_app().await;
    let mut located = event(
        "n2",
        "appeal.received",
        "440305007003",
        json!({"appeal_id": "A-n2"}),
    );
    located["location"] = json!({"lon": 114.065, "lat": 22.540});
    let body = format!(
        "{}\n{}\n\nnot json\n",
        event(
            "n1",
            "staff.hired",
            "440305",
            json!({"staff_id": "x", "veteran": false})
        ),
        located
    );
    let res = app
        .http
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(app.admin_token())
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["errors"][0]["index"], 2);
    app.wait_landed().await;
    let district: String = app
        .store()
        .client()
        .query("SELECT district FROM events WHERE id = 'n2'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        district, "440304",
        "the map places the located record in 福田"
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_and_nothing_is_accepted() {
    let mut settings = test_settings();
    settings.ingest.max_body_bytes = 2_000;
    settings.ingest.max_records = 5;
    let app = spawn_app_with(settings).await;
    let many: Vec<Value> = (0..6)
        .map(|i| {
            event(
                &format!("m{i}"),
                "staff.hired",
                "440305",
                json!({"staff_id": "x", "veteran": true}),
            )
        })
        .collect();
    let res = app.post_events(&json!(many)).await;
    assert_eq!(res.status(), 413);
    let big: Vec<Value> = (0..4)
        .map(|i| {
            event(
                &format!("big{i}"),
                "staff.hired",
                "440305",
                json!({"staff_id": "x".repeat(600), "veteran": true}),
            )
        })
        .collect();
    let res = app.post_events(&json!(big)).await;
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("2000 bytes"));
    let res = app
        .post_events(&json!([event(
            "ok",
            "staff.hired",
            "440305",
            json!({"staff_id": "x", "veteran": true})
        )]))
        .await;
    assert_eq!(res.status(), 200);
    app.wait_landed().await;
    assert_eq!(count_rows(&app, "SELECT count() FROM events").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_required_and_scoped() {
    let mut settings = test_settings();
    settings.auth.tokens = vec![
        vscc::TokenConfig {
            token: "nanshan-clerk".into(),
            name: "南山 clerk".into(),
            role: vscc::Role::Clerk,
            scope: "440305".into(),
        },
        vscc::TokenConfig {
            token: "nanshan-leader".into(),
            name: "南山 leader".into(),
            role: vscc::Role::Leader,
            scope: "440305".into(),
        },
    ];
    let app = spawn_app_with(settings).await;
    let hire = |id: &str, org: &str| {
        event(
            id,
            "staff.hired",
            org,
            json!({"staff_id": "x", "veteran": true}),
        )
    };
    let res = app
        .http
        .post(format!("{}/api/v1/events", app.base))
        .json(&json!([hire("t0", "440305")]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = app
        .post_events_as(&json!([hire("t0", "440305")]), "wrong")
        .await;
    assert_eq!(res.status(), 401);
    let answer: Value = app
        .post_events_as(
            &json!([hire("t1", "440305007003"), hire("t2", "440303")]),
            "nanshan-clerk",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["errors"][0]["field"], "org");
    assert!(answer["errors"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("outside"));
    let res = app
        .post_events_as(&json!([hire("t3", "440305")]), "nanshan-leader")
        .await;
    assert_eq!(res.status(), 403, "a leader may not send records");

    let get = |path: &str, token: &str| {
        app.http
            .get(format!("{}{path}", app.base))
            .bearer_auth(token.to_string())
            .send()
    };
    assert_eq!(
        get("/api/v1/metrics?scope=440305", "nanshan-leader")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/v1/metrics?scope=440305007", "nanshan-leader")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get("/api/v1/metrics?scope=440300", "nanshan-leader")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        get("/api/v1/metrics?scope=440303", "nanshan-leader")
            .await
            .unwrap()
            .status(),
        403
    );
    app.stop().await;
}

#[tokio::test]
async fn roll_ups_are_sums_not_averages_and_latest_replaces_earlier() {
    let app = spawn_app().await;
    let staffing = |id: &str, org: &str, at: &str, approved: i64, filled: i64| json!({"id": id, "kind": "staffing.reported", "org": org, "at": at, "data": {"approved_posts": approved, "filled_posts": filled}});
    let body = json!([
        staffing("s1", "440303", "2021-01-01T09:00:00+08:00", 100, 50),
        staffing("s2", "440303", "2021-06-01T09:00:00+08:00", 100, 99), // replaces s1
        staffing("s3", "440304", "2021-03-01T09:00:00+08:00", 10, 1),
        staffing("s0", "440304", "2020-03-01T09:00:00+08:00", 10, 10), // older: does not replace s3
    ]);
    app.post_events(&body).await;
    let f = app
        .get_json("/api/v1/metrics?scope=440300&metrics=staffing_rate")
        .await;
    let city = &f["nodes"]["440300"]["staffing_rate"];
    assert_eq!(
        (city["num"].as_i64(), city["den"].as_i64()),
        (Some(100), Some(110))
    );
    assert!(
        (city["value"].as_f64().unwrap() - 100.0 / 110.0).abs() < 1e-6,
        "Σ/Σ, not the mean of 0.99 and 0.1"
    );
    assert_eq!(city["status"], "missed");
    assert_eq!(city["due"], "2020-12-31");
    assert_eq!(f["nodes"]["440303"]["staffing_rate"]["status"], "met");
    assert_eq!(
        f["nodes"]["440305"]["staffing_rate"]["value"],
        Value::Null,
        "no data is not zero"
    );
    assert_eq!(f["nodes"]["440305"]["staffing_rate"]["status"], "no_data");
    app.stop().await;
}

#[tokio::test]
async fn live_figures_equal_a_plain_sql_recomputation_and_survive_a_restart() {
    let settings = test_settings();
    let app = spawn_app_with(settings.clone()).await;
    let tree = app.state.tree.clone();
    let events = sample_events(&tree, 6000, 7, 120, "eq");
    for chunk in events.chunks(1000) {
        let answer: Value = app.post_events(&json!(chunk)).await.json().await.unwrap();
        assert_eq!(answer["rejected"], 0, "{answer}");
    }
    app.wait_landed().await;
    let live = app.state.hub.all_current();
    let now = app.state.hub.now();
    compared_with_sql(&app, &live, now).await;
    let compared: usize = live.iter().map(|(_, f)| f.len()).sum();
    assert!(compared > 3500, "compared {compared} figures");
    let nonzero = live
        .iter()
        .flat_map(|(_, f)| f)
        .filter(|(_, f)| f.num > 0)
        .count();
    assert!(
        nonzero > 1000,
        "the sample exercises the figures ({nonzero} non-zero)"
    );

    // A second app on the same store rebuilds exactly the same state.
    app.stop().await;
    let restarted = spawn_app_with(settings).await;
    let rebuilt = restarted.state.hub.all_current();
    let strip = |v: &Vec<(String, Vec<(MetricId, vscc::domain::metric::Figure)>)>| -> Vec<String> {
        v.iter()
            .map(|(c, f)| {
                format!(
                    "{c}:{}",
                    serde_json::to_string(
                        &f.iter()
                            .map(|(m, x)| {
                                (
                                    m.as_str(),
                                    x.num,
                                    x.den,
                                    x.status.as_str(),
                                    x.overdue,
                                    &x.extras,
                                )
                            })
                            .collect::<Vec<_>>()
                    )
                    .unwrap()
                )
            })
            .collect()
    };
    assert_eq!(strip(&rebuilt), strip(&live));
    compared_with_sql(&restarted, &rebuilt, restarted.state.hub.now()).await;
    // And re-sending everything changes nothing.
    let answer: Value = restarted
        .post_events(&json!(events[..1000]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["duplicates"], 1000);
    restarted.stop().await;
}

/// No data is never zero: a district that never reported a class shows `null` / `no_data` for
/// training_classes (it showed 0 and at_risk, on every district of an empty store); once it
/// reports one, a year without any is 0.
#[tokio::test]
async fn training_classes_are_no_data_until_a_district_reports_one() {
    let app = spawn_app().await;
    let body = app
        .get_json("/api/v1/metrics?scope=440300&metrics=training_classes")
        .await;
    let nodes = body["nodes"].as_object().unwrap();
    assert_eq!(nodes.len(), 11, "the city and its 10 districts");
    for (code, figures) in nodes {
        let f = &figures["training_classes"];
        assert_eq!(
            (f["value"].clone(), f["status"].as_str()),
            (Value::Null, Some("no_data")),
            "{code}: {f}"
        );
    }
    let last_year = time::OffsetDateTime::now_utc().year() - 1;
    app.post_events(
        &json!([{"id": "class-luohu", "kind": "training.class_held", "org": "440303",
        "at": format!("{last_year}-06-01T09:00:00+08:00"), "data": {"class_id": "c-1"}}]),
    )
    .await;
    let body = app
        .get_json("/api/v1/metrics?scope=440300&metrics=training_classes")
        .await;
    assert_eq!(body["nodes"]["440303"]["training_classes"]["value"], 0.0);
    assert_eq!(
        body["nodes"]["440304"]["training_classes"]["status"],
        "no_data"
    );
    app.stop().await;
}
