//! A unit's workspace: a street's clerk sees where the street stands and what it must still do
//! (the required pace), reports through the forms the kind definitions make, finds its records
//! with who sent them and how, and corrects them; the district above looks on read-only; no
//! unit sees another's.

use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::helpers::{spawn_app_with, test_settings, TestApp};

const STREET: &str = "440304001";
const SIBLING: &str = "440304002";

async fn get_as(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let res = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("request sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post_as(app: &TestApp, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let res = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// An RFC 3339 time `days` days ago.
fn days_ago(days: i64) -> String {
    let t = OffsetDateTime::now_utc() - time::Duration::days(days);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn hire(id: &str, org: &str, veteran: bool) -> Value {
    json!({"id": id, "kind": "staff.hired", "org": org, "at": days_ago(1),
           "data": {"staff_id": id, "veteran": veteran}})
}

fn metric<'a>(pace: &'a Value, name: &str) -> &'a Value {
    pace["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap_or_else(|| panic!("{name} in {pace}"))
}

#[tokio::test]
async fn a_street_sees_what_it_must_do_reports_through_its_form_and_corrects_its_records() {
    let app = spawn_app_with(test_settings()).await;
    let clerk = app.user_token("ft1-clerk", "clerk", STREET).await;
    let sibling_clerk = app.user_token("ft2-clerk", "clerk", SIBLING).await;
    let district = app.user_token("ft-leader", "leader", "440304").await;

    // 2 veterans among 10 hires at the street; the sibling street hired 3, all veterans. An
    // appeal received 20 days ago (past its 15-day acceptance), one 12 days ago (3 days short).
    let mut body: Vec<Value> = (0..10)
        .map(|i| hire(&format!("h{i}"), STREET, i < 2))
        .collect();
    body.extend((0..3).map(|i| hire(&format!("s{i}"), SIBLING, true)));
    body.push(json!({"id": "ap-late", "kind": "appeal.received", "org": STREET, "at": days_ago(20), "data": {"appeal_id": "ap-late"}}));
    body.push(json!({"id": "ap-soon", "kind": "appeal.received", "org": STREET, "at": days_ago(12), "data": {"appeal_id": "ap-soon"}}));
    let (status, answer) = post_as(&app, app.admin_token(), "/api/v1/events", &json!(body)).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(15)),
        "{answer}"
    );

    // The clerk's own unit by default: everything it must do.
    let (status, pace) = get_as(&app, &clerk, "/api/v1/pace").await;
    assert_eq!(status, 200, "{pace}");
    assert_eq!(
        (
            &pace["scope"],
            &pace["level"],
            &pace["may_report"],
            &pace["parent"]
        ),
        (
            &json!(STREET),
            &json!("street"),
            &json!(true),
            &json!("440304")
        )
    );
    let hires = metric(&pace, "veteran_hire_share");
    assert_eq!(hires["status"], "missed", "{hires}");
    // (2 + x) / (10 + x) ≥ 1/3 → 2 more veterans hired.
    assert_eq!(hires["pace"]["needed"], 2, "{hires}");
    let text = hires["pace"]["text_zh"].as_str().unwrap();
    assert!(text.contains("招录退役军人 2 名"), "{text}");
    assert_eq!(
        (&hires["rank"]["position"], &hires["rank"]["of"]),
        (&json!(2), &json!(2)),
        "the sibling's 3 of 3 is better: {hires}"
    );
    // Nothing heard this quarter: one hearing by the quarter's end.
    let hearings = metric(&pace, "report_hearings");
    assert_eq!(hearings["pace"]["needed"], 1, "{hearings}");
    let today = vscc::domain::time::local_date(OffsetDateTime::now_utc());
    let quarter_end = vscc::domain::time::Period::Quarter.bounds(today).1;
    assert_eq!(hearings["pace"]["by"], quarter_end.to_string());
    assert_eq!(
        hearings["pace"]["days_left"],
        (quarter_end - today).whole_days() + 1
    );
    assert!(hearings["pace"]["text_zh"]
        .as_str()
        .unwrap()
        .starts_with("本季度还需"));
    // Appeals: one overdue to close, one turning overdue within 5 days.
    let appeals = metric(&pace, "open_appeals");
    assert_eq!(
        (&appeals["pace"]["needed"], &appeals["pace"]["soon"]),
        (&json!(1), &json!(1)),
        "{appeals}"
    );
    assert!(appeals["pace"]["text_zh"]
        .as_str()
        .unwrap()
        .contains("5 天内超期"));
    // Only the metrics shown at a street.
    assert!(pace["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["metric"] != "staffing_rate"));

    // The forms: the kinds a street may report, with their labels and types.
    let (status, kinds) = get_as(&app, &clerk, "/api/v1/kinds").await;
    assert_eq!(status, 200);
    let kinds = kinds.as_array().unwrap();
    let hired = kinds
        .iter()
        .find(|k| k["kind"] == "staff.hired")
        .expect("staff.hired");
    assert_eq!(hired["label_zh"], "招录聘用");
    assert_eq!(
        hired["fields"],
        json!([{"name": "staff_id", "label_zh": "人员编号", "type": "text"},
               {"name": "veteran", "label_zh": "是否退役军人", "type": "flag"}])
    );
    assert!(
        kinds.iter().all(|k| k["kind"] != "meeting.business_held"),
        "a city and district kind is not a street's form"
    );

    // Two veteran hires through the form: the target is met, nothing left to do.
    let form: Vec<Value> = (0..2)
        .map(|i| hire(&format!("f{i}"), STREET, true))
        .collect();
    let (status, answer) = post_as(&app, &clerk, "/api/v1/events?via=form", &json!(form)).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(2)),
        "{answer}"
    );
    let (_, pace) = get_as(&app, &clerk, "/api/v1/pace").await;
    let hires = metric(&pace, "veteran_hire_share");
    assert_eq!(hires["status"], "met", "{hires}");
    assert!(hires.get("pace").is_none(), "{hires}");
    let (status, e) = post_as(&app, &clerk, "/api/v1/events?via=fax", &json!(form)).await;
    assert_eq!((status, e["field"].as_str()), (400, Some("via")), "{e}");

    // The street's records: who sent each and how, newest first.
    app.wait_landed().await;
    let (status, records) = get_as(&app, &clerk, "/api/v1/records").await;
    assert_eq!(status, 200, "{records}");
    let list = records["records"].as_array().unwrap();
    assert_eq!(
        list.len(),
        14,
        "the street's own 12 hires and 2 appeals, not the sibling's"
    );
    let f0 = list.iter().find(|r| r["record"]["id"] == "f0").expect("f0");
    assert_eq!(
        (&f0["via"], &f0["by"], &f0["kind_zh"], &f0["version"]),
        (
            &json!("form"),
            &json!("ft1-clerk"),
            &json!("招录聘用"),
            &json!(1)
        )
    );
    let h0 = list.iter().find(|r| r["record"]["id"] == "h0").expect("h0");
    assert_eq!(h0["via"], "api");
    let (_, only) = get_as(&app, &clerk, "/api/v1/records?kind=appeal.received").await;
    assert_eq!(only["records"].as_array().unwrap().len(), 2);

    // Corrected: the list shows the new version; withdrawn: gone from it.
    let put = app
        .http
        .put(format!("{}/api/v1/events/h5", app.base))
        .bearer_auth(&clerk)
        .json(
            &json!({"record": {"kind": "staff.hired", "org": STREET, "at": days_ago(1),
            "data": {"staff_id": "h5", "veteran": true}}, "reason": "是退役军人，登记错了"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let delete = app
        .http
        .delete(format!("{}/api/v1/events/h6", app.base))
        .bearer_auth(&clerk)
        .json(&json!({"reason": "重复登记"}))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 200);
    let (_, records) = get_as(&app, &clerk, "/api/v1/records").await;
    let list = records["records"].as_array().unwrap();
    assert_eq!(list.len(), 13);
    let h5 = list.iter().find(|r| r["record"]["id"] == "h5").expect("h5");
    assert_eq!(
        (&h5["version"], &h5["record"]["data"]["veteran"]),
        (&json!(2), &json!(true))
    );
    assert!(list.iter().all(|r| r["record"]["id"] != "h6"));

    // Bad parameters, named.
    for (path, field) in [
        ("/api/v1/records?days=0", "days"),
        ("/api/v1/records?days=400", "days"),
        ("/api/v1/records?limit=5000", "limit"),
        ("/api/v1/records?kind=no.such", "kind"),
    ] {
        let (status, e) = get_as(&app, &clerk, path).await;
        assert_eq!(
            (status, e["field"].as_str()),
            (400, Some(field)),
            "{path}: {e}"
        );
    }

    // Another unit's workspace is not the clerk's to see (answered as missing); the district
    // sees it read-only.
    for path in [
        format!("/api/v1/pace?scope={SIBLING}"),
        format!("/api/v1/records?scope={SIBLING}"),
        format!("/api/v1/kinds?scope={SIBLING}"),
    ] {
        let (status, _) = get_as(&app, &clerk, &path).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, theirs) = get_as(
        &app,
        &sibling_clerk,
        &format!("/api/v1/records?scope={STREET}"),
    )
    .await;
    assert_eq!(status, 404, "{theirs}");
    let (status, seen) = get_as(&app, &district, &format!("/api/v1/pace?scope={STREET}")).await;
    assert_eq!(
        (status, &seen["may_report"]),
        (200, &json!(false)),
        "{seen}"
    );
    let (status, seen) = get_as(&app, &district, &format!("/api/v1/records?scope={STREET}")).await;
    assert_eq!(
        (status, seen["records"].as_array().map(Vec::len)),
        (200, Some(13))
    );
    let (_, admin) = get_as(
        &app,
        app.admin_token(),
        &format!("/api/v1/pace?scope={STREET}"),
    )
    .await;
    assert_eq!(admin["may_report"], true);

    // The brief names the units that did not send a scheduled report by its due day: here the
    // monthly headcount (by the 5th), which none of the street's units sent.
    assert_eq!(app.post_empty("/api/v1/jobs/snapshots").await.status(), 200);
    let brief = app.get_json(&format!("/api/v1/brief?scope={STREET}")).await;
    let headcount = brief["late_reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "staff.headcount");
    let day = vscc::domain::time::parse_day(brief["date"].as_str().unwrap()).unwrap();
    if day.day() > 5 {
        let org = app.get_json(&format!("/api/v1/org/{STREET}?depth=1")).await;
        let communities = org["children"].as_array().unwrap().len();
        let late = &headcount.expect("the headcount is past due")["late"];
        assert_eq!(
            late,
            &json!({"street": 1, "community": communities}),
            "{brief}"
        );
    } else {
        assert!(headcount.is_none(), "not due before the 5th: {brief}");
    }

    // The district's brief says what each street at risk must still do: here the street's
    // overdue appeal to close.
    let district_brief = app.get_json("/api/v1/brief?scope=440304").await;
    let appeals = district_brief["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "open_appeals")
        .expect("open_appeals in the brief");
    let street = appeals["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == STREET)
        .expect("the street");
    assert_eq!(street["pace"]["needed"], 1, "{street}");

    // The page itself.
    let page = app
        .http
        .get(format!("{}/unit", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("单位工作台"));
}

/// The workspace in a real browser (`tests/browser/unit_workspace.mjs`): a street's clerk on a
/// phone reports, corrects and withdraws through the page; the district looks on read-only.
#[test]
fn a_clerk_works_the_street_workspace_on_a_phone_and_the_district_looks_on() {
    let stdout = crate::helpers::run_browser_script("unit_workspace.mjs");
    assert!(stdout.contains("ok: a bad headcount is refused next to its field"));
    assert!(stdout.contains("ok: withdrawn"));
    assert!(stdout.contains("ok: the district sees the street read-only"));
}

/// Uploads a CSV ledger as `token`: the answer's status and JSON.
async fn upload(app: &TestApp, token: &str, name: &str, csv: &str) -> (u16, Value) {
    let res = app
        .http
        .post(format!("{}/api/v1/imports?name={name}", app.base))
        .bearer_auth(token)
        .body(csv.to_string())
        .send()
        .await
        .expect("request sent");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_ledger_cannot_take_over_another_units_record_by_its_number() {
    let app = spawn_app_with(test_settings()).await;
    let nanshan = app.user_token("nt-clerk", "clerk", "440305001001").await;
    let futian = app.user_token("ny-clerk", "clerk", STREET).await;
    let day = days_ago(2);
    let day = &day[..10];
    let header = "记录编号,单位代码,日期,人员编号,是否退役军人";
    let (status, first) = upload(
        &app,
        &nanshan,
        "招录台账.csv",
        &format!("{header}\nR001,440305001001,{day},P-1,是\n"),
    )
    .await;
    assert_eq!((status, &first["accepted"]), (200, &json!(1)), "{first}");
    // Another unit numbers its own hire R001 too: refused by its number, nothing moves.
    let (status, second) = upload(
        &app,
        &futian,
        "招录台账.csv",
        &format!("{header}\nR001,{STREET},{day},P-9,否\n"),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        (
            &second["accepted"],
            &second["corrected"],
            &second["rejected"]
        ),
        (&json!(0), &json!(0), &json!(1)),
        "{second}"
    );
    assert_eq!(second["rejects"][0]["column"], "记录编号", "{second}");
    assert!(
        second["rejects"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("本单位范围以外"),
        "{second}"
    );
    // A unit's ledger of 20 MB is refused whole, with the bound named.
    let big = format!(
        "{header}\n{}",
        "R9,440305001001,2026-11-01,P-1,是\n".repeat(20 << 20 >> 5)
    );
    let (status, e) = upload(&app, &nanshan, "大台账.csv", &big).await;
    assert_eq!(status, 413, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("10485760 bytes"),
        "{e}"
    );
    let (status, history) = get_as(&app, &nanshan, "/api/v1/events/ledger:hires:R001").await;
    assert_eq!(status, 200, "{history}");
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{history}");
    assert_eq!(versions[0]["record"]["org"], "440305001001");
}
