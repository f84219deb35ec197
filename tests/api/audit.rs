//! The audit trail: every login (failed ones with their address), user, token, alert, SQL and
//! import action is in it; admins read it (their subtree's, below the city) through the API and
//! in SQL; nobody else does, and nothing in vscc changes it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::spawn_app;

/// The admin's view of the trail for a query string, once `done` holds (entries are written
/// in the background: wait for them rather than sleep).
async fn trail_when(
    app: &crate::helpers::TestApp,
    token: &str,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = app
            .http
            .get(format!("{}/api/v1/audit{query}", app.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), 200, "GET /api/v1/audit{query}");
        let entries: Vec<Value> = res.json().await.expect("JSON");
        if done(&entries) || tokio::time::Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has(entries: &[Value], action: &str, actor: &str, outcome: &str) -> bool {
    entries
        .iter()
        .any(|e| e["action"] == action && e["actor"] == actor && e["outcome"] == outcome)
}

async fn login_status(app: &crate::helpers::TestApp, name: &str, password: &str) -> u16 {
    app.http
        .post(format!("{}/api/v1/login", app.base))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

#[tokio::test]
async fn every_action_is_in_the_trail_and_only_admins_read_it_within_their_scope() {
    let app = spawn_app().await;
    // A failed login of a name nobody has, one of a Futian clerk, then successful ones.
    assert_eq!(login_status(&app, "zhang-san", "guess-1234").await, 401);
    let futian_admin = app.user_token("ft-admin", "admin", "440304").await;
    let _clerk = app.user_token("ft-clerk", "clerk", "440304").await;
    assert_eq!(login_status(&app, "ft-clerk", "wrong-password").await, 401);
    let analyst = app.user_token("an-city", "analyst", "440300").await;
    let (status, _) = app
        .query(&analyst, json!({"sql": "SELECT count() AS n FROM events"}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.query(&analyst, json!({"sql": "SELEC 1"})).await;
    assert_eq!(status, 400);
    let revoked = app
        .http
        .delete(format!("{}/api/v1/users/ft-clerk", app.base))
        .bearer_auth(&futian_admin)
        .send()
        .await
        .expect("request sent");
    assert_eq!(revoked.status(), 200);

    let admin = app.admin_token().to_string();
    let all = trail_when(&app, &admin, "", |e| {
        has(e, "user_revoked", "ft-admin", "ok")
            && has(e, "sql_run", "an-city", "refused")
            && has(e, "login", "zhang-san", "refused")
    })
    .await;
    let failed = all
        .iter()
        .find(|e| e["action"] == "login" && e["actor"] == "zhang-san")
        .unwrap_or_else(|| panic!("the failed login is in the trail: {all:#?}"));
    assert_eq!(failed["outcome"], "refused");
    assert_eq!(failed["address"], "127.0.0.1", "{failed}");
    assert_eq!(failed["scope"], "", "an unknown name has no scope");
    assert!(
        has(&all, "user_added", "admin", "ok") && has(&all, "login", "ft-admin", "ok"),
        "{all:#?}"
    );
    let clerk_failed = all
        .iter()
        .find(|e| e["action"] == "login" && e["actor"] == "ft-clerk" && e["outcome"] == "refused")
        .expect("the clerk's failed login");
    assert_eq!(clerk_failed["scope"], "440304", "a known name's own scope");
    let ran = all
        .iter()
        .find(|e| e["action"] == "sql_run" && e["outcome"] == "ok")
        .expect("the SQL run");
    assert_eq!(ran["detail"], "SELECT count() AS n FROM events");
    assert_eq!(
        (&ran["role"], &ran["scope"]),
        (&json!("analyst"), &json!("440300"))
    );
    let wrong = all
        .iter()
        .find(|e| e["action"] == "sql_run" && e["outcome"] == "refused")
        .expect("the refused SQL");
    assert!(
        wrong["detail"].as_str().unwrap().starts_with("SELEC 1"),
        "{wrong}"
    );
    // Newest first.
    let times: Vec<&str> = all.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted);

    // Filters.
    let logins = trail_when(&app, &admin, "?action=login&actor=zhang-san", |e| {
        !e.is_empty()
    })
    .await;
    assert_eq!(logins.len(), 1, "{logins:#?}");
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(2)).date();
    let none = trail_when(&app, &admin, &format!("?from={tomorrow}"), |_| true).await;
    assert!(none.is_empty(), "{none:#?}");
    let today = trail_when(
        &app,
        &admin,
        "?from=2020-01-01&to=2106-01-01&limit=2",
        |_| true,
    )
    .await;
    assert_eq!(today.len(), 2);
    for (query, field) in [
        ("?action=delete_everything", "action"),
        ("?from=0000-01-01", "from"),
        ("?to=yesterday", "to"),
        ("?limit=0", "limit"),
    ] {
        let res = app
            .http
            .get(format!("{}/api/v1/audit{query}", app.base))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), 400, "{query}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["field"], field, "{query}: {body}");
    }

    // Futian's admin sees Futian's users' actions only: not the city analyst's SQL, not the
    // unknown name's login.
    let futian = trail_when(&app, &futian_admin, "", |e| {
        has(e, "user_revoked", "ft-admin", "ok")
    })
    .await;
    assert!(has(&futian, "login", "ft-clerk", "refused"), "{futian:#?}");
    assert!(
        futian
            .iter()
            .all(|e| e["scope"].as_str().unwrap().starts_with("440304")),
        "{futian:#?}"
    );
    // Nobody else reads it.
    let res = app
        .http
        .get(format!("{}/api/v1/audit", app.base))
        .bearer_auth(&analyst)
        .send()
        .await
        .expect("request sent");
    assert_eq!(res.status(), 403);

    // In SQL: the admins' database holds it, read-only; an analyst's scope has no such table.
    let (status, answer) = app
        .query(
            &admin,
            json!({"sql": "SELECT count() AS n FROM audit WHERE action = 'login' AND outcome = 'refused'"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let refused_logins = &answer["data"][0][0];
    assert!(
        refused_logins
            .as_u64()
            .or_else(|| refused_logins.as_str()?.parse().ok())
            >= Some(2),
        "{answer}"
    );
    for sql in [
        "ALTER TABLE audit DELETE WHERE 1",
        "INSERT INTO audit (actor) VALUES ('x')",
        "DROP TABLE audit",
    ] {
        let (status, answer) = app.query(&admin, json!({"sql": sql})).await;
        assert_eq!(status, 403, "{sql}: {answer}");
    }
    let (status, answer) = app
        .query(&analyst, json!({"sql": "SELECT count() FROM audit"}))
        .await;
    assert_ne!(status, 200, "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn acknowledgements_silences_and_imports_are_audited_with_what_they_were_on() {
    let app = spawn_app().await;
    let admin = app.admin_token().to_string();
    let silence = app
        .http
        .post(format!("{}/api/v1/silences", app.base))
        .bearer_auth(&admin)
        .json(&json!({"starts_at": "2026-01-01T00:00:00+08:00", "ends_at": "2099-01-01T00:00:00+08:00", "comment": "演练"}))
        .send()
        .await
        .expect("request sent");
    let created_ok = silence.status() == 201;
    let silence: Value = silence.json().await.unwrap();
    assert!(created_ok, "{silence}");
    let id = silence["id"].as_str().unwrap().to_string();
    let ended = app
        .http
        .delete(format!("{}/api/v1/silences/{id}", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("request sent");
    assert_eq!(ended.status(), 204);
    let csv = "区,街道,社区,入职日期,人员编号,是否退役军人\n南山区,南头街道,南头城社区,2021-03-04,NS-001,是\n";
    let imported = app
        .http
        .post(format!(
            "{}/api/v1/imports?name=%E6%8B%9B%E8%81%98.csv",
            app.base
        ))
        .bearer_auth(&admin)
        .body(csv)
        .send()
        .await
        .expect("request sent");
    assert_eq!(imported.status(), 200, "{}", imported.text().await.unwrap());
    let entries = trail_when(&app, &admin, "", |e| {
        has(e, "silence_ended", "admin", "ok") && e.iter().any(|x| x["action"] == "ledger_imported")
    })
    .await;
    let created = entries
        .iter()
        .find(|e| e["action"] == "silence_created")
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(created["target"], id.as_str());
    assert!(created["detail"].as_str().unwrap().contains("演练"));
    let import = entries
        .iter()
        .find(|e| e["action"] == "ledger_imported")
        .unwrap_or_else(|| panic!("{entries:#?}"));
    assert_eq!(
        (&import["target"], &import["outcome"]),
        (&json!("招聘.csv"), &json!("ok"))
    );
    assert!(
        import["detail"]
            .as_str()
            .unwrap()
            .contains("1 rows, 1 accepted"),
        "{import}"
    );
    app.stop().await;
}
