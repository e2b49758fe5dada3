//! What the streaming tests share: brokers (librdkafka's in-process mock cluster, or a real
//! tansu process on loopback), producing and reading topics with an independent client, the
//! generated world, and what `beckon replay` says about the same input.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)] // each test file uses a part

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use beckon::config::{RunConfig, Topics, WorldConfig};
use beckon::engine::EngineConfig;
use beckon::generate::{self, GenSpec};
use beckon::profile::{load_profiles, ProfileRecord};
use beckon::replay::{self, Partitions, Sinks};
use beckon::world::World;

pub const PARTITIONS: i32 = 3;

pub enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Tansu {
        child: Child,
        port: u16,
        _dir: tempfile::TempDir,
    },
    /// Brokers someone else runs (e.g. Apache Kafka from deploy/compose.yaml), by bootstrap.
    External(String),
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The tansu binary: `$TANSU`, `~/.cargo/bin/tansu`, or on the PATH; if none, it is installed
/// from crates.io once (about 12 minutes). The real-broker tier never skips: without tansu it
/// fails saying why.
fn tansu_binary() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = find_tansu() {
        return found;
    }
    eprintln!("tansu not found: installing it (cargo install tansu --version 0.6.0 --features libsql --locked; ~12 min, once)");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "tansu",
            "--version",
            "0.6.0",
            "--features",
            "libsql",
            "--locked",
        ])
        .status();
    match (status, find_tansu()) {
        (Ok(s), Some(found)) if s.success() => found,
        (status, _) => panic!(
            "the real-broker tests need tansu 0.6.0 (a Kafka-compatible broker) and installing it \
             failed ({status:?}): run `cargo install tansu --version 0.6.0 --features libsql \
             --locked`, or set TANSU=/path/to/tansu"
        ),
    }
}

fn find_tansu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("TANSU")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/tansu")))
        .chain(std::env::split_paths(&path).map(|p| p.join("tansu")));
    candidates.into_iter().find(|c| c.is_file())
}

impl Broker {
    pub fn mock() -> Self {
        Broker::Mock(MockCluster::new(1).expect("mock cluster"))
    }

    /// A tansu broker with SQLite storage in a scratch directory, listening on a free port.
    pub fn tansu() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = start_tansu(dir.path(), port);
        Broker::Tansu {
            child,
            port,
            _dir: dir,
        }
    }

    /// Kills the tansu process (SIGKILL: no shutdown of its own) and starts it again on the same
    /// storage and port, as an operator's broker restart.
    pub fn restart(&mut self) {
        let Broker::Tansu { child, port, _dir } = self else {
            panic!("only a tansu broker restarts");
        };
        child.kill().unwrap();
        child.wait().unwrap();
        *child = start_tansu(_dir.path(), *port);
    }
}

/// tansu on `port` with its SQLite database in `dir`, once it listens.
fn start_tansu(dir: &Path, port: u16) -> Child {
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu_binary())
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            // Relative to the working directory: tansu refuses an absolute path here.
            "--storage-engine",
            "sqlite://tansu.db",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl Broker {
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Tansu { port, .. } => format!("127.0.0.1:{port}"),
            Broker::External(bootstrap) => bootstrap.clone(),
        }
    }

    /// The six topics: inputs and state with `PARTITIONS` partitions, profiles and state compacted.
    pub fn create_topics(&self, topics: &Topics) {
        let mut all: Vec<(&str, i32, bool)> = vec![
            (&topics.pings, PARTITIONS, false),
            (&topics.offers, PARTITIONS, false),
            (&topics.presence, PARTITIONS, false),
            (&topics.dead_letters, 1, false),
            (&topics.state, PARTITIONS, true),
        ];
        if let Some(p) = &topics.profiles {
            all.push((p, PARTITIONS, true));
        }
        match self {
            Broker::Mock(m) => {
                for (t, n, _) in all {
                    m.create_topic(t, n, 1).unwrap();
                }
            }
            Broker::Tansu { .. } | Broker::External(_) => {
                let admin: AdminClient<DefaultClientContext> =
                    client(&self.bootstrap()).create().unwrap();
                let new: Vec<NewTopic<'_>> = all
                    .iter()
                    .map(|&(t, n, compact)| {
                        let topic = NewTopic::new(t, n, TopicReplication::Fixed(1));
                        if compact {
                            topic.set("cleanup.policy", "compact")
                        } else {
                            topic
                        }
                    })
                    .collect();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                for r in rt
                    .block_on(admin.create_topics(&new, &AdminOptions::new()))
                    .unwrap()
                {
                    r.unwrap();
                }
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Produces `(key, value)` records (value `None`: a tombstone), waiting for every delivery.
/// Keyed records go where the Java client's default partitioner puts them (murmur2), as
/// `beckon replay --partitions` assumes.
pub fn produce(bootstrap: &str, topic: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = client(bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.max.bytes", "2000000")
        .create()
        .unwrap();
    for (k, v) in records {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic).key(&k[..]);
        if let Some(v) = v {
            r = r.payload(&v[..]);
        }
        let mut r = Some(r);
        while let Some(rec) = r.take() {
            if let Err((e, rec)) = producer.send(rec) {
                assert!(
                    matches!(
                        e,
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull
                        )
                    ),
                    "producing to {topic}: {e}"
                );
                std::thread::sleep(Duration::from_millis(5));
                r = Some(rec);
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

/// The profiles of a JSON Lines file onto the profiles topic, keyed by device.
pub fn produce_profiles(bootstrap: &str, topics: &Topics, profiles: &Path) {
    let topic = topics.profiles.as_ref().expect("a profiles topic");
    produce(bootstrap, topic, &keyed_lines(profiles));
}

/// Waits until the group has committed anything at all: the engine is mid-stream.
pub fn wait_for_a_commit(bootstrap: &str, group: &str, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(bootstrap, group, topic)
        .iter()
        .all(Option::is_none)
    {
        assert!(Instant::now() < deadline, "group {group} never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Produces `records` from a thread, `chunk` at a time with a pause between: a stream still
/// flowing while a test stops and restarts the engine.
pub fn produce_paced(
    bootstrap: &str,
    topic: &str,
    records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    chunk: usize,
    pause: Duration,
) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        for part in records.chunks(chunk) {
            produce(&bootstrap, &topic, part);
            std::thread::sleep(pause);
        }
    })
}

/// Lines of a JSON Lines file as keyed records (the key is the line's `device_id`, as a phone
/// back end keys them; a line without one gets an empty key).
pub fn keyed_lines(path: &Path) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    std::fs::read(path)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let key = serde_json::from_slice::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["device_id"].as_str().map(str::to_owned))
                .unwrap_or_default();
            (key.into_bytes(), Some(l.to_vec()))
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

/// Every record of `topic` up to its high watermarks, partition by partition.
pub fn read_all(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = client(bootstrap)
        .set("group.id", "beckon-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Offset(lo))
                .unwrap();
            ends.insert(p, hi);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut at: BTreeMap<i32, i64> = BTreeMap::new();
    while ends
        .iter()
        .any(|(p, hi)| at.get(p).copied().unwrap_or(-1) + 1 < *hi)
    {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at.insert(m.partition(), m.offset());
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().unwrap_or_default().to_vec(),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                });
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The group's committed offset for each pings partition (`None`: nothing committed).
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = client(bootstrap).set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    (0..PARTITIONS)
        .map(|p| {
            c.find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
                .filter(|&o| o >= 0)
        })
        .collect()
}

/// How many records of `topic` lie below each partition's committed offset (offsets may have
/// gaps, so this counts records rather than subtracting offsets).
pub fn records_below(bootstrap: &str, topic: &str, committed: &[Option<i64>]) -> u64 {
    read_all(bootstrap, topic)
        .iter()
        .filter(|r| committed[r.partition as usize].is_some_and(|c| r.offset < c))
        .count() as u64
}

pub fn high_watermarks(bootstrap: &str, topic: &str) -> Vec<i64> {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap();
    (0..PARTITIONS)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// Waits until the group has committed everything produced to `topic`.
pub fn wait_until_committed(bootstrap: &str, group: &str, topic: &str, within: Duration) {
    let ends = high_watermarks(bootstrap, topic);
    let deadline = Instant::now() + within;
    loop {
        let c = committed(bootstrap, group, topic);
        if c.iter().zip(&ends).all(|(c, &hi)| c.unwrap_or(0) >= hi) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "group {group} committed {c:?} of {ends:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A generated world and walking devices' pings in `dir`.
pub struct Generated {
    pub files: WorldConfig,
    pub profiles: PathBuf,
    pub pings: PathBuf,
}

pub fn generate(dir: &Path, devices: usize, fixes_per_device: usize) -> Generated {
    let spec = GenSpec {
        fences: 500,
        pings: 0,
        seed: 7,
    };
    let create =
        |name: &str| std::io::BufWriter::new(std::fs::File::create(dir.join(name)).unwrap());
    generate::write_fences(&spec, create("fences.geojson")).unwrap();
    serde_json::to_writer(
        create("campaigns.json"),
        &generate::campaign_values(&spec, 30),
    )
    .unwrap();
    generate::write_profiles(&spec, devices, create("profiles.jsonl")).unwrap();
    generate::write_device_pings(
        &spec,
        devices,
        devices * fixes_per_device,
        create("pings.jsonl"),
    )
    .unwrap();
    Generated {
        files: WorldConfig {
            fences: Some(dir.join("fences.geojson")),
            campaigns: Some(dir.join("campaigns.json")),
            reload_interval_s: 0,
            ..WorldConfig::default()
        },
        profiles: dir.join("profiles.jsonl"),
        pings: dir.join("pings.jsonl"),
    }
}

/// The offers `beckon replay --partitions <partitions>` writes for the same files, one JSON
/// object per line.
pub fn replay_offers(
    files: &WorldConfig,
    profiles: &Path,
    pings: &Path,
    partitions: u32,
) -> Vec<String> {
    let cfg = EngineConfig::default();
    let world = World::load(&files.files(), cfg.presence.exit_buffer_m)
        .unwrap()
        .world;
    let count = std::num::NonZeroU32::new(partitions).unwrap();
    let mut engines = Partitions::new(Arc::new(world), cfg, count);
    for (device_id, profile) in load_profiles(profiles).unwrap() {
        engines.on_profile(ProfileRecord::Upsert {
            device_id: device_id.into(),
            profile,
        });
    }
    let mut offers = Vec::new();
    let input = BufReader::new(std::fs::File::open(pings).unwrap());
    replay::run(
        &mut engines,
        input,
        Sinks {
            offers: &mut offers,
            presence: None,
            dead_letters: None,
        },
        false,
    )
    .unwrap();
    offers.lines().map(Result::unwrap).collect()
}

/// The run config for a test: the broker, the generated files, any free HTTP port.
pub fn run_config(bootstrap: &str, group: &str, files: &WorldConfig) -> RunConfig {
    let mut cfg = RunConfig::default();
    cfg.kafka.brokers = bootstrap.into();
    cfg.kafka.group_id = group.into();
    cfg.world = files.clone();
    cfg.http.listen = "127.0.0.1:0".parse().unwrap();
    cfg.pipeline.batch_linger_ms = 2;
    cfg
}

/// One HTTP/1.1 GET over a plain TCP connection: the status line's code and the body.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// Malformed pings, each with the reason it must be dead-lettered for.
pub fn bad_input() -> Vec<(&'static str, Vec<u8>)> {
    let huge = format!(
        r#"{{"type":"location","device_id":"d-big","ts":"2026-11-22T10:00:00Z","lat":31.2,"lon":121.4,"note":"{}"}}"#,
        "x".repeat(70_000)
    );
    vec![
        ("json", br#"{"type":"location","device_id":"d-x","ts":"2026-11"#.to_vec()),
        ("wrong_type", br#"{"type":"location","device_id":"d-x","ts":"2026-11-22T10:00:00Z","lat":"31.2","lon":121.4}"#.to_vec()),
        ("position", br#"{"type":"location","device_id":"d-x","ts":"2026-11-22T10:00:00Z","lat":123.4,"lon":121.4}"#.to_vec()),
        ("missing_field", br#"{"type":"location","device_id":"d-x","lat":31.2,"lon":121.4}"#.to_vec()),
        ("unknown_type", br#"{"type":"wifi","device_id":"d-x","ts":"2026-11-22T10:00:00Z"}"#.to_vec()),
        ("device_id", br#"{"type":"location","device_id":"","ts":"2026-11-22T10:00:00Z","lat":31.2,"lon":121.4}"#.to_vec()),
        ("timestamp", br#"{"type":"location","device_id":"d-x","ts":"yesterday","lat":31.2,"lon":121.4}"#.to_vec()),
        ("out_of_range", br#"{"type":"beacon","device_id":"d-x","ts":"2026-11-22T10:00:00Z","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":70000,"minor":1,"rssi":-60}"#.to_vec()),
        ("uuid", br#"{"type":"beacon","device_id":"d-x","ts":"2026-11-22T10:00:00Z","uuid":"nope","major":1,"minor":1,"rssi":-60}"#.to_vec()),
        ("json", br#"{"type":"location","device_id":"d-x","ts":"2026-11-22T10:00:00Z","lat":NaN,"lon":121.4}"#.to_vec()),
        ("json", br#"{"type":"location","device_id":"d-x","ts":"2026-11-22T10:00:00Z","lat":1e999,"lon":121.4}"#.to_vec()),
        ("json", b"{\"type\":\"location\",\"device_id\":\"d-\xff\xfe\",\"ts\":\"2026-11-22T10:00:00Z\"}".to_vec()),
        ("json", format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes()),
        ("json", Vec::new()),
        ("oversize", huge.into_bytes()),
    ]
}

/// A `beckon run` process and its log lines.
pub struct Process {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

/// How `beckon_run` runs the engine, beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Member {
    /// A static group member of this name (its config file is named for it too).
    pub instance: Option<String>,
    /// Default: beckon's default topic names.
    pub topics: Option<Topics>,
    pub exactly_once: bool,
}

/// `beckon run` with a config file naming the broker and the generated world, JSON logs.
pub fn beckon_run(
    dir: &Path,
    bootstrap: &str,
    group: &str,
    g: &Generated,
    member: &Member,
) -> Process {
    let name = member.instance.as_deref().unwrap_or(group);
    let config = dir.join(format!("{name}.yaml"));
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().unwrap().display().to_string();
    let instance =
        (member.instance.as_ref()).map_or(String::new(), |i| format!(", instance_id: {i}"));
    let topics = member.topics.as_ref().map_or(String::new(), |t| {
        format!(
            ", topics: {{pings: {}, profiles: {}, offers: {}, presence: {}, dead_letters: {}, \
             state: {}}}",
            t.pings,
            t.profiles.as_deref().unwrap_or("null"),
            t.offers,
            t.presence,
            t.dead_letters,
            t.state
        )
    });
    let guarantee = if member.exactly_once {
        "exactly_once"
    } else {
        "at_least_once"
    };
    std::fs::write(
        &config,
        format!(
            "kafka: {{brokers: '{bootstrap}', group_id: {group}{instance}{topics}, \
                     client: {{session.timeout.ms: '6000'}}}}\n\
             world: {{fences: '{}', campaigns: '{}', reload_interval_s: 0}}\n\
             http: {{listen: '127.0.0.1:0'}}\n\
             log: {{format: json, level: info}}\n\
             pipeline: {{batch_max: 256, batch_linger_ms: 2, guarantee: {guarantee}}}\n",
            path(&g.files.fences),
            path(&g.files.campaigns),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beckon run");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    Process { child, lines }
}

impl Process {
    /// SIGTERM, then the process must exit within a minute, successfully, its last log line
    /// its totals.
    pub fn terminate(mut self) -> serde_json::Value {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                break exit;
            }
            if Instant::now() > deadline {
                self.child.kill().unwrap();
                let log: Vec<String> = self.lines.try_iter().collect();
                panic!(
                    "beckon run still running 60 s after SIGTERM:\n{}",
                    log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log: Vec<String> = self.lines.try_iter().collect();
        assert!(
            exit.success(),
            "beckon run exited {exit} after SIGTERM:\n{}",
            log.join("\n")
        );
        log.iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "stopped")
            .unwrap_or_else(|| panic!("no \"stopped\" line in\n{}", log.join("\n")))
    }

    /// SIGKILL: no flush, no commit, no goodbye to the group.
    pub fn kill(mut self) -> Vec<String> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.lines.try_iter().collect()
    }
}

/// The engine in this process (`service::run`, exactly what `beckon run` runs), on a thread.
pub struct Running {
    shutdown: Arc<std::sync::atomic::AtomicBool>,
    pub http: std::net::SocketAddr,
    handle: std::thread::JoinHandle<Result<beckon::stream::Totals, beckon::service::ServiceError>>,
}

/// Starts the engine with `cfg`, once it listens for HTTP.
pub fn start(cfg: &RunConfig) -> Running {
    let shutdown = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let handle = {
        let (cfg, shutdown) = (cfg.clone(), shutdown.clone());
        std::thread::spawn(move || {
            let hooks = beckon::service::Hooks {
                on_listen: Box::new(move |a| tx.send(a).unwrap()),
                signals: false,
            };
            beckon::service::run(&cfg, shutdown, hooks)
        })
    };
    let http = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("engine listening");
    Running {
        shutdown,
        http,
        handle,
    }
}

impl Running {
    /// Shuts down as SIGTERM would; the run's totals.
    pub fn stop(self) -> beckon::stream::Totals {
        self.shutdown
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap().unwrap()
    }

    /// Pings decided so far: the sum of `beckon_pings_total` over its labels.
    pub fn decided(&self) -> u64 {
        self.metric("beckon_pings_total{")
    }

    /// The sum of the engine's `/metrics` series whose lines start with `series`.
    pub fn metric(&self, series: &str) -> u64 {
        let (code, body) = http_get(self.http, "/metrics");
        assert_eq!(code, 200, "/metrics");
        (body.lines())
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}
