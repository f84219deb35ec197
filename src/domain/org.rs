//! The org tree — the nation → province → city → district/county → street/township →
//! community/village levels of the veterans service system, rooted wherever the configured
//! region is (Shenzhen: a city and the three levels below it) — and the questions every other
//! module asks of it: who is my parent, what is my path to the root, what is in my subtree.

/// The level of a node in the org tree. Rule and dashboard files name levels in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Nation,
    Province,
    City,
    /// A district or county (区、县).
    District,
    /// A street office or township (街道、乡镇).
    Street,
    /// A community or village (社区、村).
    Community,
}

impl Level {
    pub const ALL: [Level; 6] = [
        Level::Nation,
        Level::Province,
        Level::City,
        Level::District,
        Level::Street,
        Level::Community,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Nation => "nation",
            Level::Province => "province",
            Level::City => "city",
            Level::District => "district",
            Level::Street => "street",
            Level::Community => "community",
        }
    }

    /// Chinese label as used on the wall screen.
    pub fn label_zh(self) -> &'static str {
        match self {
            Level::Nation => "全国",
            Level::Province => "省",
            Level::City => "市",
            Level::District => "区",
            Level::Street => "街道",
            Level::Community => "社区",
        }
    }
}

/// Whether definitions naming `levels` hold at `level`: the levels named and, where they name
/// the city, every level above it (a province's or the nation's center keeps the same records,
/// and its figures roll up as the city's do) — so a definition written for Shenzhen means the
/// same in a province or the nation.
pub fn levels_hold_at(levels: &[Level], level: Level) -> bool {
    levels.contains(&level) || (level < Level::City && levels.contains(&Level::City))
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of a node inside its [`OrgTree`]; stable for the life of the tree.
pub type NodeIdx = u32;

#[derive(Debug, Clone)]
pub struct OrgNode {
    pub code: String,
    pub name: String,
    pub level: Level,
    pub parent: Option<NodeIdx>,
    pub children: Vec<NodeIdx>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrgTreeError {
    #[error("org code {0} appears twice")]
    DuplicateCode(String),
    #[error("org {child} names parent {parent}, which is not in the tree")]
    MissingParent { child: String, parent: String },
    #[error("the tree must start with exactly one root: the nation, a province or a city")]
    NoRoot,
}

/// The whole org tree, immutable once built. Nodes are kept in one vector in insertion order
/// (parents before children), so a path to the root is a walk over indices.
#[derive(Debug, Clone)]
pub struct OrgTree {
    nodes: Vec<OrgNode>,
    /// Looked up for every record: FxHash, since codes are not attacker-chosen keys of an
    /// unbounded map (the tree is fixed reference data).
    by_code: rustc_hash::FxHashMap<String, NodeIdx>,
}

/// One node as the builder receives it: parents must be added before their children.
pub struct NewNode {
    pub code: String,
    pub name: String,
    pub level: Level,
    pub parent: Option<String>,
}

impl OrgTree {
    /// Builds the tree; the first node must be the root (no parent): the nation, a province or
    /// a city.
    pub fn build(new_nodes: impl IntoIterator<Item = NewNode>) -> Result<Self, OrgTreeError> {
        let mut tree = OrgTree {
            nodes: Vec::new(),
            by_code: Default::default(),
        };
        for n in new_nodes {
            if tree.by_code.contains_key(&n.code) {
                return Err(OrgTreeError::DuplicateCode(n.code));
            }
            let parent = match &n.parent {
                None if tree.nodes.is_empty() && n.level <= Level::City => None,
                None => return Err(OrgTreeError::NoRoot),
                Some(p) => {
                    Some(
                        *tree
                            .by_code
                            .get(p)
                            .ok_or_else(|| OrgTreeError::MissingParent {
                                child: n.code.clone(),
                                parent: p.clone(),
                            })?,
                    )
                }
            };
            let idx = tree.nodes.len() as NodeIdx;
            if let Some(p) = parent {
                tree.nodes[p as usize].children.push(idx);
            }
            tree.by_code.insert(n.code.clone(), idx);
            tree.nodes.push(OrgNode {
                code: n.code,
                name: n.name,
                level: n.level,
                parent,
                children: Vec::new(),
            });
        }
        if tree.nodes.is_empty() {
            return Err(OrgTreeError::NoRoot);
        }
        Ok(tree)
    }

    pub fn root(&self) -> NodeIdx {
        0
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, idx: NodeIdx) -> &OrgNode {
        &self.nodes[idx as usize]
    }

    pub fn get(&self, code: &str) -> Option<NodeIdx> {
        self.by_code.get(code).copied()
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeIdx, &OrgNode)> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (i as NodeIdx, n))
    }

    pub fn count(&self, level: Level) -> usize {
        self.nodes.iter().filter(|n| n.level == level).count()
    }

    /// The node itself, then its parent, … up to the city.
    pub fn path_to_root(&self, idx: NodeIdx) -> PathToRoot<'_> {
        PathToRoot {
            tree: self,
            next: Some(idx),
        }
    }

    /// The node and its direct children: what a scope shows.
    pub fn with_children(&self, idx: NodeIdx) -> Vec<NodeIdx> {
        std::iter::once(idx)
            .chain(self.node(idx).children.iter().copied())
            .collect()
    }

    /// The node that answers `idx` from the level above: its district for a community (the
    /// street offices answer to the district too), its parent for any other node, the root
    /// itself for the root.
    pub fn level_above(&self, idx: NodeIdx) -> NodeIdx {
        match self.node(idx).level {
            Level::Community => self.ancestor_at(idx, Level::District).unwrap_or(idx),
            _ => self.node(idx).parent.unwrap_or(idx),
        }
    }

    /// The ancestor of `idx` (or `idx` itself) at `level`, if any.
    pub fn ancestor_at(&self, idx: NodeIdx, level: Level) -> Option<NodeIdx> {
        self.path_to_root(idx)
            .find(|&i| self.node(i).level == level)
    }

    /// The child of `scope` whose subtree holds `idx` (a street's district under the city);
    /// `None` for `scope` itself and for nodes outside it.
    pub fn child_toward(&self, scope: NodeIdx, idx: NodeIdx) -> Option<NodeIdx> {
        let mut below = None;
        for i in self.path_to_root(idx) {
            if i == scope {
                return below;
            }
            below = Some(i);
        }
        None
    }

    /// True when `idx` is `ancestor` or lies below it.
    pub fn is_within(&self, idx: NodeIdx, ancestor: NodeIdx) -> bool {
        self.path_to_root(idx).any(|i| i == ancestor)
    }

    /// Every node of the subtree rooted at `idx`, `idx` first (pre-order).
    pub fn subtree(&self, idx: NodeIdx) -> Vec<NodeIdx> {
        let mut out = Vec::new();
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend(self.node(i).children.iter().rev());
        }
        out
    }
}

pub struct PathToRoot<'a> {
    tree: &'a OrgTree,
    next: Option<NodeIdx>,
}

impl Iterator for PathToRoot<'_> {
    type Item = NodeIdx;
    fn next(&mut self) -> Option<NodeIdx> {
        let cur = self.next?;
        self.next = self.tree.node(cur).parent;
        Some(cur)
    }
}

#[cfg(test)]
impl OrgTree {
    /// Gives nodes real names (trees from [`tree_of`] are named by their codes).
    pub fn rename_for_tests(&mut self, names: &[(&str, &str)]) {
        for (code, name) in names {
            if let Some(&idx) = self.by_code.get(*code) {
                self.nodes[idx as usize].name = name.to_string();
            }
        }
    }
}

/// A tree from `(code, level, parent)` triples, names = codes: for unit tests.
#[cfg(test)]
pub fn tree_of(nodes: &[(&str, Level, Option<&str>)]) -> OrgTree {
    OrgTree::build(nodes.iter().map(|(code, level, parent)| NewNode {
        code: code.to_string(),
        name: code.to_string(),
        level: *level,
        parent: parent.map(str::to_string),
    }))
    .expect("a valid test tree")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> OrgTree {
        tree_of(&[
            ("c", Level::City, None),
            ("d1", Level::District, Some("c")),
            ("d2", Level::District, Some("c")),
            ("s1", Level::Street, Some("d1")),
            ("m1", Level::Community, Some("s1")),
        ])
    }

    #[test]
    fn path_to_root_walks_up_to_the_city() {
        let t = small();
        let m = t.get("m1").unwrap();
        let codes: Vec<_> = t.path_to_root(m).map(|i| t.node(i).code.clone()).collect();
        assert_eq!(codes, ["m1", "s1", "d1", "c"]);
        assert_eq!(t.ancestor_at(m, Level::District), t.get("d1"));
        assert!(t.is_within(m, t.get("d1").unwrap()));
        assert!(!t.is_within(m, t.get("d2").unwrap()));
    }

    #[test]
    fn child_toward_names_the_scopes_child_on_the_way_down() {
        let t = small();
        let (c, d1, s1, m1) = (
            t.get("c").unwrap(),
            t.get("d1").unwrap(),
            t.get("s1").unwrap(),
            t.get("m1").unwrap(),
        );
        assert_eq!(t.child_toward(c, m1), Some(d1));
        assert_eq!(t.child_toward(d1, m1), Some(s1));
        assert_eq!(t.child_toward(d1, d1), None);
        assert_eq!(t.child_toward(t.get("d2").unwrap(), m1), None);
    }

    #[test]
    fn a_child_before_its_parent_is_refused() {
        let err = OrgTree::build([
            NewNode {
                code: "c".into(),
                name: "c".into(),
                level: Level::City,
                parent: None,
            },
            NewNode {
                code: "s".into(),
                name: "s".into(),
                level: Level::Street,
                parent: Some("d".into()),
            },
        ])
        .unwrap_err();
        assert_eq!(
            err,
            OrgTreeError::MissingParent {
                child: "s".into(),
                parent: "d".into()
            }
        );
    }

    #[test]
    fn subtree_is_preorder_and_complete() {
        let t = small();
        let sub: Vec<_> = t
            .subtree(t.get("d1").unwrap())
            .iter()
            .map(|&i| t.node(i).code.clone())
            .collect();
        assert_eq!(sub, ["d1", "s1", "m1"]);
    }
}
