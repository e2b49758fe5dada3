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
#[derive(Debug, Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Debug, Deserialize, Default)]
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
    match scan(bytes) {
        Some(raw) => typed(raw),
        None => typed(parse(bytes)?),
    }
}

/// The general JSON path: any valid encoding of a ping, and the reason for an invalid one.
fn parse(bytes: &[u8]) -> Result<RawPing<'_>, PingError> {
    serde_json::from_slice(bytes).map_err(|e| explain(bytes, e))
}

/// The raw fields, checked and typed.
fn typed(raw: RawPing<'_>) -> Result<Ping<'_>, PingError> {
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

/// The common shape of a ping read without serde (a third of the whole core's decode time):
/// one flat object of known fields, each at most once, strings without escapes, numbers as
/// plain decimals of at most 19 digits. Anything else — unknown fields, `null`, exponents,
/// escapes, malformed JSON — is `None` and goes to [`parse`], which decides it and words any
/// error; both give the same fields (serde's own arithmetic is repeated for numbers), so the
/// same pings and the same reasons (tested against each other below).
fn scan(bytes: &[u8]) -> Option<RawPing<'_>> {
    let mut s = Scanner { b: bytes, i: 0 };
    let mut raw = RawPing::default();
    let mut seen = 0u16;
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            // In `FIELD_TYPES` order.
            let field = match s.raw_string()? {
                b"type" => 0,
                b"device_id" => 1,
                b"ts" => 2,
                b"lat" => 3,
                b"lon" => 4,
                b"accuracy_m" => 5,
                b"speed_mps" => 6,
                b"heading_deg" => 7,
                b"uuid" => 8,
                b"major" => 9,
                b"minor" => 10,
                b"rssi" => 11,
                b"tx_power" => 12,
                _ => return None,
            };
            if seen & 1 << field != 0 {
                return None;
            }
            seen |= 1 << field;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            match field {
                0 => raw.kind = Some(Text(Cow::Borrowed(s.string()?))),
                1 => raw.device_id = Some(Text(Cow::Borrowed(s.string()?))),
                2 => raw.ts = Some(Text(Cow::Borrowed(s.string()?))),
                3 => raw.lat = Some(s.number()?),
                4 => raw.lon = Some(s.number()?),
                5 => raw.accuracy_m = Some(s.number()?),
                6 => raw.speed_mps = Some(s.number()?),
                7 => raw.heading_deg = Some(s.number()?),
                8 => raw.uuid = Some(Text(Cow::Borrowed(s.string()?))),
                9 => raw.major = Some(s.integer()?),
                10 => raw.minor = Some(s.integer()?),
                11 => raw.rssi = Some(s.integer()?),
                _ => raw.tx_power = Some(s.integer()?),
            }
            s.skip_ws();
            match s.next()? {
                b',' => s.skip_ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.i == bytes.len()).then_some(raw)
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON's whitespace.
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string with no escapes (and so no control characters either), borrowed.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    /// The same as bytes (keys: only ASCII names are known).
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let rest = &self.b[self.i..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        Some(&rest[..len])
    }

    /// `-?(0|[1-9][0-9]*)`, its digits as a u64 (at most 19 of them, so no overflow).
    fn digits(&mut self) -> Option<(bool, u64, usize)> {
        let negative = self.peek() == Some(b'-');
        self.i += usize::from(negative);
        let start = self.i;
        let mut value = 0u64;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            value = value.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            self.i += 1;
        }
        let n = self.i - start;
        let leading_zero = n > 1 && self.b[start] == b'0';
        (n > 0 && n <= 19 && !leading_zero).then_some((negative, value, n))
    }

    /// A number as serde_json reads one into an `f64` without `float_roundtrip`: the digits as
    /// an integer, divided by the power of ten of the fraction's length.
    fn number(&mut self) -> Option<f64> {
        let (negative, mut value, int_digits) = self.digits()?;
        let mut fraction = 0;
        if self.peek() == Some(b'.') {
            self.i += 1;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                value = value.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                self.i += 1;
                fraction += 1;
            }
            if fraction == 0 || int_digits + fraction > 19 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            return None;
        }
        let f = value as f64 / POW10[fraction];
        Some(if negative { -f } else { f })
    }

    /// An integer in i64's range (serde refuses `-0` and fractions for an integer field).
    fn integer(&mut self) -> Option<i64> {
        let (negative, value, _) = self.digits()?;
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        let value = i64::try_from(value).ok()?;
        match negative {
            false => Some(value),
            true if value > 0 => Some(-value),
            true => None,
        }
    }
}

/// Exact powers of ten, as serde_json divides by them.
const POW10: [f64; 20] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19,
];

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

    #[test]
    fn the_generated_pings_take_the_scanner() {
        let spec = crate::generate::GenSpec {
            fences: 100,
            pings: 0,
            seed: 7,
        };
        for line in crate::generate::device_pings(&spec, 100, 1000) {
            assert!(scan(&line).is_some(), "{}", String::from_utf8_lossy(&line));
        }
    }

    use proptest::prelude::*;

    /// JSON text for a field's value, mostly of the field's own type: numbers, strings and
    /// others, well-formed and not.
    fn value(expected: Option<Expected>) -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (-100i64..100).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (-200.0f64..200.0).prop_map(|f| f.to_string()),
            (-200.0f64..200.0).prop_map(|f| format!("{f:.4}")),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            "-?[0-9]{1,24}(\\.[0-9]{0,24})?([eE][+-]?[0-9]{0,3})?",
            Just("-0".to_owned()),
        ];
        let string = prop_oneof![
            Just("location".to_owned()),
            Just("beacon".to_owned()),
            Just("2026-11-22T10:00:00.123Z".to_owned()),
            Just("f7826da6-4fa2-4e98-8024-bc5b71e0893e".to_owned()),
            "[a-z0-9-]{0,12}",
            "[ -~é🐉\\\\\"\\t]{0,8}",
            "\\\\u00[0-9a-f]{2}",
        ]
        .prop_map(|s| format!("\"{s}\""));
        let other = prop::sample::select(vec!["null", "true", "{}", "[1]", "{\"a\":1}", ""])
            .prop_map(str::to_owned);
        let (n, s) = match expected {
            Some(Expected::String) => (1, 16),
            Some(_) => (16, 1),
            None => (4, 4),
        };
        prop_oneof![n => number, s => string, 1 => other]
    }

    /// A ping-like object: known fields (some twice, some escaped), unknown ones, any values,
    /// any whitespace — then perhaps cut short or with one byte changed.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        let mut keys: Vec<(&str, Option<Expected>)> =
            FIELD_TYPES.iter().map(|&(k, e)| (k, Some(e))).collect();
        keys.extend(["extra", "Type", "\\u0074ype", "lat "].map(|k| (k, None)));
        let field = prop::sample::select(keys).prop_flat_map(|(k, e)| (Just(k), value(e)));
        let ws = prop::sample::select(vec!["", "", "", " ", "\n\t", "\r "]);
        (
            prop::collection::vec((field, ws.clone(), ws), 0..9),
            prop::option::of((any::<prop::sample::Index>(), any::<u8>(), any::<bool>())),
        )
            .prop_map(|(fields, change)| {
                let body: Vec<String> = fields
                    .iter()
                    .map(|((k, v), a, b)| format!("{a}\"{k}\"{b}:{a}{v}{b}"))
                    .collect();
                let mut m = format!("{{{}}}", body.join(",")).into_bytes();
                if let Some((at, byte, cut)) = change {
                    let at = at.index(m.len());
                    if cut {
                        m.truncate(at);
                    } else {
                        m[at] = byte;
                    }
                }
                m
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The scanner and serde give the same pings and the same reasons, whichever path a
        /// message takes.
        #[test]
        fn the_scanner_agrees_with_serde(m in message()) {
            if let Some(raw) = scan(&m) {
                // Field by field (`Debug` tells -0.0 from 0.0).
                let serde = serde_json::from_slice::<RawPing>(&m).map(|r| format!("{r:?}"));
                prop_assert_eq!(Ok(format!("{raw:?}")), serde.map_err(|e| e.to_string()));
            }
            let fast = decode(&m);
            let serde = parse(&m).and_then(typed);
            prop_assert_eq!(format!("{fast:?}"), format!("{serde:?}"));
            prop_assert_eq!(&fast, &serde);
            if let (Ok(a), Ok(b)) = (&fast, &serde) {
                prop_assert_eq!(
                    matches!(a.device_id, Cow::Borrowed(_)),
                    matches!(b.device_id, Cow::Borrowed(_))
                );
            }
        }
    }
}
