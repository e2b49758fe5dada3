//! `FenceIndex::containing` by situation and by index size, with and without the H3 cell cache,
//! and the cost of the H3 cell lookup itself.
//!
//! `cargo bench --bench containing` (BECKON_BENCH_MAX_FENCES=1000000 adds the 1 M-fence index;
//! the default stops at 100 k to keep a run short).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use beckon::fence::{parse_fences, Batch, CellScheme, FenceIndex, Hits, IndexOptions, LoadMode};
use beckon::generate::{write_fences, write_pings, GenSpec};
use beckon::ping::{decode, PingKind};
use beckon::sphere::{LatLon, Meters};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const PINGS: usize = 100_000;

fn index(fences: usize, cells: Option<CellScheme>) -> FenceIndex {
    let spec = GenSpec {
        fences,
        pings: 0,
        seed: 42,
    };
    let mut bytes = Vec::new();
    write_fences(&spec, &mut bytes).unwrap();
    let fences = parse_fences(&bytes, LoadMode::Strict).unwrap().fences;
    FenceIndex::new(
        fences,
        IndexOptions {
            cells,
            ..IndexOptions::default()
        },
    )
}

fn points(fences: usize) -> Vec<LatLon> {
    let spec = GenSpec {
        fences,
        pings: PINGS,
        seed: 42,
    };
    let mut bytes = Vec::new();
    write_pings(&spec, &mut bytes).unwrap();
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|l| match decode(l).ok()?.kind {
            PingKind::Location { at, .. } => Some(at),
            PingKind::Beacon { .. } => None,
        })
        .collect()
}

/// Splits points into the situations that cost differently: covered by a fence, within 50 m of
/// one, in some fence's bounding box but outside it, and far from everything.
fn situations(index: &FenceIndex, pts: &[LatLon]) -> Vec<(&'static str, Vec<LatLon>)> {
    let (mut inside, mut near, mut bbox, mut far) = (vec![], vec![], vec![], vec![]);
    let (mut hits, mut close) = (Hits::new(), Vec::new());
    for &p in pts {
        index.containing(p, &mut hits);
        index.nearby(p, Meters(50.0), 1, &mut close);
        if !hits.is_empty() {
            inside.push(p);
        } else if !close.is_empty() {
            near.push(p);
        } else if index.in_some_envelope(p) {
            bbox.push(p);
        } else {
            far.push(p);
        }
    }
    vec![
        ("mixed", pts.to_vec()),
        ("inside", inside),
        ("near-edge", near),
        ("bbox-outside", bbox),
        ("far", far),
    ]
}

fn bench_containing(c: &mut Criterion) {
    let max: usize = std::env::var("BECKON_BENCH_MAX_FENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut g = c.benchmark_group("containing");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    for fences in [10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&n| n <= max)
    {
        let pts = points(fences);
        let schemes = [
            ("rtree", None),
            ("grid-0.008", Some(CellScheme::Grid { deg: 0.008 })),
            ("h3-r10", Some(CellScheme::H3(h3o::Resolution::Ten))),
        ];
        for (label, scheme) in schemes {
            let idx = index(fences, scheme);
            for (situation, set) in situations(&idx, &pts) {
                if set.is_empty() {
                    continue;
                }
                g.throughput(Throughput::Elements(set.len() as u64));
                g.bench_with_input(
                    BenchmarkId::new(format!("{label}/{situation}"), fences),
                    &set,
                    |b, set| {
                        let mut hits = Hits::new();
                        b.iter(|| {
                            for &p in set {
                                idx.containing(black_box(p), &mut hits);
                                black_box(&hits);
                            }
                        })
                    },
                );
                // The batched form `beckon match` uses, in its batches of 4 096.
                if scheme.is_some() {
                    g.bench_with_input(
                        BenchmarkId::new(format!("{label}-batch/{situation}"), fences),
                        &set,
                        |b, set| {
                            let mut hits = vec![Hits::new(); 4096];
                            let mut batch = Batch::default();
                            b.iter(|| {
                                for chunk in set.chunks(4096) {
                                    idx.containing_many(
                                        black_box(chunk),
                                        &mut hits[..chunk.len()],
                                        &mut batch,
                                    );
                                    black_box(&hits);
                                }
                            })
                        },
                    );
                }
            }
        }
    }
    g.finish();
}

fn bench_h3_cell(c: &mut Criterion) {
    let pts = points(10_000);
    let mut g = c.benchmark_group("h3");
    g.throughput(Throughput::Elements(pts.len() as u64));
    g.bench_function("latlng_to_cell_r10", |b| {
        b.iter(|| {
            for p in &pts {
                black_box(
                    h3o::LatLng::new(p.lat(), p.lon())
                        .unwrap()
                        .to_cell(h3o::Resolution::Ten),
                );
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_containing, bench_h3_cell);
criterion_main!(benches);
