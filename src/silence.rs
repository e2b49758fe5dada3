//! When devices fall silent (or idle long enough to be forgotten): a queue of `(due ms, device
//! seq, slot)` that the engine drains, in ascending order, up to its event time. It must yield
//! exactly a min-heap's order (equal entries are the same device at the same time,
//! interchangeable), since each exit's decision spends shared campaign budgets; ties are broken
//! by [`crate::device::Device::seq`], not the slot, so a queue rebuilt from restored devices
//! yields the same order.
//!
//! Entries are filed by due second, unsorted, and a second is sorted only when event time
//! reaches it: a push is an append, a pop a cursor step, where a binary heap of a million
//! devices paid a cache miss per level on every pop.

use std::collections::BTreeMap;

use crate::device::DeviceSlot;

#[derive(Debug, Default)]
pub struct Silence {
    /// The earliest entries, sorted: all due in or before second `second` (those pushed
    /// when it had already come, too). `current[cursor..]` are still queued.
    current: Vec<Entry>,
    cursor: usize,
    second: i64,
    /// Later seconds' entries, unsorted; every one comes after all of `current[cursor..]`.
    later: BTreeMap<i64, Vec<Entry>>,
}

/// Due (ms), device seq, slot.
type Entry = (i64, u64, u32);

impl Silence {
    /// Queues the device (`seq`, at `slot`) to be checked once event time reaches `due` (ms).
    pub fn push(&mut self, due: i64, seq: u64, slot: DeviceSlot) {
        let entry = (due, seq, slot.0);
        let second = due.div_euclid(1000);
        if second > self.second {
            self.later.entry(second).or_default().push(entry);
        } else {
            let rest = &self.current[self.cursor..];
            let at = self.cursor + rest.partition_point(|&e| e <= entry);
            self.current.insert(at, entry);
        }
    }

    /// Takes the earliest entry due at or before `now` (ms): its due time, seq and slot.
    pub fn pop_due(&mut self, now: i64) -> Option<(i64, u64, DeviceSlot)> {
        loop {
            if let Some(&(due, seq, s)) = self.current.get(self.cursor) {
                if due > now {
                    return None;
                }
                self.cursor += 1;
                return Some((due, seq, DeviceSlot(s)));
            }
            let next = self.later.first_entry()?;
            if *next.key() > now.div_euclid(1000) {
                return None;
            }
            self.second = *next.key();
            let mut bucket = next.remove();
            bucket.sort_unstable();
            self.current = bucket;
            self.cursor = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Pushes and drains interleaved as the engine does them (re-queued entries due later
        /// than `now`, some already overdue, negative times): the same order as a min-heap.
        #[test]
        fn drains_in_a_min_heaps_order(
            steps in prop::collection::vec(
                (prop::collection::vec((-5_000i64..20_000, 0u32..50), 0..8), -3_000i64..25_000),
                1..60,
            )
        ) {
            let (mut q, mut heap) = (Silence::default(), BinaryHeap::new());
            let mut now = i64::MIN;
            for (pushes, advance) in steps {
                for (due, s) in pushes {
                    // Seqs order unlike slots, as after a restore.
                    let seq = u64::from(50 - s);
                    q.push(due, seq, DeviceSlot(s));
                    heap.push(Reverse((due, seq, s)));
                }
                now = now.max(advance);
                loop {
                    let want = heap.peek().filter(|e| e.0 .0 <= now).map(|e| e.0);
                    prop_assert_eq!(q.pop_due(now), want.map(|(due, seq, s)| (due, seq, DeviceSlot(s))));
                    if want.is_none() {
                        break;
                    }
                    heap.pop();
                    // The engine re-queues a device that spoke since, due later than now (or
                    // already due: a stale entry is filed again at the device's real time).
                    if let Some((due, seq, s)) = want.filter(|&(_, _, s)| s % 3 == 0) {
                        let later = due + 1 + due.rem_euclid(700);
                        q.push(later, seq, DeviceSlot(s));
                        heap.push(Reverse((later, seq, s)));
                    }
                }
            }
        }
    }
}
