//! The life of one (rule, node) alert — inactive → pending → firing → resolved, or no data —
//! as a pure function: the previous state and what an evaluation observed go in; the next
//! state, what to record, and whom to tell come out. No clock is read and nothing is sent here.

/// What one evaluation found for one (rule, node).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// Nothing feeds the rule at this node: not "condition false".
    NoData,
    /// The condition holds, with the value it was judged on.
    Holds(Option<f64>),
    /// The condition does not hold.
    Clear(Option<f64>),
}

impl Observation {
    pub fn value(self) -> Option<f64> {
        match self {
            Observation::NoData => None,
            Observation::Holds(v) | Observation::Clear(v) => v,
        }
    }
}

/// The state an alert is in while it exists (inactive alerts do not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Firing,
    /// The rule cannot be evaluated: nothing was reported (distinct from "condition false").
    NoData,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::NoData => "no_data",
        }
    }
}

/// An existing alert, as far as its life goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub phase: Phase,
    /// When it entered this phase (Unix seconds).
    pub since: i64,
    pub acknowledged: bool,
    /// Roster levels notified so far: 0 = the node's own duty officer, 1 = the next one up …
    pub escalation: u8,
}

/// The rule's and the duty roster's timings, and whether a silence covers the alert now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long the condition must hold before the alert fires.
    pub hold_for: i64,
    /// A firing, unacknowledged alert is notified again after this long (and a flapping one not
    /// sooner).
    pub repeat: i64,
    /// Unacknowledged this long per level, a firing alert goes one level up the roster.
    pub escalate_after: Option<i64>,
    pub silenced: bool,
}

/// Something to record in the alert history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Pending,
    Firing,
    Notified,
    Silenced,
    Escalated,
    Resolved,
    Inactive,
    NoData,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Pending => "pending",
            Event::Firing => "firing",
            Event::Notified => "notified",
            Event::Silenced => "silenced",
            Event::Escalated => "escalated",
            Event::Resolved => "resolved",
            Event::Inactive => "inactive",
            Event::NoData => "no_data",
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transition {
    /// The alert after the step; `None`: inactive (removed).
    pub next: Option<Current>,
    /// Whether an existing alert was replaced by a new one (its acknowledgement is gone).
    pub started: bool,
    pub events: Vec<Event>,
    /// A notice on the duty stream: "firing" or "resolved".
    pub broadcast: Option<&'static str>,
    /// Deliveries to the roster: (state, levels of the node's chain).
    pub deliveries: Vec<(&'static str, Vec<u8>)>,
    /// Notified now: the repeat interval restarts.
    pub notified: bool,
}

/// One step of one alert at `now`. `last_notified`: when this (rule, node) was last notified as
/// firing, kept after it resolves so that a flapping condition is not notified again inside
/// the repeat interval. `began`: when the data says the condition began to hold, if it says —
/// the hold-for time counts from then (a breach forty days old is not "pending" for an hour
/// because the server just started).
pub fn step(
    previous: Option<Current>,
    observed: Observation,
    policy: Policy,
    last_notified: Option<i64>,
    now: i64,
    began: Option<i64>,
) -> Transition {
    let held_since = |since: i64| began.map_or(since, |b| b.min(since));
    let mut t = Transition {
        next: previous,
        ..Default::default()
    };
    let repeat_due = last_notified.is_none_or(|at| now - at >= policy.repeat);
    // An alert that has just started firing: notify its node's duty officer, unless silenced
    // or already notified within the repeat interval (flapping).
    let announce = |t: &mut Transition| {
        if policy.silenced {
            t.events.push(Event::Silenced);
        } else if repeat_due {
            t.notified = true;
            t.broadcast = Some("firing");
            t.deliveries.push(("firing", vec![0]));
            t.events.push(Event::Notified);
        }
    };
    match (previous, observed) {
        (None, Observation::Holds(_))
        | (
            Some(Current {
                phase: Phase::NoData,
                ..
            }),
            Observation::Holds(_),
        ) => {
            let fire_now = now - held_since(now) >= policy.hold_for;
            t.started = true;
            t.next = Some(Current {
                phase: if fire_now {
                    Phase::Firing
                } else {
                    Phase::Pending
                },
                since: now,
                acknowledged: false,
                escalation: 0,
            });
            if fire_now {
                t.events.push(Event::Firing);
                announce(&mut t);
            } else {
                t.events.push(Event::Pending);
            }
        }
        (
            Some(
                current @ Current {
                    phase: Phase::Pending,
                    since,
                    ..
                },
            ),
            Observation::Holds(_),
        ) if now - held_since(since) >= policy.hold_for => {
            t.next = Some(Current {
                phase: Phase::Firing,
                since: now,
                ..current
            });
            t.events.push(Event::Firing);
            announce(&mut t);
        }
        (
            Some(
                mut current @ Current {
                    phase: Phase::Firing,
                    ..
                },
            ),
            Observation::Holds(_),
        ) => {
            let quiet = current.acknowledged || policy.silenced;
            if !quiet && repeat_due {
                t.notified = true;
                t.broadcast = Some("firing");
                t.deliveries
                    .push(("firing", (0..=current.escalation).collect()));
                t.events.push(Event::Notified);
            }
            // Unacknowledged for another `escalate_after`: one level up the roster.
            if let (false, Some(every)) = (quiet, policy.escalate_after.filter(|e| *e > 0)) {
                let due = ((now - current.since) / every).min(u8::MAX as i64) as u8;
                if due > current.escalation {
                    current.escalation = due;
                    t.deliveries.push(("firing", vec![due]));
                    t.events.push(Event::Escalated);
                }
            }
            t.next = Some(current);
        }
        (Some(current), Observation::Clear(_)) => {
            t.next = None;
            if current.phase == Phase::Firing {
                t.events.push(Event::Resolved);
                if !policy.silenced {
                    t.broadcast = Some("resolved");
                    t.deliveries
                        .push(("resolved", (0..=current.escalation).collect()));
                }
            } else {
                t.events.push(Event::Inactive);
            }
        }
        (
            Some(
                current @ Current {
                    phase: Phase::Pending | Phase::Firing,
                    ..
                },
            ),
            Observation::NoData,
        ) => {
            t.next = Some(Current {
                phase: Phase::NoData,
                since: now,
                ..current
            });
            t.events.push(Event::NoData);
        }
        // Inactive and clear or without data; without data and still so: nothing happens.
        _ => {}
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        hold_for: 600,
        repeat: 3600,
        escalate_after: Some(1800),
        silenced: false,
    };

    fn run(steps: &[(i64, Observation)], policy: Policy) -> Vec<Transition> {
        let (mut current, mut notified) = (None, None);
        steps
            .iter()
            .map(|&(now, obs)| {
                let t = step(current, obs, policy, notified, now, None);
                current = t.next;
                if t.notified {
                    notified = Some(now);
                }
                t
            })
            .collect()
    }

    fn events(t: &Transition) -> Vec<&'static str> {
        t.events.iter().map(|e| e.as_str()).collect()
    }

    #[test]
    fn a_condition_must_hold_for_its_duration_before_firing_and_is_notified_once() {
        let ts = run(
            &[
                (0, Observation::Holds(Some(0.5))),
                (300, Observation::Holds(Some(0.5))),
                (600, Observation::Holds(Some(0.5))),
                (900, Observation::Holds(Some(0.5))),
            ],
            POLICY,
        );
        assert_eq!(events(&ts[0]), ["pending"]);
        assert!(events(&ts[1]).is_empty(), "not yet 10 minutes");
        assert_eq!(events(&ts[2]), ["firing", "notified"]);
        assert_eq!(ts[2].deliveries, [("firing", vec![0])]);
        assert_eq!(ts[2].broadcast, Some("firing"));
        assert!(events(&ts[3]).is_empty(), "no repeat inside the hour");
        assert_eq!(ts[3].next.map(|c| c.phase), Some(Phase::Firing));
    }

    #[test]
    fn unacknowledged_it_escalates_and_repeats_and_resolves_to_everyone_told() {
        let holds = Observation::Holds(Some(1.0));
        let policy = Policy {
            hold_for: 0,
            ..POLICY
        };
        let ts = run(
            &[
                (0, holds),
                (1800, holds),
                (3600, holds),
                (3700, Observation::Clear(Some(0.0))),
            ],
            policy,
        );
        assert_eq!(events(&ts[0]), ["firing", "notified"]);
        assert_eq!(events(&ts[1]), ["escalated"]);
        assert_eq!(ts[1].deliveries, [("firing", vec![1])]);
        // An hour after the first notice: repeated to both levels, then up to the third.
        assert_eq!(events(&ts[2]), ["notified", "escalated"]);
        assert_eq!(
            ts[2].deliveries,
            [("firing", vec![0, 1]), ("firing", vec![2])]
        );
        assert_eq!(events(&ts[3]), ["resolved"]);
        assert_eq!(ts[3].deliveries, [("resolved", vec![0, 1, 2])]);
        assert_eq!(ts[3].next, None);
    }

    #[test]
    fn acknowledged_or_silenced_it_stays_quiet_but_still_changes_state() {
        let acked = Current {
            phase: Phase::Firing,
            since: 0,
            acknowledged: true,
            escalation: 0,
        };
        let t = step(
            Some(acked),
            Observation::Holds(None),
            POLICY,
            Some(0),
            7200,
            None,
        );
        assert!(t.events.is_empty() && t.deliveries.is_empty());
        let silenced = Policy {
            silenced: true,
            hold_for: 0,
            ..POLICY
        };
        let t = step(None, Observation::Holds(None), silenced, None, 0, None);
        assert_eq!(events(&t), ["firing", "silenced"]);
        assert!(t.broadcast.is_none() && t.deliveries.is_empty());
        let t = step(t.next, Observation::Clear(None), silenced, None, 60, None);
        assert_eq!(events(&t), ["resolved"]);
        assert!(
            t.broadcast.is_none(),
            "a silenced resolution is recorded, not told"
        );
    }

    #[test]
    fn no_data_is_its_own_state_not_condition_false() {
        let policy = Policy {
            hold_for: 0,
            ..POLICY
        };
        let ts = run(
            &[
                (0, Observation::NoData),
                (60, Observation::Holds(None)),
                (120, Observation::NoData),
                (180, Observation::NoData),
                (240, Observation::Holds(None)),
            ],
            policy,
        );
        assert!(ts[0].next.is_none() && ts[0].events.is_empty());
        assert_eq!(events(&ts[2]), ["no_data"]);
        assert!(ts[3].events.is_empty());
        // Data again: a new alert, not notified again inside the repeat interval (flapping).
        assert_eq!(events(&ts[4]), ["firing"]);
        assert!(ts[4].started);
    }

    #[test]
    fn a_breach_the_data_dates_earlier_counts_its_hold_from_then() {
        // The data says the condition has held for 20 minutes: a 10-minute rule fires at once.
        let t = step(
            None,
            Observation::Holds(None),
            POLICY,
            None,
            3000,
            Some(1800),
        );
        assert_eq!(events(&t), ["firing", "notified"]);
        // Only 5 minutes: pending, and firing once 10 minutes have passed since the breach.
        let t = step(
            None,
            Observation::Holds(None),
            POLICY,
            None,
            3000,
            Some(2700),
        );
        assert_eq!(events(&t), ["pending"]);
        let t = step(
            t.next,
            Observation::Holds(None),
            POLICY,
            None,
            3300,
            Some(2700),
        );
        assert_eq!(events(&t), ["firing", "notified"]);
    }

    #[test]
    fn a_pending_alert_that_clears_goes_inactive_without_telling_anyone() {
        let ts = run(
            &[
                (0, Observation::Holds(None)),
                (60, Observation::Clear(None)),
            ],
            POLICY,
        );
        assert_eq!(events(&ts[1]), ["inactive"]);
        assert!(ts[1].broadcast.is_none() && ts[1].deliveries.is_empty());
    }
}
