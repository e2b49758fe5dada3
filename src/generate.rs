//! Deterministic synthetic data for benches and peer comparisons: store-like fences and pings
//! around real city centres, at any size. The same spec and seed always give the same bytes.
//!
//! Fences mix what the product meets: small irregular store polygons, malls with atriums (holes)
//! and two-building MultiPolygons, circles (a few across the antimeridian), district regions with
//! many vertices, and fences split at the antimeridian near Fiji. Pings mix points near fences
//! (inside and around their edges), city-wide traffic, points anywhere on Earth, and a few beacon
//! pings.

use std::f64::consts::TAU;
use std::io::{self, Write};

use geojson::{Feature, FeatureWriter, Geometry, GeometryValue, JsonObject};
use serde_json::{json, Value};

use crate::sphere::EARTH_RADIUS_M;
use crate::time::Timestamp;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenSpec {
    pub fences: usize,
    pub pings: usize,
    pub seed: u64,
}

struct City {
    code: &'static str,
    lat: f64,
    lon: f64,
    tz: &'static str,
}

const fn city(code: &'static str, lat: f64, lon: f64, tz: &'static str) -> City {
    City { code, lat, lon, tz }
}

/// Real centres; Suva and Longyearbyen put fences near the antimeridian and the Arctic.
const CITIES: [City; 14] = [
    city("sha", 31.2304, 121.4737, "Asia/Shanghai"),
    city("bjs", 39.9042, 116.4074, "Asia/Shanghai"),
    city("hgh", 30.2741, 120.1551, "Asia/Shanghai"),
    city("szx", 22.5431, 114.0579, "Asia/Shanghai"),
    city("ctu", 30.5728, 104.0668, "Asia/Shanghai"),
    city("tyo", 35.6812, 139.7671, "Asia/Tokyo"),
    city("sin", 1.2834, 103.8607, "Asia/Singapore"),
    city("par", 48.8566, 2.3522, "Europe/Paris"),
    city("lon", 51.5072, -0.1276, "Europe/London"),
    city("nyc", 40.7128, -74.0060, "America/New_York"),
    city("sao", -23.5505, -46.6333, "America/Sao_Paulo"),
    city("syd", -33.8688, 151.2093, "Australia/Sydney"),
    city("suv", -18.1416, 178.4419, "Pacific/Fiji"),
    city("lyr", 78.2232, 15.6267, "Arctic/Longyearbyen"),
];

const BRANDS: [&str; 12] = [
    "chayun-tea",
    "lumen-fashion",
    "petal-cosmetics",
    "harbor-hotels",
    "clearview-film",
    "north-coffee",
    "kite-sports",
    "oak-books",
    "mira-eyewear",
    "sora-bakery",
    "vela-shoes",
    "jade-jewelry",
];

/// SplitMix64: tiny, fast, and stable across versions (generated files must not change).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit().max(1e-300), self.unit());
        (-2.0 * u.ln()).sqrt() * (TAU * v).cos()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Store,
    Mall,
    Circle,
    Region,
    /// A small store straddling the antimeridian, given split in two (RFC 7946 §3.1.9).
    Split,
}

/// Where a fence is and how big: enough to regenerate its geometry and to aim pings at it.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    lat: f64,
    lon: f64,
    radius_m: f64,
    kind: Kind,
    city: usize,
}

/// How far fences and traffic spread around each centre: metro areas grow with the data set so
/// that fence density, and so the number of fences covering a point, stays that of a real
/// downtown at any size (10 k fences: σ = 4 km; 1 M: σ = 40 km).
fn spread(fences: usize) -> f64 {
    (fences as f64 / 10_000.0).max(1.0).sqrt()
}

fn anchors(spec: &GenSpec) -> Vec<Anchor> {
    let mut rng = Rng(spec.seed ^ 0xF0F0_5EED);
    let sigma = 4_000.0 * spread(spec.fences);
    let regions = (spec.fences / 2000).max(1);
    (0..spec.fences)
        .map(|i| {
            let city = i % CITIES.len();
            let c = &CITIES[city];
            let r = rng.unit();
            let kind = if i < regions && spec.fences >= CITIES.len() {
                Kind::Region
            } else if c.code == "suv" && r < 0.05 {
                Kind::Split
            } else if r < 0.55 {
                Kind::Store
            } else if r < 0.63 {
                Kind::Mall
            } else {
                Kind::Circle
            };
            let radius_m = match kind {
                Kind::Store | Kind::Split => rng.range(8.0, 40.0),
                Kind::Mall => rng.range(80.0, 200.0),
                Kind::Circle if rng.unit() < 0.02 => rng.range(1_000.0, 3_000.0),
                Kind::Circle => rng.range(30.0, 300.0),
                Kind::Region => rng.range(1_000.0, 4_000.0),
            };
            let (dn, de) = (rng.normal() * sigma, rng.normal() * sigma);
            let (mut lat, mut lon) = offset(c.lat, c.lon, dn, de);
            if kind == Kind::Split {
                lon = 180.0 - 1e-4;
            } else if kind != Kind::Circle {
                // Keep polygons clear of the antimeridian (they would need splitting) and poles.
                let half_deg = 3.0 * radius_m / (111_195.0 * lat.to_radians().cos());
                lon = lon.clamp(-180.0 + half_deg, 180.0 - half_deg);
                lat = lat.clamp(-85.0, 85.0);
            }
            Anchor {
                lat,
                lon,
                radius_m,
                kind,
                city,
            }
        })
        .collect()
}

/// The point `dn` metres north and `de` metres east of (lat, lon), wrapped into range.
fn offset(lat: f64, lon: f64, dn: f64, de: f64) -> (f64, f64) {
    let lat2 = (lat + (dn / EARTH_RADIUS_M).to_degrees()).clamp(-89.9, 89.9);
    let lon2 = lon + (de / (EARTH_RADIUS_M * lat2.to_radians().cos())).to_degrees();
    (lat2, (lon2 + 540.0).rem_euclid(360.0) - 180.0)
}

fn round7(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// A closed star-shaped ring (simple by construction: vertices sorted by angle around the
/// centre, radii in [0.6, 1] of `r`).
fn star(
    rng: &mut Rng,
    lat: f64,
    lon: f64,
    r: f64,
    min_vertices: usize,
    extra: usize,
) -> Vec<[f64; 2]> {
    let vertices = min_vertices + rng.below(extra + 1);
    let phase = rng.range(0.0, TAU);
    let mut ring: Vec<[f64; 2]> = (0..vertices)
        .map(|k| {
            let a = phase + TAU * (k as f64 + rng.range(-0.3, 0.3)) / vertices as f64;
            let rr = r * rng.range(0.6, 1.0);
            let (y, x) = offset(lat, lon, rr * a.sin(), rr * a.cos());
            [round7(x), round7(y)]
        })
        .collect();
    ring.dedup();
    ring.push(ring[0]);
    ring
}

fn to_positions(ring: Vec<[f64; 2]>) -> Vec<geojson::Position> {
    ring.into_iter().map(Into::into).collect()
}

/// A mall building: a shell with one or two atriums inside its inner radius (0.6 r), apart from
/// each other.
fn building(rng: &mut Rng, lat: f64, lon: f64, r: f64) -> Vec<Vec<geojson::Position>> {
    let shell = star(rng, lat, lon, r, 8, 7);
    let holes = 1 + rng.below(2);
    let turn = rng.range(0.0, TAU);
    let mut rings = vec![to_positions(shell)];
    for h in 0..holes {
        let ang = turn + h as f64 * TAU / 2.0;
        let (hy, hx) = offset(lat, lon, 0.25 * r * ang.sin(), 0.25 * r * ang.cos());
        rings.push(to_positions(star(rng, hy, hx, 0.12 * r, 6, 0)));
    }
    rings
}

fn geometry(rng: &mut Rng, a: &Anchor) -> (GeometryValue, Option<f64>) {
    match a.kind {
        Kind::Store => (
            GeometryValue::new_polygon([star(rng, a.lat, a.lon, a.radius_m, 5, 5)]),
            None,
        ),
        Kind::Region => (
            GeometryValue::new_polygon([star(rng, a.lat, a.lon, a.radius_m, 24, 40)]),
            None,
        ),
        Kind::Circle => (
            GeometryValue::new_point([round7(a.lon), round7(a.lat)]),
            Some((a.radius_m * 10.0).round() / 10.0),
        ),
        Kind::Mall => {
            if rng.unit() < 0.2 {
                let (lat2, lon2) = offset(a.lat, a.lon, 0.0, 2.5 * a.radius_m);
                let first = building(rng, a.lat, a.lon, a.radius_m);
                let second = building(rng, lat2, lon2, a.radius_m);
                (
                    GeometryValue::MultiPolygon {
                        coordinates: vec![first, second],
                    },
                    None,
                )
            } else {
                (
                    GeometryValue::Polygon {
                        coordinates: building(rng, a.lat, a.lon, a.radius_m),
                    },
                    None,
                )
            }
        }
        Kind::Split => {
            let (h, w) = (
                a.radius_m / 111_195.0,
                2.0 * a.radius_m / (111_195.0 * a.lat.to_radians().cos()),
            );
            let (s, n) = (round7(a.lat - h), round7(a.lat + h));
            let west = round7(180.0 - w / 2.0);
            let east = round7(-180.0 + w / 2.0);
            let coordinates = vec![
                vec![to_positions(vec![
                    [west, s],
                    [180.0, s],
                    [180.0, n],
                    [west, n],
                    [west, s],
                ])],
                vec![to_positions(vec![
                    [-180.0, s],
                    [east, s],
                    [east, n],
                    [-180.0, n],
                    [-180.0, s],
                ])],
            ];
            (GeometryValue::MultiPolygon { coordinates }, None)
        }
    }
}

fn fence_id(i: usize) -> String {
    format!("f-{i:07}")
}

/// Writes the fence FeatureCollection (CONTRACTS §2).
pub fn write_fences(spec: &GenSpec, out: impl Write) -> io::Result<()> {
    let mut rng = Rng(spec.seed ^ 0x6E0_FE11CE);
    let mut w = FeatureWriter::from_writer(out);
    for (i, a) in anchors(spec).iter().enumerate() {
        let (value, radius_m) = geometry(&mut rng, a);
        let c = &CITIES[a.city];
        let brand = BRANDS[rng.below(BRANDS.len())];
        let (kind, store) = match a.kind {
            Kind::Store | Kind::Split => ("store", format!("s-{i:07}")),
            Kind::Mall => ("mall", format!("m-{i:07}")),
            Kind::Circle => ("circle", format!("s-{:07}", i.saturating_sub(1))),
            Kind::Region => ("region", format!("r-{}-{i}", c.code)),
        };
        let mut props = JsonObject::new();
        props.insert("store_id".into(), Value::String(store));
        props.insert("kind".into(), kind.into());
        props.insert("region".into(), c.code.into());
        props.insert("timezone".into(), c.tz.into());
        if a.kind != Kind::Region {
            props.insert("brand".into(), brand.into());
        }
        if let Some(r) = radius_m {
            props.insert("radius_m".into(), json!(r));
        }
        let feature = Feature {
            geometry: Some(Geometry::new(value)),
            id: Some(geojson::feature::Id::String(fence_id(i))),
            properties: Some(props),
            ..Feature::default()
        };
        w.write_feature(&feature).map_err(io::Error::other)?;
    }
    w.finish().map_err(io::Error::other)
}

/// Writes the pings, one JSON object per line (CONTRACTS §4), in event-time order.
pub fn write_pings(spec: &GenSpec, mut out: impl Write) -> io::Result<()> {
    let anchors = anchors(spec);
    let mut rng = Rng(spec.seed ^ 0x9_1465);
    let devices = (spec.pings / 100).max(1);
    let start = Timestamp::parse("2026-11-22T00:00:00Z")
        .map_err(io::Error::other)?
        .0;
    let step = (86_400_000 / spec.pings.max(1) as i64).max(1);
    let sigma = 5_000.0 * spread(spec.fences);
    for i in 0..spec.pings {
        let device = rng.below(devices);
        let ts = Timestamp(start + i as i64 * step);
        let r = rng.unit();
        if r < 0.02 {
            writeln!(
                out,
                r#"{{"type":"beacon","device_id":"d-{device:07}","ts":"{ts}","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":{},"minor":{},"rssi":{}}}"#,
                rng.below(1000),
                rng.below(20),
                -40 - rng.below(60) as i64
            )?;
            continue;
        }
        let (lat, lon) = if r < 0.37 && !anchors.is_empty() {
            // Aimed at a fence: inside it or around its edge.
            let a = &anchors[rng.below(anchors.len())];
            let d = a.radius_m * 1.5 * rng.unit().sqrt();
            let ang = rng.range(0.0, TAU);
            offset(a.lat, a.lon, d * ang.sin(), d * ang.cos())
        } else if r < 0.85 {
            let c = &CITIES[rng.below(CITIES.len())];
            offset(c.lat, c.lon, rng.normal() * sigma, rng.normal() * sigma)
        } else {
            // Uniform on the sphere.
            (
                (rng.range(-1.0, 1.0)).asin().to_degrees(),
                rng.range(-180.0, 180.0),
            )
        };
        writeln!(
            out,
            r#"{{"type":"location","device_id":"d-{device:07}","ts":"{ts}","lat":{},"lon":{},"accuracy_m":{:.1}}}"#,
            round7(lat),
            round7(lon),
            rng.range(3.0, 60.0)
        )?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{parse_fences, LoadMode};

    #[test]
    fn generated_data_is_deterministic_and_valid() {
        let spec = GenSpec {
            fences: 3_000,
            pings: 2_000,
            seed: 7,
        };
        let (mut f1, mut f2, mut p1) = (Vec::new(), Vec::new(), Vec::new());
        write_fences(&spec, &mut f1).unwrap();
        write_fences(&spec, &mut f2).unwrap();
        write_pings(&spec, &mut p1).unwrap();
        assert_eq!(f1, f2, "same seed, same bytes");
        let report = parse_fences(&f1, LoadMode::Strict).unwrap();
        assert_eq!(report.fences.len(), 3_000);
        let kinds = |k: &str| {
            report
                .fences
                .iter()
                .filter(|f| f.props.kind.as_deref() == Some(k))
                .count()
        };
        assert!(
            kinds("store") > 1_000
                && kinds("mall") > 100
                && kinds("circle") > 700
                && kinds("region") >= 1
        );
        assert_eq!(
            p1.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
            2_000
        );
        for line in p1.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            crate::ping::decode(line).unwrap();
        }
    }
}
