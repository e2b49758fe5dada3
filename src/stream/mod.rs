//! The streaming pipeline of `beckon run`: a Kafka consumer group on the pings and profiles
//! topics, one decision core per pings partition (device state is per device, and producers key
//! pings by device), and an idempotent producer for offers, presence events and dead letters.
//!
//! One thread runs the loop — poll a batch, decide, produce — because the core is synchronous
//! and the partitions' engines are owned, not shared; librdkafka's own threads do the network.
//! At least once: a batch's input offsets are stored for commit only after everything it
//! produced was acknowledged ([`delivery`]); offer ids are deterministic, so a batch consumed
//! twice after a crash yields the same offers, which consumers deduplicate. Bounded everywhere:
//! librdkafka's prefetch (`queued.max.messages.kbytes`), the producer queue (a full queue means
//! wait), and the batches in flight.
//!
//! Profiles (§5) are a table, not a stream: they are never committed, so each assignment reads
//! the partition's profiles from the beginning, and the co-partitioned pings partition is paused
//! until they are caught up (a device's consent is known before its first ping is decided).

mod dead_letter;
pub mod delivery;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{KafkaConfig, PipelineConfig, Topics};
use crate::engine::{Engine, EngineConfig};
use crate::metrics::{CampaignCounters, Metrics, Reported};
use crate::offer::Output;
use crate::ping::{self, Ping};
use crate::profile::{self, Profile, ProfileRecord};
use crate::world::World;

use delivery::{Deliveries, Ticket, Tracker};

/// What stopped the pipeline, when it did not stop because it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("{0} (nothing after it was committed; the next start consumes it again)")]
    Delivery(String),
}

/// What one run of the pipeline did (logged at shutdown; the tests account for every ping).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Ping messages consumed and decided (valid ones) or dead-lettered (the rest).
    pub pings: u64,
    pub dead_letters: u64,
    pub profiles: u64,
    pub offers: u64,
    pub presence: u64,
    /// Messages of revoked partitions dropped before they were decided (the new owner
    /// consumes them again).
    pub handed_over: u64,
}

/// Everything the pipeline needs that outlives it: the world it starts with, the profiles file,
/// later worlds from the reloader, metrics, and the shutdown and readiness flags.
pub struct Inputs {
    pub world: Arc<World>,
    pub profiles: Arc<Vec<(String, Profile)>>,
    pub reloads: Receiver<Arc<World>>,
    pub metrics: Arc<Metrics>,
    pub shutdown: Arc<AtomicBool>,
    pub ready: Arc<AtomicBool>,
}

/// One pings partition's decision core, and whether its profiles are still being read.
struct Shard {
    engine: Engine,
    reported: Reported,
    /// The profiles partition's high watermark at assignment: pings wait until it is reached.
    bootstrap_until: Option<i64>,
}

enum Event {
    Assigned(Vec<(i32, Option<i64>)>),
    Revoked(Vec<i32>),
}

/// State the consumer's callbacks share with the loop (callbacks run inside `poll`, on the
/// loop's own thread, so the locks never contend).
struct Flow {
    topics: Topics,
    producer: ThreadedProducer<Deliveries>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    events: Mutex<Vec<Event>>,
    grace: Duration,
}

struct Ctx(Arc<Flow>);

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        if let Some(t) = s.topics.get(&self.0.topics.pings) {
            for (&p, part) in &t.partitions {
                if p >= 0 && part.consumer_lag >= 0 {
                    self.0.metrics.set_lag(p, part.consumer_lag);
                }
            }
        }
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        // Hand over cleanly: what was decided is delivered and committed before another
        // instance starts on these partitions.
        let flow = &self.0;
        if let Err(e) = flow.producer.flush(flow.grace) {
            tracing::warn!("flushing output before a rebalance: {e}");
        }
        if let Err(e) = store_delivered(consumer, flow) {
            // The loop sees the same failure and stops; nothing after it is committed.
            tracing::error!("before a rebalance: {e}");
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!("commit before a rebalance: {e}");
        }
        let revoked = pings_partitions(tpl, &flow.topics.pings);
        tracing::info!(partitions = ?revoked, "partitions revoked");
        flow.push(Event::Revoked(revoked));
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let flow = &self.0;
        let mut assigned = Vec::new();
        let mut paused = TopicPartitionList::new();
        for p in pings_partitions(tpl, &flow.topics.pings) {
            let until = flow.topics.profiles.as_deref().and_then(|topic| {
                match consumer.fetch_watermarks(topic, p, Duration::from_secs(10)) {
                    Ok((lo, hi)) if hi > lo => Some(hi),
                    Ok(_) => None,
                    Err(e) => {
                        // Unknown: wait for the first profile message's offset check instead.
                        tracing::warn!(partition = p, "profiles watermarks: {e}");
                        Some(i64::MAX)
                    }
                }
            });
            if until.is_some() {
                paused.add_partition(&flow.topics.pings, p);
            }
            assigned.push((p, until));
        }
        if paused.count() > 0 {
            if let Err(e) = consumer.pause(&paused) {
                tracing::warn!("pausing pings while profiles load: {e}");
            }
        }
        tracing::info!(partitions = ?assigned.iter().map(|a| a.0).collect::<Vec<_>>(), "partitions assigned");
        flow.push(Event::Assigned(assigned));
    }
}

impl Flow {
    fn push(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Hands one message to the producer, waiting while its queue is full.
    fn send(
        &self,
        topic: &str,
        key: &[u8],
        value: &[u8],
        headers: Option<OwnedHeaders>,
        t: Ticket,
    ) {
        let opaque = self.tracker.produced(t);
        let mut record = BaseRecord::with_opaque_to(topic, opaque)
            .key(key)
            .payload(value);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // The producer's own thread drains the queue; backpressure, not a drop.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, r)) => {
                    // Not retryable (e.g. a message larger than the broker accepts): fail
                    // the batch, so its input is never committed.
                    self.tracker.fail(format!("producing to {}: {e}", r.topic));
                    return;
                }
            }
        }
    }
}

fn pings_partitions(tpl: &TopicPartitionList, pings: &str) -> Vec<i32> {
    tpl.elements_for_topic(pings)
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Stores the offsets of delivered batches for the next commit.
fn store_delivered(consumer: &BaseConsumer<Ctx>, flow: &Flow) -> Result<(), StreamError> {
    let offsets = flow
        .tracker
        .take_delivered()
        .map_err(StreamError::Delivery)?;
    if offsets.is_empty() {
        return Ok(());
    }
    let mut latest = BTreeMap::new();
    for (p, next) in offsets {
        latest.insert(p, next);
    }
    let mut tpl = TopicPartitionList::new();
    for (p, next) in latest {
        tpl.add_partition_offset(&flow.topics.pings, p, Offset::Offset(next))?;
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // A partition revoked meanwhile: its new owner consumes from the last commit.
        tracing::debug!("storing offsets: {e}");
    }
    Ok(())
}

fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &kafka.client {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &kafka.brokers);
    c
}

/// Runs until `shutdown` is set (then drains, flushes and commits) or a fatal error.
pub fn run(
    kafka: &KafkaConfig,
    pipeline: &PipelineConfig,
    engine_cfg: &EngineConfig,
    inputs: Inputs,
) -> Result<Totals, StreamError> {
    let metrics = inputs.metrics.clone();
    let tracker = Arc::new(Tracker::new(
        pipeline.in_flight_batches,
        metrics.latency.clone(),
    ));
    let producer: ThreadedProducer<Deliveries> = client_config(kafka)
        .set("enable.idempotence", "true")
        .create_with_context(Deliveries(tracker.clone()))?;
    let flow = Arc::new(Flow {
        topics: kafka.topics.clone(),
        producer,
        tracker,
        metrics: metrics.clone(),
        events: Mutex::default(),
        grace: Duration::from_secs(pipeline.shutdown_grace_s),
    });
    let mut cc = client_config(kafka);
    cc.set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "queued.max.messages.kbytes",
            pipeline.prefetch_kbytes.to_string(),
        );
    if !kafka.client.contains_key("statistics.interval.ms") {
        cc.set("statistics.interval.ms", "5000");
    }
    if let Some(id) = &kafka.instance_id {
        cc.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<Ctx> = cc.create_with_context(Ctx(flow.clone()))?;
    check_topics(&consumer, &kafka.topics)?;
    let mut subscribed = vec![kafka.topics.pings.as_str()];
    subscribed.extend(kafka.topics.profiles.as_deref());
    consumer.subscribe(&subscribed)?;

    let mut pipe = Pipeline {
        flow,
        cfg: pipeline.clone(),
        engine_cfg: engine_cfg.clone(),
        world: inputs.world.clone(),
        counters: metrics.world(&inputs.world),
        profiles: inputs.profiles,
        shards: BTreeMap::new(),
        totals: Totals::default(),
        out: Output::default(),
        buf: Vec::new(),
    };
    let result = pipe.run_until(&consumer, &inputs.shutdown, &inputs.ready, &inputs.reloads);
    inputs.ready.store(false, Ordering::Relaxed);
    let drained = pipe.drain(&consumer);
    result.and(drained).map(|()| pipe.totals)
}

/// Refuses to start on missing topics, or profiles not co-partitioned with pings.
fn check_topics(consumer: &BaseConsumer<Ctx>, topics: &Topics) -> Result<(), StreamError> {
    let md = consumer.fetch_metadata(None, Duration::from_secs(30))?;
    let partitions = |name: &str| {
        md.topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len())
    };
    let missing = |topic: &str| StreamError::Topic {
        topic: topic.into(),
        reason: "does not exist (beckon does not create topics; see deploy/)".into(),
    };
    let pings = partitions(&topics.pings).ok_or_else(|| missing(&topics.pings))?;
    for t in [&topics.offers, &topics.presence, &topics.dead_letters] {
        partitions(t).ok_or_else(|| missing(t))?;
    }
    if let Some(p) = &topics.profiles {
        let n = partitions(p).ok_or_else(|| missing(p))?;
        if n != pings {
            return Err(StreamError::Topic {
                topic: p.clone(),
                reason: format!(
                    "has {n} partitions but {} has {pings}: profiles must be co-partitioned \
                     with pings (same count, keyed by device_id) so each device's profile \
                     reaches the instance deciding its pings",
                    topics.pings
                ),
            });
        }
    }
    Ok(())
}

/// The loop's state; the consumer is passed alongside, as the batch's messages borrow it.
struct Pipeline {
    flow: Arc<Flow>,
    cfg: PipelineConfig,
    engine_cfg: EngineConfig,
    world: Arc<World>,
    counters: CampaignCounters,
    profiles: Arc<Vec<(String, Profile)>>,
    shards: BTreeMap<i32, Shard>,
    totals: Totals,
    out: Output,
    buf: Vec<u8>,
}

impl Pipeline {
    fn run_until<'c>(
        &mut self,
        consumer: &'c BaseConsumer<Ctx>,
        shutdown: &AtomicBool,
        ready: &AtomicBool,
        reloads: &Receiver<Arc<World>>,
    ) -> Result<(), StreamError> {
        let linger = Duration::from_millis(self.cfg.batch_linger_ms);
        let mut batch: Vec<BorrowedMessage<'c>> = Vec::with_capacity(self.cfg.batch_max);
        while !shutdown.load(Ordering::Relaxed) {
            store_delivered(consumer, &self.flow)?;
            if !self.flow.tracker.wait_for_room(Duration::from_millis(100)) {
                // No polling meanwhile: a message polled now would have no batch to go to.
                // (librdkafka keeps the group session alive on its own threads; only
                // `max.poll.interval.ms` of output stalled would cost the assignment.)
                continue;
            }
            if let Ok(world) = reloads.try_recv() {
                self.replace_world(world);
            }
            // Collect a batch: wait for a first message, then take what arrives within the
            // linger, up to the batch size.
            let mut deadline: Option<Instant> = None;
            while batch.len() < self.cfg.batch_max {
                let wait = match deadline {
                    None => Duration::from_millis(100),
                    Some(d) => d.saturating_duration_since(Instant::now()),
                };
                let polled = consumer.poll(wait);
                let events = self.flow.take_events();
                if !events.is_empty() {
                    self.apply(events, &mut batch);
                    ready.store(!self.shards.is_empty(), Ordering::Relaxed);
                }
                match polled {
                    Some(Ok(m)) => {
                        batch.push(m);
                        deadline.get_or_insert_with(|| Instant::now() + linger);
                    }
                    Some(Err(e)) => tracing::warn!("consumer: {e}"),
                    None if deadline.is_none() => break,
                    None => {}
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
            // Messages of partitions revoked while the batch filled were dropped by `apply`.
            self.decide(consumer, &batch);
            batch.clear();
            self.check_bootstraps(consumer)?;
        }
        Ok(())
    }

    /// Assignment changes: engines for new partitions, none for revoked ones.
    fn apply(&mut self, events: Vec<Event>, batch: &mut Vec<BorrowedMessage<'_>>) {
        for e in events {
            match e {
                Event::Revoked(ps) => {
                    let before = batch.len();
                    batch.retain(|m| !ps.contains(&m.partition()));
                    self.totals.handed_over += (before - batch.len()) as u64;
                    for p in ps {
                        self.shards.remove(&p);
                        self.flow.metrics.forget_partition(p);
                    }
                }
                Event::Assigned(ps) => {
                    for (p, until) in ps {
                        let mut engine = Engine::new(self.world.clone(), self.engine_cfg.clone());
                        for (id, profile) in self.profiles.iter() {
                            engine.on_profile(ProfileRecord::Upsert {
                                device_id: id.as_str().into(),
                                profile: profile.clone(),
                            });
                        }
                        self.shards.insert(
                            p,
                            Shard {
                                engine,
                                reported: Reported::default(),
                                bootstrap_until: until,
                            },
                        );
                    }
                }
            }
        }
        self.flow.metrics.partitions.set(self.shards.len() as i64);
    }

    /// Decides one batch, produces what it caused, and hands its offsets to the tracker.
    fn decide(&mut self, consumer: &BaseConsumer<Ctx>, batch: &[BorrowedMessage<'_>]) {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let topics = &self.flow.topics;
        let oldest_ms = batch
            .iter()
            .filter(|m| m.topic() == topics.pings)
            .filter_map(|m| m.timestamp().to_millis())
            .min();
        let ticket = self.flow.tracker.open(oldest_ms);
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let mut pings: Vec<Ping<'_>> = Vec::with_capacity(batch.len());
        let partitions: Vec<i32> = {
            let mut ps: Vec<i32> = batch.iter().map(|m| m.partition()).collect();
            ps.sort_unstable();
            ps.dedup();
            ps
        };
        for p in partitions {
            let Some(shard) = self.shards.get_mut(&p) else {
                continue;
            };
            pings.clear();
            for m in batch.iter().filter(|m| m.partition() == p) {
                if Some(m.topic()) == topics.profiles.as_deref() {
                    // Pings before this profile record are decided before it applies.
                    shard.engine.on_batch(&pings, &mut self.out);
                    pings.clear();
                    self.totals.profiles += 1;
                    match profile::decode(m.key(), m.payload()) {
                        Ok(r) => {
                            match r {
                                ProfileRecord::Upsert { .. } => {
                                    self.flow.metrics.profiles.upsert.inc()
                                }
                                ProfileRecord::Delete { .. } => {
                                    self.flow.metrics.profiles.delete.inc()
                                }
                            }
                            shard.engine.on_profile(r);
                        }
                        Err(e) => {
                            self.flow.metrics.profiles.invalid.inc();
                            tracing::warn!(
                                partition = p,
                                offset = m.offset(),
                                "invalid profile: {e}"
                            );
                        }
                    }
                    if shard.bootstrap_until.is_some_and(|hi| m.offset() + 1 >= hi) {
                        shard.bootstrap_until = None;
                        resume(consumer, &topics.pings, p);
                    }
                    continue;
                }
                self.totals.pings += 1;
                offsets.insert(p, m.offset() + 1);
                match ping::decode(m.payload().unwrap_or_default()) {
                    Ok(ping) => pings.push(ping),
                    Err(e) => {
                        self.totals.dead_letters += 1;
                        self.flow.metrics.dead_letter(&e);
                        let headers = dead_letter::headers(m, &e);
                        self.flow.send(
                            &topics.dead_letters,
                            m.key().unwrap_or_default(),
                            m.payload().unwrap_or_default(),
                            Some(headers),
                            ticket,
                        );
                    }
                }
            }
            shard.engine.on_batch(&pings, &mut self.out);
            self.flow
                .metrics
                .record(shard.engine.stats(), &mut shard.reported, &self.counters);
            emit(
                &self.flow,
                &self.world,
                &mut self.out,
                &mut self.buf,
                &mut self.totals,
                ticket,
            );
        }
        self.flow
            .tracker
            .seal(ticket, offsets.into_iter().collect());
        self.flow.metrics.devices.set(
            self.shards
                .values()
                .map(|s| s.engine.devices().len() as i64)
                .sum(),
        );
        self.flow
            .metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Resumes pings partitions whose profiles are caught up although the last record before
    /// the watermark never arrived (compaction or transaction markers can leave gaps).
    fn check_bootstraps(&mut self, consumer: &BaseConsumer<Ctx>) -> Result<(), StreamError> {
        let Some(topic) = self.flow.topics.profiles.clone() else {
            return Ok(());
        };
        if self.shards.values().all(|s| s.bootstrap_until.is_none()) {
            return Ok(());
        }
        let position = consumer.position()?;
        for (&p, shard) in &mut self.shards {
            let Some(hi) = shard.bootstrap_until else {
                continue;
            };
            let at = position
                .find_partition(&topic, p)
                .and_then(|e| e.offset().to_raw());
            if at.is_some_and(|o| o >= hi) {
                shard.bootstrap_until = None;
                resume(consumer, &self.flow.topics.pings, p);
            }
        }
        Ok(())
    }

    /// A new world from the reloader, applied between batches to every partition's engine.
    fn replace_world(&mut self, world: Arc<World>) {
        let ticket = self.flow.tracker.open(None);
        for shard in self.shards.values_mut() {
            self.flow
                .metrics
                .record(shard.engine.stats(), &mut shard.reported, &self.counters);
            // The exits of fences the new world lacks name the old world's fences.
            let old = shard.engine.replace_world(world.clone(), &mut self.out);
            shard.reported = Reported::from(shard.engine.stats());
            emit(
                &self.flow,
                &old,
                &mut self.out,
                &mut self.buf,
                &mut self.totals,
                ticket,
            );
        }
        self.flow.tracker.seal(ticket, Vec::new());
        self.counters = self.flow.metrics.world(&world);
        self.world = world;
        self.flow.metrics.reloads_applied.inc();
    }

    /// After the loop: wait for in-flight output, store its offsets, commit, leave the group.
    fn drain(&mut self, consumer: &BaseConsumer<Ctx>) -> Result<(), StreamError> {
        if let Err(e) = self.flow.producer.flush(self.flow.grace) {
            tracing::warn!("output not delivered within the grace period: {e}");
        }
        let stored = store_delivered(consumer, &self.flow);
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!("final commit: {e}"),
        }
        consumer.unsubscribe();
        stored
    }
}

fn resume(consumer: &BaseConsumer<Ctx>, pings: &str, p: i32) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(pings, p);
    match consumer.resume(&tpl) {
        Ok(()) => tracing::info!(partition = p, "profiles loaded; deciding pings"),
        Err(e) => tracing::warn!(partition = p, "resuming pings: {e}"),
    }
}

/// Encodes and produces what the core emitted, keyed by device.
fn emit(
    flow: &Flow,
    world: &World,
    out: &mut Output,
    buf: &mut Vec<u8>,
    totals: &mut Totals,
    ticket: Ticket,
) {
    for e in &out.presence {
        buf.clear();
        e.encode(world, buf);
        buf.pop(); // the JSON Lines newline
        flow.send(
            &flow.topics.presence,
            e.device_id.as_bytes(),
            buf,
            None,
            ticket,
        );
    }
    for o in &out.offers {
        buf.clear();
        o.encode(world, buf);
        buf.pop();
        flow.send(
            &flow.topics.offers,
            o.device_id.as_bytes(),
            buf,
            None,
            ticket.offer(),
        );
    }
    totals.presence += out.presence.len() as u64;
    totals.offers += out.offers.len() as u64;
    out.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::producer::BaseProducer;

    #[test]
    fn security_settings_reach_a_librdkafka_that_supports_them() {
        let mut kafka = KafkaConfig::default();
        for (k, v) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "beckon"),
            ("sasl.password", "secret"),
        ] {
            kafka.client.insert(k.into(), v.into());
        }
        let made: Result<BaseProducer, _> = client_config(&kafka).create();
        assert!(made.is_ok(), "{:?}", made.err());
        kafka.client.insert("ssl.nonsense".into(), "1".into());
        let refused: Result<BaseProducer, _> = client_config(&kafka).create();
        let e = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("ssl.nonsense"), "{e}");
    }
}
