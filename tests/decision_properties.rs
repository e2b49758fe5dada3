//! Property tests of the decision core (the three invariants):
//!
//! 1. caps and budgets are never exceeded, whatever order the pings arrive in and however
//!    devices are split over partitions (each keeps within its share of a budget);
//! 2. replaying the same input twice gives byte-identical output;
//! 3. splitting devices across engines (as Kafka partitions do) gives the same offers as one.
//!
//! The world: two shops and a mall with a shop inside it on one street in Shanghai, beacons in
//! two of them, and one campaign per trigger whose caps and budgets are drawn per case. Devices
//! walk between places (in a shop, at its edge, near one, in the mall's hall, far away), fall
//! silent for minutes, a night or days, and report fixes of 0–60 m accuracy and beacon
//! sightings. Pings are JSON and go through `ping::decode`, as in the streaming engine. Every
//! verdict is read from the encoded offers alone, with local days from jiff rather than the
//! crate's own calendar code. A few hand-made inputs that random walks are unlikely to hit (and
//! that found bugs) are checked against the same invariants.
#![allow(clippy::unwrap_used)] // the test builds its own input: failing to parse it is a test bug

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use beckon::beacon::BeaconRegistry;
use beckon::campaign::parse_campaigns;
use beckon::caps::{LocalTimeOf, Share, Suppression};
use beckon::changelog::Records;
use beckon::engine::{Engine, EngineConfig};
use beckon::fence::{parse_fences, FenceIndex, IndexOptions, LoadMode};
use beckon::offer::Output;
use beckon::partition::partition_of;
use beckon::replay::{self, Partitions, Sinks, Summary};
use beckon::time::Timestamp;
use beckon::world::World;
use beckon::{ping, profile};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};
use serde_json::{json, Value};

const CASES: u32 = 64;
/// 2026-10-31T12:00:00Z: runs span New York's fall-back night (a 25-hour budget day).
const START_MS: i64 = 1_793_448_000_000;
/// Every store's `timezone`: the zone of the per-device daily cap, unless devices have theirs.
const STORE_ZONE: &str = "Asia/Shanghai";
/// The devices' own zone (profile attribute `timezone`) when the daily cap is read in it.
const DEVICE_ZONE: &str = "America/New_York";
const BEACON_UUID: &str = "c4a5e1d2-7b3f-4e8a-9d21-5f0b6c3a7e19";

// ---------------------------------------------------------------------------------------------
// The world

/// Where a device can be, as metres east and north of shop A's centre.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// Shop A (200 m square, with a 250 m circle and an entrance beacon).
    ShopA,
    /// 12 m outside shop A's east edge (inside its circle): weak or straddling evidence.
    EdgeA,
    /// Shop B (200 m square), which a nearby campaign reaches 150 m around.
    ShopB,
    /// 90 m north of shop B's edge.
    NearB,
    /// Shop C (200 m square, counter beacon) in the middle of the mall (800 m square).
    ShopC,
    /// In the mall, 150 m from shop C.
    MallHall,
    Far,
}

impl Place {
    fn metres(self) -> (f64, f64) {
        match self {
            Place::ShopA => (0.0, 0.0),
            Place::EdgeA => (112.0, 0.0),
            Place::ShopB => (1000.0, 0.0),
            Place::NearB => (1000.0, 190.0),
            Place::ShopC => (2500.0, 0.0),
            Place::MallHall => (2500.0, 250.0),
            Place::Far => (-3000.0, 2000.0),
        }
    }

    /// The beacon `(major, minor)` a device here may sight.
    fn beacon(self) -> Option<(u16, u16)> {
        match self {
            Place::ShopA => Some((1, 1)),
            Place::ShopC => Some((3, 1)),
            _ => None,
        }
    }
}

/// `[lon, lat]` of a point `east`, `north` metres from shop A's centre.
fn lon_lat(east: f64, north: f64) -> [f64; 2] {
    const LAT0: f64 = 31.23;
    const LON0: f64 = 121.47;
    let m_per_deg = 111_195.0;
    [
        LON0 + east / (m_per_deg * LAT0.to_radians().cos()),
        LAT0 + north / m_per_deg,
    ]
}

fn square(id: &str, store: &str, kind: &str, (e, n): (f64, f64), half: f64) -> Value {
    let corners = [
        (-1.0, -1.0),
        (1.0, -1.0),
        (1.0, 1.0),
        (-1.0, 1.0),
        (-1.0, -1.0),
    ];
    let ring: Vec<_> = corners
        .iter()
        .map(|(x, y)| lon_lat(e + x * half, n + y * half))
        .collect();
    json!({"type": "Feature", "id": id,
           "properties": {"store_id": store, "kind": kind, "timezone": STORE_ZONE},
           "geometry": {"type": "Polygon", "coordinates": [ring]}})
}

/// Per-campaign limits, drawn per case.
#[derive(Debug, Clone)]
struct Limits {
    /// `(max, window_s)`.
    windows: Vec<(u32, u32)>,
    cooldown_s: u32,
    total: Option<u64>,
    daily: Option<u32>,
}

/// The campaigns: id, priority, trigger, where, budget zone. One per trigger, with overlapping
/// places so that candidates compete.
fn campaign_specs() -> [(&'static str, i32, Value, Value, &'static str); 5] {
    [
        (
            "welcome",
            10,
            json!({"type": "enter"}),
            json!({"kinds": ["store"]}),
            "Asia/Shanghai",
        ),
        (
            "linger",
            20,
            json!({"type": "dwell", "min_s": 600}),
            json!({"stores": ["s-a", "s-mall"]}),
            "America/New_York",
        ),
        (
            "goodbye",
            5,
            json!({"type": "exit"}),
            json!({"stores": ["s-a", "s-mall"]}),
            "UTC",
        ),
        (
            "counter",
            30,
            json!({"type": "beacon"}),
            json!({"stores": ["s-a", "s-c"]}),
            "Asia/Shanghai",
        ),
        (
            "passby",
            15,
            json!({"type": "nearby", "within_m": 150}),
            json!({"stores": ["s-b"]}),
            "Europe/Berlin",
        ),
    ]
}

fn world(limits: &[Limits]) -> Arc<World> {
    let fences = json!({"type": "FeatureCollection", "features": [
        square("f-a", "s-a", "store", Place::ShopA.metres(), 100.0),
        {"type": "Feature", "id": "f-a-circle",
         "properties": {"store_id": "s-a", "kind": "circle", "radius_m": 250, "timezone": STORE_ZONE},
         "geometry": {"type": "Point", "coordinates": lon_lat(0.0, 0.0)}},
        square("f-b", "s-b", "store", Place::ShopB.metres(), 100.0),
        square("f-mall", "s-mall", "mall", Place::ShopC.metres(), 400.0),
        square("f-c", "s-c", "store", Place::ShopC.metres(), 100.0),
    ]});
    let beacons = json!([
        {"uuid": BEACON_UUID, "major": 1, "minor": 1, "store_id": "s-a", "zone": "entrance", "rssi_min": -75},
        {"uuid": BEACON_UUID, "major": 3, "minor": 1, "store_id": "s-c", "zone": "counter", "rssi_min": -72},
    ]);
    let campaigns: Vec<Value> = campaign_specs()
        .into_iter()
        .zip(limits)
        .map(|((id, priority, trigger, place, zone), l)| {
            let windows: Vec<_> = l
                .windows
                .iter()
                .map(|&(max, window_s)| json!({"max": max, "window_s": window_s}))
                .collect();
            json!({"id": id, "name": id, "priority": priority, "trigger": trigger, "where": place,
                   "audience": {"attr": "interests", "contains": "tea"},
                   "offer": {"title": "{campaign_name} at {store_name}", "body": "{coupon_code}",
                             "coupon_prefix": "T-", "ttl_s": 3600},
                   "caps": {"per_device": windows, "cooldown_s": l.cooldown_s},
                   "budget": {"total": l.total, "daily": l.daily, "timezone": zone}})
        })
        .collect();
    let fences = parse_fences(fences.to_string().as_bytes(), LoadMode::Strict)
        .unwrap()
        .fences;
    let beacons = BeaconRegistry::parse(beacons.to_string().as_bytes()).unwrap();
    let campaigns =
        parse_campaigns(Value::from(campaigns).to_string().as_bytes(), false, "test").unwrap();
    let index = FenceIndex::new(fences, IndexOptions::default());
    let exit_buffer_m = EngineConfig::default().presence.exit_buffer_m;
    Arc::new(World::new(index, beacons, campaigns, exit_buffer_m).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Devices and their pings

/// One reading at a place: offset from it (m), accuracy, and maybe a beacon sighting.
#[derive(Debug, Clone)]
struct Reading {
    east: f64,
    north: f64,
    accuracy_m: Option<f64>,
    rssi: Option<i16>,
}

/// A stretch of a device's day: silent for `pause_s`, then a reading at `place` every `every_s`.
#[derive(Debug, Clone)]
struct Leg {
    pause_s: u32,
    place: Place,
    every_s: u32,
    readings: Vec<Reading>,
}

#[derive(Debug, Clone)]
struct Scenario {
    limits: Vec<Limits>,
    per_device_daily: u32,
    /// Read the daily cap in the devices' zone (`DEVICE_ZONE`), not the store's.
    device_local: bool,
    one_offer_per_visit: bool,
    /// Device `d-{i}` walks `devices[i]`.
    devices: Vec<Vec<Leg>>,
}

fn limits(budgets: bool) -> impl Strategy<Value = Limits> {
    let window_s = prop_oneof![
        Just(600u32),
        Just(3600),
        Just(7200),
        Just(86_400),
        Just(604_800)
    ];
    let window = (1u32..=3, window_s);
    let cooldown = prop_oneof![Just(0u32), Just(300), Just(1800), Just(3600)];
    let (total, daily) = if budgets {
        (
            prop::option::of(1u64..30).boxed(),
            prop::option::of(1u32..10).boxed(),
        )
    } else {
        (Just(None).boxed(), Just(None).boxed())
    };
    (prop::collection::vec(window, 0..=2), cooldown, total, daily).prop_map(
        |(windows, cooldown_s, total, daily)| Limits {
            windows,
            cooldown_s,
            total,
            daily,
        },
    )
}

fn leg() -> impl Strategy<Value = Leg> {
    let place = prop_oneof![
        3 => Just(Place::ShopA),
        1 => Just(Place::EdgeA),
        2 => Just(Place::ShopB),
        2 => Just(Place::NearB),
        3 => Just(Place::ShopC),
        2 => Just(Place::MallHall),
        2 => Just(Place::Far),
    ];
    // Mostly a walk, sometimes silence (exits), a night (another local day), or days away.
    let pause_s = prop_oneof![12 => 0u32..120, 4 => 900u32..7200, 2 => 30_000u32..90_000, 1 => 172_800u32..700_000];
    let reading = (
        -50.0..50.0f64,
        -50.0..50.0f64,
        prop::option::weighted(0.9, 0.0..60.0f64),
        prop::option::weighted(0.4, -95i16..-50),
    )
        .prop_map(|(east, north, accuracy_m, rssi)| Reading {
            east,
            north,
            accuracy_m,
            rssi,
        });
    (
        pause_s,
        place,
        10u32..120,
        prop::collection::vec(reading, 1..25),
    )
        .prop_map(|(pause_s, place, every_s, readings)| Leg {
            pause_s,
            place,
            every_s,
            readings,
        })
}

fn scenario(budgets: bool) -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(limits(budgets), 5),
        prop_oneof![Just(0u32), 1u32..6],
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(leg(), 1..12), 2..=6),
    )
        .prop_map(
            |(limits, per_device_daily, device_local, one_offer_per_visit, devices)| Scenario {
                limits,
                per_device_daily,
                device_local,
                one_offer_per_visit,
                devices,
            },
        )
}

/// One encoded ping and its event time.
#[derive(Debug, Clone)]
struct Line {
    ts: i64,
    device: usize,
    json: String,
}

impl Scenario {
    fn config(&self) -> EngineConfig {
        let mut cfg = EngineConfig::default();
        cfg.caps.per_device_daily = self.per_device_daily;
        if self.device_local {
            cfg.caps.local_time = LocalTimeOf::Device;
        }
        cfg.caps.one_offer_per_visit = self.one_offer_per_visit;
        cfg
    }

    /// Every device's pings, each device's in event-time order.
    fn pings(&self) -> Vec<Line> {
        let mut lines = Vec::new();
        for (device, legs) in self.devices.iter().enumerate() {
            let id = format!("d-{device}");
            let mut t = START_MS + device as i64 * 97_531;
            for leg in legs {
                t += i64::from(leg.pause_s) * 1000;
                for (k, r) in leg.readings.iter().enumerate() {
                    t += i64::from(leg.every_s) * 1000 + (k as i64 * 7919) % 1000;
                    let (e, n) = leg.place.metres();
                    let [lon, lat] = lon_lat(e + r.east, n + r.north);
                    let mut fix = json!({"type": "location", "device_id": id, "ts": rfc3339(t, k),
                                         "lat": lat, "lon": lon});
                    if let Some(a) = r.accuracy_m {
                        fix["accuracy_m"] = json!(a);
                    }
                    lines.push(Line {
                        ts: t,
                        device,
                        json: fix.to_string(),
                    });
                    if let (Some((major, minor)), Some(rssi)) = (leg.place.beacon(), r.rssi) {
                        let ts = t + 1500;
                        let sighting = json!({"type": "beacon", "device_id": id, "ts": rfc3339(ts, k),
                            "uuid": BEACON_UUID, "major": major, "minor": minor, "rssi": rssi});
                        lines.push(Line {
                            ts,
                            device,
                            json: sighting.to_string(),
                        });
                    }
                }
            }
        }
        lines
    }

    /// Consenting profiles that every campaign's audience takes.
    fn profiles(&self) -> Vec<String> {
        (0..self.devices.len())
            .map(|i| {
                json!({"device_id": format!("d-{i}"), "consent": true,
                            "attributes": {"interests": ["tea"], "timezone": DEVICE_ZONE}})
                .to_string()
            })
            .collect()
    }

    /// The zone the per-device daily cap counts calendar days in.
    fn daily_cap_zone(&self) -> &'static str {
        if self.device_local {
            DEVICE_ZONE
        } else {
            STORE_ZONE
        }
    }
}

/// RFC 3339 in UTC or, every other reading, in Shanghai's offset (the contract allows any).
fn rfc3339(ms: i64, k: usize) -> String {
    if k.is_multiple_of(2) {
        return Timestamp(ms).to_string();
    }
    let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
    ts.display_with_offset(jiff::tz::Offset::constant(8))
        .to_string()
}

/// The order pings reach the engine in.
#[derive(Debug, Clone)]
enum Arrival {
    /// Any permutation at all (most pings then come too late and are dropped).
    Shuffled(Vec<usize>),
    /// Event-time order after each ping is held up by its delay (ms): bounded disorder.
    Delayed(Vec<i64>),
}

fn arrival(n: usize, max_delay_ms: i64, shuffle: bool) -> BoxedStrategy<Arrival> {
    let delayed = prop::collection::vec(0..max_delay_ms, n).prop_map(Arrival::Delayed);
    if shuffle {
        let shuffled = Just((0..n).collect::<Vec<_>>())
            .prop_shuffle()
            .prop_map(Arrival::Shuffled);
        prop_oneof![1 => shuffled, 3 => delayed].boxed()
    } else {
        delayed.boxed()
    }
}

fn arrange(mut lines: Vec<Line>, arrival: &Arrival) -> Vec<Line> {
    match arrival {
        Arrival::Shuffled(order) => order.iter().map(|&i| lines[i].clone()).collect(),
        Arrival::Delayed(delays) => {
            let mut keyed: Vec<_> = lines
                .drain(..)
                .zip(delays)
                .map(|(l, d)| (l.ts + d, l))
                .collect();
            keyed.sort_by_key(|(at, _)| *at); // stable: ties keep event-time order
            keyed.into_iter().map(|(_, l)| l).collect()
        }
    }
}

/// A scenario with its pings in some arrival order.
fn input(
    budgets: bool,
    max_delay_ms: i64,
    shuffle: bool,
) -> impl Strategy<Value = (Scenario, Vec<Line>)> {
    scenario(budgets).prop_flat_map(move |s| {
        let lines = s.pings();
        let n = lines.len();
        (Just(s), arrival(n, max_delay_ms, shuffle)).prop_map(move |(s, a)| {
            let lines = arrange(lines.clone(), &a);
            (s, lines)
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Running the core

fn engine(world: &Arc<World>, s: &Scenario) -> Engine {
    let mut engine = Engine::new(world.clone(), s.config());
    for p in s.profiles() {
        engine.on_profile(profile::decode(None, Some(p.as_bytes())).unwrap());
    }
    engine
}

/// One engine per partition as `beckon replay --partitions count` builds them, with the
/// scenario's profiles.
fn engines(world: &Arc<World>, s: &Scenario, count: u32) -> Partitions {
    let count = NonZeroU32::new(count).unwrap();
    let mut engines = Partitions::new(world.clone(), s.config(), count);
    for p in s.profiles() {
        engines.on_profile(profile::decode(None, Some(p.as_bytes())).unwrap());
    }
    engines
}

/// `replay::run` over `bytes`, then the end of time: the offers, presence events and dead
/// letters as written, and the summary.
fn replay_bytes(engines: &mut Partitions, bytes: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Summary) {
    let (mut offers, mut presence, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    let sinks = Sinks {
        offers: &mut offers,
        presence: Some(&mut presence),
        dead_letters: Some(&mut dead),
    };
    let summary = replay::run(engines, bytes, sinks, true).unwrap();
    (offers, presence, dead, summary)
}

/// Feeds `lines` (then the end of time) to `engine`; returns the encoded offers and presence
/// events.
fn run<'a>(
    engine: &mut Engine,
    lines: impl IntoIterator<Item = &'a Line>,
) -> (Vec<String>, Vec<String>) {
    let world = engine.world().clone();
    let (mut offers, mut presence) = (Vec::new(), Vec::new());
    let mut out = Output::default();
    let mut drain = |out: &mut Output| {
        for o in &out.offers {
            let mut buf = Vec::new();
            o.encode(&world, &mut buf);
            offers.push(String::from_utf8(buf).unwrap());
        }
        for e in &out.presence {
            let mut buf = Vec::new();
            e.encode(&world, &mut buf);
            presence.push(String::from_utf8(buf).unwrap());
        }
        out.clear();
    };
    for line in lines {
        let ping = ping::decode(line.json.as_bytes()).unwrap();
        engine.on_ping(&ping, &mut out);
        drain(&mut out);
    }
    engine.advance(Timestamp(i64::MAX), &mut out);
    drain(&mut out);
    (offers, presence)
}

/// An offer as the output says it: to whom, which campaign, when (ms).
#[derive(Clone)]
struct Issued {
    device: String,
    campaign: String,
    at: i64,
}

fn issued(line: &str) -> Issued {
    let v: Value = serde_json::from_str(line).unwrap();
    let text = |k: &str| v[k].as_str().unwrap().to_owned();
    Issued {
        device: text("device_id"),
        campaign: text("campaign_id"),
        at: Timestamp::parse(&text("event_ts")).unwrap().0,
    }
}

/// The local calendar date of `ms` in `zone`.
fn local_date(ms: i64, zone: &str) -> jiff::civil::Date {
    let tz = jiff::tz::TimeZone::get(zone).unwrap();
    tz.to_datetime(jiff::Timestamp::from_millisecond(ms).unwrap())
        .date()
}

/// What the passing cases did, to show a property was not checked vacuously.
#[derive(Debug, Default)]
struct Tally {
    cases: u32,
    cases_with_offers: u32,
    offers: usize,
    suppressed: [u64; Suppression::ALL.len()],
}

impl Tally {
    fn add(&mut self, offers: usize, engine: Option<&Engine>) {
        self.cases += 1;
        self.cases_with_offers += u32::from(offers > 0);
        self.offers += offers;
        if let Some(e) = engine {
            for (t, n) in self
                .suppressed
                .iter_mut()
                .zip(e.stats().suppressed_by_reason())
            {
                *t += n;
            }
        }
    }

    /// Most cases made offers.
    fn assert_not_vacuous(&self) {
        assert!(
            self.cases_with_offers * 4 >= self.cases * 3,
            "too few cases made offers: {self:?}"
        );
    }
}

/// Runs `property` on `CASES` inputs from `strategy`, shrinking and persisting failures as
/// `proptest!` does, and returns what the passing cases tallied.
fn check<S: Strategy>(
    strategy: S,
    property: impl Fn(S::Value, &mut Tally) -> TestCaseResult,
) -> Tally {
    let mut config = Config::with_cases(CASES);
    config.source_file = Some(file!());
    let tally = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(config);
    if let Err(e) = runner.run(&strategy, |v| property(v, &mut tally.borrow_mut())) {
        panic!("{e}");
    }
    tally.into_inner()
}

// ---------------------------------------------------------------------------------------------
// 1. Caps and budgets are never exceeded, for any input order

/// Any order: a quarter of the cases feed the pings in an arbitrary permutation, the rest in
/// event-time order with each ping held up by up to 15 minutes (three times the allowed
/// lateness, so some come too late and are dropped).
#[test]
fn caps_and_budgets_are_never_exceeded_in_any_input_order() {
    let tally = check(input(true, 900_000, true), |(s, lines), tally| {
        let world = world(&s.limits);
        let mut engine = engine(&world, &s);
        let (offers, _) = run(&mut engine, &lines);
        let offers: Vec<Issued> = offers.iter().map(|o| issued(o)).collect();
        tally.add(offers.len(), Some(&engine));

        caps_and_budgets_hold(&s, &offers)
    });
    tally.assert_not_vacuous();
    // Every cap and budget had to refuse something at some point, or the test proved little.
    for why in [
        Suppression::Visit,
        Suppression::Cooldown,
        Suppression::CampaignCap,
        Suppression::DailyCap,
        Suppression::DailyBudget,
        Suppression::TotalBudget,
    ] {
        assert!(
            tally.suppressed[why.index()] > 0,
            "no candidate was refused for {}: {tally:?}",
            why.name()
        );
    }
}

/// `beckon replay --partitions N`, as `beckon run` decides a topic of N partitions: each
/// partition's engine keeps within its share of every budget, in total and per day (judged from
/// the offers to the devices Kafka's partitioner puts there), so together they keep within the
/// budget; every other cap holds as in one engine.
#[test]
fn partitions_keep_within_their_share_of_every_budget() {
    let strategy = (input(true, 900_000, true), 2u32..=4);
    let tally = check(strategy, |((s, lines), count), tally| {
        let mut bytes = Vec::new();
        for line in &lines {
            bytes.extend_from_slice(line.json.as_bytes());
            bytes.push(b'\n');
        }
        let (offers, ..) = replay_bytes(&mut engines(&world(&s.limits), &s, count), &bytes);
        let offers: Vec<Issued> = String::from_utf8(offers)
            .unwrap()
            .lines()
            .map(issued)
            .collect();
        tally.add(offers.len(), None);
        caps_and_budgets_hold(&s, &offers)?;
        for index in 0..count {
            let share = Share { index, count };
            let mut part = s.clone();
            for l in &mut part.limits {
                l.total = l.total.map(|t| share.of(t));
                l.daily = l.daily.map(|d| share.of(d.into()) as u32);
            }
            let mine: Vec<Issued> = offers
                .iter()
                .filter(|o| partition_of(o.device.as_bytes(), count) == index)
                .cloned()
                .collect();
            caps_and_budgets_hold(&part, &mine)?;
        }
        Ok(())
    });
    tally.assert_not_vacuous();
}

/// Every cap and budget of `s`, judged from the offers alone: no window of any cap's length
/// holds more than its `max` offers of the campaign to one device; no two are closer than the
/// cooldown; no device gets more than `per_device_daily` in a local day; no campaign spends more
/// than its budget, in total or on a day in its budget's zone.
fn caps_and_budgets_hold(s: &Scenario, offers: &[Issued]) -> TestCaseResult {
    let limits: BTreeMap<&str, (&Limits, &str)> = campaign_specs()
        .iter()
        .zip(&s.limits)
        .map(|((id, .., zone), l)| (*id, (l, *zone)))
        .collect();
    // Per device and campaign: offer times, ascending.
    let mut times: BTreeMap<(&str, &str), Vec<i64>> = BTreeMap::new();
    for o in offers {
        times
            .entry((&o.device, &o.campaign))
            .or_default()
            .push(o.at);
    }
    for ((device, campaign), ts) in &mut times {
        ts.sort_unstable();
        let (l, _) = limits[campaign];
        for &(max, window_s) in &l.windows {
            let w = i64::from(window_s) * 1000;
            for (i, &t) in ts.iter().enumerate() {
                let within = ts[i..].iter().take_while(|&&u| u - t < w).count();
                prop_assert!(
                    within <= max as usize,
                    "{device} got {within} offers of {campaign} within {window_s} s from {} (cap {max})",
                    Timestamp(t)
                );
            }
        }
        for pair in ts.windows(2) {
            prop_assert!(
                pair[1] - pair[0] >= i64::from(l.cooldown_s) * 1000,
                "{device} got {campaign} at {} and {}: closer than its {} s cooldown",
                Timestamp(pair[0]),
                Timestamp(pair[1]),
                l.cooldown_s
            );
        }
    }
    if s.per_device_daily > 0 {
        let mut per_day: BTreeMap<(&str, jiff::civil::Date), u32> = BTreeMap::new();
        for o in offers {
            *per_day
                .entry((&o.device, local_date(o.at, s.daily_cap_zone())))
                .or_default() += 1;
        }
        for ((device, day), n) in per_day {
            prop_assert!(
                n <= s.per_device_daily,
                "{device} got {n} offers on {day} (cap {} per day)",
                s.per_device_daily
            );
        }
    }
    for (campaign, (l, zone)) in &limits {
        let mine: Vec<i64> = offers
            .iter()
            .filter(|o| o.campaign == *campaign)
            .map(|o| o.at)
            .collect();
        if let Some(total) = l.total {
            prop_assert!(
                mine.len() as u64 <= total,
                "{campaign}: {} offers, budget {total}",
                mine.len()
            );
        }
        if let Some(daily) = l.daily {
            let mut per_day: BTreeMap<jiff::civil::Date, u32> = BTreeMap::new();
            for &t in &mine {
                *per_day.entry(local_date(t, zone)).or_default() += 1;
            }
            for (day, n) in per_day {
                prop_assert!(
                    n <= daily,
                    "{campaign}: {n} offers on {day} in {zone}, budget {daily} a day"
                );
            }
        }
    }
    Ok(())
}

// Inputs the random walk is unlikely to hit, checked against the same invariants.

/// A fix by `d-{device}`, `secs` after the start, `east`/`north` metres from shop A's centre.
fn fix(device: usize, secs: i64, (east, north): (f64, f64), accuracy_m: f64) -> Line {
    let ts = START_MS + secs * 1000;
    let [lon, lat] = lon_lat(east, north);
    let json = json!({"type": "location", "device_id": format!("d-{device}"), "ts": Timestamp(ts).to_string(),
                      "lat": lat, "lon": lon, "accuracy_m": accuracy_m});
    Line {
        ts,
        device,
        json: json.to_string(),
    }
}

/// A scenario for hand-made pings: only `goodbye` (exit from shop A or the mall) is capped.
fn goodbye_capped(windows: Vec<(u32, u32)>, per_device_daily: u32) -> Scenario {
    let free = Limits {
        windows: vec![],
        cooldown_s: 0,
        total: None,
        daily: None,
    };
    let mut limits = vec![free; 5];
    limits[2].windows = windows;
    Scenario {
        limits,
        per_device_daily,
        device_local: false,
        one_offer_per_visit: false,
        devices: vec![vec![]],
    }
}

/// An offer decided at an event time earlier than the device's newest ping (an exit is dated at the first outside fix, confirmed a minute
/// later), just after another offer made the engine forget the offers of a week ago — but the
/// week-long window of the exit's own time still reaches one of them.
#[test]
fn an_exit_confirmed_late_still_sees_a_week_long_cap() {
    const WEEK: i64 = 604_800;
    let s = goodbye_capped(vec![(1, WEEK as u32)], 0);
    let shop = Place::ShopA.metres();
    // Outside shop A but inside its circle, too close to the edge to confirm an exit at once.
    let edge = Place::EdgeA.metres();
    // In and out of shop A (goodbye #1 at 60 s)…
    let mut lines = vec![fix(0, 30, shop, 5.0), fix(0, 60, Place::Far.metres(), 5.0)];
    // …and back a week later, for 9 minutes. At the edge at WEEK + 30 s (first outside fix);
    // the circle's 10-minute dwell offer at WEEK + 70 s; the exit confirmed at WEEK + 95 s,
    // dated WEEK + 30 s: less than a week after goodbye #1.
    lines.extend((0..9).map(|k| fix(0, WEEK - 540 + k * 60, shop, 5.0)));
    lines.extend([WEEK + 30, WEEK + 70, WEEK + 95].map(|t| fix(0, t, edge, 5.0)));
    let world = world(&s.limits);
    let (offers, _) = run(&mut engine(&world, &s), &lines);
    let offers: Vec<Issued> = offers.iter().map(|o| issued(o)).collect();
    assert!(
        offers.iter().any(|o| o.campaign == "linger"),
        "the dwell offer that prunes the ledger"
    );
    if let Err(e) = caps_and_budgets_hold(&s, &offers) {
        panic!("{e}");
    }
}

/// A device that stays at shop A while its fixes are too vague to say anything (cell-tower
/// positioning, 200 m) for two days, then falls silent: it leaves shop A and its circle as of
/// its last good fix, two days back. Both exits are capped by that day's offers.
#[test]
fn exits_dated_days_back_still_see_that_days_caps() {
    let s = goodbye_capped(vec![(1, 3600)], 2);
    let shop = Place::ShopA.metres();
    let mut lines = vec![fix(0, 0, shop, 5.0)];
    lines.extend((1..=300).map(|k| fix(0, k * 600, shop, 200.0)));
    let world = world(&s.limits);
    let (offers, _) = run(&mut engine(&world, &s), &lines);
    let offers: Vec<Issued> = offers.iter().map(|o| issued(o)).collect();
    assert!(offers.iter().any(|o| o.campaign == "goodbye"));
    if let Err(e) = caps_and_budgets_hold(&s, &offers) {
        panic!("{e}");
    }
}

/// The minimal input property 3 first failed on. `d-0` leaves the mall by falling silent, and
/// comes back 90 minutes later. With `d-1` in the same engine, its ping makes the silence sweep
/// exit `d-0` first; alone, `d-0`'s own return exits it — and both must then decide the old
/// visit's exit apart from the new visit (the exit offer used to mark the new visit as offered,
/// so its own exit offer was refused).
#[test]
fn a_silent_device_leaves_the_same_way_whoever_shares_its_engine() {
    let mut s = goodbye_capped(vec![], 0);
    s.one_offer_per_visit = true;
    s.devices = vec![vec![]; 2];
    let hall = Place::MallHall.metres();
    let far = Place::Far.metres();
    let lines = [
        fix(0, 0, hall, 28.0),
        fix(1, 2200, far, 5.0),
        fix(0, 5400, hall, 8.0),
    ];
    let world = world(&s.limits);
    let (mut together, _) = run(&mut engine(&world, &s), &lines);
    let (mut apart, _) = run(
        &mut engine(&world, &s),
        &lines[..1]
            .iter()
            .chain(&lines[2..])
            .cloned()
            .collect::<Vec<_>>(),
    );
    apart.extend(run(&mut engine(&world, &s), &lines[1..2]).0);
    together.sort();
    apart.sort();
    assert_eq!(
        together.iter().filter(|o| o.contains("goodbye")).count(),
        2,
        "{together:?}"
    );
    assert_eq!(apart, together);
}

// ---------------------------------------------------------------------------------------------
// 2. Replay is deterministic

#[test]
fn replaying_the_same_input_twice_gives_identical_bytes() {
    let strategy = (input(true, 900_000, true), 1u32..=3);
    let tally = check(strategy, |((s, lines), partitions), tally| {
        let mut bytes = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            bytes.extend_from_slice(line.json.as_bytes());
            bytes.push(b'\n');
            if i % 97 == 13 {
                // A dead letter now and then: its line number goes into the output too.
                bytes.extend_from_slice(b"{\"type\":\"location\",\"device_id\":\"d-0\"}\n");
            }
        }
        let replay = || replay_bytes(&mut engines(&world(&s.limits), &s, partitions), &bytes);
        let first = replay();
        let second = replay();
        tally.add(
            first
                .0
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count(),
            None,
        );
        prop_assert!(first.0 == second.0, "offers differ");
        prop_assert!(first.1 == second.1, "presence events differ");
        prop_assert!(first.2 == second.2, "dead letters differ");
        prop_assert_eq!(first.3, second.3);
        Ok(())
    });
    tally.assert_not_vacuous();
}

// ---------------------------------------------------------------------------------------------
// 3. A restore from the changelog goes on exactly as if nothing had happened

/// The exactly-once core: an engine keeping a changelog writes it batch by batch; at any point a
/// fresh engine restored from the log so far (compacted or not, with a torn batch after the
/// last partition record or not) decides the rest of the input exactly as the first would have:
/// the same offers and presence events, byte for byte, budgets and caps included.
#[test]
fn an_engine_restored_from_its_changelog_goes_on_identically() {
    let strategy = (
        input(true, 900_000, true),
        1usize..8,
        0.0f64..1.0,
        any::<bool>(),
        any::<bool>(),
    );
    let tally = check(
        strategy,
        |((s, lines), batch, cut, compact, torn), tally| {
            let world = world(&s.limits);
            let (offers, presence) = run(&mut engine(&world, &s), &lines);
            tally.add(offers.len(), None);
            let cut = (lines.len() as f64 * cut) as usize;
            let mut first = engine(&world, &s);
            first.keep_changes();
            let (mut before_o, mut before_p) = (Vec::new(), Vec::new());
            let mut log: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
            let mut records = Records::default();
            for (i, chunk) in lines[..cut].chunks(batch).enumerate() {
                let (o, p) = decide(&mut first, chunk);
                before_o.extend(o);
                before_p.extend(p);
                records.clear();
                first.take_changes(((i + 1) * batch).min(cut) as i64, &mut records);
                log.extend(
                    records
                        .iter()
                        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))),
                );
            }
            if torn && cut < lines.len() {
                // A batch decided and partly logged, without its partition record.
                let (o, p) = decide(&mut first, &lines[cut..cut + 1]);
                records.clear();
                first.take_changes(cut as i64 + 1, &mut records);
                log.extend(
                    records
                        .iter()
                        .take(records.len() - 1)
                        .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))),
                );
                drop((o, p));
            }
            let settled = log
                .iter()
                .rposition(|(k, _)| beckon::changelog::is_partition(k));
            if compact {
                // What log compaction may leave: the latest record per key, in log order. It
                // never runs over the torn tail (`min.compaction.lag.ms`; README, "State and
                // recovery").
                let end = settled.map_or(0, |i| i + 1);
                let mut seen = std::collections::HashSet::new();
                let mut kept: Vec<_> = log[..end]
                    .iter()
                    .rev()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .cloned()
                    .collect();
                kept.reverse();
                kept.extend_from_slice(&log[end..]);
                log = kept;
            }
            let settled = log
                .iter()
                .rposition(|(k, _)| beckon::changelog::is_partition(k));
            let mut second = engine(&world, &s);
            for (k, v) in &log[..settled.map_or(0, |i| i + 1)] {
                second.restore_record(k, v.as_deref()).unwrap();
            }
            let next = second.finish_restore();
            prop_assert_eq!(next, settled.map(|_| cut as i64));
            let (after_o, after_p) = run(&mut second, &lines[cut..]);
            let restored_o: Vec<String> = before_o.into_iter().chain(after_o).collect();
            let restored_p: Vec<String> = before_p.into_iter().chain(after_p).collect();
            prop_assert!(
                restored_o == offers,
                "offers: {}",
                difference(&offers, &restored_o)
            );
            prop_assert!(
                restored_p == presence,
                "presence: {}",
                difference(&presence, &restored_p)
            );
            Ok(())
        },
    );
    tally.assert_not_vacuous();
}

/// Feeds `lines` to `engine` without ending time; returns the encoded offers and presence.
fn decide(engine: &mut Engine, lines: &[Line]) -> (Vec<String>, Vec<String>) {
    let world = engine.world().clone();
    let mut out = Output::default();
    let pings: Vec<_> = lines
        .iter()
        .map(|l| ping::decode(l.json.as_bytes()).unwrap())
        .collect();
    engine.on_batch(&pings, &mut out);
    let encode = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    };
    let offers = out
        .offers
        .iter()
        .map(|o| encode(&|b| o.encode(&world, b)))
        .collect();
    let presence = out
        .presence
        .iter()
        .map(|e| encode(&|b| e.encode(&world, b)))
        .collect();
    (offers, presence)
}

// ---------------------------------------------------------------------------------------------
// 4. Splitting devices across engines gives the same offers

/// The contract for lateness: pings arrive in event-time order up to a disorder smaller than
/// `presence.max_lateness_s` (a phone's batch is late by less than that). Each ping is held up
/// by less than the allowed lateness, so no ping comes after one more than that newer. Then the
/// engine's silence sweep, driven by the newest event time of whatever devices it holds, exits
/// a silent device at the same point of its own ping sequence whoever else it shares the engine
/// with. Budgets are the one state devices share (src/engine.rs), so here none binds.
#[test]
fn devices_split_across_engines_get_the_same_offers_as_in_one() {
    let max_lateness_ms = i64::from(EngineConfig::default().presence.max_lateness_s) * 1000;
    let strategy = (
        input(false, max_lateness_ms, false),
        2usize..=3,
        any::<u64>(),
    );
    let tally = check(strategy, |((s, lines), parts, salt), tally| {
        let world = world(&s.limits);
        let (mut offers, mut presence) = run(&mut engine(&world, &s), &lines);
        tally.add(offers.len(), None);
        let part =
            |device: usize| (fnv1a(salt, format!("d-{device}").as_bytes()) % parts as u64) as usize;
        let (mut split_offers, mut split_presence) = (Vec::new(), Vec::new());
        for p in 0..parts {
            let mine = lines.iter().filter(|l| part(l.device) == p);
            let (o, e) = run(&mut engine(&world, &s), mine);
            split_offers.extend(o);
            split_presence.extend(e);
        }
        for v in [
            &mut offers,
            &mut presence,
            &mut split_offers,
            &mut split_presence,
        ] {
            v.sort();
        }
        prop_assert!(
            split_offers == offers,
            "offers: {}",
            difference(&offers, &split_offers)
        );
        prop_assert!(
            split_presence == presence,
            "presence: {}",
            difference(&presence, &split_presence)
        );
        Ok(())
    });
    tally.assert_not_vacuous();
}

/// What only the one engine emitted, and what only the split engines did.
fn difference(one: &[String], split: &[String]) -> String {
    let only = |a: &[String], b: &[String]| {
        let mut b = b.to_vec();
        a.iter()
            .filter(|x| match b.iter().position(|y| y == *x) {
                Some(i) => {
                    b.remove(i);
                    false
                }
                None => true,
            })
            .cloned()
            .collect::<String>()
    };
    format!(
        "\none engine only:\n{}split engines only:\n{}",
        only(one, split),
        only(split, one)
    )
}

/// FNV-1a, seeded: which engine (partition) a device id goes to.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
