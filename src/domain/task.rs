//! Tasks down the tree (部署 / 督办): an instruction issued to units, one assignment per unit,
//! each moving through its states as the unit and the issuer act. Pure: the state machine, the
//! record kinds each step is kept as, and the fold of an assignment's steps (in seq order) into
//! its state — the same fold on every instance, whatever order the records were read in.
//!
//! ```text
//! issued ─sign→ signed ─feedback/delegate→ in_progress ─submit→ submitted ─accept→ accepted
//!                  └──────────────submit────────────────────────↗     └─return→ returned
//! returned ─feedback/delegate→ in_progress;  returned ─submit→ submitted
//! ```

use std::fmt;

/// Where an assignment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Issued,
    Signed,
    InProgress,
    Submitted,
    Accepted,
    Returned,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Issued => "issued",
            State::Signed => "signed",
            State::InProgress => "in_progress",
            State::Submitted => "submitted",
            State::Accepted => "accepted",
            State::Returned => "returned",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            State::Issued => "待签收",
            State::Signed => "已签收",
            State::InProgress => "办理中",
            State::Submitted => "已办结待销号",
            State::Accepted => "已销号",
            State::Returned => "已退回",
        }
    }

    /// Whether the unit still has to act (the issuer's side acts on `submitted`).
    pub fn with_unit(self) -> bool {
        !matches!(self, State::Submitted | State::Accepted)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step taken on an assignment: by the unit (sign, feedback, submit, delegate) or by the
/// issuer's side (accept, return).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Sign,
    Feedback,
    Submit,
    Accept,
    Return,
    Delegate,
}

/// Who may take a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The unit the assignment is for.
    Unit,
    /// Whoever issued it: the task's issuer, or the unit that passed it down.
    Issuer,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Sign,
        Step::Feedback,
        Step::Submit,
        Step::Accept,
        Step::Return,
        Step::Delegate,
    ];

    /// The name in the API path (`…/assignments/{org}/{action}`).
    pub fn parse(action: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.as_str() == action)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Sign => "sign",
            Step::Feedback => "feedback",
            Step::Submit => "submit",
            Step::Accept => "accept",
            Step::Return => "return",
            Step::Delegate => "delegate",
        }
    }

    /// The record kind the step is kept as.
    pub fn kind(self) -> &'static str {
        match self {
            Step::Sign => "task.signed",
            Step::Feedback => "task.feedback",
            Step::Submit => "task.submitted",
            Step::Accept => "task.accepted",
            Step::Return => "task.returned",
            Step::Delegate => "task.delegated",
        }
    }

    pub fn of_kind(kind: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.kind() == kind)
    }

    pub fn side(self) -> Side {
        match self {
            Step::Accept | Step::Return => Side::Issuer,
            _ => Side::Unit,
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Step::Sign => "签收",
            Step::Feedback => "反馈",
            Step::Submit => "办结",
            Step::Accept => "销号",
            Step::Return => "退回",
            Step::Delegate => "转派",
        }
    }
}

/// The kind of the record that creates a task (at the issuer's org) and of the one that
/// opens each assignment (at the unit).
pub const CREATED_KIND: &str = "task.created";
pub const ISSUED_KIND: &str = "task.issued";

/// A step refused in the assignment's state: the state, and what the step needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the assignment is {state}: {why}")]
pub struct Refused {
    pub state: State,
    pub why: &'static str,
}

/// The state after `step`, or why the step cannot be taken now.
pub fn after(state: State, step: Step) -> Result<State, Refused> {
    use State::*;
    use Step::*;
    let refuse = |why| Err(Refused { state, why });
    match (state, step) {
        (Accepted, _) => refuse("it is closed (销号); nothing more can be done on it"),
        (Issued, Sign) => Ok(Signed),
        (_, Sign) => refuse("it was signed already"),
        (Issued, _) if step.side() == Side::Unit => refuse("sign it first (签收)"),
        (Signed | InProgress | Returned, Feedback | Delegate) => Ok(InProgress),
        (Signed | InProgress | Returned, Submit) => Ok(Submitted),
        (Submitted, Accept) => Ok(Accepted),
        (Submitted, Return) => Ok(Returned),
        (Submitted, _) => refuse("it was submitted; the issuer accepts or returns it now"),
        (_, Accept | Return) => refuse("only a submitted assignment can be accepted or returned"),
        (Issued, Feedback | Submit | Delegate) => refuse("sign it first (签收)"),
    }
}

/// Folds the steps of an assignment, in seq order, into its state: a step not allowed where
/// it arrives (two instances raced) changes nothing, the same way everywhere.
pub fn fold(steps: impl IntoIterator<Item = Step>) -> State {
    steps
        .into_iter()
        .fold(State::Issued, |s, step| after(s, step).unwrap_or(s))
}

/// How urgent a task is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Normal,
    Urgent,
    Incident,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "normal",
            Priority::Urgent => "urgent",
            Priority::Incident => "incident",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        [Priority::Normal, Priority::Urgent, Priority::Incident]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// The record id of an assignment's step number `n` (1 = the issuing record): two steps
/// raced on one assignment get the same id, so exactly-once keeps only the first, on every
/// instance.
pub fn step_id(task: &str, org: &str, n: usize) -> String {
    format!("{task}/{org}/{n}")
}

/// The subject that follows an assignment through its records (what the `cases` metrics key
/// by).
pub fn assignment_subject(task: &str, org: &str) -> String {
    format!("{task}/{org}")
}

#[cfg(test)]
mod tests {
    use super::State::*;
    use super::Step::*;
    use super::*;

    #[test]
    fn the_whole_way_through_and_back() {
        let mut s = Issued;
        for (step, want) in [
            (Sign, Signed),
            (Feedback, InProgress),
            (Submit, Submitted),
            (Return, Returned),
            (Feedback, InProgress),
            (Submit, Submitted),
            (Accept, Accepted),
        ] {
            s = after(s, step).unwrap();
            assert_eq!(s, want, "after {step:?}");
        }
    }

    #[test]
    fn a_unit_may_submit_right_after_signing_and_again_after_a_return() {
        assert_eq!(after(Signed, Submit), Ok(Submitted));
        assert_eq!(after(Returned, Submit), Ok(Submitted));
        assert_eq!(after(Returned, Delegate), Ok(InProgress));
        assert_eq!(after(Signed, Delegate), Ok(InProgress));
    }

    #[test]
    fn every_step_out_of_order_is_refused_naming_the_state() {
        let allowed = [
            (Issued, Sign),
            (Signed, Feedback),
            (Signed, Delegate),
            (Signed, Submit),
            (InProgress, Feedback),
            (InProgress, Delegate),
            (InProgress, Submit),
            (Returned, Feedback),
            (Returned, Delegate),
            (Returned, Submit),
            (Submitted, Accept),
            (Submitted, Return),
        ];
        for state in [Issued, Signed, InProgress, Submitted, Accepted, Returned] {
            for step in Step::ALL {
                let r = after(state, step);
                if allowed.contains(&(state, step)) {
                    assert!(r.is_ok(), "{state:?} {step:?}");
                } else {
                    let e = r.expect_err(&format!("{state:?} {step:?} must be refused"));
                    assert_eq!(e.state, state);
                    assert!(e
                        .to_string()
                        .starts_with(&format!("the assignment is {state}")));
                }
            }
        }
    }

    #[test]
    fn submit_before_sign_and_accept_before_submit_are_refused() {
        assert_eq!(
            after(Issued, Submit).unwrap_err().why,
            "sign it first (签收)"
        );
        assert!(after(InProgress, Accept).is_err());
        assert!(after(Accepted, Return).is_err());
    }

    #[test]
    fn a_fold_skips_the_steps_that_lost_a_race() {
        // Two signs (two instances), an accept before any submission: the state is what the
        // allowed steps make.
        assert_eq!(fold([Sign, Sign, Accept, Feedback, Submit]), Submitted);
        assert_eq!(fold([]), Issued);
    }

    #[test]
    fn steps_and_kinds_name_each_other() {
        for step in Step::ALL {
            assert_eq!(Step::of_kind(step.kind()), Some(step));
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
        assert_eq!(Step::parse("approve"), None);
    }
}
