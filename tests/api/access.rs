//! Users, roles and scopes: the access matrix, login throttling, expiry, revocation (also on an
//! open WebSocket), screen tokens, rate limits and the `vscc user` command.

use crate::helpers as common;

use std::time::Duration;

use common::ws::{connect, next_json, subscribe};
use common::{spawn_app, spawn_app_with, test_settings, TestApp};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    RestRead,
    WsSubscribe,
    Ingest,
    Sql,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Relation {
    Own,
    Parent,
    Sibling,
    Child,
}

/// The one table: what each role may do inside its own scope. Outside it (parent, sibling)
/// nothing is allowed; a child is inside.
const ROLE_TABLE: &[(&str, [bool; 4])] = &[
    //               read   ws     ingest sql
    ("leader", [true, true, false, false]),
    ("analyst", [true, true, false, true]),
    ("duty_officer", [true, true, false, false]),
    // A unit's clerk sees where its unit stands and what it must do (the workspace).
    ("clerk", [true, true, true, false]),
    ("admin", [true, true, true, true]),
];

const OPS: [Op; 4] = [Op::RestRead, Op::WsSubscribe, Op::Ingest, Op::Sql];
const RELATIONS: [Relation; 4] = [
    Relation::Own,
    Relation::Parent,
    Relation::Sibling,
    Relation::Child,
];

fn expected(role_ops: [bool; 4], op: Op, relation: Relation) -> bool {
    let in_scope = matches!(relation, Relation::Own | Relation::Child);
    role_ops[OPS.iter().position(|o| *o == op).unwrap()] && in_scope
}

/// Tries one cell; true when the operation was allowed.
async fn attempt(app: &TestApp, token: &str, op: Op, node: &str, n: usize) -> bool {
    match op {
        Op::RestRead => {
            let res = app
                .http
                .get(format!("{}/api/v1/metrics?scope={node}", app.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            match res.status().as_u16() {
                200 => true,
                403 => false,
                other => panic!("REST read answered {other}"),
            }
        }
        Op::WsSubscribe => {
            let mut ws = connect(app, Some(token), None)
                .await
                .expect("the upgrade itself is allowed to every valid token");
            subscribe(&mut ws, "m", node, None).await;
            let msg = next_json(&mut ws, Duration::from_secs(5))
                .await
                .expect("an answer to subscribe");
            match msg["type"].as_str() {
                Some("snapshot") => true,
                Some("error") => false,
                other => panic!("subscribe answered {other:?}"),
            }
        }
        Op::Ingest => {
            let event = json!([{"id": format!("matrix-{n}"), "kind": "appeal.received", "org": node,
                "at": "2026-11-01T09:00:00+08:00", "data": {"appeal_id": format!("matrix-{n}")}}]);
            let res = app.post_events_as(&event, token).await;
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            match status {
                200 => body["accepted"] == 1,
                403 => false,
                422 => {
                    assert_eq!(
                        body["errors"][0]["field"], "org",
                        "refused for its scope: {body}"
                    );
                    false
                }
                other => panic!("ingest answered {other}: {body}"),
            }
        }
        Op::Sql => {
            let (status, body) = app
                .query(
                    token,
                    json!({"sql": "SELECT count() FROM events", "scope": node}),
                )
                .await;
            match status {
                200 => true,
                403 => false,
                other => panic!("SQL answered {other}: {body}"),
            }
        }
    }
}

#[tokio::test]
async fn every_role_in_every_relation_gets_exactly_what_the_table_says() {
    let app = spawn_app().await;
    let tree = app.state.tree.clone();
    let own = "440303"; // 罗湖区
    let own_idx = tree.get(own).unwrap();
    let child = tree.node(tree.with_children(own_idx)[1]).code.clone(); // one of its streets
    let nodes = [
        (Relation::Own, own.to_string()),
        (Relation::Parent, "440300".into()),
        (Relation::Sibling, "440304".into()),
        (Relation::Child, child),
    ];

    let mut cells = 0;
    let mut mismatches = Vec::new();
    for (role, role_ops) in ROLE_TABLE {
        let token = app.user_token(&format!("{role}-luohu"), role, own).await;
        for op in OPS {
            for (relation, node) in &nodes {
                cells += 1;
                let allowed = attempt(&app, &token, op, node, cells).await;
                if allowed != expected(*role_ops, op, *relation) {
                    mismatches.push(format!(
                        "{role} {op:?} on {relation:?} ({node}): allowed = {allowed}"
                    ));
                }
            }
        }
    }
    assert_eq!(cells, ROLE_TABLE.len() * OPS.len() * RELATIONS.len());
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ from the table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    app.stop().await;
}

#[tokio::test]
async fn logins_are_checked_and_throttled() {
    let mut settings = test_settings();
    settings.limits.login_failures = 3;
    settings.limits.login_lockout_secs = 120;
    let app = spawn_app_with(settings).await;
    let token = app.user_token("wang", "leader", "440304").await;
    let me: Value = app
        .http
        .get(format!("{}/api/v1/me", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            me["name"].as_str(),
            me["role"].as_str(),
            me["scope"].as_str()
        ),
        (Some("wang"), Some("leader"), Some("440304"))
    );

    let login = |password: &'static str| {
        app.http
            .post(format!("{}/api/v1/login", app.base))
            .json(&json!({"name": "wang", "password": password}))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(login("wrong-password").await.unwrap().status(), 401);
    }
    let locked = login("pw-wang-0123").await.unwrap();
    assert_eq!(
        locked.status(),
        429,
        "even the right password waits out the lockout"
    );
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 100 && retry <= 120, "Retry-After {retry}");

    // Passwords are stored as argon2 hashes, never as text.
    let stored: String = app
        .store()
        .client()
        .query(&format!(
            "SELECT password_hash FROM {} WHERE name = 'wang'",
            app.store().users_table()
        ))
        .fetch_one()
        .await
        .unwrap();
    assert!(stored.starts_with("$argon2id$") && !stored.contains("pw-wang"));
    app.stop().await;
}

/// Sends a subscription and returns the error the server answers with (deltas sent before it
/// are skipped; anything else fails the test).
async fn refused_at_next_message(ws: &mut common::ws::Ws) -> Value {
    ws.send(Message::Text(
        json!({"type": "subscribe", "id": "b", "scope": "440303"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let msg = next_json(ws, Duration::from_secs(5))
            .await
            .expect("an error message");
        if msg["type"] == "error" {
            return msg;
        }
        assert_eq!(msg["type"], "delta", "{msg}");
    }
}

/// A session token for leader "li" of 440303, signed with the app's key, valid over
/// `iat..exp` (Unix seconds).
fn leader_session_token(app: &TestApp, jti: &str, iat: i64, exp: i64) -> String {
    app.state
        .auth
        .sign(&vscc::Claims {
            sub: "li".into(),
            jti: jti.into(),
            kind: vscc::TokenKind::Session,
            role: vscc::Role::Leader,
            scope: "440303".into(),
            iat,
            exp,
        })
        .unwrap()
}

#[tokio::test]
async fn expired_and_revoked_tokens_are_refused_also_on_an_open_websocket() {
    let app = spawn_app().await;
    let token = app.user_token("li", "leader", "440303").await;

    // Expired: a token signed with our key whose time is up.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = leader_session_token(&app, "old", now - 7200, now - 1);
    let res = app
        .http
        .get(format!("{}/api/v1/metrics?scope=440303", app.base))
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("expired"));
    assert_eq!(connect(&app, Some(&expired), None).await.err(), Some(401));

    // Revoked user, with a WebSocket open: refused at its next message.
    let mut ws = connect(&app, Some(&token), None).await.unwrap();
    subscribe(&mut ws, "a", "440303", None).await;
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "snapshot"
    );
    let res = app
        .http
        .delete(format!("{}/api/v1/users/li", app.base))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let refused = refused_at_next_message(&mut ws).await;
    assert_eq!(refused["type"], "error");
    assert!(
        refused["reason"].as_str().unwrap().contains("revoked"),
        "{refused}"
    );
    assert!(
        next_json(&mut ws, Duration::from_secs(5)).await.is_none(),
        "then the socket closes"
    );
    let res = app
        .http
        .get(format!("{}/api/v1/metrics?scope=440303", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_token_that_expires_while_its_websocket_is_open_is_refused_at_the_next_message() {
    let app = spawn_app().await;
    app.user_token("li", "leader", "440303").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // Long enough to connect and get the snapshot on a loaded CI machine (2 s was not).
    let short_lived = leader_session_token(&app, "short", now, now + 6);
    let mut ws = connect(&app, Some(&short_lived), None).await.unwrap();
    subscribe(&mut ws, "a", "440303", None).await;
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "snapshot"
    );
    // The signature is checked once, at the upgrade; the expiry still counts at every message.
    let until_expired = (now + 7) - time::OffsetDateTime::now_utc().unix_timestamp();
    tokio::time::sleep(Duration::from_secs(until_expired.max(0) as u64)).await;
    let refused = refused_at_next_message(&mut ws).await;
    assert!(
        refused["reason"].as_str().unwrap().contains("expired"),
        "{refused}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_screen_token_stops_a_watching_screen_at_the_next_update() {
    let app = spawn_app().await;
    app.user_token("futian-leader", "leader", "440304").await;
    let issue = |body: Value| {
        app.http
            .post(format!("{}/api/v1/screen-tokens", app.base))
            .bearer_auth(app.admin_token())
            .json(&body)
            .send()
    };
    let res = issue(json!({"user": "futian-leader", "scope": "440303"}))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        400,
        "a screen may not watch outside its user's scope"
    );
    let res = issue(json!({"user": "futian-leader", "label": "福田指挥中心 1号屏"}))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let screen: Value = res.json().await.unwrap();
    let token = screen["token"].as_str().unwrap().to_string();
    let expires = time::OffsetDateTime::parse(
        screen["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        expires - time::OffsetDateTime::now_utc() > time::Duration::days(300),
        "screen tokens are long-lived"
    );

    let mut ws = connect(&app, Some(&token), None).await.unwrap();
    subscribe(&mut ws, "s", "440304", None).await;
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await.unwrap()["type"],
        "snapshot"
    );
    let res = app
        .http
        .post(format!("{}/api/v1/events", app.base))
        .bearer_auth(&token)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a screen token only watches");

    let id = screen["id"].as_str().unwrap();
    let res = app
        .http
        .delete(format!("{}/api/v1/screen-tokens/{id}", app.base))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A new record makes the screen due for a delta: instead it gets the refusal.
    app.post_events(
        &json!([{"id": "after-revoke", "kind": "appeal.received", "org": "440304",
        "at": "2026-11-01T09:00:00+08:00", "data": {"appeal_id": "after-revoke"}}]),
    )
    .await;
    let msg = next_json(&mut ws, Duration::from_secs(5))
        .await
        .expect("a message");
    assert_eq!(msg["type"], "error", "{msg}");
    assert!(msg["reason"].as_str().unwrap().contains("revoked"));
    let listed: Value = app.get("/api/v1/screen-tokens").await.json().await.unwrap();
    assert_eq!(listed[0]["revoked"], true);
    app.stop().await;
}

#[tokio::test]
async fn ingest_over_the_rate_limit_gets_429_with_retry_after() {
    let mut settings = test_settings();
    settings.limits.ingest_per_sec = 1;
    settings.limits.ingest_burst = 2;
    let app = spawn_app_with(settings).await;
    let clerk = app.user_token("clerk-ns", "clerk", "440305").await;
    let statuses: Vec<u16> = futures_util::future::join_all((0..3).map(|i| {
        let body = json!([{"id": format!("rl-{i}"), "kind": "appeal.received", "org": "440305", "at": "2026-11-01T09:00:00+08:00", "data": {"appeal_id": format!("rl-{i}")}}]);
        let (http, base, clerk) = (app.http.clone(), app.base.clone(), clerk.clone());
        async move { http.post(format!("{base}/api/v1/events")).bearer_auth(clerk).json(&body).send().await.unwrap().status().as_u16() }
    }))
    .await;
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(sorted, [200, 200, 429], "{statuses:?}");
    // Another token has its own budget.
    let other = app.user_token("clerk-ns2", "clerk", "440305").await;
    let res = app.post_events_as(&json!([]), &other).await;
    assert_ne!(res.status(), 429);
    app.stop().await;
}

#[tokio::test]
async fn the_user_command_adds_lists_and_revokes_users_in_the_store() {
    let app = spawn_app().await;
    let vscc = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_vscc"))
            .args(args)
            .env("VSCC__CLICKHOUSE__URL", common::clickhouse_url())
            .env(
                "VSCC__CLICKHOUSE__DATABASE",
                &app.settings.clickhouse.database,
            )
            .env("VSCC__AUTH__SECRET", &app.settings.auth.secret)
            .env("VSCC_USER_PASSWORD", "cli-password-1")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = vscc(&[
        "user", "add", "zhao", "--role", "analyst", "--scope", "440306",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = vscc(&["user", "add", "qian", "--role", "boss", "--scope", "440306"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role boss"));

    // The running server sees the new user within its refresh interval.
    let login = |password: &'static str| {
        app.http
            .post(format!("{}/api/v1/login", app.base))
            .json(&json!({"name": "zhao", "password": password}))
            .send()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while login("cli-password-1").await.unwrap().status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never saw the user added by the CLI"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = app.login("zhao", "cli-password-1").await;

    let out = vscc(&["user", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.lines().any(|l| l.starts_with("zhao")
            && l.contains("analyst")
            && l.contains("440306")
            && l.contains("active")),
        "{listing}"
    );

    let out = vscc(&["user", "revoke", "zhao"]);
    assert!(out.status.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res = app
            .http
            .get(format!("{}/api/v1/me", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if res.status() == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revoked user's token still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// Fills a route template of the OpenAPI document: every `{param}` becomes `value`.
fn fill(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|seg| match (seg.find('{'), seg.find('}')) {
            (Some(a), Some(b)) => format!("{}{value}{}", &seg[..a], &seg[b + 1..]),
            _ => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The anonymous column of the access matrix: every operation of `/openapi.json`, without a
/// token. One that takes a token answers 401 — the same 401 whether what the request names
/// exists or not — before it parses a body or looks anything up; a public one does not.
#[tokio::test]
async fn without_a_token_every_secured_route_answers_401_before_any_lookup() {
    let app = spawn_app().await;
    app.user_token("probe-existing", "leader", "440303").await;
    let doc = app.get_json("/openapi.json").await;
    let mut secured_ops = 0;
    let mut public_ops = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            for value in ["probe-existing", "no-such-thing"] {
                let url = format!("{}{}", app.base, fill(template, value));
                let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                // A body naming the existing user, and one that would not even parse.
                for body in [
                    json!({"user": value, "name": value}).to_string(),
                    "{".into(),
                ] {
                    let res = app
                        .http
                        .request(method.clone(), &url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    let status = res.status().as_u16();
                    if secured {
                        assert_eq!(status, 401, "{method} {url} without a token");
                        let error: Value = res.json().await.unwrap();
                        assert_eq!(
                            error["error"], "a bearer token is required",
                            "{method} {url}"
                        );
                    } else {
                        assert_ne!(status, 401, "{method} {url} is public");
                    }
                }
            }
            if secured {
                secured_ops += 1;
            } else {
                public_ops.push(format!("{method} {template}"));
            }
        }
    }
    assert!(secured_ops >= 30, "{secured_ops} secured operations");
    // Public: the probes and logging in. The catalogue, the tree, the map, the dashboards and
    // /metrics need a token unless `auth.anonymous_role` opens what a wall needs (/metrics
    // never: hardening.rs).
    let allowed = ["get /healthz", "get /readyz", "post /api/v1/login"];
    for op in &public_ops {
        assert!(
            allowed.contains(&op.as_str()),
            "{op} answers without a token"
        );
    }

    // With a token, an admin of another district learns nothing about 罗湖's users either.
    let futian_admin = app.user_token("futian-admin", "admin", "440304").await;
    let mut answers = Vec::new();
    for user in ["probe-existing", "no-such-user"] {
        let issued = app
            .http
            .post(format!("{}/api/v1/screen-tokens", app.base))
            .bearer_auth(&futian_admin)
            .json(&json!({"user": user}))
            .send()
            .await
            .unwrap();
        let deleted = app
            .http
            .delete(format!("{}/api/v1/users/{user}", app.base))
            .bearer_auth(&futian_admin)
            .send()
            .await
            .unwrap();
        let issued = (
            issued.status().as_u16(),
            issued.json::<Value>().await.unwrap(),
        );
        let deleted = (
            deleted.status().as_u16(),
            deleted.json::<Value>().await.unwrap(),
        );
        answers.push((
            issued.0,
            issued.1["error"].as_str().unwrap().replace(user, "X"),
            deleted.0,
            deleted.1["error"].as_str().unwrap().replace(user, "X"),
        ));
    }
    assert_eq!(
        answers[0], answers[1],
        "existing and missing users look the same"
    );
    assert_eq!((answers[0].0, answers[0].2), (400, 404));
    app.stop().await;
}
