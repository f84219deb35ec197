//! Tasks down the tree (`/api/v1/tasks`): what a client sends to issue a task and to act on an
//! assignment, and what it reads back (the board's views).

use serde::{Deserialize, Serialize};

pub use crate::live::tasks::{AssignmentView, StepEntry, TaskSummary, TaskView};

/// `POST /api/v1/tasks`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// A client's own id for the task (letters, digits, `-` and `_`): the same id sent again
    /// is answered as the task already issued. Default: one is made.
    pub id: Option<String>,
    /// At most 100 characters.
    pub title: String,
    /// At most 2,000 characters.
    pub instruction: String,
    /// `YYYY-MM-DD` (the end of that day, Shenzhen time) or RFC 3339; in the future.
    pub due: String,
    /// normal (default) | urgent | incident
    pub priority: Option<String>,
    /// Hours a unit has to sign (签收): default 24.
    pub sign_hours: Option<u32>,
    /// The units, by org code …
    pub units: Option<Vec<String>>,
    /// … or the rule that picks them, evaluated now.
    pub selector: Option<Selector>,
    /// Where the task comes from: `{"alert": "…"}` or `{"metric": "…", "scope": "…"}`.
    #[schema(value_type = Object)]
    pub source: Option<serde_json::Value>,
    /// Admins only: when it was issued, if before now (RFC 3339) — a task carried over from
    /// before vscc. The deadline must follow it.
    pub at: Option<String>,
    /// true: check everything and answer which units it would go to (200), issue nothing.
    #[serde(default)]
    pub preview: bool,
}

/// Every node of `level` within `scope`, optionally only those whose `metric` has one of
/// `status` now.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub scope: String,
    /// district | street | community
    pub level: String,
    pub metric: Option<String>,
    /// met | on_track | at_risk | missed | no_data (default with a metric: at_risk, missed)
    pub status: Option<Vec<String>>,
}

/// `201` to `POST /api/v1/tasks`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskIssued {
    pub id: String,
    /// Assignments made (one per unit).
    pub units: usize,
    /// The units, by org code.
    pub orgs: Vec<String>,
}

/// The body of an action on an assignment (what each action reads of it).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepIn {
    /// feedback and submit (required: what was done): at most 1,000 characters.
    pub text: Option<String>,
    /// return: why (required), at most 500 characters.
    pub reason: Option<String>,
    /// delegate: the units below the assignment's unit to pass it to.
    pub units: Option<Vec<String>>,
    /// Admins only: when the step was taken, if before now (RFC 3339; not before the
    /// assignment's last step) — an answer taken by phone, recorded afterwards.
    pub at: Option<String>,
}

/// `GET /api/v1/tasks`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskList {
    pub scope: String,
    pub tasks: Vec<TaskSummary>,
}

/// `GET /api/v1/tasks/mine`: a unit's own assignments, each with its task.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UnitAssignments {
    pub scope: String,
    pub name: String,
    /// Whether the caller may act for the unit (sign, answer, submit, pass down).
    pub may_act: bool,
    pub assignments: Vec<UnitAssignment>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UnitAssignment {
    pub task: TaskSummary,
    pub assignment: AssignmentView,
}

/// `GET /api/v1/tasks/feed`: the newest answers within a scope (the wall screen's ticker).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskFeed {
    pub scope: String,
    pub open: usize,
    pub overdue: usize,
    /// Open tasks of priority `incident` (应急事件): the wall shows them while they are open.
    pub incidents: Vec<TaskSummary>,
    pub steps: Vec<FeedEntry>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FeedEntry {
    pub task: String,
    pub title: String,
    #[serde(flatten)]
    pub step: StepEntry,
}
