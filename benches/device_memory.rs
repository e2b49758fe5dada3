//! What the core keeps per device, measured with a counting allocator (not estimated), with
//! 1 M devices tracked: `cargo bench --bench device_memory` (env `BECKON_BENCH_DEVICES`,
//! default 1 000 000; `BECKON_BENCH_PINGS_PER_DEVICE`, default 3; `BECKON_BENCH_DAYS`, default
//! 2, days of traffic replayed).
//!
//! The world (10 k generated fences, 120 campaigns) and the pre-encoded pings are built first
//! and are not counted. Then, on an empty engine:
//! 1. the generated profiles are loaded; each profile's own heap bytes (its attributes and its
//!    box) are counted as they are decoded and handed over, and the rest of what loading added
//!    is the device table (slots, hash table, id arena) for the devices with a profile;
//! 2. one day of pings is fed (every device is then tracked), then the same day shifted one day
//!    later (the steady state: offer history from the day before, tracks of devices still
//!    somewhere).
//!
//! Device state = everything the engine added except the profiles: table, presence tracks,
//! offer ledgers, the silence queue, budgets. Heap bytes are what was asked of the allocator;
//! RSS is what the process really grew by (allocator overhead included, and noisier).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/env.rs"]
mod env;
use env::env;
use std::sync::Arc;

use beckon::beacon::BeaconRegistry;
use beckon::engine::{Engine, EngineConfig};
use beckon::fence::{parse_fences, FenceIndex, IndexOptions, LoadMode};
use beckon::generate::{self, GenSpec, TRAFFIC_SPAN_MS};
use beckon::offer::Output;
use beckon::ping::decode;
use beckon::profile::{Profile, ProfileRecord};
use beckon::world::World;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::live;

/// Resident set size, bytes.
fn rss() -> isize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let devices = env("BECKON_BENCH_DEVICES", 1_000_000);
    let per_device = env("BECKON_BENCH_PINGS_PER_DEVICE", 3);
    let spec = GenSpec {
        fences: 10_000,
        pings: 0,
        seed: 42,
    };
    let mut bytes = Vec::new();
    generate::write_fences(&spec, &mut bytes).unwrap();
    let fences = parse_fences(&bytes, LoadMode::Strict).unwrap().fences;
    drop(bytes);
    let cfg = EngineConfig::default();
    let world = World::new(
        FenceIndex::new(fences, IndexOptions::default()),
        BeaconRegistry::default(),
        generate::campaigns(&spec, 120).unwrap(),
        cfg.presence.exit_buffer_m,
    )
    .unwrap();
    let (mut buf, mut ends) = (Vec::new(), Vec::new());
    for line in generate::device_pings(&spec, devices, devices * per_device) {
        buf.extend_from_slice(&line);
        ends.push(buf.len());
    }
    buf.shrink_to_fit();
    let mut engine = Engine::new(Arc::new(world), cfg);
    let mut out = Output::default();
    out.offers.reserve(64);
    out.presence.reserve(64);

    let (heap0, rss0) = (live(), rss());
    let (mut profile_heap, mut profiles) = (0isize, 0usize);
    let mut records = generate::profiles(&spec, devices);
    loop {
        let before = live();
        let Some((device_id, profile)) = records.next() else {
            break;
        };
        // What the decoded profile holds (its attributes), not its id: the table keeps ids.
        profile_heap += live() - before - device_id.capacity() as isize
            + std::mem::size_of::<Profile>() as isize;
        profiles += 1;
        engine.on_profile(ProfileRecord::Upsert {
            device_id: device_id.into(),
            profile,
        });
    }
    drop(records);
    let (heap1, rss1) = (live(), rss());

    let mut feed = |day: i64, engine: &mut Engine| {
        let mut start = 0;
        for &end in &ends {
            let mut p = decode(&buf[start..end]).unwrap();
            p.ts.0 += day * TRAFFIC_SPAN_MS;
            engine.on_ping(&p, &mut out);
            out.clear();
            start = end;
        }
        (live(), rss())
    };
    let (heap2, rss2) = feed(0, &mut engine);
    let tracked = engine.devices().len();
    let census = |engine: &Engine| {
        let d = engine.devices();
        let (mut tracks, mut with_tracks, mut issued, mut with_ledger) = (0, 0, 0, 0);
        for s in 0..d.len() {
            let dev = d.get(beckon::device::DeviceSlot(s as u32));
            let t = dev.tracks.len();
            tracks += t;
            with_tracks += usize::from(t > 0);
            issued += dev.ledger.len();
            with_ledger += usize::from(!dev.ledger.is_empty());
        }
        format!(
            "{with_tracks} devices with {tracks} tracks, {with_ledger} with {issued} offers in their ledger"
        )
    };
    let after_day1 = census(&engine);
    let (heap3, rss3) = feed(1, &mut engine);
    let after_day2 = census(&engine);
    // Longer runs show where offer ledgers level off: they keep offers as long as the longest
    // campaign cap window (30 days in the generated set) and at least two days.
    let days = env("BECKON_BENCH_DAYS", 2).max(2);
    let mut later = Vec::new();
    for day in 2..days as i64 {
        let (heap, _) = feed(day, &mut engine);
        later.push((day + 1, heap, census(&engine)));
    }

    let per = |b: isize| b as f64 / tracked as f64;
    let table = heap1 - heap0 - profile_heap;
    println!(
        "{tracked} devices tracked ({profiles} with a profile), {} pings per day replayed; \
         after day 1: {after_day1}; after day 2: {after_day2}",
        ends.len()
    );
    println!();
    println!("| per device (÷ {tracked}) | heap B/device | RSS B/device |");
    println!("|---|---:|---:|");
    println!(
        "| profiles (attributes + box; ÷ all devices) | {:.0} | |",
        per(profile_heap)
    );
    println!(
        "| profiles (÷ devices with a profile) | {:.0} | |",
        profile_heap as f64 / profiles.max(1) as f64
    );
    println!(
        "| loading profiles: table + profiles | {:.0} | {:.0} |",
        per(heap1 - heap0),
        per(rss1 - rss0)
    );
    println!(
        "| device table for devices with a profile (slots, hash table, id arena) | {:.0} | |",
        per(table)
    );
    println!(
        "| day 1 pings: tracks, ledgers, silence queue, anonymous devices' slots | {:.0} | {:.0} |",
        per(heap2 - heap1),
        per(rss2 - rss1)
    );
    println!(
        "| day 2 pings (steady state), more | {:.0} | {:.0} |",
        per(heap3 - heap2),
        per(rss3 - rss2)
    );
    println!(
        "| **device state after day 1** (all but profiles) | **{:.0}** | |",
        per(heap2 - heap0 - profile_heap)
    );
    println!(
        "| **device state after day 2** (all but profiles) | **{:.0}** | |",
        per(heap3 - heap0 - profile_heap)
    );
    println!(
        "| everything after day 2 (state + profiles) | {:.0} | {:.0} |",
        per(heap3 - heap0),
        per(rss3 - rss0)
    );
    for (day, heap, census) in later {
        println!(
            "| device state after day {day} ({census}) | {:.0} | |",
            per(heap - heap0 - profile_heap)
        );
    }
}
