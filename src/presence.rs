//! Presence: for one device, which fences it is in, which beacons it is in range of and which
//! fences it is near, decided in event time from location fixes and beacon sightings.
//!
//! What breaks the anchors (GPS jitter, false exits) is handled here:
//! - a fix is evidence for a fence only when its accuracy circle lies wholly on one side of the
//!   edge; a circle that straddles the edge changes nothing;
//! - enter on the first inside fix; exit only on a fix beyond the edge by `exit_buffer_m`, or
//!   after outside fixes for `exit_confirm_s` with no inside fix between (hysteresis);
//! - a beacon in range confirms presence at its store and holds it against GPS exits;
//! - a late fix (older than the device's newest) never enters or exits: it can only extend a
//!   stay or cancel a pending exit it postdates.
//!
//! This module reports [`Transition`]s; it knows nothing of campaigns or caps.

use serde::Deserialize;

use crate::beacon::{BeaconIdx, Dbm};
use crate::fence::FenceIdx;
use crate::reload::Renumbering;
use crate::sphere::{LatLon, Meters, Probe};
use crate::store::StoreIdx;
use crate::time::Timestamp;
use crate::world::World;

/// Presence tuning. Defaults suit phones in cities (fixes every 5–60 s, accuracy 5–50 m).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PresenceConfig {
    /// Seconds inside a fence after which a `dwell` presence event is emitted.
    pub dwell_s: u32,
    /// An outside fix whose accuracy circle clears the edge by this much exits at once.
    pub exit_buffer_m: f64,
    /// Otherwise, outside fixes spanning this long, with no inside fix between, exit.
    pub exit_confirm_s: u32,
    /// A device not heard from for this long exits everything, as of its last inside fix.
    pub silence_s: u32,
    /// Pings older than the device's newest by more than this are dropped as too late.
    pub max_lateness_s: u32,
    /// Fixes less accurate than this are not used for presence at all.
    pub max_accuracy_m: f64,
    /// The accuracy assumed for a fix that reports none.
    pub unknown_accuracy_m: f64,
    /// Beacon RSSI is the mean of the last three sightings no more than this far apart.
    pub beacon_window_s: u32,
    /// A beacon in range stays in range this long after its last in-range sighting.
    pub beacon_hold_s: u32,
    /// Once in range, a beacon leaves range only below `rssi_min` minus this (dB).
    pub beacon_exit_margin_db: u8,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            dwell_s: 300,
            exit_buffer_m: 25.0,
            exit_confirm_s: 60,
            silence_s: 900,
            max_lateness_s: 300,
            max_accuracy_m: 150.0,
            unknown_accuracy_m: 20.0,
            beacon_window_s: 30,
            beacon_hold_s: 60,
            beacon_exit_margin_db: 3,
        }
    }
}

impl PresenceConfig {
    pub fn validate(&self) -> Result<(), String> {
        let meters = [
            ("exit_buffer_m", self.exit_buffer_m),
            ("max_accuracy_m", self.max_accuracy_m),
            ("unknown_accuracy_m", self.unknown_accuracy_m),
        ];
        for (name, v) in meters {
            if !(v.is_finite() && (0.0..=100_000.0).contains(&v)) {
                return Err(format!("presence.{name} must be in 0..=100000 m, got {v}"));
            }
        }
        if self.silence_s == 0 {
            return Err("presence.silence_s must be > 0".into());
        }
        Ok(())
    }

    /// The accuracy a fix is weighed with (`unknown_accuracy_m` when it reports none), or
    /// `None` when it is too vague to use at all.
    pub fn usable_accuracy(&self, reported: Option<Meters>) -> Option<Meters> {
        let accuracy = reported.unwrap_or(Meters(self.unknown_accuracy_m));
        (accuracy.0 <= self.max_accuracy_m).then_some(accuracy)
    }

    fn ms(s: u32) -> i64 {
        i64::from(s) * 1000
    }
}

/// What happened to a device's presence, for the engine to turn into events and offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    Enter {
        fence: FenceIdx,
        ts: Timestamp,
    },
    /// Inside evidence from `before` (the previous one, or the enter) to `now`: dwell thresholds
    /// in `(before - since, now - since]` were crossed by this ping.
    Stay {
        fence: FenceIdx,
        since: Timestamp,
        before: Timestamp,
        now: Timestamp,
    },
    /// Left the fence at `ts` (the first outside evidence, or the last inside one when the
    /// device fell silent). `offered`: its visit had an offer.
    Exit {
        fence: FenceIdx,
        ts: Timestamp,
        since: Timestamp,
        offered: bool,
    },
    InRange {
        beacon: BeaconIdx,
        ts: Timestamp,
    },
    /// Within reach of a fence: `distance` now, `closest_before` the closest so far on this
    /// approach (infinite when it just began).
    Near {
        fence: FenceIdx,
        ts: Timestamp,
        distance: Meters,
        closest_before: Meters,
    },
}

/// One location fix, as presence weighs it.
#[derive(Debug, Clone, Copy)]
pub struct Fix {
    pub ts: Timestamp,
    pub at: LatLon,
    pub accuracy: Meters,
    /// Older than the device's newest ping.
    pub late: bool,
}

/// A fence the fix is within reach of, and how far a nearby campaign reaches for it.
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    pub fence: FenceIdx,
    pub distance: Meters,
    pub radius: Meters,
}

const NEVER: Timestamp = Timestamp(i64::MIN);

const FENCE: u32 = 0;
const BEACON: u32 = 1 << 30;
const NEAR: u32 = 2 << 30;
const TAG: u32 = 3 << 30;

/// The visit at this track's store already had an offer.
const OFFERED: u8 = 1;
/// Beacon: in range.
const IN_RANGE: u8 = 2;

/// What a track follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Fence(FenceIdx),
    Beacon(BeaconIdx),
    Near(FenceIdx),
}

/// One thing a device is at, in range of, or near: 40 bytes, so a device's state stays small.
///
/// Fence: `since` = enter, `last` = newest inside evidence, `aux` = first outside evidence since
/// (or `NEVER`). Beacon: `since` = in range from, `last` = newest sighting, `aux` = newest
/// in-range sighting, `samples`/`n` = the RSSI window. Near: `since` = approach began, `last` =
/// newest fix in reach, `aux` = closest distance so far in millimetres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Track {
    subject: u32,
    store: StoreIdx,
    pub(crate) since: Timestamp,
    pub(crate) last: Timestamp,
    pub(crate) aux: i64,
    pub(crate) samples: [i8; 3],
    pub(crate) n: u8,
    pub(crate) flags: u8,
}

impl Track {
    fn new(subject: u32, store: StoreIdx, ts: Timestamp) -> Self {
        Self {
            subject,
            store,
            since: ts,
            last: ts,
            aux: NEVER.0,
            samples: [0; 3],
            n: 0,
            flags: 0,
        }
    }

    /// A track as restored from the changelog: `subject`'s store is looked up in `world`.
    pub(crate) fn restored(subject: Subject, world: &World, mut rest: Track) -> Self {
        (rest.subject, rest.store) = match subject {
            Subject::Fence(f) => (FENCE | f.0, world.stores.of_fence(f)),
            Subject::Near(f) => (NEAR | f.0, world.stores.of_fence(f)),
            Subject::Beacon(b) => (BEACON | b.0, world.stores.of_beacon(b)),
        };
        rest
    }

    /// The state besides the subject, for [`Track::restored`].
    pub(crate) fn blank() -> Self {
        Self::new(0, StoreIdx(0), NEVER)
    }

    pub fn subject(&self) -> Subject {
        let i = self.subject & !TAG;
        match self.subject & TAG {
            FENCE => Subject::Fence(FenceIdx(i)),
            BEACON => Subject::Beacon(BeaconIdx(i)),
            _ => Subject::Near(FenceIdx(i)),
        }
    }

    fn in_range(&self) -> bool {
        self.flags & IN_RANGE != 0
    }

    /// A fence track ending without a confirming fix: dated at its first outside evidence, or
    /// its last inside evidence.
    fn silent_exit(&self) -> Option<Transition> {
        let Subject::Fence(fence) = self.subject() else {
            return None;
        };
        let ts = if self.aux == NEVER.0 {
            self.last
        } else {
            Timestamp(self.aux)
        };
        Some(Transition::Exit {
            fence,
            ts,
            since: self.since,
            offered: self.flags & OFFERED != 0,
        })
    }

    fn closest(&self) -> Meters {
        if self.aux == NEVER.0 {
            Meters(f64::INFINITY)
        } else {
            Meters(self.aux as f64 / 1000.0)
        }
    }
}

/// A device's tracks. Kept exactly sized: most devices are at nothing, and a Vec's spare
/// capacity would dominate per-device memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracks(Vec<Track>);

impl Tracks {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Starts loading the tracks (for a batch; see `crate::cache`).
    pub fn prefetch(&self) {
        if let Some(t) = self.0.first() {
            crate::cache::prefetch(t);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Track> {
        self.0.iter()
    }

    /// Tracks restored from the changelog, exactly sized.
    pub(crate) fn restored(mut tracks: Vec<Track>) -> Self {
        tracks.shrink_to_fit();
        Self(tracks)
    }

    /// Whether the visit at `store` already had an offer.
    pub fn visit_offered(&self, store: StoreIdx) -> bool {
        self.0
            .iter()
            .any(|t| t.store == store && t.flags & OFFERED != 0)
    }

    /// Records that the visit at `store` had its offer.
    pub fn mark_offered(&mut self, store: StoreIdx) {
        for t in self.0.iter_mut().filter(|t| t.store == store) {
            t.flags |= OFFERED;
        }
    }

    fn find(&self, subject: u32) -> Option<usize> {
        self.0.iter().position(|t| t.subject == subject)
    }

    /// A new track joins its store's visit (and its offer, if it had one).
    fn push(&mut self, mut t: Track) {
        if self.visit_offered(t.store) {
            t.flags |= OFFERED;
        }
        self.0.reserve_exact(1);
        self.0.push(t);
    }

    fn remove_where(&mut self, mut gone: impl FnMut(&Track) -> bool) {
        let before = self.0.len();
        self.0.retain(|t| !gone(t));
        if self.0.len() != before {
            self.0.shrink_to_fit();
        }
    }

    /// The device fell silent: it leaves every fence as of its last inside evidence.
    pub fn close_all(&mut self, out: &mut Vec<Transition>) {
        out.extend(self.0.iter().filter_map(Track::silent_exit));
        self.0 = Vec::new();
    }

    /// Carries the tracks over to a new world (see `Engine::replace_world`). A fence track
    /// whose fence is gone ends as if the device had fallen silent there, into `ended`; a beacon
    /// or nearby track whose subject is gone just ends. Stores are the new world's, and a visit
    /// that had an offer at any of its tracks keeps it at all of them (a fence may have moved
    /// to another store: never a second offer for one visit).
    pub fn renumber(&mut self, map: &Renumbering, world: &World, ended: &mut Vec<Transition>) {
        let mut gone = false;
        for t in self.0.iter_mut() {
            let new = match t.subject() {
                Subject::Fence(f) => {
                    map.fences[f.get()].map(|n| (FENCE | n.0, world.stores.of_fence(n)))
                }
                Subject::Near(f) => {
                    map.fences[f.get()].map(|n| (NEAR | n.0, world.stores.of_fence(n)))
                }
                Subject::Beacon(b) => {
                    map.beacons[b.0 as usize].map(|n| (BEACON | n.0, world.stores.of_beacon(n)))
                }
            };
            match new {
                Some((subject, store)) => (t.subject, t.store) = (subject, store),
                None => {
                    ended.extend(t.silent_exit());
                    t.subject = TAG; // marks it for removal below
                    gone = true;
                }
            }
        }
        if gone {
            self.remove_where(|t| t.subject == TAG);
        }
        for i in 0..self.0.len() {
            if self.0[i].flags & OFFERED != 0 {
                self.mark_offered(self.0[i].store);
            }
        }
    }

    /// The earliest event time a fence exit still to come can be dated at: its first outside
    /// evidence, or its last inside evidence if the device falls silent.
    pub fn oldest_pending(&self) -> Option<Timestamp> {
        self.0
            .iter()
            .filter(|t| t.subject & TAG == FENCE)
            .map(|t| match t.aux {
                aux if aux == NEVER.0 => t.last,
                aux => Timestamp(aux.min(t.last.0)),
            })
            .min()
    }

    /// Beacon range and RSSI windows run out with time; so does presence at a fence with no
    /// evidence either way for `silence_s` (only fixes too vague to tell, or none near it): it
    /// ends as of its last evidence, as if the device had fallen silent.
    fn expire(&mut self, now: Timestamp, cfg: &PresenceConfig, out: &mut Vec<Transition>) {
        let (hold, window, silence) = (
            PresenceConfig::ms(cfg.beacon_hold_s),
            PresenceConfig::ms(cfg.beacon_window_s),
            PresenceConfig::ms(cfg.silence_s),
        );
        for t in self.0.iter_mut() {
            if t.subject & TAG == BEACON && t.in_range() && now.0.saturating_sub(t.aux) > hold {
                t.flags &= !IN_RANGE;
            }
        }
        let stale = |t: &Track| t.subject & TAG != BEACON && now.0 - t.last.0 > silence;
        out.extend(
            self.0
                .iter()
                .filter(|t| stale(t))
                .filter_map(Track::silent_exit),
        );
        self.remove_where(|t| {
            stale(t) || t.subject & TAG == BEACON && !t.in_range() && now.0 - t.last.0 > window
        });
    }

    /// A beacon of `store` in range holds presence at its premises against GPS.
    fn beacon_holds(&self, store: StoreIdx) -> bool {
        self.0
            .iter()
            .any(|t| t.subject & TAG == BEACON && t.store == store && t.in_range())
    }

    /// Applies a location fix. `hits` are the fences covering the fix (ascending); `reach` the
    /// fences a nearby campaign reaches from it.
    pub fn on_fix(
        &mut self,
        fix: &Fix,
        hits: &[FenceIdx],
        reach: &[Reach],
        world: &World,
        cfg: &PresenceConfig,
        out: &mut Vec<Transition>,
    ) {
        if !fix.late {
            self.expire(fix.ts, cfg, out);
        }
        let at = Probe::new(fix.at.point());
        let acc = fix.accuracy.0;
        let edge = |f: FenceIdx| world.fences.edge_distance(f, &at).0;
        let mut exited = false;
        for i in 0..self.0.len() {
            let t = &mut self.0[i];
            let Subject::Fence(f) = t.subject() else {
                continue;
            };
            let covered = hits.binary_search(&f).is_ok();
            let clearance = edge(f) - acc;
            if clearance < 0.0 {
                continue; // the accuracy circle straddles the edge: no evidence either way
            }
            if covered {
                // Inside after the first outside evidence: that exit was a false one.
                if fix.ts.0 > t.aux {
                    t.aux = NEVER.0;
                }
                if fix.ts > t.last {
                    out.push(Transition::Stay {
                        fence: f,
                        since: t.since,
                        before: t.last,
                        now: fix.ts,
                    });
                    t.last = fix.ts;
                }
            } else if !fix.late {
                if t.aux == NEVER.0 {
                    t.aux = fix.ts.0;
                }
                let confirmed = clearance >= cfg.exit_buffer_m
                    || fix.ts.0.saturating_sub(t.aux) >= PresenceConfig::ms(cfg.exit_confirm_s);
                // A beacon in range outvotes GPS: the exit waits (still dated at the first
                // outside fix) until the beacon's hold runs out.
                let store = t.store;
                let held = world.stores.premises(store).contains(&f) && self.beacon_holds(store);
                if confirmed && !held {
                    let t = &mut self.0[i];
                    out.push(Transition::Exit {
                        fence: f,
                        ts: Timestamp(t.aux),
                        since: t.since,
                        offered: t.flags & OFFERED != 0,
                    });
                    t.subject = TAG; // marks it for removal below
                    exited = true;
                }
            }
        }
        if exited {
            self.remove_where(|t| t.subject == TAG);
        }
        if fix.late {
            return;
        }
        for &f in hits {
            if self.find(FENCE | f.0).is_none() && edge(f) >= acc {
                self.push(Track::new(FENCE | f.0, world.stores.of_fence(f), fix.ts));
                out.push(Transition::Enter {
                    fence: f,
                    ts: fix.ts,
                });
            }
        }
        self.on_reach(fix, reach, world, cfg, out);
    }

    fn on_reach(
        &mut self,
        fix: &Fix,
        reach: &[Reach],
        world: &World,
        cfg: &PresenceConfig,
        out: &mut Vec<Transition>,
    ) {
        // Leaving reach needs the exit buffer too, or jitter at the rim would re-fire.
        self.remove_where(|t| {
            t.subject & TAG == NEAR
                && !reach.iter().any(|r| {
                    NEAR | r.fence.0 == t.subject && r.distance.0 <= r.radius.0 + cfg.exit_buffer_m
                })
        });
        for r in reach {
            if fix.accuracy.0 > r.radius.0 {
                continue; // vaguer than the reach itself: no evidence
            }
            let subject = NEAR | r.fence.0;
            let mm = (r.distance.0 * 1000.0) as i64;
            match self.find(subject) {
                Some(i) => {
                    let t = &mut self.0[i];
                    t.last = fix.ts;
                    if r.distance.0 < t.closest().0 && r.distance.0 <= r.radius.0 {
                        out.push(Transition::Near {
                            fence: r.fence,
                            ts: fix.ts,
                            distance: r.distance,
                            closest_before: t.closest(),
                        });
                        t.aux = mm;
                    }
                }
                None if r.distance.0 <= r.radius.0 => {
                    let mut t = Track::new(subject, world.stores.of_fence(r.fence), fix.ts);
                    t.aux = mm;
                    self.push(t);
                    out.push(Transition::Near {
                        fence: r.fence,
                        ts: fix.ts,
                        distance: r.distance,
                        closest_before: Meters(f64::INFINITY),
                    });
                }
                None => {}
            }
        }
    }

    /// Applies a beacon sighting (in order only: smoothing depends on the order of sightings).
    pub fn on_sighting(
        &mut self,
        ts: Timestamp,
        beacon: BeaconIdx,
        rssi: Dbm,
        world: &World,
        cfg: &PresenceConfig,
        out: &mut Vec<Transition>,
    ) {
        self.expire(ts, cfg, out);
        let subject = BEACON | beacon.0;
        let store = world.stores.of_beacon(beacon);
        let i = match self.find(subject) {
            Some(i) => i,
            None => {
                let mut t = Track::new(subject, store, ts);
                t.since = NEVER;
                self.push(t);
                self.0.len() - 1
            }
        };
        let t = &mut self.0[i];
        if ts.0.saturating_sub(t.last.0) > PresenceConfig::ms(cfg.beacon_window_s) {
            t.n = 0;
        }
        t.samples = [rssi.0.clamp(-128, 127) as i8, t.samples[0], t.samples[1]];
        t.n = (t.n + 1).min(3);
        t.last = ts;
        let n = usize::from(t.n);
        let mean = t.samples[..n].iter().map(|&s| f64::from(s)).sum::<f64>() / n as f64;
        let rssi_min = f64::from(world.beacons.beacon(beacon).rssi_min.0);
        let in_range = if t.in_range() {
            mean >= rssi_min - f64::from(cfg.beacon_exit_margin_db)
        } else {
            mean >= rssi_min
        };
        if !in_range {
            t.flags &= !IN_RANGE;
            return;
        }
        t.aux = ts.0;
        if !t.in_range() {
            t.flags |= IN_RANGE;
            t.since = ts;
            out.push(Transition::InRange { beacon, ts });
        }
        // In range of a beacon is being at its store's premises.
        for &f in world.stores.premises(store) {
            match self.find(FENCE | f.0) {
                Some(j) => {
                    let t = &mut self.0[j];
                    t.aux = NEVER.0;
                    if ts > t.last {
                        out.push(Transition::Stay {
                            fence: f,
                            since: t.since,
                            before: t.last,
                            now: ts,
                        });
                        t.last = ts;
                    }
                }
                None => {
                    self.push(Track::new(FENCE | f.0, store, ts));
                    out.push(Transition::Enter { fence: f, ts });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beacon::BeaconRegistry;
    use crate::fence::{parse_fences, FenceIndex, Hits, IndexOptions, LoadMode};

    /// A 100 m circle at (0, 0).
    fn world() -> World {
        let file = br#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"c",
            "properties":{"store_id":"s","radius_m":100},"geometry":{"type":"Point","coordinates":[0,0]}}]}"#;
        let fences = parse_fences(file, LoadMode::Strict).unwrap().fences;
        let index = FenceIndex::new(fences, IndexOptions::default());
        World::new(index, BeaconRegistry::default(), Vec::new(), 25.0).unwrap()
    }

    /// A fix `m` metres north of the centre, at `s` seconds.
    fn fix(
        tracks: &mut Tracks,
        w: &World,
        s: i64,
        m: f64,
        acc: f64,
        late: bool,
    ) -> Vec<Transition> {
        let at = LatLon::new(crate::sphere::meters_to_lat_deg(Meters(m)), 0.0).unwrap();
        let mut hits = Hits::new();
        w.fences.containing(at, &mut hits);
        let mut out = Vec::new();
        let f = Fix {
            ts: Timestamp(s * 1000),
            at,
            accuracy: Meters(acc),
            late,
        };
        tracks.on_fix(&f, &hits, &[], w, &PresenceConfig::default(), &mut out);
        out
    }

    fn kinds(t: &[Transition]) -> Vec<&'static str> {
        t.iter()
            .map(|t| match t {
                Transition::Enter { .. } => "enter",
                Transition::Stay { .. } => "stay",
                Transition::Exit { .. } => "exit",
                Transition::InRange { .. } => "in_range",
                Transition::Near { .. } => "near",
            })
            .collect()
    }

    #[test]
    fn a_track_stays_small() {
        assert_eq!(std::mem::size_of::<Track>(), 40);
    }

    #[test]
    fn a_fix_whose_accuracy_straddles_the_edge_is_no_evidence() {
        let w = world();
        let mut t = Tracks::default();
        assert!(
            fix(&mut t, &w, 0, 90.0, 20.0, false).is_empty(),
            "inside, but the circle crosses the edge"
        );
        assert_eq!(kinds(&fix(&mut t, &w, 10, 50.0, 20.0, false)), ["enter"]);
        assert!(
            fix(&mut t, &w, 20, 110.0, 30.0, false).is_empty(),
            "outside, but straddling"
        );
        assert_eq!(kinds(&fix(&mut t, &w, 30, 60.0, 5.0, false)), ["stay"]);
    }

    #[test]
    fn exit_needs_the_buffer_or_the_confirmation_time() {
        let w = world();
        let mut t = Tracks::default();
        fix(&mut t, &w, 0, 0.0, 5.0, false);
        // 10 m clear of the edge (< 25 m buffer): pending, not yet an exit.
        assert!(fix(&mut t, &w, 10, 115.0, 5.0, false).is_empty());
        // Back inside: the pending exit was a false one.
        assert_eq!(kinds(&fix(&mut t, &w, 20, 80.0, 5.0, false)), ["stay"]);
        assert!(fix(&mut t, &w, 30, 115.0, 5.0, false).is_empty());
        let out = fix(&mut t, &w, 90, 115.0, 5.0, false);
        assert_eq!(
            out,
            [Transition::Exit {
                fence: FenceIdx(0),
                ts: Timestamp(30_000),
                since: Timestamp(0),
                offered: false
            }]
        );
        // Far beyond the buffer: at once.
        fix(&mut t, &w, 100, 0.0, 5.0, false);
        assert_eq!(kinds(&fix(&mut t, &w, 110, 200.0, 5.0, false)), ["exit"]);
    }

    #[test]
    fn a_late_fix_neither_enters_nor_exits_but_cancels_a_pending_exit_it_postdates() {
        let w = world();
        let mut t = Tracks::default();
        assert!(
            fix(&mut t, &w, 0, 0.0, 5.0, true).is_empty(),
            "late fixes do not enter"
        );
        fix(&mut t, &w, 10, 0.0, 5.0, false);
        assert!(fix(&mut t, &w, 40, 115.0, 5.0, false).is_empty()); // pending since 40
        assert!(
            fix(&mut t, &w, 20, 300.0, 5.0, true).is_empty(),
            "late fixes do not exit"
        );
        assert_eq!(
            kinds(&fix(&mut t, &w, 45, 0.0, 5.0, true)),
            ["stay"],
            "inside after 40"
        );
        // The pending exit was cancelled, so 60 s after 40 is not yet an exit.
        assert!(fix(&mut t, &w, 100, 115.0, 5.0, false).is_empty());
    }

    #[test]
    fn a_fence_with_only_vague_fixes_for_the_silence_time_is_left() {
        let w = world();
        let mut t = Tracks::default();
        fix(&mut t, &w, 0, 0.0, 5.0, false);
        // 140 m accuracy: no evidence either way, but the device keeps talking.
        assert!(fix(&mut t, &w, 600, 0.0, 140.0, false).is_empty());
        let out = fix(&mut t, &w, 1000, 0.0, 140.0, false);
        assert_eq!(
            out,
            [Transition::Exit {
                fence: FenceIdx(0),
                ts: Timestamp(0),
                since: Timestamp(0),
                offered: false
            }]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_renumbered_track_follows_its_fence_and_store_and_ends_as_silence_would_with_it() {
        let w = world();
        let mut t = Tracks::default();
        fix(&mut t, &w, 0, 0.0, 5.0, false);
        // 10 m clear of the edge: an exit pending since 30.
        assert!(fix(&mut t, &w, 30, 115.0, 5.0, false).is_empty());
        t.mark_offered(StoreIdx(0));
        let before = t.clone();
        let mut out = Vec::new();
        t.renumber(&Renumbering::new(&w, &[], &world()), &w, &mut out);
        assert_eq!((&t, out.as_slice()), (&before, &[][..]));
        // A fence of another store sorting first: "c" becomes fence 1, its store "s" store 1.
        let file = br#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"a",
            "properties":{"store_id":"s-a","radius_m":100},"geometry":{"type":"Point","coordinates":[1,1]}},
            {"type":"Feature","id":"c","properties":{"store_id":"s","radius_m":100},
            "geometry":{"type":"Point","coordinates":[0,0]}}]}"#;
        let fences = parse_fences(file, LoadMode::Strict).unwrap().fences;
        let index = FenceIndex::new(fences, IndexOptions::default());
        let two = World::new(index, BeaconRegistry::default(), Vec::new(), 25.0).unwrap();
        t.renumber(&Renumbering::new(&w, &[], &two), &two, &mut out);
        assert_eq!(t.0[0].subject(), Subject::Fence(FenceIdx(1)));
        assert!(t.visit_offered(StoreIdx(1)) && !t.visit_offered(StoreIdx(0)));
        // Gone: the exit pending since 30, as silence would date it.
        let empty = FenceIndex::new(Vec::new(), IndexOptions::default());
        let none = World::new(empty, BeaconRegistry::default(), Vec::new(), 25.0).unwrap();
        t.renumber(&Renumbering::new(&two, &[], &none), &none, &mut out);
        assert_eq!(
            out,
            [Transition::Exit {
                fence: FenceIdx(1),
                ts: Timestamp(30_000),
                since: Timestamp(0),
                offered: true
            }]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn silence_exits_as_of_the_last_inside_fix() {
        let w = world();
        let mut t = Tracks::default();
        fix(&mut t, &w, 0, 0.0, 5.0, false);
        fix(&mut t, &w, 30, 0.0, 5.0, false);
        let mut out = Vec::new();
        t.close_all(&mut out);
        assert_eq!(
            out,
            [Transition::Exit {
                fence: FenceIdx(0),
                ts: Timestamp(30_000),
                since: Timestamp(0),
                offered: false
            }]
        );
        assert!(t.is_empty());
    }
}
