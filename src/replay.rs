//! `beckon replay` (CONTRACTS §7): the decision core over a JSON Lines file of pings, in file
//! order — the offers and presence events the streaming engine would emit for the same input,
//! and a summary: reach, offers per campaign and store, suppressions by reason, budget burn.
//! It is the test harness and the "what would this campaign have done yesterday" forecast.
//!
//! Devices are split over partitions as the producers of the pings topic split them, one engine
//! per partition with its share of every budget, as `beckon run` runs them: budget-limited
//! offers go to the same devices.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Write};
use std::num::NonZeroU32;
use std::sync::Arc;

use serde::Serialize;

use crate::caps::{Share, Suppression};
use crate::engine::{Engine, EngineConfig};
use crate::offer::Output;
use crate::partition::partition_of;
use crate::ping::{self, Ping};
use crate::profile::ProfileRecord;
use crate::time::Timestamp;
use crate::world::World;

/// Lines decoded and fed to the engine at a time.
const BATCH: usize = 256;

/// Where replay writes what the core emitted.
pub struct Sinks<'a> {
    pub offers: &'a mut dyn Write,
    pub presence: Option<&'a mut dyn Write>,
    /// Invalid lines: `{"line":n,"error":…,"value":…}`.
    pub dead_letters: Option<&'a mut dyn Write>,
}

/// What a replay did.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Summary {
    pub lines: u64,
    pub invalid: BTreeMap<&'static str, u64>,
    pub location_pings: u64,
    pub beacon_pings: u64,
    pub too_late: u64,
    pub imprecise: u64,
    pub unknown_beacon: u64,
    pub presence: BTreeMap<&'static str, u64>,
    /// Devices seen, and devices that got at least one offer.
    pub devices: u64,
    pub reach: u64,
    pub offers: u64,
    pub offers_by_campaign: BTreeMap<String, u64>,
    pub offers_by_store: BTreeMap<String, u64>,
    pub suppressed_by_reason: BTreeMap<&'static str, u64>,
    pub suppressed_by_campaign: BTreeMap<String, BTreeMap<&'static str, u64>>,
    pub budgets: BTreeMap<String, BudgetBurn>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct BudgetBurn {
    pub spent: u64,
    pub total: Option<u64>,
    pub daily: Option<u32>,
    /// What each partition's engine spent, against its [`Share`] of the budget; left out of
    /// the summary with one partition (it is `spent`).
    #[serde(skip_serializing_if = "one_partition")]
    pub spent_by_partition: Vec<u64>,
}

fn one_partition(spent: &[u64]) -> bool {
    spent.len() == 1
}

/// One engine per partition of the pings topic, each deciding the devices Kafka's default
/// partitioner puts there ([`partition_of`] their id) and spending that partition's [`Share`]
/// of every budget.
pub struct Partitions {
    engines: Vec<Engine>,
}

impl Partitions {
    pub fn new(world: Arc<World>, cfg: EngineConfig, count: NonZeroU32) -> Self {
        let count = count.get();
        let engines = (0..count)
            .map(|index| Engine::with_share(world.clone(), cfg.clone(), Share { index, count }))
            .collect();
        Self { engines }
    }

    /// The engines, partition `p`'s at `p`.
    pub fn engines_mut(&mut self) -> &mut [Engine] {
        &mut self.engines
    }

    /// The partition of `device_id`'s pings (they are keyed by it, CONTRACTS §4).
    fn of(&self, device_id: &str) -> usize {
        partition_of(device_id.as_bytes(), self.engines.len() as u32) as usize
    }

    /// A profile update, to the engine of the device's partition.
    pub fn on_profile(&mut self, record: ProfileRecord<'_>) {
        let (ProfileRecord::Upsert { device_id, .. } | ProfileRecord::Delete { device_id }) =
            &record;
        let p = self.of(device_id);
        self.engines[p].on_profile(record);
    }
}

/// Replays `input` through `partitions`, each ping to its device's partition. Per batch of
/// lines, partition 0's output comes first, then partition 1's…, so the output is deterministic.
/// With `close_at_end`, devices still somewhere when the input ends are exited as of their last
/// fix (a forecast of a whole day); without it, output is exactly what the streaming engine
/// emits for the same pings.
pub fn run(
    partitions: &mut Partitions,
    input: impl BufRead,
    sinks: Sinks<'_>,
    close_at_end: bool,
) -> io::Result<Summary> {
    let Sinks {
        offers,
        mut presence,
        mut dead_letters,
    } = sinks;
    let mut summary = Summary::default();
    let mut out = Output::default();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut reached = rustc_hash::FxHashSet::default();
    let world = partitions.engines[0].world().clone();
    let mut emit = |out: &mut Output,
                    buf: &mut Vec<u8>,
                    presence: &mut Option<&mut dyn Write>,
                    summary: &mut Summary|
     -> io::Result<()> {
        if let Some(w) = presence.as_mut() {
            buf.clear();
            for e in &out.presence {
                e.encode(&world, buf);
            }
            w.write_all(buf)?;
        }
        buf.clear();
        for o in &out.offers {
            o.encode(&world, buf);
            reached.insert(o.device_id.clone());
            let store = &world.fences.fence(o.fence).props.store_id;
            *summary.offers_by_store.entry(store.clone()).or_default() += 1;
        }
        offers.write_all(buf)?;
        out.clear();
        Ok(())
    };
    // Lines are read and decoded a batch at a time, each partition's part of the batch fed to
    // its `Engine::on_batch`: the same output as one ping at a time, with the device lookups'
    // cache misses overlapped.
    let mut lines = input.split(b'\n').enumerate();
    let mut batch: Vec<(usize, Vec<u8>)> = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        for (n, line) in lines.by_ref() {
            let mut line = line?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                batch.push((n + 1, line));
                if batch.len() == BATCH {
                    break;
                }
            }
        }
        if batch.is_empty() {
            break;
        }
        summary.lines += batch.len() as u64;
        let count = partitions.engines.len();
        let mut parts: Vec<Vec<Ping<'_>>> = (0..count)
            .map(|_| Vec::with_capacity(batch.len() / count + 1))
            .collect();
        for (n, line) in &batch {
            match ping::decode(line) {
                Ok(p) => parts[partitions.of(&p.device_id)].push(p),
                Err(e) => {
                    *summary.invalid.entry(e.kind()).or_default() += 1;
                    if let Some(w) = dead_letters.as_mut() {
                        let value = String::from_utf8_lossy(line);
                        let letter =
                            serde_json::json!({"line": n, "error": e.to_string(), "value": value});
                        writeln!(w, "{letter}")?;
                    }
                }
            }
        }
        for (engine, pings) in partitions.engines.iter_mut().zip(&parts) {
            engine.on_batch(pings, &mut out);
            emit(&mut out, &mut buf, &mut presence, &mut summary)?;
        }
    }
    if close_at_end {
        for engine in &mut partitions.engines {
            engine.advance(Timestamp(i64::MAX), &mut out);
            emit(&mut out, &mut buf, &mut presence, &mut summary)?;
        }
    }
    let engines = &partitions.engines;
    for engine in engines {
        let stats = engine.stats();
        summary.location_pings += stats.location_pings;
        summary.beacon_pings += stats.beacon_pings;
        summary.too_late += stats.too_late.iter().sum::<u64>();
        summary.imprecise += stats.imprecise;
        summary.unknown_beacon += stats.unknown_beacon;
        for (name, n) in ["enter", "dwell", "exit"].into_iter().zip(stats.presence) {
            *summary.presence.entry(name).or_default() += n;
        }
        for (r, n) in Suppression::ALL.iter().zip(stats.suppressed_by_reason()) {
            *summary.suppressed_by_reason.entry(r.name()).or_default() += n;
        }
        summary.devices += engine.devices().len() as u64;
    }
    summary.reach = reached.len() as u64;
    for (ci, c) in world.campaigns.iter() {
        let offers = engines.iter().map(|e| e.stats().offers[ci.get()]).sum();
        summary.offers += offers;
        summary.offers_by_campaign.insert(c.id.clone(), offers);
        let per: BTreeMap<_, _> = Suppression::ALL
            .iter()
            .map(|r| {
                let n = engines
                    .iter()
                    .map(|e| e.stats().suppressed[ci.get()][r.index()]);
                (r.name(), n.sum::<u64>())
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        if !per.is_empty() {
            summary.suppressed_by_campaign.insert(c.id.clone(), per);
        }
        if c.budget.total.is_some() || c.budget.daily.is_some() {
            let spent_by_partition: Vec<u64> =
                engines.iter().map(|e| e.budgets().spent(ci)).collect();
            summary.budgets.insert(
                c.id.clone(),
                BudgetBurn {
                    spent: spent_by_partition.iter().sum(),
                    total: c.budget.total,
                    daily: c.budget.daily,
                    spent_by_partition,
                },
            );
        }
    }
    Ok(summary)
}
