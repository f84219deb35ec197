//! Tasks down the tree (部署 / 督办): a task issued to every street, its assignments signed,
//! answered, passed down, submitted, accepted and returned, refusals named, and the task
//! figures equal to the SQL recomputation before and after a restart.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::helpers::{compared_with_sql, test_settings, TestApp};

struct ManualClock(Mutex<OffsetDateTime>);

impl vscc::Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

async fn call(app: &TestApp, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let url = format!("{}{path}", app.base);
    let req = match body {
        Some(b) => app.http.post(url).json(&b),
        None => app.http.get(url),
    };
    let res = req.bearer_auth(token).send().await.expect("request sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn step(
    app: &TestApp,
    token: &str,
    task: &str,
    org: &str,
    action: &str,
    body: Value,
) -> (u16, Value) {
    call(
        app,
        token,
        &format!("/api/v1/tasks/{task}/assignments/{org}/{action}"),
        Some(body),
    )
    .await
}

fn assignment<'a>(view: &'a Value, org: &str) -> &'a Value {
    fn find<'a>(list: &'a Value, org: &str) -> Option<&'a Value> {
        list.as_array()?.iter().find_map(|a| {
            if a["org"] == org {
                Some(a)
            } else {
                find(&a["children"], org)
            }
        })
    }
    // A step answers the assignment itself (with those below it); a task, all of them.
    if view["org"] == org {
        return view;
    }
    find(&view["assignments"], org)
        .or_else(|| find(&view["children"], org))
        .unwrap_or_else(|| panic!("{org} in {view}"))
}

fn figure(app: &TestApp, code: &str, metric: &str) -> vscc::domain::metric::Figure {
    let tree = app.state.hub.tree();
    let catalogue = app.state.hub.catalogue();
    let id = catalogue.parse_name(metric).unwrap();
    app.state
        .hub
        .current(tree.get(code).unwrap(), &[id])
        .remove(&id)
        .unwrap()
}

#[tokio::test]
async fn a_task_to_every_street_is_signed_answered_passed_down_and_closed_and_its_figures_equal_sql(
) {
    let start = OffsetDateTime::now_utc() - Duration::days(3);
    let clock = Arc::new(ManualClock(Mutex::new(start)));
    let settings = test_settings();
    let built = vscc::app::Application::build_with_clock(settings.clone(), false, clock.clone())
        .await
        .unwrap();
    let app = TestApp::running(built, settings.clone());
    let admin = app.admin_token().to_string();
    let futian_leader = app.user_token("ft-leader", "leader", "440304").await;
    let nanyuan = app.user_token("ny-clerk", "clerk", "440304001").await;
    let yuanling = app.user_token("yl-clerk", "clerk", "440304002").await;
    let futian_street = app.user_token("ftj-clerk", "clerk", "440304004").await;
    let futian_street_head = app.user_token("ftj-head", "leader", "440304004").await;
    let fuhua = app.user_token("fh-clerk", "clerk", "440304004022").await;

    // Refusals name the field and the reason; nothing is issued by them.
    let due = (start + Duration::days(2)).date().to_string();
    let base =
        json!({"title": "排查困难退役军人", "instruction": "逐户走访，三日内反馈。", "due": due});
    let with = |extra: Value| {
        let mut b = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let (s, e) = call(
        &app,
        &admin,
        "/api/v1/tasks",
        Some(with(json!({"due": "2020-01-01", "units": ["440304001"]}))),
    )
    .await;
    assert_eq!((s, e["field"].as_str()), (400, Some("due")), "{e}");
    let (s, e) = call(
        &app,
        &admin,
        "/api/v1/tasks",
        Some(with(
            json!({"title": "长".repeat(101), "units": ["440304001"]}),
        )),
    )
    .await;
    assert_eq!((s, e["field"].as_str()), (400, Some("title")), "{e}");
    let many: Vec<String> = (0..1001).map(|_| "440304001".to_string()).collect();
    let (s, e) = call(
        &app,
        &admin,
        "/api/v1/tasks",
        Some(with(json!({"units": many}))),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"].as_str().unwrap_or_default().contains("1000") || e.to_string().contains("1000"),
        "{e}"
    );
    let (s, e) = call(
        &app,
        &futian_leader,
        "/api/v1/tasks",
        Some(with(json!({"units": ["440303001"]}))),
    )
    .await;
    assert_eq!(s, 404, "a unit outside the issuer's scope is missing: {e}");
    let (s, e) = call(
        &app,
        &futian_leader,
        "/api/v1/tasks",
        Some(with(json!({"selector": {"scope": "440304", "level": "street", "metric": "task_assignments", "status": ["missed"]}}))),
    )
    .await;
    assert_eq!((s, e["field"].as_str()), (400, Some("selector")), "{e}");
    assert!(e.to_string().contains("matches no unit"), "{e}");
    let (s, _) = call(
        &app,
        &nanyuan,
        "/api/v1/tasks",
        Some(with(json!({"units": ["440304001019"]}))),
    )
    .await;
    assert_eq!(s, 403, "a clerk does not issue tasks");
    // The records API refuses task kinds: only the task handling makes them.
    let forged = json!([{"id": "forged", "kind": "task.accepted", "org": "440304001", "at": vscc::domain::time::rfc3339(start),
        "data": {"assignment": "x/440304001", "task_id": "x", "on_time": true}}]);
    let res = app.post_events(&forged).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["accepted"], 0, "{body}");
    assert!(body.to_string().contains("/api/v1/tasks"), "{body}");

    // The city issues a task to every street (a selector), urgent.
    let streets = app
        .state
        .tree
        .nodes()
        .filter(|(_, n)| n.level == vscc::domain::Level::Street)
        .count();
    let (s, issued) = call(
        &app,
        &admin,
        "/api/v1/tasks",
        Some(with(json!({"priority": "urgent", "selector": {"scope": "440300", "level": "street"}, "source": {"metric": "visits", "scope": "440300"}}))),
    )
    .await;
    assert_eq!(s, 201, "{issued}");
    assert_eq!(issued["units"], streets);
    let task = issued["id"].as_str().unwrap().to_string();
    let path = |org: &str, action: &str| (org.to_string(), action.to_string());
    let _ = path;

    // 南园: out of order first, then the whole way through.
    let (s, e) = step(
        &app,
        &nanyuan,
        &task,
        "440304001",
        "submit",
        json!({"text": "done"}),
    )
    .await;
    assert_eq!(s, 409, "{e}");
    assert!(
        e.to_string().contains("issued"),
        "the refusal names the state: {e}"
    );
    let (s, _) = step(&app, &yuanling, &task, "440304001", "sign", json!({})).await;
    assert_eq!(s, 404, "another unit's assignment is missing to it");
    let (s, v) = step(&app, &nanyuan, &task, "440304001", "sign", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(assignment(&v, "440304001")["state"], "signed");
    let (s, e) = step(&app, &nanyuan, &task, "440304001", "sign", json!({})).await;
    assert_eq!(s, 409, "{e}");
    let (s, e) = step(&app, &nanyuan, &task, "440304001", "feedback", json!({})).await;
    assert_eq!((s, e["field"].as_str()), (400, Some("text")), "{e}");
    let (s, _) = step(
        &app,
        &nanyuan,
        &task,
        "440304001",
        "feedback",
        json!({"text": "已走访 12 户"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, e) = step(&app, &nanyuan, &task, "440304001", "accept", json!({})).await;
    assert_eq!(s, 403, "the unit does not accept its own work: {e}");
    let (s, _) = step(
        &app,
        &nanyuan,
        &task,
        "440304001",
        "submit",
        json!({"text": "全部走访完毕"}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = step(
        &app,
        &futian_leader,
        &task,
        "440304001",
        "accept",
        json!({}),
    )
    .await;
    assert_eq!(s, 403, "the district is not the issuer of a city task");
    let (s, v) = step(&app, &admin, &task, "440304001", "accept", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let a = assignment(&v, "440304001");
    assert_eq!(
        (a["state"].as_str(), a["on_time"].as_bool()),
        (Some("accepted"), Some(true)),
        "{a}"
    );
    assert_eq!(a["feedback"].as_array().unwrap().len(), 2, "{a}");

    // 园岭: submitted, returned with a reason, submitted again, accepted.
    for (action, body) in [("sign", json!({})), ("submit", json!({"text": "初报"}))] {
        assert_eq!(
            step(&app, &yuanling, &task, "440304002", action, body)
                .await
                .0,
            200
        );
    }
    let (s, e) = step(&app, &admin, &task, "440304002", "return", json!({})).await;
    assert_eq!((s, e["field"].as_str()), (400, Some("reason")), "{e}");
    let (s, v) = step(
        &app,
        &admin,
        &task,
        "440304002",
        "return",
        json!({"reason": "缺少走访名单"}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(assignment(&v, "440304002")["state"], "returned");
    assert_eq!(
        step(
            &app,
            &yuanling,
            &task,
            "440304002",
            "submit",
            json!({"text": "补报名单"})
        )
        .await
        .0,
        200
    );

    // 福田街道 passes its assignment down to two communities; their answers roll up to it,
    // and the street's own head accepts them.
    assert_eq!(
        step(&app, &futian_street, &task, "440304004", "sign", json!({}))
            .await
            .0,
        200
    );
    let (s, e) = step(
        &app,
        &futian_street,
        &task,
        "440304004",
        "delegate",
        json!({"units": ["440304001019"]}),
    )
    .await;
    assert_eq!(
        s, 404,
        "a community of another street is missing to it: {e}"
    );
    let (s, v) = step(
        &app,
        &futian_street,
        &task,
        "440304004",
        "delegate",
        json!({"units": ["440304004022", "440304004023"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        assignment(&v, "440304004")["children"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{v}"
    );
    for (action, body) in [
        ("sign", json!({})),
        ("submit", json!({"text": "社区已排查"})),
    ] {
        assert_eq!(
            step(&app, &fuhua, &task, "440304004022", action, body)
                .await
                .0,
            200
        );
    }
    let (s, _) = step(&app, &admin, &task, "440304004022", "accept", json!({})).await;
    assert_eq!(s, 200, "an admin over it may take any step");
    let (_, mine) = call(&app, &fuhua, "/api/v1/tasks/mine", None).await;
    assert_eq!(
        mine["assignments"][0]["assignment"]["state"], "accepted",
        "{mine}"
    );
    assert_eq!(mine["may_act"], true);
    let (s, v) = call(
        &app,
        &futian_street_head,
        &format!("/api/v1/tasks/{task}"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let street = assignment(&v, "440304004");
    assert_eq!(street["children_states"]["accepted"], 1, "{street}");
    assert_eq!(street["children_states"]["issued"], 1, "{street}");
    assert_eq!(
        v["assignments_total"], 3,
        "the street sees its own assignment and those below: {v}"
    );

    // A day and a bit later, every street that never signed is overdue on signing; three
    // days later every one not submitted is overdue on the deadline.
    *clock.0.lock().unwrap() = start + Duration::hours(25);
    let city = figure(&app, "440300", "task_assignments");
    let (_, whole) = call(&app, &admin, &format!("/api/v1/tasks/{task}"), None).await;
    // Streets not signed: all but 南园, 园岭, 福田街道; the second community below 福田街道 too.
    assert_eq!(city.overdue, Some(streets as i64 - 3 + 1), "{city:?}");
    assert_eq!(
        whole["overdue"],
        streets - 3 + 1,
        "the task page says what the metric says"
    );
    assert_eq!(
        city.num,
        streets as i64 + 2 - 2,
        "open: every assignment but the two accepted"
    );
    let futian = figure(&app, "440304", "task_assignments");
    assert_eq!(
        futian.extras.get("overdue_sign"),
        Some(&(futian.overdue.unwrap()))
    );
    let (_, list) = call(&app, &admin, "/api/v1/tasks?state=overdue", None).await;
    assert_eq!(list["tasks"][0]["id"], task.as_str(), "{list}");
    let (_, feed) = call(&app, &admin, "/api/v1/tasks/feed?scope=440304", None).await;
    assert_eq!(
        feed["steps"][0]["step"], "accept",
        "newest answer first: {feed}"
    );
    assert!(feed["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["org"].as_str().unwrap().starts_with("440304")));
    app.wait_landed().await;
    let now = app.state.hub.now();
    compared_with_sql(&app, &app.state.hub.all_current(), now).await;

    *clock.0.lock().unwrap() = start + Duration::days(4);
    let on_time = figure(&app, "440300", "task_on_time");
    assert_eq!((on_time.num, on_time.den), (2, Some(2)), "{on_time:?}");
    let late = figure(&app, "440300", "task_assignments");
    assert!(late.extras["overdue_submit"] > 0, "{late:?}");
    let (s, v) = step(&app, &admin, &task, "440304002", "accept", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        assignment(&v, "440304002")["on_time"],
        true,
        "its first submission came in time"
    );
    app.wait_landed().await;
    let now = app.state.hub.now();
    let before = app.state.hub.all_current();
    compared_with_sql(&app, &before, now).await;
    let view_before = call(&app, &admin, &format!("/api/v1/tasks/{task}"), None)
        .await
        .1;

    // A restart rebuilds the board and the figures from the stored records.
    app.stop().await;
    let built = vscc::app::Application::build_with_clock(settings.clone(), false, clock.clone())
        .await
        .unwrap();
    let app = TestApp::running(built, settings);
    let view_after = call(&app, &admin, &format!("/api/v1/tasks/{task}"), None)
        .await
        .1;
    assert_eq!(view_after, view_before);
    let after = app.state.hub.all_current();
    assert_eq!(format!("{after:?}"), format!("{before:?}"));
    compared_with_sql(&app, &after, now).await;
    app.stop().await;
}

/// The pages: issuing from a metric page's at-risk list, a street's clerk answering on a phone,
/// the wall screen's 督办 panel following live, the leader accepting on the 督办台.
#[test]
fn a_leader_issues_from_the_at_risk_list_a_clerk_answers_on_a_phone_and_the_wall_follows() {
    let stdout = crate::helpers::run_browser_script("tasks.mjs");
    assert!(stdout.contains("ok: the task comes prefilled"));
    assert!(stdout.contains("ok: the wall shows the answer live"));
    assert!(stdout.contains("ok: the API agrees: accepted, on time, two answers"));
}
