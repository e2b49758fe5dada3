//! Stores: what campaigns target and visits are counted at. Several fences (the shop, its car
//! park, a circle around it) and beacons belong to one store.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::beacon::{BeaconIdx, BeaconRegistry};
use crate::fence::{FenceIdx, FenceIndex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreIdx(pub u32);

impl StoreIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, thiserror::Error)]
#[error("beacon {beacon} stands in store {store_id:?}, which no fence belongs to")]
pub struct UnknownStore {
    pub beacon: String,
    pub store_id: String,
}

/// Store ids, and which fences and beacons belong to each store.
#[derive(Debug, Default)]
pub struct Stores {
    ids: Vec<String>,
    by_id: FxHashMap<String, StoreIdx>,
    fences: Vec<SmallVec<[FenceIdx; 2]>>,
    /// The fences a beacon sighting places a device in: the store's `kind: store` fences, or
    /// its polygons if none is marked — not the wide circles around it.
    premises: Vec<SmallVec<[FenceIdx; 1]>>,
    of_fence: Vec<StoreIdx>,
    of_beacon: Vec<StoreIdx>,
}

impl Stores {
    /// Every beacon must stand in a store some fence belongs to: a sighting places the device at
    /// that store's fences.
    pub fn new(fences: &FenceIndex, beacons: &BeaconRegistry) -> Result<Self, UnknownStore> {
        let mut stores = Self::default();
        for (i, fence) in fences.fences().iter().enumerate() {
            let id = &fence.props.store_id;
            let s = match stores.by_id.get(id) {
                Some(&s) => s,
                None => {
                    let s = StoreIdx(stores.ids.len() as u32);
                    stores.by_id.insert(id.clone(), s);
                    stores.ids.push(id.clone());
                    stores.fences.push(SmallVec::new());
                    s
                }
            };
            stores.fences[s.get()].push(FenceIdx(i as u32));
            stores.of_fence.push(s);
        }
        for list in &stores.fences {
            let of = |keep: &dyn Fn(&crate::fence::Fence) -> bool| -> SmallVec<[FenceIdx; 1]> {
                list.iter()
                    .copied()
                    .filter(|&f| keep(fences.fence(f)))
                    .collect()
            };
            let mut premises = of(&|f| f.props.kind.as_deref() == Some("store"));
            if premises.is_empty() {
                premises = of(&|f| matches!(f.shape, crate::fence::Shape::Area(_)));
            }
            stores.premises.push(premises);
        }
        for b in beacons.iter() {
            let s = stores.lookup(&b.store_id).ok_or_else(|| UnknownStore {
                beacon: b.id.to_string(),
                store_id: b.store_id.clone(),
            })?;
            stores.of_beacon.push(s);
        }
        Ok(stores)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn lookup(&self, id: &str) -> Option<StoreIdx> {
        self.by_id.get(id).copied()
    }

    pub fn id(&self, s: StoreIdx) -> &str {
        &self.ids[s.get()]
    }

    /// The store's fences, ascending.
    pub fn fences(&self, s: StoreIdx) -> &[FenceIdx] {
        &self.fences[s.get()]
    }

    /// Where a beacon of the store places a device (see the field).
    pub fn premises(&self, s: StoreIdx) -> &[FenceIdx] {
        &self.premises[s.get()]
    }

    pub fn of_fence(&self, f: FenceIdx) -> StoreIdx {
        self.of_fence[f.get()]
    }

    pub fn of_beacon(&self, b: BeaconIdx) -> StoreIdx {
        self.of_beacon[b.0 as usize]
    }
}
