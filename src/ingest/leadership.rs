//! Whether this instance leads: writes the records into ClickHouse and evaluates the alerts.
//! Always, with its own log; with several instances on one record stream, while it holds the
//! writer's lease — and only until a moment safely before the lease could lapse unrenewed, so
//! that a stalled holder stops acting before another instance can take the lease over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

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
