//! `vscc bench stalled`: screens that subscribe and then never read. What they cost the
//! kernel — with the screens' send buffer bounded (`stream.send_buffer_bytes`, the default)
//! and, in the same run, left to the kernel's autotuning (the baseline) — and how soon the
//! server lets go of them.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::{BenchEnv, ServerChild};
use crate::config::Settings;

pub struct StalledBench {
    pub clients: usize,
    pub seconds: u64,
}

/// One configuration's figures.
struct Outcome {
    label: String,
    peak_kernel: u64,
    peak_queued: u64,
    peak_socket: u64,
    released_after: Option<Duration>,
    held_closed: usize,
}

/// The kernel's TCP memory (all sockets), bytes.
fn tcp_kernel_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.iter()
                .position(|x| *x == "mem")
                .and_then(|i| w.get(i + 1))
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 4096
}

/// The server's side of connections to `port` from clients (not its listener): (state, bytes
/// queued to send).
fn server_sockets(port: u16) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 5 {
                continue;
            }
            let local = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local != Some(port) || cols[3] == "0A" {
                continue;
            }
            let tx = cols[4]
                .split(':')
                .next()
                .and_then(|q| u64::from_str_radix(q, 16).ok())
                .unwrap_or(0);
            out.push((cols[3].to_string(), tx));
        }
    }
    out
}

async fn stalled_client(
    port: u16,
    token: &str,
) -> anyhow::Result<impl SinkExt<Message> + Unpin + use<>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let stream = socket.connect(format!("127.0.0.1:{port}").parse()?).await?;
    let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::client_async(req, stream).await?;
    Ok(ws)
}

async fn one(env: &BenchEnv, opts: &StalledBench, send_buffer: usize) -> anyhow::Result<Outcome> {
    let database = format!("bench_stalled_{send_buffer}");
    let server = ServerChild::spawn(
        env,
        &database,
        &[
            ("VSCC__STREAM__SEND_BUFFER_BYTES", send_buffer.to_string()),
            ("VSCC__STREAM__TICK_MS", "250".into()),
        ],
    )
    .await?;
    let kernel_before = tcp_kernel_bytes();
    let districts = [
        "440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311",
        "440399",
    ];
    let bar = indicatif::ProgressBar::new(opts.clients as u64);
    bar.set_message(format!("send buffer {send_buffer}: connecting"));
    let mut clients = Vec::with_capacity(opts.clients);
    for chunk in (0..opts.clients).collect::<Vec<_>>().chunks(200) {
        let opened = futures_util::future::join_all(
            chunk
                .iter()
                .map(|_| stalled_client(server.port, &server.token)),
        )
        .await;
        for ws in opened {
            let mut ws = ws?;
            // Every district, then never a byte read.
            for d in districts {
                let msg =
                    serde_json::json!({"type": "subscribe", "id": d, "scope": d, "metrics": []});
                let _ = ws.send(Message::Text(msg.to_string().into())).await;
            }
            clients.push(ws);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    // Figures keep changing: deltas for every subscription.
    let feeder = {
        let (base, token) = (server.base.clone(), server.token.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0u64.. {
                const ORGS: [&str; 5] = [
                    "440303001",
                    "440304001",
                    "440305001",
                    "440306001",
                    "440307001",
                ];
                let events: Vec<_> = (0..50)
                    .map(|j| serde_json::json!({"id": format!("st-{i}-{j}"), "kind": "appeal.received",
                        "org": ORGS[j % 5],
                        "at": "2026-11-01T09:00:00+08:00", "data": {"appeal_id": format!("ST-{i}-{j}")}}))
                    .collect();
                let _ = http
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&token)
                    .json(&events)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let (mut peak_kernel, mut peak_queued, mut peak_socket) = (0u64, 0u64, 0u64);
    let mut released_after = None;
    let mut held_closed = 0;
    while started.elapsed() < Duration::from_secs(opts.seconds) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sockets = server_sockets(server.port);
        peak_kernel = peak_kernel.max(tcp_kernel_bytes().saturating_sub(kernel_before));
        peak_queued = peak_queued.max(sockets.iter().map(|(_, q)| q).sum());
        peak_socket = peak_socket.max(sockets.iter().map(|(_, q)| *q).max().unwrap_or(0));
        // FIN_WAIT1/CLOSING/LAST_ACK with data queued: closed, yet held for a peer that never reads.
        held_closed = held_closed.max(
            sockets
                .iter()
                .filter(|(s, q)| matches!(s.as_str(), "04" | "0B" | "09") && *q > 0)
                .count(),
        );
        // Only the feeder's own connections left.
        if released_after.is_none() && sockets.len() < 5 {
            released_after = Some(started.elapsed());
        }
    }
    feeder.abort();
    drop(clients);
    server.stop().await;
    Ok(Outcome {
        label: if send_buffer == 0 {
            "autotuned (baseline)".into()
        } else {
            format!("bounded to {} KiB", send_buffer / 1024)
        },
        peak_kernel,
        peak_queued,
        peak_socket,
        released_after,
        held_closed,
    })
}

pub async fn run(settings: &Settings, opts: StalledBench) -> anyhow::Result<()> {
    super::raise_fd_limit(opts.clients as u64 + 2_000);
    let env = BenchEnv::start(settings, "stalled").await?;
    let bounded = one(&env, &opts, settings.stream.send_buffer_bytes.max(1)).await;
    let baseline = one(&env, &opts, 0).await;
    env.stop().await;
    let (bounded, baseline) = (bounded?, baseline?);
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "vscc bench stalled --clients {} --seconds {}: screens subscribed to every district that never read, records arriving",
        opts.clients, opts.seconds
    );
    println!(
        "{:<24} {:>16} {:>14} {:>16} {:>14} {:>22}",
        "send buffer",
        "kernel TCP peak",
        "per screen",
        "server queued",
        "one socket",
        "all let go after"
    );
    for o in [&bounded, &baseline] {
        println!(
            "{:<24} {:>12.1} MiB {:>10.1} KiB {:>12.1} MiB {:>10.1} KiB {:>22}",
            o.label,
            mib(o.peak_kernel),
            o.peak_kernel as f64 / 1024.0 / opts.clients as f64,
            mib(o.peak_queued),
            o.peak_socket as f64 / 1024.0,
            o.released_after
                .map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| format!("not within {} s", opts.seconds)),
        );
        if o.held_closed > 0 {
            println!(
                "  {} closed connections still held unsent data",
                o.held_closed
            );
        }
    }
    if baseline.peak_kernel > 0 {
        println!(
            "bounded ÷ autotuned kernel memory: {:.2}×",
            bounded.peak_kernel as f64 / baseline.peak_kernel as f64
        );
    }
    Ok(())
}
