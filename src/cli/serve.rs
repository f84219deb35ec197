//! `vscc serve` and `vscc demo`: the server, and the demo's simulated Shenzhen fed to it.

use super::*;

pub(super) async fn serve(
    mut settings: Settings,
    args: ServeArgs,
    demo: bool,
) -> anyhow::Result<()> {
    if let Some(addr) = args.addr {
        settings.server.addr = addr;
    }
    args.store.apply(&mut settings);
    if demo {
        // Unattended demo screens on this machine need no token to read figures.
        settings
            .auth
            .anonymous_role
            .get_or_insert(crate::auth::Role::Leader);
    }
    let app = Application::build(settings.clone(), true).await?;
    if demo {
        println!("admin token: {}", app.admin_token());
        let addr = &settings.server.addr;
        println!("wall screen: http://{addr}");
        println!("plan board: http://{addr}/board");
        println!("a metric's page: http://{addr}/metric/staffing_rate");
        println!("daily brief: http://{addr}/brief");
        println!(
            "督办台 (tasks): http://{addr}/tasks?token={}",
            app.admin_token()
        );
        println!(
            "duty console: http://{}/duty?token={}",
            settings.server.addr,
            app.admin_token()
        );
        println!(
            "SQL console: http://{}/sql?token={}",
            settings.server.addr,
            app.admin_token()
        );
        for (name, role, what) in DEMO_UNIT_USERS {
            println!(
                "unit workspace, {what}: http://{addr}/unit — log in as {name} / {DEMO_PASSWORD} (南园街道, {role})"
            );
        }
        tokio::spawn(demo_unit_users(
            format!("http://127.0.0.1:{}", app.port()),
            app.admin_token().to_string(),
        ));
        tokio::spawn(demo_tasks::run(
            format!("http://127.0.0.1:{}", app.port()),
            app.admin_token().to_string(),
            app.state().tree.clone(),
        ));
        tokio::spawn(demo_feed(
            format!("http://127.0.0.1:{}", app.port()),
            app.admin_token().to_string(),
            app.state().tree.clone(),
            app.state().map.clone(),
            app.state().hub.catalogue().kinds.clone(),
            app.state().streams.closing(),
        ));
    }
    app.run_until_stopped().await
}

/// The demo's logins for trying a unit's workspace: a clerk and the head of 南园街道.
const DEMO_UNIT_USERS: [(&str, &str, &str); 2] = [
    ("nanyuan-clerk", "clerk", "a clerk who reports"),
    ("nanyuan-head", "leader", "the street's head"),
];
const DEMO_PASSWORD: &str = "vscc-demo-2026";

/// Makes the demo's unit logins (once: a restarted demo finds them there) through the API,
/// as soon as the server answers.
async fn demo_unit_users(base: String, token: String) {
    let http = reqwest::Client::new();
    for (name, role, _) in DEMO_UNIT_USERS {
        for _ in 0..600 {
            let sent = http
                .post(format!("{base}/api/v1/users"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"name": name, "role": role, "scope": "440304001", "password": DEMO_PASSWORD}))
                .send()
                .await;
            match sent {
                // Made, or there from an earlier run.
                Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT => {
                    break
                }
                Ok(r) if r.status().is_client_error() => {
                    tracing::warn!(status = %r.status(), user = name, "demo login not made");
                    break;
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }
}

/// The demo's records: the simulated history since 2020 (same ids every run, so a re-run adds
/// nothing), then the simulated future, live.
async fn demo_feed(
    base: String,
    token: String,
    tree: std::sync::Arc<OrgTree>,
    map: std::sync::Arc<crate::reference::DistrictMap>,
    kinds: crate::domain::kinds::Kinds,
    mut closing: tokio::sync::watch::Receiver<Option<std::time::Duration>>,
) {
    let run = feed(
        &base,
        &token,
        &tree,
        &map,
        &kinds,
        1,
        0.05,
        crate::batch::simulator::today(),
        true,
        5,
        false,
    );
    tokio::select! {
        result = run => if let Err(e) = result {
            tracing::warn!(error = %e, "demo feed stopped");
        },
        _ = closing.wait_for(|c| c.is_some()) => {}
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn feed(
    base: &str,
    token: &str,
    tree: &OrgTree,
    map: &crate::reference::DistrictMap,
    kinds: &crate::domain::kinds::Kinds,
    seed: u64,
    scale: f64,
    until: time::Date,
    live: bool,
    rate: usize,
    progress: bool,
) -> anyhow::Result<()> {
    use crate::batch::simulator::{LivePlayer, Simulator, START};
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1/events");
    let post = |events: Vec<serde_json::Value>| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            loop {
                let res = http
                    .post(&url)
                    .bearer_auth(token)
                    .json(&events)
                    .send()
                    .await?;
                let status = res.status().as_u16();
                // Over the rate limit or the spool bound: wait as told, then send the same body
                // again (ids make the re-send safe).
                if status == 429 || status == 503 {
                    let wait = res
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(std::time::Duration::from_secs(wait.min(60))).await;
                    continue;
                }
                anyhow::ensure!(
                    res.status().is_success(),
                    "the server answered {}",
                    res.status()
                );
                return Ok::<_, anyhow::Error>(());
            }
        }
    };
    // Beyond a city (a province, the nation) the history starts on 1 January of this year:
    // each day holds as many records as the region has units, tens of times Shenzhen's.
    let first = if tree.node(tree.root()).level < crate::domain::Level::City {
        time::Date::from_calendar_date(until.year(), time::Month::January, 1).unwrap_or(START)
    } else {
        START
    };
    let mut sim = Simulator::new(tree, map, seed, scale)
        .with_kinds(kinds)
        .from_day(first);
    let days = (until - first).whole_days().max(0) as u64 + 1;
    let bar = progress.then(|| {
        let bar = indicatif::ProgressBar::new(days);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} days {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut batch = Vec::new();
    let mut sent = 0usize;
    while let Some((_, events)) = sim.next_day(until) {
        batch.extend(events);
        if let Some(b) = &bar {
            b.inc(1);
        }
        if batch.len() >= 5000 {
            sent += batch.len();
            // A region's day can hold more than a request may (a province's training plans).
            for chunk in std::mem::take(&mut batch).chunks(20_000) {
                post(chunk.to_vec()).await?;
            }
            if let Some(b) = &bar {
                b.set_message(format!("{sent} records"));
            }
        }
    }
    sent += batch.len();
    post(batch).await?;
    if let Some(b) = bar {
        b.finish_with_message(format!("{sent} records"));
    }
    tracing::info!(records = sent, "simulated history sent");
    if live {
        // Trend lines need the daily snapshots of the history just sent.
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let res = http
            .post(format!("{base}/api/v1/jobs/all"))
            .bearer_auth(token)
            .send()
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not run the snapshot job");
        }
        // The newest day's brief as a PDF, unless it was printed already (a restarted demo).
        let pdf = format!("{base}/api/v1/brief/pdf");
        let printed = http.get(&pdf).bearer_auth(token).send().await;
        if printed.is_ok_and(|r| r.status() == reqwest::StatusCode::NOT_FOUND) {
            match http.post(&pdf).bearer_auth(token).send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!("the newest day's brief is printed: {pdf}")
                }
                Ok(r) => tracing::warn!(status = %r.status(), "the brief was not printed"),
                Err(e) => tracing::warn!(error = %e, "the brief was not printed"),
            }
        }
    }
    if live {
        let mut player = LivePlayer::new(sim, time::OffsetDateTime::now_utc());
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            let events = player.next(rate, time::OffsetDateTime::now_utc());
            if let Err(e) = post(events).await {
                tracing::warn!(error = %e, "live record not accepted; retrying next second");
            }
        }
    }
    Ok(())
}

pub(super) async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
