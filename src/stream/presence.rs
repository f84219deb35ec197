//! Which screens are connected, and what they watch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::domain::org::NodeIdx;

#[derive(Debug, Clone)]
pub struct SubscriptionInfo {
    pub id: String,
    pub scope: String,
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ScreenInfo {
    pub id: u64,
    /// The token's name.
    pub name: String,
    pub remote: String,
    pub connected_at: String,
    pub subscriptions: Vec<SubscriptionInfo>,
    pub scopes: Vec<NodeIdx>,
}

#[derive(Default)]
pub struct Presence {
    next: AtomicU64,
    screens: Mutex<HashMap<u64, ScreenInfo>>,
}

impl Presence {
    pub fn join(&self, name: String, remote: String, connected_at: String) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let info = ScreenInfo {
            id,
            name,
            remote,
            connected_at,
            subscriptions: Vec::new(),
            scopes: Vec::new(),
        };
        self.lock().insert(id, info);
        id
    }

    pub fn set_subscriptions(&self, id: u64, subs: Vec<(SubscriptionInfo, NodeIdx)>) {
        if let Some(s) = self.lock().get_mut(&id) {
            s.scopes = subs.iter().map(|(_, n)| *n).collect();
            s.subscriptions = subs.into_iter().map(|(i, _)| i).collect();
        }
    }

    pub fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    pub fn list(&self) -> Vec<ScreenInfo> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, ScreenInfo>> {
        self.screens.lock().unwrap_or_else(|p| p.into_inner())
    }
}
