//! What the core emits (CONTRACTS §6): offers and presence events as typed values, and their
//! JSON encoding, done once at the edge into a reused buffer.
//!
//! Offer ids and coupon codes are SHA-256 digests of what the offer is (campaign, device, fence,
//! trigger, event time): the same input yields the same bytes on every run and machine, so
//! consumers can deduplicate and a replay reproduces a day exactly.

use compact_str::CompactString;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::campaign::{CampaignIdx, Piece, Template, TriggerKind};
use crate::fence::FenceIdx;
use crate::sphere::Meters;
use crate::time::Timestamp;
use crate::world::World;

#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// Ids up to 24 bytes are kept inline: no allocation per offer or presence event.
    pub device_id: CompactString,
    pub campaign: CampaignIdx,
    pub fence: FenceIdx,
    pub trigger: TriggerKind,
    pub event_ts: Timestamp,
    pub distance: Meters,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresenceKind {
    Enter,
    Dwell,
    Exit,
}

impl PresenceKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Enter => "enter",
            Self::Dwell => "dwell",
            Self::Exit => "exit",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PresenceEvent {
    pub device_id: CompactString,
    pub fence: FenceIdx,
    pub event: PresenceKind,
    pub ts: Timestamp,
    /// Seconds inside the fence so far (0 on enter).
    pub dwell_s: u64,
}

/// What the core emitted for one input, in order. The caller owns and clears it.
#[derive(Debug, Default)]
pub struct Output {
    pub offers: Vec<Offer>,
    pub presence: Vec<PresenceEvent>,
}

impl Output {
    pub fn clear(&mut self) {
        self.offers.clear();
        self.presence.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.offers.is_empty() && self.presence.is_empty()
    }
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl Offer {
    fn digest(&self, world: &World, domain: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            domain,
            &world.campaigns.get(self.campaign).id,
            &self.device_id,
            &world.fences.fence(self.fence).id,
            self.trigger.name(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(self.event_ts.0.to_be_bytes());
        h.finalize().into()
    }

    /// 32 hex digits (128 bits).
    pub fn offer_id(&self, world: &World) -> String {
        self.digest(world, "beckon/offer/v1")[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The campaign's prefix and 16 Crockford base-32 characters (80 bits), if it has coupons.
    pub fn coupon_code(&self, world: &World) -> Option<String> {
        let prefix = world
            .campaigns
            .get(self.campaign)
            .offer
            .coupon_prefix
            .as_ref()?;
        let d = self.digest(world, "beckon/coupon/v1");
        let bits = d[..10]
            .iter()
            .fold(0u128, |acc, &b| acc << 8 | u128::from(b));
        let code: String = (0..16)
            .rev()
            .map(|i| CROCKFORD[(bits >> (i * 5)) as usize & 31] as char)
            .collect();
        Some(format!("{prefix}{code}"))
    }

    pub fn expires_at(&self, world: &World) -> Timestamp {
        let ttl = world.campaigns.get(self.campaign).offer.ttl_s;
        Timestamp(self.event_ts.0 + i64::from(ttl) * 1000)
    }

    /// Appends the offer's JSON (CONTRACTS §6) and a newline.
    pub fn encode(&self, world: &World, buf: &mut Vec<u8>) {
        let c = world.campaigns.get(self.campaign);
        let fence = world.fences.fence(self.fence);
        let coupon = self.coupon_code(world);
        let expires = self.expires_at(world);
        let render = |t: &Template| render(t, self, world, coupon.as_deref(), expires);
        let wire = WireOffer {
            offer_id: self.offer_id(world),
            device_id: &self.device_id,
            campaign_id: &c.id,
            store_id: &fence.props.store_id,
            fence_id: &fence.id,
            trigger: self.trigger.name(),
            event_ts: self.event_ts.to_string(),
            expires_at: expires.to_string(),
            title: render(&c.offer.title),
            body: render(&c.offer.body),
            coupon_code: coupon.as_deref(),
            distance_m: (self.distance.0 * 10.0).round() / 10.0,
            priority: c.priority,
            metadata: &fence.props.metadata,
        };
        // Serializing plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &wire);
        buf.push(b'\n');
    }
}

#[derive(Serialize)]
struct WireOffer<'a> {
    offer_id: String,
    device_id: &'a str,
    campaign_id: &'a str,
    store_id: &'a str,
    fence_id: &'a str,
    trigger: &'a str,
    event_ts: String,
    expires_at: String,
    title: String,
    body: String,
    coupon_code: Option<&'a str>,
    distance_m: f64,
    priority: i32,
    /// The fence's pass-through properties (CONTRACTS §2).
    metadata: &'a serde_json::Map<String, serde_json::Value>,
}

fn render(
    t: &Template,
    o: &Offer,
    world: &World,
    coupon: Option<&str>,
    expires: Timestamp,
) -> String {
    use std::fmt::Write;
    let fence = world.fences.fence(o.fence);
    let p = &fence.props;
    let mut s = String::new();
    for piece in &t.0 {
        let _ = match piece {
            Piece::Text(t) => write!(s, "{t}"),
            Piece::StoreName => write!(s, "{}", p.name.as_deref().unwrap_or(&p.store_id)),
            Piece::StoreId => write!(s, "{}", p.store_id),
            Piece::FenceId => write!(s, "{}", fence.id),
            Piece::Brand => write!(s, "{}", p.brand.as_deref().unwrap_or_default()),
            Piece::Region => write!(s, "{}", p.region.as_deref().unwrap_or_default()),
            Piece::CampaignName => write!(s, "{}", world.campaigns.get(o.campaign).name),
            Piece::CouponCode => write!(s, "{}", coupon.unwrap_or_default()),
            Piece::ExpiresAt => write!(s, "{expires}"),
            Piece::DistanceM => write!(s, "{:.0}", o.distance.0),
            Piece::Meta(k) => match p.metadata.get(k) {
                Some(serde_json::Value::String(v)) => write!(s, "{v}"),
                Some(serde_json::Value::Null) | None => Ok(()),
                Some(v) => write!(s, "{v}"),
            },
        };
    }
    s
}

impl PresenceEvent {
    /// Appends the event's JSON (CONTRACTS §6) and a newline.
    pub fn encode(&self, world: &World, buf: &mut Vec<u8>) {
        let fence = world.fences.fence(self.fence);
        let wire = WirePresence {
            device_id: &self.device_id,
            fence_id: &fence.id,
            store_id: &fence.props.store_id,
            event: self.event.name(),
            ts: self.ts.to_string(),
            dwell_s: self.dwell_s,
        };
        let _ = serde_json::to_writer(&mut *buf, &wire);
        buf.push(b'\n');
    }
}

#[derive(Serialize)]
struct WirePresence<'a> {
    device_id: &'a str,
    fence_id: &'a str,
    store_id: &'a str,
    event: &'a str,
    ts: String,
    dwell_s: u64,
}
