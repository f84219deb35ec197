//! Analysts' SQL: what ClickHouse refuses, limits, cancel, scopes, masking, history, saved.

use crate::helpers as common;

use std::time::Duration;

use common::{spawn_app_with, test_settings, TestApp};
use serde_json::{json, Value};

async fn app() -> TestApp {
    let mut settings = test_settings();
    settings.sql.max_result_rows = 1000;
    settings.sql.max_execution_time_secs = 3;
    settings.limits.queries_per_min = 6000;
    settings.limits.query_burst = 100;
    spawn_app_with(settings).await
}

/// The first community under a district.
fn community_in(app: &TestApp, district: &str) -> String {
    let tree = &app.state.tree;
    let street = tree.with_children(tree.get(district).unwrap())[1];
    tree.node(tree.with_children(street)[1]).code.clone()
}

fn registered(id: &str, org: &str, person: &str, phone: &str) -> Value {
    json!({"id": id, "kind": "veteran.registered", "org": org, "at": "2026-10-01T09:00:00+08:00",
        "data": {"person_id": person, "phone": phone}})
}

/// The first column of every row of a JSON answer.
fn column(answer: &Value) -> Vec<Value> {
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].clone())
        .collect()
}

#[tokio::test]
async fn clickhouse_refuses_writes_ddl_settings_table_functions_and_other_databases() {
    let app = app().await;
    let analyst = app.user_token("an-luohu", "analyst", "440303").await;
    let (status, answer) = app.query(&analyst, json!({"sql": "SELECT 1 + 1"})).await;
    assert_eq!((status, column(&answer)), (200, vec![json!(2)]));

    let db = &app.settings.clickhouse.database;
    let refused = [
        ("INSERT INTO events (id) VALUES ('x')", "readonly"),
        ("ALTER TABLE events DELETE WHERE 1", "readonly"),
        ("DROP TABLE events", "readonly"),
        ("CREATE TABLE t (a UInt8) ENGINE = Memory", "readonly"),
        ("SET readonly = 0", "readonly"),
        ("SELECT * FROM file('x.csv', 'CSV', 'a String')", "readonly"),
        (
            "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
            "readonly",
        ),
        (
            &format!("SELECT count() FROM {db}_sql_440304.events"),
            "Access denied to database",
        ),
        (
            &format!("SELECT count() FROM {db}.events"),
            "Access denied to database",
        ),
        (
            &format!("SELECT count() FROM {db}.users"),
            "Access denied to database",
        ),
    ];
    for (sql, says) in refused {
        let (status, answer) = app.query(&analyst, json!({"sql": sql})).await;
        assert_eq!(status, 403, "{sql}: {answer}");
        assert_eq!(answer["field"], "sql");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.starts_with("ClickHouse refused the query") && error.contains(says),
            "{sql}: {error}"
        );
    }
    let (status, answer) = app.query(&analyst, json!({"sql": "SELEC 1"})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("Syntax error"));
    // A Chinese alias written bare: ClickHouse's syntax error, with the way out.
    let (status, answer) = app
        .query(
            &analyst,
            json!({"sql": "SELECT count() AS 记录数 FROM events"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("反引号"),
        "{answer}"
    );
    app.stop().await;
}

#[tokio::test]
async fn queries_over_the_row_or_time_limit_are_cut_with_a_clear_message() {
    let app = app().await;
    let analyst = app.user_token("an-city", "analyst", "440300").await;
    let (status, answer) = app
        .query(
            &analyst,
            json!({"sql": "SELECT number FROM system.numbers LIMIT 5000"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("Limit for result exceeded"),
        "{answer}"
    );
    let (status, answer) = app
        .query(
            &analyst,
            json!({"sql": "SELECT number FROM system.numbers LIMIT 1000"}),
        )
        .await;
    assert_eq!((status, answer["rows"].as_u64()), (200, Some(1000)));

    let started = std::time::Instant::now();
    let (status, answer) = app
        .query(
            &analyst,
            json!({"sql": "SELECT count() FROM system.numbers"}),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("Timeout exceeded"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    app.stop().await;
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cancel_and_a_closed_connection_stop_the_query_in_clickhouse() {
    let mut settings = test_settings();
    settings.sql.max_execution_time_secs = 60;
    let app = spawn_app_with(settings).await;
    let analyst = app.user_token("an-cancel", "analyst", "440300").await;
    let endless = "SELECT count() FROM system.numbers";

    // DELETE /api/v1/query/{id}
    let running = {
        let (http, base, token) = (app.http.clone(), app.base.clone(), analyst.clone());
        tokio::spawn(async move {
            let res = http
                .post(format!("{base}/api/v1/query"))
                .bearer_auth(token)
                .json(&json!({"sql": endless, "id": "q-cancel-1"}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        })
    };
    let sql = app.state.sql.clone();
    wait_until("the query runs in ClickHouse", async || {
        sql.is_running_in_clickhouse("q-cancel-1").await.unwrap()
    })
    .await;
    let other = app.user_token("an-other", "analyst", "440300").await;
    let res = app
        .http
        .delete(format!("{}/api/v1/query/q-cancel-1", app.base))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "nobody else may cancel it");
    let res = app
        .http
        .delete(format!("{}/api/v1/query/q-cancel-1", app.base))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        !sql.is_running_in_clickhouse("q-cancel-1").await.unwrap(),
        "gone from system.processes"
    );
    let (status, body) = running.await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("cancelled"));

    // The client goes away.
    let abandoned = {
        let (http, base, token) = (app.http.clone(), app.base.clone(), analyst.clone());
        tokio::spawn(async move {
            let _ = http
                .post(format!("{base}/api/v1/query"))
                .bearer_auth(token)
                .json(&json!({"sql": endless, "id": "q-abandoned"}))
                .send()
                .await;
        })
    };
    wait_until("the query runs in ClickHouse", async || {
        sql.is_running_in_clickhouse("q-abandoned").await.unwrap()
    })
    .await;
    abandoned.abort();
    wait_until("the abandoned query is killed", async || {
        !sql.is_running_in_clickhouse("q-abandoned").await.unwrap()
    })
    .await;

    let history: Value = app.query_history(&analyst).await;
    let outcomes: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].as_str().unwrap(), h["outcome"].as_str().unwrap()))
        .collect();
    assert!(outcomes.contains(&("q-cancel-1", "cancelled")), "{history}");
    wait_until("the abandoned query is logged", async || {
        let h: Value = app.query_history(&analyst).await;
        h.as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == "q-abandoned" && e["outcome"] == "cancelled")
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_district_analyst_sees_only_the_district_and_personal_data_masked() {
    let app = app().await;
    let (luohu_community, futian_community) =
        (community_in(&app, "440303"), community_in(&app, "440304"));
    let res = app
        .post_events(&json!([
            registered("v1", &luohu_community, "440303199001011234", "13812345678"),
            registered("v2", &futian_community, "440304198512125678", "13987654321"),
        ]))
        .await;
    assert_eq!(res.status(), 200);
    app.wait_landed().await;
    let luohu = app.user_token("an-lh", "analyst", "440303").await;
    let city = app.user_token("an-sz", "analyst", "440300").await;
    let (_, answer) = app
        .query(
            &luohu,
            json!({"sql": "SELECT subject, data FROM events ORDER BY id"}),
        )
        .await;
    let rows = answer["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "only 罗湖's record: {answer}");
    assert_eq!(rows[0][0], "440303********1234");
    let data = rows[0][1].as_str().unwrap();
    assert!(
        data.contains("138****5678")
            && !data.contains("13812345678")
            && !data.contains("199001011234"),
        "{data}"
    );

    let (_, answer) = app
        .query(&city, json!({"sql": "SELECT count() FROM events"}))
        .await;
    assert_eq!(
        column(&answer),
        vec![json!("2")],
        "the city analyst sees both"
    );
    let (_, answer) = app
        .query(
            app.admin_token(),
            json!({"sql": "SELECT subject FROM events ORDER BY id"}),
        )
        .await;
    assert_eq!(
        column(&answer),
        vec![json!("440303199001011234"), json!("440304198512125678")],
        "admins see personal data"
    );

    // Records arriving after the scope exists reach it too.
    app.post_events(&json!([registered(
        "v3",
        &luohu_community,
        "440303199202022222",
        ""
    )]))
    .await;
    app.wait_landed().await;
    let (_, answer) = app
        .query(&luohu, json!({"sql": "SELECT count() FROM events"}))
        .await;
    assert_eq!(column(&answer), vec![json!("2")]);

    // The schema browser shows what the scope's user may read.
    let schema: Value = app
        .http
        .get(format!("{}/api/v1/query/schema", app.base))
        .bearer_auth(&luohu)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tables: std::collections::BTreeSet<&str> = schema
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["table"].as_str().unwrap())
        .collect();
    // The tables, the effective records, and one view per record kind (kind_station_rated …).
    let kind_views: std::collections::BTreeSet<String> = app
        .state
        .hub
        .catalogue()
        .kinds
        .all()
        .map(|d| format!("kind_{}", d.kind.as_str().replace('.', "_")))
        .collect();
    let (views, tables): (Vec<&str>, Vec<&str>) =
        tables.into_iter().partition(|t| t.starts_with("kind_"));
    assert_eq!(
        tables,
        [
            "data_freshness",
            "events",
            "events_effective",
            "league_tables",
            "metric_snapshots",
            "org_nodes",
            "target_progress"
        ]
    );
    assert_eq!(
        views
            .into_iter()
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>(),
        kind_views
    );
    let (_, answer) = app
        .query(
            &luohu,
            json!({"sql": "SELECT count() FROM org_nodes WHERE level = 'district'"}),
        )
        .await;
    assert_eq!(
        column(&answer),
        vec![json!("1")],
        "org_nodes of the subtree only"
    );
    app.stop().await;
}

#[tokio::test]
async fn csv_out_history_and_saved_queries() {
    let app = app().await;
    let analyst = app.user_token("an-csv", "analyst", "440300").await;
    let res = app.http.post(format!("{}/api/v1/query", app.base)).bearer_auth(&analyst)
        .json(&json!({"sql": "SELECT number AS n, toString(number * 2) AS twice FROM system.numbers LIMIT 3", "format": "csv"}))
        .send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    // Named after what it reads, for the analyst's downloads folder.
    let disposition = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"numbers-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    // A byte-order mark first, so that Excel on Chinese Windows reads UTF-8.
    let bytes = res.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF");
    assert_eq!(
        std::str::from_utf8(&bytes[3..]).unwrap(),
        "\"n\",\"twice\"\n0,\"0\"\n1,\"2\"\n2,\"4\"\n"
    );
    app.query(&analyst, json!({"sql": "SELECT nonsense"})).await;

    let get = |path: &str| {
        app.http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&analyst)
            .send()
    };
    let mut history = json!([]);
    wait_until("both queries are logged", async || {
        history = get("/api/v1/query/history")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        history.as_array().unwrap().len() == 2
    })
    .await;
    let outcomes: Vec<(&str, u64)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["outcome"].as_str().unwrap(), h["rows"].as_u64().unwrap()))
        .collect();
    assert!(
        outcomes.contains(&("ok", 3)) && outcomes.contains(&("error", 0)),
        "{history}"
    );
    let other = app.user_token("an-other", "analyst", "440300").await;
    let theirs: Value = app.query_history(&other).await;
    assert_eq!(theirs, json!([]), "history is per user");

    let put = |name: &str, sql: &str| {
        app.http
            .put(format!("{}/api/v1/queries/saved/{name}", app.base))
            .bearer_auth(&analyst)
            .json(&json!({"sql": sql}))
            .send()
    };
    assert_eq!(
        put(
            "各区上访",
            "SELECT district, count() FROM events GROUP BY district"
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(
        put(
            "各区上访",
            "SELECT district, count() AS n FROM events GROUP BY district"
        )
        .await
        .unwrap()
        .status(),
        200
    );
    assert_eq!(put("b", "SELECT 1").await.unwrap().status(), 200);
    let saved: Value = get("/api/v1/queries/saved")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved.as_array().unwrap().len(), 2);
    assert_eq!(
        saved[1]["sql"], "SELECT district, count() AS n FROM events GROUP BY district",
        "the later save replaces"
    );
    let res = app
        .http
        .delete(format!("{}/api/v1/queries/saved/b", app.base))
        .bearer_auth(&analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let saved: Value = get("/api/v1/queries/saved")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved.as_array().unwrap().len(), 1);
    app.stop().await;
}

/// Analysts read each record kind through a view named after it, one column per field of its
/// definition — the subject (masked in a scope), the numbers, other texts from `data` — in
/// their scope's database as in the admins'.
#[tokio::test]
async fn every_kind_is_a_friendly_view_with_its_fields_as_columns() {
    let app = app().await;
    let luohu_community = community_in(&app, "440303");
    let luohu_street = {
        let tree = &app.state.tree;
        let c = tree.get(&luohu_community).unwrap();
        tree.node(tree.node(c).parent.unwrap()).code.clone()
    };
    let res = app
        .post_events(&json!([
            registered("v1", &luohu_community, "440303199001011234", "13812345678"),
            {"id": "r1", "kind": "station.rated", "org": luohu_street, "at": "2026-10-01T09:00:00+08:00",
             "data": {"stars": 4, "demonstration": true}},
            {"id": "t1", "kind": "training.attended", "org": luohu_community, "at": "2026-10-01T09:00:00+08:00",
             "data": {"staff_id": "s-1", "class_id": "c-9"}},
        ]))
        .await;
    assert_eq!(res.status(), 200);
    app.wait_landed().await;

    let luohu = app.user_token("an-lh-views", "analyst", "440303").await;
    for (token, sql, expected) in [
        (
            &luohu,
            "SELECT person_id FROM kind_veteran_registered",
            json!(["440303********1234"]),
        ),
        (
            &luohu,
            "SELECT stars, demonstration FROM kind_station_rated",
            // Int64 comes as a string in ClickHouse's JSON (64-bit integers are quoted).
            json!(["4", 1]),
        ),
        (
            &luohu,
            "SELECT staff_id, class_id FROM kind_training_attended",
            json!(["s-1", "c-9"]),
        ),
        (
            &app.admin_token().to_string(),
            "SELECT person_id FROM kind_veteran_registered",
            json!(["440303199001011234"]),
        ),
    ] {
        let (status, answer) = app.query(token, json!({"sql": sql})).await;
        assert_eq!(status, 200, "{sql}: {answer}");
        assert_eq!(answer["data"][0], expected, "{sql}: {answer}");
    }
    // Every kind of the catalogue has its view.
    let (_, answer) = app
        .query(
            app.admin_token(),
            json!({"sql": "SELECT count() FROM system.tables WHERE database = currentDatabase() AND startsWith(name, 'kind_')"}),
        )
        .await;
    let kinds = app.state.hub.catalogue().kinds.all().count();
    assert_eq!(answer["data"][0][0], json!(kinds.to_string()), "{answer}");
}

#[tokio::test]
async fn nobody_reads_password_hashes_through_sql_and_bookkeeping_is_not_listed() {
    let app = app().await;
    // A user with a password hash exists (the one logging in here).
    let analyst = app.user_token("an-secrets", "analyst", "440300").await;
    let admin = app.admin_token().to_string();
    let db = app.settings.clickhouse.database.clone();
    for (who, token) in [("admin", &admin), ("analyst", &analyst)] {
        for sql in [
            "SELECT password_hash FROM users".to_string(),
            format!("SELECT password_hash FROM {db}.users"),
            format!("SELECT password_hash FROM {db}_private.users"),
        ] {
            let (status, answer) = app.query(token, json!({"sql": sql})).await;
            assert!(
                status == 403 || status == 400,
                "{who}: {sql} answered {status}: {answer}"
            );
            assert!(!answer.to_string().contains("$argon2"), "{who}: {answer}");
        }
    }
    // The admin's console lists what analysis reads, not vscc's bookkeeping.
    let schema: Value = app
        .http
        .get(format!("{}/api/v1/query/schema?scope=440300", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tables: std::collections::BTreeSet<&str> = schema
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["table"].as_str().unwrap())
        .collect();
    assert!(
        tables.contains("events") && tables.contains("alert_events"),
        "{tables:?}"
    );
    for hidden in [
        "users",
        "schema_migrations",
        "saved_queries",
        "screen_tokens",
        "alert_notifications",
    ] {
        assert!(!tables.contains(hidden), "{hidden} listed: {tables:?}");
    }
    app.stop().await;
}
