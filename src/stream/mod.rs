//! The streaming pipeline of `beckon run`: a Kafka consumer group on the pings and profiles
//! topics, one decision core per pings partition (device state is per device, and producers key
//! pings by device), and an idempotent producer for offers, presence events and dead letters.
//!
//! One thread runs the loop — poll a batch, decide, produce — because the core is synchronous
//! and the partitions' engines are owned, not shared; librdkafka's own threads do the network.
//! Each engine's state goes to a compacted changelog topic (`crate::changelog`) and is restored
//! from it when the partition is assigned ([`restore`]), so a crash or a rebalance loses nothing.
//!
//! At least once: a batch's changelog is produced after everything it produced was
//! acknowledged, and its input offsets are stored after that ([`delivery`]); offer ids are
//! deterministic and a restore goes on from exactly the state the changelog recorded, so input
//! consumed twice after a crash yields byte-identical offers, which consumers deduplicate.
//! Exactly once: output, changelog and input offsets of all batches since the last commit go in
//! one Kafka transaction. Bounded everywhere: librdkafka's prefetch
//! (`queued.max.messages.kbytes`), the producer queue (a full queue means wait), and the batches
//! in flight.
//!
//! Profiles (§5) are a table, not a stream: they are never committed, so each assignment reads
//! the partition's profiles from the beginning, and the co-partitioned pings partition is paused
//! until they are caught up (a device's consent is known before its first ping is decided).

mod dead_letter;
pub mod delivery;
mod restore;

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
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use crate::caps::Share;
use crate::changelog::Records;
use crate::config::{Guarantee, KafkaConfig, PipelineConfig, Topics};
use crate::engine::{Engine, EngineConfig};
use crate::metrics::{CampaignCounters, Metrics, Reported};
use crate::offer::Output;
use crate::ping::{self, Ping};
use crate::profile::{self, Profile, ProfileRecord};
use crate::world::World;

use delivery::{Changelog, Deliveries, Ticket, Tracker};

/// What stopped the pipeline, when it did not stop because it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("{0} (nothing after it was committed; the next start consumes it again)")]
    Delivery(String),
    #[error("transaction: {0} (aborted; a new pipeline goes on from the last commit)")]
    Transaction(KafkaError),
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
    /// Changelog records read to restore assigned partitions.
    pub restored: u64,
    /// Transactions committed (exactly once) .
    pub transactions: u64,
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
    /// The pings offset after the last one decided.
    next_offset: Option<i64>,
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
    guarantee: Guarantee,
    /// Exactly once: the open transaction's input offsets (empty: none open).
    transaction: Mutex<BTreeMap<i32, i64>>,
    /// Exactly once: a transaction is open.
    in_transaction: AtomicBool,
    /// The loop has ended and everything is settled: the revoke that closing the consumer
    /// brings has nothing left to commit (and a commit there can block the close for good).
    closed: AtomicBool,
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
        // Hand over cleanly: what was decided is delivered and committed (with its changelog)
        // before another instance restores these partitions.
        let flow = &self.0;
        if flow.closed.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = flow.settle(consumer) {
            // The loop sees the same failure and stops; nothing after it is committed.
            tracing::error!("before a rebalance: {e}");
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
    /// Delivers and commits everything decided so far: at least once, flushes until every
    /// batch's output and changelog are acknowledged and commits their offsets; exactly once,
    /// commits the open transaction.
    fn settle(&self, consumer: &BaseConsumer<Ctx>) -> Result<(), StreamError> {
        if self.guarantee == Guarantee::ExactlyOnce {
            return self.commit_transaction(consumer);
        }
        loop {
            if !self.wait_delivered() {
                tracing::warn!("output not delivered within the grace period");
            }
            if !store_delivered(consumer, self)? {
                break;
            }
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(()),
            Err(e) => {
                tracing::warn!("commit: {e}");
                Ok(())
            }
        }
    }

    /// Exactly once: opens a transaction if none is.
    fn begin_transaction(&self) -> Result<(), StreamError> {
        if self.guarantee == Guarantee::ExactlyOnce
            && !self.in_transaction.swap(true, Ordering::Relaxed)
        {
            self.producer
                .begin_transaction()
                .map_err(StreamError::Transaction)?;
        }
        Ok(())
    }

    /// Exactly once: commits the open transaction with its input offsets. On failure it is
    /// aborted and the error returned: the pipeline stops, and the next start (or the next
    /// owner of the partitions) goes on from the last committed transaction.
    fn commit_transaction(&self, consumer: &BaseConsumer<Ctx>) -> Result<(), StreamError> {
        if !self.in_transaction.load(Ordering::Relaxed) {
            return Ok(());
        }
        let offsets = std::mem::take(&mut *lock(&self.transaction));
        let timeout = Timeout::After(self.grace);
        let committed = (|| {
            if !offsets.is_empty() {
                let mut tpl = TopicPartitionList::new();
                for (&p, &next) in &offsets {
                    tpl.add_partition_offset(&self.topics.pings, p, Offset::Offset(next))?;
                }
                let group = consumer
                    .group_metadata()
                    .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::InvalidGroupId))?;
                self.producer
                    .send_offsets_to_transaction(&tpl, &group, timeout)?;
            }
            // Then the flush inside commit_transaction finds nothing to wait for.
            self.wait_delivered();
            self.producer.commit_transaction(timeout)
        })();
        self.in_transaction.store(false, Ordering::Relaxed);
        if let Err(e) = committed {
            self.metrics.transactions_aborted.inc();
            if let Err(abort) = self.producer.abort_transaction(timeout) {
                tracing::error!("aborting the transaction: {abort}");
            }
            return Err(StreamError::Transaction(e));
        }
        self.metrics.transactions_committed.inc();
        Ok(())
    }

    /// Waits up to the grace period until the producer has nothing in flight; false if it
    /// still has. rust-rdkafka's `flush` would do, but it polls in 100 ms steps, and with the
    /// `ThreadedProducer`'s own thread serving the deliveries each step sleeps in full: a
    /// 100 ms stall per transaction commit.
    fn wait_delivered(&self) -> bool {
        let deadline = Instant::now() + self.grace;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    fn push(&self, e: Event) {
        lock(&self.events).push(e);
    }

    fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// Produces changelog records to partition `p` of the state topic (co-partitioned with
    /// pings by number, whatever the keys hash to).
    fn send_changelog(&self, p: i32, records: &Records, opaque: usize) {
        for (key, value) in records.iter() {
            let mut record = BaseRecord::with_opaque_to(&self.topics.state, opaque)
                .partition(p)
                .key(key);
            if let Some(v) = value {
                record = record.payload(v);
            }
            self.enqueue(record);
        }
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
        let opaque = self.tracker.produced(t, 1);
        let mut record = BaseRecord::with_opaque_to(topic, opaque)
            .key(key)
            .payload(value);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        self.enqueue(record);
    }

    /// Hands a record to the producer, waiting while its queue is full.
    fn enqueue(&self, mut record: BaseRecord<'_, [u8], [u8], usize>) {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Callbacks and the loop share one thread (see `Flow`): a poisoned lock only means a panic
    // already ended the pipeline, and the data (plain maps) is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Produces the changelogs of batches whose output is delivered, and stores the offsets of
/// batches whose changelog is too, for the next commit. True if it produced changelogs (a flush
/// then has more to deliver).
fn store_delivered(consumer: &BaseConsumer<Ctx>, flow: &Flow) -> Result<bool, StreamError> {
    let delivered = flow
        .tracker
        .take_delivered()
        .map_err(StreamError::Delivery)?;
    for (opaque, changelog) in &delivered.changelogs {
        for (p, records) in changelog {
            flow.send_changelog(*p, records, *opaque);
        }
    }
    let offsets = delivered.offsets;
    let logged = !delivered.changelogs.is_empty();
    if offsets.is_empty() {
        return Ok(logged);
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
    Ok(logged)
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
    inputs: &mut Inputs,
) -> Result<Totals, StreamError> {
    let metrics = inputs.metrics.clone();
    let tracker = Arc::new(Tracker::new(
        pipeline.in_flight_batches,
        metrics.latency.clone(),
    ));
    let grace = Duration::from_secs(pipeline.shutdown_grace_s);
    let exactly_once = pipeline.guarantee == Guarantee::ExactlyOnce;
    let mut pc = client_config(kafka);
    pc.set("enable.idempotence", "true");
    if exactly_once {
        // KIP-447: one producer per instance, fenced through the consumer group's generation;
        // with static membership its id is stable, so a restart fences its own zombie.
        let member = match &kafka.instance_id {
            Some(id) => id.clone(),
            None => format!("pid-{}", std::process::id()),
        };
        pc.set(
            "transactional.id",
            format!("beckon-{}-{member}", kafka.group_id),
        );
    }
    let producer: ThreadedProducer<Deliveries> =
        pc.create_with_context(Deliveries(tracker.clone()))?;
    if exactly_once {
        producer
            .init_transactions(grace)
            .map_err(StreamError::Transaction)?;
    }
    let flow = Arc::new(Flow {
        topics: kafka.topics.clone(),
        producer,
        tracker,
        metrics: metrics.clone(),
        events: Mutex::default(),
        grace,
        guarantee: pipeline.guarantee,
        transaction: Mutex::default(),
        in_transaction: AtomicBool::new(false),
        closed: AtomicBool::new(false),
    });
    let mut cc = client_config(kafka);
    cc.set("group.id", &kafka.group_id)
        .set("enable.auto.commit", (!exactly_once).to_string())
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
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
    let partitions = check_topics(&consumer, &kafka.topics)?;
    let reader: BaseConsumer = client_config(kafka)
        .set("group.id", format!("{}.restore", kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut subscribed = vec![kafka.topics.pings.as_str()];
    subscribed.extend(kafka.topics.profiles.as_deref());
    consumer.subscribe(&subscribed)?;

    let mut pipe = Pipeline {
        flow,
        reader,
        partitions,
        cfg: pipeline.clone(),
        engine_cfg: engine_cfg.clone(),
        world: inputs.world.clone(),
        counters: metrics.world(&inputs.world),
        profiles: inputs.profiles.clone(),
        shards: BTreeMap::new(),
        totals: Totals::default(),
        out: Output::default(),
        buf: Vec::new(),
    };
    let result = pipe.run_until(&consumer, &inputs.shutdown, &inputs.ready, &inputs.reloads);
    inputs.ready.store(false, Ordering::Relaxed);
    let drained = pipe.drain(&consumer);
    // A pipeline started after this one serves the world this one ended with.
    inputs.world = pipe.world.clone();
    result.and(drained).map(|()| pipe.totals)
}

/// Refuses to start on missing topics, or profiles or state not co-partitioned with pings;
/// returns how many partitions pings has.
fn check_topics(consumer: &BaseConsumer<Ctx>, topics: &Topics) -> Result<u32, StreamError> {
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
    let n = partitions(&topics.state).ok_or_else(|| missing(&topics.state))?;
    if n != pings {
        return Err(StreamError::Topic {
            topic: topics.state.clone(),
            reason: format!(
                "has {n} partitions but {} has {pings}: the state changelog must have one \
                 partition per pings partition",
                topics.pings
            ),
        });
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
    Ok(pings as u32)
}

/// The loop's state; the consumer is passed alongside, as the batch's messages borrow it.
struct Pipeline {
    flow: Arc<Flow>,
    /// Reads changelog partitions to restore engines.
    reader: BaseConsumer,
    /// Pings partitions in all: each engine spends its partition's share of every budget.
    partitions: u32,
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
        let commit_interval = Duration::from_millis(self.cfg.commit_interval_ms);
        let mut committed = Instant::now();
        let mut batch: Vec<BorrowedMessage<'c>> = Vec::with_capacity(self.cfg.batch_max);
        while !shutdown.load(Ordering::Relaxed) {
            store_delivered(consumer, &self.flow)?;
            if committed.elapsed() >= commit_interval {
                if self.flow.guarantee == Guarantee::ExactlyOnce {
                    self.flow.commit_transaction(consumer)?;
                    self.totals.transactions = self.flow.metrics.transactions_committed.get();
                }
                committed = Instant::now();
            }
            if !self.flow.tracker.wait_for_room(Duration::from_millis(100)) {
                // No polling meanwhile: a message polled now would have no batch to go to.
                // (librdkafka keeps the group session alive on its own threads; only
                // `max.poll.interval.ms` of output stalled would cost the assignment.)
                continue;
            }
            if let Ok(world) = reloads.try_recv() {
                self.replace_world(world)?;
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
                    self.apply(consumer, events, &mut batch)?;
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
            self.decide(consumer, &batch)?;
            batch.clear();
            self.check_bootstraps(consumer)?;
        }
        Ok(())
    }

    /// Assignment changes: engines restored for new partitions, none for revoked ones.
    fn apply(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        events: Vec<Event>,
        batch: &mut Vec<BorrowedMessage<'_>>,
    ) -> Result<(), StreamError> {
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
                        let shard = self.restore(consumer, p, until)?;
                        self.shards.insert(p, shard);
                    }
                }
            }
        }
        self.flow.metrics.partitions.set(self.shards.len() as i64);
        Ok(())
    }

    /// Partition `p`'s engine as its changelog left it; consuming goes on where that state
    /// ends. Records after the last complete batch (a crash while producing the changelog) are
    /// overwritten with the restored state before anything else is decided.
    fn restore(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        p: i32,
        bootstrap_until: Option<i64>,
    ) -> Result<Shard, StreamError> {
        let started = Instant::now();
        let share = Share {
            index: p as u32,
            count: self.partitions,
        };
        let mut engine = Engine::with_share(self.world.clone(), self.engine_cfg.clone(), share);
        engine.keep_changes();
        for (id, profile) in self.profiles.iter() {
            engine.on_profile(ProfileRecord::Upsert {
                device_id: id.as_str().into(),
                profile: profile.clone(),
            });
        }
        let topics = &self.flow.topics;
        let restored = restore::restore(&self.reader, &topics.state, p, &mut engine)?;
        self.totals.restored += restored.records;
        if let Some(next) = restored.next_offset {
            consumer.seek(
                &topics.pings,
                p,
                Offset::Offset(next),
                Duration::from_secs(10),
            )?;
            if !restored.torn.is_empty() {
                let mut records = Records::default();
                let keys = restored.torn.iter().map(Vec::as_slice);
                engine.repair(keys, next, &mut records);
                self.flow.begin_transaction()?;
                let ticket = self.flow.tracker.open(None);
                let opaque = self.flow.tracker.produced(ticket, records.len());
                self.flow.send_changelog(p, &records, opaque);
                self.flow.tracker.seal(ticket, Vec::new(), Vec::new());
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        self.flow.metrics.restore_seconds.observe(seconds);
        tracing::info!(
            partition = p,
            records = restored.records,
            devices = engine.devices().len(),
            next_offset = restored.next_offset,
            torn = restored.torn.len(),
            seconds,
            "partition state restored"
        );
        Ok(Shard {
            engine,
            reported: Reported::default(),
            bootstrap_until,
            next_offset: restored.next_offset,
        })
    }

    /// Decides one batch, produces what it caused, and hands its offsets to the tracker.
    fn decide(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        batch: &[BorrowedMessage<'_>],
    ) -> Result<(), StreamError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.flow.begin_transaction()?;
        let started = Instant::now();
        let topics = &self.flow.topics;
        let oldest_ms = batch
            .iter()
            .filter(|m| m.topic() == topics.pings)
            .filter_map(|m| m.timestamp().to_millis())
            .min();
        let ticket = self.flow.tracker.open(oldest_ms);
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let mut changelog: Changelog = Vec::new();
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
                if shard.next_offset.is_some_and(|next| m.offset() < next) {
                    // Already in the restored state (fetched before the seek to its end).
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
            if let Some(&next) = offsets.get(&p) {
                shard.next_offset = Some(next);
                let mut records = Records::default();
                shard.engine.take_changes(next, &mut records);
                if self.flow.guarantee == Guarantee::ExactlyOnce {
                    // The transaction makes output and changelog visible together.
                    let opaque = self.flow.tracker.produced(ticket, records.len());
                    self.flow.send_changelog(p, &records, opaque);
                    lock(&self.flow.transaction).insert(p, next);
                } else {
                    changelog.push((p, records));
                }
            }
        }
        if self.flow.guarantee == Guarantee::ExactlyOnce {
            // Committed with the transaction instead.
            offsets.clear();
        }
        self.flow
            .tracker
            .seal(ticket, offsets.into_iter().collect(), changelog);
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
        Ok(())
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
    fn replace_world(&mut self, world: Arc<World>) -> Result<(), StreamError> {
        self.flow.begin_transaction()?;
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
        self.flow.tracker.seal(ticket, Vec::new(), Vec::new());
        self.counters = self.flow.metrics.world(&world);
        self.world = world;
        self.flow.metrics.reloads_applied.inc();
        Ok(())
    }

    /// After the loop: deliver and commit what was decided, leave the group.
    fn drain(&mut self, consumer: &BaseConsumer<Ctx>) -> Result<(), StreamError> {
        let settled = self.flow.settle(consumer);
        self.flow.closed.store(true, Ordering::Relaxed);
        self.totals.transactions = self.flow.metrics.transactions_committed.get();
        consumer.unsubscribe();
        settled
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
