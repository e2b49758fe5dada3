//! The state changelog: what one partition's engine knows, as the records of a compacted Kafka
//! topic co-partitioned with pings, so the next owner of the partition — another instance after
//! a rebalance, or this one after a crash — goes on exactly where the last recorded batch ended.
//!
//! - Key = device id: the device's state (first-ping seq, newest time, presence tracks, offer
//!   ledger); a tombstone once it is forgotten (`engine.retention_days`). Profiles are not here:
//!   they have their own topic.
//! - Key [`PARTITION_KEY`] (not UTF-8, so never a device id): the partition's own state — the
//!   pings offset to go on from, the watermark, the next seq, the budgets spent. It is written
//!   last in each batch's records, so it marks them complete.
//!
//! Records name fences, beacons and campaigns by stable id, so they restore into a changed world
//! (what it lacks is dropped). The recovery rule, and why it is exact, is in the README
//! ("State and recovery"): records after the last partition record are a torn batch, ignored on
//! restore and overwritten by the next owner before it decides anything.

use crate::beacon::BeaconId;
use crate::campaign::CampaignIdx;
use crate::caps::{Issued, Ledger};
use crate::device::Device;
use crate::fence::FenceIdx;
use crate::local_time::LocalDay;
use crate::presence::{Subject, Track, Tracks};
use crate::time::Timestamp;
use crate::world::World;

/// The key of the partition record.
pub const PARTITION_KEY: &[u8] = b"\xffbeckon.partition";

const VERSION: u8 = 1;

/// A changelog record that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("changelog record {key}: {reason}")]
pub struct CorruptRecord {
    pub key: String,
    pub reason: &'static str,
}

/// Changelog records to produce, in order, in one buffer.
#[derive(Debug, Default)]
pub struct Records {
    buf: Vec<u8>,
    spans: Vec<(usize, usize, Option<usize>)>,
}

impl Records {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// `(key, value)` pairs; `None` is a tombstone.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        (self.spans.iter()).map(|&(k, v, end)| (&self.buf[k..v], end.map(|e| &self.buf[v..e])))
    }

    fn put(&mut self, key: &[u8], value: impl FnOnce(&mut Vec<u8>)) {
        let k = self.buf.len();
        self.buf.extend_from_slice(key);
        let v = self.buf.len();
        value(&mut self.buf);
        self.spans.push((k, v, Some(self.buf.len())));
    }

    pub(crate) fn tombstone(&mut self, key: &[u8]) {
        let k = self.buf.len();
        self.buf.extend_from_slice(key);
        self.spans.push((k, self.buf.len(), None));
    }

    /// A device's state.
    pub(crate) fn device(&mut self, id: &str, dev: &Device, world: &World, retired: &[String]) {
        self.put(id.as_bytes(), |b| {
            b.push(VERSION);
            varint(b, dev.seq);
            b.extend_from_slice(&dev.newest.0.to_le_bytes());
            varint(b, dev.tracks.len() as u64);
            for t in dev.tracks.iter() {
                match t.subject() {
                    Subject::Fence(f) => {
                        b.push(0);
                        bytes(b, world.fences.fence(f).id.as_bytes());
                    }
                    Subject::Near(f) => {
                        b.push(1);
                        bytes(b, world.fences.fence(f).id.as_bytes());
                    }
                    Subject::Beacon(i) => {
                        let id = world.beacons.beacon(i).id;
                        b.push(2);
                        b.extend_from_slice(&id.uuid.to_le_bytes());
                        b.extend_from_slice(&id.major.to_le_bytes());
                        b.extend_from_slice(&id.minor.to_le_bytes());
                    }
                }
                for v in [t.since.0, t.last.0, t.aux] {
                    b.extend_from_slice(&v.to_le_bytes());
                }
                b.extend(t.samples.map(|s| s as u8));
                b.extend([t.n, t.flags]);
            }
            varint(b, dev.ledger.len() as u64);
            for e in dev.ledger.iter() {
                bytes(b, campaign_id(world, retired, e.campaign).as_bytes());
                b.extend_from_slice(&e.at.0.to_le_bytes());
            }
        });
    }

    /// The partition's state; it completes the records before it.
    pub(crate) fn partition(&mut self, p: &PartitionState) {
        self.put(PARTITION_KEY, |b| {
            b.push(VERSION);
            b.extend_from_slice(&p.next_offset.to_le_bytes());
            b.extend_from_slice(&p.watermark.0.to_le_bytes());
            varint(b, p.next_seq);
            varint(b, p.budgets.len() as u64);
            for (id, total, daily) in &p.budgets {
                bytes(b, id.as_bytes());
                varint(b, *total);
                varint(b, daily.len() as u64);
                for (day, n) in daily {
                    b.extend_from_slice(&day.0.to_le_bytes());
                    varint(b, u64::from(*n));
                }
            }
        });
    }
}

/// What a partition record holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionState {
    /// The pings offset after the last batch these records reflect: where consuming goes on.
    pub next_offset: i64,
    pub watermark: Timestamp,
    pub next_seq: u64,
    pub budgets: Vec<Spent>,
}

/// What one campaign (by id) spent: in total, and per local day.
pub type Spent = (String, u64, Vec<(LocalDay, u32)>);

/// A device's state as read from a record, in `world`'s numbering.
#[derive(Debug)]
pub struct DeviceState {
    pub seq: u64,
    pub newest: Timestamp,
    pub tracks: Tracks,
    pub ledger: Ledger,
}

/// Whether `key` is the partition record's.
pub fn is_partition(key: &[u8]) -> bool {
    key == PARTITION_KEY
}

pub fn decode_device(
    key: &[u8],
    value: &[u8],
    world: &World,
) -> Result<DeviceState, CorruptRecord> {
    device(value, world).map_err(|reason| CorruptRecord {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    })
}

fn device(value: &[u8], world: &World) -> Read<DeviceState> {
    let mut r = Reader(value);
    if r.u8()? != VERSION {
        return Err("unknown version");
    }
    let (seq, newest) = (r.varint()?, Timestamp(r.i64()?));
    let n = r.varint()?;
    let mut tracks = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        let subject = match r.u8()? {
            kind @ (0 | 1) => fence(world, r.bytes()?).map(|f| match kind {
                0 => Subject::Fence(f),
                _ => Subject::Near(f),
            }),
            2 => {
                let uuid = u128::from_le_bytes(r.array()?);
                let (major, minor) = (
                    u16::from_le_bytes(r.array()?),
                    u16::from_le_bytes(r.array()?),
                );
                let id = BeaconId { uuid, major, minor };
                world.beacons.get(&id).map(|(i, _)| Subject::Beacon(i))
            }
            _ => return Err("unknown track kind"),
        };
        let mut t = Track::blank();
        (t.since, t.last, t.aux) = (Timestamp(r.i64()?), Timestamp(r.i64()?), r.i64()?);
        t.samples = r.array::<3>()?.map(|s| s as i8);
        (t.n, t.flags) = (r.u8()?, r.u8()?);
        // A fence or beacon the world no longer has: the track ends, as on a reload.
        if let Some(subject) = subject {
            tracks.push(Track::restored(subject, world, t));
        }
    }
    let n = r.varint()?;
    let mut issued = Vec::with_capacity(n.min(64) as usize);
    for _ in 0..n {
        let id = r.bytes()?;
        let at = Timestamp(r.i64()?);
        if let Some(campaign) = campaign(world, id) {
            issued.push(Issued { campaign, at });
        }
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(DeviceState {
        seq,
        newest,
        tracks: Tracks::restored(tracks),
        ledger: Ledger::restored(issued),
    })
}

pub fn decode_partition(value: &[u8]) -> Result<PartitionState, CorruptRecord> {
    partition(value).map_err(|reason| CorruptRecord {
        key: "(partition)".into(),
        reason,
    })
}

fn partition(value: &[u8]) -> Read<PartitionState> {
    let mut r = Reader(value);
    if r.u8()? != VERSION {
        return Err("unknown version");
    }
    let next_offset = r.i64()?;
    let watermark = Timestamp(r.i64()?);
    let next_seq = r.varint()?;
    let n = r.varint()?;
    let mut budgets = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let id = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| "campaign id not UTF-8")?;
        let total = r.varint()?;
        let days = r.varint()?;
        let mut daily = Vec::with_capacity(days.min(1024) as usize);
        for _ in 0..days {
            let day = LocalDay(i32::from_le_bytes(r.array()?));
            let n = u32::try_from(r.varint()?).map_err(|_| "daily count out of range")?;
            daily.push((day, n));
        }
        budgets.push((id, total, daily));
    }
    if !r.0.is_empty() {
        return Err("trailing bytes");
    }
    Ok(PartitionState {
        next_offset,
        watermark,
        next_seq,
        budgets,
    })
}

/// The id of campaign slot `c`: the world's campaigns first, then those a reload retired.
pub(crate) fn campaign_id<'a>(world: &'a World, retired: &'a [String], c: CampaignIdx) -> &'a str {
    let live = world.campaigns.len();
    match c.get().checked_sub(live) {
        None => &world.campaigns.get(c).id,
        Some(r) => &retired[r],
    }
}

/// A live campaign's slot by id (campaigns are sorted by id).
pub(crate) fn campaign(world: &World, id: &[u8]) -> Option<CampaignIdx> {
    let n = world.campaigns.len();
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        let c = CampaignIdx(mid as u32);
        match world.campaigns.get(c).id.as_bytes().cmp(id) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(c),
        }
    }
    None
}

/// A fence by id (fences are sorted by id).
fn fence(world: &World, id: &[u8]) -> Option<FenceIdx> {
    let fences = world.fences.fences();
    fences
        .binary_search_by(|f| f.id.as_bytes().cmp(id))
        .ok()
        .map(|i| FenceIdx(i as u32))
}

fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn bytes(b: &mut Vec<u8>, v: &[u8]) {
    varint(b, v.len() as u64);
    b.extend_from_slice(v);
}

struct Reader<'a>(&'a [u8]);

type Read<T> = Result<T, &'static str>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if self.0.len() < n {
            return Err("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Read<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Read<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn varint(&mut self) -> Read<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    fn bytes(&mut self) -> Read<&'a [u8]> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| "length out of range")?)
    }
}
