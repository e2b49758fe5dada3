//! Heap bytes per fence of a built `FenceIndex`, measured with a counting allocator (not
//! estimated), and the time to parse and build: `cargo bench --bench index_memory`
//! (BECKON_BENCH_MAX_FENCES=1000000 adds the 1 M-fence set).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use beckon::fence::{parse_fences, FenceIndex, IndexOptions, LoadMode};
use beckon::generate::{write_fences, GenSpec};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

fn main() {
    let max: usize = std::env::var("BECKON_BENCH_MAX_FENCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!("| fences | kinds | file MB | parse s | build s | heap B/fence (fences + index) | of which index structures |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for n in [10_000, 100_000, 1_000_000]
        .into_iter()
        .filter(|&n| n <= max)
    {
        let mut bytes = Vec::new();
        write_fences(
            &GenSpec {
                fences: n,
                pings: 0,
                seed: 42,
            },
            &mut bytes,
        )
        .unwrap();
        let t = Instant::now();
        let all = parse_fences(&bytes, LoadMode::Strict).unwrap().fences;
        let parse_s = t.elapsed().as_secs_f64();
        let mb = bytes.len() as f64 / 1e6;
        drop(bytes);
        let stores: Vec<_> = all
            .iter()
            .filter(|f| f.props.kind.as_deref() == Some("store"))
            .cloned()
            .collect();
        for (kinds, fences) in [("all (mixed)", all), ("stores only", stores)] {
            let count = fences.len();
            let before = live();
            let held = fences.clone();
            let fences_bytes = live() - before;
            drop(held);
            let t = Instant::now();
            let index = FenceIndex::new(fences, IndexOptions::default());
            let build_s = t.elapsed().as_secs_f64();
            // The fences moved into the index were already live before it was built.
            let index_bytes = live() - before;
            println!(
                "| {n} | {kinds} ({count}) | {mb:.0} | {parse_s:.2} | {build_s:.2} | {:.0} | {:.0} |",
                (fences_bytes + index_bytes) as f64 / count as f64,
                index_bytes as f64 / count as f64
            );
            drop(index);
        }
    }
}
