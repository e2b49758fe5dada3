//! The iBeacon registry (CONTRACTS §3): which beacon stands in which store, in which zone, and
//! from what signal strength a sighting counts.

use std::fmt;
use std::path::Path;

use rustc_hash::FxHashMap;
use serde::Deserialize;
use serde_json::Value;

/// An iBeacon identity: proximity UUID, major, minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BeaconId {
    pub uuid: u128,
    pub major: u16,
    pub minor: u16,
}

/// Received signal strength, dBm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dbm(pub i16);

/// The plausible range of an RSSI or calibrated power reading.
pub const DBM_RANGE: std::ops::RangeInclusive<i64> = -127..=20;

/// A registered beacon.
#[derive(Debug, Clone, PartialEq)]
pub struct Beacon {
    pub id: BeaconId,
    pub store_id: String,
    pub zone: Option<String>,
    /// A sighting at or above this strength counts as "in range".
    pub rssi_min: Dbm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a UUID (expected 32 hex digits as 8-4-4-4-12)")]
pub struct UuidError;

/// Parses a UUID in its canonical hyphenated form, any case.
pub fn parse_uuid(s: &str) -> Result<u128, UuidError> {
    let b = s.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return Err(UuidError);
    }
    b.iter()
        .filter(|&&c| c != b'-')
        .try_fold(0u128, |acc, &c| match (c as char).to_digit(16) {
            Some(d) => Ok(acc << 4 | u128::from(d)),
            None => Err(UuidError),
        })
}

impl fmt::Display for BeaconId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = self.uuid;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}/{}/{}",
            u >> 96,
            (u >> 80) & 0xffff,
            (u >> 64) & 0xffff,
            (u >> 48) & 0xffff,
            u & 0xffff_ffff_ffff,
            self.major,
            self.minor
        )
    }
}

/// One refused registry entry: where (0-based entry position, or line for JSON Lines) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("beacon entry {at}: {reason}")]
pub struct BeaconError {
    pub at: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read beacon registry: {0}")]
    Io(#[from] std::io::Error),
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{} invalid beacon entr(ies), registry refused:\n  {}", .0.len(), .0.iter().take(20).map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<BeaconError>),
}

/// A beacon's position in the registry: a small `Copy` handle for per-device state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BeaconIdx(pub u32);

/// All registered beacons, in the order they were registered, and by identity.
#[derive(Debug, Default)]
pub struct BeaconRegistry {
    beacons: Vec<Beacon>,
    by_id: FxHashMap<BeaconId, BeaconIdx>,
}

impl BeaconRegistry {
    pub fn get(&self, id: &BeaconId) -> Option<(BeaconIdx, &Beacon)> {
        let idx = *self.by_id.get(id)?;
        Some((idx, &self.beacons[idx.0 as usize]))
    }
    pub fn beacon(&self, idx: BeaconIdx) -> &Beacon {
        &self.beacons[idx.0 as usize]
    }
    pub fn len(&self) -> usize {
        self.beacons.len()
    }
    pub fn is_empty(&self) -> bool {
        self.beacons.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Beacon> {
        self.beacons.iter()
    }

    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        Self::parse(&std::fs::read(path)?)
    }

    /// Parses a JSON array of entries, or JSON Lines (one entry per line; blank lines skipped).
    pub fn parse(bytes: &[u8]) -> Result<Self, RegistryError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        let entries: Vec<(String, Value)> = if first == Some(&b'[') {
            let all: Vec<Value> = serde_json::from_slice(bytes)?;
            all.into_iter()
                .enumerate()
                .map(|(i, v)| (format!("#{i}"), v))
                .collect()
        } else {
            let mut out = Vec::new();
            for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let v: Value = serde_json::from_slice(line).map_err(|e| {
                    RegistryError::Invalid(vec![BeaconError {
                        at: format!("line {}", n + 1),
                        reason: e.to_string(),
                    }])
                })?;
                out.push((format!("line {}", n + 1), v));
            }
            out
        };
        let mut beacons = Vec::new();
        let mut by_id: FxHashMap<BeaconId, BeaconIdx> = FxHashMap::default();
        let mut first_at: FxHashMap<BeaconId, String> = FxHashMap::default();
        let mut errors = Vec::new();
        for (at, v) in entries {
            match entry(v) {
                Ok(b) => match first_at.get(&b.id) {
                    Some(first) => errors.push(BeaconError {
                        reason: format!("duplicate beacon {} (first at {first})", b.id),
                        at,
                    }),
                    None => {
                        first_at.insert(b.id, at);
                        by_id.insert(b.id, BeaconIdx(beacons.len() as u32));
                        beacons.push(b);
                    }
                },
                Err(reason) => errors.push(BeaconError { at, reason }),
            }
        }
        if errors.is_empty() {
            Ok(Self { beacons, by_id })
        } else {
            Err(RegistryError::Invalid(errors))
        }
    }
}

/// Extra fields are allowed: registries exported from beacon vendors' tools carry their own.
#[derive(Deserialize)]
struct RawBeacon {
    uuid: String,
    major: i64,
    minor: i64,
    store_id: String,
    zone: Option<String>,
    rssi_min: i64,
}

fn entry(v: Value) -> Result<Beacon, String> {
    let raw: RawBeacon = serde_json::from_value(v).map_err(|e| e.to_string())?;
    let uuid = parse_uuid(&raw.uuid).map_err(|e| format!("uuid {:?}: {e}", raw.uuid))?;
    let id16 = |name: &str, v: i64| {
        u16::try_from(v).map_err(|_| format!("{name} {v} is not in 0..=65535"))
    };
    if raw.store_id.is_empty() {
        return Err("store_id must be a non-empty string".into());
    }
    if !DBM_RANGE.contains(&raw.rssi_min) {
        return Err(format!(
            "rssi_min {} dBm is outside {DBM_RANGE:?}",
            raw.rssi_min
        ));
    }
    Ok(Beacon {
        id: BeaconId {
            uuid,
            major: id16("major", raw.major)?,
            minor: id16("minor", raw.minor)?,
        },
        store_id: raw.store_id,
        zone: raw.zone,
        rssi_min: Dbm(raw.rssi_min as i16),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_parse_in_any_case_and_print_canonically() {
        let u = parse_uuid("F7826DA6-4FA2-4E98-8024-BC5B71E0893E").unwrap();
        assert_eq!(Ok(u), parse_uuid("f7826da6-4fa2-4e98-8024-bc5b71e0893e"));
        let id = BeaconId {
            uuid: u,
            major: 100,
            minor: 7,
        };
        assert_eq!(id.to_string(), "f7826da6-4fa2-4e98-8024-bc5b71e0893e/100/7");
        for bad in [
            "f7826da64fa24e988024bc5b71e0893e",
            "f7826da6-4fa2-4e98-8024-bc5b71e0893g",
            "",
        ] {
            assert_eq!(parse_uuid(bad), Err(UuidError), "{bad}");
        }
    }

    #[test]
    fn loads_arrays_and_json_lines() {
        let e = r#"{"uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":1,"minor":2,"store_id":"s-1","zone":"entrance","rssi_min":-75}"#;
        let arr = BeaconRegistry::parse(format!("[{e}]").as_bytes()).unwrap();
        let lines = BeaconRegistry::parse(format!("\n{e}\n\n").as_bytes()).unwrap();
        assert_eq!(arr.len(), 1);
        let b = lines.iter().next().unwrap();
        assert_eq!(
            (b.store_id.as_str(), b.zone.as_deref(), b.rssi_min),
            ("s-1", Some("entrance"), Dbm(-75))
        );
    }

    #[test]
    fn refuses_bad_entries_naming_each() {
        let bad = r#"[
          {"uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":1,"minor":2,"store_id":"s-1","rssi_min":-75},
          {"uuid":"F7826DA6-4FA2-4E98-8024-BC5B71E0893E","major":1,"minor":2,"store_id":"s-2","rssi_min":-70},
          {"uuid":"nope","major":1,"minor":3,"store_id":"s-1","rssi_min":-75},
          {"uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":70000,"minor":3,"store_id":"s-1","rssi_min":-75},
          {"uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":1,"minor":4,"rssi_min":-75},
          {"uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":1,"minor":5,"store_id":"s-1","rssi_min":-300}
        ]"#;
        let Err(RegistryError::Invalid(errors)) = BeaconRegistry::parse(bad.as_bytes()) else {
            panic!("accepted a bad registry");
        };
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 5, "{text:#?}");
        assert!(
            text[0].starts_with("beacon entry #1: duplicate beacon"),
            "{}",
            text[0]
        );
        assert!(text[1].contains("#2") && text[1].contains("uuid \"nope\""));
        assert!(text[2].contains("major 70000"));
        assert!(text[3].contains("missing field `store_id`"));
        assert!(text[4].contains("rssi_min -300"));
    }
}
