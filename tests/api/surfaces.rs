//! Hardening of the newer surfaces: definition files that block, never end, are refused at a
//! restart, hold `nan` or 10 MB labels; dates out of the store's range; screens that stop
//! reading; what answers without a token; errors that name their parameter.

use crate::helpers as common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// A copy of the shipped definitions (kinds, metrics, alert rules) that a test may change.
fn definitions_copy() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let copy = |from: &str, to: &str| {
        let dest = dir.path().join(to);
        std::fs::create_dir_all(&dest).unwrap();
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(from)).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
            }
        }
        dest
    };
    let kinds = copy("dashboards/kinds", "kinds");
    let metrics = copy("dashboards/metrics", "metrics");
    let alerts = copy("dashboards/alerts", "alerts");
    (dir, kinds, metrics, alerts)
}

/// A metric definition (a copy of staffing_rate named `name`) with `target` as its target line.
fn metric_file(name: &str, target_value: &str) -> String {
    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/metrics/staffing_rate.toml"),
    )
    .unwrap();
    shipped
        .replace("name = \"staffing_rate\"", &format!("name = \"{name}\""))
        .replace("value = 0.95", &format!("value = {target_value}"))
}

/// A server process of a test's own, killed when the test ends (also when it fails).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn readiness(http: &reqwest::Client, base: &str) -> Value {
    http.get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_fifo_or_a_link_to_dev_zero_among_the_definitions_jams_neither_reloading_nor_shutdown() {
    let (_dir, kinds, metrics, alerts) = definitions_copy();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let spool = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let token = "fifo-admin";
    let database = format!("test_{}", uuid::Uuid::new_v4().simple());
    let mut server = Server(
        common::serve_command(port, &database, spool.path(), token)
            .env("VSCC__CATALOGUE__KINDS_DIR", &kinds)
            .env("VSCC__CATALOGUE__METRICS_DIR", &metrics)
            .env("VSCC__ALERTS__RULES_DIR", &alerts)
            .env("VSCC__ALERTS__EVAL_INTERVAL_MS", "300")
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    common::wait_ready(&http, &base).await;
    // A FIFO nobody writes to, and links to a device that never ends, among every kind of
    // definition file.
    for dir in [&metrics, &kinds, &alerts] {
        let fifo = std::ffi::CString::new(dir.join("x.toml").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.toml")).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A change after them is still seen: a broken file (a target of nan) is refused, naming the
    // file and the line, and said in /readyz and /metrics.
    std::fs::write(
        metrics.join("nan_target.toml"),
        metric_file("nan_target", "nan"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let ready = readiness(&http, &base).await;
        let said = ready["definitions"].as_str().unwrap_or("").to_string();
        if said.contains("nan_target.toml") {
            break said;
        }
        assert!(
            Instant::now() < deadline,
            "the refusal was never seen (the watcher is stuck?): {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Named with its line: the target's.
    let line = metric_file("nan_target", "nan")
        .lines()
        .position(|l| l.starts_with("value = nan"))
        .unwrap()
        + 1;
    assert!(
        refused.contains("finite") && refused.contains(&format!("nan_target.toml:{line}:")),
        "{refused}"
    );
    let metrics_text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics_text.contains("vscc_metric_definitions_last_reload_successful 0"),
        "{metrics_text}"
    );
    // The dashboards and the alert rules are still read: the catalogue is whole and answers.
    let catalogue: Value = http
        .get(format!("{base}/api/v1/catalogue"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(catalogue.as_array().unwrap().len(), 39);
    // SIGINT stops it (it hung for good, then SIGKILL after 90 s).
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGINT) };
    let stopped = Instant::now();
    loop {
        if server.0.try_wait().unwrap().is_some() {
            break;
        }
        if stopped.elapsed() > Duration::from_secs(20) {
            panic!("SIGINT did not stop the server within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("stopped {} ms after SIGINT", stopped.elapsed().as_millis());
}

#[tokio::test]
async fn a_restart_with_a_refused_definition_file_starts_with_the_last_good_set_loudly() {
    let (_dir, kinds, metrics, _alerts) = definitions_copy();
    let mut settings = common::test_settings();
    settings.catalogue.kinds_dir = kinds.clone();
    settings.catalogue.metrics_dir = metrics.clone();
    let app = common::spawn_app_with(settings.clone()).await;
    assert_eq!(readiness(&app.http, &app.base).await["definitions"], "ok");
    app.stop().await;
    // A valid but far too long label: refused (the file's line and key named), at start too.
    let huge = metric_file("huge_label", "0.95").replace(
        "label_zh = \"编制人员到位率\"",
        &format!("label_zh = \"{}\"", "长".repeat(3000)),
    );
    std::fs::write(metrics.join("huge_label.toml"), huge).unwrap();
    let app = common::spawn_app_with(settings.clone()).await;
    let ready = app.get_json("/readyz").await;
    let said = ready["definitions"].as_str().unwrap();
    assert!(
        said.contains("huge_label.toml") && said.contains("label_zh") && said.contains("last good"),
        "{ready}"
    );
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(text.contains("vscc_metric_definitions_last_reload_successful 0"));
    let catalogue = app.get_json("/api/v1/catalogue").await;
    assert_eq!(
        catalogue.as_array().unwrap().len(),
        39,
        "the last good set is in service"
    );
    assert!(catalogue.to_string().len() < 100_000);
    app.stop().await;
    // With no last good set kept (a new spool), the refusal stops the start, naming the file.
    settings.ingest.spool_dir = settings.ingest.spool_dir.with_extension("fresh");
    let error = match vscc::app::Application::build(settings, false).await {
        Ok(_) => panic!("a refused set with nothing to fall back on started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("huge_label.toml"), "{error}");
}

#[tokio::test]
async fn dates_a_client_names_are_checked_against_the_stores_range() {
    let app = common::spawn_app().await;
    for date in [
        "0000-01-01",
        "-0001-01-01",
        "1969-12-31",
        "9999-12-31",
        "2024-02-30",
    ] {
        for path in ["/api/v1/brief", "/api/v1/brief/pdf"] {
            let res = app.get(&format!("{path}?date={date}")).await;
            assert_eq!(res.status(), 400, "{path}?date={date}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["field"], "date", "{path}?date={date}: {body}");
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn without_a_token_only_the_pages_the_probes_and_the_docs_answer() {
    let app = common::spawn_app().await;
    let anon = |path: &str| app.http.get(format!("{}{path}", app.base)).send();
    for path in [
        "/api/v1/catalogue",
        "/api/v1/org",
        "/api/v1/org/440303",
        "/api/v1/geo/districts",
        "/api/v1/geo/locate?lon=114.1&lat=22.55",
        "/api/v1/dashboards",
        "/api/v1/dashboards/city-overview",
        "/metrics",
    ] {
        let res = anon(path).await.unwrap();
        assert_eq!(res.status(), 401, "{path}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // The pages are shells (they ask for a token); the probes and the API's description answer.
    for path in [
        "/",
        "/board",
        "/duty",
        "/metric/staffing_rate",
        "/assets/common.js",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert_eq!(anon(path).await.unwrap().status(), 200, "{path}");
    }
    let shell = anon("/").await.unwrap().text().await.unwrap();
    assert!(
        !shell.contains("编制人员到位率"),
        "a page carries no figures of its own"
    );
    app.stop().await;

    // A wall screen's anonymous role opens what a wall needs — not /metrics; Prometheus scrapes
    // with its own token.
    let mut settings = common::test_settings();
    settings.auth.anonymous_role = Some(vscc::Role::Leader);
    settings.auth.metrics_token = "scrape-me".into();
    let app = common::spawn_app_with(settings).await;
    let anon = |path: &str| app.http.get(format!("{}{path}", app.base)).send();
    for path in [
        "/api/v1/catalogue",
        "/api/v1/org",
        "/api/v1/geo/districts",
        "/api/v1/dashboards/city-overview",
        "/api/v1/metrics?scope=440300",
    ] {
        assert_eq!(anon(path).await.unwrap().status(), 200, "{path}");
    }
    assert_eq!(anon("/metrics").await.unwrap().status(), 401);
    let scraped = app
        .http
        .get(format!("{}/metrics", app.base))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("vscc_"));
    let leader = app.user_token("metrics-leader", "leader", "440300").await;
    let res = app
        .http
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&leader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a leader's token does not read /metrics");
    app.stop().await;
}

#[tokio::test]
async fn a_records_data_is_bounded() {
    let app = common::spawn_app().await;
    // A clerk's 10 MB blob in one record, within the 16 MiB body limit: that record is refused
    // naming `data`, the one beside it kept.
    let blob = "x".repeat(10 * 1024 * 1024);
    let events = json!([
        {"id": "big-1", "kind": "veteran.visited", "org": "440303001001", "at": "2026-11-01T09:00:00+08:00",
         "data": {"person_id": "p1", "note": blob}},
        {"id": "small-1", "kind": "appeal.received", "org": "440303001", "at": "2026-11-01T09:00:00+08:00",
         "data": {"appeal_id": "A-1"}}
    ]);
    let res = app.post_events(&events).await;
    let body: Value = res.json().await.unwrap();
    let rejected = body["errors"].as_array().unwrap();
    assert_eq!(
        rejected.len(),
        1,
        "{}",
        &body.to_string()[..300.min(body.to_string().len())]
    );
    assert_eq!(
        (rejected[0]["index"].as_u64(), rejected[0]["field"].as_str()),
        (Some(0), Some("data"))
    );
    assert!(
        rejected[0]["reason"]
            .as_str()
            .unwrap()
            .contains("at most 8192"),
        "{}",
        rejected[0]
    );
    assert_eq!(body["accepted"], 1, "the good record beside it is kept");
    app.stop().await;
}

#[tokio::test]
async fn errors_name_the_parameter_and_keep_the_json_shape() {
    let app = common::spawn_app().await;
    for (path, field) in [
        ("/api/v1/org?depth=abc", "depth"),
        ("/api/v1/org/440303?depth=-1", "depth"),
        ("/api/v1/geo/locate?lon=abc&lat=22.5", "lon"),
        ("/api/v1/geo/locate?lon=114.1", "lat"),
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 400, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    // A path that climbs out of the pages' folder: refused, in the JSON shape.
    for path in ["/assets/..%2F..%2Fetc%2Fpasswd", "/assets/no-such-file.js"] {
        let res = app.get(path).await;
        assert!(res.status().is_client_error(), "{path}: {}", res.status());
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
        assert!(!body.to_string().contains("root:"), "{path}");
    }
    // The OpenAPI document marks the at-risk list's metric as required.
    let doc = app.get_json("/openapi.json").await;
    let params = doc["paths"]["/api/v1/at-risk"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .clone();
    let metric = params.iter().find(|p| p["name"] == "metric").unwrap();
    assert_eq!(metric["required"], true, "{metric}");
    // OPTIONS names the methods the path itself takes (not those of /api/v1/query/{id}).
    let res = app
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/query/history", app.base),
        )
        .send()
        .await
        .unwrap();
    let allow = res
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        allow.contains("GET") && !allow.contains("DELETE"),
        "Allow: {allow}"
    );
    app.stop().await;
}

/// The server's side of every connection to `server_port` from one of `clients`: (state,
/// bytes queued to send), from the kernel's table.
fn server_sockets(server_port: u16, clients: &[u16]) -> Vec<(String, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port =
                |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
            let (tx, _) = cols[4].split_once(':').unwrap();
            (port(cols[1]) == server_port && clients.contains(&port(cols[2])))
                .then(|| (cols[3].to_string(), u64::from_str_radix(tx, 16).unwrap()))
        })
        .collect()
}

/// The kernel's TCP memory (all sockets), in bytes: `/proc/net/sockstat`'s pages.
fn tcp_kernel_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap();
    let line = text.lines().find(|l| l.starts_with("TCP:")).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let pages: u64 = words[words.iter().position(|w| *w == "mem").unwrap() + 1]
        .parse()
        .unwrap();
    pages * 4096
}

#[tokio::test]
async fn screens_that_stop_reading_hold_a_bounded_send_buffer_and_are_reset() {
    const CLIENTS: usize = 50;
    const SEND_BUFFER: u64 = 64 * 1024;
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let spool = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let token = "slow-admin";
    let database = format!("test_{}", uuid::Uuid::new_v4().simple());
    let _server = Server(
        common::serve_command(port, &database, spool.path(), token)
            .env("VSCC__STREAM__TICK_MS", "50")
            .env("VSCC__STREAM__SEND_TIMEOUT_MS", "3000")
            .env("VSCC__STREAM__HEARTBEAT_MS", "1000")
            .env("VSCC__STREAM__IDLE_TIMEOUT_MS", "6000")
            .env("VSCC__STREAM__SEND_BUFFER_BYTES", SEND_BUFFER.to_string())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    common::wait_ready(&http, &base).await;
    let kernel_before = tcp_kernel_bytes();
    // Screens that subscribe to every district, again and again, and never read a byte.
    let districts = [
        "440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311",
        "440399",
    ];
    let mut ports = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..CLIENTS {
        let (mut ws, client_port) = common::ws::slow_reader_at(port, token).await;
        ports.push(client_port);
        writers.push(tokio::spawn(async move {
            for round in 0..200 {
                for d in districts {
                    let msg = json!({"type": "subscribe", "id": d, "scope": d, "metrics": []});
                    if ws
                        .send(Message::Text(msg.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if round % 10 == 9 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            // Then silent: the idle rule drops what the send timeout did not.
            std::future::pending::<()>().await;
        }));
    }
    // Figures keep changing: deltas for every subscription.
    let feeder = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            for i in 0.. {
                let events = json!([{"id": format!("slow-{i}"), "kind": "appeal.received", "org": "440303001",
                    "at": "2026-11-01T09:00:00+08:00", "data": {"appeal_id": format!("S-{i}")}}]);
                let _ = http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(token)
                    .json(&events)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let (mut peak_socket, mut peak_total, mut peak_kernel) = (0u64, 0u64, 0u64);
    // Since when some connection has been seen closed with data queued (FIN_WAIT1).
    let mut lingering_since: Option<Instant> = None;
    loop {
        let sockets = server_sockets(port, &ports);
        let queued: u64 = sockets.iter().map(|(_, q)| q).sum();
        peak_total = peak_total.max(queued);
        peak_socket = peak_socket.max(sockets.iter().map(|(_, q)| *q).max().unwrap_or(0));
        peak_kernel = peak_kernel.max(tcp_kernel_bytes().saturating_sub(kernel_before));
        // FIN_WAIT1 (04) with data queued: a connection closed politely to a peer that never
        // reads holds its buffer for minutes — what a reset avoids. A reset connection passes
        // through it for the moment between its shutdown and the server closing it.
        let lingering: Vec<&(String, u64)> = sockets
            .iter()
            .filter(|(s, q)| s == "04" && *q > 0)
            .collect();
        if lingering.is_empty() {
            lingering_since = None;
        } else {
            let since = *lingering_since.get_or_insert_with(Instant::now);
            assert!(
                since.elapsed() < Duration::from_secs(3),
                "closed connections hold unsent data for 3 s: {lingering:?}"
            );
        }
        if sockets.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "{} of {CLIENTS} stalled screens still held after 40 s",
            sockets.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{CLIENTS} stalled screens: all reset after {} ms; peak queued {} KiB in all, {} KiB on one socket; kernel TCP memory +{} KiB",
        started.elapsed().as_millis(),
        peak_total / 1024,
        peak_socket / 1024,
        peak_kernel / 1024
    );
    // The kernel doubles SO_SNDBUF for its bookkeeping; what one socket queues stays near it.
    assert!(
        peak_socket <= 2 * SEND_BUFFER + 64 * 1024,
        "{peak_socket} bytes on one socket"
    );
    assert!(
        peak_socket > 0,
        "the screens never filled their buffers: the test tested nothing"
    );
    feeder.abort();
    for w in writers {
        w.abort();
    }
}
