//! beckon — a location-triggered proximity marketing engine.
//!
//! # Layout
//! Data flows one way, and each stage is a module named for its concept:
//!
//! - [`ping`]: bytes → a typed ping, or the reason it is not one (CONTRACTS §4).
//! - [`fence`]: store geofences — loading GeoJSON (§1–2) and the index that answers which
//!   fences cover a point (`containing`) and which are near (`nearby`).
//! - [`beacon`]: the iBeacon registry (§3).
//! - [`sphere`], [`time`]: the units everything above speaks: positions, metres, event time.
//! - [`match_cmd`]: the offline `beckon match` command (§7) over the same index.
//! - [`generate`]: deterministic synthetic fences and pings for benches and peer checks.
//!
//! The core is synchronous and does no I/O: time is the ping's event time, never the clock.

pub mod beacon;
pub mod fence;
pub mod generate;
pub mod match_cmd;
pub mod ping;
pub mod sphere;
pub mod time;
