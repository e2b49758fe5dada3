//! The decision core: ping → match → presence → campaigns → caps → offers. Pure and
//! deterministic: event time comes from the pings, nothing reads a clock or a random source, and
//! the same inputs in the same order give the same outputs. The streaming runtime, `beckon
//! replay` and the benches all drive this one type.
//!
//! Per-device decisions depend only on that device's pings and profile, so devices can be split
//! across engines (Kafka partitions) with the same offers — except campaign budgets, the one
//! thing shared across devices.

use std::cmp::Reverse;
use std::sync::Arc;

use serde::Deserialize;

use compact_str::CompactString;

use crate::campaign::{CampaignIdx, Trigger, TriggerKind};
use crate::caps::{self, Budgets, CapsConfig, LocalTimeOf, Share, Suppression};
use crate::changelog::{self, CorruptRecord, PartitionState, Records};
use crate::device::{DeviceSlot, Devices};
use crate::fence::{self, FenceIdx, Hits};
use crate::local_time::Zone;
use crate::offer::{Offer, Output, PresenceEvent, PresenceKind};
use crate::ping::{Ping, PingKind};
use crate::presence::{Fix, PresenceConfig, Reach, Transition};
use crate::profile::{AttrValue, Profile, ProfileRecord};
use crate::reload::Renumbering;
use crate::silence::Silence;
use crate::sphere::{LatLon, Meters};
use crate::store::StoreIdx;
use crate::time::Timestamp;
use crate::world::World;

/// The core's tuning: the `engine` section of the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub presence: PresenceConfig,
    pub caps: CapsConfig,
    /// A device not heard from for this many days of event time (behind the newest ping of its
    /// partition) is forgotten: its presence and offer history go, its profile stays. It keeps
    /// state bounded; caps cannot look further back than this.
    pub retention_days: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            presence: PresenceConfig::default(),
            caps: CapsConfig::default(),
            retention_days: 30,
        }
    }
}

impl EngineConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.presence
            .validate()
            .map_err(|e| ("engine.presence", e))?;
        let silent_s = u64::from(self.presence.silence_s) + u64::from(self.presence.max_lateness_s);
        if u64::from(self.retention_days) * 86_400 <= silent_s {
            return Err((
                "engine.retention_days",
                format!(
                    "must be > presence.silence_s + presence.max_lateness_s ({silent_s} s), got {} days",
                    self.retention_days
                ),
            ));
        }
        Ok(())
    }

    fn retention_ms(&self) -> i64 {
        i64::from(self.retention_days) * 86_400_000
    }
}

/// Counters for metrics and the replay report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub location_pings: u64,
    pub beacon_pings: u64,
    /// Older than the device's newest ping by more than the allowed lateness: location pings,
    /// beacon pings.
    pub too_late: [u64; 2],
    /// Less accurate than `presence.max_accuracy_m`.
    pub imprecise: u64,
    /// Sightings of beacons not in the registry.
    pub unknown_beacon: u64,
    /// Presence events by kind: enter, dwell, exit.
    pub presence: [u64; 3],
    /// Offers and suppressed candidates, per campaign slot: the world's campaigns by
    /// [`CampaignIdx`], then those a reload removed (see [`Engine::replace_world`]).
    pub offers: Vec<u64>,
    pub suppressed: Vec<[u64; Suppression::ALL.len()]>,
}

impl Stats {
    pub fn suppressed_by_reason(&self) -> [u64; Suppression::ALL.len()] {
        let mut all = [0; Suppression::ALL.len()];
        for per in &self.suppressed {
            for (a, n) in all.iter_mut().zip(per) {
                *a += n;
            }
        }
        all
    }
}

/// A campaign that a transition could trigger.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    campaign: CampaignIdx,
    fence: FenceIdx,
    store: StoreIdx,
    trigger: TriggerKind,
    ts: Timestamp,
    distance: Meters,
    /// The visit had an offer (for exits, whose track is already gone).
    visit_offered: bool,
}

pub struct Engine {
    world: Arc<World>,
    cfg: EngineConfig,
    devices: Devices,
    budgets: Budgets,
    stats: Stats,
    /// The ids of campaigns a reload removed, ascending: their slots follow the world's.
    retired: Vec<String>,
    /// Devices with tracks, by when they would count as silent (lazy: re-checked when popped).
    silence: Silence,
    /// Devices that have pinged, by when they would be forgotten (lazy likewise).
    idle: Silence,
    /// What changed since the last [`Engine::take_changes`], when the caller keeps a changelog.
    changes: Option<Changes>,
    /// The pings offset the last restored partition record names.
    restored: Option<i64>,
    /// Newest event time seen.
    watermark: Timestamp,
    hits: Hits,
    reach: Vec<Reach>,
    transitions: Vec<Transition>,
    candidates: Vec<Candidate>,
    batch: BatchScratch,
}

/// Devices changed and forgotten since the last [`Engine::take_changes`].
#[derive(Default)]
struct Changes {
    /// `(slot, seq)`: a slot whose device is forgotten and reused meanwhile holds another seq.
    touched: Vec<(DeviceSlot, u64)>,
    forgotten: Vec<CompactString>,
}

impl Changes {
    fn touch(&mut self, slot: DeviceSlot, seq: u64) {
        if self.touched.last() != Some(&(slot, seq)) {
            self.touched.push((slot, seq));
        }
    }
}

/// [`Engine::on_batch`]'s buffers, reused from batch to batch.
#[derive(Default)]
struct BatchScratch {
    hashes: Vec<u64>,
    slots: Vec<DeviceSlot>,
    /// The fixes presence will match, in batch order, and the fences covering each.
    points: Vec<LatLon>,
    hits: Vec<Hits>,
    matching: fence::Batch,
}

impl Engine {
    /// An engine over the whole budget of every campaign.
    pub fn new(world: Arc<World>, cfg: EngineConfig) -> Self {
        Self::with_share(world, cfg, Share::WHOLE)
    }

    /// An engine for one Kafka partition of devices, spending that partition's `share` of each
    /// campaign budget.
    pub fn with_share(world: Arc<World>, cfg: EngineConfig, share: Share) -> Self {
        let n = world.campaigns.len();
        Self {
            budgets: Budgets::new(n, share),
            stats: Stats {
                offers: vec![0; n],
                suppressed: vec![[0; Suppression::ALL.len()]; n],
                ..Stats::default()
            },
            world,
            cfg,
            retired: Vec::new(),
            devices: Devices::default(),
            silence: Silence::default(),
            idle: Silence::default(),
            changes: None,
            restored: None,
            watermark: Timestamp(i64::MIN),
            hits: Hits::new(),
            reach: Vec::new(),
            transitions: Vec::new(),
            candidates: Vec::new(),
            batch: BatchScratch::default(),
        }
    }

    pub fn world(&self) -> &Arc<World> {
        &self.world
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Replaces the world the engine decides in (a reload), keeping what it knows of each
    /// device. Old and new worlds are matched by stable ids — fence id, beacon
    /// uuid/major/minor, campaign id — never by index; the result is a pure function of the
    /// engine's state and the new world, built in one pass over the devices.
    ///
    /// - A track whose fence, beacon or nearby fence is still there carries on: a device inside
    ///   stays inside (no second enter), its dwell timer and any pending exit run on, its visit
    ///   keeps its offer. A fence whose geometry changed is judged again at the next fix.
    /// - A track whose fence is gone ends with an `exit` presence event dated as a silence exit
    ///   is (its first outside evidence, else its last inside evidence): when the device was
    ///   last known there, where the watermark could be long after it left. It makes no offer:
    ///   no `exit` campaign fires for a fence that no longer exists. A track whose beacon or
    ///   nearby fence is gone ends silently, as on leaving range or reach.
    /// - Per-campaign state — each device's offer ledger (cooldowns, window caps), budgets
    ///   spent, counters — follows the campaign id. A campaign the new world lacks makes no
    ///   more offers, but its state is kept for the engine's life: removing and re-adding a
    ///   campaign resets neither its budget nor its cooldowns, and its offers still count
    ///   toward the devices' daily cap (they were made).
    ///
    /// The exits go to `out`. They, like anything else in `out`, name fences of the old world,
    /// which is returned: encode them with it. Build `world` with the engine's
    /// `presence.exit_buffer_m` as its reach slack, as for the first one.
    pub fn replace_world(&mut self, world: Arc<World>, out: &mut Output) -> Arc<World> {
        let map = Renumbering::new(&self.world, &self.retired, &world);
        let mut ended = std::mem::take(&mut self.transitions);
        for slot in self.devices.slot_range() {
            let dev = self.devices.get_mut(slot);
            dev.ledger.renumber(&map.campaigns);
            ended.clear();
            dev.tracks.renumber(&map, &world, &mut ended);
            if let (false, Some(changes)) = (ended.is_empty(), &mut self.changes) {
                changes.touch(slot, dev.seq);
            }
            for &t in &ended {
                if let Transition::Exit {
                    fence, ts, since, ..
                } = t
                {
                    let id = self.devices.id(slot);
                    presence_event(
                        &mut self.stats,
                        out,
                        id,
                        fence,
                        PresenceKind::Exit,
                        ts,
                        since,
                    );
                }
            }
        }
        self.transitions = ended;
        self.budgets.renumber(&map.campaigns);
        self.stats.offers = map.campaigns.carry(&self.stats.offers);
        self.stats.suppressed = map.campaigns.carry(&self.stats.suppressed);
        self.retired = map.campaigns.into_retired();
        std::mem::replace(&mut self.world, world)
    }

    /// From now on, remember what changes for [`Engine::take_changes`] (the streaming engine's
    /// changelog; replay and the benches do not pay for it).
    pub fn keep_changes(&mut self) {
        self.changes.get_or_insert_with(Changes::default);
    }

    /// The changelog records of what changed since the last call — forgotten devices, then
    /// every device a ping or the silence sweep changed — and last the partition's own record,
    /// with `next_offset`, the pings offset after the input these changes reflect.
    pub fn take_changes(&mut self, next_offset: i64, records: &mut Records) {
        let Some(changes) = &mut self.changes else {
            return;
        };
        for id in changes.forgotten.drain(..) {
            records.tombstone(id.as_bytes());
        }
        changes.touched.sort_unstable();
        changes.touched.dedup();
        for &(slot, seq) in &changes.touched {
            let dev = self.devices.get(slot);
            if dev.seq == seq {
                let id = self.devices.id(slot);
                records.device(id, dev, &self.world, &self.retired);
            }
        }
        changes.touched.clear();
        records.partition(&self.partition_state(next_offset));
    }

    fn partition_state(&self, next_offset: i64) -> PartitionState {
        let budgets = (0..self.budgets.slots())
            .map(|c| {
                let c = CampaignIdx(c as u32);
                let id = changelog::campaign_id(&self.world, &self.retired, c);
                (
                    id.to_owned(),
                    self.budgets.spent(c),
                    self.budgets.daily_spent(c),
                )
            })
            .filter(|(_, total, daily)| *total > 0 || !daily.is_empty())
            .collect();
        PartitionState {
            next_offset,
            watermark: self.watermark,
            next_seq: self.devices.next_seq(),
            budgets,
        }
    }

    /// Applies one changelog record, in log order (restoring a partition; see
    /// [`crate::changelog`]).
    pub fn restore_record(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), CorruptRecord> {
        if changelog::is_partition(key) {
            let Some(value) = value else {
                return Ok(());
            };
            let p = changelog::decode_partition(value)?;
            self.watermark = p.watermark;
            self.devices.set_next_seq(p.next_seq);
            self.budgets = Budgets::new(self.budgets.slots(), self.budgets.share());
            for (id, total, daily) in &p.budgets {
                if let Some(c) = changelog::campaign(&self.world, id.as_bytes()) {
                    self.budgets.restore(c, *total, daily);
                }
            }
            self.restored = Some(p.next_offset);
            return Ok(());
        }
        let id = String::from_utf8_lossy(key);
        match value {
            None => {
                if let Some(slot) = self.devices.find(&id) {
                    self.devices.forget(slot);
                }
            }
            Some(value) => {
                let state = changelog::decode_device(key, value, &self.world)?;
                let slot = self.devices.slot(&id);
                let dev = self.devices.get_mut(slot);
                (dev.seq, dev.newest) = (state.seq, state.newest);
                (dev.tracks, dev.ledger) = (state.tracks, state.ledger);
            }
        }
        Ok(())
    }

    /// Ends a restore: queues the restored devices for the silence and idle sweeps and returns
    /// the pings offset to go on from (`None`: the changelog had no partition record).
    pub fn finish_restore(&mut self) -> Option<i64> {
        let retention = self.cfg.retention_ms();
        for slot in self.devices.live().collect::<Vec<_>>() {
            let dev = self.devices.get(slot);
            if dev.seq == 0 {
                continue;
            }
            self.idle.push(dev.newest.0 + retention, dev.seq, slot);
            if !dev.tracks.is_empty() {
                let due = silent_at(&self.cfg.presence, dev.newest);
                self.silence.push(due, dev.seq, slot);
            }
        }
        self.restored.take()
    }

    /// Records setting the devices named by `keys` back to this engine's state (a device it
    /// does not know: a tombstone), then the partition record with `next_offset`: written over
    /// a torn batch before anything else, they make the log agree with the restored state.
    pub fn repair<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        next_offset: i64,
        records: &mut Records,
    ) {
        for key in keys.filter(|k| !changelog::is_partition(k)) {
            let id = String::from_utf8_lossy(key);
            match self
                .devices
                .find(&id)
                .filter(|&s| self.devices.get(s).seq != 0)
            {
                Some(slot) => {
                    records.device(&id, self.devices.get(slot), &self.world, &self.retired)
                }
                None => records.tombstone(key),
            }
        }
        records.partition(&self.partition_state(next_offset));
    }

    /// A profile update (CONTRACTS §5); it applies from the device's next ping on.
    pub fn on_profile(&mut self, record: ProfileRecord<'_>) {
        match record {
            ProfileRecord::Upsert { device_id, profile } => {
                let s = self.devices.slot(&device_id);
                self.devices.get_mut(s).profile = Some(Box::new(profile));
            }
            ProfileRecord::Delete { device_id } => {
                if let Some(s) = self.devices.find(&device_id) {
                    self.devices.get_mut(s).profile = None;
                }
            }
        }
    }

    /// One valid ping, in arrival order. What it causes is appended to `out`.
    pub fn on_ping(&mut self, ping: &Ping<'_>, out: &mut Output) {
        let slot = self.devices.slot(&ping.device_id);
        self.on_device_ping(slot, ping, None, out);
    }

    /// Valid pings in arrival order: the same as [`Engine::on_ping`] on each in turn. With a
    /// million devices their state does not fit in cache, so the batch first finds all its
    /// devices in stages, each prefetching what the next reads (index words, slots, state on the
    /// heap), and matches all its fixes likewise (`FenceIndex::containing_many`, and the reach
    /// cells prefetched): their cache misses overlap instead of being paid one ping at a time.
    pub fn on_batch(&mut self, pings: &[Ping<'_>], out: &mut Output) {
        let mut b = std::mem::take(&mut self.batch);
        let world = self.world.clone();
        let reach = world.campaigns.reach();
        b.hashes.clear();
        b.hashes
            .extend(pings.iter().map(|p| self.devices.hash(&p.device_id)));
        b.points.clear();
        b.points
            .extend(pings.iter().filter_map(|p| self.matched_at(p)));
        for (i, &h) in b.hashes.iter().enumerate() {
            self.devices.prefetch_index(h);
            if let Some(&p) = b.points.get(i) {
                reach.prefetch_cell(p);
            }
        }
        for (i, &h) in b.hashes.iter().enumerate() {
            self.devices.prefetch_slot(h);
            if let Some(&p) = b.points.get(i) {
                reach.prefetch_entries(p);
            }
        }
        b.slots.clear();
        for (p, &h) in pings.iter().zip(&b.hashes) {
            let s = self.devices.slot_hashed(&p.device_id, h);
            self.devices.prefetch_state(s);
            b.slots.push(s);
        }
        b.hits.resize_with(b.points.len(), Hits::new);
        (world.fences).containing_many(&b.points, &mut b.hits, &mut b.matching);
        let mut matched = b.hits.iter();
        for (p, &s) in pings.iter().zip(&b.slots) {
            let hits = self.matched_at(p).and_then(|_| matched.next());
            self.on_device_ping(s, p, hits, out);
        }
        self.batch = b;
    }

    /// Where presence will match a location ping: precise enough to be used.
    fn matched_at(&self, ping: &Ping<'_>) -> Option<LatLon> {
        match ping.kind {
            PingKind::Location { at, accuracy, .. } => {
                self.cfg.presence.usable_accuracy(accuracy).map(|_| at)
            }
            PingKind::Beacon { .. } => None,
        }
    }

    /// `matched`: the fences covering the ping's fix, when the batch has matched it already.
    fn on_device_ping(
        &mut self,
        slot: DeviceSlot,
        ping: &Ping<'_>,
        matched: Option<&Hits>,
        out: &mut Output,
    ) {
        let p = &self.cfg.presence;
        let dev = self.devices.get_mut(slot);
        let late = ping.ts < dev.newest;
        if late && dev.newest.0.saturating_sub(ping.ts.0) > i64::from(p.max_lateness_s) * 1000 {
            self.stats.too_late[usize::from(matches!(ping.kind, PingKind::Beacon { .. }))] += 1;
            return;
        }
        if dev.seq == 0 {
            self.devices.mark_pinged(slot);
            let dev = self.devices.get(slot);
            self.idle
                .push(ping.ts.0 + self.cfg.retention_ms(), dev.seq, slot);
        }
        if let Some(changes) = &mut self.changes {
            changes.touch(slot, self.devices.get(slot).seq);
        }
        let p = &self.cfg.presence;
        let dev = self.devices.get_mut(slot);
        // Saturating: a new device's `newest` is `i64::MIN`.
        if !late && ping.ts.0.saturating_sub(dev.newest.0) >= i64::from(p.silence_s) * 1000 {
            // The device fell silent: its visits ended before this ping can begin new ones.
            // Decide them on their own, exactly as the silence sweep would have (whether it
            // did depends on other devices' pings), so no offer or arbitration carries over.
            self.transitions.clear();
            dev.tracks.close_all(&mut self.transitions);
            self.decide(slot, out);
        }
        let p = &self.cfg.presence;
        let world = &*self.world;
        let dev = self.devices.get_mut(slot);
        self.transitions.clear();
        if !late {
            dev.newest = ping.ts;
        }
        let had_tracks = !dev.tracks.is_empty();
        match ping.kind {
            PingKind::Location { at, accuracy, .. } => {
                self.stats.location_pings += 1;
                if let Some(accuracy) = p.usable_accuracy(accuracy) {
                    let hits = match matched {
                        Some(hits) => hits,
                        None => {
                            world.fences.containing(at, &mut self.hits);
                            &self.hits
                        }
                    };
                    world
                        .campaigns
                        .reach()
                        .query(at, hits, &world.fences, &mut self.reach);
                    let fix = Fix {
                        ts: ping.ts,
                        at,
                        accuracy,
                        late,
                    };
                    dev.tracks
                        .on_fix(&fix, hits, &self.reach, world, p, &mut self.transitions);
                } else {
                    self.stats.imprecise += 1;
                }
            }
            PingKind::Beacon { beacon, rssi, .. } => {
                self.stats.beacon_pings += 1;
                match world.beacons.get(&beacon) {
                    None => self.stats.unknown_beacon += 1,
                    Some(_) if late => {}
                    Some((b, _)) => {
                        dev.tracks
                            .on_sighting(ping.ts, b, rssi, world, p, &mut self.transitions)
                    }
                }
            }
        }
        if !had_tracks && !dev.tracks.is_empty() {
            self.silence.push(silent_at(p, dev.newest), dev.seq, slot);
        }
        self.decide(slot, out);
        if ping.ts > self.watermark {
            self.watermark = ping.ts;
            self.sweep(out);
        }
    }

    /// Moves event time to `now` without a ping (e.g. a partition gone idle), so silent devices
    /// exit.
    pub fn advance(&mut self, now: Timestamp, out: &mut Output) {
        if now > self.watermark {
            self.watermark = now;
            self.sweep(out);
        }
    }

    /// Exits the devices fallen silent by the watermark, then forgets those idle past
    /// retention.
    fn sweep(&mut self, out: &mut Output) {
        while let Some((due, seq, slot)) = self.silence.pop_due(self.watermark.0) {
            let dev = self.devices.get(slot);
            if dev.seq != seq || dev.tracks.is_empty() {
                continue;
            }
            // A device heard from since it was queued is filed again at its real time, even
            // when that has come too: devices exit in (time, seq) order, as a queue rebuilt
            // from a restored state would have them.
            let real = silent_at(&self.cfg.presence, dev.newest);
            if real != due {
                self.silence.push(real, seq, slot);
                continue;
            }
            if let Some(changes) = &mut self.changes {
                changes.touch(slot, seq);
            }
            self.transitions.clear();
            self.devices
                .get_mut(slot)
                .tracks
                .close_all(&mut self.transitions);
            self.decide(slot, out);
        }
        let retention = self.cfg.retention_ms();
        while let Some((due, seq, slot)) = self.idle.pop_due(self.watermark.0) {
            let dev = self.devices.get(slot);
            if dev.seq != seq {
                continue;
            }
            let real = dev.newest.0 + retention;
            if real != due {
                self.idle.push(real, seq, slot);
                continue;
            }
            if let Some(changes) = &mut self.changes {
                changes.forgotten.push(self.devices.id(slot).into());
            }
            self.devices.forget(slot);
        }
    }

    /// Turns the device's transitions into presence events and candidates, and the candidates
    /// into at most one offer per visit.
    fn decide(&mut self, slot: DeviceSlot, out: &mut Output) {
        if self.transitions.is_empty() {
            return;
        }
        let world = &*self.world;
        let campaigns = &world.campaigns;
        let dwell_ms = i64::from(self.cfg.presence.dwell_s) * 1000;
        let id = self.devices.id(slot);
        self.candidates.clear();
        for &t in &self.transitions {
            let mut event = |fence, event, ts, since| {
                presence_event(&mut self.stats, out, id, fence, event, ts, since)
            };
            let mut candidate = |campaign, fence, trigger, ts, distance, visit_offered| {
                self.candidates.push(Candidate {
                    campaign,
                    fence,
                    store: world.stores.of_fence(fence),
                    trigger,
                    ts,
                    distance,
                    visit_offered,
                })
            };
            match t {
                Transition::Enter { fence, ts } => {
                    event(fence, PresenceKind::Enter, ts, ts);
                    for &c in campaigns.at_fence(fence, TriggerKind::Enter) {
                        candidate(c, fence, TriggerKind::Enter, ts, Meters(0.0), false);
                    }
                }
                Transition::Stay {
                    fence,
                    since,
                    before,
                    now,
                } => {
                    let crossed = |ms: i64| before.0 - since.0 < ms && ms <= now.0 - since.0;
                    if crossed(dwell_ms) {
                        event(fence, PresenceKind::Dwell, now, since);
                    }
                    for &c in campaigns.at_fence(fence, TriggerKind::Dwell) {
                        if let Trigger::Dwell { min_s } = campaigns.get(c).trigger {
                            if crossed(i64::from(min_s) * 1000) {
                                candidate(c, fence, TriggerKind::Dwell, now, Meters(0.0), false);
                            }
                        }
                    }
                }
                Transition::Exit {
                    fence,
                    ts,
                    since,
                    offered,
                } => {
                    event(fence, PresenceKind::Exit, ts, since);
                    for &c in campaigns.at_fence(fence, TriggerKind::Exit) {
                        candidate(c, fence, TriggerKind::Exit, ts, Meters(0.0), offered);
                    }
                }
                Transition::InRange { beacon, ts } => {
                    let store = world.stores.of_beacon(beacon);
                    let zone = world.beacons.beacon(beacon).zone.as_deref();
                    // The offer names the store's first premises fence (they sort by id).
                    let premises = world.stores.premises(store);
                    let Some(&fence) = premises.first().or(world.stores.fences(store).first())
                    else {
                        continue;
                    };
                    for &c in campaigns.at_store(store) {
                        if let Trigger::Beacon { zones } = &campaigns.get(c).trigger {
                            if zones.is_empty()
                                || zone.is_some_and(|z| zones.iter().any(|x| x == z))
                            {
                                candidate(c, fence, TriggerKind::Beacon, ts, Meters(0.0), false);
                            }
                        }
                    }
                }
                Transition::Near {
                    fence,
                    ts,
                    distance,
                    closest_before,
                } => {
                    for &c in campaigns.at_fence(fence, TriggerKind::Nearby) {
                        if let Trigger::Nearby { within_m } = campaigns.get(c).trigger {
                            if distance.0 <= within_m && within_m < closest_before.0 {
                                candidate(c, fence, TriggerKind::Nearby, ts, distance, false);
                            }
                        }
                    }
                }
            }
        }
        if !self.candidates.is_empty() {
            self.arbitrate(slot, out);
        }
    }

    fn arbitrate(&mut self, slot: DeviceSlot, out: &mut Output) {
        let world = &*self.world;
        let campaigns = &world.campaigns;
        let caps = &self.cfg.caps;
        let dev = self.devices.get(slot);
        let profile = dev.profile.as_deref();
        let suppress = |stats: &mut Stats, c: CampaignIdx, why: Suppression| {
            stats.suppressed[c.get()][why.index()] += 1;
        };
        // Who, when, where: checks that do not depend on other offers, cheapest first.
        self.candidates.retain(|k| {
            let c = campaigns.get(k.campaign);
            let fence = world.fences.fence(k.fence);
            let why = || {
                match profile {
                    Some(p) if !p.consent => return Some(Suppression::NoConsent),
                    None if !c.anonymous => return Some(Suppression::NoConsent),
                    _ => {}
                }
                let audience = c.audience.as_ref();
                if !(audience.is_none_or(|r| profile.is_some_and(|p| r.matches(p)))
                    && c.place.routes(fence, profile))
                {
                    return Some(Suppression::Audience);
                }
                let zone = fence.props.timezone.as_ref();
                let local = zone.unwrap_or(&UTC).local(k.ts);
                if !c.in_schedule(k.ts, local) {
                    return Some(Suppression::Schedule);
                }
                let hours = fence.props.hours.as_ref();
                if c.schedule.opening_hours && hours.is_some_and(|h| !h.is_open(local)) {
                    return Some(Suppression::Closed);
                }
                let quiet = caps.quiet_hours.is_some_and(|q| {
                    q.contains(caps_zone(caps, zone, profile).local(k.ts).second_of_day)
                });
                quiet.then_some(Suppression::QuietHours)
            };
            let why = why();
            match why {
                Some(why) => {
                    suppress(&mut self.stats, k.campaign, why);
                    false
                }
                None => true,
            }
        });
        // Highest priority first; ties to the smaller campaign id, then fence, then time.
        self.candidates.sort_by_key(|k| {
            (
                Reverse(campaigns.get(k.campaign).priority),
                k.campaign,
                k.fence,
                k.ts,
            )
        });
        // Offers still to come can be dated before the newest ping (a late ping; an exit dated
        // at its first outside fix, or at its last inside one after silence): the ledger keeps
        // what their caps will look at, counted back from the oldest of them.
        let dev = self.devices.get(slot);
        let lateness = i64::from(self.cfg.presence.max_lateness_s) * 1000;
        let oldest = (self.candidates.iter().map(|k| k.ts))
            .chain(dev.tracks.oldest_pending())
            .fold(Timestamp(dev.newest.0.saturating_sub(lateness)), Ord::min);
        let mut won: smallvec::SmallVec<[StoreIdx; 2]> = smallvec::SmallVec::new();
        for k in &self.candidates {
            let c = campaigns.get(k.campaign);
            let dev = self.devices.get_mut(slot);
            let verdict = if caps.one_offer_per_visit && won.contains(&k.store) {
                Err(Suppression::Arbitration)
            } else if caps.one_offer_per_visit
                && (k.visit_offered || dev.tracks.visit_offered(k.store))
            {
                Err(Suppression::Visit)
            } else {
                let zone = world.fences.fence(k.fence).props.timezone.as_ref();
                let day = caps::local_day(&caps_zone(caps, zone, dev.profile.as_deref()), k.ts);
                dev.ledger
                    .check(k.campaign, c, k.ts, day, caps.per_device_daily)
                    .and_then(|()| self.budgets.check(k.campaign, c, k.ts))
            };
            if let Err(why) = verdict {
                suppress(&mut self.stats, k.campaign, why);
                continue;
            }
            dev.ledger.record(k.campaign, k.ts);
            dev.ledger.prune(oldest, |c| campaigns.horizon_ms(c));
            dev.tracks.mark_offered(k.store);
            self.budgets.record(k.campaign, c, k.ts);
            self.stats.offers[k.campaign.get()] += 1;
            won.push(k.store);
            out.offers.push(Offer {
                device_id: self.devices.id(slot).into(),
                campaign: k.campaign,
                fence: k.fence,
                trigger: k.trigger,
                event_ts: k.ts,
                distance: k.distance,
            });
        }
    }
}

/// Emits and counts a presence event of a device at `fence` since `since`.
fn presence_event(
    stats: &mut Stats,
    out: &mut Output,
    device_id: &str,
    fence: FenceIdx,
    event: PresenceKind,
    ts: Timestamp,
    since: Timestamp,
) {
    stats.presence[event as usize] += 1;
    out.presence.push(PresenceEvent {
        device_id: device_id.into(),
        fence,
        event,
        ts,
        dwell_s: ((ts.0 - since.0) / 1000).max(0) as u64,
    });
}

/// When a device last heard at `newest` counts as silent. The allowed lateness is added so a
/// device whose pings lag others' (a batched upload) is not exited before they arrive.
fn silent_at(p: &PresenceConfig, newest: Timestamp) -> i64 {
    newest.0 + (i64::from(p.silence_s) + i64::from(p.max_lateness_s)) * 1000
}

static UTC: std::sync::LazyLock<Zone> = std::sync::LazyLock::new(Zone::utc);

/// The zone quiet hours and the daily cap are read in: the store's, or the device's own when
/// configured and its profile's `timezone` names a valid one.
fn caps_zone(caps: &CapsConfig, store: Option<&Zone>, profile: Option<&Profile>) -> Zone {
    if caps.local_time == LocalTimeOf::Device {
        if let Some(AttrValue::Text(name)) = profile.and_then(|p| p.get("timezone")) {
            if let Ok(zone) = Zone::named(name) {
                return zone;
            }
        }
    }
    store.cloned().unwrap_or_else(Zone::utc)
}
