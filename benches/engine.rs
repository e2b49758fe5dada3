//! The whole decision core per ping — decode, match, presence, campaigns, caps — on generated
//! data: the 10 k fence set, 120 generated campaigns (≥ 100 active), 1 M devices with profiles
//! walking into, past and around the fences (`generate::device_pings`), about 3 pings each.
//!
//! `cargo bench --bench engine` (env: `BECKON_BENCH_DEVICES`, default 1 000 000;
//! `BECKON_BENCH_PINGS_PER_DEVICE`, default 3).
//!
//! What is measured, all on one thread and in one run, so the ratios are like for like:
//! - `core/decode`: `ping::decode` only;
//! - `core/decode+device_slot`: decode and the device-table lookup (`Devices::slot`, a table
//!   of the same 1 M ids);
//! - `core/decode+containing`: decode and `FenceIndex::containing`, the matching alone;
//! - `core/decode+containing+reach`: and the nearby campaigns' reach query
//!   (`Campaigns::reach`), which `on_ping` runs for every precise location fix;
//! - `core/decode+on_ping`: decode and `Engine::on_ping` (one reused `Output`, cleared per
//!   ping) — the whole core, in **steady state**: every device already tracked and with its
//!   history (caps, budgets) from earlier days;
//! - `core/decode+on_batch`: the same through `Engine::on_batch`, 256 pings a call (device
//!   lookups staged with prefetch hints).
//!
//! The pre-encoded pings are one day of traffic; they are replayed in a loop, each replay
//! shifted by one day in event time (added after decode), so devices come back on later days
//! as they would in production. Before criterion runs, two replays are timed by hand and their
//! counts printed: the **first pass** (devices have profiles but no presence or offer history)
//! and the second, the first steady-state day.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/city.rs"]
mod city;
#[path = "support/env.rs"]
mod env;
use city::{spec, FENCES};
use env::env;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beckon::campaign::Status;
use beckon::caps::Suppression;
use beckon::device::Devices;
use beckon::engine::{Engine, EngineConfig, Stats};
use beckon::fence::Hits;
use beckon::generate::{self, TRAFFIC_SPAN_MS};
use beckon::offer::Output;
use beckon::ping::{decode, PingKind};
use beckon::profile::ProfileRecord;
use beckon::world::World;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Pings per criterion iteration.
const CHUNK: usize = 100_000;
/// Pings per `Engine::on_batch` call in the batched runs (a Kafka poll's worth).
const BATCH: usize = 256;

/// The city, with the campaign mix the bench needs checked.
fn world() -> World {
    let world = city::world(&EngineConfig::default());
    let active = (world.campaigns.iter())
        .filter(|(_, c)| c.status == Status::Active)
        .count();
    assert!(active >= 100, "only {active} active campaigns");
    world
}

/// Pre-encoded pings, back to back.
struct Pings {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Pings {
    fn generate(devices: usize, pings: usize) -> Self {
        let (mut buf, mut ends) = (Vec::with_capacity(pings * 130), Vec::with_capacity(pings));
        for line in generate::device_pings(&spec(), devices, pings) {
            buf.extend_from_slice(&line);
            ends.push(buf.len());
        }
        Self { buf, ends }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

/// The engine fed the pings in a loop, each loop one day later.
struct Replay {
    engine: Engine,
    out: Output,
    next: usize,
    day: i64,
    /// Pings per `Engine::on_batch` call (1: `Engine::on_ping`).
    batch: usize,
    /// Stats at the start of each replay of the pings.
    at_day_start: Vec<Stats>,
}

impl Replay {
    /// Feeds the next `n` pings (at most to the end of the day), `batch` at a time.
    fn step(&mut self, pings: &Pings, n: usize) {
        let shift = self.day * TRAFFIC_SPAN_MS;
        let end = (self.next + n).min(pings.len());
        while self.next < end {
            let upto = (self.next + self.batch).min(end);
            let decoded = |i| {
                let mut p = decode(pings.get(i)).unwrap();
                p.ts.0 += shift;
                p
            };
            if self.batch == 1 {
                self.engine.on_ping(&decoded(self.next), &mut self.out);
            } else {
                let batch: Vec<_> = (self.next..upto).map(decoded).collect();
                self.engine.on_batch(&batch, &mut self.out);
            }
            self.out.clear();
            self.next = upto;
        }
        if self.next == pings.len() {
            self.next = 0;
            self.day += 1;
            self.at_day_start.push(self.engine.stats().clone());
        }
    }

    /// Runs exactly one replay of the pings, from the start, timed.
    fn day(&mut self, pings: &Pings) -> Duration {
        assert_eq!(self.next, 0);
        let t = Instant::now();
        self.step(pings, pings.len());
        t.elapsed()
    }
}

fn report(label: &str, pings: usize, devices: usize, took: Option<Duration>, a: &Stats, b: &Stats) {
    let offers: u64 = b.offers.iter().sum::<u64>() - a.offers.iter().sum::<u64>();
    let presence: Vec<u64> = (0..3).map(|k| b.presence[k] - a.presence[k]).collect();
    let (sa, sb) = (a.suppressed_by_reason(), b.suppressed_by_reason());
    let suppressed: Vec<(&str, u64)> = Suppression::ALL
        .iter()
        .map(|r| (r.name(), sb[r.index()] - sa[r.index()]))
        .filter(|&(_, n)| n > 0)
        .collect();
    let rate = took.map_or(String::new(), |t| {
        format!(
            " in {:.2} s = {:.0} pings/s,",
            t.as_secs_f64(),
            pings as f64 / t.as_secs_f64()
        )
    });
    eprintln!(
        "{label}: {pings} pings from {devices} devices{rate} {offers} offers ({:.1} per 100 devices), \
         presence enter/dwell/exit {presence:?}, suppressed {} {suppressed:?}, too late {}, imprecise {}",
        offers as f64 * 100.0 / devices as f64,
        sb.iter().sum::<u64>() - sa.iter().sum::<u64>(),
        b.too_late.iter().sum::<u64>() - a.too_late.iter().sum::<u64>(),
        b.imprecise - a.imprecise,
    );
}

fn bench_core(c: &mut Criterion) {
    let devices = env("BECKON_BENCH_DEVICES", 1_000_000);
    let per_device = env("BECKON_BENCH_PINGS_PER_DEVICE", 3);
    let t = Instant::now();
    let world = Arc::new(world());
    let pings = Pings::generate(devices, devices * per_device);
    let mut engine = Engine::new(world.clone(), EngineConfig::default());
    let mut profiles = 0;
    for (device_id, profile) in generate::profiles(&spec(), devices) {
        profiles += 1;
        engine.on_profile(ProfileRecord::Upsert {
            device_id: device_id.into(),
            profile,
        });
    }
    eprintln!(
        "engine bench: {FENCES} fences, {} campaigns ({} active), {profiles} profiles, {} pings \
         ({:.0} MB) from {devices} devices; set up in {:.1} s",
        world.campaigns.len(),
        world
            .campaigns
            .iter()
            .filter(|(_, c)| c.status == Status::Active)
            .count(),
        pings.len(),
        pings.buf.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let mut replay = Replay {
        at_day_start: vec![engine.stats().clone()],
        engine,
        out: Output::default(),
        next: 0,
        day: 0,
        batch: 1,
    };
    let first = replay.day(&pings);
    let second = replay.day(&pings);
    replay.batch = BATCH;
    let third = replay.day(&pings);
    replay.batch = 1;
    let s = &replay.at_day_start;
    report(
        "first pass (cold: no presence or offer history)",
        pings.len(),
        devices,
        Some(first),
        &s[0],
        &s[1],
    );
    report(
        "second pass (steady state, one day later)",
        pings.len(),
        devices,
        Some(second),
        &s[1],
        &s[2],
    );
    report(
        &format!("third pass (steady state, on_batch of {BATCH})"),
        pings.len(),
        devices,
        Some(third),
        &s[2],
        &s[3],
    );
    eprintln!("devices tracked: {}", replay.engine.devices().len());

    let mut g = c.benchmark_group("core");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(CHUNK as u64));
    // Stage peers, to split the whole core's time: decoding alone, matching, the device table
    // lookup (a table holding the same 1 M ids), and matching plus the nearby campaigns' reach.
    let mut next = 0;
    let mut stage = |name: &str, work: &mut dyn FnMut(&[u8])| {
        g.bench_function(BenchmarkId::new(name, devices), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    for _ in 0..CHUNK {
                        work(pings.get(next));
                        next = (next + 1) % pings.len();
                    }
                }
                t.elapsed()
            })
        });
    };
    stage("decode", &mut |bytes| {
        black_box(decode(bytes).unwrap());
    });
    let mut hits = Hits::new();
    stage("decode+containing", &mut |bytes| {
        let p = decode(bytes).unwrap();
        if let PingKind::Location { at, .. } = p.kind {
            world.fences.containing(at, &mut hits);
        }
        black_box((&p, &hits));
    });
    let mut table = Devices::default();
    for n in 1..=devices {
        table.slot(&generate::device_id(n));
    }
    stage("decode+device_slot", &mut |bytes| {
        let p = decode(bytes).unwrap();
        black_box(table.slot(&p.device_id));
    });
    drop(table);
    let mut reach = Vec::new();
    stage("decode+containing+reach", &mut |bytes| {
        let p = decode(bytes).unwrap();
        if let PingKind::Location { at, .. } = p.kind {
            world.fences.containing(at, &mut hits);
            world
                .campaigns
                .reach()
                .query(at, &hits, &world.fences, &mut reach);
        }
        black_box((&p, &hits, &reach));
    });
    for (name, batch) in [("decode+on_ping", 1), ("decode+on_batch", BATCH)] {
        replay.batch = batch;
        g.bench_function(BenchmarkId::new(name, devices), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    let mut left = CHUNK;
                    while left > 0 {
                        let n = left.min(pings.len() - replay.next);
                        replay.step(&pings, n);
                        left -= n;
                    }
                }
                t.elapsed()
            })
        });
    }
    g.finish();
    let s = &replay.at_day_start;
    if s.len() >= 2 {
        let n = s.len() - 1;
        report(
            &format!("pass {n} (last whole pass inside criterion)"),
            pings.len(),
            devices,
            None,
            &s[n - 1],
            &s[n],
        );
    }
}

criterion_group!(benches, bench_core);
criterion_main!(benches);
