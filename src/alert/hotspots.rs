//! Geographic clusters of located records: DBSCAN-style — points with a neighbour within the
//! radius (great-circle distance, `geo`'s Haversine) join the same cluster.

use geo::{Distance, Haversine, Point};

/// The size of the largest group of points linked by distances of at most `radius_m`.
pub fn largest_cluster(points: &[(f64, f64)], radius_m: f64) -> usize {
    let n = points.len();
    let pts: Vec<Point<f64>> = points
        .iter()
        .map(|&(lon, lat)| Point::new(lon, lat))
        .collect();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if Haversine.distance(pts[i], pts[j]) <= radius_m {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[a] = b;
            }
        }
    }
    let mut sizes = std::collections::HashMap::new();
    for i in 0..n {
        *sizes.entry(find(&mut parent, i)).or_insert(0usize) += 1;
    }
    sizes.into_values().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearby_points_cluster_and_far_ones_do_not() {
        // Three points within ~300 m in 福田, one in 南山 ~13 km away.
        let pts = [
            (114.0650, 22.5400),
            (114.0670, 22.5410),
            (114.0660, 22.5425),
            (113.9300, 22.5300),
        ];
        assert_eq!(largest_cluster(&pts, 500.0), 3);
        assert_eq!(largest_cluster(&pts, 50.0), 1);
        assert_eq!(largest_cluster(&[], 500.0), 0);
    }
}
