//! Several instances on one machine and how one stops: the first step beyond one process. A
//! SIGTERM drains — readiness falls at once (a balancer stops sending new clients), the screens
//! are closed with code 1012 spread over the drain window (so they do not reconnect elsewhere in
//! one burst), then the process exits cleanly; instances started with `server.reuse_port` share
//! one port.

use crate::helpers as common;

use std::time::{Duration, Instant};

use common::{free_port, serve_command, test_settings, wait_ready};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn screen(port: u16, token: &str) -> common::ws::Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?token={token}"))
            .await
            .expect("the screen connects");
    common::ws::subscribe(&mut ws, "wall", "440300", None).await;
    let first = common::ws::next_json(&mut ws, Duration::from_secs(10))
        .await
        .expect("a snapshot");
    assert_eq!(first["type"], "snapshot");
    ws
}

/// The close code a screen got, and when (since `t0`); None if the socket ended without one.
async fn closed(mut ws: common::ws::Ws, t0: Instant) -> (Option<CloseCode>, Duration) {
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .map(|m| m.and_then(Result::ok))
    {
        if let Message::Close(frame) = msg {
            return (frame.map(|f| f.code), t0.elapsed());
        }
    }
    (None, t0.elapsed())
}

#[tokio::test]
async fn sigterm_takes_readiness_down_first_then_closes_screens_spread_with_1012_then_exits() {
    let settings = test_settings();
    let port = free_port();
    let token = "drain-admin";
    let mut child = serve_command(
        port,
        &settings.clickhouse.database,
        &settings.ingest.spool_dir,
        token,
    )
    .env("VSCC__SERVER__DRAIN_SECS", "2")
    .spawn()
    .expect("vscc starts");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &base).await;
    let mut screens = Vec::new();
    for _ in 0..20 {
        screens.push(screen(port, token).await);
    }

    let t0 = Instant::now();
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // Readiness answers 503 at once, while the server still serves.
    loop {
        let r = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("still serving");
        if r.status() == 503 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["draining"], true, "{body}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "readiness still 200 after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let figures = http
        .get(format!("{base}/api/v1/metrics?scope=440300"))
        .bearer_auth(token)
        .send()
        .await
        .expect("requests are served while draining");
    assert_eq!(figures.status(), 200);

    let closes = futures_util::future::join_all(screens.into_iter().map(|ws| closed(ws, t0))).await;
    assert!(
        closes
            .iter()
            .all(|(code, _)| *code == Some(CloseCode::Restart)),
        "every screen is told the service restarts (1012): {closes:?}"
    );
    let first = closes.iter().map(|(_, t)| *t).min().unwrap();
    let last = closes.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        last < Duration::from_millis(3500),
        "all closed within the drain: {last:?}"
    );
    assert!(
        last - first > Duration::from_millis(500),
        "the closes are spread over the drain window ({first:?} … {last:?})"
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "vscc did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exits cleanly: {status}");
}

#[tokio::test]
async fn instances_started_with_reuse_port_share_one_port() {
    let settings = test_settings();
    let port = free_port();
    let start = |spool: std::path::PathBuf| {
        serve_command(port, &settings.clickhouse.database, &spool, "shared-admin")
            .env("VSCC__SERVER__REUSE_PORT", "true")
            .env("VSCC__SERVER__DRAIN_SECS", "1")
            .spawn()
            .expect("vscc starts")
    };
    let mut one = start(settings.ingest.spool_dir.join("one"));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&http, &base).await;
    let mut two = start(settings.ingest.spool_dir.join("two"));
    // Both answer on the port: new connections are spread over them by the kernel.
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "one instance answered all: {seen:?}"
        );
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            let body: serde_json::Value = r.json().await.unwrap();
            seen.insert(body["instance"].as_str().unwrap().to_string());
        }
    }
    // Without the option a second server on the port is refused.
    let refused = serve_command(
        port,
        &settings.clickhouse.database,
        &settings.ingest.spool_dir.join("three"),
        "x",
    )
    .status()
    .expect("vscc runs");
    assert!(
        !refused.success(),
        "a second server without reuse_port must not start"
    );

    // One stops; the other keeps answering every request.
    unsafe { libc::kill(one.id() as i32, libc::SIGTERM) };
    one.wait().unwrap();
    for _ in 0..20 {
        let r = http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("the other answers");
        assert_eq!(r.status(), 200);
    }
    unsafe { libc::kill(two.id() as i32, libc::SIGTERM) };
    two.wait().unwrap();
}
