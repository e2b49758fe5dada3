//! The world the core decides in: fences, beacons, the stores they belong to, and the campaigns
//! compiled against them. Built once from its files ([`World::load`]) and read by every stage;
//! a reload builds a new one the same way and hands it to each running engine
//! (`Engine::replace_world`), so a file that does not load never replaces a world that does.

use std::path::PathBuf;

use crate::beacon::{BeaconRegistry, RegistryError};
use crate::campaign::{load_campaigns, Campaign, CampaignFileError, Campaigns};
use crate::fence::{load_fences, FenceError, FenceFileError, FenceIndex, IndexOptions, LoadMode};
use crate::store::{Stores, UnknownStore};

pub struct World {
    pub fences: FenceIndex,
    pub beacons: BeaconRegistry,
    pub stores: Stores,
    pub campaigns: Campaigns,
}

/// A fence file, how strictly it is read and how it is indexed.
#[derive(Debug, Clone)]
pub struct FenceFile {
    pub path: PathBuf,
    pub mode: LoadMode,
    pub index: IndexOptions,
}

/// The files a world is built from: what `beckon replay` is given, and what the streaming
/// service watches.
#[derive(Debug, Clone)]
pub struct WorldFiles {
    pub fences: FenceFile,
    /// The beacon registry; none: no beacons.
    pub beacons: Option<PathBuf>,
    /// A campaign file, or a directory of them.
    pub campaigns: PathBuf,
}

/// A world built from files, and the fence features lenient loading skipped (for the caller to
/// report: the core does no I/O, logging included).
pub struct LoadedWorld {
    pub world: World,
    pub skipped: Vec<FenceError>,
}

/// Why a world could not be built: which file, and (as the error's source) why.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("loading fences from {}", path.display())]
    Fences {
        path: PathBuf,
        source: FenceFileError,
    },
    #[error("loading beacons from {}", path.display())]
    Beacons {
        path: PathBuf,
        source: RegistryError,
    },
    #[error("loading campaigns from {}", path.display())]
    Campaigns {
        path: PathBuf,
        source: CampaignFileError,
    },
    #[error("joining beacons to stores")]
    Stores(#[source] UnknownStore),
}

impl FenceFile {
    /// The file's fences, indexed, and the features lenient loading skipped.
    pub fn load(&self) -> Result<(FenceIndex, Vec<FenceError>), WorldError> {
        let report = load_fences(&self.path, self.mode).map_err(|source| WorldError::Fences {
            path: self.path.clone(),
            source,
        })?;
        Ok((FenceIndex::new(report.fences, self.index), report.rejected))
    }
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

    /// Reads, validates and joins the files of a world; `reach_slack_m` as for [`World::new`].
    pub fn load(files: &WorldFiles, reach_slack_m: f64) -> Result<LoadedWorld, WorldError> {
        let (fences, skipped) = files.fences.load()?;
        let beacons = match &files.beacons {
            Some(path) => BeaconRegistry::load(path).map_err(|source| WorldError::Beacons {
                path: path.clone(),
                source,
            })?,
            None => BeaconRegistry::default(),
        };
        let campaigns =
            load_campaigns(&files.campaigns).map_err(|source| WorldError::Campaigns {
                path: files.campaigns.clone(),
                source,
            })?;
        let world =
            World::new(fences, beacons, campaigns, reach_slack_m).map_err(WorldError::Stores)?;
        Ok(LoadedWorld { world, skipped })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixtures(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name)
    }

    fn files() -> WorldFiles {
        WorldFiles {
            fences: FenceFile {
                path: fixtures("fences.geojson"),
                mode: LoadMode::Strict,
                index: IndexOptions::default(),
            },
            beacons: Some(fixtures("beacons.json")),
            campaigns: fixtures("campaigns"),
        }
    }

    #[test]
    fn the_fixture_files_make_a_world() {
        let loaded = World::load(&files(), 25.0).unwrap();
        let w = &loaded.world;
        assert_eq!((w.fences.len(), w.campaigns.len()), (46, 8));
        assert!(!w.beacons.is_empty() && loaded.skipped.is_empty());
    }

    #[test]
    fn a_file_that_does_not_load_is_named_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"id":"x"}"#).unwrap();
        let mut f = files();
        f.campaigns = bad.clone();
        let e = World::load(&f, 25.0).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!("loading campaigns from {}", bad.display())
        );
        let reason = std::error::Error::source(&e).unwrap().to_string();
        assert!(reason.contains("campaign x: name: missing"), "{reason}");
    }
}
