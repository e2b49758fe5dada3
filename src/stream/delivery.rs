//! Which consumed input is safe to commit: a batch's input offsets are stored only once every
//! message it produced (offers, presence events, dead letters) was acknowledged by the brokers,
//! and only in batch order — rust-rdkafka's `at_least_once` pattern, with a bound on the batches
//! in flight so a slow broker slows consuming instead of filling memory.
//!
//! The producer's delivery callbacks (librdkafka's thread) and the pipeline (its own thread) meet
//! here under one mutex; it is taken once per produced message, never per consumed ping.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::Histogram;
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

struct Pending {
    /// Messages produced and not yet acknowledged.
    unacked: usize,
    /// All of the batch's messages have been handed to the producer.
    sealed: bool,
    offsets: Offsets,
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
            oldest_ms,
        });
        Ticket { seq, offer: false }
    }

    /// One more message of the batch was handed to the producer.
    pub fn produced(&self, t: Ticket) -> usize {
        let mut s = self.lock();
        let i = (t.seq - s.first) as usize;
        s.batches[i].unacked += 1;
        t.pack()
    }

    /// Every message of the batch was produced; `offsets` may be stored once they are delivered.
    pub fn seal(&self, t: Ticket, offsets: Offsets) {
        let mut s = self.lock();
        let i = (t.seq - s.first) as usize;
        let b = &mut s.batches[i];
        b.sealed = true;
        b.offsets = offsets;
    }

    /// The offsets of the leading batches that are wholly delivered, oldest first, and the first
    /// failed delivery if there was one (nothing after a failure is ever committed).
    pub fn take_delivered(&self) -> Result<Offsets, String> {
        let mut s = self.lock();
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        let mut done = Vec::new();
        while s
            .batches
            .front()
            .is_some_and(|b| b.sealed && b.unacked == 0)
        {
            if let Some(b) = s.batches.pop_front() {
                done.extend(b.offsets);
            }
            s.first += 1;
        }
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
        let a1 = t.produced(a);
        let a2 = t.produced(a.offer());
        t.seal(a, vec![(0, 10)]);
        let b = t.open(None);
        let b1 = t.produced(b);
        t.seal(b, vec![(1, 5)]);
        let c = t.open(None);
        t.seal(c, vec![(0, 12)]);
        // b is delivered first, but a is not: nothing may be committed yet.
        t.on_delivery(Ticket::unpack(b1), Ok(()));
        t.on_delivery(Ticket::unpack(a1), Ok(()));
        assert_eq!(t.take_delivered(), Ok(vec![]));
        t.on_delivery(Ticket::unpack(a2), Ok(()));
        assert_eq!(t.take_delivered(), Ok(vec![(0, 10), (1, 5), (0, 12)]));
    }

    #[test]
    fn a_failed_delivery_stops_every_later_commit() {
        let t = tracker(4);
        let a = t.open(None);
        let a1 = t.produced(a);
        t.seal(a, vec![(0, 3)]);
        t.on_delivery(Ticket::unpack(a1), Err("broker said no".into()));
        assert_eq!(t.take_delivered(), Err("broker said no".into()));
    }

    #[test]
    fn room_is_bounded_by_unsealed_or_undelivered_batches() {
        let t = tracker(1);
        let a = t.open(None);
        let a1 = t.produced(a);
        t.seal(a, vec![]);
        assert!(!t.wait_for_room(Duration::from_millis(5)));
        t.on_delivery(Ticket::unpack(a1), Ok(()));
        assert!(t.take_delivered().is_ok());
        assert!(t.wait_for_room(Duration::from_millis(5)));
    }
}
