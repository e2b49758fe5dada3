//! Which consumed input is safe to commit, at least once: in two phases per batch, in batch
//! order. Once every message a batch produced (offers, presence events, dead letters) was
//! acknowledged by the brokers, its state changelog records are produced; once those are, its
//! input offsets are stored. So a changelog never runs ahead of delivered output, and a restore
//! can trust it (`crate::changelog`). rust-rdkafka's `at_least_once` pattern, with a bound on
//! the batches in flight so a slow broker slows consuming instead of filling memory.
//!
//! The producer's delivery callbacks (librdkafka's thread) and the pipeline (its own thread) meet
//! here under one mutex; it is taken once per produced message, never per consumed ping.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Histogram;

use crate::changelog::Records;
use rdkafka::client::ClientContext;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::ProducerContext;

/// A produced message's delivery opaque: its batch's sequence number, and whether it is an offer
/// (whose delivery ends the ping-to-offer latency).
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    seq: u64,
    offer: bool,
}

impl Ticket {
    pub fn offer(self) -> Self {
        Self {
            offer: true,
            ..self
        }
    }

    fn pack(self) -> usize {
        (self.seq as usize) << 1 | usize::from(self.offer)
    }

    fn unpack(v: usize) -> Self {
        Self {
            seq: (v >> 1) as u64,
            offer: v & 1 == 1,
        }
    }
}

/// Input offsets to store once a batch is delivered: `(partition, next offset)`.
pub type Offsets = Vec<(i32, i64)>;

/// Changelog records per pings partition, to produce once a batch's output is delivered.
pub type Changelog = Vec<(i32, Records)>;

/// What [`Tracker::take_delivered`] found: input offsets to store, and changelogs to produce
/// now, each with the delivery opaque its messages carry.
#[derive(Debug, Default)]
pub struct Delivered {
    pub offsets: Offsets,
    pub changelogs: Vec<(usize, Changelog)>,
}

struct Pending {
    /// Messages produced and not yet acknowledged.
    unacked: usize,
    /// All of the batch's output has been handed to the producer.
    sealed: bool,
    offsets: Offsets,
    changelog: Changelog,
    /// The changelog was handed out (phase two).
    logging: bool,
    /// Kafka timestamp (ms) of the batch's oldest ping, for the latency histogram.
    oldest_ms: Option<i64>,
}

#[derive(Default)]
struct State {
    /// Sequence number of `batches[0]`.
    first: u64,
    batches: VecDeque<Pending>,
    /// The first delivery that failed for good (librdkafka retries before it reports one).
    failed: Option<String>,
}

impl State {
    /// Pops the leading batches whose output and changelog are delivered, into `offsets`.
    fn release(&mut self, offsets: &mut Offsets) {
        while (self.batches.front()).is_some_and(|b| b.sealed && b.logging && b.unacked == 0) {
            if let Some(b) = self.batches.pop_front() {
                offsets.extend(b.offsets);
            }
            self.first += 1;
        }
    }
}

pub struct Tracker {
    state: Mutex<State>,
    delivered: Condvar,
    capacity: usize,
    latency: Histogram,
}

impl Tracker {
    pub fn new(capacity: usize, latency: Histogram) -> Self {
        Self {
            state: Mutex::default(),
            delivered: Condvar::new(),
            capacity,
            latency,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would already have ended the pipeline; the state
        // itself stays consistent (plain counters), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until another batch may start (fewer than `capacity` in flight, or the oldest one
    /// delivered and ready for [`Tracker::take_delivered`]), or `timeout` passes; false on
    /// timeout.
    pub fn wait_for_room(&self, timeout: Duration) -> bool {
        let full = |s: &mut State| {
            s.failed.is_none()
                && s.batches.len() >= self.capacity
                && !s
                    .batches
                    .front()
                    .is_some_and(|b| b.sealed && b.unacked == 0)
        };
        let s = self.lock();
        let (mut s, _) = self
            .delivered
            .wait_timeout_while(s, timeout, full)
            .unwrap_or_else(|p| p.into_inner());
        !full(&mut s)
    }

    /// Starts a batch; its messages are produced with the returned ticket.
    pub fn open(&self, oldest_ms: Option<i64>) -> Ticket {
        let mut s = self.lock();
        let seq = s.first + s.batches.len() as u64;
        s.batches.push_back(Pending {
            unacked: 0,
            sealed: false,
            offsets: Vec::new(),
            changelog: Vec::new(),
            logging: false,
            oldest_ms,
        });
        Ticket { seq, offer: false }
    }

    /// `n` more messages of the batch are handed to the producer, with the returned opaque.
    pub fn produced(&self, t: Ticket, n: usize) -> usize {
        let mut s = self.lock();
        let i = (t.seq - s.first) as usize;
        s.batches[i].unacked += n;
        t.pack()
    }

    /// Every output message of the batch was produced; `changelog` is to be produced once they
    /// are delivered, and `offsets` stored once it is.
    pub fn seal(&self, t: Ticket, offsets: Offsets, changelog: Changelog) {
        let mut s = self.lock();
        let i = (t.seq - s.first) as usize;
        let b = &mut s.batches[i];
        b.sealed = true;
        b.offsets = offsets;
        b.changelog = changelog;
    }

    /// The offsets of the leading batches wholly delivered, oldest first, and the changelogs of
    /// the batches whose output is delivered, in batch order (each after its predecessors', so
    /// a partition's changelog stays in batch order); or the first failed delivery, if there
    /// was one (nothing after a failure is ever committed).
    pub fn take_delivered(&self) -> Result<Delivered, String> {
        let mut s = self.lock();
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        let mut done = Delivered::default();
        s.release(&mut done.offsets);
        let first = s.first;
        for (i, b) in s.batches.iter_mut().enumerate() {
            if !b.sealed || (!b.logging && b.unacked > 0) {
                break;
            }
            if !b.logging {
                b.logging = true;
                let changelog = std::mem::take(&mut b.changelog);
                b.unacked = changelog.iter().map(|(_, r)| r.len()).sum();
                if b.unacked > 0 {
                    let ticket = Ticket {
                        seq: first + i as u64,
                        offer: false,
                    };
                    done.changelogs.push((ticket.pack(), changelog));
                }
            }
        }
        // Batches that logged nothing are done at once.
        s.release(&mut done.offsets);
        Ok(done)
    }

    /// A message of the batch could not even be handed to the producer.
    pub fn fail(&self, reason: String) {
        self.lock().failed.get_or_insert(reason);
        self.delivered.notify_all();
    }

    fn on_delivery(&self, ticket: Ticket, result: Result<(), String>) {
        let mut s = self.lock();
        let Some(i) = ticket.seq.checked_sub(s.first) else {
            return;
        };
        let Some(b) = s.batches.get_mut(i as usize) else {
            return;
        };
        b.unacked = b.unacked.saturating_sub(1);
        match result {
            Ok(()) if ticket.offer => {
                if let Some(ms) = b.oldest_ms {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    self.latency
                        .observe((now.saturating_sub(ms)).max(0) as f64 / 1000.0);
                }
            }
            Ok(()) => {}
            Err(e) => {
                s.failed.get_or_insert(e);
            }
        }
        drop(s);
        self.delivered.notify_all();
    }
}

/// The producer's context: routes delivery reports to the [`Tracker`].
pub struct Deliveries(pub std::sync::Arc<Tracker>);

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, m)) => Err(format!("delivery to {} failed: {e}", m.topic())),
        };
        self.0.on_delivery(Ticket::unpack(opaque), r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(capacity: usize) -> Tracker {
        let h = Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap();
        Tracker::new(capacity, h)
    }

    #[test]
    fn offsets_are_released_in_batch_order_once_everything_is_delivered() {
        let t = tracker(4);
        let a = t.open(None);
        let a1 = t.produced(a, 1);
        let a2 = t.produced(a.offer(), 1);
        t.seal(a, vec![(0, 10)], vec![]);
        let b = t.open(None);
        let b1 = t.produced(b, 1);
        t.seal(b, vec![(1, 5)], vec![]);
        let c = t.open(None);
        t.seal(c, vec![(0, 12)], vec![]);
        // b is delivered first, but a is not: nothing may be committed yet.
        t.on_delivery(Ticket::unpack(b1), Ok(()));
        t.on_delivery(Ticket::unpack(a1), Ok(()));
        assert_eq!(t.take_delivered().unwrap().offsets, vec![]);
        t.on_delivery(Ticket::unpack(a2), Ok(()));
        assert_eq!(
            t.take_delivered().unwrap().offsets,
            vec![(0, 10), (1, 5), (0, 12)]
        );
    }

    fn changelog(records: usize) -> Changelog {
        let mut r = Records::default();
        for i in 0..records {
            r.tombstone(format!("d-{i}").as_bytes());
        }
        vec![(0, r)]
    }

    #[test]
    fn a_changelog_goes_out_after_its_batchs_output_and_before_its_offsets() {
        let t = tracker(4);
        let a = t.open(None);
        let a1 = t.produced(a, 1);
        t.seal(a, vec![(0, 10)], changelog(2));
        let b = t.open(None);
        t.seal(b, vec![(0, 20)], changelog(1));
        // a's output is not delivered: neither changelog may go out (b's would overtake a's).
        let nothing = |d: Delivered| d.offsets.is_empty() && d.changelogs.is_empty();
        assert!(nothing(t.take_delivered().unwrap()));
        t.on_delivery(Ticket::unpack(a1), Ok(()));
        let d = t.take_delivered().unwrap();
        assert!(d.offsets.is_empty());
        let sent: Vec<usize> = d.changelogs.iter().map(|(_, c)| c[0].1.len()).collect();
        assert_eq!(sent, [2, 1], "both, in batch order");
        let (a_log, b_log) = (d.changelogs[0].0, d.changelogs[1].0);
        t.on_delivery(Ticket::unpack(b_log), Ok(()));
        assert!(nothing(t.take_delivered().unwrap()));
        t.on_delivery(Ticket::unpack(a_log), Ok(()));
        assert_eq!(t.take_delivered().unwrap().offsets, vec![]);
        t.on_delivery(Ticket::unpack(a_log), Ok(()));
        assert_eq!(t.take_delivered().unwrap().offsets, vec![(0, 10), (0, 20)]);
    }

    #[test]
    fn a_failed_delivery_stops_every_later_commit() {
        let t = tracker(4);
        let a = t.open(None);
        let a1 = t.produced(a, 1);
        t.seal(a, vec![(0, 3)], vec![]);
        t.on_delivery(Ticket::unpack(a1), Err("broker said no".into()));
        assert_eq!(t.take_delivered().err(), Some("broker said no".into()));
    }

    #[test]
    fn room_is_bounded_by_unsealed_or_undelivered_batches() {
        let t = tracker(1);
        let a = t.open(None);
        let a1 = t.produced(a, 1);
        t.seal(a, vec![], vec![]);
        assert!(!t.wait_for_room(Duration::from_millis(5)));
        t.on_delivery(Ticket::unpack(a1), Ok(()));
        assert!(t.take_delivered().is_ok());
        assert!(t.wait_for_room(Duration::from_millis(5)));
    }
}
