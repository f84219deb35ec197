//! A record's versions: what its stored rows say about it once corrections exist.
//!
//! A record (an id) is stored as rows of `events`: its first version (version 1, sign 1); for
//! each correction a cancelling copy of the version replaced (sign -1) and the new version
//! (sign 1, one more); for a withdrawal the cancelling copy alone. The **effective** record is
//! the last version, unless it is cancelled. This module reads a record's rows into that
//! history, and makes the rows of a correction or a withdrawal.

use super::record::EventRow;

/// What became of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// The effective record.
    Current,
    /// Replaced by the next version (a correction).
    Replaced,
    /// Withdrawn: no version of the record counts any more.
    Withdrawn,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Current => "current",
            VersionState::Replaced => "replaced",
            VersionState::Withdrawn => "withdrawn",
        }
    }
}

/// One version, with the row that withdrew it when it was withdrawn.
#[derive(Debug, Clone)]
pub struct Version {
    pub row: EventRow,
    pub state: VersionState,
    pub withdrawal: Option<EventRow>,
}

/// Every version of one record, oldest first.
#[derive(Debug, Clone)]
pub struct History {
    pub versions: Vec<Version>,
}

impl History {
    /// The history the rows of one id tell (in any order); `None` when none of them is a
    /// version (no such record).
    pub fn of(mut rows: Vec<EventRow>) -> Option<History> {
        rows.sort_by_key(|r| r.seq);
        let (cancelling, kept): (Vec<EventRow>, Vec<EventRow>) =
            rows.into_iter().partition(EventRow::is_cancelling);
        let mut versions: Vec<EventRow> = Vec::new();
        for row in kept {
            // One row per version (exactly-once); should another appear, the first stands.
            if !versions.iter().any(|v| v.version == row.version) {
                versions.push(row);
            }
        }
        versions.sort_by_key(|r| r.version);
        let newest = versions.last()?.version;
        let versions = versions
            .into_iter()
            .map(|row| {
                let cancelled = cancelling.iter().find(|c| c.version == row.version);
                let (state, withdrawal) = match cancelled {
                    None => (VersionState::Current, None),
                    Some(_) if row.version < newest => (VersionState::Replaced, None),
                    Some(c) => (VersionState::Withdrawn, Some(c.clone())),
                };
                Version {
                    row,
                    state,
                    withdrawal,
                }
            })
            .collect();
        Some(History { versions })
    }

    /// The newest version (current or withdrawn).
    pub fn newest(&self) -> &Version {
        // `of` never makes an empty history.
        &self.versions[self.versions.len() - 1]
    }

    pub fn is_withdrawn(&self) -> bool {
        self.newest().state == VersionState::Withdrawn
    }
}

/// Whether two rows hold the same record content (what a correction may change): re-sending a
/// correction already made changes nothing.
pub fn same_content(a: &EventRow, b: &EventRow) -> bool {
    a.kind == b.kind
        && a.org == b.org
        && a.at == b.at
        && a.subject == b.subject
        && a.num_keys == b.num_keys
        && a.num_values == b.num_values
        && a.data == b.data
        && a.lon == b.lon
        && a.lat == b.lat
}

/// The rows that replace the newest version of `history` by `new` (validated, same id and
/// kind): the cancelling copy of the version replaced, then the new version.
pub fn correction_rows(
    history: &History,
    mut new: EventRow,
    actor: &str,
    reason: &str,
) -> [EventRow; 2] {
    let replaced = &history.newest().row;
    new.version = replaced.version + 1;
    new.sign = 1;
    new.cancels = 0;
    new.actor = actor.to_string();
    new.reason = reason.to_string();
    let cancel = replaced.cancelling(actor, reason, new.received_at);
    [cancel, new]
}

/// The row that withdraws the newest version of `history`, received at `received_at`.
pub fn withdrawal_row(history: &History, actor: &str, reason: &str, received_at: u32) -> EventRow {
    history.newest().row.cancelling(actor, reason, received_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::record::Kind;

    fn first(seq: u64, headcount: i64) -> EventRow {
        let mut row = EventRow::blank(
            "hc-1".into(),
            Kind::STAFF_HEADCOUNT,
            "440304001".into(),
            "440304".into(),
            1_780_000_000,
            1_780_000_000,
            "api",
        );
        row.seq = seq;
        row.set_number("headcount", headcount);
        row
    }

    fn stored(rows: &mut Vec<EventRow>, mut new: Vec<EventRow>) {
        let next = rows.iter().map(|r| r.seq).max().unwrap_or(0) + 1;
        for (i, r) in new.iter_mut().enumerate() {
            r.seq = next + i as u64;
        }
        rows.extend(new);
    }

    #[test]
    fn a_correction_replaces_the_newest_version_and_a_withdrawal_ends_the_record() {
        let mut rows = vec![first(7, 120)];
        let history = History::of(rows.clone()).expect("a record");
        assert_eq!(history.newest().state, VersionState::Current);

        let [cancel, new] = correction_rows(&history, first(0, 12), "文员", "多打了一个 0");
        assert_eq!((cancel.sign, cancel.cancels, cancel.version), (-1, 7, 1));
        assert_eq!(
            (new.sign, new.version, new.number("headcount")),
            (1, 2, Some(12))
        );
        stored(&mut rows, vec![cancel, new]);

        let history = History::of(rows.clone()).expect("a record");
        let states: Vec<_> = history.versions.iter().map(|v| v.state).collect();
        assert_eq!(states, [VersionState::Replaced, VersionState::Current]);
        assert_eq!(history.newest().row.reason, "多打了一个 0");

        stored(
            &mut rows,
            vec![withdrawal_row(&history, "文员", "重复上报", 1_780_000_500)],
        );
        let history = History::of(rows).expect("a record");
        assert!(history.is_withdrawn());
        assert_eq!(history.newest().row.version, 2);
        let withdrawal = history
            .newest()
            .withdrawal
            .as_ref()
            .expect("who withdrew it");
        assert_eq!(
            (withdrawal.reason.as_str(), withdrawal.cancels),
            ("重复上报", 9)
        );
        assert_eq!(history.versions[0].state, VersionState::Replaced);
    }

    #[test]
    fn no_version_is_no_record_and_content_ignores_who_and_when_it_was_sent() {
        assert!(History::of(Vec::new()).is_none());
        let a = first(1, 12);
        let mut b = first(9, 12);
        b.received_at += 60;
        b.actor = "另一人".into();
        assert!(same_content(&a, &b));
        b.set_number("headcount", 13);
        assert!(!same_content(&a, &b));
    }
}
