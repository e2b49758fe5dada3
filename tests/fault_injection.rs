//! Exactly-once offers under faults, in the spirit of Kafka Streams' EOS system test: three
//! `beckon run` processes in one consumer group (static members) decide 100 000 pings of 10 000
//! devices while they are `kill -9`'d and restarted at random points, and the broker (tansu,
//! SQLite storage, so its topics survive) is killed and restarted once. Then what reached the
//! offers topic must be what `beckon replay --partitions 3` makes of the same pings: the same
//! set of `offer_id`s (zero lost, zero extra), every repeat byte-identical to its first copy,
//! and no campaign over its budget (budgets tightened here so they bind).
//!
//! tansu runs at least once (it has no transactions), so repeats are expected and counted. Against
//! Apache Kafka (`BECKON_TEST_BROKERS=host:port`, fresh topics per run; the broker restart is
//! then the operator's) with `BECKON_TEST_GUARANTEE=exactly_once`, `read_committed` consumers
//! must see no repeat at all, and the suite asserts that (README, "Scale-out").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const INSTANCES: usize = 3;
const KILLS: usize = 12;
const GROUP: &str = "beckon-faults";

#[test]
fn kill_9_and_a_broker_restart_lose_no_offer_and_repeat_none_differently() {
    let dir = tempfile::tempdir().unwrap();
    // Walks have exponentially many fixes, about 11 on average: a little over 100 000 pings.
    let g = generate(dir.path(), 10_000, 11);
    let budgets = tighten_budgets(&g);
    let want: BTreeMap<String, String> =
        replay_offers(&g.files, &g.profiles, &g.pings, PARTITIONS as u32)
            .into_iter()
            .map(|line| (offer_id(&line), line))
            .collect();

    let external = std::env::var("BECKON_TEST_BROKERS").ok();
    let exactly_once = std::env::var("BECKON_TEST_GUARANTEE").is_ok_and(|g| g == "exactly_once");
    let mut broker = external
        .clone()
        .map_or_else(Broker::tansu, Broker::External);
    let bootstrap = broker.bootstrap();
    let mut topics = beckon::config::Topics::default();
    let group = if external.is_some() {
        // A shared cluster keeps earlier runs' topics and groups: start from none of them.
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        for t in [
            &mut topics.pings,
            &mut topics.offers,
            &mut topics.presence,
            &mut topics.dead_letters,
            &mut topics.state,
        ] {
            *t = format!("{t}.{run}");
        }
        topics.profiles = Some(format!("beckon.profiles.{run}"));
        format!("{GROUP}-{run}")
    } else {
        GROUP.to_owned()
    };
    broker.create_topics(&topics);
    produce_profiles(&bootstrap, &topics, &g.profiles);
    let pings = keyed_lines(&g.pings);
    assert!(pings.len() >= 100_000);
    // Still producing while instances die: kills land mid-stream.
    let producing = produce_paced(
        &bootstrap,
        &topics.pings,
        pings,
        1_000,
        Duration::from_millis(400),
    );

    let name = |i: usize| format!("beckon-{i}");
    let start = |i: usize| {
        let member = Member {
            // tansu 0.6 never expires a static member (it skips the session check for members
            // with a group.instance.id), so a killed one would hold its partitions for good.
            instance: external.is_some().then(|| name(i)),
            topics: Some(topics.clone()),
            exactly_once,
        };
        beckon_run(dir.path(), &bootstrap, &group, &g, &member)
    };
    let mut running: Vec<Option<Process>> = (0..INSTANCES).map(|i| Some(start(i))).collect();
    let seed = std::env::var("BECKON_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_beec);
    let mut rng = XorShift(seed);
    let began = Instant::now();
    // Which instances decide pings now, from their logs.
    let mut deciding = [false; INSTANCES];
    for kill in 1..=KILLS {
        // The victim is one that decides, so the kill lands between output, changelog and
        // commit. (One may have no partition at all: three members, dead ones not yet expired.)
        let waiting = Instant::now() + Duration::from_secs(120);
        let candidates = loop {
            for (p, now) in running.iter().zip(&mut deciding) {
                for line in p.as_ref().unwrap().lines.try_iter() {
                    if line.contains("deciding pings") {
                        *now = true;
                    } else if line.contains("partitions revoked") {
                        *now = false;
                    }
                }
            }
            let c: Vec<usize> = (0..INSTANCES).filter(|&i| deciding[i]).collect();
            if !c.is_empty() {
                break c;
            }
            assert!(Instant::now() < waiting, "no instance decides pings");
            std::thread::sleep(Duration::from_millis(50));
        };
        let i = candidates[rng.below(candidates.len() as u64) as usize];
        std::thread::sleep(Duration::from_millis(rng.below(1_500)));
        running[i].take().unwrap().kill();
        deciding[i] = false;
        std::thread::sleep(Duration::from_millis(rng.below(1_500)));
        let broker_restart = kill == KILLS / 2 && external.is_none();
        if broker_restart {
            broker.restart();
        }
        running[i] = Some(start(i));
        eprintln!(
            "fault {kill}: killed and restarted {} at {:.1}s{}",
            name(i),
            began.elapsed().as_secs_f64(),
            if broker_restart {
                ", broker restarted"
            } else {
                ""
            }
        );
    }
    producing.join().unwrap();
    let settled = std::panic::catch_unwind(|| {
        wait_until_committed(&bootstrap, &group, &topics.pings, Duration::from_secs(180))
    });
    if let Err(stuck) = settled {
        for (i, p) in running.iter().enumerate() {
            let log: Vec<String> = p.as_ref().unwrap().lines.try_iter().collect();
            eprintln!(
                "{}'s last log lines:\n{}",
                name(i),
                log[log.len().saturating_sub(40)..].join("\n")
            );
        }
        std::panic::resume_unwind(stuck);
    }
    for p in running.into_iter().flatten() {
        p.terminate();
    }

    let offers = read_all(&bootstrap, &topics.offers);
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    let (mut repeats, mut differing) = (0, Vec::new());
    for r in &offers {
        let line = String::from_utf8(r.value.clone()).unwrap();
        let id = offer_id(&line);
        match first.get(&id) {
            None => {
                first.insert(id, line);
            }
            Some(seen) => {
                repeats += 1;
                if *seen != line {
                    differing.push(id);
                }
            }
        }
    }
    let lost: Vec<&String> = want.keys().filter(|id| !first.contains_key(*id)).collect();
    let extra: Vec<&String> = first.keys().filter(|id| !want.contains_key(*id)).collect();
    let changed: Vec<&String> = (want.iter())
        .filter(|(id, line)| first.get(*id).is_some_and(|l| l != *line))
        .map(|(id, _)| id)
        .collect();
    let mut spent: BTreeMap<String, u64> = BTreeMap::new();
    for line in first.values() {
        let v: Value = serde_json::from_str(line).unwrap();
        *spent
            .entry(v["campaign_id"].as_str().unwrap().into())
            .or_default() += 1;
    }
    eprintln!(
        "replay: {} offers; offers topic: {} records, {} distinct offer ids, {} repeats \
         ({} not byte-identical); lost {}, extra {}, changed {}; budgets (spent/total): {:?}",
        want.len(),
        offers.len(),
        first.len(),
        repeats,
        differing.len(),
        lost.len(),
        extra.len(),
        changed.len(),
        budgets
            .iter()
            .map(|(c, total)| format!("{c} {}/{total}", spent.get(c).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
    );
    assert!(want.len() > 1_000, "the day makes offers ({})", want.len());
    assert!(lost.is_empty(), "lost offers: {lost:?}");
    assert!(extra.is_empty(), "offers replay does not make: {extra:?}");
    assert!(
        changed.is_empty(),
        "offers that differ from replay's: {changed:?}"
    );
    assert!(differing.is_empty(), "repeats that differ: {differing:?}");
    if exactly_once {
        assert_eq!(repeats, 0, "read_committed sees every offer once");
    }
    for (campaign, total) in &budgets {
        let n = spent.get(campaign).copied().unwrap_or(0);
        assert!(
            n <= *total,
            "{campaign}: {n} offers over a budget of {total}"
        );
    }
}

fn offer_id(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["offer_id"].as_str().unwrap().to_owned()
}

/// Gives the three campaigns with the most offers a total budget of half of them, so budgets
/// bind (and a budget exceeded under faults would show); returns those budgets by campaign.
fn tighten_budgets(g: &Generated) -> BTreeMap<String, u64> {
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for line in replay_offers(&g.files, &g.profiles, &g.pings, PARTITIONS as u32) {
        let v: Value = serde_json::from_str(&line).unwrap();
        *per.entry(v["campaign_id"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let mut busiest: Vec<(u64, String)> = per.into_iter().map(|(c, n)| (n, c)).collect();
    busiest.sort_unstable_by(|a, b| b.cmp(a));
    let path = g.files.campaigns.as_ref().unwrap();
    let mut campaigns: Vec<Value> = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut budgets = BTreeMap::new();
    for (n, id) in busiest.into_iter().take(3) {
        let total = (n / 2).max(3);
        let c = campaigns
            .iter_mut()
            .find(|c| c["id"] == id.as_str())
            .unwrap();
        c["budget"] = serde_json::json!({ "total": total });
        budgets.insert(id, total);
    }
    std::fs::write(path, serde_json::to_vec(&campaigns).unwrap()).unwrap();
    budgets
}

/// Fault timing that a seed reproduces (`BECKON_FAULT_SEED`).
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // xorshift64*: the multiply mixes the low bits, which `% n` keeps.
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % n
    }
}
