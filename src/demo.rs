//! `beckon demo`, the embedded default: no Kafka installed, one command. An in-process
//! Kafka-protocol broker (librdkafka's mock cluster), the fixtures, simulated devices (the
//! fixture stories, produced live as phones would send them), the real streaming engine
//! (`beckon run`'s pipeline, consuming and producing over the Kafka protocol), and the offers
//! and presence events shown as they arrive on their topics, with the metrics URL printed. It
//! ends by itself once the devices are done and the output has settled, or on Ctrl-C.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use crate::config::{RunConfig, Topics};
use crate::local_time::Zone;
use crate::service::{self, Hooks};
use crate::time::Timestamp;
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

/// How the demo runs; [`DemoOptions::default`] is what `beckon demo` does.
pub struct DemoOptions {
    /// Pause between two simulated pings.
    pub pace: Duration,
    /// The demo ends at the latest after this long.
    pub limit: Duration,
    /// How long the engine keeps serving (e.g. `/metrics`) after the output has settled.
    pub linger: Duration,
    /// Where `/metrics` is served (port 0: any free port).
    pub http: SocketAddr,
    /// Ends the demo early (Ctrl-C).
    pub stop: Arc<AtomicBool>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            pace: Duration::from_millis(40),
            limit: Duration::from_secs(90),
            linger: Duration::ZERO,
            http: SocketAddr::from(([127, 0, 0, 1], 0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("writing the fixtures to {path}: {source}")]
    Fixtures { path: PathBuf, source: io::Error },
    #[error("the in-process Kafka broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the engine: {0}")]
    Service(#[from] service::ServiceError),
    #[error("output: {0}")]
    Io(#[from] io::Error),
}

/// Partitions of the demo's pings and profiles topics: the engine runs one core per partition.
const PARTITIONS: i32 = 3;

/// Runs the demo, writing what happens to `out` as it happens.
pub fn run(mut out: impl Write, opts: &DemoOptions) -> Result<(), DemoError> {
    let dir = std::env::temp_dir().join(format!("beckon-demo-{}", std::process::id()));
    let result = write_fixtures(&dir).and_then(|cfg_world| {
        let broker = MockCluster::new(1)?;
        let topics = Topics::default();
        for t in [
            &topics.pings,
            &topics.offers,
            &topics.presence,
            &topics.state,
        ]
        .into_iter()
        .chain(&topics.profiles)
        {
            broker.create_topic(t, PARTITIONS, 1)?;
        }
        broker.create_topic(&topics.dead_letters, 1, 1)?;
        let mut cfg = RunConfig::default();
        cfg.kafka.brokers = broker.bootstrap_servers();
        cfg.kafka.group_id = "beckon-demo".into();
        cfg.world = cfg_world;
        cfg.world.reload_interval_s = 0;
        cfg.http.listen = opts.http;
        cfg.pipeline.batch_linger_ms = 2;
        show(&mut out, &cfg, opts)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The embedded fixtures as files, since the engine reads its world from files.
fn write_fixtures(dir: &Path) -> Result<crate::config::WorldConfig, DemoError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map(|()| path.clone())
            .map_err(|source| DemoError::Fixtures { path, source })
    };
    std::fs::create_dir_all(dir.join("campaigns")).map_err(|source| DemoError::Fixtures {
        path: dir.to_owned(),
        source,
    })?;
    for (name, bytes) in CAMPAIGNS {
        write(&format!("campaigns/{name}"), bytes)?;
    }
    Ok(crate::config::WorldConfig {
        fences: Some(write("fences.geojson", FENCES)?),
        beacons: Some(write("beacons.json", BEACONS)?),
        campaigns: Some(dir.join("campaigns")),
        ..crate::config::WorldConfig::default()
    })
}

/// An offer or presence event as it arrives on its topic (the fields shown).
#[derive(Deserialize)]
struct Arrived {
    device_id: String,
    #[serde(default)]
    campaign_id: String,
    #[serde(default)]
    trigger: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    coupon_code: Option<String>,
    #[serde(default)]
    store_id: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    dwell_s: u64,
    #[serde(alias = "event_ts")]
    ts: String,
}

fn show(out: &mut impl Write, cfg: &RunConfig, opts: &DemoOptions) -> Result<(), DemoError> {
    let shutdown = Arc::new(AtomicBool::new(false));
    let (listening_tx, listening) = mpsc::channel();
    let engine = {
        let (cfg, shutdown) = (cfg.clone(), shutdown.clone());
        std::thread::spawn(move || {
            let hooks = Hooks {
                on_listen: Box::new(move |addr| {
                    let _ = listening_tx.send(addr);
                }),
                signals: false,
            };
            service::run(&cfg, shutdown, hooks)
        })
    };
    let Ok(addr) = listening.recv_timeout(Duration::from_secs(30)) else {
        shutdown.store(true, Ordering::Relaxed);
        return match engine.join() {
            Ok(r) => r.map(drop).map_err(DemoError::from),
            Err(_) => Err(io::Error::other("the engine thread panicked").into()),
        };
    };
    let topics = &cfg.kafka.topics;
    writeln!(
        out,
        "beckon demo: an in-process Kafka broker at {}, topics {}, {} (×{PARTITIONS} partitions) → \
         {}, {}, {}\n  the engine serves metrics at http://{addr}/metrics\n  simulated devices: \
         the fixture stories (fixtures/pings.jsonl), {} pings, with profiles first\n",
        cfg.kafka.brokers,
        topics.pings,
        topics.profiles.as_deref().unwrap_or("-"),
        topics.offers,
        topics.presence,
        topics.dead_letters,
        PINGS.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(),
    )?;
    let devices = {
        let (cfg, pace, stop) = (cfg.clone(), opts.pace, opts.stop.clone());
        std::thread::spawn(move || simulate(&cfg, pace, &stop))
    };
    // The engine's group id, to read how far it committed (assigning partitions by hand does
    // not join the group, and this consumer never commits).
    let watch: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("group.id", &cfg.kafka.group_id)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topics.offers, p, Offset::Beginning)?;
        tpl.add_partition_offset(&topics.presence, p, Offset::Beginning)?;
    }
    tpl.add_partition_offset(&topics.dead_letters, 0, Offset::Beginning)?;
    watch.assign(&tpl)?;
    let names = fence_names();
    let shanghai = Zone::named("Asia/Shanghai").map_err(io::Error::other)?;
    let clock = |ts: &str| {
        Timestamp::parse(ts).map_or_else(
            |_| String::new(),
            |ts| {
                let s = shanghai.local(ts).second_of_day;
                format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
            },
        )
    };
    let started = Instant::now();
    let mut quiet_since = Instant::now();
    let (mut offers, mut letters) = (0, 0);
    // Once the engine has committed every ping (it commits only what was delivered), the
    // output topics' ends at that moment are everything it will say: read up to them.
    let mut ends: Option<TopicPartitionList> = None;
    let mut checked = Instant::now();
    loop {
        let stop = opts.stop.load(Ordering::Relaxed) || started.elapsed() > opts.limit;
        if ends.is_none() && devices.is_finished() && checked.elapsed() > Duration::from_millis(300)
        {
            checked = Instant::now();
            if engine_caught_up(&watch, &topics.pings)? {
                let mut e = TopicPartitionList::new();
                for (t, p) in tpl.elements().iter().map(|e| (e.topic(), e.partition())) {
                    let (_, hi) = watch.fetch_watermarks(t, p, Duration::from_secs(5))?;
                    e.add_partition_offset(t, p, Offset::Offset(hi))?;
                }
                ends = Some(e);
                quiet_since = Instant::now();
            }
        }
        let settled = match &ends {
            Some(e) => read_to(&watch, e)? && quiet_since.elapsed() >= opts.linger,
            None => false,
        };
        if stop || settled {
            break;
        }
        let Some(Ok(m)) = watch.poll(Duration::from_millis(100)) else {
            continue;
        };
        quiet_since = Instant::now();
        let payload = m.payload().unwrap_or_default();
        if m.topic() == topics.dead_letters {
            letters += 1;
            let reason = m
                .headers()
                .and_then(|h| {
                    use rdkafka::message::Headers;
                    h.iter()
                        .find(|h| h.key == "__connect.errors.exception.message")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_default();
            writeln!(out, "  {:>8}  dead letter: {reason}", "")?;
            continue;
        }
        let Ok(a) = serde_json::from_slice::<Arrived>(payload) else {
            continue;
        };
        if m.topic() == topics.offers {
            offers += 1;
            let coupon = a
                .coupon_code
                .map(|c| format!("  [{c}]"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {}  {}  OFFER  {} ({} at {}): {}{coupon}",
                clock(&a.ts),
                a.device_id,
                a.campaign_id,
                a.trigger,
                a.store_id,
                a.title
            )?;
        } else {
            let fence = serde_json::from_slice::<serde_json::Value>(payload)
                .ok()
                .and_then(|v| v["fence_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let name = names
                .iter()
                .find(|(id, _)| *id == fence)
                .map_or(fence.as_str(), |(_, n)| n.as_str());
            let dwell = if a.event == "enter" {
                String::new()
            } else {
                format!(" after {} s", a.dwell_s)
            };
            writeln!(
                out,
                "  {}  {}  {:<5}  {name}{dwell}",
                clock(&a.ts),
                a.device_id,
                a.event
            )?;
        }
        out.flush()?;
    }
    shutdown.store(true, Ordering::Relaxed);
    opts.stop.store(true, Ordering::Relaxed);
    let sent = devices.join().unwrap_or(Ok(0))?;
    let totals = match engine.join() {
        Ok(r) => r?,
        Err(_) => return Err(io::Error::other("the engine thread panicked").into()),
    };
    writeln!(
        out,
        "\n{sent} pings sent by the simulated devices; the engine decided {} ({} dead letters) \
         and emitted {offers} offers and {} presence events ({letters} dead letters shown).\n\
         Times are Shanghai local. `beckon run` is this engine on a real cluster; `beckon replay` \
         runs the same core over files.",
        totals.pings, totals.dead_letters, totals.presence
    )?;
    Ok(())
}

/// Whether `watch` has read every output partition up to `ends`.
fn read_to(watch: &BaseConsumer, ends: &TopicPartitionList) -> Result<bool, DemoError> {
    let at = watch.position()?;
    Ok(ends.elements().iter().all(|e| {
        let end = e.offset().to_raw().unwrap_or(0);
        let pos = at
            .find_partition(e.topic(), e.partition())
            .and_then(|p| p.offset().to_raw())
            .unwrap_or(0);
        end == 0 || pos >= end
    }))
}

/// Whether the engine's group has committed every ping produced so far.
fn engine_caught_up(watch: &BaseConsumer, pings: &str) -> Result<bool, DemoError> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(pings, p);
    }
    let committed = watch.committed_offsets(tpl, Duration::from_secs(5))?;
    for p in 0..PARTITIONS {
        let (_, hi) = watch.fetch_watermarks(pings, p, Duration::from_secs(5))?;
        let at = committed
            .find_partition(pings, p)
            .and_then(|e| e.offset().to_raw())
            .unwrap_or(0);
        if at < hi {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The simulated devices: profiles first (the engine reads them before deciding pings), then
/// the fixture pings in order, keyed by device as phones' back ends would send them and
/// partitioned as the Java client does (murmur2), so `beckon replay --partitions` reproduces
/// the demo.
fn simulate(cfg: &RunConfig, pace: Duration, stop: &AtomicBool) -> Result<usize, DemoError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.brokers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create()?;
    let topics = &cfg.kafka.topics;
    let key_of = |line: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["device_id"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let send = |topic: &str, line: &[u8]| -> Result<(), DemoError> {
        let key = key_of(line);
        producer
            .send(BaseRecord::to(topic).key(key.as_bytes()).payload(line))
            .map_err(|(e, _)| DemoError::Kafka(e))
    };
    if let Some(t) = &topics.profiles {
        for line in PROFILES.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            send(t, line)?;
        }
        producer.flush(Duration::from_secs(10))?;
    }
    let mut sent = 0;
    for line in PINGS.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        send(&topics.pings, line)?;
        sent += 1;
        std::thread::sleep(pace);
    }
    producer.flush(Duration::from_secs(10))?;
    Ok(sent)
}

/// Fence ids and display names from the embedded fences.
fn fence_names() -> Vec<(String, String)> {
    crate::fence::parse_fences(FENCES, crate::fence::LoadMode::Strict)
        .map(|r| {
            r.fences
                .into_iter()
                .map(|f| {
                    let name = f.props.name.clone().unwrap_or_else(|| f.id.clone());
                    (f.id, name)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_shows_visits_offers_and_dead_letters_over_kafka() {
        let mut out = Vec::new();
        let opts = DemoOptions {
            pace: Duration::from_millis(1),
            ..DemoOptions::default()
        };
        run(&mut out, &opts).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in [
            "the engine serves metrics at http://127.0.0.1:",
            "d-000102  enter  Cha Yun Tea House - Jing'an Experience Store",
            "d-000102  OFFER  chayun-tasting",
            "d-000104  OFFER  jadeharbour-come-back",
            "dead letter: latitude 123.4",
            "emitted 7 offers",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
