//! Reload: how state kept against one [`World`] is carried to the next.
//!
//! A world numbers its fences, beacons and campaigns densely, and per-device state holds those
//! numbers (tracks, offer ledgers); a new world numbers everything afresh. A [`Renumbering`] maps
//! each old number to its new one by stable id — fence id, beacon uuid/major/minor, campaign id —
//! built once per reload, so that `Engine::replace_world` can then carry every device's state
//! over in one pass without looking anything up by name.
//!
//! Campaigns are never forgotten: per-campaign state (ledger entries, budgets, counters) is
//! indexed by *campaign slot* — the world's campaigns first (slot = [`CampaignIdx`]), then those
//! a reload removed (retired), by id — so a campaign removed and added back finds its state.
//!
//! Pure: no I/O, and the result depends only on the two worlds and the retired ids.

use crate::beacon::BeaconIdx;
use crate::campaign::CampaignIdx;
use crate::fence::FenceIdx;
use crate::world::World;

/// The old world's indexes in the new world.
#[derive(Debug)]
pub struct Renumbering {
    /// By old [`FenceIdx`]; `None` where the fence is gone.
    pub fences: Vec<Option<FenceIdx>>,
    /// By old [`BeaconIdx`]; `None` where the beacon is gone.
    pub beacons: Vec<Option<BeaconIdx>>,
    pub campaigns: CampaignSlots,
}

/// Old campaign slots → new ones. Every old slot has a new one: a campaign the new world lacks
/// is retired, not dropped.
#[derive(Debug)]
pub struct CampaignSlots {
    /// By old slot.
    to: Vec<CampaignIdx>,
    /// The campaigns the new world lacks, by id ascending: slots `live..`.
    retired: Vec<String>,
    /// The new world's campaigns: slots `0..live`.
    live: usize,
}

impl Renumbering {
    /// From `old` (with the ids of the campaigns retired so far, ascending, in slots after its
    /// own) to `new`.
    pub fn new(old: &World, retired: &[String], new: &World) -> Self {
        fn fence_ids(w: &World) -> impl Iterator<Item = &str> {
            w.fences.fences().iter().map(|f| f.id.as_str())
        }
        let fences = positions(fence_ids(old), fence_ids(new))
            .into_iter()
            .map(|p| p.map(FenceIdx))
            .collect();
        let beacons = old
            .beacons
            .iter()
            .map(|b| new.beacons.get(&b.id).map(|(i, _)| i))
            .collect();
        Self {
            fences,
            beacons,
            campaigns: CampaignSlots::new(old, retired, new),
        }
    }
}

impl CampaignSlots {
    fn new(old: &World, retired: &[String], new: &World) -> Self {
        // Every campaign the engine knows, by id (live and retired ids are disjoint).
        let mut known: Vec<(&str, usize)> = old
            .campaigns
            .iter()
            .map(|(_, c)| c.id.as_str())
            .chain(retired.iter().map(String::as_str))
            .enumerate()
            .map(|(slot, id)| (id, slot))
            .collect();
        known.sort_unstable();
        let found = positions(
            known.iter().map(|&(id, _)| id),
            new.campaigns.iter().map(|(_, c)| c.id.as_str()),
        );
        let live = new.campaigns.len();
        let mut to = vec![CampaignIdx(0); known.len()];
        let mut now_retired = Vec::new();
        for (&(id, slot), found) in known.iter().zip(found) {
            to[slot] = CampaignIdx(found.unwrap_or_else(|| {
                now_retired.push(id.to_owned());
                (live + now_retired.len() - 1) as u32
            }));
        }
        Self {
            to,
            retired: now_retired,
            live,
        }
    }

    /// The new slot of an old one.
    pub fn get(&self, old: CampaignIdx) -> CampaignIdx {
        self.to[old.get()]
    }

    /// How many slots there are now.
    fn len(&self) -> usize {
        self.live + self.retired.len()
    }

    /// Per-slot values moved to their new slots; a campaign new to the engine starts at the
    /// default.
    pub fn carry<T: Copy + Default>(&self, old: &[T]) -> Vec<T> {
        let mut new = vec![T::default(); self.len()];
        for (v, to) in old.iter().zip(&self.to) {
            new[to.get()] = *v;
        }
        new
    }

    /// The ids of the retired campaigns, ascending, for the next reload.
    pub fn into_retired(self) -> Vec<String> {
        self.retired
    }
}

/// For each of `old` (ascending), its position in `new` (ascending), if there: a merge, linear
/// in both.
fn positions<'a>(
    old: impl Iterator<Item = &'a str>,
    new: impl Iterator<Item = &'a str>,
) -> Vec<Option<u32>> {
    let mut new = new.enumerate().peekable();
    old.map(|id| {
        while new.next_if(|&(_, n)| n < id).is_some() {}
        new.next_if(|&(_, n)| n == id).map(|(i, _)| i as u32)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::beacon::BeaconRegistry;
    use crate::campaign::parse_campaigns;
    use crate::caps::Suppression;
    use crate::engine::{Engine, EngineConfig};
    use crate::fence::{parse_fences, FenceIndex, IndexOptions, LoadMode};
    use crate::offer::Output;
    use crate::time::Timestamp;

    /// 100 m circles on one street, by id and longitude (about 950 m per 0.01°).
    const SHOP: (&str, f64) = ("f-shop", 121.40);
    const CAFE: (&str, f64) = ("f-cafe", 121.41);
    /// Sorts before the others: inserting it renumbers them.
    const FRONT: (&str, f64) = ("a-front", 121.45);
    const FAR: f64 = 121.43;
    const LAT: f64 = 31.2;

    fn world(fences: &[(&str, f64)], campaigns: impl IntoIterator<Item = Value>) -> Arc<World> {
        let features: Vec<Value> = fences
            .iter()
            .map(|&(id, lon)| {
                json!({"type": "Feature", "id": id,
                       "properties": {"store_id": format!("s-{id}"), "radius_m": 100},
                       "geometry": {"type": "Point", "coordinates": [lon, LAT]}})
            })
            .collect();
        let file = json!({"type": "FeatureCollection", "features": features}).to_string();
        let fences = parse_fences(file.as_bytes(), LoadMode::Strict)
            .unwrap()
            .fences;
        let list = Value::Array(campaigns.into_iter().collect()).to_string();
        let campaigns = parse_campaigns(list.as_bytes(), false, "test").unwrap();
        let index = FenceIndex::new(fences, IndexOptions::default());
        Arc::new(World::new(index, BeaconRegistry::default(), campaigns, 25.0).unwrap())
    }

    /// An anonymous campaign at one fence.
    fn campaign(id: &str, fence: &str, trigger: Value, more: Value) -> Value {
        let mut c = json!({"id": id, "name": id, "anonymous": true, "trigger": trigger,
                           "where": {"fences": [fence]}, "offer": {"title": "t", "ttl_s": 60}});
        if let (Some(c), Value::Object(more)) = (c.as_object_mut(), more) {
            c.extend(more);
        }
        c
    }

    fn enter(id: &str, fence: &str) -> Value {
        let cooldown = json!({"caps": {"cooldown_s": 86_400}});
        campaign(id, fence, json!({"type": "enter"}), cooldown)
    }

    const T0: &str = "2026-11-22T02:00:00Z";

    struct Run {
        engine: Engine,
        out: Output,
    }

    impl Run {
        fn new(world: Arc<World>) -> Self {
            Self {
                engine: Engine::new(world, EngineConfig::default()),
                out: Output::default(),
            }
        }

        /// A 5 m fix of `device` at `lon`, `s` seconds after `T0`: what it caused.
        fn fix(&mut self, device: &str, s: i64, lon: f64) -> Vec<String> {
            let ts = Timestamp(Timestamp::parse(T0).unwrap().0 + s * 1000);
            let line = json!({"type": "location", "device_id": device, "ts": ts.to_string(),
                              "lat": LAT, "lon": lon, "accuracy_m": 5})
            .to_string();
            let ping = crate::ping::decode(line.as_bytes()).unwrap();
            self.engine.on_ping(&ping, &mut self.out);
            let world = self.engine.world().clone();
            self.drain(&world)
        }

        /// Replaces the world: what that caused.
        fn reload(&mut self, world: Arc<World>) -> Vec<String> {
            let old = self.engine.replace_world(world, &mut self.out);
            self.drain(&old)
        }

        /// `out`, as `event fence @s` and `offer campaign trigger fence @s`.
        fn drain(&mut self, world: &World) -> Vec<String> {
            let t0 = Timestamp::parse(T0).unwrap().0;
            let at = |ts: Timestamp| (ts.0 - t0) / 1000;
            let fence = |f| world.fences.fence(f).id.as_str();
            let mut seen: Vec<String> = (self.out.presence.iter())
                .map(|e| format!("{} {} @{}", e.event.name(), fence(e.fence), at(e.ts)))
                .collect();
            seen.extend(self.out.offers.iter().map(|o| {
                let c = &world.campaigns.get(o.campaign).id;
                let t = o.trigger.name();
                format!("offer {c} {t} {} @{}", fence(o.fence), at(o.event_ts))
            }));
            self.out.clear();
            seen
        }

        fn suppressed(&self, campaign: &str, why: Suppression) -> u64 {
            let world = self.engine.world();
            let (ci, _) = world
                .campaigns
                .iter()
                .find(|(_, c)| c.id == campaign)
                .unwrap();
            self.engine.stats().suppressed[ci.get()][why.index()]
        }
    }

    #[test]
    fn positions_merge_sorted_ids() {
        let got = positions(
            ["a", "c", "d", "f"].into_iter(),
            ["b", "c", "f"].into_iter(),
        );
        assert_eq!(got, [None, Some(1), None, Some(2)]);
    }

    #[test]
    fn fences_follow_their_ids_and_campaigns_keep_their_slots_once_removed() {
        let (a, b, c) = (
            enter("a", "f-shop"),
            enter("b", "f-shop"),
            enter("c", "f-shop"),
        );
        let old = world(&[SHOP, CAFE], [a.clone(), b.clone(), c.clone()]);
        let new = world(&[FRONT, SHOP], [a.clone(), c.clone()]);
        let map = Renumbering::new(&old, &[], &new);
        // Sorted by id: f-cafe (gone), f-shop 1 → 1 behind a-front.
        assert_eq!(map.fences, [None, Some(FenceIdx(1))]);
        // a, c keep their places; b moves past the live ones, retired.
        let slots = &map.campaigns;
        let to: Vec<u32> = (0..3).map(|i| slots.get(CampaignIdx(i)).0).collect();
        assert_eq!(to, [0, 2, 1]);
        assert_eq!(slots.carry(&[10u64, 20, 30]), [10, 30, 20]);
        // Added back, b finds its slot's state again.
        let retired = map.campaigns.into_retired();
        assert_eq!(retired, ["b"]);
        let again = world(&[SHOP], [a, b, c]);
        let back = Renumbering::new(&new, &retired, &again).campaigns;
        assert_eq!(back.carry(&[10u64, 30, 20]), [10, 20, 30]);
        assert!(back.into_retired().is_empty());
    }

    #[test]
    fn a_removed_campaign_makes_no_offers_and_the_others_keep_their_cooldowns() {
        let (a, b) = (enter("a-shop", "f-shop"), enter("b-cafe", "f-cafe"));
        let mut run = Run::new(world(&[SHOP, CAFE], [a, b.clone()]));
        assert_eq!(
            run.fix("d1", 0, CAFE.1),
            ["enter f-cafe @0", "offer b-cafe enter f-cafe @0"]
        );
        assert_eq!(
            run.fix("d2", 0, SHOP.1),
            ["enter f-shop @0", "offer a-shop enter f-shop @0"]
        );
        run.fix("d1", 100, FAR);
        run.fix("d2", 100, FAR);
        // b-cafe moves from slot 1 to 0, where a-shop's offer to d2 was.
        assert!(run.reload(world(&[SHOP, CAFE], [b])).is_empty());
        assert_eq!(run.fix("d2", 200, SHOP.1), ["enter f-shop @200"]);
        assert_eq!(run.fix("d1", 200, CAFE.1), ["enter f-cafe @200"]);
        assert_eq!(run.suppressed("b-cafe", Suppression::Cooldown), 1);
        assert_eq!(
            run.fix("d3", 300, CAFE.1),
            ["enter f-cafe @300", "offer b-cafe enter f-cafe @300"]
        );
    }

    #[test]
    fn a_removed_fence_ends_its_visits_as_silence_would_and_makes_no_offer() {
        let bye = campaign("bye", "f-shop", json!({"type": "exit"}), json!({}));
        let mut run = Run::new(world(&[SHOP, CAFE], [bye.clone()]));
        run.fix("d1", 0, SHOP.1);
        run.fix("d1", 100, SHOP.1);
        run.fix("d2", 150, CAFE.1);
        // Dated at d1's last inside fix, named in the old world; no `bye` offer.
        assert_eq!(run.reload(world(&[CAFE], [bye])), ["exit f-shop @100"]);
        assert_eq!(run.engine.stats().presence, [2, 0, 1]);
        assert!(run.fix("d1", 200, FAR).is_empty());
        assert_eq!(run.fix("d2", 250, FAR), ["exit f-cafe @250"]);
    }

    #[test]
    fn a_new_fence_and_campaign_work_from_the_next_ping() {
        let a = enter("a-shop", "f-shop");
        let mut run = Run::new(world(&[SHOP], [a.clone()]));
        assert!(run.fix("d1", 0, CAFE.1).is_empty());
        run.reload(world(&[SHOP, CAFE], [a, enter("b-cafe", "f-cafe")]));
        assert_eq!(
            run.fix("d1", 100, CAFE.1),
            ["enter f-cafe @100", "offer b-cafe enter f-cafe @100"]
        );
    }

    #[test]
    fn a_budget_and_cooldowns_survive_reloads_even_removing_and_re_adding_the_campaign() {
        let a = campaign(
            "a-shop",
            "f-shop",
            json!({"type": "enter"}),
            json!({"budget": {"total": 2}, "caps": {"cooldown_s": 86_400}}),
        );
        let other = enter("b-cafe", "f-cafe");
        let with = || world(&[SHOP, CAFE], [a.clone(), other.clone()]);
        let mut run = Run::new(with());
        for d in ["d1", "d2"] {
            assert_eq!(run.fix(d, 0, SHOP.1).len(), 2);
            run.fix(d, 100, FAR);
        }
        run.reload(with());
        run.reload(world(&[SHOP, CAFE], [other.clone()]));
        run.reload(with());
        assert_eq!(run.fix("d3", 200, SHOP.1), ["enter f-shop @200"]);
        assert_eq!(run.suppressed("a-shop", Suppression::TotalBudget), 1);
        assert_eq!(run.engine.budgets().spent(CampaignIdx(0)), 2);
        assert_eq!(run.fix("d1", 300, SHOP.1), ["enter f-shop @300"]);
        assert_eq!(run.suppressed("a-shop", Suppression::Cooldown), 1);
        assert_eq!(run.engine.stats().offers, [2, 0]);
    }

    #[test]
    fn offers_of_removed_campaigns_still_count_toward_the_daily_cap() {
        let ours = ["e1", "e2", "e3"].map(|id| enter(id, "f-shop"));
        let mut run = Run::new(world(&[SHOP], ours));
        // Each visit, the first campaign not cooling down wins: three offers, the daily cap.
        for (i, id) in ["e1", "e2", "e3"].into_iter().enumerate() {
            let s = 200 * i as i64;
            let offer = format!("offer {id} enter f-shop @{s}");
            assert_eq!(run.fix("d1", s, SHOP.1)[1], offer);
            run.fix("d1", s + 100, FAR);
        }
        run.reload(world(&[SHOP], [enter("e4", "f-shop")]));
        assert_eq!(run.fix("d1", 600, SHOP.1), ["enter f-shop @600"]);
        assert_eq!(run.suppressed("e4", Suppression::DailyCap), 1);
    }

    #[test]
    fn renumbered_fences_keep_presence_and_dwell_and_moved_ones_are_judged_again() {
        let dwell = campaign(
            "linger",
            "f-shop",
            json!({"type": "dwell", "min_s": 300}),
            json!({}),
        );
        let mut run = Run::new(world(&[SHOP], [dwell.clone()]));
        run.fix("d1", 0, SHOP.1);
        run.fix("d1", 200, SHOP.1);
        // f-shop goes from index 0 to 1: no second enter, the dwell timer runs on.
        assert!(run
            .reload(world(&[FRONT, SHOP], [dwell.clone()]))
            .is_empty());
        assert_eq!(
            run.fix("d1", 400, SHOP.1),
            ["dwell f-shop @400", "offer linger dwell f-shop @400"]
        );
        // The shop's circle moves to the cafe's place: the visit goes on until a fix says no.
        let moved = ("f-shop", CAFE.1);
        assert!(run.reload(world(&[moved], [dwell])).is_empty());
        assert_eq!(run.fix("d1", 500, SHOP.1), ["exit f-shop @500"]);
    }
}
