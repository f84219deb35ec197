//! WebSocket streams to wall screens: subscriptions, snapshots, deltas, resume, presence.

pub mod presence;
pub mod session;

pub use presence::{Presence, ScreenInfo};
pub use session::{run_session, Connection, SessionContext, StreamSettings};
