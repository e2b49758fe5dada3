//! Validity of one linear ring, as CONTRACTS §1 defines it: closed, at least four positions,
//! no edge spanning more than 180° of longitude, no self-intersection.

use geo::line_intersection::{line_intersection, LineIntersection};
use geo::{Coord, Line, LineString};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::RTree;

/// Why a ring is not valid. Positions are `[lon, lat]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RingError {
    #[error("ring is not closed (first position {first:?} != last {last:?})")]
    NotClosed { first: [f64; 2], last: [f64; 2] },
    #[error(
        "ring has {0} distinct positions; a closed ring needs at least 4 positions (3 distinct)"
    )]
    TooFewPositions(usize),
    #[error("edge from {from:?} to {to:?} spans more than 180° of longitude: split the polygon at the antimeridian (RFC 7946 §3.1.9)")]
    CrossesAntimeridian { from: [f64; 2], to: [f64; 2] },
    #[error("ring self-intersects at {at:?}")]
    SelfIntersection { at: [f64; 2] },
}

/// Rings with more edges than this are checked through an R-tree of edges instead of all pairs.
const BRUTE_FORCE_EDGES: usize = 32;

/// Checks a closed ring whose positions are already known to be finite and in range, and
/// returns it with consecutive repeated positions removed.
pub fn validate(mut coords: Vec<Coord<f64>>) -> Result<LineString<f64>, RingError> {
    let (Some(&first), Some(&last)) = (coords.first(), coords.last()) else {
        return Err(RingError::TooFewPositions(0));
    };
    if first != last {
        return Err(RingError::NotClosed {
            first: [first.x, first.y],
            last: [last.x, last.y],
        });
    }
    coords.dedup();
    // A closed ring of k distinct positions has k + 1 positions.
    if coords.len() < 4 {
        return Err(RingError::TooFewPositions(coords.len().saturating_sub(1)));
    }
    let ring = LineString::new(coords);
    for l in ring.lines() {
        if (l.end.x - l.start.x).abs() > 180.0 {
            return Err(RingError::CrossesAntimeridian {
                from: [l.start.x, l.start.y],
                to: [l.end.x, l.end.y],
            });
        }
    }
    if let Some(at) = self_intersection(&ring) {
        return Err(RingError::SelfIntersection { at: [at.x, at.y] });
    }
    Ok(ring)
}

/// The first place where two edges of the ring meet other than at the vertex they share.
fn self_intersection(ring: &LineString<f64>) -> Option<Coord<f64>> {
    let edges: Vec<Line<f64>> = ring.lines().collect();
    let n = edges.len();
    if n <= BRUTE_FORCE_EDGES {
        for i in 0..n {
            for j in i + 1..n {
                if let Some(at) = edge_conflict(&edges, i, j) {
                    return Some(at);
                }
            }
        }
        return None;
    }
    let tree = RTree::bulk_load(
        edges
            .iter()
            .enumerate()
            .map(|(i, l)| {
                GeomWithData::new(Rectangle::from_corners(l.start.into(), l.end.into()), i)
            })
            .collect(),
    );
    for (i, l) in edges.iter().enumerate() {
        let envelope = rstar::AABB::from_corners([l.start.x, l.start.y], [l.end.x, l.end.y]);
        let hit = tree.locate_in_envelope_intersecting_int(&envelope, |other| match other.data {
            j if j > i => edge_conflict(&edges, i, j).map_or(
                std::ops::ControlFlow::Continue(()),
                std::ops::ControlFlow::Break,
            ),
            _ => std::ops::ControlFlow::Continue(()),
        });
        if let std::ops::ControlFlow::Break(at) = hit {
            return Some(at);
        }
    }
    None
}

/// Edges `i < j` of a closed ring conflict when they meet anywhere except at a shared vertex.
fn edge_conflict(edges: &[Line<f64>], i: usize, j: usize) -> Option<Coord<f64>> {
    let adjacent = j == i + 1 || (i == 0 && j == edges.len() - 1);
    match line_intersection(edges[i], edges[j])? {
        // Adjacent edges always share their common vertex; anything more is a spike back along
        // the same line.
        LineIntersection::SinglePoint { .. } if adjacent => None,
        LineIntersection::SinglePoint { intersection, .. } => Some(intersection),
        LineIntersection::Collinear { intersection } => Some(intersection.start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(pts: &[(f64, f64)]) -> Vec<Coord<f64>> {
        pts.iter().map(|&(x, y)| Coord { x, y }).collect()
    }

    #[test]
    fn accepts_either_winding_and_drops_repeated_positions() {
        let ccw = ring(&[(0., 0.), (1., 0.), (1., 1.), (1., 1.), (0., 1.), (0., 0.)]);
        assert_eq!(validate(ccw.clone()).map(|r| r.0.len()), Ok(5));
        let cw: Vec<_> = ccw.into_iter().rev().collect();
        assert!(validate(cw).is_ok());
    }

    #[test]
    fn rejects_each_invalid_ring_with_its_reason() {
        assert!(matches!(
            validate(ring(&[(0., 0.), (1., 0.), (1., 1.), (0., 1.)])),
            Err(RingError::NotClosed { .. })
        ));
        assert_eq!(
            validate(ring(&[(0., 0.), (1., 0.), (0., 0.)])),
            Err(RingError::TooFewPositions(2))
        );
        // A bow tie crosses itself at (0.5, 0.5).
        assert_eq!(
            validate(ring(&[(0., 0.), (1., 1.), (1., 0.), (0., 1.), (0., 0.)])),
            Err(RingError::SelfIntersection { at: [0.5, 0.5] })
        );
        // A spike runs back along its own edge.
        assert!(matches!(
            validate(ring(&[(0., 0.), (2., 0.), (1., 0.), (1., 1.), (0., 0.)])),
            Err(RingError::SelfIntersection { .. })
        ));
        assert!(matches!(
            validate(ring(&[
                (179., 0.),
                (-179., 0.),
                (-179., 1.),
                (179., 1.),
                (179., 0.)
            ])),
            Err(RingError::CrossesAntimeridian { .. })
        ));
    }

    #[test]
    fn large_rings_use_the_edge_tree_and_agree_with_brute_force() {
        // A 200-gon star, valid; then the same with two vertices swapped, which makes it cross.
        let n = 200;
        let mut pts: Vec<Coord<f64>> = (0..n)
            .map(|k| {
                let a = k as f64 / n as f64 * std::f64::consts::TAU;
                let r = if k % 2 == 0 { 1.0 } else { 0.6 };
                Coord {
                    x: r * a.cos(),
                    y: r * a.sin(),
                }
            })
            .collect();
        pts.push(pts[0]);
        assert!(validate(pts.clone()).is_ok());
        pts.swap(10, 100);
        assert!(matches!(
            validate(pts),
            Err(RingError::SelfIntersection { .. })
        ));
    }
}
