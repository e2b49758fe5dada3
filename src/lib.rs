//! beckon — a location-triggered proximity marketing engine.
//!
//! # Layout
//! Data flows one way, and each stage is a module named for its concept:
//!
//! - [`ping`]: bytes → a typed ping, or the reason it is not one (CONTRACTS §4).
//! - [`fence`]: store geofences — loading GeoJSON (§1–2) and the index that answers which
//!   fences cover a point (`containing`) and which are near (`nearby`).
//! - [`beacon`]: the iBeacon registry (§3); [`store`]: which fences and beacons make a store.
//! - [`presence`]: per device, enter / dwell / exit in event time, from fixes and sightings.
//! - [`reach`]: which fences a fix is near, for nearby campaigns (a grid of grown fences).
//! - [`profile`]: device profiles (§5), decoded once into compact typed attributes.
//! - [`audience`]: audience rules over profile attributes — who a campaign is for.
//! - [`campaign`]: campaigns (JSON/YAML) — where, when, who, what — compiled against the fences.
//! - [`caps`]: per-device caps, cooldowns, quiet hours, campaign budgets; suppression reasons.
//! - [`offer`]: offers and presence events (§6), deterministic ids, JSON encoding.
//! - [`engine`]: composes the stages over a [`world::World`] and the [`device`] table; pure.
//! - [`silence`]: devices by when they fall silent, drained in order as event time passes.
//! - [`changelog`]: a partition's engine state as compacted-topic records, and back (restore).
//! - [`reload`]: a new world under a running engine: device and campaign state renumbered by
//!   stable ids.
//! - [`replay`]: `beckon replay`, the engine over a JSON Lines file (§7), with a summary; one
//!   engine per partition of devices, as the streaming engine runs them.
//! - [`partition`]: which Kafka partition a device's pings are on (the Java client's default
//!   partitioner, murmur2), so replay splits devices as the producers did.
//! - [`cache`]: prefetch hints, so a batch's cache misses overlap; huge pages for big tables.
//! - [`json_type`]: naming JSON types in error messages (which field has the wrong type).
//! - [`sphere`], [`time`]: the units everything above speaks: positions, metres, event time.
//! - [`local_time`]: IANA zones (bundled tzdb) and wall-clock time, for schedules and local-day caps.
//! - [`hours`]: a store's weekly opening hours (fence property `hours`), asked "open now?".
//! - [`match_cmd`]: the offline `beckon match` command (§7) over the same index.
//! - [`generate`]: deterministic synthetic fences, pings and campaigns for benches and checks.
//! - [`demo`]: the built-in fixtures replayed through the core (`beckon demo`).
//!
//! The core is synchronous and does no I/O: time is the ping's event time, never the clock.
//!
//! # Example
//! ```
//! use beckon::fence::{parse_fences, FenceIndex, Hits, IndexOptions, LoadMode};
//! use beckon::sphere::LatLon;
//!
//! let file = br#"{"type":"FeatureCollection","features":[
//!   {"type":"Feature","id":"f-tea","properties":{"store_id":"s-tea","kind":"store"},
//!    "geometry":{"type":"Polygon","coordinates":[[[121.4477,31.2255],[121.4480,31.2255],
//!      [121.4480,31.2258],[121.4477,31.2258],[121.4477,31.2255]]]}},
//!   {"type":"Feature","id":"f-metro","properties":{"store_id":"s-tea","radius_m":150},
//!    "geometry":{"type":"Point","coordinates":[121.4479,31.2256]}}]}"#;
//! let fences = parse_fences(file, LoadMode::Strict)?.fences;
//! let index = FenceIndex::new(fences, IndexOptions::default());
//!
//! let mut hits = Hits::new();
//! index.containing(LatLon::new(31.2256, 121.4478)?, &mut hits);
//! let ids: Vec<&str> = hits.iter().map(|&i| index.fence(i).id.as_str()).collect();
//! assert_eq!(ids, ["f-metro", "f-tea"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod audience;
pub mod beacon;
pub mod cache;
pub mod campaign;
pub mod caps;
pub mod changelog;
pub mod config;
pub mod demo;
pub mod device;
pub mod engine;
pub mod fence;
pub mod generate;
pub mod hours;
pub mod http;
pub mod json_type;
pub mod local_time;
pub mod match_cmd;
pub mod metrics;
pub mod offer;
pub mod partition;
pub mod ping;
pub mod presence;
pub mod profile;
pub mod reach;
pub mod reload;
pub mod replay;
pub mod service;
pub mod silence;
pub mod sphere;
pub mod store;
pub mod stream;
pub mod time;
pub mod world;
