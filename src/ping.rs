//! Ping decoding (CONTRACTS §4): bytes → a typed [`Ping`], or a [`PingError`] whose text becomes
//! the dead-letter reason. Strings are borrowed from the input where JSON escaping allows.

use std::borrow::Cow;

use serde::Deserialize;

use crate::beacon::{parse_uuid, BeaconId, Dbm, DBM_RANGE};
use crate::json_type::{self, Expected};
use crate::sphere::{LatLon, LatLonError, Meters};
use crate::time::Timestamp;

/// Larger messages are refused before parsing.
pub const MAX_PING_BYTES: usize = 64 * 1024;
/// CONTRACTS §4: `device_id` is 1..=128 characters.
pub const MAX_DEVICE_ID_CHARS: usize = 128;

/// A decoded ping, borrowing from the message it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping<'a> {
    pub device_id: Cow<'a, str>,
    /// Event time.
    pub ts: Timestamp,
    pub kind: PingKind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PingKind {
    Location {
        at: LatLon,
        /// Radius of the fix's uncertainty; `None` when the device did not say.
        accuracy: Option<Meters>,
        speed_mps: Option<f64>,
        heading_deg: Option<f64>,
    },
    Beacon {
        beacon: BeaconId,
        rssi: Dbm,
        tx_power: Option<Dbm>,
    },
}

/// Why a message is not a ping.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PingError {
    #[error("message is {0} bytes, more than the {MAX_PING_BYTES}-byte limit")]
    Oversize(usize),
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("unknown ping type {0:?} (expected \"location\" or \"beacon\")")]
    UnknownType(String),
    #[error("device_id must be 1..={MAX_DEVICE_ID_CHARS} characters, got {0}")]
    DeviceId(usize),
    #[error("ts {0:?} is not an RFC 3339 timestamp")]
    Timestamp(String),
    #[error("{0}")]
    Position(#[from] LatLonError),
    #[error("{field} {value} is out of range")]
    OutOfRange { field: &'static str, value: f64 },
    #[error("uuid {0:?} is not a UUID")]
    Uuid(String),
}

impl PingError {
    /// Every [`PingError::kind`].
    pub const KINDS: [&'static str; 10] = [
        "oversize",
        "json",
        "missing_field",
        "wrong_type",
        "unknown_type",
        "device_id",
        "timestamp",
        "position",
        "out_of_range",
        "uuid",
    ];

    /// A short stable name for the reason, for counters and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Oversize(_) => "oversize",
            Self::Json(_) => "json",
            Self::Missing(_) => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::UnknownType(_) => "unknown_type",
            Self::DeviceId(_) => "device_id",
            Self::Timestamp(_) => "timestamp",
            Self::Position(_) => "position",
            Self::OutOfRange { .. } => "out_of_range",
            Self::Uuid(_) => "uuid",
        }
    }
}

/// A JSON string borrowed from the message unless it has escapes. (serde borrows a bare
/// `Cow<str>` field, but not one inside an `Option`; the newtype makes it borrow there too.)
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct RawPing<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    device_id: Option<Text<'a>>,
    #[serde(borrow)]
    ts: Option<Text<'a>>,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    speed_mps: Option<f64>,
    heading_deg: Option<f64>,
    #[serde(borrow)]
    uuid: Option<Text<'a>>,
    major: Option<i64>,
    minor: Option<i64>,
    rssi: Option<i64>,
    tx_power: Option<i64>,
}

/// The expected JSON type of each field, used to name the culprit when typed decoding fails.
const FIELD_TYPES: [(&str, Expected); 13] = [
    ("type", Expected::String),
    ("device_id", Expected::String),
    ("ts", Expected::String),
    ("lat", Expected::Number),
    ("lon", Expected::Number),
    ("accuracy_m", Expected::Number),
    ("speed_mps", Expected::Number),
    ("heading_deg", Expected::Number),
    ("uuid", Expected::String),
    ("major", Expected::Integer),
    ("minor", Expected::Integer),
    ("rssi", Expected::Integer),
    ("tx_power", Expected::Integer),
];

/// Decodes one message (a Kafka record value or a line of a JSON Lines file).
pub fn decode(bytes: &[u8]) -> Result<Ping<'_>, PingError> {
    if bytes.len() > MAX_PING_BYTES {
        return Err(PingError::Oversize(bytes.len()));
    }
    let raw: RawPing = serde_json::from_slice(bytes).map_err(|e| explain(bytes, e))?;
    let device_id = raw.device_id.ok_or(PingError::Missing("device_id"))?.0;
    let chars = device_id.chars().count();
    if chars == 0 || chars > MAX_DEVICE_ID_CHARS {
        return Err(PingError::DeviceId(chars));
    }
    let ts_text = raw.ts.ok_or(PingError::Missing("ts"))?.0;
    let ts = Timestamp::parse(&ts_text).map_err(|_| PingError::Timestamp(ts_text.into_owned()))?;
    let kind = match raw.kind.as_ref().map(|t| t.0.as_ref()) {
        Some("location") => {
            let at = LatLon::new(
                raw.lat.ok_or(PingError::Missing("lat"))?,
                raw.lon.ok_or(PingError::Missing("lon"))?,
            )?;
            let accuracy = match raw.accuracy_m {
                Some(a) if a >= 0.0 && a.is_finite() => Some(Meters(a)),
                Some(a) => {
                    return Err(PingError::OutOfRange {
                        field: "accuracy_m",
                        value: a,
                    })
                }
                None => None,
            };
            PingKind::Location {
                at,
                accuracy,
                speed_mps: raw.speed_mps,
                heading_deg: raw.heading_deg,
            }
        }
        Some("beacon") => {
            let uuid_text = raw.uuid.ok_or(PingError::Missing("uuid"))?.0;
            let uuid =
                parse_uuid(&uuid_text).map_err(|_| PingError::Uuid(uuid_text.into_owned()))?;
            let id16 = |field, v: Option<i64>| {
                let v = v.ok_or(PingError::Missing(field))?;
                u16::try_from(v).map_err(|_| PingError::OutOfRange {
                    field,
                    value: v as f64,
                })
            };
            let dbm = |field, v: i64| {
                if DBM_RANGE.contains(&v) {
                    Ok(Dbm(v as i16))
                } else {
                    Err(PingError::OutOfRange {
                        field,
                        value: v as f64,
                    })
                }
            };
            PingKind::Beacon {
                beacon: BeaconId {
                    uuid,
                    major: id16("major", raw.major)?,
                    minor: id16("minor", raw.minor)?,
                },
                rssi: dbm("rssi", raw.rssi.ok_or(PingError::Missing("rssi"))?)?,
                tx_power: raw.tx_power.map(|t| dbm("tx_power", t)).transpose()?,
            }
        }
        Some(other) => return Err(PingError::UnknownType(other.to_owned())),
        None => return Err(PingError::Missing("type")),
    };
    Ok(Ping {
        device_id,
        ts,
        kind,
    })
}

/// Turns a typed-decoding failure into a reason naming the field where one has the wrong type.
fn explain(bytes: &[u8], typed: serde_json::Error) -> PingError {
    match json_type::ill_typed(bytes, &FIELD_TYPES) {
        Some((field, expected)) => PingError::WrongType {
            field,
            expected: expected.name(),
        },
        None => PingError::Json(typed.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_contract_examples() {
        let loc = decode(br#"{"type":"location","device_id":"d-000123","ts":"2026-11-22T10:00:00.123Z","lat":31.2304,"lon":121.4737,"accuracy_m":12.5,"extra":{"ignored":true}}"#).unwrap();
        assert_eq!(loc.device_id, "d-000123");
        assert!(
            matches!(loc.device_id, Cow::Borrowed(_)),
            "device ids are borrowed"
        );
        assert_eq!(
            loc.ts,
            Timestamp::parse("2026-11-22T10:00:00.123Z").unwrap()
        );
        let PingKind::Location { at, accuracy, .. } = loc.kind else {
            panic!("{loc:?}")
        };
        assert_eq!(
            (at.lat(), at.lon(), accuracy),
            (31.2304, 121.4737, Some(Meters(12.5)))
        );

        let b = decode(br#"{"type":"beacon","device_id":"d-000123","ts":"2026-11-22T10:00:01Z","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":100,"minor":7,"rssi":-67}"#).unwrap();
        let PingKind::Beacon {
            beacon,
            rssi,
            tx_power,
        } = b.kind
        else {
            panic!("{b:?}")
        };
        assert_eq!(
            (beacon.major, beacon.minor, rssi, tx_power),
            (100, 7, Dbm(-67), None)
        );
    }

    #[test]
    fn every_rejection_names_its_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"type\":\"location\"", "not a JSON object"),
            (b"[1,2]", "not a JSON object"),
            (br#"{"type":"location","ts":"2026-11-22T10:00:00Z","lat":1,"lon":2}"#, "missing field `device_id`"),
            (br#"{"type":"location","device_id":"d","ts":"2026-11-22T10:00:00Z","lat":"31.2","lon":2}"#, "field `lat` must be a number"),
            (br#"{"type":"location","device_id":"d","ts":"2026-11-22T10:00:00Z","lat":123.4,"lon":2}"#, "latitude 123.4"),
            (br#"{"type":"location","device_id":"d","ts":"yesterday","lat":1,"lon":2}"#, "ts \"yesterday\""),
            (br#"{"type":"location","device_id":"","ts":"2026-11-22T10:00:00Z","lat":1,"lon":2}"#, "device_id must be 1..=128"),
            (br#"{"type":"location","device_id":"d","ts":"2026-11-22T10:00:00Z","lat":1,"lon":2,"accuracy_m":-1}"#, "accuracy_m -1 is out of range"),
            (br#"{"type":"teleport","device_id":"d","ts":"2026-11-22T10:00:00Z"}"#, "unknown ping type"),
            (br#"{"type":"beacon","device_id":"d","ts":"2026-11-22T10:00:00Z","uuid":"x","major":1,"minor":2,"rssi":-60}"#, "uuid \"x\""),
            (br#"{"type":"beacon","device_id":"d","ts":"2026-11-22T10:00:00Z","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":1,"minor":70000,"rssi":-60}"#, "minor 70000"),
            (br#"{"type":"location","device_id":"d","device_id":"e","ts":"2026-11-22T10:00:00Z","lat":1,"lon":2}"#, "duplicate field"),
            (br#"{"type":"location","device_id":"d","ts":"2026-11-22T10:00:00Z","lat":1e999,"lon":2}"#, "not a JSON object"),
        ];
        for (input, reason) in cases {
            let err = decode(input)
                .expect_err(&String::from_utf8_lossy(input))
                .to_string();
            assert!(
                err.contains(reason),
                "{} gave {err:?}, expected {reason:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = format!(
            r#"{{"type":"location","device_id":"{}","ts":"2026-11-22T10:00:00Z","lat":1,"lon":2}}"#,
            "x".repeat(129)
        );
        assert_eq!(decode(long.as_bytes()), Err(PingError::DeviceId(129)));
        assert_eq!(
            decode(&vec![b' '; MAX_PING_BYTES + 1]),
            Err(PingError::Oversize(MAX_PING_BYTES + 1))
        );
    }
}
