//! WebSocket streams to wall screens: subscriptions, snapshots, deltas, resume, presence.
//!
//! | file | owns |
//! |---|---|
//! | [`session`] | one connection: its subscriptions, what it sends and when it is cut off |
//! | [`resume`] | epochs and their message logs, for a client that reconnects |
//! | [`render`] | a delta's `nodes`, rendered once per tick for every screen watching the same thing |
//! | [`presence`] | who is connected, watching what |
//! | [`across`] | the screens and epochs of the other instances on one record stream |

pub mod across;
pub mod presence;
pub mod render;
pub mod resume;
pub mod session;

use std::time::Duration;

use tokio::sync::watch;

pub use presence::{Presence, ScreenInfo};
pub use session::{run_session, Connection, SessionContext, StreamSettings};

/// What every session shares: resumable epochs, the rendered deltas, and the signal to close.
pub struct Streams {
    pub resumes: resume::Resumes,
    /// How far the epochs of the other instances got (as they last shared).
    pub anchors: resume::Anchors,
    pub renderer: render::Renderer,
    /// Set on shutdown: how long sessions have to close (each picks a moment within it).
    closing: watch::Sender<Option<Duration>>,
    /// Sessions serving now (a shutdown waits for them, up to its drain window).
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Streams {
    pub fn new(settings: &StreamSettings) -> Self {
        Streams {
            resumes: resume::Resumes::new(
                settings.resume_epochs_per_token,
                settings.resume_epochs_total,
            ),
            anchors: resume::Anchors::default(),
            renderer: render::Renderer::default(),
            closing: watch::channel(None).0,
            open: Default::default(),
        }
    }

    /// Tells every session to close (server shutdown), each at a random moment within
    /// `spread` with close code 1012 (service restart), so that a wall of screens does not
    /// reconnect elsewhere in one burst.
    pub fn close_all(&self, spread: Duration) {
        self.closing.send_replace(Some(spread));
    }

    /// Becomes `Some(spread)` once the server is shutting down.
    pub fn closing(&self) -> watch::Receiver<Option<Duration>> {
        self.closing.subscribe()
    }

    /// Counts a session as open until the guard is dropped.
    pub fn session_opened(&self) -> OpenSession {
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        OpenSession(self.open.clone())
    }

    /// Sessions serving now.
    pub fn open_sessions(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the server is shutting down (readiness answers 503 from then on).
    pub fn is_draining(&self) -> bool {
        self.closing.borrow().is_some()
    }

    /// Forgets epochs of closed connections that nobody resumed in time, every few seconds.
    pub async fn run_housekeeping(self: std::sync::Arc<Self>) {
        let mut every = tokio::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            self.resumes.expire(resume::EPOCH_TTL);
        }
    }
}

/// An open session, counted until dropped.
pub struct OpenSession(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
