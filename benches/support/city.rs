//! The generated city the engine benches run on: 10 000 fences and 120 campaigns (seed 42), as
//! `beckon gen` and `beckon replay` would make and load them.

use beckon::beacon::BeaconRegistry;
use beckon::engine::EngineConfig;
use beckon::fence::{parse_fences, FenceIndex, IndexOptions, LoadMode};
use beckon::generate::{self, GenSpec};
use beckon::world::World;

pub const FENCES: usize = 10_000;
pub const CAMPAIGNS: usize = 120;

pub fn spec() -> GenSpec {
    GenSpec {
        fences: FENCES,
        pings: 0,
        seed: 42,
    }
}

pub fn world(cfg: &EngineConfig) -> World {
    let spec = spec();
    let mut bytes = Vec::new();
    generate::write_fences(&spec, &mut bytes).unwrap();
    let fences = parse_fences(&bytes, LoadMode::Strict).unwrap().fences;
    World::new(
        FenceIndex::new(fences, IndexOptions::default()),
        BeaconRegistry::default(),
        generate::campaigns(&spec, CAMPAIGNS).unwrap(),
        cfg.presence.exit_buffer_m,
    )
    .unwrap()
}
