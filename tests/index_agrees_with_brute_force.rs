//! The index gives exactly the answers of testing every fence one by one (CONTRACTS §1 covers
//! semantics), with every cell scheme, on random fences anywhere on Earth: holes,
//! MultiPolygons, many-vertex polygons (prepared), circles near the poles and across the
//! antimeridian, and points on edges and vertices.

use beckon::fence::{Batch, CellScheme, Fence, FenceIndex, FenceProps, Hits, IndexOptions, Shape};
use beckon::sphere::{self, LatLon, Meters};
use geo::{Coord, Intersects, LineString, MultiPolygon, Point, Polygon};
use proptest::prelude::*;

/// A star-shaped ring (simple by construction) around (lon, lat), radius in degrees.
fn star(lon: f64, lat: f64, r: f64, radii: &[f64], phase: f64) -> LineString<f64> {
    let n = radii.len();
    let mut pts: Vec<Coord<f64>> = radii
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let a = phase + std::f64::consts::TAU * k as f64 / n as f64;
            Coord {
                x: lon + r * f * a.cos(),
                y: lat + r * f * a.sin(),
            }
        })
        .collect();
    pts.push(pts[0]);
    LineString::new(pts)
}

#[derive(Debug, Clone)]
enum Spec {
    Area {
        lon: f64,
        lat: f64,
        r: f64,
        radii: Vec<f64>,
        phase: f64,
        hole: bool,
        twin: bool,
    },
    Circle {
        lon: f64,
        lat: f64,
        radius: f64,
    },
    /// A store given split in two at the antimeridian (RFC 7946 §3.1.9).
    Split {
        lat: f64,
        west: f64,
        east: f64,
        h: f64,
    },
}

fn spec() -> impl Strategy<Value = Spec> {
    let area = (
        -170.0..170.0f64,
        -80.0..80.0f64,
        1e-4..0.05f64,
        prop::collection::vec(0.6..1.0f64, 3..48),
        0.0..6.3f64,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(lon, lat, r, radii, phase, hole, twin)| Spec::Area {
            lon,
            lat,
            r,
            radii,
            phase,
            hole,
            twin,
        });
    let circle = (
        prop_oneof![-180.0..180.0f64, 179.0..180.0f64, -180.0..-179.0f64],
        prop_oneof![-90.0..90.0f64, 88.0..90.0f64, -90.0..-88.0f64],
        prop_oneof![1.0..500.0f64, 500.0..50_000.0f64],
    )
        .prop_map(|(lon, lat, radius)| Spec::Circle { lon, lat, radius });
    let split = (-80.0..80.0f64, 1e-5..0.01f64, 1e-5..0.01f64, 1e-5..0.01f64)
        .prop_map(|(lat, west, east, h)| Spec::Split { lat, west, east, h });
    prop_oneof![4 => area, 4 => circle, 1 => split]
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Polygon<f64> {
    Polygon::new(
        LineString::from(vec![(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]),
        vec![],
    )
}

fn build(i: usize, s: &Spec) -> Fence {
    let shape = match s {
        Spec::Area {
            lon,
            lat,
            r,
            radii,
            phase,
            hole,
            twin,
        } => {
            let holes = if *hole {
                vec![star(
                    *lon,
                    *lat,
                    r * 0.3,
                    &[1.0, 0.9, 1.0, 0.8, 1.0],
                    *phase,
                )]
            } else {
                vec![]
            };
            let mut polys = vec![Polygon::new(star(*lon, *lat, *r, radii, *phase), holes)];
            if *twin {
                polys.push(Polygon::new(
                    star(lon + 2.5 * r, *lat, *r, radii, *phase),
                    vec![],
                ));
            }
            Shape::Area(MultiPolygon(polys))
        }
        Spec::Split { lat, west, east, h } => Shape::Area(MultiPolygon(vec![
            rect(180.0 - west, *lat, 180.0, lat + h),
            rect(-180.0, *lat, -180.0 + east, lat + h),
        ])),
        Spec::Circle { lon, lat, radius } => Shape::Circle {
            center: Point::new(*lon, *lat),
            radius: Meters(*radius),
        },
    };
    Fence {
        id: format!("f-{i:03}"),
        shape,
        props: FenceProps {
            store_id: format!("s-{i}"),
            ..FenceProps::default()
        },
    }
}

/// The points worth asking about: around every fence, on its vertices and edge midpoints, and
/// on circle rims.
fn probes(fences: &[Fence], jitter: &[(f64, f64)]) -> Vec<LatLon> {
    let mut out = Vec::new();
    for f in fences {
        match &f.shape {
            Shape::Area(mp) => {
                for ring in
                    mp.0.iter()
                        .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
                {
                    for l in ring.lines() {
                        out.push((l.start.y, l.start.x));
                        out.push(((l.start.y + l.end.y) / 2.0, (l.start.x + l.end.x) / 2.0));
                    }
                }
                if let Some(b) = f.shape.area_bounds() {
                    let (w, h) = (b.width(), b.height());
                    for (jx, jy) in jitter {
                        out.push((b.min().y + h * jy, b.min().x + w * jx));
                    }
                }
            }
            Shape::Circle { center, radius } => {
                let d = sphere::meters_to_lat_deg(*radius);
                for (jx, jy) in jitter {
                    out.push((
                        center.y() + d * (2.0 * jy - 1.0) * 1.2,
                        center.x() + d * (2.0 * jx - 1.0) * 3.0,
                    ));
                }
                out.push((center.y() + d, center.x()));
            }
        }
    }
    out.into_iter()
        .filter_map(|(lat, lon)| {
            let lon = if lon > 180.0 {
                lon - 360.0
            } else if lon < -180.0 {
                lon + 360.0
            } else {
                lon
            };
            LatLon::new(lat.clamp(-90.0, 90.0), lon).ok()
        })
        .collect()
}

fn brute(fences: &[Fence], p: LatLon) -> Vec<String> {
    let mut ids: Vec<String> = fences
        .iter()
        .filter(|f| match &f.shape {
            Shape::Area(mp) => mp.intersects(&Coord {
                x: p.lon(),
                y: p.lat(),
            }),
            Shape::Circle { center, radius } => sphere::distance(*center, p.point()) <= *radius,
        })
        .map(|f| f.id.clone())
        .collect();
    ids.sort();
    ids
}

const SCHEMES: [Option<CellScheme>; 4] = [
    None,
    Some(CellScheme::Grid { deg: 0.008 }),
    Some(CellScheme::Grid { deg: 0.0005 }),
    Some(CellScheme::H3(h3o::Resolution::Nine)),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn containing_agrees_with_testing_every_fence(
        specs in prop::collection::vec(spec(), 1..12),
        jitter in prop::collection::vec((0.0..1.0f64, 0.0..1.0f64), 8..24),
    ) {
        let fences: Vec<Fence> = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
        let points = probes(&fences, &jitter);
        for scheme in SCHEMES {
            let index = FenceIndex::new(fences.clone(), IndexOptions { cells: scheme, ..IndexOptions::default() });
            // The batched form, run twice through one scratch so nothing of one batch leaks
            // into the next, must give each point the same answer.
            let mut many = vec![Hits::new(); points.len()];
            let mut batch = Batch::default();
            index.containing_many(&points, &mut many, &mut batch);
            index.containing_many(&points, &mut many, &mut batch);
            let mut hits = Hits::new();
            for (&p, batched) in points.iter().zip(&many) {
                index.containing(p, &mut hits);
                let got: Vec<String> = hits.iter().map(|&i| index.fence(i).id.clone()).collect();
                prop_assert_eq!(got, brute(&fences, p), "{:?} at {:?}", scheme, p);
                prop_assert_eq!(batched, &hits, "batched, {:?} at {:?}", scheme, p);
            }
        }
    }

    #[test]
    fn nearby_is_every_fence_within_reach_nearest_first(
        specs in prop::collection::vec(spec(), 1..12),
        jitter in prop::collection::vec((0.0..1.0f64, 0.0..1.0f64), 4..8),
        reach in 10.0..20_000.0f64,
    ) {
        let fences: Vec<Fence> = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
        let index = FenceIndex::new(fences.clone(), IndexOptions::default());
        let mut near = Vec::new();
        for p in probes(&fences, &jitter) {
            index.nearby(p, Meters(reach), usize::MAX, &mut near);
            for w in near.windows(2) {
                prop_assert!(w[0].distance <= w[1].distance);
            }
            let mut hits = Hits::new();
            index.containing(p, &mut hits);
            for &i in &hits {
                prop_assert!(near.iter().any(|n| n.fence == i && n.distance.0 == 0.0), "a covering fence is at distance 0");
            }
            // Every fence the brute force finds within reach is listed.
            for (k, f) in index.fences().iter().enumerate() {
                let d = index.distance(beckon::fence::FenceIdx(k as u32), p.point());
                if d.0 <= reach * 0.999 {
                    prop_assert!(near.iter().any(|n| index.fence(n.fence).id == f.id), "{} at {d:?} missing", f.id);
                }
            }
        }
    }
}

#[test]
fn nearby_limits_and_measures_from_the_edge() {
    let square = |id: &str, lon: f64| Fence {
        id: id.into(),
        shape: Shape::Area(MultiPolygon(vec![Polygon::new(
            LineString::from(vec![
                (lon, 0.0),
                (lon + 0.001, 0.0),
                (lon + 0.001, 0.001),
                (lon, 0.001),
                (lon, 0.0),
            ]),
            vec![],
        )])),
        props: FenceProps {
            store_id: id.into(),
            ..FenceProps::default()
        },
    };
    let index = FenceIndex::new(
        vec![
            square("far", 0.01),
            square("near", 0.002),
            square("here", 0.0),
        ],
        IndexOptions::default(),
    );
    let mut near = Vec::new();
    index.nearby(
        LatLon::new(0.0005, 0.0005).unwrap(),
        Meters(2_000.0),
        2,
        &mut near,
    );
    let got: Vec<(&str, f64)> = near
        .iter()
        .map(|n| (index.fence(n.fence).id.as_str(), n.distance.0))
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], ("here", 0.0));
    // 0.0015° of longitude at the equator is 166.8 m from (0.0005, 0.0005) to the near square's west edge.
    assert_eq!(got[1].0, "near");
    assert!((got[1].1 - 166.79).abs() < 0.1, "{got:?}");
}

#[test]
fn nearby_reaches_across_the_antimeridian() {
    let west_of_dateline = Fence {
        id: "fiji".into(),
        shape: Shape::Area(MultiPolygon(vec![Polygon::new(
            LineString::from(vec![
                (179.998, -17.0),
                (179.999, -17.0),
                (179.999, -16.999),
                (179.998, -16.999),
                (179.998, -17.0),
            ]),
            vec![],
        )])),
        props: FenceProps {
            store_id: "s".into(),
            ..FenceProps::default()
        },
    };
    let index = FenceIndex::new(vec![west_of_dateline], IndexOptions::default());
    let mut near = Vec::new();
    // 0.002° east of the fence's east edge, on the other side of ±180°.
    index.nearby(
        LatLon::new(-16.9995, -179.999).unwrap(),
        Meters(500.0),
        5,
        &mut near,
    );
    assert_eq!(near.len(), 1, "{near:?}");
    let expected =
        0.002_f64.to_radians() * sphere::EARTH_RADIUS_M * (-16.9995_f64).to_radians().cos();
    assert!(
        (near[0].distance.0 - expected).abs() < 0.5,
        "{near:?} vs {expected}"
    );
}
