//! Who leads: the instance that writes the records into ClickHouse and evaluates the alerts.
//! Always, with its own log; with several instances on one record stream, while it holds the
//! writer's lease — and only until a moment safely before the lease could lapse unrenewed, so
//! that a stalled holder stops acting before another instance can take the lease over.

//!
//! With a record stream the lease is a key with a time to live in a JetStream key-value
//! bucket: [`hold`] takes it when it is free and keeps renewing it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{kv, stream};
use tokio::sync::watch;

use super::{STREAM_END_UNKNOWN, WRITER_KEY};

#[derive(Clone)]
pub struct Leadership {
    held: watch::Receiver<bool>,
    /// `None`: for good (the local log); else held only before this moment unless renewed.
    until: Arc<Mutex<Option<Instant>>>,
}

impl Leadership {
    /// The only instance: it always leads.
    pub fn always() -> Self {
        Leadership {
            held: watch::channel(true).1,
            until: Arc::new(Mutex::new(None)),
        }
    }

    /// A lease to be kept by the returned keeper.
    pub fn leased() -> (Self, LeaseKeeper) {
        let (tx, held) = watch::channel(false);
        let until = Arc::new(Mutex::new(Some(Instant::now())));
        (
            Leadership {
                held,
                until: until.clone(),
            },
            LeaseKeeper { tx, until },
        )
    }

    /// Whether this instance leads at this moment.
    pub fn held(&self) -> bool {
        *self.held.borrow()
            && self
                .until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|u| Instant::now() < u)
    }

    /// Waits until this instance leads; `false` if the keeper is gone.
    pub async fn wait_held(&mut self) -> bool {
        loop {
            if self.held() {
                return true;
            }
            tokio::select! {
                changed = self.held.changed() => if changed.is_err() { return false; },
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}

/// The lease's side: records each renewal and the loss.
pub struct LeaseKeeper {
    tx: watch::Sender<bool>,
    until: Arc<Mutex<Option<Instant>>>,
}

impl LeaseKeeper {
    /// A renewal sent at `sent` succeeded: the key lives `ttl` from when the server stored it
    /// (after `sent`); this instance leads until two thirds of that, unless renewed again.
    pub fn renewed(&self, sent: Instant, ttl: Duration) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent + ttl * 2 / 3);
        self.tx.send_replace(true);
    }

    /// Another instance holds the lease.
    pub fn lost(&self) {
        *self.until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.tx.send_replace(false);
    }
}

/// Takes the writer's lease when it is free and keeps renewing it; `holding` says whether this
/// instance holds it. A renewal that fails (another instance took it after it expired) lets
/// go at once.
pub(super) async fn hold(
    lease: kv::Store,
    instance: String,
    ttl: Duration,
    keeper: LeaseKeeper,
    mut records: stream::Stream,
    read: watch::Receiver<u64>,
) {
    let mut revision: Option<u64> = None;
    // On taking the lease: the stream's last message then. This instance leads once its
    // reader got that far — the previous leader may have evaluated alerts on records this one
    // has not read yet, and would see them "resolve" and fire again.
    let mut catching_up: Option<u64> = None;
    loop {
        let sent = Instant::now();
        let attempt = async {
            match revision {
                None => lease
                    .create(WRITER_KEY, instance.clone().into())
                    .await
                    .map_err(|e| e.to_string()),
                Some(r) => lease
                    .update(WRITER_KEY, instance.clone().into(), r)
                    .await
                    .map_err(|e| e.to_string()),
            }
        };
        match tokio::time::timeout(ttl / 3, attempt).await {
            Ok(Ok(r)) => {
                if revision.is_none() {
                    catching_up = Some(STREAM_END_UNKNOWN);
                }
                revision = Some(r);
                // Asked with a time limit, and again at the next renewal if unanswered: NATS
                // may be electing a leader, and the renewals must go on meanwhile.
                if catching_up == Some(STREAM_END_UNKNOWN) {
                    if let Ok(Ok(info)) =
                        tokio::time::timeout(Duration::from_secs(1), records.info()).await
                    {
                        catching_up = Some(info.state.last_sequence);
                    }
                }
                if let Some(end) = catching_up {
                    if *read.borrow() >= end {
                        catching_up = None;
                        tracing::info!(
                            instance,
                            "this instance writes the record stream into ClickHouse and evaluates the alerts"
                        );
                    }
                }
                if catching_up.is_none() {
                    keeper.renewed(sent, ttl);
                }
            }
            Ok(Err(e)) => {
                catching_up = None;
                if revision.take().is_some() {
                    tracing::warn!(error = %e, "the writer's lease is lost");
                    keeper.lost();
                }
            }
            // Unanswered: leading stops by itself once the last renewal is too old.
            Err(_) => tracing::warn!("renewing the writer's lease timed out"),
        }
        let pause = if catching_up.is_some() {
            Duration::from_millis(100).min(ttl / 3)
        } else {
            ttl / 3
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_not_renewed_in_time_stops_leading_before_it_can_lapse() {
        assert!(Leadership::always().held());
        let (leadership, keeper) = Leadership::leased();
        assert!(!leadership.held(), "not before the first renewal");
        keeper.renewed(Instant::now(), Duration::from_secs(3));
        assert!(leadership.held());
        // Renewed long ago (a stalled process): no longer leading, though nobody said so.
        keeper.renewed(
            Instant::now() - Duration::from_secs(2),
            Duration::from_secs(3),
        );
        assert!(!leadership.held());
        keeper.renewed(Instant::now(), Duration::from_secs(3));
        keeper.lost();
        assert!(!leadership.held());
    }
}
