//! Distances and extents on the sphere of CONTRACTS §1 (radius 6 371 008.8 m).
//!
//! Circle fences and `nearby` distances are measured here; polygon containment is planar
//! (lon/lat degrees) and lives in `fence`. Nothing here allocates.

use geo::{Distance, HaversineMeasure, Point};

/// The sphere CONTRACTS §1 fixes for circles: PostGIS's and shapely's references use it too.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;
const HAVERSINE: HaversineMeasure = HaversineMeasure::new(EARTH_RADIUS_M);

/// Metres along the sphere's surface.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Meters(pub f64);

/// A WGS84 position, degrees. Constructed only through [`LatLon::new`], so it is always in
/// range and finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLon {
    lat: f64,
    lon: f64,
}

/// Why a coordinate pair is not a position.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum LatLonError {
    #[error("latitude {0} is not a finite number in [-90, 90]")]
    Lat(f64),
    #[error("longitude {0} is not a finite number in [-180, 180]")]
    Lon(f64),
}

impl LatLon {
    pub fn new(lat: f64, lon: f64) -> Result<Self, LatLonError> {
        if !(-90.0..=90.0).contains(&lat) {
            return Err(LatLonError::Lat(lat));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(LatLonError::Lon(lon));
        }
        Ok(Self { lat, lon })
    }
    pub fn lat(self) -> f64 {
        self.lat
    }
    pub fn lon(self) -> f64 {
        self.lon
    }
    pub fn point(self) -> Point<f64> {
        Point::new(self.lon, self.lat)
    }
}

/// Great-circle distance (haversine) on the contract's sphere.
pub fn distance(a: Point<f64>, b: Point<f64>) -> Meters {
    Meters(HAVERSINE.distance(a, b))
}

/// A circle's exact test in the form the hot path wants: `distance(center, p) <= radius`
/// decided on haversine's inner term `a`, with no `asin` or `sqrt` per test.
///
/// `a` is computed with the very operations of geo's haversine (so it is bit-identical), and the
/// threshold is the largest `a` whose distance, computed as geo computes it, is still within the
/// radius; the distance is monotone in `a`, so the answers are exactly `distance(…) <= radius`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cap {
    center: Point<f64>,
    radius: Meters,
    cos_lat: f64,
    max_a: f64,
}

impl Cap {
    pub fn new(center: Point<f64>, radius: Meters) -> Self {
        let within = |a: f64| meters_of(a) <= radius.0;
        let mut max_a = (radius.0 / EARTH_RADIUS_M / 2.0).sin().powi(2).min(1.0);
        while max_a > 0.0 && !within(max_a) {
            max_a = max_a.next_down();
        }
        while max_a < 1.0 && within(max_a.next_up()) {
            max_a = max_a.next_up();
        }
        Self {
            center,
            radius,
            cos_lat: center.y().to_radians().cos(),
            max_a,
        }
    }

    /// Distance from `p` to the rim, from inside or outside: geo's haversine distance to the
    /// center, to the bit, less the radius.
    pub fn edge_distance(&self, p: &Probe) -> Meters {
        Meters((meters_of(self.a(p.pt, p.cos_lat)) - self.radius.0).abs())
    }

    pub fn contains(&self, p: Point<f64>) -> bool {
        self.a(p, p.y().to_radians().cos()) <= self.max_a
    }

    /// Haversine's inner term from the center to `p`, whose latitude has cosine `cos_lat_p`.
    fn a(&self, p: Point<f64>, cos_lat_p: f64) -> f64 {
        let d_lat = (p.y() - self.center.y()).to_radians();
        let d_lon = (p.x() - self.center.x()).to_radians();
        (d_lat / 2.0).sin().powi(2) + self.cos_lat * cos_lat_p * (d_lon / 2.0).sin().powi(2)
    }
}

/// A point many distances are measured from (a fix, against each fence near it), with the
/// cosine of its latitude computed once rather than per fence.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub pt: Point<f64>,
    pub cos_lat: f64,
}

impl Probe {
    pub fn new(pt: Point<f64>) -> Self {
        Self {
            pt,
            cos_lat: pt.y().to_radians().cos(),
        }
    }
}

/// geo's haversine distance from its inner term `a`.
fn meters_of(a: f64) -> f64 {
    EARTH_RADIUS_M * (2.0 * a.sqrt().asin())
}

/// The angle, in degrees of latitude, that `d` spans along a meridian.
pub fn meters_to_lat_deg(d: Meters) -> f64 {
    (d.0 / EARTH_RADIUS_M).to_degrees()
}

/// A lon/lat box, degrees, `min <= max` on both axes (never wraps: see [`cap_boxes`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LonLatBox {
    pub min: [f64; 2],
    pub max: [f64; 2],
}

impl LonLatBox {
    pub fn contains(&self, p: Point<f64>) -> bool {
        (self.min[0]..=self.max[0]).contains(&p.x()) && (self.min[1]..=self.max[1]).contains(&p.y())
    }
    pub fn intersects(&self, o: &LonLatBox) -> bool {
        self.min[0] <= o.max[0]
            && o.min[0] <= self.max[0]
            && self.min[1] <= o.max[1]
            && o.min[1] <= self.max[1]
    }
}

/// The lon/lat boxes covering the spherical cap of radius `r` around `c`: one box, or two when
/// the cap crosses the antimeridian. A cap reaching a pole spans every longitude.
pub fn cap_boxes(c: Point<f64>, r: Meters) -> ([LonLatBox; 2], usize) {
    let delta = r.0 / EARTH_RADIUS_M; // angular radius, radians
    let lat = c.y().to_radians();
    // Pads of 1e-9° (0.1 mm) keep rim points whose haversine distance rounds to ≤ r inside.
    let lat_min = ((lat - delta).to_degrees() - 1e-9).max(-90.0);
    let lat_max = ((lat + delta).to_degrees() + 1e-9).min(90.0);
    let full = LonLatBox {
        min: [-180.0, lat_min],
        max: [180.0, lat_max],
    };
    // The cap touches a pole, or is so wide that the asin below is undefined.
    if lat.abs() + delta >= std::f64::consts::FRAC_PI_2 || delta.sin() >= lat.cos() {
        return ([full, full], 1);
    }
    // Widest longitude extent of a cap (it is reached north of the centre's parallel, not on it).
    // A relative pad covers the rounding of sin/asin so the box never cuts the cap.
    let dlon = (delta.sin() / lat.cos()).asin().to_degrees() * (1.0 + 1e-9) + 1e-9;
    let (w, e) = (c.x() - dlon, c.x() + dlon);
    let boxed = |a: f64, b: f64| LonLatBox {
        min: [a, lat_min],
        max: [b, lat_max],
    };
    if w < -180.0 {
        ([boxed(-180.0, e), boxed(w + 360.0, 180.0)], 2)
    } else if e > 180.0 {
        ([boxed(w, 180.0), boxed(-180.0, e - 360.0)], 2)
    } else {
        ([boxed(w, e), full], 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_answer_exactly_like_the_haversine_distance() {
        // Points straddling the rim by a few ulps of distance, at several sizes and latitudes.
        for &(lon, lat, r) in &[
            (121.47, 31.23, 150.0),
            (0.0, 89.9, 30_000.0),
            (-179.99, -60.0, 7.5),
            (10.0, 0.0, 50_000.0),
        ] {
            let c = Point::new(lon, lat);
            let cap = Cap::new(c, Meters(r));
            for k in 0..720 {
                let bearing = (k as f64 / 2.0).to_radians();
                for scale in [1.0 - 1e-9, 1.0 - 1e-15, 1.0, 1.0 + 1e-15, 1.0 + 1e-9] {
                    let p = destination(c, bearing, r * scale);
                    assert_eq!(
                        cap.contains(p),
                        distance(c, p) <= Meters(r),
                        "{p:?} around {c:?} r {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance(Point::new(0.0, 0.0), Point::new(0.0, 1.0));
        assert!((d.0 - 111_195.08).abs() < 0.01, "{d:?}");
    }

    #[test]
    fn cap_boxes_split_at_the_antimeridian_and_cover_poles() {
        let (b, n) = cap_boxes(Point::new(179.999, 0.0), Meters(1_000.0));
        assert_eq!(n, 2);
        assert!(b[0].contains(Point::new(180.0, 0.0)));
        assert!(b[1].contains(Point::new(-179.999, 0.0)));
        let (b, n) = cap_boxes(Point::new(10.0, 89.99), Meters(5_000.0));
        assert_eq!(n, 1);
        assert!(b[0].contains(Point::new(-170.0, 89.99)));
    }

    #[test]
    fn cap_box_contains_every_point_of_the_cap() {
        // Walk the cap's rim: every rim point must fall in one of the boxes.
        for &(lon, lat, r) in &[
            (121.47, 31.23, 500.0),
            (0.0, 70.0, 50_000.0),
            (-179.9, -60.0, 20_000.0),
        ] {
            let c = Point::new(lon, lat);
            let (boxes, n) = cap_boxes(c, Meters(r));
            for k in 0..3600 {
                let bearing = (k as f64 / 10.0).to_radians();
                let p = destination(c, bearing, r * (1.0 - 1e-12));
                assert!(
                    boxes[..n].iter().any(|b| b.contains(p)),
                    "{p:?} outside {boxes:?}"
                );
            }
        }
    }

    fn destination(c: Point<f64>, bearing: f64, d: f64) -> Point<f64> {
        let (lat1, lon1, ad) = (c.y().to_radians(), c.x().to_radians(), d / EARTH_RADIUS_M);
        let lat2 = (lat1.sin() * ad.cos() + lat1.cos() * ad.sin() * bearing.cos()).asin();
        let lon2 = lon1
            + (bearing.sin() * ad.sin() * lat1.cos()).atan2(ad.cos() - lat1.sin() * lat2.sin());
        let lon = (lon2.to_degrees() + 540.0) % 360.0 - 180.0;
        Point::new(lon, lat2.to_degrees())
    }
}
