//! The world the core decides in: fences, beacons, the stores they belong to, and the campaigns
//! compiled against them. Built once and read by every stage (a reload will build a new one).

use std::path::PathBuf;

use crate::beacon::{BeaconRegistry, RegistryError};
use crate::campaign::{load_campaigns, Campaign, CampaignFileError, Campaigns};
use crate::config::WorldFiles;
use crate::engine::EngineConfig;
use crate::fence::{load_fences, FenceFileError, FenceIndex, IndexOptions, LoadMode};
use crate::store::{Stores, UnknownStore};

/// Why the files do not make a world; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("{0}: not configured")]
    Missing(&'static str),
    #[error("fences {path}: {source}")]
    Fences {
        path: PathBuf,
        source: FenceFileError,
    },
    #[error("beacons {path}: {source}")]
    Beacons {
        path: PathBuf,
        source: RegistryError,
    },
    #[error("campaigns {path}: {source}")]
    Campaigns {
        path: PathBuf,
        source: CampaignFileError,
    },
    #[error("beacons {path}: {source}")]
    Stores { path: PathBuf, source: UnknownStore },
}

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

    /// The world from its files, refused whole (naming the file and the reason) if any of them
    /// is invalid.
    pub fn load(files: &WorldFiles, engine: &EngineConfig) -> Result<Self, WorldError> {
        let fences_path = files
            .fences
            .as_ref()
            .ok_or(WorldError::Missing("world.fences"))?;
        let campaigns_path = files
            .campaigns
            .as_ref()
            .ok_or(WorldError::Missing("world.campaigns"))?;
        let fences =
            load_fences(fences_path, LoadMode::Strict).map_err(|source| WorldError::Fences {
                path: fences_path.clone(),
                source,
            })?;
        let beacons = match &files.beacons {
            Some(path) => BeaconRegistry::load(path).map_err(|source| WorldError::Beacons {
                path: path.clone(),
                source,
            })?,
            None => BeaconRegistry::default(),
        };
        let campaigns = load_campaigns(campaigns_path).map_err(|source| WorldError::Campaigns {
            path: campaigns_path.clone(),
            source,
        })?;
        let index = FenceIndex::new(fences.fences, IndexOptions::default());
        Self::new(index, beacons, campaigns, engine.presence.exit_buffer_m).map_err(|source| {
            WorldError::Stores {
                path: files.beacons.clone().unwrap_or_default(),
                source,
            }
        })
    }
}
