//! The alert engine: evaluates the rules against the live figures, moves each (rule, node)
//! instance through pending → firing → resolved, records every change in ClickHouse and
//! notifies the duty stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use super::lifecycle::{step, Current, Observation, Policy};
use super::notice::AlertNotice;
use super::observe::{observe, Observed};
use super::rules::{load_rules, Condition, Rule, Severity};
use crate::domain::catalogue::Catalogue;
use crate::domain::org::NodeIdx;
use crate::domain::time::rfc3339;
use crate::live::Hub;
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Deserialize)]
pub struct AlertSettings {
    pub rules_dir: PathBuf,
    /// How often rules are evaluated; 0 = only when asked (tests drive the clock themselves).
    pub eval_interval_ms: u64,
    /// A firing, unacknowledged alert is notified again after this long.
    pub repeat_minutes: u64,
    /// First retry delay of a failed webhook delivery (doubles up to 60 s).
    pub delivery_backoff_ms: u64,
}

/// The state of an alert that exists (pending, firing, or without data).
pub type AlertState = super::lifecycle::Phase;

#[derive(Debug, Clone)]
pub struct Ack {
    pub by: String,
    pub at: String,
    pub comment: String,
}

#[derive(Debug, Clone)]
pub struct AlertInstance {
    pub fingerprint: String,
    pub rule: String,
    pub node: String,
    pub node_name: String,
    pub state: AlertState,
    pub severity: Severity,
    pub value: Option<f64>,
    pub summary: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// When it entered its state (RFC 3339).
    pub since: String,
    pub ack: Option<Ack>,
    since_unix: i64,
    /// When the breach began (Unix seconds): from the data where it dates it (an overdue
    /// case's deadline, a missed deadline, the start of a silence), else when this episode
    /// was first seen — which survives a restart through the alert history.
    pub breach_since: i64,
    /// Cases: the age in days of the oldest open case.
    pub case_age_days: Option<i64>,
    /// The figure's status, for a rule that reads a metric.
    pub status: Option<crate::domain::metric::Status>,
    /// Whether the breach's start has been dated from the data (the records, or the daily
    /// snapshots, which are looked at once) — else it is when the engine first saw it.
    pub dated: bool,
    pub node_idx: NodeIdx,
    /// Roster levels notified: 0 = the node's own duty officer, 1 = the next one up, …
    pub escalation: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, clickhouse::Row)]
pub struct AlertEventRow {
    pub at: u32,
    pub fingerprint: String,
    pub rule: String,
    pub node: String,
    pub state: String,
    pub severity: String,
    pub value: Option<f64>,
    pub summary: String,
    pub actor: String,
    pub comment: String,
}

pub struct AlertEngine {
    hub: Arc<Hub>,
    store: Store,
    settings: AlertSettings,
    rules: RwLock<Vec<Rule>>,
    rules_error: RwLock<Option<String>>,
    rules_mtime: Mutex<Option<std::time::SystemTime>>,
    instances: Mutex<HashMap<String, AlertInstance>>,
    /// When each fingerprint was last notified as firing — kept after it resolves, so a
    /// flapping condition does not notify again inside the repeat interval.
    last_notified: Mutex<HashMap<String, i64>>,
    tx: broadcast::Sender<Arc<AlertNotice>>,
    roster: super::delivery::SharedRoster,
    deliverer: super::delivery::Deliverer,
    silences: RwLock<Vec<super::silence::Silence>>,
}

/// A rule's value as the pages and summaries say it: a share in per cent, else a whole number.
pub fn format_value(rule: &Rule, catalogue: &Catalogue, value: Option<f64>) -> String {
    match (value, rule.condition.metric()) {
        (None, _) => "—".into(),
        (Some(v), Some(m)) if catalogue.get(m).is_some_and(|d| d.is_ratio()) => {
            format!("{:.1}%", v * 100.0)
        }
        (Some(v), _) => format!("{}", v.round() as i64),
    }
}

/// The area a node lies in — the root's child above it (Shenzhen's districts, a province's
/// cities, the nation's provinces), or the root itself for the root's own alerts: what alerts
/// are grouped and named by, so that a province's duty officers see a group per city, not
/// one per county.
pub fn district_of(tree: &crate::domain::OrgTree, node: NodeIdx) -> NodeIdx {
    tree.child_toward(tree.root(), node).unwrap_or(node)
}

/// The `{status}` of a rule's summary: how the figure stands, in the pages' words.
fn status_zh(status: Option<crate::domain::metric::Status>) -> &'static str {
    use crate::domain::metric::Status;
    match status {
        Some(Status::Missed) => "未达标",
        Some(Status::AtRisk) => "有风险",
        Some(Status::Met) => "已达标",
        Some(Status::OnTrack) => "进度正常",
        Some(Status::Tracked) => "跟踪",
        Some(Status::NoData) | None => "",
    }
}

/// The `{target}` of a rule's summary.
fn target_of(rule: &Rule) -> Option<f64> {
    match rule.condition {
        Condition::Threshold { value, .. } => Some(value),
        _ => None,
    }
}

impl AlertEngine {
    pub fn new(hub: Arc<Hub>, store: Store, settings: AlertSettings) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let store_for_delivery = store.clone();
        let delivery_backoff = settings.delivery_backoff_ms.max(1);
        let engine = AlertEngine {
            hub,
            store,
            settings,
            rules: RwLock::new(Vec::new()),
            rules_error: RwLock::new(None),
            rules_mtime: Mutex::new(None),
            instances: Mutex::new(HashMap::new()),
            last_notified: Mutex::new(HashMap::new()),
            tx,
            roster: Default::default(),
            silences: RwLock::new(Vec::new()),
            deliverer: super::delivery::Deliverer::start(
                store_for_delivery,
                Duration::from_millis(delivery_backoff),
            ),
        };
        engine.reload_rules();
        engine
    }

    /// Reads the rules again even if no file changed (the metric catalogue did).
    pub fn revalidate_rules(&self) -> Option<String> {
        *self.rules_mtime.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.reload_rules()
    }

    /// Re-reads the rule files when any changed; a broken set is reported and the previous
    /// rules stay. Returns the error of the newest attempt, if any.
    pub fn reload_rules(&self) -> Option<String> {
        let newest = std::fs::read_dir(&self.settings.rules_dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().and_then(|m| m.modified()).ok())
            .max();
        {
            let mut seen = self.rules_mtime.lock().unwrap_or_else(|p| p.into_inner());
            if newest.is_some() && *seen == newest {
                return self
                    .rules_error
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
            }
            *seen = newest;
        }
        let roster = super::delivery::Roster::load(
            &self.settings.rules_dir.join("oncall.toml"),
            self.hub.tree(),
        );
        let rules = load_rules(
            &self.settings.rules_dir,
            self.hub.tree(),
            &self.hub.catalogue(),
        );
        match rules.and_then(|r| roster.map(|ro| (r, ro))) {
            Ok((rules, roster)) => {
                *self.roster.write().unwrap_or_else(|p| p.into_inner()) = roster;
                tracing::info!(rules = rules.len(), "alert rules loaded");
                *self.rules.write().unwrap_or_else(|p| p.into_inner()) = rules;
                *self.rules_error.write().unwrap_or_else(|p| p.into_inner()) = None;
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "alert rules refused; the previous rules stay");
                *self.rules_error.write().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Some(e)
            }
        }
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn rules_error(&self) -> Option<String> {
        self.rules_error
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Recorded changes and notifications at nodes of `scope`'s subtree, newest first.
    pub async fn history(&self, scope: &str, limit: u64) -> Result<Vec<AlertEventRow>, StoreError> {
        Ok(self
            .store
            .client()
            .query(
                "SELECT ?fields FROM alert_events \
                 WHERE node IN (SELECT code FROM org_nodes WHERE has(ancestors, ?)) \
                 ORDER BY at DESC LIMIT ?",
            )
            .bind(scope)
            .bind(limit)
            .with_setting("wait_end_of_query", "1")
            .fetch_all()
            .await?)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AlertNotice>> {
        self.tx.subscribe()
    }

    /// Current pending, firing and no-data instances.
    pub fn current(&self) -> Vec<AlertInstance> {
        let mut v: Vec<_> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        v
    }

    /// Evaluates every rule at `now`; records and notifies the changes. Returns them.
    pub async fn evaluate(&self, now: OffsetDateTime) -> Result<Vec<AlertEventRow>, StoreError> {
        let rules = self.rules();
        let tree = self.hub.tree().clone();
        let now_unix = now.unix_timestamp();
        let observed: Vec<(usize, NodeIdx, Observed, String)> = self.hub.read(now, |agg| {
            let mut out = Vec::new();
            for (ri, rule) in rules.iter().enumerate() {
                let scope = rule
                    .scope
                    .as_deref()
                    .and_then(|c| tree.get(c))
                    .unwrap_or(tree.root());
                for node in tree.subtree(scope) {
                    if !rule.levels.contains(&tree.node(node).level) {
                        continue;
                    }
                    if let Some(o) = observe(rule, agg, node, now) {
                        let detail =
                            if matches!(o.observation, super::lifecycle::Observation::Holds(_)) {
                                super::observe::detail(rule, agg, node, now)
                            } else {
                                String::new()
                            };
                        out.push((ri, node, o, detail));
                    }
                }
            }
            out
        });

        let repeat = self.settings.repeat_minutes as i64 * 60;
        let silences: Vec<super::silence::Silence> = self
            .silences
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| s.is_active(now))
            .cloned()
            .collect();
        let escalate_after = self
            .roster
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|r| r.escalate_after().as_secs() as i64);
        let mut events = Vec::new();
        let mut notices = Vec::new();
        // (notice, roster levels to deliver it to)
        let mut deliveries: Vec<(AlertNotice, Vec<u8>)> = Vec::new();
        {
            let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
            let mut notified = self.last_notified.lock().unwrap_or_else(|p| p.into_inner());
            let catalogue = self.hub.catalogue();
            for (ri, node, seen, detail) in observed {
                let rule = &rules[ri];
                let observed = seen.observation;
                let code = tree.node(node).code.clone();
                let fp = format!("{}/{}", rule.name, code);
                let value = observed.value();
                let summary = rule
                    .summary
                    .replace("{node}", &tree.node(node).name)
                    .replace("{value}", &format_value(rule, &catalogue, value))
                    .replace("{target}", &format_value(rule, &catalogue, target_of(rule)))
                    .replace("{status}", status_zh(seen.status))
                    .replace("{detail}", &detail);
                // The breach's start: the data's date (the records', else one the snapshots gave
                // before), else when this episode was first seen.
                let known = instances.get(&fp);
                let dated_before = known.filter(|i| i.dated).map(|i| i.breach_since);
                let began = seen.began.or(dated_before);
                let dated = began.is_some();
                let breach_since = began
                    .or_else(|| known.map(|i| i.breach_since))
                    .unwrap_or(now_unix)
                    .min(now_unix);
                let severity =
                    rule.severity_for(value, Some((now_unix - breach_since).max(0) / 86_400));
                // A resolution is recorded with the text as it fired, and its own value.
                let fired_summary = instances.get(&fp).map(|i| i.summary.clone());
                let policy = Policy {
                    hold_for: rule.hold_for.as_secs() as i64,
                    repeat,
                    escalate_after,
                    silenced: silences
                        .iter()
                        .any(|s| s.matches(&tree, &rule.name, node, rule.severity)),
                };
                let previous = instances.get(&fp).map(|i| Current {
                    phase: i.state,
                    since: i.since_unix,
                    acknowledged: i.ack.is_some(),
                    escalation: i.escalation,
                });
                let t = step(
                    previous,
                    observed,
                    policy,
                    notified.get(&fp).copied(),
                    now_unix,
                    began,
                );
                if t.notified {
                    notified.insert(fp.clone(), now_unix);
                }
                match t.next {
                    None => {
                        instances.remove(&fp);
                    }
                    Some(next) if t.started || !instances.contains_key(&fp) => {
                        instances.insert(
                            fp.clone(),
                            AlertInstance {
                                fingerprint: fp.clone(),
                                rule: rule.name.clone(),
                                node: code.clone(),
                                node_name: tree.node(node).name.clone(),
                                state: next.phase,
                                severity,
                                value,
                                summary: summary.clone(),
                                labels: rule.labels.clone(),
                                since: rfc3339(now),
                                ack: None,
                                since_unix: next.since,
                                breach_since,
                                case_age_days: seen.case_age_days,
                                status: seen.status,
                                dated,
                                node_idx: node,
                                escalation: next.escalation,
                            },
                        );
                    }
                    Some(next) => {
                        if let Some(inst) = instances.get_mut(&fp) {
                            if matches!(observed, Observation::Holds(_)) {
                                inst.value = value;
                                inst.summary = summary.clone();
                                inst.severity = severity;
                                inst.breach_since = breach_since;
                                inst.dated = dated;
                                inst.case_age_days = seen.case_age_days;
                                inst.status = seen.status;
                            }
                            if inst.since_unix != next.since {
                                inst.since = rfc3339(now);
                                inst.since_unix = next.since;
                            }
                            inst.state = next.phase;
                            inst.escalation = next.escalation;
                        }
                    }
                }
                let text = |state: &str| match (state, &fired_summary) {
                    ("resolved" | "inactive", Some(fired)) => fired.clone(),
                    _ => summary.clone(),
                };
                let event = |state: &str| AlertEventRow {
                    at: now_unix.max(0) as u32,
                    fingerprint: fp.clone(),
                    rule: rule.name.clone(),
                    node: code.clone(),
                    state: state.into(),
                    severity: severity.as_str().into(),
                    value,
                    summary: text(state),
                    actor: String::new(),
                    comment: String::new(),
                };
                let area = district_of(&tree, node);
                let notice = |state: &str| AlertNotice {
                    state: state.into(),
                    fingerprint: fp.clone(),
                    rule: rule.name.clone(),
                    node: code.clone(),
                    node_name: tree.node(node).name.clone(),
                    district: tree.node(area).code.clone(),
                    district_name: tree.node(area).name.clone(),
                    severity,
                    summary: text(state),
                    value,
                    at: rfc3339(now),
                    breach_since,
                    node_idx: node,
                };
                events.extend(t.events.iter().map(|e| event(e.as_str())));
                notices.extend(t.broadcast.map(notice));
                deliveries.extend(
                    t.deliveries
                        .into_iter()
                        .map(|(state, levels)| (notice(state), levels)),
                );
            }
        }
        self.record(&events).await?;
        if let Err(e) = self.date_from_snapshots(&rules).await {
            tracing::warn!(error = %e, "could not date breaches from the snapshots");
        }
        for n in notices {
            let _ = self.tx.send(Arc::new(n));
        }
        self.deliver(deliveries).await?;
        Ok(events)
    }

    /// Dates the breaches of metric rules that the live figures cannot date from the daily
    /// snapshots: the breach began the day after the last snapshot where the rule's condition
    /// did not hold (an at-risk rule: the status was neither at risk nor missed; a threshold
    /// rule: the value was on the right side of its line), or on the first snapshot when it
    /// held on every one. A breach that began after the newest snapshot keeps the time the
    /// engine first saw it. Each alert is dated once.
    async fn date_from_snapshots(&self, rules: &[Rule]) -> Result<(), StoreError> {
        use super::rules::Op;
        // (rule index) → [(fingerprint, "node/metric")]
        let mut wanted: std::collections::BTreeMap<usize, Vec<(String, String)>> =
            Default::default();
        {
            let instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
            for inst in instances.values().filter(|i| !i.dated) {
                let Some(ri) = rules.iter().position(|r| r.name == inst.rule) else {
                    continue;
                };
                let Some(metric) = rules[ri].condition.metric() else {
                    continue;
                };
                if matches!(rules[ri].condition, Condition::Overdue { .. }) {
                    continue;
                }
                wanted.entry(ri).or_default().push((
                    inst.fingerprint.clone(),
                    format!("{}/{}", inst.node, metric),
                ));
            }
        }
        for (ri, keys) in wanted {
            let rule = &rules[ri];
            // The condition held on a snapshot: the rule's own, written from its definition
            // (never from input).
            let held = match &rule.condition {
                Condition::AtRisk { .. } => "status IN ('at_risk', 'missed')".to_string(),
                Condition::Threshold { op, value, .. } => {
                    let op = match op {
                        Op::Lt => "<",
                        Op::Le => "<=",
                        Op::Gt => ">",
                        Op::Ge => ">=",
                    };
                    format!("isNotNull(value) AND assumeNotNull(value) {op} {value:?}")
                }
                _ => continue,
            };
            let nodes: Vec<&str> = keys
                .iter()
                .filter_map(|(_, k)| k.split('/').next())
                .collect();
            let metric = rule.condition.metric().map(|m| m.as_str()).unwrap_or("");
            let rows: Vec<(String, u16, u16, u16)> = self
                .store
                .client()
                .query(&format!(
                    "SELECT concat(node, '/', metric), toUInt16(maxIf(day, NOT ({held}))), \
                     toUInt16(min(day)), toUInt16(max(day)) FROM metric_snapshots FINAL \
                     WHERE metric IN {} AND node IN {} GROUP BY node, metric",
                    crate::batch::snapshots::in_list(&[metric])?,
                    crate::batch::snapshots::in_list(&nodes)?
                ))
                .with_setting("wait_end_of_query", "1")
                .fetch_all()
                .await?;
            let day_start = |day: u16| {
                time::Date::from_julian_day(2_440_588 + i32::from(day))
                    .ok()
                    .map(|d| {
                        d.midnight()
                            .assume_offset(crate::domain::time::SHANGHAI)
                            .unix_timestamp()
                    })
            };
            let floor = breach_floor(rule, &self.hub.catalogue(), self.hub.now());
            let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
            for (fp, key) in &keys {
                let Some(inst) = instances.get_mut(fp) else {
                    continue;
                };
                inst.dated = true;
                let Some((_, ok_day, first, last)) = rows.iter().find(|r| &r.0 == key) else {
                    continue;
                };
                let began = if *ok_day == 0 && *first > 0 {
                    // Held on every snapshot: since the first (ok_day 0 is "never" — the
                    // snapshots start long after 1970).
                    day_start(*first)
                } else if ok_day < last {
                    day_start(ok_day + 1)
                } else {
                    None
                };
                if let Some(b) = began {
                    inst.breach_since = inst.breach_since.min(b.max(floor));
                }
            }
        }
        Ok(())
    }

    /// The roster as last loaded (none: no `oncall.toml`).
    fn roster(&self) -> Option<super::delivery::Roster> {
        self.roster
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends each notice to the roster targets at the given levels of its node's chain. Notices
    /// of one rule and state bound for the same target and level go out as one message.
    async fn deliver(&self, deliveries: Vec<(AlertNotice, Vec<u8>)>) -> Result<(), StoreError> {
        let Some(roster) = self.roster() else {
            return Ok(());
        };
        let tree = self.hub.tree().clone();
        // (rule, state, target url, level) → the target and its notices
        type Groups<'a> = std::collections::BTreeMap<
            (String, String, String, u8),
            (super::delivery::DutyTarget, Vec<&'a AlertNotice>),
        >;
        let mut groups = Groups::new();
        for (notice, levels) in &deliveries {
            let chain = roster.chain(&tree, notice.node_idx);
            for &level in levels {
                // Past the top of the chain there is no one left to escalate to.
                let Some(target) = chain.get(level as usize) else {
                    continue;
                };
                groups
                    .entry((
                        target.org.clone(),
                        notice.rule.clone(),
                        notice.state.clone(),
                        level,
                    ))
                    .or_insert_with(|| (target.clone(), Vec::new()))
                    .1
                    .push(notice);
            }
        }
        for ((_, rule, state, level), (target, notices)) in groups {
            let nodes: Vec<&str> = notices.iter().map(|n| n.node.as_str()).collect();
            let out = super::delivery::Outgoing {
                id: format!(
                    "{rule}/{}/{state}/{level}/{}/{}",
                    notices[0].at,
                    target.org,
                    nodes.join(",")
                ),
                fingerprint: if notices.len() == 1 {
                    notices[0].fingerprint.clone()
                } else {
                    format!("{rule}/*")
                },
                target: target.name.clone(),
                level,
                kind: target.kind,
                url: target.url.clone(),
                payload: super::delivery::render_group(target.kind, &notices, &target.name, level),
            };
            self.deliverer.send(&self.store, out).await?;
        }
        Ok(())
    }

    /// Tells the units of a task what happened (issued to them, returned to one), through the
    /// roster: each unit's nearest duty target, one message per target listing its units —
    /// logged and retried like the alerts' notifications. `key` makes the message's id.
    pub async fn notify_task(
        &self,
        event: &str,
        key: &str,
        units: &[NodeIdx],
        heading: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        let Some(roster) = self.roster() else {
            return Ok(());
        };
        let tree = self.hub.tree().clone();
        let mut groups: std::collections::BTreeMap<
            String,
            (super::delivery::DutyTarget, Vec<(String, String)>),
        > = std::collections::BTreeMap::new();
        for unit in units {
            if let Some(target) = roster.chain(&tree, *unit).into_iter().next() {
                let node = tree.node(*unit);
                groups
                    .entry(target.org.clone())
                    .or_insert_with(|| (target, Vec::new()))
                    .1
                    .push((node.code.clone(), node.name.clone()));
            }
        }
        let at = crate::domain::time::rfc3339(self.hub.now());
        for (org, (target, units)) in groups {
            let out = super::delivery::Outgoing {
                id: format!("{event}/{key}/{org}"),
                fingerprint: format!("{event}/{key}"),
                target: target.name.clone(),
                level: 0,
                kind: target.kind,
                url: target.url.clone(),
                payload: super::delivery::render_task(
                    target.kind,
                    event,
                    heading,
                    body,
                    &units,
                    &target.name,
                    &at,
                ),
            };
            self.deliverer.send(&self.store, out).await?;
        }
        Ok(())
    }

    pub fn silences(&self) -> Vec<super::silence::Silence> {
        self.silences
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds (or replaces) a silence and records it.
    pub async fn add_silence(&self, silence: super::silence::Silence) -> Result<(), StoreError> {
        self.record_silence(
            &silence.id,
            &silence.created_by,
            &serde_json::to_string(&silence.spec).unwrap_or_default(),
            false,
        )
        .await?;
        let mut list = self.silences.write().unwrap_or_else(|p| p.into_inner());
        list.retain(|s| s.id != silence.id);
        list.push(silence);
        Ok(())
    }

    /// Ends a silence; false when no such silence exists.
    pub async fn delete_silence(&self, id: &str, by: &str) -> Result<bool, StoreError> {
        let existed = {
            let mut list = self.silences.write().unwrap_or_else(|p| p.into_inner());
            let before = list.len();
            list.retain(|s| s.id != id);
            list.len() != before
        };
        if existed {
            self.record_silence(id, by, "", true).await?;
        }
        Ok(existed)
    }

    async fn record_silence(
        &self,
        id: &str,
        by: &str,
        spec: &str,
        deleted: bool,
    ) -> Result<(), StoreError> {
        self.store
            .client()
            .query("INSERT INTO alert_silences (at, id, created_by, spec, deleted) VALUES (now(), ?, ?, ?, ?)")
            .bind(id)
            .bind(by)
            .bind(spec)
            .bind(u8::from(deleted))
            .execute()
            .await?;
        Ok(())
    }

    /// Loads the silences recorded in the store (call once at start-up).
    pub async fn load_silences(&self) -> Result<usize, StoreError> {
        let rows: Vec<(String, String, String, u8)> = self
            .store
            .client()
            .query("SELECT id, argMax(created_by, at), argMax(spec, at), argMax(deleted, at) FROM alert_silences GROUP BY id")
            .with_setting("wait_end_of_query", "1")
            .fetch_all()
            .await?;
        let tree = self.hub.tree().clone();
        let loaded: Vec<_> = rows
            .into_iter()
            .filter(|r| r.3 == 0)
            .filter_map(|(id, by, spec, _)| {
                let spec: super::silence::SilenceSpec = serde_json::from_str(&spec).ok()?;
                super::silence::Silence::new(id, by, spec, &tree).ok()
            })
            .collect();
        let n = loaded.len();
        *self.silences.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(n)
    }

    /// Re-queues notifications the log shows as undelivered (call once at start-up).
    pub async fn resume_deliveries(&self) -> Result<usize, StoreError> {
        self.deliverer.resume(&self.store).await
    }

    async fn record(&self, events: &[AlertEventRow]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .store
            .client()
            .insert::<AlertEventRow>("alert_events")
            .await?;
        for e in events {
            insert.write(e).await?;
        }
        insert.end().await?;
        Ok(())
    }

    /// Acknowledges (or, with `ack = false`, un-acknowledges) a current alert.
    pub async fn acknowledge(
        &self,
        fingerprint: &str,
        by: &str,
        comment: &str,
        ack: bool,
        now: OffsetDateTime,
    ) -> Result<Option<AlertInstance>, StoreError> {
        let row = {
            let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
            let Some(inst) = instances.get_mut(fingerprint) else {
                return Ok(None);
            };
            inst.ack = ack.then(|| Ack {
                by: by.into(),
                at: rfc3339(now),
                comment: comment.into(),
            });
            (
                inst.clone(),
                AlertEventRow {
                    at: now.unix_timestamp().max(0) as u32,
                    fingerprint: fingerprint.into(),
                    rule: inst.rule.clone(),
                    node: inst.node.clone(),
                    state: if ack {
                        "acknowledged"
                    } else {
                        "unacknowledged"
                    }
                    .into(),
                    severity: inst.severity.as_str().into(),
                    value: inst.value,
                    summary: inst.summary.clone(),
                    actor: by.into(),
                    comment: comment.into(),
                },
            )
        };
        self.record(std::slice::from_ref(&row.1)).await?;
        Ok(Some(row.0))
    }

    /// Restores firing and pending alerts after a restart from their last recorded state, so
    /// that a restart neither loses them nor notifies them again.
    pub async fn restore(&self) -> Result<usize, StoreError> {
        self.restore_into(false).await
    }

    /// [`restore`](Self::restore); `clear`: forget alerts first (those resolved since go).
    async fn restore_into(&self, clear: bool) -> Result<usize, StoreError> {
        #[derive(clickhouse::Row, Deserialize)]
        struct Last {
            fingerprint: String,
            state: String,
            /// When it entered its phase (its last pending or firing).
            phase_at: u32,
            /// When this episode began: its first pending or firing after the last resolution.
            episode_at: u32,
            rule: String,
            node: String,
            severity: String,
            value: Option<f64>,
            summary: String,
            acked: u8,
            /// The last acknowledgement's (or withdrawal's) author, note and time.
            ack_by: String,
            ack_comment: String,
            ack_at: u32,
            notified_at: u32,
            escalation: u8,
        }
        let rows: Vec<Last> = self
            .store
            .client()
            .query(
                "SELECT fingerprint, argMax(state, at) AS s, \
                 toUInt32(if(s = 'pending', maxIf(at, state = 'pending'), maxIf(at, state = 'firing'))), \
                 toUInt32(arrayReduce('min', arrayFilter((t, x) -> x IN ('pending', 'firing') AND t >= maxIf(at, state IN ('resolved', 'inactive')), \
                 groupArray(at), groupArray(state)))), \
                 any(rule), any(node), argMax(severity, at), \
                 argMax(value, at), argMax(summary, at), \
                 toUInt8(argMaxIf(state, at, state IN ('acknowledged', 'unacknowledged')) = 'acknowledged'), \
                 argMaxIf(actor, at, state IN ('acknowledged', 'unacknowledged')), \
                 argMaxIf(comment, at, state IN ('acknowledged', 'unacknowledged')), \
                 toUInt32(maxIf(at, state IN ('acknowledged', 'unacknowledged'))), \
                 toUInt32(maxIf(at, state = 'notified')), \
                 toUInt8(arrayCount(t -> t >= maxIf(at, state = 'firing'), groupArrayIf(at, state = 'escalated'))) \
                 FROM alert_events GROUP BY fingerprint",
            )
            .with_setting("wait_end_of_query", "1")
            .fetch_all()
            .await?;
        let tree = self.hub.tree().clone();
        let rules = self.rules();
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        let mut notified = self.last_notified.lock().unwrap_or_else(|p| p.into_inner());
        if clear {
            instances.clear();
        }
        let mut restored = 0;
        for r in rows {
            if r.notified_at > 0 {
                notified.insert(r.fingerprint.clone(), r.notified_at as i64);
            }
            let state = match r.state.as_str() {
                "firing" | "notified" | "acknowledged" | "unacknowledged" => AlertState::Firing,
                "pending" => AlertState::Pending,
                _ => continue,
            };
            let (Some(node), Some(rule)) =
                (tree.get(&r.node), rules.iter().find(|x| x.name == r.rule))
            else {
                continue;
            };
            let at = OffsetDateTime::from_unix_timestamp(r.phase_at as i64)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let episode = if r.episode_at > 0 {
                r.episode_at
            } else {
                r.phase_at
            };
            instances.insert(
                r.fingerprint.clone(),
                AlertInstance {
                    fingerprint: r.fingerprint.clone(),
                    rule: r.rule.clone(),
                    node: r.node.clone(),
                    node_name: tree.node(node).name.clone(),
                    state,
                    severity: r.severity.parse().unwrap_or(rule.severity),
                    value: r.value,
                    summary: r.summary.clone(),
                    labels: rule.labels.clone(),
                    since: rfc3339(at),
                    // Who acknowledged it, with their note and when, as recorded.
                    ack: (r.acked == 1).then(|| Ack {
                        by: r.ack_by.clone(),
                        at: rfc3339(
                            OffsetDateTime::from_unix_timestamp(r.ack_at as i64)
                                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                        ),
                        comment: r.ack_comment.clone(),
                    }),
                    since_unix: r.phase_at as i64,
                    breach_since: episode as i64,
                    case_age_days: None,
                    status: None,
                    dated: false,
                    node_idx: node,
                    escalation: r.escalation,
                },
            );
            restored += 1;
        }
        Ok(restored)
    }

    /// Evaluates on a timer and reloads rule files when they change — while this instance
    /// leads (`leader`: always, with one instance; the writer's lease, with several on one
    /// record stream). One leader at a time evaluates and notifies; on taking over it starts
    /// from what the previous one recorded (states, notification times, undelivered
    /// notifications), so nothing is notified twice. The others show what the leader records.
    pub async fn run(self: Arc<Self>, leader: crate::ingest::cluster::Leadership) {
        if self.settings.eval_interval_ms == 0 {
            return;
        }
        let mut every =
            tokio::time::interval(Duration::from_millis(self.settings.eval_interval_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut leading = false;
        let mut acks_since = 0u32;
        loop {
            every.tick().await;
            // Files are read off the async runtime (a stuck read must not park a worker).
            let me = self.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || me.reload_rules()).await {
                tracing::warn!(error = %e, "reading the alert rules failed");
            }
            let now = self.hub.now();
            if !leader.held() {
                if leading {
                    tracing::info!("another instance evaluates the alerts now");
                }
                leading = false;
                if let Err(e) = self.refresh_from_records().await {
                    tracing::warn!(error = %e, "could not read the alerts the leader recorded");
                }
                continue;
            }
            if !leading {
                let taken_over = async {
                    self.refresh_from_records().await?;
                    self.resume_deliveries().await
                };
                match taken_over.await {
                    Ok(undelivered) => {
                        if undelivered > 0 {
                            tracing::info!(
                                undelivered,
                                "undelivered alert notifications re-queued"
                            );
                        }
                        leading = true;
                        acks_since = now.unix_timestamp().max(0) as u32;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not take over the alerts; trying again");
                        continue;
                    }
                }
            } else {
                // Acknowledgements and silences made through other instances.
                match self.apply_recorded_acks(acks_since).await {
                    Ok(()) => acks_since = now.unix_timestamp().max(0) as u32 - 1,
                    Err(e) => tracing::warn!(error = %e, "could not read acknowledgements"),
                }
                if let Err(e) = self.load_silences().await {
                    tracing::warn!(error = %e, "could not read silences");
                }
            }
            if let Err(e) = self.evaluate(now).await {
                tracing::warn!(error = %e, "alert evaluation could not record its results");
            }
        }
    }

    /// The alerts as recorded (resolved ones gone): what a non-leading instance shows.
    async fn refresh_from_records(&self) -> Result<usize, StoreError> {
        let restored = self.restore_into(true).await?;
        self.load_silences().await?;
        Ok(restored)
    }

    /// Acknowledgements recorded since `since` (by any instance) applied to the alerts here.
    async fn apply_recorded_acks(&self, since: u32) -> Result<(), StoreError> {
        let rows: Vec<(String, String, String, String, u32)> = self
            .store
            .client()
            .query(
                "SELECT fingerprint, argMax(state, at), argMax(actor, at), argMax(comment, at), max(at) \
                 FROM alert_events WHERE state IN ('acknowledged', 'unacknowledged') AND at >= toDateTime(?) \
                 GROUP BY fingerprint",
            )
            .bind(since)
            .fetch_all()
            .await?;
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        for (fingerprint, state, by, comment, at) in rows {
            if let Some(inst) = instances.get_mut(&fingerprint) {
                inst.ack = (state == "acknowledged").then(|| Ack {
                    by,
                    at: rfc3339(
                        OffsetDateTime::from_unix_timestamp(at as i64)
                            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    ),
                    comment,
                });
            }
        }
        Ok(())
    }
}

/// The earliest a breach of an at-risk rule can be dated from (Unix seconds): a target judged
/// per period (a yearly count) starts afresh each period, so its breach dates at most from the
/// period's first day; a one-off target whose deadline has passed is missed from the day after
/// its deadline, however long it was at risk before. A duty officer reads the age as "missed
/// for", not "at risk since 2021".
fn breach_floor(rule: &Rule, catalogue: &Catalogue, now: time::OffsetDateTime) -> i64 {
    use crate::domain::catalogue::Deadline;
    let target = match (&rule.condition, rule.condition.metric()) {
        (Condition::AtRisk { .. }, Some(metric)) => catalogue.get(metric).and_then(|d| d.target),
        _ => None,
    };
    let today = crate::domain::time::local_date(now);
    let midnight = |d: time::Date| {
        d.midnight()
            .assume_offset(crate::domain::time::SHANGHAI)
            .unix_timestamp()
    };
    match target.map(|t| t.deadline) {
        Some(Deadline::Every(period)) => midnight(period.bounds(today).0),
        Some(Deadline::Fixed(due)) if today > due => due.next_day().map_or(i64::MIN, midnight),
        Some(Deadline::Fixed(_)) | Some(Deadline::Standing) | None => i64::MIN,
    }
}
