//! Restoring a pings partition's engine from its state changelog partition (the recovery rule
//! is in `crate::changelog`): find the last partition record, apply everything up to it in log
//! order, and name the keys written after it — a torn batch — for the caller to overwrite.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::changelog::is_partition;
use crate::engine::Engine;

use super::StreamError;

/// How long reading one changelog partition may stall before the restore fails.
const STALL: Duration = Duration::from_secs(60);

/// What a restore found.
pub struct Restored {
    /// The pings offset to go on from; `None`: no partition record (a new partition).
    pub next_offset: Option<i64>,
    /// Keys of records after the last partition record.
    pub torn: Vec<Vec<u8>>,
    /// Records applied.
    pub records: u64,
}

/// Reads changelog partition `p` of `topic` into `engine` with `reader` (a consumer outside the
/// group, `read_committed`, partition EOF reported).
pub fn restore(
    reader: &BaseConsumer,
    topic: &str,
    p: i32,
    engine: &mut Engine,
) -> Result<Restored, StreamError> {
    let (lo, hi) = reader.fetch_watermarks(topic, p, Duration::from_secs(30))?;
    // The last partition record is near the end (one per batch): look back in growing steps.
    let (mut last, mut torn) = (None, Vec::new());
    let mut window = 4096;
    let mut from = hi;
    while last.is_none() && from > lo {
        from = lo.max(hi - window);
        torn.clear();
        read(reader, topic, p, from, hi, |offset, key, _| {
            if is_partition(key) {
                last = Some(offset);
                torn.clear();
            } else {
                torn.push(key.to_vec());
            }
            Ok(())
        })?;
        window *= 8;
    }
    let mut records = 0;
    if let Some(last) = last {
        read(reader, topic, p, lo, last + 1, |_, key, value| {
            records += 1;
            engine
                .restore_record(key, value)
                .map_err(|e| StreamError::Topic {
                    topic: format!("{topic} [{p}]"),
                    reason: format!("cannot restore: {e}"),
                })
        })?;
    }
    torn.sort_unstable();
    torn.dedup();
    Ok(Restored {
        next_offset: engine.finish_restore(),
        torn,
        records,
    })
}

/// Calls `f(offset, key, value)` for each record of `[from, until)`, or up to the end the
/// reader can see (the last stable offset, under `read_committed`).
fn read(
    reader: &BaseConsumer,
    topic: &str,
    p: i32,
    from: i64,
    until: i64,
    mut f: impl FnMut(i64, &[u8], Option<&[u8]>) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    if from >= until {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(from))?;
    reader.assign(&tpl)?;
    let mut heard = Instant::now();
    loop {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                heard = Instant::now();
                if m.offset() >= until {
                    break;
                }
                f(m.offset(), m.key().unwrap_or_default(), m.payload())?;
                if m.offset() + 1 >= until {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            // Broker trouble (a restart, a lost connection) passes: librdkafka reconnects and
            // fetches again. Only a stall ends the restore.
            Some(Err(e)) => tracing::warn!(partition = p, "restoring from {topic}: {e}"),
            None => {}
        }
        if heard.elapsed() > STALL {
            return Err(StreamError::Topic {
                topic: format!("{topic} [{p}]"),
                reason: format!("restore stalled: nothing read for {STALL:?}"),
            });
        }
    }
    reader.unassign()?;
    Ok(())
}
