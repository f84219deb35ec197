//! What applying a record touches besides a measure's own leaf: the subtree sums on the org's
//! path to the root, and the marks of the nodes whose figures may have changed. Shared by every
//! measure type's leaf.

use crate::domain::org::{NodeIdx, OrgTree};

pub fn hash_str(s: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(s.as_bytes())
}

/// Nodes whose figures may have changed since they were last read.
pub struct Dirty {
    flags: Vec<bool>,
    list: Vec<NodeIdx>,
}

impl Dirty {
    pub fn new(nodes: usize) -> Self {
        Dirty {
            flags: vec![false; nodes],
            list: Vec::new(),
        }
    }

    pub fn mark(&mut self, n: NodeIdx) {
        if !self.flags[n as usize] {
            self.flags[n as usize] = true;
            self.list.push(n);
        }
    }

    pub fn take(&mut self) -> Vec<NodeIdx> {
        for &n in &self.list {
            self.flags[n as usize] = false;
        }
        std::mem::take(&mut self.list)
    }
}

/// What applying a record needs besides the leaf: the tree for paths, and the dirty marks.
pub struct Touch<'a> {
    pub tree: &'a OrgTree,
    pub dirty: &'a mut Dirty,
}

impl Touch<'_> {
    /// Adds `delta` to `sums` at `org` and every node above it (only at `org` when `own`).
    /// Saturating: validation keeps every value in a plausible range, so sums stay far from
    /// `i64`'s limits; should one escape it, a figure pins at the limit instead of wrapping.
    pub fn add(&mut self, sums: &mut [i64], org: NodeIdx, own: bool, delta: i64) {
        if delta == 0 {
            return;
        }
        if own {
            sums[org as usize] = sums[org as usize].saturating_add(delta);
            self.dirty.mark(org);
            return;
        }
        for n in self.tree.path_to_root(org) {
            sums[n as usize] = sums[n as usize].saturating_add(delta);
            self.dirty.mark(n);
        }
    }

    pub fn mark_path(&mut self, org: NodeIdx) {
        for n in self.tree.path_to_root(org) {
            self.dirty.mark(n);
        }
    }
}
