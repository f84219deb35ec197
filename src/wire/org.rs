//! The org tree as `GET /api/v1/org` shows it.

use serde::Serialize;

use crate::domain::org::{NodeIdx, OrgTree};

/// A node and its descendants.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(no_recursion)]
pub struct OrgView {
    pub code: String,
    pub name: String,
    /// city | district | street | community
    pub level: &'static str,
    pub parent: Option<String>,
    pub children: Vec<OrgView>,
}

impl OrgView {
    /// The subtree rooted at `idx`, `depth` levels of children deep (all without one).
    pub fn of(tree: &OrgTree, idx: NodeIdx, depth: Option<usize>) -> Self {
        let n = tree.node(idx);
        let children = match depth {
            Some(0) => Vec::new(),
            _ => n
                .children
                .iter()
                .map(|&c| OrgView::of(tree, c, depth.map(|d| d - 1)))
                .collect(),
        };
        OrgView {
            code: n.code.clone(),
            name: n.name.clone(),
            level: n.level.as_str(),
            parent: n.parent.map(|p| tree.node(p).code.clone()),
            children,
        }
    }
}
