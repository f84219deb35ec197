//! Corrections and withdrawals: a clerk fixes a wrong record or withdraws it, every figure
//! follows — live, in the SQL recomputation, after a restart — and the record's versions and
//! the audit trail say who did what and why.

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{
    compared_with_sql, figures_text, sample_events, spawn_app_with, staff_on_duty, test_settings,
    TestApp,
};

/// `method /api/v1/events/{id}` with `token` (and a JSON body): the status and the answer.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    id: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, format!("{}/api/v1/events/{id}", app.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let res = request.send().await.expect("request sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    call(app, reqwest::Method::PUT, token, id, Some(body)).await
}

async fn delete(app: &TestApp, token: &str, id: &str, body: Value) -> (u16, Value) {
    call(app, reqwest::Method::DELETE, token, id, Some(body)).await
}

async fn versions(app: &TestApp, token: &str, id: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, token, id, None).await
}

fn headcount(id: &str, org: &str, at: &str, n: i64) -> Value {
    json!({"id": id, "kind": "staff.headcount", "org": org, "at": at, "data": {"headcount": n}})
}

#[tokio::test]
async fn a_clerk_corrects_and_withdraws_a_headcount_and_the_figure_follows() {
    let app = spawn_app_with(test_settings()).await;
    let clerk = app.user_token("ft-clerk", "clerk", "440304").await;
    let other_clerk = app.user_token("ns-clerk", "clerk", "440305").await;
    let leader = app.user_token("ft-leader", "leader", "440304").await;
    let street = "440304001";
    let body = json!([
        headcount("hc-old", street, "2026-10-01T09:00:00+08:00", 10),
        headcount("hc-new", street, "2026-11-01T09:00:00+08:00", 120),
        json!({"id": "visit-1", "kind": "veteran.visited", "org": "440304001", "at": "2026-11-02T09:00:00+08:00",
               "data": {"person_id": "p-1"}}),
    ]);
    let answer: Value = app
        .post_events_as(&body, &clerk)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 3, "{answer}");
    assert_eq!(staff_on_duty(&app, street).await, Some(120));
    // The nightly snapshots of the days so far.
    assert_eq!(app.post_empty("/api/v1/jobs/snapshots").await.status(), 200);

    // 120 was a typo for 12.
    let fix = json!({"record": {"kind": "staff.headcount", "org": street,
        "at": "2026-11-01T09:00:00+08:00", "data": {"headcount": 12}}, "reason": "实有人数多打了一个 0"});
    let (status, answer) = put(&app, &clerk, "hc-new", fix.clone()).await;
    assert_eq!(
        (status, &answer),
        (
            200,
            &json!({"id": "hc-new", "version": 2, "state": "current"})
        )
    );
    assert_eq!(staff_on_duty(&app, street).await, Some(12));
    // Sent again: the same answer, nothing changes.
    let (status, again) = put(&app, &clerk, "hc-new", fix).await;
    assert_eq!((status, again), (200, answer));

    // Bad input, each named.
    let (status, e) = put(
        &app,
        &clerk,
        "hc-new",
        json!({"record": {"kind": "staff.headcount", "org": street,
        "at": "2026-11-01T09:00:00+08:00", "data": {"headcount": 13}}}),
    )
    .await;
    assert_eq!((status, e["field"].as_str()), (400, Some("reason")), "{e}");
    let (status, e) = put(
        &app,
        &clerk,
        "no-such-record",
        json!({"record": {"kind": "staff.headcount", "org": street,
        "at": "2026-11-01T09:00:00+08:00", "data": {"headcount": 13}}, "reason": "r"}),
    )
    .await;
    assert_eq!(status, 404, "{e}");
    let (status, e) = put(
        &app,
        &clerk,
        "hc-new",
        json!({"record": {"kind": "veteran.visited", "org": street,
        "at": "2026-11-01T09:00:00+08:00", "data": {"person_id": "p-2"}}, "reason": "r"}),
    )
    .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (422, Some("record.kind")),
        "{e}"
    );
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .contains("staff.headcount"),
        "{e}"
    );
    let (status, e) = put(
        &app,
        &clerk,
        "hc-new",
        json!({"record": {"kind": "staff.headcount", "org": street,
        "at": "2026-11-01T09:00:00+08:00", "data": {"headcount": -3}}, "reason": "r"}),
    )
    .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (422, Some("record.data.headcount")),
        "{e}"
    );
    // Another district's clerk does not see the record; a leader may not change records.
    let (status, _) = delete(
        &app,
        &other_clerk,
        "hc-new",
        json!({"reason": "不是我们的"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = versions(&app, &other_clerk, "hc-new").await;
    assert_eq!(status, 404);
    let (status, _) = delete(&app, &leader, "hc-new", json!({"reason": "r"})).await;
    assert_eq!(status, 403);
    // Nor may a correction move a record out of the clerk's scope.
    let (status, e) = put(
        &app,
        &clerk,
        "hc-old",
        json!({"record": {"kind": "staff.headcount", "org": "440305001",
        "at": "2026-10-01T09:00:00+08:00", "data": {"headcount": 10}}, "reason": "r"}),
    )
    .await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(
        staff_on_duty(&app, street).await,
        Some(12),
        "nothing refused changed anything"
    );

    // Withdrawn: the figure falls back to the headcount before it.
    let (status, answer) = delete(&app, &clerk, "hc-new", json!({"reason": "重复上报"})).await;
    assert_eq!(
        (status, &answer),
        (
            200,
            &json!({"id": "hc-new", "version": 2, "state": "withdrawn"})
        )
    );
    assert_eq!(staff_on_duty(&app, street).await, Some(10));
    let (status, again) = delete(&app, &clerk, "hc-new", json!({"reason": "重复上报"})).await;
    assert_eq!(
        (status, again),
        (200, answer),
        "the same withdrawal sent again"
    );
    let (status, e) = delete(&app, &clerk, "hc-new", json!({"reason": "另一个理由"})).await;
    assert_eq!(status, 409, "withdrawn already: {e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or_default()
            .contains("withdrawn"),
        "{e}"
    );
    let (status, e) = put(
        &app,
        &clerk,
        "hc-new",
        json!({"record": {"kind": "staff.headcount", "org": street,
        "at": "2026-11-01T09:00:00+08:00", "data": {"headcount": 14}}, "reason": "r"}),
    )
    .await;
    assert_eq!(status, 409, "a withdrawn record is not corrected: {e}");
    // Re-sending the original record is still a duplicate: nothing comes back to life.
    let answer: Value = app
        .post_events_as(&json!([body[1]]), &clerk)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["duplicates"], 1, "{answer}");
    assert_eq!(staff_on_duty(&app, street).await, Some(10));

    // The history: every version, who, why, how.
    let (status, h) = versions(&app, &clerk, "hc-new").await;
    assert_eq!(status, 200, "{h}");
    let v = h["versions"].as_array().expect("versions");
    assert_eq!(v.len(), 2, "{h}");
    assert_eq!(
        (v[0]["version"].as_u64(), v[0]["state"].as_str()),
        (Some(1), Some("replaced"))
    );
    assert_eq!(v[0]["record"]["data"]["headcount"], 120);
    assert_eq!(
        (v[0]["by"].as_str(), v[0]["via"].as_str()),
        (Some("ft-clerk"), Some("api"))
    );
    assert_eq!(
        (v[1]["state"].as_str(), v[1]["reason"].as_str()),
        (Some("withdrawn"), Some("实有人数多打了一个 0"))
    );
    assert_eq!(v[1]["record"]["data"]["headcount"], 12);
    assert_eq!(v[1]["withdrawn"]["reason"], "重复上报");
    assert_eq!(v[1]["withdrawn"]["by"], "ft-clerk");

    // SQL agrees: the raw log keeps every row, the effective view the one that counts.
    app.wait_landed().await;
    let (status, sql) = app
        .query(app.admin_token(), json!({"sql": "SELECT count() AS raw, sum(sign) AS net FROM events WHERE id = 'hc-new'"}))
        .await;
    assert_eq!(status, 200, "{sql}");
    assert_eq!(sql["data"][0], json!(["4", "0"]), "{sql}");
    let (_, sql) = app
        .query(app.admin_token(), json!({"sql": "SELECT id FROM events_effective WHERE kind = 'staff.headcount' ORDER BY id"}))
        .await;
    assert_eq!(sql["data"], json!([["hc-old"]]), "{sql}");
    let now = app.state.hub.now();
    compared_with_sql(&app, &app.state.hub.all_current(), now).await;

    // Snapshots taken from now on count the effective records; a past day's stays what was
    // known that day, and the brief says how many records were changed.
    assert_eq!(app.post_empty("/api/v1/jobs/snapshots").await.status(), 200);
    let today = vscc::domain::time::local_date(time::OffsetDateTime::now_utc()).to_string();
    let snapshot = |day: String| {
        let app = &app;
        async move {
            app.store()
                .client()
                .query("SELECT den FROM metric_snapshots FINAL WHERE day = toDate(?) AND node = ? AND metric = 'training_coverage'")
                .bind(day)
                .bind(street)
                .fetch_one::<Option<i64>>()
                .await
                .expect("a snapshot")
        }
    };
    assert_eq!(
        snapshot("2026-11-15".into()).await,
        Some(120),
        "as known on 15 November"
    );
    assert_eq!(
        snapshot(today.clone()).await,
        Some(10),
        "today, after the withdrawal"
    );
    let brief = app
        .get_json(&format!("/api/v1/brief?scope=440304&date={today}"))
        .await;
    assert_eq!(
        brief["corrections"],
        json!({"corrected": 1, "withdrawn": 1}),
        "{}",
        brief["corrections"]
    );

    // Correcting a correction: the last wins.
    for (n, reason) in [(11, "核对后更正"), (9, "再次核对")] {
        let (status, answer) = put(
            &app,
            &clerk,
            "hc-old",
            json!({"record": {"kind": "staff.headcount", "org": street,
                "at": "2026-10-01T09:00:00+08:00", "data": {"headcount": n}}, "reason": reason}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(staff_on_duty(&app, street).await, Some(9));
    let (_, h) = versions(&app, &clerk, "hc-old").await;
    let states: Vec<&str> = h["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["state"].as_str())
        .collect();
    assert_eq!(states, ["replaced", "replaced", "current"], "{h}");

    // The audit trail has both changes.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let trail = app.get_json("/api/v1/audit?actor=ft-clerk").await;
        let actions: Vec<&str> = trail
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["target"] == "hc-new" && e["outcome"] == "ok")
            .filter_map(|e| e["action"].as_str())
            .collect();
        if actions.contains(&"record_corrected") && actions.contains(&"record_withdrawn") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "audit trail: {trail}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn after_corrections_and_withdrawals_every_figure_equals_sql_and_a_restart() {
    let settings = test_settings();
    let app = spawn_app_with(settings.clone()).await;
    let tree = app.state.tree.clone();
    let events = sample_events(&tree, 3000, 29, 120, "cw");
    for chunk in events.chunks(1000) {
        let answer: Value = app.post_events(&json!(chunk)).await.json().await.unwrap();
        assert_eq!(answer["rejected"], 0, "{answer}");
    }
    let before = app.state.hub.all_current();

    // Every 20th record corrected to the content of another record of its kind (org, time,
    // subject, values: whatever the kind holds), every 31st withdrawn, a few corrected twice.
    let by_kind =
        |kind: &Value| -> Vec<&Value> { events.iter().filter(|e| e["kind"] == *kind).collect() };
    let mut changes: Vec<(String, Value, bool)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let id = e["id"].as_str().unwrap().to_string();
        if i % 31 == 0 {
            changes.push((id, json!({"reason": "重复上报"}), false));
        } else if i % 20 == 0 {
            let same_kind = by_kind(&e["kind"]);
            let other = same_kind[(i * 7 + 3) % same_kind.len()];
            let mut record = other.clone();
            record.as_object_mut().unwrap().remove("id");
            changes.push((
                id.clone(),
                json!({"record": record, "reason": "核对台账后更正"}),
                true,
            ));
            if i % 60 == 0 {
                let again = same_kind[(i * 11 + 5) % same_kind.len()];
                let mut record = again.clone();
                record.as_object_mut().unwrap().remove("id");
                changes.push((id, json!({"record": record, "reason": "再次更正"}), true));
            }
        }
    }
    let token = app.admin_token().to_string();
    // Different records at once (eight in flight); a record's own changes in order.
    let mut by_id: Vec<Vec<(String, Value, bool)>> = Vec::new();
    for c in changes {
        match by_id.iter_mut().find(|g| g[0].0 == c.0) {
            Some(g) => g.push(c),
            None => by_id.push(vec![c]),
        }
    }
    let n_groups = by_id.len();
    let outcomes: Vec<Vec<u16>> = futures_util::stream::iter(by_id)
        .map(|group| {
            let (app, token) = (&app, &token);
            async move {
                let mut statuses = Vec::new();
                for (id, body, is_correction) in group {
                    let (status, answer) = if is_correction {
                        put(app, token, &id, body).await
                    } else {
                        delete(app, token, &id, body).await
                    };
                    assert_eq!(status, 200, "{id}: {answer}");
                    statuses.push(status);
                }
                statuses
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(outcomes.len(), n_groups);
    assert!(n_groups > 200, "{n_groups} records changed");

    app.wait_landed().await;
    let live = app.state.hub.all_current();
    assert_ne!(
        live.iter()
            .map(|(c, f)| format!("{c}{f:?}"))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|(c, f)| format!("{c}{f:?}"))
            .collect::<Vec<_>>(),
        "the changes moved figures"
    );
    compared_with_sql(&app, &live, app.state.hub.now()).await;

    // A restart rebuilds the same state from the stored rows.
    app.stop().await;
    let restarted = spawn_app_with(settings).await;
    let rebuilt = restarted.state.hub.all_current();
    assert_eq!(figures_text(&rebuilt), figures_text(&live));
    compared_with_sql(&restarted, &rebuilt, restarted.state.hub.now()).await;
    restarted.stop().await;
}

#[tokio::test]
async fn many_corrections_in_one_request_are_judged_each_as_alone_and_made_together() {
    let app = spawn_app_with(test_settings()).await;
    let tree = app.state.tree.clone();
    let events = sample_events(&tree, 400, 31, 60, "bulk");
    let answer: Value = app.post_events(&json!(events)).await.json().await.unwrap();
    assert_eq!(answer["accepted"], 400, "{answer}");
    let content = |e: &Value| {
        let mut record = e.clone();
        record.as_object_mut().unwrap().remove("id");
        record
    };
    let other_of_kind = |i: usize| {
        let kind = &events[i]["kind"];
        (1..events.len())
            .map(|k| (i + k) % events.len())
            .find(|&j| events[j]["kind"] == *kind && content(&events[j]) != content(&events[i]))
    };
    let mut items = Vec::new();
    let (mut corrections, mut withdrawals) = (0, 0);
    for (i, e) in events.iter().enumerate().step_by(5) {
        let id = e["id"].clone();
        if i % 10 == 0 {
            items.push(json!({"id": id, "withdraw": true, "reason": "重复上报"}));
            withdrawals += 1;
        } else if let Some(j) = other_of_kind(i) {
            items.push(json!({"id": id, "record": content(&events[j]), "reason": "更正"}));
            corrections += 1;
        }
    }
    let unchanged =
        json!({"id": events[1]["id"], "record": content(&events[1]), "reason": "核对无误"});
    let bad = [
        (
            json!({"id": "no-such-record", "withdraw": true, "reason": "r"}),
            404,
            "id",
        ),
        (
            json!({"id": events[0]["id"], "withdraw": true, "reason": "again"}),
            400,
            "id",
        ),
        (
            json!({"id": events[2]["id"], "withdraw": true}),
            400,
            "reason",
        ),
        (json!({"id": events[3]["id"], "reason": "r"}), 400, "record"),
    ];
    let first_bad = items.len() + 1;
    items.push(unchanged);
    for (item, _, _) in &bad {
        items.push(item.clone());
    }
    let res = app
        .http
        .post(format!("{}/api/v1/corrections", app.base))
        .bearer_auth(app.admin_token())
        .json(&items)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(
        [
            &answer["corrected"],
            &answer["withdrawn"],
            &answer["unchanged"],
            &answer["rejected"]
        ],
        [
            &json!(corrections),
            &json!(withdrawals),
            &json!(1),
            &json!(bad.len())
        ],
        "{answer}"
    );
    for (k, (_, status, field)) in bad.iter().enumerate() {
        let e = &answer["errors"][k];
        assert_eq!(
            (
                e["index"].as_u64(),
                e["status"].as_u64(),
                e["field"].as_str()
            ),
            (
                Some((first_bad + k) as u64),
                Some(*status as u64),
                Some(*field)
            ),
            "{e}"
        );
    }
    // The same request again: every record is already what it says (or withdrawn).
    let res = app
        .http
        .post(format!("{}/api/v1/corrections", app.base))
        .bearer_auth(app.admin_token())
        .json(&items[..items.len() - bad.len()])
        .send()
        .await
        .unwrap();
    let again: Value = res.json().await.unwrap();
    assert_eq!(
        [
            &again["corrected"],
            &again["withdrawn"],
            &again["unchanged"]
        ],
        [&json!(0), &json!(0), &json!(corrections + withdrawals + 1)],
        "{again}"
    );
    assert_eq!(again["rejected"], 0, "{again}");
    app.wait_landed().await;
    compared_with_sql(&app, &app.state.hub.all_current(), app.state.hub.now()).await;
    app.stop().await;
}
