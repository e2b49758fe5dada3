//! Deterministic synthetic data for benches and peer comparisons: store-like fences and pings
//! around real city centres, at any size. The same spec and seed always give the same bytes.
//!
//! Fences mix what the product meets: small irregular store polygons, malls with atriums (holes)
//! and two-building MultiPolygons, circles (a few across the antimeridian), district regions with
//! many vertices, and fences split at the antimeridian near Fiji. Pings mix points near fences
//! (inside and around their edges), city-wide traffic, points anywhere on Earth, and a few beacon
//! pings.
//!
//! For the decision core there are also campaigns over those fences ([`campaigns`]), device
//! profiles ([`profiles`]) and devices that walk into, past and around the fences
//! ([`device_pings`]), so presence and offers really happen. Each device is generated from its
//! own seed, on the fly: a million devices cost only the ones walking at the same time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::f64::consts::TAU;
use std::io::{self, Write};

use geojson::{Feature, FeatureWriter, Geometry, GeometryValue, JsonObject};
use serde_json::{json, Value};

use crate::campaign::{Campaign, CampaignError};
use crate::profile::{Profile, ProfileRecord};
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
#[derive(Debug, Clone)]
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

// Campaigns, profiles and moving devices: what the decision core needs on top of fences, for the
// engine benches. Each device's walk and profile come from its own seed, so any device can be
// regenerated alone and memory stays bounded however many devices there are.

/// What each brand (same order as [`BRANDS`]) sells: the interest and purchase category its
/// campaigns aim at.
const CATEGORIES: [&str; 12] = [
    "tea", "fashion", "beauty", "travel", "cars", "coffee", "sports", "books", "eyewear", "bakery",
    "shoes", "jewelry",
];

/// 2026-11-22T00:00:00Z, where generated traffic starts (as in [`write_pings`]).
pub const TRAFFIC_START: Timestamp = Timestamp(1_795_305_600_000);
/// Generated device traffic spreads its devices' first fixes over one day.
pub const TRAFFIC_SPAN_MS: i64 = 86_400_000;

/// A generator of its own for each (seed, salt, number): SplitMix64 streams started one step
/// apart would be the same stream shifted, so the start is hashed first.
fn rng_for(seed: u64, salt: u64, n: u64) -> Rng {
    Rng(Rng(seed ^ salt ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next())
}

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len())]
}

/// `n` campaign definitions, as a campaign file holds them, over the generated fences' brands,
/// regions (city codes), kinds and store ids. A realistic mix: enter / dwell 120–600 s / exit /
/// nearby 50–200 m triggers; audiences on age, income, loyalty, interests and purchases (about
/// a third of campaigns target everyone who consented, a few anonymous devices too); per-device
/// window caps and cooldowns; budgets on a quarter; schedules covering the generated traffic's
/// days (a few with daily hours or weekdays only, a few already over, a few paused or drafts).
pub fn campaign_values(spec: &GenSpec, n: usize) -> Vec<Value> {
    let mut rng = Rng(spec.seed ^ 0xCA4_4A16);
    let stores: Vec<usize> = anchors(spec)
        .iter()
        .enumerate()
        .filter(|(_, a)| a.kind == Kind::Store)
        .map(|(i, _)| i)
        .collect();
    (0..n).map(|i| campaign(&mut rng, i, &stores)).collect()
}

/// [`campaign_values`], parsed and validated as campaign files are.
pub fn campaigns(spec: &GenSpec, n: usize) -> Result<Vec<Campaign>, CampaignError> {
    campaign_values(spec, n)
        .into_iter()
        .enumerate()
        .map(|(i, v)| Campaign::from_value(v, "generated", i))
        .collect()
}

fn campaign(rng: &mut Rng, i: usize, stores: &[usize]) -> Value {
    let b = rng.below(BRANDS.len());
    let (brand, cat) = (BRANDS[b], CATEGORIES[b]);
    let city = &CITIES[rng.below(CITIES.len())];
    let r = rng.unit();
    let (place, area_wide) = if r < 0.45 {
        (
            json!({"brands": [brand], "kinds": ["store", "circle"]}),
            false,
        )
    } else if r < 0.65 {
        (json!({"brands": [brand], "regions": [city.code]}), false)
    } else if r < 0.75 {
        (json!({"kinds": ["mall"], "regions": [city.code]}), false)
    } else if r < 0.80 {
        (json!({"kinds": ["region"]}), true)
    } else if r < 0.92 && !stores.is_empty() {
        let picked: Vec<String> = (0..5 + rng.below(36))
            .map(|_| format!("s-{:07}", stores[rng.below(stores.len())]))
            .collect();
        (json!({ "stores": picked }), false)
    } else {
        (json!({"brands": [brand], "kinds": ["circle"]}), false)
    };
    let t = rng.unit();
    let trigger = if t < 0.35 {
        json!({"type": "enter"})
    } else if t < 0.55 {
        json!({"type": "dwell", "min_s": 120 + 30 * rng.below(17)})
    } else if t < 0.70 || area_wide {
        json!({"type": "exit"})
    } else {
        json!({"type": "nearby", "within_m": 50 + 10 * rng.below(16)})
    };
    let a = rng.unit();
    let audience = if a < 0.35 {
        Value::Null
    } else if a < 0.45 {
        json!({"attr": "interests", "contains": cat})
    } else if a < 0.55 {
        json!({"purchased": cat, "min": 1 + rng.below(3)})
    } else if a < 0.65 {
        let lo = 18 + 5 * rng.below(7);
        json!({"all": [
            {"attr": "age", "between": [lo, lo + 15 + 5 * rng.below(4)]},
            {"attr": "income_tier", "in": if rng.unit() < 0.5 { json!(["high"]) } else { json!(["mid", "high"]) }}
        ]})
    } else if a < 0.75 {
        json!({"attr": "loyalty", "in": ["gold", "silver", "platinum"]})
    } else if a < 0.85 {
        json!({"any": [{"attr": "interests", "contains": cat}, {"purchased": cat, "min": 1}]})
    } else if a < 0.92 {
        json!({"all": [{"attr": "gender", "eq": "f"}, {"attr": "age", "between": [20, 45]}]})
    } else {
        // New customers only.
        json!({"not": {"purchased": cat, "min": 1}})
    };
    let anonymous = audience.is_null() && rng.unit() < 0.15;
    let s = rng.unit();
    let (start, end) = ("2026-11-01T00:00:00Z", "2027-03-01T00:00:00Z");
    let schedule = if s < 0.04 {
        json!({"start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z"})
    } else if s < 0.24 {
        json!({"start": start, "end": end, "hours": [pick(rng, &["10:00-22:00", "08:00-20:00", "17:00-23:30"])]})
    } else if s < 0.32 {
        json!({"start": start, "end": end, "days": ["mon", "tue", "wed", "thu", "fri"]})
    } else {
        json!({"start": start, "end": end})
    };
    let mut caps = serde_json::Map::new();
    if rng.unit() < 0.6 {
        let window = [3_600, 86_400, 604_800, 2_592_000][rng.below(4)];
        caps.insert(
            "per_device".into(),
            json!([{"max": 1 + rng.below(3), "window_s": window}]),
        );
    }
    if rng.unit() < 0.5 {
        let cooldown = [1_800, 3_600, 21_600, 86_400][rng.below(4)];
        caps.insert("cooldown_s".into(), json!(cooldown));
    }
    let coupon = rng.unit() < 0.5;
    let kind = trigger["type"].as_str().unwrap_or("enter");
    let ttl_s = [1_800, 3_600, 7_200, 86_400][rng.below(4)];
    let mut c = json!({
        "id": format!("gen-{i:03}-{brand}-{kind}"),
        "name": format!("{brand} {kind} #{i}"),
        "priority": rng.below(31),
        "schedule": schedule,
        "trigger": trigger,
        "where": place,
        "offer": {
            "title": format!("{brand} at {{store_name}}"),
            "body": if coupon { "Show {coupon_code} before {expires_at}." } else { "See you in store." },
            "ttl_s": ttl_s,
        },
        "caps": caps,
    });
    let status = rng.unit();
    if status < 0.04 {
        c["status"] = json!("paused");
    } else if status < 0.06 {
        c["status"] = json!("draft");
    }
    if coupon {
        c["offer"]["coupon_prefix"] = json!(format!("G{i:03}-"));
    }
    if anonymous {
        c["anonymous"] = json!(true);
    } else if !audience.is_null() {
        c["audience"] = audience;
    }
    let bud = rng.unit();
    if bud < 0.25 {
        c["budget"] = json!({
            "total": 2_000 + 1_000 * rng.below(49),
            "daily": 200 + 100 * rng.below(30),
            "timezone": city.tz,
        });
    } else if bud < 0.30 {
        c["budget"] = json!({"daily": 500 + 100 * rng.below(50), "timezone": city.tz});
    }
    c
}

/// The id of generated device `n` (1-based): `d-0000001`.
pub fn device_id(n: usize) -> String {
    format!("d-{n:07}")
}

/// Profiles for devices `d-0000001` … in id order: about 95 % of devices have one (the rest
/// are anonymous), and about 90 % of those consented. Attributes as in
/// `fixtures/profiles.jsonl`: age, gender, income_tier, loyalty, interests, purchases_90d,
/// home_region. Each goes through [`profile::decode`](crate::profile::decode), as a record from
/// the profile topic would.
pub fn profiles(spec: &GenSpec, devices: usize) -> impl Iterator<Item = (String, Profile)> {
    let seed = spec.seed;
    (1..=devices).filter_map(move |n| {
        let line = profile_line(seed, n)?;
        match crate::profile::decode(None, Some(&line)).ok()? {
            ProfileRecord::Upsert { device_id, profile } => Some((device_id.into_owned(), profile)),
            ProfileRecord::Delete { .. } => None,
        }
    })
}

/// [`profiles`] as JSON Lines (CONTRACTS §5), e.g. for `beckon replay --profiles`.
pub fn write_profiles(spec: &GenSpec, devices: usize, mut out: impl Write) -> io::Result<()> {
    for line in (1..=devices).filter_map(|n| profile_line(spec.seed, n)) {
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Device `n`'s profile as a JSON line, or `None` when it has none.
fn profile_line(seed: u64, n: usize) -> Option<Vec<u8>> {
    let mut rng = rng_for(seed, 0x9E0_F11E, n as u64);
    if rng.unit() < 0.05 {
        return None;
    }
    let consent = rng.unit() < 0.9;
    let gender = match rng.unit() {
        u if u < 0.48 => "f",
        u if u < 0.96 => "m",
        _ => "x",
    };
    let income = match rng.unit() {
        u if u < 0.30 => "low",
        u if u < 0.75 => "mid",
        _ => "high",
    };
    let loyalty = match rng.unit() {
        u if u < 0.55 => "none",
        u if u < 0.80 => "silver",
        u if u < 0.95 => "gold",
        _ => "platinum",
    };
    let mut interests: Vec<&str> = (0..1 + rng.below(4))
        .map(|_| pick(&mut rng, &CATEGORIES))
        .collect();
    interests.sort_unstable();
    interests.dedup();
    let mut purchases = serde_json::Map::new();
    for _ in 0..rng.below(4) {
        purchases.insert(pick(&mut rng, &CATEGORIES).into(), json!(1 + rng.below(8)));
    }
    let value = json!({
        "device_id": device_id(n),
        "consent": consent,
        "attributes": {
            "age": 16 + rng.below(60),
            "gender": gender,
            "income_tier": income,
            "loyalty": loyalty,
            "interests": interests,
            "purchases_90d": purchases,
            "home_region": CITIES[rng.below(CITIES.len())].code,
        }
    });
    serde_json::to_vec(&value).ok()
}

/// One device's walk: from `from` to `via` (metres north and east of `origin`), a stay there,
/// then away along `away`, at `speed`. A visit walks into a store and stays; a pass-by and a
/// stroll go straight on (no stay).
#[derive(Debug, Clone)]
struct Walk {
    id: u32,
    rng: Rng,
    /// Fixes still to come after the pending one.
    left: u32,
    t0: i64,
    /// Event time of the pending fix.
    ts: i64,
    interval_s: f64,
    origin: (f64, f64),
    from: [f64; 2],
    via: [f64; 2],
    away: [f64; 2],
    speed: f64,
    /// Seconds to reach `via`, and to stay there.
    reach_s: f64,
    stay_s: f64,
    accuracy: f64,
    noise: f64,
}

impl Walk {
    /// Where the device really is `t` seconds into its walk, in metres from `origin`.
    fn position(&self, t: f64) -> [f64; 2] {
        let lerp = |a: [f64; 2], d: [f64; 2], k: f64| [a[0] + d[0] * k, a[1] + d[1] * k];
        if t < self.reach_s {
            let d = [self.via[0] - self.from[0], self.via[1] - self.from[1]];
            lerp(self.from, d, t / self.reach_s)
        } else if t < self.reach_s + self.stay_s {
            self.via
        } else {
            lerp(
                self.via,
                self.away,
                self.speed * (t - self.reach_s - self.stay_s),
            )
        }
    }

    /// The pending fix as a CONTRACTS §4 location ping.
    fn encode(&mut self) -> Vec<u8> {
        let [n, e] = self.position((self.ts - self.t0) as f64 / 1000.0);
        let (dn, de) = (
            self.rng.normal() * self.noise,
            self.rng.normal() * self.noise,
        );
        let (lat, lon) = offset(self.origin.0, self.origin.1, n + dn, e + de);
        let accuracy = (self.accuracy * self.rng.range(0.8, 1.25)).clamp(5.0, 30.0);
        format!(
            r#"{{"type":"location","device_id":"d-{:07}","ts":"{}","lat":{},"lon":{},"accuracy_m":{:.1}}}"#,
            self.id,
            Timestamp(self.ts),
            round7(lat),
            round7(lon),
            accuracy
        )
        .into_bytes()
    }
}

/// A device's pending fix, ordered by when it arrives (then by device, for determinism).
struct Pending {
    arrives: i64,
    rank: u32,
    walk: Walk,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.arrives, self.rank) == (o.arrives, o.rank)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.arrives, self.rank).cmp(&(o.arrives, o.rank))
    }
}

/// Location pings of walking devices, in arrival order: see [`device_pings`].
pub struct DevicePings {
    seed: u64,
    devices: usize,
    mean_fixes: f64,
    /// Fences a device can walk to (all but districts).
    targets: Vec<Anchor>,
    /// Device number of start rank `r`: `(r × mul + add) mod devices`, plus 1.
    mul: u64,
    add: u64,
    next_rank: usize,
    active: BinaryHeap<Reverse<Pending>>,
}

/// Location pings (CONTRACTS §4, JSON, one per item) of `devices` walking devices, about
/// `pings` in all. Each device walks at 1–2 m/s from a start near a generated fence — into it
/// for a stay of 1–15 minutes (55 %), past it within 150 m of its edge (30 %), or through the
/// neighbourhood (15 %) — with a fix every 10–60 s, GPS noise σ 3–15 m and reported accuracy
/// 5–30 m (noisier devices report worse accuracy). The number of fixes per device is
/// 1 + exponential, so most devices send a few and some stay long enough to dwell.
///
/// Devices start one after another over [`TRAFFIC_SPAN_MS`] from [`TRAFFIC_START`], and their
/// pings interleave in event-time order, except about 3 % that arrive 1–30 s late. Device
/// numbers are a permutation of start order, so devices active together are not neighbours by
/// id. Memory is bounded by the devices active at once, not by `devices` or `pings`.
pub fn device_pings(spec: &GenSpec, devices: usize, pings: usize) -> DevicePings {
    let targets = anchors(spec)
        .into_iter()
        .filter(|a| a.kind != Kind::Region)
        .collect();
    let n = devices.max(1) as u64;
    // Two primes below 2^31: one of them is coprime with any n < 2^62.
    let mul = [2_147_483_647u64, 2_147_483_629]
        .into_iter()
        .find(|p| !n.is_multiple_of(*p))
        .unwrap_or(1);
    DevicePings {
        seed: spec.seed,
        devices,
        mean_fixes: pings as f64 / devices.max(1) as f64,
        targets,
        mul,
        add: spec.seed % n,
        next_rank: 0,
        active: BinaryHeap::new(),
    }
}

/// [`device_pings`] as JSON Lines, e.g. for `beckon replay`.
pub fn write_device_pings(
    spec: &GenSpec,
    devices: usize,
    pings: usize,
    mut out: impl Write,
) -> io::Result<()> {
    for line in device_pings(spec, devices, pings) {
        out.write_all(&line)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

impl DevicePings {
    fn start_of(&self, rank: usize) -> i64 {
        TRAFFIC_START.0 + (rank as i128 * i128::from(TRAFFIC_SPAN_MS) / self.devices as i128) as i64
    }

    fn walk(&self, rank: usize) -> Walk {
        let id = ((rank as u64 * self.mul + self.add) % self.devices as u64) as u32 + 1;
        let mut rng = rng_for(self.seed, 0x3A1_C0DE, u64::from(id));
        let t0 = self.start_of(rank);
        let interval_s = rng.range(10.0, 60.0);
        let fixes = 1.0 + (-(self.mean_fixes - 1.0).max(0.0) * rng.unit().max(1e-12).ln()).round();
        let a = match self.targets.len() {
            0 => Anchor {
                lat: CITIES[0].lat,
                lon: CITIES[0].lon,
                radius_m: 50.0,
                kind: Kind::Circle,
                city: 0,
            },
            len => self.targets[rng.below(len)],
        };
        let speed = rng.range(1.0, 2.0);
        let bearing = |rng: &mut Rng| {
            let t = rng.range(0.0, TAU);
            [t.cos(), t.sin()]
        };
        let r = a.radius_m;
        let mode = rng.unit();
        let (from, via, away, stay_s) = if mode < 0.55 {
            // A visit: from just outside, in to near the centre, a stay, then out.
            let (d, d0) = (bearing(&mut rng), r + rng.range(5.0, 60.0));
            let (v, dv) = (bearing(&mut rng), 0.3 * r * rng.unit());
            let stay = rng.range(60.0, 900.0);
            (
                [d[0] * d0, d[1] * d0],
                [v[0] * dv, v[1] * dv],
                bearing(&mut rng),
                stay,
            )
        } else {
            // A pass-by (aimed within 150 m of the edge) or a stroll (from up to 800 m away).
            let dir = bearing(&mut rng);
            let side = [-dir[1], dir[0]];
            let (lateral, back) = if mode < 0.85 {
                (rng.range(0.0, r + 150.0), rng.range(30.0, 200.0))
            } else {
                (rng.range(0.0, 800.0), rng.range(-400.0, 400.0))
            };
            let from = [
                side[0] * lateral - dir[0] * back,
                side[1] * lateral - dir[1] * back,
            ];
            (from, [from[0] + dir[0], from[1] + dir[1]], dir, 0.0)
        };
        let dist = ((via[0] - from[0]).powi(2) + (via[1] - from[1]).powi(2)).sqrt();
        let accuracy = rng.range(5.0, 30.0);
        let ts = t0 + (rng.unit() * interval_s * 1000.0) as i64;
        Walk {
            id,
            left: (fixes.clamp(1.0, 60.0) as u32) - 1,
            t0,
            ts,
            interval_s,
            origin: (a.lat, a.lon),
            from,
            via,
            away,
            speed,
            reach_s: dist / speed,
            stay_s,
            accuracy,
            // Noisier devices report worse accuracy: σ 3 m at 5 m, 15 m at 30 m.
            noise: 3.0 + (accuracy - 5.0) * 12.0 / 25.0,
            rng,
        }
    }

    fn schedule(&mut self, rank: usize, mut walk: Walk) {
        let late = if walk.rng.unit() < 0.03 {
            (walk.rng.range(1.0, 30.0) * 1000.0) as i64
        } else {
            0
        };
        self.active.push(Reverse(Pending {
            arrives: walk.ts + late,
            rank: rank as u32,
            walk,
        }));
    }
}

impl Iterator for DevicePings {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        // Start every device whose first fix could arrive before the earliest pending one (a
        // fix never arrives before its device's start).
        while self.next_rank < self.devices {
            let t0 = self.start_of(self.next_rank);
            if self.active.peek().is_some_and(|p| p.0.arrives < t0) {
                break;
            }
            let walk = self.walk(self.next_rank);
            self.schedule(self.next_rank, walk);
            self.next_rank += 1;
        }
        let Reverse(Pending { rank, mut walk, .. }) = self.active.pop()?;
        let line = walk.encode();
        if walk.left > 0 {
            walk.left -= 1;
            walk.ts += (walk.interval_s * walk.rng.range(0.7, 1.3) * 1000.0) as i64;
            self.schedule(rank as usize, walk);
        }
        Some(line)
    }
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

    fn small() -> GenSpec {
        GenSpec {
            fences: 2_000,
            pings: 0,
            seed: 7,
        }
    }

    #[test]
    fn generated_campaigns_are_valid_and_mixed() {
        let list = campaigns(&small(), 150).unwrap();
        assert_eq!(list.len(), 150);
        let active = list
            .iter()
            .filter(|c| c.status == crate::campaign::Status::Active)
            .count();
        assert!(active >= 130, "{active} active");
        let kinds =
            |k: crate::campaign::TriggerKind| list.iter().filter(|c| c.trigger.kind() == k).count();
        use crate::campaign::TriggerKind as T;
        assert!(
            kinds(T::Enter) > 20
                && kinds(T::Dwell) > 10
                && kinds(T::Exit) > 10
                && kinds(T::Nearby) > 20
        );
        assert!(list.iter().filter(|c| c.audience.is_some()).count() > 60);
        assert!(list.iter().any(|c| c.anonymous));
        assert!(list.iter().filter(|c| c.budget.total.is_some()).count() > 10);
        let ids: std::collections::HashSet<_> = list.iter().map(|c| &c.id).collect();
        assert_eq!(ids.len(), list.len(), "ids are unique");
        assert_eq!(
            campaign_values(&small(), 150),
            campaign_values(&small(), 150)
        );
    }

    #[test]
    fn generated_profiles_look_like_the_fixtures() {
        let all: Vec<_> = profiles(&small(), 2_000).collect();
        assert!((1_850..1_950).contains(&all.len()), "{}", all.len());
        let consented = all.iter().filter(|(_, p)| p.consent).count();
        assert!((1_600..1_800).contains(&consented), "{consented}");
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in id order");
        for name in [
            "age",
            "gender",
            "income_tier",
            "loyalty",
            "interests",
            "home_region",
        ] {
            assert!(all.iter().all(|(_, p)| p.get(name).is_some()), "{name}");
        }
        assert_eq!(all[0].0.len(), "d-0000001".len());
    }

    #[test]
    fn devices_walk_in_event_time_order() {
        let lines: Vec<Vec<u8>> = device_pings(&small(), 3_000, 9_000).collect();
        assert_eq!(
            lines,
            device_pings(&small(), 3_000, 9_000).collect::<Vec<_>>()
        );
        assert!((8_000..10_000).contains(&lines.len()), "{}", lines.len());
        let (mut newest, mut late, mut ids) = (0, 0, std::collections::HashSet::new());
        for line in &lines {
            let p = crate::ping::decode(line).unwrap();
            ids.insert(p.device_id.into_owned());
            assert!(newest - p.ts.0 <= 30_000, "out of order by at most 30 s");
            late += usize::from(p.ts.0 < newest);
            newest = newest.max(p.ts.0);
            let crate::ping::PingKind::Location { accuracy, .. } = p.kind else {
                panic!("only location pings")
            };
            assert!((5.0..=30.0).contains(&accuracy.unwrap().0));
        }
        assert!(late > 0 && late < lines.len() / 10, "{late} late");
        assert_eq!(ids.len(), 3_000, "every device pings");
    }

    #[test]
    fn the_core_makes_offers_on_generated_data_one_ping_or_a_batch_at_a_time() {
        use crate::engine::{Engine, EngineConfig};
        use crate::fence::{FenceIndex, IndexOptions};
        use crate::offer::Output;
        let spec = small();
        let mut bytes = Vec::new();
        write_fences(&spec, &mut bytes).unwrap();
        let fences = parse_fences(&bytes, LoadMode::Strict).unwrap().fences;
        let index = FenceIndex::new(fences, IndexOptions::default());
        let world = std::sync::Arc::new(
            crate::world::World::new(
                index,
                crate::beacon::BeaconRegistry::default(),
                campaigns(&spec, 120).unwrap(),
                25.0,
            )
            .unwrap(),
        );
        let engine = || {
            let mut engine = Engine::new(world.clone(), EngineConfig::default());
            for (device_id, profile) in profiles(&spec, 5_000) {
                engine.on_profile(ProfileRecord::Upsert {
                    device_id: device_id.into(),
                    profile,
                });
            }
            engine
        };
        let lines: Vec<Vec<u8>> = device_pings(&spec, 5_000, 20_000).collect();
        let pings: Vec<_> = lines
            .iter()
            .map(|l| crate::ping::decode(l).unwrap())
            .collect();
        let (mut one, mut by_one) = (engine(), Output::default());
        for p in &pings {
            one.on_ping(p, &mut by_one);
        }
        let stats = one.stats();
        assert!(
            stats.presence.iter().all(|&n| n > 0),
            "{:?}",
            stats.presence
        );
        let (offers, presence) = (by_one.offers.len(), by_one.presence.len());
        assert!(
            offers > 250 && presence > 1_000,
            "{offers} offers, {presence} events"
        );
        // Batches of uneven sizes (a device can recur within one) change nothing.
        let (mut batched, mut by_batch) = (engine(), Output::default());
        let mut rest = &pings[..];
        for size in [1, 3, 256, 7, 1000].into_iter().cycle() {
            let (batch, tail) = rest.split_at(size.min(rest.len()));
            batched.on_batch(batch, &mut by_batch);
            rest = tail;
            if rest.is_empty() {
                break;
            }
        }
        assert_eq!(by_batch.offers, by_one.offers);
        assert_eq!(by_batch.presence, by_one.presence);
        assert_eq!(batched.stats(), one.stats());
    }
}
