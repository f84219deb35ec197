//! WebSocket streams to wall screens: subscriptions, snapshots, deltas, resume, presence.
//!
//! | file | owns |
//! |---|---|
//! | [`session`] | one connection: its subscriptions, what it sends and when it is cut off |
//! | [`resume`] | epochs and their message logs, for a client that reconnects |
//! | [`render`] | a delta's `nodes`, rendered once per tick for every screen watching the same thing |
//! | [`presence`] | who is connected, watching what |

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
    pub renderer: render::Renderer,
    closing: watch::Sender<bool>,
}

impl Streams {
    pub fn new(settings: &StreamSettings) -> Self {
        Streams {
            resumes: resume::Resumes::new(
                settings.resume_epochs_per_token,
                settings.resume_epochs_total,
            ),
            renderer: render::Renderer::default(),
            closing: watch::channel(false).0,
        }
    }

    /// Tells every session to close (server shutdown).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once the server is shutting down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
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
