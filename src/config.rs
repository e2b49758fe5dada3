//! `beckon run`'s configuration: one serde tree with defaults, read from a YAML or JSON file,
//! then overridden by the environment (`BECKON_*`) and by flags, and validated once at start so
//! a bad setting stops the service with the setting's name, before it touches Kafka.
//!
//! Layering is plain data: [`RunConfig::load`] takes the file, the environment and the flags'
//! [`Overrides`] as arguments (the binary passes `std::env::vars()`), so tests need no process
//! environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::engine::EngineConfig;
use crate::fence::{IndexOptions, LoadMode};
use crate::world::{FenceFile, WorldFiles};

/// `BECKON_KAFKA_SECURITY_PROTOCOL=SASL_SSL` sets librdkafka's `security.protocol`.
pub const ENV_KAFKA_PREFIX: &str = "BECKON_KAFKA_";

/// librdkafka settings beckon sets itself: the commit path and delivery guarantees depend on them.
const MANAGED_CLIENT_KEYS: [&str; 9] = [
    "bootstrap.servers",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "auto.offset.reset",
    "transactional.id",
    "isolation.level",
];

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub kafka: KafkaConfig,
    pub world: WorldConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub pipeline: PipelineConfig,
    /// The decision core's tuning (the same sections `beckon replay --config` reads).
    pub engine: EngineConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group every instance of one deployment joins.
    pub group_id: String,
    /// Static group membership (`group.instance.id`): a restart within the session timeout
    /// keeps the partitions instead of rebalancing the group. Unique per instance.
    pub instance_id: Option<String>,
    pub topics: Topics,
    /// librdkafka settings passed through as they are (`security.protocol`, `sasl.*`, `ssl.*`,
    /// `fetch.max.bytes`, …), for the consumer and the producer alike.
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            group_id: "beckon".into(),
            instance_id: None,
            topics: Topics::default(),
            client: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    pub pings: String,
    /// Compacted, with as many partitions as `pings` (co-partitioned); `null`: no profile topic.
    pub profiles: Option<String>,
    pub offers: String,
    pub presence: String,
    pub dead_letters: String,
    /// The state changelog (`crate::changelog`): compacted, co-partitioned with `pings`.
    pub state: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            pings: "beckon.pings".into(),
            profiles: Some("beckon.profiles".into()),
            offers: "beckon.offers".into(),
            presence: "beckon.presence".into(),
            dead_letters: "beckon.pings.dlq".into(),
            state: "beckon.state".into(),
        }
    }
}

/// The files the world is built from, re-read when they change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// GeoJSON FeatureCollection (CONTRACTS §2).
    pub fences: Option<PathBuf>,
    /// Beacon registry (CONTRACTS §3).
    pub beacons: Option<PathBuf>,
    /// A campaign file or a directory of them (JSON or YAML).
    pub campaigns: Option<PathBuf>,
    /// Profiles as JSON Lines, applied before the profiles topic (small deployments and tests;
    /// every partition's engine holds all of them).
    pub profiles: Option<PathBuf>,
    /// How often the files are checked for changes; 0 turns reloading off.
    pub reload_interval_s: u64,
}

impl WorldConfig {
    /// The world's files (after [`RunConfig::load`] validated that the required ones are set).
    pub fn files(&self) -> WorldFiles {
        WorldFiles {
            fences: FenceFile {
                path: self.fences.clone().unwrap_or_default(),
                mode: LoadMode::Strict,
                index: IndexOptions::default(),
            },
            beacons: self.beacons.clone(),
            campaigns: self.campaigns.clone().unwrap_or_default(),
        }
    }
}

impl Default for WorldConfig {
    fn default() -> Self {
        Self {
            fences: None,
            beacons: None,
            campaigns: None,
            profiles: None,
            reload_interval_s: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where `/metrics`, `/livez` and `/readyz` are served.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9464)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `beckon=debug,rdkafka=warn`, …
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most messages taken from the consumer into one batch.
    pub batch_max: usize,
    /// How long a batch waits to fill once it has a message.
    pub batch_linger_ms: u64,
    /// Batches produced but not yet acknowledged by the brokers; when full, consuming waits
    /// (backpressure instead of buffering).
    pub in_flight_batches: usize,
    /// On SIGTERM, how long in-flight output may take to be delivered before giving up
    /// (uncommitted input is then consumed again after the restart).
    pub shutdown_grace_s: u64,
    /// librdkafka's consumer prefetch bound (`queued.max.messages.kbytes`).
    pub prefetch_kbytes: u32,
    /// `at_least_once`, or `exactly_once`: Kafka transactions (README, "Scale-out").
    pub guarantee: Guarantee,
    /// Exactly once: how often the open transaction is committed. Output becomes visible to
    /// `read_committed` consumers only then, so this bounds the added latency.
    pub commit_interval_ms: u64,
}

/// What reaches the output topics when instances crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Everything, with repeats after a crash: byte-identical, so consumers deduplicate by
    /// `offer_id`.
    AtLeastOnce,
    /// Everything once to `read_committed` consumers: each batch's output, state changes and
    /// input offsets commit in one transaction.
    ExactlyOnce,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max: 1024,
            batch_linger_ms: 5,
            in_flight_batches: 16,
            shutdown_grace_s: 20,
            prefetch_kbytes: 16 * 1024,
            guarantee: Guarantee::AtLeastOnce,
            commit_interval_ms: 100,
        }
    }
}

/// Settings given as flags; each wins over the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub brokers: Option<String>,
    pub group_id: Option<String>,
    pub instance_id: Option<String>,
    pub http_listen: Option<SocketAddr>,
    pub fences: Option<PathBuf>,
    pub beacons: Option<PathBuf>,
    pub campaigns: Option<PathBuf>,
    pub profiles: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// librdkafka settings, `key=value`.
    pub client: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("environment variable {var} (for {setting}): {reason}")]
    Env {
        var: String,
        setting: &'static str,
        reason: String,
    },
    #[error("{setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error(
        "kafka.client.{key}: set by beckon itself (it decides the commit path), not configurable"
    )]
    ManagedClientKey { key: String },
}

impl RunConfig {
    /// The file (if any), then the environment, then the flags; validated.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Self, ConfigError> {
        let mut cfg = match file {
            Some(path) => read_file(path)?,
            None => Self::default(),
        };
        cfg.apply_env(env)?;
        cfg.apply(flags);
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (var, value) in env {
            if let Some(key) = var.strip_prefix(ENV_KAFKA_PREFIX) {
                let key = key.to_ascii_lowercase().replace('_', ".");
                self.kafka.client.insert(key, value);
                continue;
            }
            let bad = |setting, reason| ConfigError::Env {
                var: var.clone(),
                setting,
                reason,
            };
            match var.as_str() {
                "BECKON_BROKERS" => self.kafka.brokers = value,
                "BECKON_GROUP_ID" => self.kafka.group_id = value,
                "BECKON_INSTANCE_ID" => self.kafka.instance_id = Some(value),
                "BECKON_HTTP_LISTEN" => {
                    self.http.listen = value
                        .parse()
                        .map_err(|e| bad("http.listen", format!("{value:?}: {e}")))?
                }
                "BECKON_LOG_FORMAT" => {
                    self.log.format = parse_log_format(&value).map_err(|r| bad("log.format", r))?
                }
                "BECKON_LOG_LEVEL" => self.log.level = value,
                "BECKON_FENCES" => self.world.fences = Some(value.into()),
                "BECKON_BEACONS" => self.world.beacons = Some(value.into()),
                "BECKON_CAMPAIGNS" => self.world.campaigns = Some(value.into()),
                "BECKON_PROFILES" => self.world.profiles = Some(value.into()),
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&mut self, o: &Overrides) {
        let set = |slot: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                slot.clone_from(v);
            }
        };
        set(&mut self.kafka.brokers, &o.brokers);
        set(&mut self.kafka.group_id, &o.group_id);
        if o.instance_id.is_some() {
            self.kafka.instance_id.clone_from(&o.instance_id);
        }
        if let Some(a) = o.http_listen {
            self.http.listen = a;
        }
        if let Some(f) = o.log_format {
            self.log.format = f;
        }
        for (slot, v) in [
            (&mut self.world.fences, &o.fences),
            (&mut self.world.beacons, &o.beacons),
            (&mut self.world.campaigns, &o.campaigns),
            (&mut self.world.profiles, &o.profiles),
        ] {
            if v.is_some() {
                slot.clone_from(v);
            }
        }
        for (k, v) in &o.client {
            self.kafka.client.insert(k.clone(), v.clone());
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| {
            Err(ConfigError::Invalid {
                setting,
                reason: reason.into(),
            })
        };
        if self.kafka.brokers.trim().is_empty() {
            return invalid("kafka.brokers", "empty; give host:port[,host:port…]");
        }
        if self.kafka.group_id.trim().is_empty() {
            return invalid("kafka.group_id", "empty");
        }
        if self.kafka.instance_id.as_deref().is_some_and(str::is_empty) {
            return invalid("kafka.instance_id", "empty");
        }
        if let Some(key) = self
            .kafka
            .client
            .keys()
            .find(|k| MANAGED_CLIENT_KEYS.contains(&k.as_str()))
        {
            return Err(ConfigError::ManagedClientKey { key: key.clone() });
        }
        let t = &self.kafka.topics;
        let named = [
            ("kafka.topics.pings", Some(&t.pings)),
            ("kafka.topics.profiles", t.profiles.as_ref()),
            ("kafka.topics.offers", Some(&t.offers)),
            ("kafka.topics.presence", Some(&t.presence)),
            ("kafka.topics.dead_letters", Some(&t.dead_letters)),
            ("kafka.topics.state", Some(&t.state)),
        ];
        for (i, &(setting, topic)) in named.iter().enumerate() {
            let Some(topic) = topic else { continue };
            if topic.is_empty() {
                return invalid(setting, "empty topic name");
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, t)| *t == Some(topic)) {
                return Err(ConfigError::Invalid {
                    setting,
                    reason: format!("{topic:?} is also {other}; every topic must differ"),
                });
            }
        }
        if self.world.fences.is_none() {
            return invalid("world.fences", "required (a GeoJSON fence file)");
        }
        if self.world.campaigns.is_none() {
            return invalid("world.campaigns", "required (a campaign file or directory)");
        }
        let p = &self.pipeline;
        if !(1..=100_000).contains(&p.batch_max) {
            return invalid("pipeline.batch_max", "must be 1..=100000");
        }
        if !(1..=1024).contains(&p.in_flight_batches) {
            return invalid("pipeline.in_flight_batches", "must be 1..=1024");
        }
        if p.batch_linger_ms > 10_000 {
            return invalid("pipeline.batch_linger_ms", "must be at most 10000");
        }
        if p.prefetch_kbytes == 0 {
            return invalid("pipeline.prefetch_kbytes", "must be positive");
        }
        if !(1..=60_000).contains(&p.commit_interval_ms) {
            return invalid("pipeline.commit_interval_ms", "must be 1..=60000");
        }
        if let Err((setting, reason)) = self.engine.validate() {
            return Err(ConfigError::Invalid { setting, reason });
        }
        Ok(())
    }
}

/// A config file as `T`: YAML if it ends in `.yaml` or `.yml`, JSON otherwise (`beckon run
/// --config` and `beckon replay --config` read theirs the same way).
pub fn read_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let parsed = if yaml {
        serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|reason| ConfigError::Parse {
        path: path.to_owned(),
        reason,
    })
}

pub fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not \"text\" or \"json\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const MINIMAL: &str = "world: {fences: f.geojson, campaigns: c/}\n";

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "b.yaml",
            "kafka: {brokers: file:9092, group_id: from-file, client: {linger.ms: '5'}}\n\
             world: {fences: f.geojson, campaigns: c/}\nhttp: {listen: '127.0.0.1:1'}\n",
        );
        let e = env(&[
            ("BECKON_BROKERS", "env:9092"),
            ("BECKON_GROUP_ID", "from-env"),
            ("BECKON_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("UNRELATED", "x"),
        ]);
        let flags = Overrides {
            brokers: Some("flag:9092".into()),
            client: vec![("linger.ms".into(), "20".into())],
            ..Overrides::default()
        };
        let cfg = RunConfig::load(Some(&file), e, &flags).unwrap();
        assert_eq!(cfg.kafka.brokers, "flag:9092");
        assert_eq!(cfg.kafka.group_id, "from-env");
        assert_eq!(cfg.kafka.client["security.protocol"], "SASL_SSL");
        assert_eq!(cfg.kafka.client["linger.ms"], "20");
        assert_eq!(cfg.http.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(cfg.world.fences.as_deref(), Some(Path::new("f.geojson")));
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let none = Overrides::default();
        let err = |text: &str, e: &[(&str, &str)]| {
            let file = write(dir.path(), "c.yaml", text);
            RunConfig::load(Some(&file), env(e), &none)
                .unwrap_err()
                .to_string()
        };
        assert!(err("kafka: {brokerz: x}\n", &[]).contains("unknown field `brokerz`"));
        assert!(err(MINIMAL, &[("BECKON_HTTP_LISTEN", "nope")])
            .contains("BECKON_HTTP_LISTEN (for http.listen)"));
        assert!(err(MINIMAL, &[("BECKON_KAFKA_GROUP_ID", "x")]).contains("kafka.client.group.id"));
        assert!(err("world: {campaigns: c/}\n", &[]).contains("world.fences: required"));
        let same = "kafka: {topics: {offers: beckon.pings}}\nworld: {fences: f, campaigns: c}\n";
        assert!(err(same, &[])
            .contains("kafka.topics.offers: \"beckon.pings\" is also kafka.topics.pings"));
        let batch = "pipeline: {batch_max: 0}\nworld: {fences: f, campaigns: c}\n";
        assert!(err(batch, &[]).contains("pipeline.batch_max"));
        let presence =
            "engine: {presence: {exit_buffer_m: -1}}\nworld: {fences: f, campaigns: c}\n";
        assert!(err(presence, &[]).contains("engine.presence"));
        assert!(err(MINIMAL, &[("BECKON_LOG_FORMAT", "xml")]).contains("\"xml\" is not \"text\""));
    }

    #[test]
    fn the_example_deploy_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/beckon.yaml");
        let cfg = RunConfig::load(Some(&path), [], &Overrides::default()).unwrap();
        assert_eq!(cfg.kafka.topics, Topics::default());
    }
}
