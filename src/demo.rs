//! `beckon demo`: the fixtures, built into the binary, replayed through the decision core, so a
//! new user sees with no setup what the engine does: devices entering, dwelling in and leaving
//! stores, and the offers they get (or why not).
//!
//! The Kafka pipeline (an in-process broker, simulated devices live) arrives with the streaming
//! engine; this drives the same core the streaming engine will.

use std::io::{self, Write};
use std::sync::Arc;

use crate::beacon::BeaconRegistry;
use crate::campaign::parse_campaigns;
use crate::caps::Suppression;
use crate::engine::{Engine, EngineConfig};
use crate::fence::{parse_fences, FenceIndex, IndexOptions, LoadMode};
use crate::local_time::Zone;
use crate::offer::Output;
use crate::ping;
use crate::profile::{self, ProfileRecord};
use crate::world::World;

pub const FENCES: &[u8] = include_bytes!("../fixtures/fences.geojson");
pub const BEACONS: &[u8] = include_bytes!("../fixtures/beacons.json");
pub const PROFILES: &[u8] = include_bytes!("../fixtures/profiles.jsonl");
pub const PINGS: &[u8] = include_bytes!("../fixtures/pings.jsonl");
pub const CAMPAIGNS: [(&str, &[u8]); 8] = [
    (
        "chayun-hangzhou-door.json",
        include_bytes!("../fixtures/campaigns/chayun-hangzhou-door.json"),
    ),
    (
        "chayun-tasting.json",
        include_bytes!("../fixtures/campaigns/chayun-tasting.json"),
    ),
    (
        "chayun-welcome.json",
        include_bytes!("../fixtures/campaigns/chayun-welcome.json"),
    ),
    (
        "clearshield-route.json",
        include_bytes!("../fixtures/campaigns/clearshield-route.json"),
    ),
    (
        "jadeharbour-come-back.json",
        include_bytes!("../fixtures/campaigns/jadeharbour-come-back.json"),
    ),
    (
        "linenloom-monthly-box.yaml",
        include_bytes!("../fixtures/campaigns/linenloom-monthly-box.yaml"),
    ),
    (
        "nanshan-mall-hello.json",
        include_bytes!("../fixtures/campaigns/nanshan-mall-hello.json"),
    ),
    (
        "yanse-flash-sale.json",
        include_bytes!("../fixtures/campaigns/yanse-flash-sale.json"),
    ),
];

/// Replays the embedded pings and writes one line per presence event and per offer.
pub fn run(mut out: impl Write) -> io::Result<()> {
    let fences = parse_fences(FENCES, LoadMode::Strict)
        .map_err(io::Error::other)?
        .fences;
    let beacons = BeaconRegistry::parse(BEACONS).map_err(io::Error::other)?;
    let mut campaigns = Vec::new();
    for (name, bytes) in CAMPAIGNS {
        campaigns.extend(
            parse_campaigns(bytes, name.ends_with(".yaml"), name).map_err(io::Error::other)?,
        );
    }
    let cfg = EngineConfig::default();
    let index = FenceIndex::new(fences, IndexOptions::default());
    let world = World::new(index, beacons, campaigns, cfg.presence.exit_buffer_m)
        .map_err(io::Error::other)?;
    let world = Arc::new(world);
    let mut engine = Engine::new(world.clone(), cfg);
    for line in PROFILES.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(p @ ProfileRecord::Upsert { .. }) = profile::decode(None, Some(line)) {
            engine.on_profile(p);
        }
    }
    writeln!(
        out,
        "beckon demo: {} fences, {} beacons, {} campaigns, {} profiles (fixtures/); replaying fixtures/pings.jsonl\n",
        world.fences.len(),
        world.beacons.len(),
        world.campaigns.len(),
        PROFILES.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count()
    )?;
    let shanghai = Zone::named("Asia/Shanghai").map_err(io::Error::other)?;
    let clock = |ts: crate::time::Timestamp| {
        let s = shanghai.local(ts).second_of_day;
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    };
    let mut output = Output::default();
    let (mut pings, mut rejected) = (0, 0);
    for (n, line) in PINGS.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        pings += 1;
        match ping::decode(line) {
            Ok(p) => engine.on_ping(&p, &mut output),
            Err(e) => {
                rejected += 1;
                writeln!(out, "  line {:>3}  dead letter: {e}", n + 1)?;
                continue;
            }
        }
        for e in &output.presence {
            let fence = world.fences.fence(e.fence);
            let name = fence.props.name.as_deref().unwrap_or(&fence.id);
            let dwell = match e.event {
                crate::offer::PresenceKind::Enter => String::new(),
                _ => format!(" after {} s", e.dwell_s),
            };
            writeln!(
                out,
                "  {}  {}  {:<5}  {name}{dwell}",
                clock(e.ts),
                e.device_id,
                e.event.name()
            )?;
        }
        for o in &output.offers {
            let c = world.campaigns.get(o.campaign);
            let coupon = o
                .coupon_code(&world)
                .map(|c| format!("  [{c}]"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {}  {}  OFFER  {} ({} on {}): {}{coupon}",
                clock(o.event_ts),
                o.device_id,
                c.id,
                c.name,
                o.trigger.name(),
                world
                    .fences
                    .fence(o.fence)
                    .props
                    .name
                    .as_deref()
                    .unwrap_or_default()
            )?;
        }
        output.clear();
    }
    let stats = engine.stats();
    let offers: u64 = stats.offers.iter().sum();
    let held: Vec<String> = Suppression::ALL
        .iter()
        .zip(stats.suppressed_by_reason())
        .filter(|&(_, n)| n > 0)
        .map(|(r, n)| format!("{}={n}", r.name()))
        .collect();
    writeln!(
        out,
        "\n{pings} pings ({rejected} dead letters), {offers} offers; candidates held back: {}.\n\
         Times are Shanghai local. `beckon replay` runs the same core over any files; the Kafka \
         pipeline (in-process broker, live devices, /metrics) comes with the streaming engine.",
        held.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_shows_visits_offers_and_dead_letters() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in [
            "d-000102  enter  Cha Yun Tea House - Jing'an Experience Store",
            "d-000102  OFFER  chayun-tasting",
            "d-000104  OFFER  jadeharbour-come-back",
            "dead letter: latitude 123.4",
            "7 offers",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
