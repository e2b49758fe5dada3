//! Devices: everything the core keeps per device — its profile, presence tracks and offer
//! ledger — in one table keyed by device id.
//!
//! The index holds 8-byte words (a hash tag and a slot number) and ids up to 38 bytes (a UUID
//! fits) live inline in their slot, longer ones in one byte arena: a million tracked devices cost
//! their state, not a million small string allocations, and finding a device touches the slot it
//! needs next anyway. A word's place follows from the id's hash alone, so a batch can prefetch
//! the index words, then the slots, of all its devices before it reads any (README,
//! "Performance").

use std::hash::BuildHasher;

use crate::cache::{huge_pages, prefetch};
use crate::caps::Ledger;
use crate::presence::Tracks;
use crate::profile::Profile;
use crate::time::Timestamp;

/// A device's position in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceSlot(pub u32);

/// What the core knows about one device. The id and the newest time come first: a lookup
/// compares the one and a ping reads the other.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct Device {
    id: Id,
    /// Newest event time applied: older pings cannot rewind the state.
    pub newest: Timestamp,
    /// When the device first pinged, as a count of devices before it (from 1; 0: it has not
    /// pinged, only its profile is known). It orders devices falling silent at the same
    /// instant: unlike the slot, it survives a restore from the changelog (`crate::changelog`).
    pub seq: u64,
    pub profile: Option<Box<Profile>>,
    pub tracks: Tracks,
    pub ledger: Ledger,
}

const INLINE: usize = 38;

/// A device id: its bytes inline when they fit, else its offset in the arena.
#[derive(Debug, Clone, Copy)]
struct Id {
    len: u16,
    bytes: [u8; INLINE],
}

impl Id {
    /// A removed device's slot.
    const FREE: Id = Id {
        len: u16::MAX,
        bytes: [0; INLINE],
    };

    fn is_free(&self) -> bool {
        self.len == u16::MAX
    }
    fn new(id: &str, arena: &mut Vec<u8>) -> Self {
        let mut bytes = [0; INLINE];
        if id.len() <= INLINE {
            bytes[..id.len()].copy_from_slice(id.as_bytes());
        } else {
            bytes[..4].copy_from_slice(&(arena.len() as u32).to_le_bytes());
            arena.extend_from_slice(id.as_bytes());
        }
        Self {
            len: id.len().min(usize::from(u16::MAX)) as u16,
            bytes,
        }
    }

    fn get<'a>(&'a self, arena: &'a [u8]) -> &'a [u8] {
        let len = usize::from(self.len);
        if len <= INLINE {
            return &self.bytes[..len];
        }
        let at = u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]]);
        &arena[at as usize..at as usize + len]
    }
}

#[derive(Default)]
pub struct Devices {
    /// Open addressing with linear probing over `tag << 32 | (slot + 1)` words (0: empty),
    /// at most half full, so a probe usually reads one word.
    index: Vec<u64>,
    /// Keyed per process: ids come from outside, and a fixed hash would let someone choose
    /// ids that all probe the same words.
    hasher: foldhash::fast::RandomState,
    ids: Vec<u8>,
    slots: Vec<Device>,
    /// Slots of removed devices, reused before the table grows.
    free: Vec<u32>,
    /// The next [`Device::seq`].
    next_seq: u64,
}

impl Devices {
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every slot ever used: removed devices' slots are in range too, with nothing in them.
    pub fn slot_range(&self) -> impl Iterator<Item = DeviceSlot> {
        (0..self.slots.len() as u32).map(DeviceSlot)
    }

    /// The live devices' slots.
    pub fn live(&self) -> impl Iterator<Item = DeviceSlot> + '_ {
        self.slot_range().filter(|&s| !self.get(s).id.is_free())
    }

    /// The [`Device::seq`] the next device to ping gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.max(1)
    }

    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// Numbers the device as the next to have pinged, if it has not yet.
    pub fn mark_pinged(&mut self, s: DeviceSlot) {
        if self.slots[s.0 as usize].seq == 0 {
            let seq = self.next_seq();
            self.slots[s.0 as usize].seq = seq;
            self.next_seq = seq + 1;
        }
    }

    /// The hash [`Devices::find_hashed`], [`Devices::slot_hashed`] and the prefetches take.
    pub fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id.as_bytes())
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.index.len() - 1)
    }

    pub fn find(&self, id: &str) -> Option<DeviceSlot> {
        self.find_hashed(id, self.hash(id))
    }

    pub fn find_hashed(&self, id: &str, hash: u64) -> Option<DeviceSlot> {
        if self.index.is_empty() {
            return None;
        }
        let (tag, mask) = (hash >> 32, self.index.len() - 1);
        let mut i = self.home(hash);
        loop {
            match self.index[i] {
                0 => return None,
                w if w >> 32 == tag && self.id_of((w as u32) - 1) == id.as_bytes() => {
                    return Some(DeviceSlot((w as u32) - 1))
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Batch stage 1: start loading the index word `hash` probes first.
    pub fn prefetch_index(&self, hash: u64) {
        if !self.index.is_empty() {
            prefetch(&self.index[self.home(hash)]);
        }
    }

    /// Batch stage 2 (index words loaded): start loading the slot the first word with the
    /// hash's tag points at — almost always the device's own.
    pub fn prefetch_slot(&self, hash: u64) {
        if self.index.is_empty() {
            return;
        }
        let (tag, mask) = (hash >> 32, self.index.len() - 1);
        let mut i = self.home(hash);
        while let w @ 1.. = self.index[i] {
            if w >> 32 == tag {
                prefetch(&self.slots[(w as u32 - 1) as usize]);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Batch stage 3 (slots loaded): start loading the device's state on the heap.
    pub fn prefetch_state(&self, s: DeviceSlot) {
        let d = self.get(s);
        d.tracks.prefetch();
        if let Some(p) = &d.profile {
            prefetch(&**p);
        }
    }

    /// The device's slot, added (with empty state) if it is new. Ids are at most 128
    /// characters, 512 bytes (the decoders refuse longer ones).
    pub fn slot(&mut self, id: &str) -> DeviceSlot {
        self.slot_hashed(id, self.hash(id))
    }

    pub fn slot_hashed(&mut self, id: &str, hash: u64) -> DeviceSlot {
        if let Some(s) = self.find_hashed(id, hash) {
            return s;
        }
        if (self.len() + 1) * 2 > self.index.len() {
            self.grow();
        }
        let device = Device {
            id: Id::new(id, &mut self.ids),
            newest: Timestamp(i64::MIN),
            seq: 0,
            profile: None,
            tracks: Tracks::default(),
            ledger: Ledger::default(),
        };
        let s = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = device;
                s
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    self.slots.reserve(self.slots.len().max(16));
                    huge_pages(self.slots.as_ptr(), self.slots.capacity());
                }
                self.slots.push(device);
                self.slots.len() as u32 - 1
            }
        };
        self.place(hash, s);
        DeviceSlot(s)
    }

    /// Forgets what a device did (presence, offers, seq); a device with a profile keeps it and
    /// its slot, one without is removed.
    pub fn forget(&mut self, s: DeviceSlot) {
        let dev = &mut self.slots[s.0 as usize];
        if dev.profile.is_some() {
            dev.newest = Timestamp(i64::MIN);
            dev.seq = 0;
            dev.tracks = Tracks::default();
            dev.ledger = Ledger::default();
        } else {
            self.remove(s);
        }
    }

    /// Removes a device: its slot is reused by the next new one. A long id's bytes stay in the
    /// arena (ids over 38 bytes are rare; expiry is per days).
    fn remove(&mut self, s: DeviceSlot) {
        let hash = self.hasher.hash_one(self.id_of(s.0));
        let mask = self.index.len() - 1;
        let mut i = self.home(hash);
        while self.index[i] as u32 != s.0 + 1 {
            i = (i + 1) & mask;
        }
        // Backward-shift deletion: pull later words of the probe run into the hole whenever
        // their home does not lie cyclically in (hole, word], so every probe still finds them.
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let w = self.index[j];
            if w == 0 {
                break;
            }
            let home = self.home(self.hasher.hash_one(self.id_of((w as u32) - 1)));
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.index[i] = w;
                i = j;
            }
        }
        self.index[i] = 0;
        self.slots[s.0 as usize] = Device {
            id: Id::FREE,
            newest: Timestamp(i64::MIN),
            seq: 0,
            profile: None,
            tracks: Tracks::default(),
            ledger: Ledger::default(),
        };
        self.free.push(s.0);
    }

    fn place(&mut self, hash: u64, s: u32) {
        let mask = self.index.len() - 1;
        let mut i = self.home(hash);
        while self.index[i] != 0 {
            i = (i + 1) & mask;
        }
        self.index[i] = (hash >> 32) << 32 | u64::from(s + 1);
    }

    /// Doubles the index and files every device again.
    fn grow(&mut self) {
        self.index = vec![0; (self.index.len() * 2).max(16)];
        huge_pages(self.index.as_ptr(), self.index.len());
        for s in 0..self.slots.len() as u32 {
            if !self.slots[s as usize].id.is_free() {
                let hash = self.hasher.hash_one(self.id_of(s));
                self.place(hash, s);
            }
        }
    }

    fn id_of(&self, s: u32) -> &[u8] {
        id_bytes(&self.ids, &self.slots[s as usize])
    }

    pub fn id(&self, s: DeviceSlot) -> &str {
        // Ids entered the arena as whole `&str`s.
        std::str::from_utf8(self.id_of(s.0)).unwrap_or_default()
    }

    pub fn get(&self, s: DeviceSlot) -> &Device {
        &self.slots[s.0 as usize]
    }

    pub fn get_mut(&mut self, s: DeviceSlot) -> &mut Device {
        &mut self.slots[s.0 as usize]
    }
}

fn id_bytes<'a>(ids: &'a [u8], d: &'a Device) -> &'a [u8] {
    d.id.get(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Adding and forgetting in any order: every device still there is found in its own
        /// slot, every one forgotten is gone, and slots are reused.
        #[test]
        fn forgetting_devices_keeps_the_rest_findable(ops in prop::collection::vec((0u8..40, any::<bool>()), 1..300)) {
            let mut devices = Devices::default();
            let mut live = std::collections::HashMap::new();
            for (n, add) in ops {
                let id = format!("d-{n}");
                if add {
                    let s = devices.slot(&id);
                    prop_assert_eq!(*live.entry(id.clone()).or_insert(s), s);
                } else if let Some(s) = live.remove(&id) {
                    devices.forget(s);
                }
                prop_assert_eq!(devices.len(), live.len());
                for n in 0..40u8 {
                    let id = format!("d-{n}");
                    prop_assert_eq!(devices.find(&id), live.get(&id).copied());
                }
            }
            prop_assert!(devices.slot_range().count() <= 40);
        }
    }

    #[test]
    fn ids_of_any_allowed_length_find_their_own_slot() {
        let mut devices = Devices::default();
        let long = "🐉".repeat(crate::ping::MAX_DEVICE_ID_CHARS); // 512 bytes
        let (a, b) = (devices.slot("d-1"), devices.slot(&long));
        assert_ne!(a, b);
        assert_eq!((devices.slot("d-1"), devices.slot(&long)), (a, b));
        assert_eq!((devices.id(a), devices.id(b)), ("d-1", long.as_str()));
        assert_eq!(devices.find("d-2"), None);
        assert_eq!(devices.len(), 2);
        // Either side of the inline limit.
        let (fits, spills) = ("x".repeat(INLINE), "y".repeat(INLINE + 1));
        let (c, d) = (devices.slot(&fits), devices.slot(&spills));
        assert_eq!(
            (devices.id(c), devices.id(d)),
            (fits.as_str(), spills.as_str())
        );
        assert_eq!(
            (devices.find(&fits), devices.find(&spills)),
            (Some(c), Some(d))
        );
    }
}
