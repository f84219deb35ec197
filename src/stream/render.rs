//! The `nodes` JSON of a delta, rendered once per (tick, scope, metric set) however many
//! screens watch the same thing, and kept for the last ticks only.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;

use crate::domain::metric::MetricId;
use crate::domain::org::{NodeIdx, OrgTree};
use crate::live::TickChanges;
use crate::wire;

/// Ticks whose rendered deltas are kept (resume replays of older ones render again).
const KEEP_TICKS: usize = 64;

type Key = (u64, NodeIdx, Vec<MetricId>);

#[derive(Default)]
pub struct Renderer {
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: rustc_hash::FxHashMap<Key, Option<Arc<RawValue>>>,
    ticks: VecDeque<u64>,
}

impl Renderer {
    /// The delta `nodes` for a subscription to `scope` and `metrics`, or `None` when nothing
    /// it watches changed at this tick.
    pub fn delta_nodes(
        &self,
        tree: &OrgTree,
        tc: &TickChanges,
        scope: NodeIdx,
        metrics: &[MetricId],
    ) -> Option<Arc<RawValue>> {
        let key = (tc.tick, scope, metrics.to_vec());
        if let Some(hit) = self.lock().entries.get(&key) {
            return hit.clone();
        }
        let changed = tc.changed_for(tree, scope, metrics);
        let rendered = (!changed.is_empty()).then(|| {
            let nodes = wire::figures::nodes(tree, changed.iter().map(|(n, f)| (*n, f)));
            // Serialised straight into a raw value: no second parse.
            Arc::from(serde_json::value::to_raw_value(&nodes).unwrap_or_else(|_| empty()))
        });
        let mut cache = self.lock();
        if !cache.ticks.contains(&tc.tick) {
            cache.ticks.push_back(tc.tick);
            while cache.ticks.len() > KEEP_TICKS {
                if let Some(old) = cache.ticks.pop_front() {
                    cache.entries.retain(|k, _| k.0 != old);
                }
            }
        }
        cache.entries.insert(key, rendered.clone());
        rendered
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `{}`: what a `nodes` map that cannot be serialised (it always can) would send instead.
fn empty() -> Box<RawValue> {
    serde_json::value::to_raw_value(&serde_json::Map::new()).unwrap_or_default()
}
