//! The world the core decides in: fences, beacons, the stores they belong to, and the campaigns
//! compiled against them. Built once and read by every stage (a reload will build a new one).

use crate::beacon::BeaconRegistry;
use crate::campaign::{Campaign, Campaigns};
use crate::fence::FenceIndex;
use crate::store::{Stores, UnknownStore};

pub struct World {
    pub fences: FenceIndex,
    pub beacons: BeaconRegistry,
    pub stores: Stores,
    pub campaigns: Campaigns,
}

impl World {
    /// `reach_slack_m`: see [`Campaigns::compile`] (the presence exit buffer).
    pub fn new(
        fences: FenceIndex,
        beacons: BeaconRegistry,
        campaigns: Vec<Campaign>,
        reach_slack_m: f64,
    ) -> Result<Self, UnknownStore> {
        let stores = Stores::new(&fences, &beacons)?;
        let campaigns = Campaigns::compile(campaigns, &fences, &stores, reach_slack_m);
        Ok(Self {
            fences,
            beacons,
            stores,
            campaigns,
        })
    }
}
