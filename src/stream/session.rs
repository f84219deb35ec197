//! One WebSocket connection: any number of subscriptions, each a numbered message sequence.
//!
//! A session never holds more than its broadcast receiver (shared, bounded) and one message in
//! flight. A client that stops reading blocks only its own send; after `send_timeout` it is
//! dropped. A session that falls behind the broadcast ring resyncs with fresh snapshots.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{Message, MessageStream, Session};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::presence::{Presence, SubscriptionInfo};
use super::resume::{Anchor, EpochLog};
use super::Streams;
use crate::auth::{authorize, Action, Authenticator, VerifiedToken};
use crate::domain::metric::MetricId;
use crate::domain::org::NodeIdx;
use crate::domain::time::rfc3339;
use crate::live::{Hub, Position, TickChanges};

/// How far before a screen's last known position a resume elsewhere looks as well: figures
/// that move with the clock (refreshed at each minute's first tick, 250 ms apart between
/// instances) or with ledger imports (each instance polls for them every 2 s) are published
/// by each instance at a slightly different moment.
const RESUME_SLACK_MS: i64 = 10_000;

/// How often a subscription with nothing to send tells its epoch's log where its view stands.
const SEEN_EVERY_MS: i64 = 2_000;
use crate::wire::stream::{ClientMessage, Resume, ServerMessage};

#[derive(Debug, Clone, Deserialize)]
pub struct StreamSettings {
    /// Publishing tick: the maximum message rate per subscription is 1000 / tick_ms per second.
    pub tick_ms: u64,
    /// Ticks kept for resume.
    pub history_ticks: usize,
    /// Bytes the tick history may hold (estimated).
    pub history_bytes: usize,
    pub send_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub idle_timeout_ms: u64,
    /// The kernel's send buffer of a screen's connection (SO_SNDBUF; the kernel doubles it);
    /// 0: the kernel's own autotuning (up to megabytes). Bounded, a screen that stops reading
    /// fills it in seconds, is dropped by the send timeout, and costs little kernel memory.
    #[serde(default)]
    pub send_buffer_bytes: usize,
    /// Subscriptions one connection may hold at once.
    pub max_subscriptions: usize,
    pub resume_epochs_per_token: usize,
    pub resume_epochs_total: usize,
}

/// The transport under a session, for what the WebSocket layer cannot do itself.
pub trait Connection: Send + Sync {
    /// Cuts the connection now, unsent data dropped: for a peer that stopped reading, whose
    /// full send buffer would otherwise keep the connection (and its descriptor) open.
    fn abort(&self);
    /// Bounds the kernel's send buffer of the connection.
    fn bound_send_buffer(&self, bytes: usize);
    /// Bytes written and not yet taken by the peer (0 once the connection is gone).
    fn unsent(&self) -> usize;
}

pub struct SessionContext {
    pub hub: Arc<Hub>,
    pub streams: Arc<Streams>,
    pub alerts: tokio::sync::broadcast::Receiver<Arc<crate::alert::AlertNotice>>,
    pub auth: Authenticator,
    /// Verified once at the upgrade; rechecked (revocation, expiry) before every message.
    pub token: VerifiedToken,
    /// Identifies the token, for the per-token bound on resumable epochs.
    pub token_key: String,
    pub presence: Arc<Presence>,
    pub screen_id: u64,
    pub settings: StreamSettings,
    pub connection: Option<Box<dyn Connection>>,
}

struct Subscription {
    epoch: String,
    log: EpochLog,
    scope: NodeIdx,
    metrics: Vec<MetricId>,
    seq: u64,
    last_tick: u64,
    /// The position the screen's view stands at (of the last tick it was sent or had nothing
    /// to be sent): shared with the other instances, from which they can resume it.
    seen: Position,
}

impl Subscription {
    /// Its message `seq` (already counted) carrying `nodes`.
    fn delta_text(&self, sub_id: &str, at: &str, nodes: &serde_json::value::RawValue) -> String {
        ServerMessage::Delta {
            sub: sub_id,
            epoch: &self.epoch,
            seq: self.seq,
            at,
            nodes,
        }
        .to_text()
    }
}

enum Outgoing {
    Send(String),
    Close,
}

struct State {
    ctx: SessionContext,
    subs: HashMap<String, Subscription>,
    /// The metric names each subscription asked for (empty: all), looked up again when the
    /// catalogue changes.
    asked: HashMap<String, Vec<String>>,
}

impl State {
    /// The next message of `sub` if this tick changed anything it watches (and records it).
    fn delta(&self, sub_id: &str, sub: &mut Subscription, tc: &TickChanges) -> Option<String> {
        sub.last_tick = tc.tick;
        let Some(nodes) =
            self.ctx
                .streams
                .renderer
                .delta_nodes(self.ctx.hub.tree(), tc, sub.scope, &sub.metrics)
        else {
            // Nothing it watches changed: its view stands at this position too. The epoch's
            // log (what the other instances resume from) hears so every few seconds — a
            // quiet community's screen would otherwise be resumable only from its last
            // message, perhaps hours back, beyond any instance's history.
            if tc.position.when - sub.seen.when >= SEEN_EVERY_MS {
                sub.log.see(tc.position);
                sub.seen = tc.position;
            }
            return None;
        };
        sub.seen = tc.position;
        sub.seq += 1;
        sub.log.record(sub.seq, tc.tick, tc.position);
        Some(sub.delta_text(sub_id, &tc.at, &nodes))
    }

    fn snapshot(&mut self, sub_id: &str, scope: NodeIdx, metrics: Vec<MetricId>) -> String {
        let hub = &self.ctx.hub;
        let nodes = hub.tree().with_children(scope);
        let (tick, position, figures) = hub.snapshot(&nodes, &metrics);
        let epoch = Anchor::new_epoch(position);
        let log = self
            .ctx
            .streams
            .resumes
            .open(&epoch, scope, &metrics, 1, tick, position);
        let text = ServerMessage::Snapshot {
            sub: sub_id,
            epoch: &epoch,
            seq: 1,
            at: &rfc3339(hub.now()),
            nodes: crate::wire::figures::nodes(hub.tree(), figures.iter().map(|(n, f)| (*n, f))),
        }
        .to_text();
        self.replace(sub_id);
        self.subs.insert(
            sub_id.to_string(),
            Subscription {
                epoch,
                log,
                scope,
                metrics,
                seq: 1,
                last_tick: tick,
                seen: position,
            },
        );
        text
    }

    /// Replays the deltas after `resume.seq`, if the history still has them: exactly, for an
    /// epoch this instance served; else from the position the epoch was last known at.
    fn resume(
        &mut self,
        sub_id: &str,
        scope: NodeIdx,
        metrics: &[MetricId],
        resume: &Resume,
    ) -> Option<Vec<String>> {
        let hub = self.ctx.hub.clone();
        let Some(log) = self.ctx.streams.resumes.find(&resume.epoch) else {
            return self.resume_elsewhere(sub_id, scope, metrics, resume);
        };
        let ep = log.state();
        if ep.scope != scope || ep.metrics != metrics || resume.seq < ep.base_seq {
            return None;
        }
        let tick_of_seq = *ep.ticks.get((resume.seq - ep.base_seq) as usize)?;
        // Read first: with no tick to replay the screen's view stands at least here.
        let published = hub.published_position();
        let ticks = hub.history_since(tick_of_seq)?;
        log.attach();
        let mut sub = Subscription {
            epoch: resume.epoch.clone(),
            log,
            scope,
            metrics: metrics.to_vec(),
            seq: resume.seq,
            last_tick: tick_of_seq,
            seen: published,
        };
        let out = ticks
            .iter()
            .filter_map(|tc| self.delta(sub_id, &mut sub, tc))
            .collect();
        self.install(sub_id, sub);
        Some(out)
    }

    /// Resumes an epoch another instance served (or this one, before it restarted): the
    /// screen's view stood at least at the epoch's last shared position (or where it began),
    /// so one delta with everything that changed since brings it up to date, its seqs going
    /// on unbroken.
    fn resume_elsewhere(
        &mut self,
        sub_id: &str,
        scope: NodeIdx,
        metrics: &[MetricId],
        resume: &Resume,
    ) -> Option<Vec<String>> {
        let began = Anchor::parse_epoch(&resume.epoch)?;
        let anchor = self
            .ctx
            .streams
            .anchors
            .find(&resume.epoch)
            .filter(|a| a.seq <= resume.seq)
            .unwrap_or(began);
        if resume.seq < anchor.seq {
            return None;
        }
        let hub = self.ctx.hub.clone();
        let (ticks, last_tick) = hub.history_after(anchor.seen, RESUME_SLACK_MS)?;
        // Rendered for this screen alone: the merged changes are no tick of their own.
        let changed = TickChanges::merged_for(&ticks, hub.tree(), scope, metrics);
        let catch_up = match (changed.is_empty(), ticks.last()) {
            (false, Some(last)) => {
                let nodes =
                    crate::wire::figures::nodes(hub.tree(), changed.iter().map(|(n, f)| (*n, f)));
                Some((last, serde_json::value::to_raw_value(&nodes).ok()?))
            }
            _ => None,
        };
        // The log starts at the last message this screen has: the catch-up delta if there is
        // one (a client that loses that too starts over), else the one it resumed from.
        let seq = resume.seq + u64::from(catch_up.is_some());
        let seen = ticks.last().map_or(anchor.seen, |t| t.position);
        let log =
            self.ctx
                .streams
                .resumes
                .open(&resume.epoch, scope, metrics, seq, last_tick, seen);
        let sub = Subscription {
            epoch: resume.epoch.clone(),
            log,
            scope,
            metrics: metrics.to_vec(),
            seq,
            last_tick,
            seen,
        };
        let out = catch_up
            .map(|(last, nodes)| sub.delta_text(sub_id, &last.at, &nodes))
            .into_iter()
            .collect();
        tracing::debug!(
            epoch = %resume.epoch,
            seq = resume.seq,
            ticks = ticks.len(),
            "resumed a screen another instance served"
        );
        self.install(sub_id, sub);
        Some(out)
    }

    /// Puts a resumed subscription in place (the one it replaces is forgotten unless it is
    /// the same epoch).
    fn install(&mut self, sub_id: &str, sub: Subscription) {
        if self
            .subs
            .get(sub_id)
            .is_none_or(|old| old.epoch != sub.epoch)
        {
            self.replace(sub_id);
        }
        self.subs.insert(sub_id.to_string(), sub);
    }

    /// A subscription is re-sent or withdrawn: its old epoch can no longer be resumed by
    /// anyone, so it is forgotten now rather than kept for ten minutes.
    fn replace(&mut self, sub_id: &str) {
        if let Some(old) = self.subs.remove(sub_id) {
            self.ctx.streams.resumes.close(&old.epoch);
        }
    }

    fn error(sub: Option<&str>, reason: impl AsRef<str>) -> String {
        ServerMessage::Error {
            sub,
            reason: reason.as_ref(),
        }
        .to_text()
    }

    fn handle_client(&mut self, text: &str) -> Vec<Outgoing> {
        // The token is checked again at every message: a revoked token stops here.
        let who = match self.ctx.auth.recheck(&self.ctx.token) {
            Ok(p) => p,
            Err(e) => {
                return vec![
                    Outgoing::Send(Self::error(None, e.to_string())),
                    Outgoing::Close,
                ]
            }
        };
        let msg: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                return vec![Outgoing::Send(Self::error(
                    None,
                    format!("bad message: {e}"),
                ))]
            }
        };
        match msg {
            ClientMessage::Unsubscribe { id } => {
                self.replace(&id);
                self.asked.remove(&id);
                self.update_presence();
                Vec::new()
            }
            ClientMessage::Subscribe {
                id,
                scope,
                metrics,
                resume,
            } => {
                let limit = self.ctx.settings.max_subscriptions;
                if !self.subs.contains_key(&id) && self.subs.len() >= limit {
                    return vec![Outgoing::Send(Self::error(
                        Some(&id),
                        format!(
                            "at most {limit} subscriptions per connection; unsubscribe one first"
                        ),
                    ))];
                }
                let tree = self.ctx.hub.tree().clone();
                let Some(node) = tree.get(&scope) else {
                    return vec![Outgoing::Send(Self::error(
                        Some(&id),
                        format!("unknown scope {scope}"),
                    ))];
                };
                if let Err(e) = authorize(&tree, &who, Action::ReadFigures, node) {
                    return vec![Outgoing::Send(Self::error(Some(&id), e.to_string()))];
                }
                let resolved = self.ctx.hub.catalogue().resolve(&metrics);
                let asked = metrics;
                let metrics = match resolved {
                    Ok(m) => m,
                    Err(e) => return vec![Outgoing::Send(Self::error(Some(&id), e))],
                };
                self.asked.insert(id.clone(), asked);
                let out = match resume.and_then(|r| self.resume(&id, node, &metrics, &r)) {
                    Some(replayed) => replayed.into_iter().map(Outgoing::Send).collect(),
                    None => vec![Outgoing::Send(self.snapshot(&id, node, metrics))],
                };
                self.update_presence();
                out
            }
        }
    }

    fn on_tick(&mut self, tc: &TickChanges) -> Vec<Outgoing> {
        if self.subs.is_empty() {
            return Vec::new();
        }
        // An expired or revoked token gets no further figures: checked before every message
        // the server sends, as at every message the client sends.
        if let Err(e) = self.ctx.auth.recheck(&self.ctx.token) {
            return vec![
                Outgoing::Send(Self::error(None, e.to_string())),
                Outgoing::Close,
            ];
        }
        if tc.restart {
            return self.resync();
        }
        let mut subs = std::mem::take(&mut self.subs);
        let out = subs
            .iter_mut()
            .filter(|(_, sub)| tc.tick > sub.last_tick)
            .filter_map(|(id, sub)| self.delta(id, sub, tc).map(Outgoing::Send))
            .collect();
        self.subs = subs;
        out
    }

    /// Alert notices go to every connection whose token's scope holds the alert's node.
    fn on_alert(&self, n: &crate::alert::AlertNotice) -> Vec<Outgoing> {
        match self.ctx.auth.recheck(&self.ctx.token) {
            Ok(who) if self.ctx.hub.tree().is_within(n.node_idx, who.scope) => {
                let notice = crate::wire::alerts::AlertNotice::from(n);
                vec![Outgoing::Send(ServerMessage::Alert(&notice).to_text())]
            }
            _ => Vec::new(),
        }
    }

    /// Task steps go to every connection whose token's scope holds the unit.
    fn on_task(&self, n: &crate::live::tasks::StepNotice) -> Vec<Outgoing> {
        match self.ctx.auth.recheck(&self.ctx.token) {
            Ok(who) if self.ctx.hub.tree().is_within(n.org_idx, who.scope) => {
                vec![Outgoing::Send(ServerMessage::Task(n).to_text())]
            }
            _ => Vec::new(),
        }
    }

    /// Every subscription starts over with a snapshot: after falling behind the broadcast
    /// ring, or when the catalogue changed — so each one's metrics are looked up again (one no
    /// longer defined is dropped; "all" takes in new ones).
    fn resync(&mut self) -> Vec<Outgoing> {
        let catalogue = self.ctx.hub.catalogue();
        let subs: Vec<(String, NodeIdx, Vec<MetricId>)> = self
            .subs
            .iter()
            .map(|(id, s)| {
                let metrics = match self.asked.get(id).filter(|a| !a.is_empty()) {
                    None => catalogue.all(),
                    Some(names) => names
                        .iter()
                        .filter_map(|m| catalogue.parse_name(m))
                        .collect(),
                };
                (id.clone(), s.scope, metrics)
            })
            .collect();
        let out = subs
            .into_iter()
            .map(|(id, scope, metrics)| Outgoing::Send(self.snapshot(&id, scope, metrics)))
            .collect();
        self.update_presence();
        out
    }

    fn update_presence(&self) {
        let tree = self.ctx.hub.tree();
        let subs = self
            .subs
            .iter()
            .map(|(id, s)| {
                let info = SubscriptionInfo {
                    id: id.clone(),
                    scope: tree.node(s.scope).code.clone(),
                    metrics: s.metrics.iter().map(|m| m.as_str().to_string()).collect(),
                };
                (info, s.scope)
            })
            .collect();
        self.ctx
            .presence
            .set_subscriptions(self.ctx.screen_id, subs);
    }
}

enum Sent {
    All,
    /// The session is closed (by the peer, or a message asked to close).
    Closed,
    /// The peer did not take a message within the send timeout.
    TimedOut,
}

async fn send_all(session: &mut Session, out: Vec<Outgoing>, timeout: Duration) -> Sent {
    for o in out {
        match o {
            Outgoing::Send(text) => match tokio::time::timeout(timeout, session.text(text)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Sent::Closed,
                Err(_) => return Sent::TimedOut,
            },
            Outgoing::Close => return Sent::Closed,
        }
    }
    Sent::All
}

/// Serves one connection until it closes, stops answering, or stops reading.
pub async fn run_session(mut session: Session, mut messages: MessageStream, ctx: SessionContext) {
    let mut rx = ctx.hub.subscribe();
    let mut closing = ctx.streams.closing();
    let _open = ctx.streams.session_opened();
    let mut alerts = ctx.alerts.resubscribe();
    let mut task_steps = ctx.hub.tasks().subscribe();
    let send_timeout = Duration::from_millis(ctx.settings.send_timeout_ms);
    let idle_timeout = Duration::from_millis(ctx.settings.idle_timeout_ms);
    let mut heartbeat = tokio::time::interval(Duration::from_millis(ctx.settings.heartbeat_ms));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let presence = ctx.presence.clone();
    let screen_id = ctx.screen_id;
    let mut state = State {
        ctx,
        subs: HashMap::new(),
        asked: HashMap::new(),
    };
    let mut last_heard = Instant::now();
    // Set when the peer stopped reading (a send or a ping timed out): its connection is cut.
    let mut stuck = false;
    // Shutdown: the moment this session closes (a random point in the drain window), and
    // whether it came.
    let mut drain_at: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut restarting = false;
    loop {
        let out = tokio::select! {
            msg = messages.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(text))) => state.handle_client(&text),
                    Some(Ok(Message::Ping(p))) => {
                        if session.pong(&p).await.is_err() { break; }
                        Vec::new()
                    }
                    Some(Ok(Message::Pong(_))) | Some(Ok(Message::Binary(_))) | Some(Ok(Message::Nop)) => Vec::new(),
                    Some(Ok(Message::Continuation(_))) => Vec::new(),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                }
            }
            tick = rx.recv() => match tick {
                Ok(tc) => state.on_tick(&tc),
                Err(RecvError::Lagged(_)) => state.resync(),
                Err(RecvError::Closed) => break,
            },
            notice = alerts.recv() => match notice {
                Ok(n) => state.on_alert(&n),
                Err(RecvError::Lagged(_)) => Vec::new(),
                Err(RecvError::Closed) => Vec::new(),
            },
            step = task_steps.recv() => match step {
                Ok(n) => state.on_task(&n),
                Err(RecvError::Lagged(_)) => Vec::new(),
                Err(RecvError::Closed) => Vec::new(),
            },
            spread = closing.wait_for(|c| c.is_some()), if drain_at.is_none() => {
                let spread = spread.ok().and_then(|s| *s).unwrap_or_default();
                let delay = spread.mul_f64(rand::random::<f64>());
                drain_at = Some(Box::pin(tokio::time::sleep(delay)));
                Vec::new()
            }
            _ = async { if let Some(d) = drain_at.as_mut() { d.await } }, if drain_at.is_some() => {
                restarting = true;
                break;
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > idle_timeout {
                    // Silent this long: a peer gone, or one that stopped reading (it does not
                    // answer pings either). Reset, like any screen dropped for not reading:
                    // a graceful close would leave its unsent data in the kernel.
                    stuck = true;
                    break;
                }
                match tokio::time::timeout(send_timeout, session.ping(b"")).await {
                    Ok(Ok(())) => Vec::new(),
                    Ok(Err(_)) => break,
                    Err(_) => {
                        stuck = true;
                        break;
                    }
                }
            }
        };
        match send_all(&mut session, out, send_timeout).await {
            Sent::All => {}
            Sent::Closed => break,
            Sent::TimedOut => {
                stuck = true;
                break;
            }
        }
    }
    presence.leave(screen_id);
    let epochs: Vec<String> = state.subs.drain().map(|(_, s)| s.epoch).collect();
    state
        .ctx
        .streams
        .resumes
        .detach(&state.ctx.token_key, epochs);
    if stuck {
        tracing::info!(
            screen = screen_id,
            "a screen stopped reading (or went silent): its connection is reset"
        );
        if let Some(connection) = &state.ctx.connection {
            connection.abort();
        }
        return;
    }
    // A peer that does not take what is queued would keep the connection, and its buffer, in
    // the kernel long after a polite close: it gets a second to drain, then a reset.
    if let Some(connection) = &state.ctx.connection {
        let deadline = Instant::now() + Duration::from_secs(1);
        while connection.unsent() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if connection.unsent() > 0 {
            tracing::info!(
                screen = screen_id,
                "a closing screen does not take its data: its connection is reset"
            );
            connection.abort();
            return;
        }
    }
    let reason = if restarting {
        // 1012: the server restarts; the screen reconnects (with jitter) and resumes.
        actix_ws::CloseReason {
            code: actix_ws::CloseCode::Restart,
            description: Some("server restarting".into()),
        }
    } else {
        actix_ws::CloseReason {
            code: actix_ws::CloseCode::Away,
            description: None,
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), session.close(Some(reason))).await;
}
