//! The task board: every task's records (its creation, each assignment's issue and steps),
//! held to answer what a task, a unit or a screen asks about tasks. Records arrive in any
//! order at a rebuild and in seq order after; a view folds each assignment's steps in seq
//! order when asked (`domain::task::fold`), so both give the same answer.
//!
//! The figures (open, overdue, on time) are metrics of the catalogue, computed from the same
//! records by the `cases` and `ratio` measure types; the board says the same of one task.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde_json::Value;

use crate::domain::org::{NodeIdx, OrgTree};
use crate::domain::record::EventRow;
use crate::domain::task::{self, Priority, State, Step, CREATED_KIND, ISSUED_KIND};

/// One assignment's records: the issuing one and its steps, by seq.
#[derive(Default)]
struct AssignmentRecords {
    issued: Option<EventRow>,
    /// The unit that passed it down (read once from the issuing record's data).
    parent: Option<String>,
    steps: BTreeMap<u64, EventRow>,
}

#[derive(Default)]
struct TaskRecords {
    created: Option<EventRow>,
    assignments: BTreeMap<String, AssignmentRecords>,
}

#[derive(Default)]
struct Board {
    tasks: HashMap<String, TaskRecords>,
    /// Per unit: the tasks it has an assignment of.
    by_org: HashMap<String, Vec<String>>,
}

pub struct TaskBoard {
    board: RwLock<Board>,
    /// Each step as it is taken in: the screens' ticker of answers.
    steps: tokio::sync::broadcast::Sender<Arc<StepNotice>>,
}

impl Default for TaskBoard {
    fn default() -> Self {
        TaskBoard {
            board: RwLock::default(),
            steps: tokio::sync::broadcast::channel(256).0,
        }
    }
}

/// A step just taken, for the screens whose scope holds its unit.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepNotice {
    pub task: String,
    pub title: String,
    #[serde(skip)]
    pub org_idx: NodeIdx,
    #[serde(flatten)]
    pub step: StepEntry,
}

/// A step as the timeline shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepEntry {
    /// issued, sign, feedback, submit, accept, return, delegate
    pub step: String,
    pub step_zh: String,
    pub org: String,
    pub org_name: String,
    pub by: String,
    /// RFC 3339
    pub at: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// The units a delegation passed the assignment to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AssignmentView {
    pub task: String,
    pub org: String,
    pub org_name: String,
    pub level: String,
    /// The unit that passed it down, when it was delegated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub state: State,
    pub state_zh: String,
    /// Past a deadline not met: `sign` (not signed in time) or `submit` (not submitted by the
    /// deadline); none when on time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue: Option<String>,
    pub issued_at: String,
    pub sign_by: String,
    pub due: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<String>,
    /// Whether the newest submission came by the deadline (once submitted): what counts as
    /// done on time when it is accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_time: Option<bool>,
    /// Signed (or first acted on) after the time to sign.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub signed_late: bool,
    /// The unit's answers: feedback and submissions, with returns between them.
    pub feedback: Vec<StepEntry>,
    /// The assignments it passed down, with their roll-up in `children_states`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub children: Vec<AssignmentView>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub children_states: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskSummary {
    pub id: String,
    pub title: String,
    pub instruction: String,
    pub priority: Priority,
    pub due: String,
    pub issued_at: String,
    pub issuer: String,
    /// The issuer's org: whose side accepts and returns.
    pub scope: String,
    pub scope_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// Assignments visible to the caller (the units issued to, and those passed down to).
    pub assignments_total: usize,
    /// Per state, of those.
    pub states: BTreeMap<String, usize>,
    pub overdue: usize,
    /// Whether every assignment is accepted.
    pub closed: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    #[serde(flatten)]
    pub summary: TaskSummary,
    /// The top assignments (the units issued to), each with those passed down below it.
    pub assignments: Vec<AssignmentView>,
    /// Every step of the visible assignments, newest first.
    pub timeline: Vec<StepEntry>,
}

/// Where an assignment stands, for judging a step on it.
pub struct AssignmentFacts {
    pub state: State,
    /// Records it has (the issuing one and its steps): the next step's number is one more.
    pub records: usize,
    /// The deadline (Unix seconds) and the time of the newest submission (the work that is
    /// accepted: a returned one was redone).
    pub due_at: u32,
    pub last_submitted: Option<u32>,
    /// The unit that passed it down (its side accepts and returns), or none: the task's issuer.
    pub parent: Option<String>,
    /// The issuer's org.
    pub scope: String,
    /// When its last record happened (Unix seconds): a step recorded afterwards is not before.
    pub last_at: u32,
}

fn data(row: &EventRow) -> Value {
    serde_json::from_str(&row.data).unwrap_or(Value::Null)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn rfc3339(unix: u32) -> String {
    crate::domain::time::rfc3339_shanghai(i64::from(unix))
}

/// The task an assignment's subject (`task/org`) belongs to.
fn task_of(subject: &str) -> &str {
    subject.rsplit_once('/').map_or(subject, |(t, _)| t)
}

impl AssignmentRecords {
    fn steps(&self) -> impl Iterator<Item = (Step, &EventRow)> {
        self.steps
            .values()
            .filter_map(|r| Step::of_kind(&r.kind).map(|s| (s, r)))
    }

    fn state(&self) -> State {
        task::fold(self.steps().map(|(s, _)| s))
    }

    /// A span of the issuing record, in seconds (`due_seconds`, `sign_seconds`).
    fn span(&self, field: &str) -> u32 {
        self.issued
            .as_ref()
            .and_then(|r| r.number(field))
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32
    }

    fn issued_at(&self) -> u32 {
        self.issued.as_ref().map_or(0, |r| r.at)
    }

    fn due_at(&self) -> u32 {
        self.issued_at().saturating_add(self.span("due_seconds"))
    }

    fn sign_by(&self) -> u32 {
        self.issued_at().saturating_add(self.span("sign_seconds"))
    }

    fn first(&self, kinds: &[Step]) -> Option<u32> {
        self.steps()
            .filter(|(s, _)| kinds.contains(s))
            .map(|(_, r)| r.at)
            .min()
    }

    /// The time of the newest step of these kinds (in seq order: a return and a second
    /// submission make the second one the work that counts).
    fn last(&self, kinds: &[Step]) -> Option<u32> {
        self.steps()
            .filter(|(s, _)| kinds.contains(s))
            .map(|(_, r)| r.at)
            .last()
    }

    /// Which deadline it is past, as the `task_assignments` metric counts it: a deadline is
    /// met by any record that meets it, whatever the order.
    fn overdue(&self, now: u32) -> Option<&'static str> {
        if self.first(&[Step::Accept]).is_some() {
            return None;
        }
        let age = now.saturating_sub(self.issued_at());
        let submitted = self.first(&[Step::Submit]);
        if submitted.is_none() && age > self.span("due_seconds") {
            return Some("submit");
        }
        let signed = self.first(&[Step::Sign, Step::Feedback, Step::Delegate, Step::Submit]);
        if signed.is_none() && age > self.span("sign_seconds") {
            return Some("sign");
        }
        None
    }

    fn parent(&self) -> Option<String> {
        self.parent.clone()
    }
}

impl TaskBoard {
    /// Takes in committed records: those of the task kinds are kept.
    pub fn take_in(&self, tree: &OrgTree, rows: &[EventRow]) {
        let mut rows = rows
            .iter()
            .filter(|r| r.kind.starts_with("task."))
            .peekable();
        if rows.peek().is_none() {
            return;
        }
        let mut board = self.board.write().unwrap_or_else(|p| p.into_inner());
        for r in rows {
            if r.sign != 1 {
                continue;
            }
            if r.kind == CREATED_KIND {
                board.tasks.entry(r.subject.clone()).or_default().created = Some(r.clone());
                continue;
            }
            let task = task_of(&r.subject).to_string();
            let entry = board.tasks.entry(task.clone()).or_default();
            let a = entry.assignments.entry(r.org.clone()).or_default();
            if r.kind == ISSUED_KIND {
                a.parent = Some(text(&data(r), "parent")).filter(|p| !p.is_empty());
                a.issued = Some(r.clone());
                let tasks = board.by_org.entry(r.org.clone()).or_default();
                if !tasks.contains(&task) {
                    tasks.push(task);
                }
            } else if a.steps.insert(r.seq, r.clone()).is_none() && self.steps.receiver_count() > 0
            {
                if let (Some(step), Some(org_idx)) = (Step::of_kind(&r.kind), tree.get(&r.org)) {
                    let title = entry_title(board.tasks.get(&task));
                    let _ = self.steps.send(Arc::new(StepNotice {
                        task,
                        title,
                        org_idx,
                        step: self::entry(tree, step.as_str(), step.label_zh(), r),
                    }));
                }
            }
        }
    }

    /// The steps taken from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<StepNotice>> {
        self.steps.subscribe()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Board> {
        self.board.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How many tasks the board holds.
    pub fn len(&self) -> usize {
        self.read().tasks.len()
    }

    /// Where an assignment stands (none: no such task or no assignment for `org`).
    pub fn facts(&self, task_id: &str, org: &str) -> Option<AssignmentFacts> {
        let board = self.read();
        let t = board.tasks.get(task_id)?;
        let a = t.assignments.get(org)?;
        a.issued.as_ref()?;
        Some(AssignmentFacts {
            state: a.state(),
            records: 1 + a.steps.len(),
            due_at: a.due_at(),
            last_submitted: a.last(&[Step::Submit]),
            parent: a.parent(),
            scope: t
                .created
                .as_ref()
                .map(|c| c.org.clone())
                .unwrap_or_default(),
            last_at: a
                .steps
                .values()
                .map(|r| r.at)
                .chain([a.issued_at()])
                .max()
                .unwrap_or(0),
        })
    }

    /// A task's title (empty: no such task).
    pub fn title(&self, task_id: &str) -> String {
        entry_title(self.read().tasks.get(task_id))
    }

    /// Whether a task exists (its creation record arrived).
    pub fn exists(&self, task_id: &str) -> bool {
        self.read()
            .tasks
            .get(task_id)
            .is_some_and(|t| t.created.is_some())
    }

    /// The units a task has an assignment for.
    pub fn units_of(&self, task_id: &str) -> Vec<String> {
        self.read()
            .tasks
            .get(task_id)
            .map(|t| t.assignments.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A task as a caller with `scope` sees it: every assignment when the caller's scope holds
    /// the issuer's org, else those within the scope. None: no such task, or nothing of it
    /// is within the scope.
    pub fn view(
        &self,
        tree: &OrgTree,
        scope: NodeIdx,
        task_id: &str,
        now: u32,
    ) -> Option<TaskView> {
        let board = self.read();
        let t = board.tasks.get(task_id)?;
        let (summary, visible) = summarize(tree, scope, task_id, t, now)?;
        let mut timeline: Vec<(u32, u64, StepEntry)> = Vec::new();
        for org in &visible {
            let a = &t.assignments[org];
            if let Some(r) = &a.issued {
                timeline.push((r.at, r.seq, entry(tree, "issued", "交办", r)));
            }
            for (step, r) in a.steps() {
                timeline.push((r.at, r.seq, entry(tree, step.as_str(), step.label_zh(), r)));
            }
        }
        timeline.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        let below = Below::of(t, &visible);
        // Tops: the visible assignments whose parent is not visible (or who have none).
        let assignments = visible
            .iter()
            .filter(|org| {
                t.assignments[*org]
                    .parent
                    .as_ref()
                    .is_none_or(|p| !below.visible.contains(p.as_str()))
            })
            .map(|org| assignment_view(tree, task_id, t, org, now, &below, 0))
            .collect();
        Some(TaskView {
            summary,
            assignments,
            timeline: timeline.into_iter().map(|(_, _, e)| e).collect(),
        })
    }

    /// One assignment as a caller with `scope` sees it, with those passed down below it.
    pub fn assignment(
        &self,
        tree: &OrgTree,
        scope: NodeIdx,
        task_id: &str,
        org: &str,
        now: u32,
    ) -> Option<AssignmentView> {
        let board = self.read();
        let t = board.tasks.get(task_id)?;
        let (_, visible) = summarize(tree, scope, task_id, t, now)?;
        if !visible.iter().any(|v| v == org) {
            return None;
        }
        Some(assignment_view(
            tree,
            task_id,
            t,
            org,
            now,
            &Below::of(t, &visible),
            0,
        ))
    }

    /// The tasks a caller with `scope` sees, newest first: those issued within the scope, and
    /// those with an assignment within it.
    pub fn list(&self, tree: &OrgTree, scope: NodeIdx, now: u32) -> Vec<TaskSummary> {
        let board = self.read();
        let mut out: Vec<(u32, TaskSummary)> = board
            .tasks
            .iter()
            .filter_map(|(id, t)| {
                let at = t.created.as_ref()?.at;
                summarize(tree, scope, id, t, now).map(|(s, _)| (at, s))
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        out.into_iter().map(|(_, s)| s).collect()
    }

    /// A unit's own assignments (of every task), newest first.
    pub fn of_unit(
        &self,
        tree: &OrgTree,
        org: &str,
        now: u32,
    ) -> Vec<(TaskSummary, AssignmentView)> {
        let board = self.read();
        let Some(tasks) = board.by_org.get(org) else {
            return Vec::new();
        };
        let Some(idx) = tree.get(org) else {
            return Vec::new();
        };
        let mut out: Vec<(u32, TaskSummary, AssignmentView)> = tasks
            .iter()
            .filter_map(|id| {
                let t = board.tasks.get(id)?;
                let (summary, visible) = summarize(tree, idx, id, t, now)?;
                let a = assignment_view(tree, id, t, org, now, &Below::of(t, &visible), 0);
                Some((t.assignments[org].issued_at(), summary, a))
            })
            .collect();
        out.sort_by(|a, b| b.0.cmp(&a.0));
        out.into_iter().map(|(_, s, a)| (s, a)).collect()
    }

    /// The newest answers (the units' steps) within a scope: the wall screen's ticker.
    pub fn recent_steps(
        &self,
        tree: &OrgTree,
        scope: NodeIdx,
        limit: usize,
    ) -> Vec<(String, String, StepEntry)> {
        let board = self.read();
        let mut all: Vec<(u32, u64, String, String, StepEntry)> = Vec::new();
        for (id, t) in &board.tasks {
            let title = entry_title(Some(t));
            for (org, a) in &t.assignments {
                if !tree.get(org).is_some_and(|o| tree.is_within(o, scope)) {
                    continue;
                }
                for (step, r) in a.steps() {
                    all.push((
                        r.at,
                        r.seq,
                        id.clone(),
                        title.clone(),
                        entry(tree, step.as_str(), step.label_zh(), r),
                    ));
                }
            }
        }
        all.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
        all.truncate(limit);
        all.into_iter()
            .map(|(_, _, id, title, e)| (id, title, e))
            .collect()
    }
}

fn entry_title(t: Option<&TaskRecords>) -> String {
    t.and_then(|t| t.created.as_ref())
        .map(|c| text(&data(c), "title"))
        .unwrap_or_default()
}

fn entry(tree: &OrgTree, step: &str, step_zh: &str, r: &EventRow) -> StepEntry {
    let d = data(r);
    let mut text_ = text(&d, "text");
    if text_.is_empty() {
        text_ = text(&d, "reason");
    }
    StepEntry {
        step: step.to_string(),
        step_zh: step_zh.to_string(),
        org: r.org.clone(),
        org_name: tree
            .get(&r.org)
            .map(|o| tree.node(o).name.clone())
            .unwrap_or_default(),
        by: r.actor.clone(),
        at: rfc3339(r.at),
        text: text_,
        units: d
            .get("units")
            .and_then(Value::as_array)
            .map(|u| {
                u.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The task's summary over the assignments a scope sees, and those assignments; none when the
/// scope sees nothing of it.
fn summarize(
    tree: &OrgTree,
    scope: NodeIdx,
    id: &str,
    t: &TaskRecords,
    now: u32,
) -> Option<(TaskSummary, Vec<String>)> {
    let created = t.created.as_ref()?;
    let issuer_org = tree.get(&created.org)?;
    let sees_all = tree.is_within(issuer_org, scope);
    let visible: Vec<String> = t
        .assignments
        .iter()
        .filter(|(_, a)| a.issued.is_some())
        .filter(|(org, _)| sees_all || tree.get(org).is_some_and(|o| tree.is_within(o, scope)))
        .map(|(org, _)| org.clone())
        .collect();
    if !sees_all && visible.is_empty() {
        return None;
    }
    let d = data(created);
    let mut states = BTreeMap::new();
    let mut overdue = 0;
    for org in &visible {
        let a = &t.assignments[org];
        *states.entry(a.state().as_str().to_string()).or_insert(0) += 1;
        overdue += usize::from(a.overdue(now).is_some());
    }
    let closed = !visible.is_empty() && states.get("accepted") == Some(&visible.len());
    Some((
        TaskSummary {
            id: id.to_string(),
            title: text(&d, "title"),
            instruction: text(&d, "instruction"),
            priority: Priority::parse(&text(&d, "priority")).unwrap_or(Priority::Normal),
            due: text(&d, "due"),
            issued_at: rfc3339(created.at),
            issuer: created.actor.clone(),
            scope: created.org.clone(),
            scope_name: tree.node(issuer_org).name.clone(),
            source: d.get("source").filter(|s| !s.is_null()).cloned(),
            assignments_total: visible.len(),
            states,
            overdue,
            closed,
        },
        visible,
    ))
}

/// The visible assignments of a task, and those each one passed down: a view is built in one
/// pass over them (a task to every unit of the city has 867).
struct Below<'a> {
    visible: std::collections::HashSet<&'a str>,
    children: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> Below<'a> {
    fn of(t: &'a TaskRecords, visible: &'a [String]) -> Self {
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        for org in visible {
            if let Some(p) = &t.assignments[org].parent {
                children.entry(p.as_str()).or_default().push(org.as_str());
            }
        }
        Below {
            visible: visible.iter().map(String::as_str).collect(),
            children,
        }
    }
}

fn assignment_view(
    tree: &OrgTree,
    task_id: &str,
    t: &TaskRecords,
    org: &str,
    now: u32,
    below: &Below,
    depth: usize,
) -> AssignmentView {
    let a = &t.assignments[org];
    let node = tree.get(org).map(|o| tree.node(o));
    let state = a.state();
    let submitted = a.last(&[Step::Submit]);
    let signed = a.first(&[Step::Sign, Step::Feedback, Step::Delegate, Step::Submit]);
    let children: Vec<AssignmentView> = if depth < 4 {
        below
            .children
            .get(org)
            .into_iter()
            .flatten()
            .map(|o| assignment_view(tree, task_id, t, o, now, below, depth + 1))
            .collect()
    } else {
        Vec::new()
    };
    let mut children_states = BTreeMap::new();
    for c in &children {
        *children_states
            .entry(c.state.as_str().to_string())
            .or_insert(0) += 1;
    }
    AssignmentView {
        task: task_id.to_string(),
        org: org.to_string(),
        org_name: node.map(|n| n.name.clone()).unwrap_or_default(),
        level: node
            .map(|n| n.level.as_str().to_string())
            .unwrap_or_default(),
        parent: a.parent(),
        state,
        state_zh: state.label_zh().to_string(),
        overdue: a.overdue(now).map(String::from),
        issued_at: rfc3339(a.issued_at()),
        sign_by: rfc3339(a.sign_by()),
        due: rfc3339(a.due_at()),
        signed_at: a.first(&[Step::Sign]).map(rfc3339),
        submitted_at: submitted.map(rfc3339),
        accepted_at: a.first(&[Step::Accept]).map(rfc3339),
        on_time: submitted.map(|s| s <= a.due_at()),
        signed_late: signed.is_some_and(|s| s > a.sign_by()),
        feedback: a
            .steps()
            .filter(|(s, _)| matches!(s, Step::Feedback | Step::Submit | Step::Return))
            .map(|(s, r)| entry(tree, s.as_str(), s.label_zh(), r))
            .collect(),
        children,
        children_states,
    }
}
