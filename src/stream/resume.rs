//! Resumable streams: each subscription's messages are numbered within an epoch, and the
//! epoch's log says which tick each message carried, so a client that reconnects with
//! `resume: {epoch, seq}` gets exactly the deltas it missed (from the hub's tick history).
//!
//! Across instances (or a restart): an epoch's name carries the position its snapshot stood
//! at, and each instance shares every few seconds how far each of its epochs got
//! ([`Anchor`]). An instance that never served an epoch resumes it from there with one delta
//! of everything that changed since (`Hub::history_after`), the seqs going on unbroken.
//!
//! Bounded: epochs of open connections by the connections (each holds at most
//! `stream.max_subscriptions`); a re-sent or withdrawn subscription's epoch is forgotten at
//! once; epochs whose connection closed stay resumable for `EPOCH_TTL`, at most
//! `resume_epochs_per_token` per token and `resume_epochs_total` in all, the oldest forgotten
//! first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::metric::MetricId;
use crate::domain::org::NodeIdx;
use crate::live::Position;

/// A point of an epoch: message `seq` showed the figures at `seen` (or later ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub seen: Position,
}

impl Anchor {
    /// A new epoch's name: the position of its snapshot (message 1), and a random part.
    pub fn new_epoch(at: Position) -> String {
        format!(
            "{:x}.{:x}.{:016x}",
            at.upto,
            at.when.max(0),
            rand::random::<u64>()
        )
    }

    /// Where an epoch began (message 1), read from its name; `None` for a name no instance
    /// made.
    pub fn parse_epoch(epoch: &str) -> Option<Anchor> {
        let mut parts = epoch.split('.');
        let upto = u64::from_str_radix(parts.next()?, 16).ok()?;
        let when = i64::from_str_radix(parts.next()?, 16).ok()?;
        let random = parts.next()?;
        if random.len() != 16 || parts.next().is_some() {
            return None;
        }
        Some(Anchor {
            seq: 1,
            seen: Position { upto, when },
        })
    }
}

/// How far the epochs the other instances serve got, as they last shared it.
#[derive(Default)]
pub struct Anchors {
    by_epoch: Mutex<HashMap<String, Anchor>>,
}

impl Anchors {
    pub fn find(&self, epoch: &str) -> Option<Anchor> {
        self.lock().get(epoch).copied()
    }

    /// Replaces everything known with what the instances shared last.
    pub fn replace(&self, anchors: HashMap<String, Anchor>) {
        *self.lock() = anchors;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Anchor>> {
        self.by_epoch.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long an epoch whose connection closed stays resumable.
pub const EPOCH_TTL: Duration = Duration::from_secs(600);

/// Messages of an epoch remembered for resume (8 KiB of ticks at most).
pub const EPOCH_KEEP: usize = 1024;

/// A subscription stream that can be resumed: which tick each of its messages carried.
#[derive(Debug, Clone)]
pub struct EpochState {
    pub scope: NodeIdx,
    pub metrics: Vec<MetricId>,
    /// Seq of the first entry of `ticks`.
    pub base_seq: u64,
    /// `ticks[i]` is the tick that message `base_seq + i` carried.
    pub ticks: VecDeque<u64>,
    pub touched: Instant,
    /// Whether a connection is sending this epoch's messages now.
    pub attached: bool,
    /// The last message's seq and the position it showed: shared with the other instances.
    pub last: Anchor,
}

/// One epoch's message log, shared by the index (for a client that reconnects) and the
/// subscription sending its messages. Each message to each screen is recorded here, under a
/// lock of its own: a thousand screens do not contend for the index at every tick.
#[derive(Clone)]
pub struct EpochLog(Arc<Mutex<EpochState>>);

impl EpochLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, EpochState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> EpochState {
        self.lock().clone()
    }

    /// A connection sends this epoch's messages again (a client resumed it): it is not
    /// forgotten while so.
    pub fn attach(&self) {
        self.lock().attached = true;
    }

    /// The last message's view stands at `seen` as well (nothing it shows changed since).
    pub fn see(&self, seen: Position) {
        let mut e = self.lock();
        if seen.upto >= e.last.seen.upto {
            e.last.seen = seen;
        }
    }

    /// Records that message `seq` carried `tick`, showing the figures at `seen` (keeping the
    /// last `EPOCH_KEEP`).
    pub fn record(&self, seq: u64, tick: u64, seen: Position) {
        let mut e = self.lock();
        e.last = Anchor { seq, seen };
        // A replay re-sends seqs already recorded: cut the record back to before `seq`.
        let idx = seq.saturating_sub(e.base_seq) as usize;
        e.ticks.truncate(idx);
        e.ticks.push_back(tick);
        while e.ticks.len() > EPOCH_KEEP {
            e.ticks.pop_front();
            e.base_seq += 1;
        }
        e.touched = Instant::now();
    }
}

#[derive(Default)]
struct Index {
    /// Keys are server-made uuids (clients only look up): FxHash is safe here.
    by_id: rustc_hash::FxHashMap<String, EpochLog>,
    /// Detached epochs per token, oldest first (an entry may have been re-attached since).
    detached: HashMap<String, VecDeque<String>>,
    detached_count: usize,
}

/// The epochs a client could resume.
pub struct Resumes {
    index: Mutex<Index>,
    per_token: usize,
    total: usize,
}

impl Resumes {
    pub fn new(per_token: usize, total: usize) -> Self {
        Resumes {
            index: Mutex::new(Index::default()),
            per_token: per_token.max(1),
            total: total.max(1),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The message log of `epoch`, for a client that would resume it ([`EpochLog::attach`]
    /// once it does).
    pub fn find(&self, epoch: &str) -> Option<EpochLog> {
        self.index().by_id.get(epoch).cloned()
    }

    /// Starts the message log of a new epoch, whose first message `seq` carried `tick`,
    /// showing the figures at `seen`.
    pub fn open(
        &self,
        epoch: &str,
        scope: NodeIdx,
        metrics: &[MetricId],
        seq: u64,
        tick: u64,
        seen: Position,
    ) -> EpochLog {
        let log = EpochLog(Arc::new(Mutex::new(EpochState {
            scope,
            metrics: metrics.to_vec(),
            base_seq: seq,
            ticks: VecDeque::from([tick]),
            touched: Instant::now(),
            attached: true,
            last: Anchor { seq, seen },
        })));
        self.index().by_id.insert(epoch.to_string(), log.clone());
        log
    }

    /// Forgets an epoch its connection replaced or dropped (a re-sent or withdrawn
    /// subscription): nobody can resume it any more.
    pub fn close(&self, epoch: &str) {
        self.index().by_id.remove(epoch);
    }

    /// The connection of these epochs closed: they stay resumable for a while, within the
    /// caps, the oldest of the token's (and of all) forgotten first.
    pub fn detach(&self, token_key: &str, epochs: impl IntoIterator<Item = String>) {
        let mut guard = self.index();
        let e = &mut *guard;
        for id in epochs {
            let Some(log) = e.by_id.get(&id) else {
                continue;
            };
            log.lock().attached = false;
            e.detached
                .entry(token_key.to_string())
                .or_default()
                .push_back(id);
            e.detached_count += 1;
        }
        let forget = |e: &mut Index, token: &str| {
            let Some(queue) = e.detached.get_mut(token) else {
                return;
            };
            if let Some(id) = queue.pop_front() {
                e.detached_count -= 1;
                // An entry re-attached since (resumed by a new connection) stays.
                if e.by_id.get(&id).is_some_and(|l| !l.lock().attached) {
                    e.by_id.remove(&id);
                }
            }
            if queue.is_empty() {
                e.detached.remove(token);
            }
        };
        while e
            .detached
            .get(token_key)
            .is_some_and(|q| q.len() > self.per_token)
        {
            forget(e, token_key);
        }
        while e.detached_count > self.total {
            // Over the total: the token with the longest queue gives up its oldest.
            let Some(longest) = e
                .detached
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            forget(e, &longest);
        }
    }

    /// How far each epoch a client could resume got: what the other instances resume from.
    pub fn anchors(&self) -> Vec<(String, Anchor)> {
        let logs: Vec<(String, EpochLog)> = self
            .index()
            .by_id
            .iter()
            .map(|(id, log)| (id.clone(), log.clone()))
            .collect();
        logs.into_iter()
            .map(|(id, log)| (id, log.lock().last))
            .collect()
    }

    /// Epochs a client could resume now (of open and of closed connections).
    pub fn count(&self) -> usize {
        self.index().by_id.len()
    }

    /// Forgets detached epochs older than `ttl`.
    pub fn expire(&self, ttl: Duration) {
        let mut guard = self.index();
        let e = &mut *guard;
        e.by_id.retain(|_, log| {
            let s = log.lock();
            s.attached || s.touched.elapsed() < ttl
        });
        let by_id = &e.by_id;
        let mut count = 0;
        e.detached.retain(|_, q| {
            q.retain(|id| by_id.contains_key(id));
            count += q.len();
            !q.is_empty()
        });
        e.detached_count = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_epoch_is_anchored_at_the_latest_position_its_view_stands_at() {
        let r = Resumes::new(3, 100);
        let at = |upto| Position {
            upto,
            when: upto as i64 * 1000,
        };
        let log = r.open("e", 0, &[], 1, 7, at(10));
        log.record(2, 8, at(20));
        // Ticks that changed nothing it watches: the view at message 2 stands there too.
        log.see(at(50));
        log.see(at(40)); // an older position never moves it back
        assert_eq!(
            r.anchors(),
            vec![(
                "e".to_string(),
                Anchor {
                    seq: 2,
                    seen: at(50)
                }
            )]
        );
        log.record(3, 9, at(60));
        assert_eq!(
            r.anchors()[0].1,
            Anchor {
                seq: 3,
                seen: at(60)
            }
        );
    }

    #[test]
    fn an_epoch_name_carries_where_it_began() {
        let at = Position {
            upto: 0x1234_0000_0002,
            when: 1_764_000_000_123,
        };
        let epoch = Anchor::new_epoch(at);
        assert_eq!(
            Anchor::parse_epoch(&epoch),
            Some(Anchor { seq: 1, seen: at })
        );
        assert_ne!(epoch, Anchor::new_epoch(at), "the random part differs");
        for made_up in [
            "",
            "abc",
            "1.2",
            "1.2.3",
            "x.2.0123456789abcdef",
            "1.2.0123456789abcdef.4",
        ] {
            assert_eq!(Anchor::parse_epoch(made_up), None, "{made_up}");
        }
    }

    #[test]
    fn resumable_epochs_are_bounded_per_token_and_replaced_ones_forgotten() {
        let r = Resumes::new(3, 1000);
        let metrics = [crate::domain::catalogue::Catalogue::shipped()
            .parse_name("open_appeals")
            .unwrap()];
        // One connection re-subscribing: each replaced epoch is closed at once.
        for i in 0..1000 {
            r.open(&format!("e{i}"), 0, &metrics, 1, 0, Position::default());
            if i > 0 {
                r.close(&format!("e{}", i - 1));
            }
        }
        assert_eq!(r.count(), 1);
        // Connections of one token closing one after another: at most 3 stay resumable.
        for i in 0..10 {
            let id = format!("t{i}");
            r.open(&id, 0, &metrics, 1, 0, Position::default());
            r.detach("token-a", [id]);
        }
        r.detach("token-b", ["e999".to_string()]);
        assert_eq!(r.count(), 4);
        assert!(r.find("t0").is_none());
        r.find("t9").expect("the newest three stay").attach();
        // A resumed (re-attached) epoch is not forgotten while in use.
        for i in 10..20 {
            let id = format!("t{i}");
            r.open(&id, 0, &metrics, 1, 0, Position::default());
            r.detach("token-a", [id]);
        }
        assert!(r.find("t9").is_some(), "attached again above, so kept");
    }

    #[test]
    fn the_total_bound_takes_from_the_token_holding_most() {
        let r = Resumes::new(100, 5);
        let metrics = [crate::domain::catalogue::Catalogue::shipped()
            .parse_name("open_appeals")
            .unwrap()];
        for (token, n) in [("a", 5), ("b", 2)] {
            for i in 0..n {
                let id = format!("{token}{i}");
                r.open(&id, 0, &metrics, 1, 0, Position::default());
                r.detach(token, [id]);
            }
        }
        assert_eq!(r.count(), 5);
        assert!(r.find("b0").is_some(), "b's oldest kept: a held the most");
        assert!(r.find("a0").is_none() && r.find("a1").is_none());
        assert!(r.find("a2").is_some());
    }
}
