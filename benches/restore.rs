//! Restoring one partition's engine from its compacted state changelog, as the streaming engine
//! does when a partition is assigned to it: `cargo bench --bench restore` (env
//! `BECKON_BENCH_DEVICES`, default 1 000 000; `BECKON_BENCH_PINGS_PER_DEVICE`, default 3).
//!
//! The changelog is built the way the stream builds it: one engine with `keep_changes` is fed
//! the generated world's walking devices (10 k fences, 120 campaigns, profiles loaded, one day
//! of pings) in batches of 1024 (`Engine::on_batch`, as a consumed batch), and
//! `take_changes(next_offset)` after each batch, the offset counting the pings consumed so far.
//! Then the log is compacted as Kafka's log cleaner does: the last value of each key is kept,
//! at that record's place in the log, and tombstones drop their key.
//!
//! Measured: a fresh engine (no profiles: only what the changelog holds) given every compacted
//! record in log order (`Engine::restore_record`), then `Engine::finish_restore`. Not measured:
//! reading the records from Kafka, creating and dropping the engine. The log's size before and
//! after compaction is printed once, before criterion runs, with a first restore timed by hand.
//!
//! The restore allocates per device, so its time depends on the allocator's state: here it gets
//! memory fresh from the system, as in a process that starts and restores. Setup therefore
//! leaves no small allocations freed behind it (the log is kept in a few large buffers, the
//! engine that wrote it lives to the end). With glibc, restoring after 4.5 M small boxes were
//! freed took half as long again; restoring into the freed memory of an engine of the same
//! devices, about half as long.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/city.rs"]
mod city;
#[path = "support/env.rs"]
mod env;
use city::{spec, world};
use env::env;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use beckon::changelog::{Records, PARTITION_KEY};
use beckon::engine::{Engine, EngineConfig};
use beckon::generate;
use beckon::offer::Output;
use beckon::ping::decode;
use beckon::profile::ProfileRecord;
use beckon::world::World;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use smallvec::SmallVec;

/// Pings per consumed batch (`pipeline.batch_max`'s default): one `take_changes` each.
const BATCH: usize = 1024;

/// A changelog partition as its log cleaner leaves it: each key's last record, at that record's
/// place in the log.
///
/// Values go back to back into one buffer and keys are kept inline, so building the log leaves
/// no small allocations behind: freed, they would sit in the allocator's bins and change what
/// the measured restore pays for its own.
#[derive(Default)]
struct Log {
    /// Records appended, before compaction.
    appended: u64,
    tombstones: u64,
    values: Vec<u8>,
    last: HashMap<Key, Last>,
}

/// Device ids (and the partition key) fit inline.
type Key = SmallVec<[u8; 24]>;

/// A key's last record.
struct Last {
    /// Its position in the log.
    at: u64,
    /// Its value's span in [`Log::values`]; `None`: a tombstone.
    value: Option<(usize, usize)>,
}

impl Log {
    fn append(&mut self, records: &Records) {
        for (key, value) in records.iter() {
            let value = value.map(|v| {
                let start = self.values.len();
                self.values.extend_from_slice(v);
                (start, self.values.len())
            });
            self.tombstones += u64::from(value.is_none());
            let last = Last {
                at: self.appended,
                value,
            };
            self.appended += 1;
            match self.last.get_mut(key) {
                Some(slot) => *slot = last,
                None => {
                    self.last.insert(Key::from_slice(key), last);
                }
            }
        }
    }

    /// The compacted log, in log order.
    fn compact(self) -> Compacted {
        let mut kept: Vec<(u64, &Key, (usize, usize))> = (self.last.iter())
            .filter_map(|(key, last)| last.value.map(|v| (last.at, key, v)))
            .collect();
        kept.sort_unstable_by_key(|&(at, _, _)| at);
        let size = kept.iter().map(|(_, k, (a, b))| k.len() + b - a).sum();
        let mut log = Compacted {
            buf: Vec::with_capacity(size),
            spans: Vec::with_capacity(kept.len()),
            keys: 0,
        };
        for (_, key, (a, b)) in kept {
            let k = log.buf.len();
            log.buf.extend_from_slice(key);
            let v = log.buf.len();
            log.buf.extend_from_slice(&self.values[a..b]);
            log.spans.push((k, v, log.buf.len()));
            log.keys += key.len();
        }
        log
    }
}

/// A compacted changelog partition: records back to back, in log order.
struct Compacted {
    buf: Vec<u8>,
    /// `(key start, value start, end)` in `buf`.
    spans: Vec<(usize, usize, usize)>,
    /// Bytes of keys in `buf` (the rest are values).
    keys: usize,
}

impl Compacted {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (self.spans.iter()).map(|&(k, v, e)| (&self.buf[k..v], &self.buf[v..e]))
    }
}

/// What the engine that wrote the changelog left.
struct Written {
    /// Kept alive until the end, so its memory is not freed into the restores'.
    engine: Engine,
    /// The pings offset the last batch ends at.
    next_offset: i64,
    appended: u64,
    tombstones: u64,
    log: Compacted,
}

/// The changelog of one partition whose engine saw `devices` devices' pings, compacted.
fn changelog(world: &Arc<World>, cfg: &EngineConfig, devices: usize, pings: usize) -> Written {
    let mut engine = Engine::new(world.clone(), cfg.clone());
    engine.keep_changes();
    for (device_id, profile) in generate::profiles(&spec(), devices) {
        engine.on_profile(ProfileRecord::Upsert {
            device_id: device_id.into(),
            profile,
        });
    }
    let (mut log, mut records, mut out) = (Log::default(), Records::default(), Output::default());
    let mut lines: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    let mut consumed = 0i64;
    let mut feed = |lines: &mut Vec<Vec<u8>>, engine: &mut Engine| {
        let batch: Vec<_> = lines.iter().map(|l| decode(l).unwrap()).collect();
        engine.on_batch(&batch, &mut out);
        out.clear();
        consumed += batch.len() as i64;
        engine.take_changes(consumed, &mut records);
        log.append(&records);
        records.clear();
        lines.clear();
    };
    for line in generate::device_pings(&spec(), devices, pings) {
        lines.push(line);
        if lines.len() == BATCH {
            feed(&mut lines, &mut engine);
        }
    }
    if !lines.is_empty() {
        feed(&mut lines, &mut engine);
    }
    Written {
        engine,
        next_offset: consumed,
        appended: log.appended,
        tombstones: log.tombstones,
        log: log.compact(),
    }
}

/// A fresh engine restored from `log`.
fn restore(engine: &mut Engine, log: &Compacted) -> Option<i64> {
    for (key, value) in log.iter() {
        engine.restore_record(key, Some(value)).unwrap();
    }
    engine.finish_restore()
}

fn bench_restore(c: &mut Criterion) {
    let devices = env("BECKON_BENCH_DEVICES", 1_000_000);
    let per_device = env("BECKON_BENCH_PINGS_PER_DEVICE", 3);
    let cfg = EngineConfig::default();
    let t = Instant::now();
    let world = Arc::new(world(&cfg));
    let written = changelog(&world, &cfg, devices, devices * per_device);
    let (log, tracked) = (&written.log, written.engine.devices().len());
    eprintln!(
        "restore bench: {} pings from {devices} devices ({tracked} tracked) in batches of \
         {BATCH}: {} changelog records ({} tombstones), {} after compaction ({} bytes: keys {}, \
         values {}; {:.1} B/device); built in {:.1} s",
        written.next_offset,
        written.appended,
        written.tombstones,
        log.len(),
        log.buf.len(),
        log.keys,
        log.buf.len() - log.keys,
        log.buf.len() as f64 / tracked.max(1) as f64,
        t.elapsed().as_secs_f64(),
    );
    assert_eq!(
        log.iter().last().map(|(k, _)| k),
        Some(PARTITION_KEY),
        "the partition record ends the log"
    );

    // Once by hand, on an allocator nothing was freed into yet: the restore must rebuild every
    // device, and go on where the log ends.
    let mut engine = Engine::new(world.clone(), cfg.clone());
    let t = Instant::now();
    let next = restore(&mut engine, log);
    eprintln!(
        "first restore: {} devices in {:.3} s",
        engine.devices().len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(engine.devices().len(), tracked, "devices restored");
    assert_eq!(tracked, devices, "every generated device pinged");
    assert_eq!(next, Some(written.next_offset), "restored next offset");
    drop(engine);

    let mut g = c.benchmark_group("restore");
    // One restore takes most of a second: a handful of flat samples is enough.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(12))
        .throughput(Throughput::Elements(log.len() as u64));
    g.bench_function(BenchmarkId::new("compacted_changelog", devices), |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let mut engine = Engine::new(world.clone(), cfg.clone());
                let t = Instant::now();
                let next = restore(&mut engine, log);
                took += t.elapsed();
                assert_eq!(next, Some(written.next_offset));
                // Dropped outside the timed part.
                drop(engine);
            }
            took
        })
    });
    g.finish();
}

criterion_group!(benches, bench_restore);
criterion_main!(benches);
