//! The decision core on the stories of `fixtures/` (see fixtures/README.md), as a marketing team
//! would judge it: the right person, the right store, the right moment, never pestered.
#![allow(clippy::unwrap_used)] // helpers too: a fixture that does not load should fail the test

use std::num::NonZeroU32;
use std::sync::Arc;

use beckon::beacon::BeaconRegistry;
use beckon::campaign::{load_campaigns, parse_campaigns, Campaign};
use beckon::engine::{Engine, EngineConfig, Stats};
use beckon::fence::{load_fences, parse_fences, FenceIndex, IndexOptions, LoadMode};
use beckon::offer::Output;
use beckon::ping;
use beckon::profile::{self, load_profiles, ProfileRecord};
use beckon::replay::{self, Partitions, Sinks, Summary};
use beckon::time::Timestamp;
use beckon::world::World;
use serde_json::{json, Value};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn fixture_world(campaigns: Vec<Campaign>, cfg: &EngineConfig) -> Arc<World> {
    fixture_world_with(&[], campaigns, cfg)
}

/// The fixture world with `more` fences (GeoJSON features) added.
fn fixture_world_with(more: &[Value], campaigns: Vec<Campaign>, cfg: &EngineConfig) -> Arc<World> {
    let mut fences = load_fences(
        format!("{FIXTURES}/fences.geojson").as_ref(),
        LoadMode::Strict,
    )
    .unwrap()
    .fences;
    let more = json!({"type": "FeatureCollection", "features": more}).to_string();
    fences.extend(
        parse_fences(more.as_bytes(), LoadMode::Strict)
            .unwrap()
            .fences,
    );
    let beacons = BeaconRegistry::load(format!("{FIXTURES}/beacons.json").as_ref()).unwrap();
    let index = FenceIndex::new(fences, IndexOptions::default());
    Arc::new(World::new(index, beacons, campaigns, cfg.presence.exit_buffer_m).unwrap())
}

fn fixture_campaigns() -> Vec<Campaign> {
    load_campaigns(format!("{FIXTURES}/campaigns").as_ref()).unwrap()
}

fn fixture_profiles() -> impl Iterator<Item = ProfileRecord<'static>> {
    load_profiles(format!("{FIXTURES}/profiles.jsonl").as_ref())
        .unwrap()
        .into_iter()
        .map(|(device_id, profile)| ProfileRecord::Upsert {
            device_id: device_id.into(),
            profile,
        })
}

fn fixture_engine(cfg: EngineConfig) -> Engine {
    let mut engine = Engine::new(fixture_world(fixture_campaigns(), &cfg), cfg);
    fixture_profiles().for_each(|p| engine.on_profile(p));
    engine
}

/// The fixture world and profiles as `beckon replay` runs them (one partition).
fn fixture_replay(cfg: EngineConfig) -> Partitions {
    let world = fixture_world(fixture_campaigns(), &cfg);
    let mut engines = Partitions::new(world, cfg, NonZeroU32::MIN);
    fixture_profiles().for_each(|p| engines.on_profile(p));
    engines
}

fn fixture_pings() -> Vec<String> {
    std::fs::read_to_string(format!("{FIXTURES}/pings.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The fixture pings of one device, with their timestamps moved by `shift_s`.
fn device_pings(device: &str, shift_s: i64) -> Vec<String> {
    fixture_pings()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["device_id"] == device)
        .map(|mut v| {
            let ts = Timestamp::parse(v["ts"].as_str().unwrap()).unwrap();
            v["ts"] = json!(Timestamp(ts.0 + shift_s * 1000).to_string());
            v.to_string()
        })
        .collect()
}

struct Run {
    offers: Vec<Value>,
    presence: Vec<Value>,
    summary: Summary,
}

impl Run {
    fn offers_to(&self, device: &str) -> Vec<&Value> {
        self.offers
            .iter()
            .filter(|o| o["device_id"] == device)
            .collect()
    }

    fn presence_of(&self, device: &str, fence: &str) -> Vec<(String, String)> {
        self.presence
            .iter()
            .filter(|e| e["device_id"] == device && e["fence_id"] == fence)
            .map(|e| {
                (
                    e["event"].as_str().unwrap().to_owned(),
                    e["ts"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn suppressed(&self, campaign: &str, reason: &str) -> u64 {
        self.summary
            .suppressed_by_campaign
            .get(campaign)
            .and_then(|m| m.get(reason))
            .copied()
            .unwrap_or(0)
    }
}

fn replay(engines: &mut Partitions, lines: &[String]) -> Run {
    let input = lines.join("\n");
    let (mut offers, mut presence) = (Vec::new(), Vec::new());
    let summary = replay::run(
        engines,
        input.as_bytes(),
        Sinks {
            offers: &mut offers,
            presence: Some(&mut presence),
            dead_letters: None,
        },
        false,
    )
    .unwrap();
    let parse = |b: Vec<u8>| -> Vec<Value> {
        String::from_utf8(b)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    Run {
        offers: parse(offers),
        presence: parse(presence),
        summary,
    }
}

fn whole_day() -> Run {
    replay(
        &mut fixture_replay(EngineConfig::default()),
        &fixture_pings(),
    )
}

#[test]
fn a_jittery_walk_past_a_store_gives_no_enter_and_no_offer() {
    let run = whole_day();
    // `beckon match` puts lines 31–32 inside the store; their accuracy circles straddle its walls.
    let line31: Value = serde_json::from_str(&fixture_pings()[30]).unwrap();
    assert_eq!(line31["device_id"], "d-000101");
    assert!(run.presence_of("d-000101", "f-sh-chayun-0001").is_empty());
    assert!(run.offers_to("d-000101").is_empty());
    // The metro-exit circle it really crossed: one enter, one exit.
    let circle = run.presence_of("d-000101", "f-sh-chayun-0002");
    let events: Vec<&str> = circle.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["enter", "exit"]);
}

#[test]
fn a_six_minute_stay_gives_one_dwell_offer() {
    let run = whole_day();
    let at_store: Vec<&Value> = run
        .offers_to("d-000102")
        .into_iter()
        .filter(|o| o["store_id"] == "s-sh-chayun-02")
        .collect();
    assert_eq!(at_store.len(), 1, "{at_store:#?}");
    let o = at_store[0];
    assert_eq!(o["campaign_id"], "chayun-tasting");
    assert_eq!(o["trigger"], "dwell");
    // Entered at the entrance beacon (10:32:48 local); five minutes later, at the next fix.
    assert_eq!(o["event_ts"], "2026-11-22T02:38:00.000Z");
    assert!(o["coupon_code"].as_str().unwrap().starts_with("CY-TASTE-"));
    assert_eq!(o["title"], "A free tasting at the experience bar");
    let visit = run.presence_of("d-000102", "f-sh-chayun-0003");
    let events: Vec<&str> = visit.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["enter", "dwell", "exit"]);
    // The regular (tea:6) is not a "new visitor": the welcome coupon is not hers.
    assert_eq!(run.suppressed("chayun-welcome", "audience"), 1);
}

#[test]
fn a_second_visit_within_the_cooldown_gives_no_offer_and_one_after_it_does() {
    let mut engines = fixture_replay(EngineConfig::default());
    let first = replay(&mut engines, &device_pings("d-000102", 0));
    let again = replay(&mut engines, &device_pings("d-000102", 3 * 3600));
    let week_later = replay(&mut engines, &device_pings("d-000102", 8 * 86_400));
    let tastings = |r: &Run| {
        r.offers
            .iter()
            .filter(|o| o["campaign_id"] == "chayun-tasting")
            .count()
    };
    assert_eq!(tastings(&first), 1);
    assert_eq!(tastings(&again), 0);
    assert_eq!(again.suppressed("chayun-tasting", "cooldown"), 1);
    assert_eq!(tastings(&week_later), 1);
}

#[test]
fn no_consent_means_no_offer_at_all() {
    let run = whole_day();
    assert!(run.offers_to("d-000107").is_empty());
    // She was a candidate (she walked into a Cha Yun store) and was held back for consent.
    assert!(run.suppressed("chayun-welcome", "no_consent") >= 1);
    assert!(!run.presence_of("d-000107", "f-sz-chayun-0001").is_empty());
}

#[test]
fn withdrawn_consent_stops_offers_at_the_next_ping() {
    let mut engines = fixture_replay(EngineConfig::default());
    let lines = device_pings("d-000106", 0);
    // Up to the last sighting below the threshold; the next one (-73 dBm) brings her in range.
    let split = lines
        .iter()
        .position(|l| l.contains("\"rssi\":-73"))
        .unwrap();
    replay(&mut engines, &lines[..split]);
    engines.on_profile(
        profile::decode(
            Some(b"d-000106"),
            Some(br#"{"device_id":"d-000106","consent":false}"#),
        )
        .unwrap(),
    );
    let rest = replay(&mut engines, &lines[split..]);
    assert!(rest.offers.is_empty(), "{:#?}", rest.offers);
    assert_eq!(rest.suppressed("chayun-welcome", "no_consent"), 1);

    // With consent kept, the same pings give her the welcome coupon at that very sighting.
    let kept = replay(&mut fixture_replay(EngineConfig::default()), &lines);
    let offers = kept.offers_to("d-000106");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["campaign_id"], "chayun-welcome");
    assert_eq!(offers[0]["trigger"], "enter");
}

#[test]
fn a_beacon_at_the_threshold_is_smoothed_and_the_higher_priority_campaign_wins() {
    let run = whole_day();
    let offers = run.offers_to("d-000106");
    assert_eq!(offers.len(), 1);
    // -75 dBm (line 201) is exactly rssi_min, but the mean of the last three sightings is
    // -76; line 203 (-73) brings the mean to -74.7.
    assert_eq!(offers[0]["event_ts"], "2026-11-22T06:06:57.415Z");
    assert_eq!(offers[0]["store_id"], "s-hz-chayun-01");
    // The entrance beacon places her in the shop, not in the metro-exit circle 190 m away.
    assert!(run.presence_of("d-000106", "f-hz-chayun-0002").is_empty());
    // The door greeting (beacon, priority 5) lost the visit to the welcome (enter, priority 10).
    assert_eq!(run.suppressed("chayun-hangzhou-door", "arbitration"), 1);
    assert_eq!(run.summary.unknown_beacon, 1);
}

#[test]
fn the_hotel_guest_gets_a_come_back_offer_on_exit_and_a_late_fix_does_not_re_enter() {
    let run = whole_day();
    let offers = run.offers_to("d-000104");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["campaign_id"], "jadeharbour-come-back");
    assert_eq!(offers[0]["trigger"], "exit");
    // Dated at the first fix outside the building (line 8, 09:43:30 local).
    assert_eq!(offers[0]["event_ts"], "2026-11-22T01:43:30.000Z");
    let building = run.presence_of("d-000104", "f-sh-jadeharbour-0001");
    let events: Vec<&str> = building.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        events,
        ["enter", "exit"],
        "the late lobby fix (line 14) re-entered"
    );
    let circle = run.presence_of("d-000104", "f-sh-jadeharbour-0002");
    assert_eq!(
        circle.last().unwrap(),
        &("exit".into(), "2026-11-22T01:47:30.000Z".into())
    );
}

#[test]
fn the_car_film_brand_routes_drivers_to_the_shop_authorized_for_their_region() {
    let run = whole_day();
    let offers = run.offers_to("d-000105");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["campaign_id"], "clearshield-route");
    assert_eq!(offers[0]["trigger"], "nearby");
    assert_eq!(offers[0]["store_id"], "s-sh-clearshield-02");
    assert!(offers[0]["distance_m"].as_f64().unwrap() <= 100.0);

    // The same drive by someone from Puxi: that shop is not authorized for his region.
    let mut engines = fixture_replay(EngineConfig::default());
    engines.on_profile(
        profile::decode(
            None,
            Some(br#"{"device_id":"d-000105","consent":true,"attributes":{"interests":["cars"],"home_region":"sh-puxi"}}"#),
        )
        .unwrap(),
    );
    let puxi = replay(&mut engines, &device_pings("d-000105", 0));
    assert!(puxi.offers.is_empty());
    assert_eq!(puxi.suppressed("clearshield-route", "audience"), 1);
}

#[test]
fn the_flash_sale_reaches_its_audience_near_the_counter_only_during_the_sale() {
    let run = whole_day();
    let offers = run.offers_to("d-000103");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["campaign_id"], "yanse-flash-sale");
    assert_eq!(offers[0]["store_id"], "s-sh-yanse-01");
    // The mall's Sun Atrium (a hole) did not end her mall visit.
    let mall = run.presence_of("d-000103", "f-sh-mall-0001");
    let events: Vec<&str> = mall.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(events, ["enter", "dwell", "exit"]);

    // A man with the same walk is not in the audience; the same walk after 18:00 is too late.
    let mut engines = fixture_replay(EngineConfig::default());
    engines.on_profile(
        profile::decode(
            None,
            Some(br#"{"device_id":"d-000103","consent":true,"attributes":{"age":30,"gender":"m","income_tier":"high"}}"#),
        )
        .unwrap(),
    );
    assert!(replay(&mut engines, &device_pings("d-000103", 0))
        .offers
        .is_empty());
    let evening = replay(
        &mut fixture_replay(EngineConfig::default()),
        &device_pings("d-000103", 5 * 3600),
    );
    assert!(evening.offers.is_empty());
    assert_eq!(evening.suppressed("yanse-flash-sale", "schedule"), 1);
}

#[test]
fn members_get_the_monthly_box_and_an_anonymous_walker_only_the_anonymous_campaign() {
    let run = whole_day();
    let box_offers: Vec<&Value> = run
        .offers
        .iter()
        .filter(|o| o["campaign_id"] == "linenloom-monthly-box")
        .collect();
    assert_eq!(box_offers.len(), 1);
    assert_eq!(box_offers[0]["device_id"], "d-000102"); // gold member; d-000103 never went in
    let anon = run.offers_to("d-000108");
    assert_eq!(anon.len(), 1);
    assert_eq!(anon[0]["campaign_id"], "nanshan-mall-hello");
    // The gap between the mall's two buildings is not an exit.
    let mall = run.presence_of("d-000108", "f-sz-mall-0002");
    assert_eq!(mall[0].0, "enter");
    assert_eq!(mall.iter().filter(|(e, _)| e == "enter").count(), 1);
}

#[test]
fn the_day_in_numbers() {
    let run = whole_day();
    let s = &run.summary;
    assert_eq!(s.lines, 218);
    assert_eq!(s.invalid.values().sum::<u64>(), 4);
    assert_eq!((s.offers, s.reach), (7, 7 - 1)); // d-000102 got two, at two stores
    assert_eq!(s.offers_by_store.len(), 7);
    assert_eq!(s.budgets["chayun-welcome"].spent, 1);
    // Byte-identical on a second run.
    let again = whole_day();
    assert_eq!(run.offers, again.offers);
    assert_eq!(run.presence, again.presence);
}

/// A store in New York with quiet hours 21:00–09:00 local, around both DST changes of 2026.
#[test]
fn a_dst_change_does_not_shift_quiet_hours() {
    let fences = br#"{"type":"FeatureCollection","features":[
      {"type":"Feature","id":"f-ny","properties":{"store_id":"s-ny","kind":"store","name":"Soho",
        "timezone":"America/New_York"},
       "geometry":{"type":"Polygon","coordinates":[[[-74.0010,40.7230],[-74.0000,40.7230],
         [-74.0000,40.7240],[-74.0010,40.7240],[-74.0010,40.7230]]]}}]}"#;
    let campaign = br#"{"id":"ny-hello","name":"Hello","trigger":{"type":"enter"},
      "offer":{"title":"Hi","ttl_s":60}}"#;
    let cfg: EngineConfig = serde_json::from_value(
        json!({"caps": {"quiet_hours": "21:00-09:00", "per_device_daily": 0}}),
    )
    .unwrap();
    let index = FenceIndex::new(
        parse_fences(fences, LoadMode::Strict).unwrap().fences,
        IndexOptions::default(),
    );
    let campaigns = parse_campaigns(campaign, false, "test").unwrap();
    let world = Arc::new(World::new(index, BeaconRegistry::default(), campaigns, 25.0).unwrap());
    let mut engines = Partitions::new(world, cfg, NonZeroU32::MIN);
    // Visits at 08:30 and 09:30 local on the Saturday before and the Sunday of each change.
    let visits = [
        ("d-1", "2026-03-07T08:30:00-05:00"), // EST: quiet
        ("d-2", "2026-03-07T09:30:00-05:00"), // EST: open
        ("d-3", "2026-03-08T08:30:00-04:00"), // EDT since 02:00: still quiet at 08:30
        ("d-4", "2026-03-08T09:30:00-04:00"), // EDT: open (13:30Z, as 08:30 EST would be)
        ("d-5", "2026-10-31T08:30:00-04:00"),
        ("d-6", "2026-11-01T08:30:00-05:00"), // EST since 02:00: 13:30Z, still quiet
        ("d-7", "2026-11-01T09:30:00-05:00"),
    ];
    let mut lines = Vec::new();
    for (device, ts) in visits {
        engines.on_profile(ProfileRecord::Upsert {
            device_id: device.into(),
            profile: beckon::profile::Profile::without_attributes(true),
        });
        lines.push(
            json!({"type":"location","device_id":device,"ts":ts,"lat":40.7235,"lon":-74.0005,"accuracy_m":5})
                .to_string(),
        );
    }
    lines.sort_by_key(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        Timestamp::parse(v["ts"].as_str().unwrap()).unwrap()
    });
    let run = replay(&mut engines, &lines);
    let mut offered: Vec<&str> = run
        .offers
        .iter()
        .map(|o| o["device_id"].as_str().unwrap())
        .collect();
    offered.sort();
    assert_eq!(offered, ["d-2", "d-4", "d-7"]);
    assert_eq!(run.suppressed("ny-hello", "quiet_hours"), 4);
}

#[test]
fn late_pings_do_not_rewind_and_too_late_ones_are_counted() {
    let run = whole_day();
    // Line 14 (hotel lobby, 09:40:45) arrives after the guest's 09:46 fix: more than the
    // 5-minute lateness allowed, so it is dropped and counted.
    assert_eq!(run.summary.too_late, 1);
    let pings = fixture_pings();
    let line14 = ping::decode(pings[13].as_bytes()).unwrap();
    assert_eq!(line14.device_id, "d-000104");
    assert!(line14.ts < ping::decode(pings[12].as_bytes()).unwrap().ts);
}

/// The fixture day one ping at a time, the world replaced by `reload(n)` (when it gives one)
/// before valid ping n, as a reload of the files between two pings would: the offers and
/// presence events as encoded, and the counters.
fn day_reloading(reload: impl Fn(usize) -> Option<Arc<World>>) -> (Vec<Vec<u8>>, Stats) {
    let mut engine = fixture_engine(EngineConfig::default());
    let mut out = Output::default();
    let mut emitted = Vec::new();
    let mut encode = |out: &mut Output, world: &World| {
        for e in &out.presence {
            let mut buf = Vec::new();
            e.encode(world, &mut buf);
            emitted.push(buf);
        }
        for o in &out.offers {
            let mut buf = Vec::new();
            o.encode(world, &mut buf);
            emitted.push(buf);
        }
        out.clear();
    };
    let pings = fixture_pings();
    let valid = pings.iter().filter_map(|l| ping::decode(l.as_bytes()).ok());
    for (n, ping) in valid.enumerate() {
        if let Some(world) = reload(n) {
            let old = engine.replace_world(world, &mut out);
            encode(&mut out, &old);
        }
        engine.on_ping(&ping, &mut out);
        encode(&mut out, engine.world());
    }
    (emitted, engine.stats().clone())
}

#[test]
fn reloading_the_same_world_or_one_renumbered_before_every_ping_changes_nothing() {
    let cfg = EngineConfig::default();
    let plain = day_reloading(|_| None);
    assert_eq!(plain.1.offers.iter().sum::<u64>(), 7);
    // The same files, loaded again: a distinct world, equal to the first.
    let (a, b) = (
        fixture_world(fixture_campaigns(), &cfg),
        fixture_world(fixture_campaigns(), &cfg),
    );
    let same = day_reloading(|n| Some(if n % 2 == 0 { a.clone() } else { b.clone() }));
    assert!(plain == same, "a reload of the same files changed the day");
    // A fence inserted at the front of the file (its id sorts first, far from everyone): every
    // other fence's index moves by one, back and forth at each ping.
    let front = json!({"type": "Feature", "id": "a-inserted", "properties": {"store_id": "s-new"},
        "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [0.001, 0.0], [0.001, 0.001],
            [0.0, 0.001], [0.0, 0.0]]]}});
    let shifted = fixture_world_with(&[front], fixture_campaigns(), &cfg);
    let renumbered = day_reloading(|n| {
        Some(if n % 2 == 0 {
            shifted.clone()
        } else {
            a.clone()
        })
    });
    assert!(plain == renumbered, "renumbered fences changed the day");
}

#[test]
fn a_device_idle_past_retention_is_forgotten_but_keeps_its_profile() {
    let cfg = EngineConfig {
        retention_days: 2,
        ..EngineConfig::default()
    };
    let mut engines = fixture_replay(cfg);
    engines.engines_mut()[0].keep_changes();
    let day = fixture_pings();
    let first = replay(&mut engines, &day);
    let engine = &mut engines.engines_mut()[0];
    let seen = engine.devices().len();
    assert!(!first.offers.is_empty());
    let offered = first.offers[0]["device_id"].as_str().unwrap().to_owned();
    let mut records = beckon::changelog::Records::default();
    engine.take_changes(1, &mut records);
    assert!(
        records.iter().all(|(_, v)| v.is_some()),
        "nothing forgotten yet"
    );
    // Three days later one device pings again: everyone else has been idle past retention.
    let later = device_pings(&offered, 3 * 86_400);
    replay(&mut engines, &later[..1]);
    let engine = &mut engines.engines_mut()[0];
    records.clear();
    engine.take_changes(2, &mut records);
    let forgotten: Vec<String> = records
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
        .collect();
    assert!(!forgotten.is_empty() && !forgotten.contains(&offered));
    // Devices with a profile keep it, and their place; the others are gone.
    let profiled: Vec<String> = load_profiles(format!("{FIXTURES}/profiles.jsonl").as_ref())
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert!(forgotten.iter().any(|d| !profiled.contains(d)));
    for d in &forgotten {
        assert_eq!(
            engine.devices().find(d).is_some(),
            profiled.contains(d),
            "{d}"
        );
    }
    assert!(engine.devices().len() < seen);
}
