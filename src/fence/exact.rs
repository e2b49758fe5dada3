//! The exact tests of CONTRACTS §1, laid out for the hot path: one small record per fence and
//! every small polygon's rings flattened into one shared coordinate arena, so a test reads two
//! contiguous places instead of chasing geo's nested `Vec`s (fence → polygons → ring →
//! coordinates), each a cache miss on a large index.
//!
//! Polygon tests use geo's robust orientation predicate with the same winding-number rules as
//! geo's `coord_pos_relative_to_ring`; the property tests check them against geo itself.

use geo::kernels::{Kernel, RobustKernel};
use geo::{Coord, Intersects, MonotonicPolygons, Orientation, Point};

use super::{Fence, FenceIdx, Shape};
use crate::sphere::{self, Cap, Meters, Probe};

/// Marks a ring that is a polygon's exterior (the rings after it, up to the next one, are its
/// holes).
const EXTERIOR: u32 = 1 << 31;

enum Test {
    /// Tested on its rings in the arena.
    Area(Rings),
    /// A monotone subdivision (O(log n) per test), for polygons with many vertices; the rings
    /// are in the arena too, for edge distances.
    Prepared(Box<MonotonicPolygons<f64>>, Rings),
    /// Haversine distance within the radius, decided without `asin` (see `sphere::Cap`).
    Circle(Cap),
}

/// Rings `first_ring .. first_ring + rings` of the arena, whose coordinates start at
/// `first_coord`: each polygon's exterior, then its holes.
#[derive(Clone, Copy)]
struct Rings {
    first_ring: u32,
    rings: u32,
    first_coord: u32,
}

/// Exact tests for every fence of an index, by [`FenceIdx`].
pub(super) struct ExactTests {
    tests: Vec<Test>,
    /// Per ring: its length, with [`EXTERIOR`] set on exteriors.
    rings: Vec<u32>,
    coords: Vec<Coord<f64>>,
}

impl ExactTests {
    pub fn new(fences: &[Fence], prepare_above_vertices: usize) -> Self {
        let mut t = Self {
            tests: Vec::with_capacity(fences.len()),
            rings: Vec::new(),
            coords: Vec::new(),
        };
        for f in fences {
            let test = match &f.shape {
                Shape::Circle { center, radius } => Test::Circle(Cap::new(*center, *radius)),
                Shape::Area(mp) => {
                    let rings = Rings {
                        first_ring: t.rings.len() as u32,
                        rings: 0,
                        first_coord: t.coords.len() as u32,
                    };
                    for p in &mp.0 {
                        for (k, ring) in std::iter::once(p.exterior())
                            .chain(p.interiors())
                            .enumerate()
                        {
                            let flag = if k == 0 { EXTERIOR } else { 0 };
                            t.rings.push(ring.0.len() as u32 | flag);
                            t.coords.extend_from_slice(&ring.0);
                        }
                    }
                    let rings = Rings {
                        rings: t.rings.len() as u32 - rings.first_ring,
                        ..rings
                    };
                    if f.shape.vertex_count() > prepare_above_vertices {
                        Test::Prepared(Box::new(MonotonicPolygons::from(mp.clone())), rings)
                    } else {
                        Test::Area(rings)
                    }
                }
            };
            t.tests.push(test);
        }
        // Built by pushing: return the growth slack, a third of the arena on average.
        t.rings.shrink_to_fit();
        t.coords.shrink_to_fit();
        t
    }

    /// Whether fence `i` covers `pt` (callers reject by bounding box first; the answer does not
    /// depend on it).
    pub fn covers(&self, i: FenceIdx, pt: Point<f64>) -> bool {
        match &self.tests[i.get()] {
            Test::Area(rings) => {
                let lens = &self.rings[rings.first_ring as usize..][..rings.rings as usize];
                self.area_covers(lens, rings.first_coord as usize, pt.0)
            }
            Test::Prepared(mono, _) => mono.intersects(&pt.0),
            Test::Circle(cap) => cap.contains(pt),
        }
    }

    /// Distance from `pt` to fence `i`'s edge on the sphere, from inside or outside. Polygons:
    /// the closest boundary point in a local equirectangular frame (lon scaled by cos(lat)),
    /// then its distance.
    pub fn edge_distance(&self, i: FenceIdx, at: &Probe) -> Meters {
        let rings = match &self.tests[i.get()] {
            Test::Area(rings) | Test::Prepared(_, rings) => rings,
            Test::Circle(cap) => return cap.edge_distance(at),
        };
        let (pt, scale) = (at.pt, at.cos_lat.max(1e-9));
        // Rings never cross the antimeridian (the loader refuses that), but a point can sit
        // across it from one (or from one half of a split fence): measure each ring against
        // the point's copy of longitudes nearest to it.
        let mut best = (f64::INFINITY, pt.0, pt.0);
        let mut at = rings.first_coord as usize;
        for &r in &self.rings[rings.first_ring as usize..][..rings.rings as usize] {
            let len = (r & !EXTERIOR) as usize;
            let ring = &self.coords[at..at + len];
            at += len;
            let near = ring.first().map_or(pt.x(), |c| c.x);
            let x = match pt.x() - near {
                d if d > 180.0 => pt.x() - 360.0,
                d if d < -180.0 => pt.x() + 360.0,
                _ => pt.x(),
            };
            let q = Coord { x, y: pt.y() };
            for w in ring.windows(2) {
                let c = closest_on_segment(q, w[0], w[1], scale);
                let d2 = ((c.x - q.x) * scale).powi(2) + (c.y - q.y).powi(2);
                if d2 < best.0 {
                    best = (d2, q, c);
                }
            }
        }
        // Up to ~5 km, below 70° of latitude, the local frame's own distance is the sphere's to
        // within 0.15% (tan(lat)·Δlat/2; far under a fix's accuracy) and saves the haversine's
        // transcendentals on presence's hot path; otherwise measure on the sphere.
        if best.0 < LOCAL_FRAME_DEG * LOCAL_FRAME_DEG && pt.y().abs() < 70.0 {
            Meters(best.0.sqrt() * sphere::EARTH_RADIUS_M.to_radians())
        } else {
            sphere::distance(Point(best.1), Point(best.2))
        }
    }

    /// Starts loading fence `i`'s test record (see `prefetch`).
    pub fn prefetch_test(&self, i: FenceIdx) {
        crate::cache::prefetch(&self.tests[i.get()]);
    }

    /// Starts loading the coordinates of fence `i`, once its record is at hand.
    pub fn prefetch_coords(&self, i: FenceIdx) {
        if let Test::Area(rings) = &self.tests[i.get()] {
            if let Some(c) = self.coords.get(rings.first_coord as usize) {
                crate::cache::prefetch(c);
            }
        }
    }

    /// MultiPolygon covers: some polygon has the point inside or on its exterior and not
    /// strictly inside one of its holes (a point on a hole's edge is on the boundary: covered).
    fn area_covers(&self, rings: &[u32], mut at: usize, q: Coord<f64>) -> bool {
        // Whether the current polygon's exterior holds the point and no hole so far excludes it.
        let mut held = false;
        for &r in rings {
            let len = (r & !EXTERIOR) as usize;
            let ring = &self.coords[at..at + len];
            at += len;
            if r & EXTERIOR != 0 {
                if held {
                    return true;
                }
                match position(q, ring) {
                    Position::Boundary => return true,
                    Position::Inside => held = true,
                    Position::Outside => {}
                }
            } else if held {
                match position(q, ring) {
                    Position::Boundary => return true,
                    Position::Inside => held = false,
                    Position::Outside => {}
                }
            }
        }
        held
    }
}

enum Position {
    Inside,
    Boundary,
    Outside,
}

/// Winding number of a closed ring around `q`, with the edge-crossing rules of geo's
/// `coord_pos_relative_to_ring`: an upward edge includes its start and excludes its end, a
/// downward edge the reverse, horizontal edges are skipped, and a collinear point between an
/// edge's ends is on the boundary.
fn position(q: Coord<f64>, ring: &[Coord<f64>]) -> Position {
    let mut winding = 0i32;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.y <= q.y {
            if b.y >= q.y {
                let o = RobustKernel::orient2d(a, b, q);
                if o == Orientation::CounterClockwise && b.y != q.y {
                    winding += 1;
                } else if o == Orientation::Collinear && between(q.x, a.x, b.x) {
                    return Position::Boundary;
                }
            }
        } else if b.y <= q.y {
            let o = RobustKernel::orient2d(a, b, q);
            if o == Orientation::Clockwise {
                winding -= 1;
            } else if o == Orientation::Collinear && between(q.x, a.x, b.x) {
                return Position::Boundary;
            }
        }
    }
    if winding == 0 {
        Position::Outside
    } else {
        Position::Inside
    }
}

/// `v` in the closed range between `a` and `b`, in either order.
fn between(v: f64, a: f64, b: f64) -> bool {
    if a < b {
        a <= v && v <= b
    } else {
        b <= v && v <= a
    }
}

/// How close (degrees, in the local frame) a polygon edge must be for its distance to be taken
/// in that frame.
const LOCAL_FRAME_DEG: f64 = 0.045;

fn closest_on_segment(q: Coord<f64>, a: Coord<f64>, b: Coord<f64>, scale: f64) -> Coord<f64> {
    let (dx, dy) = ((b.x - a.x) * scale, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return a;
    }
    let t = ((((q.x - a.x) * scale) * dx + (q.y - a.y) * dy) / len2).clamp(0.0, 1.0);
    Coord {
        x: a.x + (b.x - a.x) * t,
        y: a.y + (b.y - a.y) * t,
    }
}
