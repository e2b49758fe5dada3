//! Device profiles (CONTRACTS §5): a Kafka record (key, value) or a JSON Lines line → a compact
//! typed [`Profile`], or a [`ProfileError`] naming the field and the reason.
//!
//! A profile is decoded once, here, and never re-checked: attributes are a boxed slice sorted by
//! name (binary search, no map per profile), so a [`Profile`] is 24 bytes plus its attributes —
//! there may be a million of them. This module does no matching; audience rules live in
//! [`crate::audience`], and consent is the caller's to enforce.
//!
//! Decisions worth knowing:
//! - A `null` attribute is the same as an absent one (it is dropped).
//! - A tombstone (no value) or a value that is the JSON literal `null` deletes the profile of the
//!   device named by the record key.
//! - With a value, the body's `device_id` wins over the key, as for pings.
//! - Duplicate attribute names, or duplicate categories in a counts object, are refused.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::json_type::{self, Expected};
use crate::ping::{MAX_DEVICE_ID_CHARS, MAX_PING_BYTES};

/// Larger messages are refused before parsing (the same limit as pings).
pub const MAX_PROFILE_BYTES: usize = MAX_PING_BYTES;
/// At most this many attributes per profile.
pub const MAX_ATTRIBUTES: usize = 256;
/// At most this many entries in one list or counts attribute.
pub const MAX_ATTRIBUTE_ENTRIES: usize = 1024;

/// One device's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// `false` means the device is never offered anything.
    pub consent: bool,
    attributes: Attributes,
}

impl Profile {
    /// A profile with no attributes (e.g. to evaluate rules for a device without a profile).
    pub fn without_attributes(consent: bool) -> Self {
        Self {
            consent,
            attributes: Attributes::default(),
        }
    }

    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The attribute called `name`, if the profile has it.
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.attributes.get(name)
    }
}

/// Attribute names and short text values: up to 24 bytes inline (names like `income_tier`,
/// values like `gold`), so a lookup reads the attribute array itself, not a string allocation
/// per name — with a million profiles those were most of their memory and their cache misses.
pub type Name = compact_str::CompactString;

/// A profile's attributes, sorted by name, names unique.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attributes(Box<[(Name, AttrValue)]>);

impl Attributes {
    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        let i = self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        self.0.get(i).map(|(_, v)| v)
    }
    /// In name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &AttrValue)> {
        self.0.iter().map(|(n, v)| (&**n, v))
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One attribute value, by its JSON shape.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Bool(bool),
    Num(f64),
    Text(Name),
    /// An array of strings, in the order given.
    List(Box<[Name]>),
    /// An object of string → number (e.g. `purchases_90d`), sorted by key, keys unique.
    Counts(Box<[(Name, f64)]>),
}

impl AttrValue {
    /// The count for `key` in a [`AttrValue::Counts`] as decoded (sorted); `None` when this is
    /// not a counts value or has no such key.
    pub fn count(&self, key: &str) -> Option<f64> {
        let AttrValue::Counts(entries) = self else {
            return None;
        };
        let i = entries.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        entries.get(i).map(|&(_, n)| n)
    }
}

/// A decoded profile record.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileRecord<'a> {
    Upsert {
        device_id: Cow<'a, str>,
        profile: Profile,
    },
    /// A tombstone: forget this device's profile.
    Delete { device_id: Cow<'a, str> },
}

/// Why a record is not a profile.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("message is {0} bytes, more than the {MAX_PROFILE_BYTES}-byte limit")]
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
    #[error("device_id must be 1..={MAX_DEVICE_ID_CHARS} characters, got {0}")]
    DeviceId(usize),
    #[error("key: a tombstone needs a key naming the device to delete")]
    NoKey,
    #[error("key: not UTF-8")]
    KeyNotUtf8,
    #[error("key (the device id) must be 1..={MAX_DEVICE_ID_CHARS} characters, got {0}")]
    KeyLength(usize),
    #[error("attributes: {0} entries, more than the {MAX_ATTRIBUTES}-attribute limit")]
    TooManyAttributes(usize),
    #[error("attribute `{name}`: {reason}")]
    Attribute { name: String, reason: AttrError },
}

/// What is wrong with one attribute.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttrError {
    #[error("a list may hold only strings")]
    ListItem,
    #[error("entry `{0}` must be a number")]
    CountValue(String),
    #[error("{0} entries, more than the {MAX_ATTRIBUTE_ENTRIES}-entry limit")]
    TooManyEntries(usize),
    #[error("entry `{0}` appears twice")]
    DuplicateEntry(String),
    #[error("appears twice")]
    Duplicate,
}

/// A JSON string borrowed from the message unless it has escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Unknown top-level fields are ignored: producers may add their own.
#[derive(Deserialize)]
struct RawProfile<'a> {
    #[serde(borrow)]
    device_id: Option<Text<'a>>,
    consent: Option<bool>,
    attributes: Option<RawAttributes>,
}

/// The expected JSON type of each field, used to name the culprit when typed decoding fails.
const FIELD_TYPES: [(&str, Expected); 3] = [
    ("device_id", Expected::String),
    ("consent", Expected::Bool),
    ("attributes", Expected::Object),
];

/// Decodes one profile record: a Kafka record's key and value (`None` value = tombstone), or
/// `decode(None, Some(line))` for a line of a JSON Lines file.
pub fn decode<'a>(
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> Result<ProfileRecord<'a>, ProfileError> {
    let Some(bytes) = value else {
        return delete(key);
    };
    if bytes.len() > MAX_PROFILE_BYTES {
        return Err(ProfileError::Oversize(bytes.len()));
    }
    let raw: Option<RawProfile> = serde_json::from_slice(bytes).map_err(|e| explain(bytes, e))?;
    let Some(raw) = raw else {
        return delete(key);
    };
    let device_id = raw.device_id.ok_or(ProfileError::Missing("device_id"))?.0;
    let chars = device_id.chars().count();
    if chars == 0 || chars > MAX_DEVICE_ID_CHARS {
        return Err(ProfileError::DeviceId(chars));
    }
    let consent = raw.consent.ok_or(ProfileError::Missing("consent"))?;
    let attributes = match raw.attributes {
        Some(RawAttributes(entries)) => attributes(entries)?,
        None => Attributes::default(),
    };
    Ok(ProfileRecord::Upsert {
        device_id,
        profile: Profile {
            consent,
            attributes,
        },
    })
}

fn delete(key: Option<&[u8]>) -> Result<ProfileRecord<'_>, ProfileError> {
    let key = key.ok_or(ProfileError::NoKey)?;
    let device_id = std::str::from_utf8(key).map_err(|_| ProfileError::KeyNotUtf8)?;
    let chars = device_id.chars().count();
    if chars == 0 || chars > MAX_DEVICE_ID_CHARS {
        return Err(ProfileError::KeyLength(chars));
    }
    Ok(ProfileRecord::Delete {
        device_id: Cow::Borrowed(device_id),
    })
}

/// Checks and sorts the attributes as they arrived. The first bad attribute in message order is
/// the one reported.
fn attributes(entries: Vec<(String, RawAttr)>) -> Result<Attributes, ProfileError> {
    let mut checked = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        match value {
            RawAttr::Bad(reason) => return Err(ProfileError::Attribute { name, reason }),
            RawAttr::Value(v) => checked.push((name, Some(v))),
            RawAttr::Null => checked.push((name, None)),
        }
    }
    // Before dropping nulls, so a duplicate is found whatever its value.
    checked.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = checked.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ProfileError::Attribute {
            name: pair[0].0.clone(),
            reason: AttrError::Duplicate,
        });
    }
    let kept: Vec<(Name, AttrValue)> = checked
        .into_iter()
        .filter_map(|(name, value)| Some((Name::from(name), value?)))
        .collect();
    if kept.len() > MAX_ATTRIBUTES {
        return Err(ProfileError::TooManyAttributes(kept.len()));
    }
    Ok(Attributes(kept.into_boxed_slice()))
}

/// Turns a typed-decoding failure into a reason naming the field where one has the wrong type.
fn explain(bytes: &[u8], typed: serde_json::Error) -> ProfileError {
    match json_type::ill_typed(bytes, &FIELD_TYPES) {
        Some((field, expected)) => ProfileError::WrongType {
            field,
            expected: expected.name(),
        },
        None => ProfileError::Json(typed.to_string()),
    }
}

/// The `attributes` object, entries in message order. Values of a disallowed shape do not fail
/// the parse: they are kept as [`RawAttr::Bad`] so the error can name the attribute.
struct RawAttributes(Vec<(String, RawAttr)>);

enum RawAttr {
    Value(AttrValue),
    Null,
    Bad(AttrError),
}

impl<'de> Deserialize<'de> for RawAttributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttributes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    out.push((name, map.next_value::<RawAttr>()?));
                }
                Ok(RawAttributes(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for RawAttr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawAttr, E> {
                Ok(RawAttr::Value(AttrValue::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawAttr, E> {
                Ok(RawAttr::Value(AttrValue::Num(v as f64)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RawAttr, E> {
                Ok(RawAttr::Value(AttrValue::Num(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawAttr, E> {
                Ok(RawAttr::Value(AttrValue::Num(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawAttr, E> {
                Ok(RawAttr::Value(AttrValue::Text(v.into())))
            }
            fn visit_unit<E>(self) -> Result<RawAttr, E> {
                Ok(RawAttr::Null)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAttr, A::Error> {
                let mut items = Vec::new();
                let mut bad = None;
                while let Some(Shaped(item)) = seq.next_element::<Shaped<String>>()? {
                    match item {
                        Some(s) => items.push(Name::from(s)),
                        None => bad = bad.or(Some(AttrError::ListItem)),
                    }
                }
                Ok(match bad {
                    Some(e) => RawAttr::Bad(e),
                    None if items.len() > MAX_ATTRIBUTE_ENTRIES => {
                        RawAttr::Bad(AttrError::TooManyEntries(items.len()))
                    }
                    None => RawAttr::Value(AttrValue::List(items.into_boxed_slice())),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawAttr, A::Error> {
                let mut entries = Vec::new();
                let mut bad = None;
                while let Some(key) = map.next_key::<String>()? {
                    match map.next_value::<Shaped<f64>>()?.0 {
                        Some(n) => entries.push((Name::from(key), n)),
                        None => bad = bad.or(Some(AttrError::CountValue(key))),
                    }
                }
                if let Some(e) = bad {
                    return Ok(RawAttr::Bad(e));
                }
                if entries.len() > MAX_ATTRIBUTE_ENTRIES {
                    return Ok(RawAttr::Bad(AttrError::TooManyEntries(entries.len())));
                }
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
                    return Ok(RawAttr::Bad(AttrError::DuplicateEntry(
                        pair[0].0.to_string(),
                    )));
                }
                Ok(RawAttr::Value(AttrValue::Counts(
                    entries.into_boxed_slice(),
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list item or count value: `Some` when it has the wanted type (a string, or a number), `None`
/// (after skipping it whole) when it has any other.
struct Shaped<T>(Option<T>);

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visitor methods for the shapes a [`Shaped`] refuses.
macro_rules! refuse_other_shapes {
    ($($method:ident($ty:ty)),*) => {
        $(fn $method<E>(self, _: $ty) -> Result<Self::Value, E> {
            Ok(Shaped(None))
        })*
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Shaped(None))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            skip_seq(seq).map(|()| Shaped(None))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            skip_map(map).map(|()| Shaped(None))
        }
    };
}

impl<'de> Deserialize<'de> for Shaped<String> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shaped<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Shaped(Some(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Shaped(Some(v)))
            }
            refuse_other_shapes!(
                visit_bool(bool),
                visit_i64(i64),
                visit_u64(u64),
                visit_f64(f64)
            );
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Shaped<f64> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shaped<f64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Shaped(Some(v as f64)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Shaped(Some(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Shaped(Some(v)))
            }
            refuse_other_shapes!(visit_bool(bool), visit_str(&str));
        }
        d.deserialize_any(V)
    }
}

/// One refused line of a profiles file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ProfileLineError {
    /// 1-based.
    pub line: usize,
    pub reason: ProfileError,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileFileError {
    #[error("cannot read profiles {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {} invalid profile line(s), file refused:\n  {}", path.display(), errors.len(), errors.iter().take(20).map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        path: PathBuf,
        errors: Vec<ProfileLineError>,
    },
}

/// Loads a JSON Lines file of profiles, one [`decode`]d record per line; blank lines are skipped.
/// A later line for the same device replaces the earlier one, keeping the device's first
/// position. Any bad line refuses the whole file, and every bad line is listed.
pub fn load_profiles(path: &Path) -> Result<Vec<(String, Profile)>, ProfileFileError> {
    let bytes = std::fs::read(path).map_err(|source| ProfileFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_lines(&bytes).map_err(|errors| ProfileFileError::Invalid {
        path: path.to_owned(),
        errors,
    })
}

fn parse_lines(bytes: &[u8]) -> Result<Vec<(String, Profile)>, Vec<ProfileLineError>> {
    let mut out: Vec<(String, Profile)> = Vec::new();
    let mut at: FxHashMap<String, usize> = FxHashMap::default();
    let mut errors = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // Without a key, a `null` line is refused by `decode`, so every Ok is an upsert.
        match decode(None, Some(line)) {
            Ok(ProfileRecord::Upsert { device_id, profile }) => match at.get(&*device_id) {
                Some(&i) => {
                    if let Some(slot) = out.get_mut(i) {
                        slot.1 = profile;
                    }
                }
                None => {
                    at.insert(device_id.to_string(), out.len());
                    out.push((device_id.into_owned(), profile));
                }
            },
            Ok(ProfileRecord::Delete { .. }) => errors.push(ProfileLineError {
                line: n + 1,
                reason: ProfileError::NoKey,
            }),
            Err(reason) => errors.push(ProfileLineError {
                line: n + 1,
                reason,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/profiles.jsonl");

    fn upsert(value: &[u8]) -> (String, Profile) {
        match decode(None, Some(value)) {
            Ok(ProfileRecord::Upsert { device_id, profile }) => (device_id.into_owned(), profile),
            other => panic!("{other:?}"),
        }
    }

    fn err(key: Option<&[u8]>, value: Option<&[u8]>) -> String {
        decode(key, value)
            .expect_err(&format!("{value:?} should be refused"))
            .to_string()
    }

    #[test]
    fn profiles_are_small() {
        assert_eq!(std::mem::size_of::<Profile>(), 24);
        assert_eq!(std::mem::size_of::<AttrValue>(), 24);
    }

    #[test]
    fn decodes_every_fixture_line() {
        let text = std::fs::read_to_string(FIXTURE).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 15);
        for line in &lines {
            let (id, p) = upsert(line.as_bytes());
            let expected: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(id, expected["device_id"].as_str().unwrap());
            let want = expected["attributes"].as_object().unwrap();
            assert_eq!(p.attributes().len(), want.len(), "{id}");
            let names: Vec<&str> = p.attributes().iter().map(|(n, _)| n).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "attributes are sorted by name");
        }

        let all = load_profiles(Path::new(FIXTURE)).unwrap();
        assert_eq!(all.len(), 15);
        let no_consent: Vec<&str> = all
            .iter()
            .filter(|(_, p)| !p.consent)
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(no_consent, ["d-000107", "d-000112"]);

        let p102 = &all.iter().find(|(id, _)| id == "d-000102").unwrap().1;
        assert_eq!(p102.get("age"), Some(&AttrValue::Num(52.0)));
        assert_eq!(p102.get("gender"), Some(&AttrValue::Text("f".into())));
        assert_eq!(
            p102.get("interests"),
            Some(&AttrValue::List(
                vec!["tea".into(), "ceramics".into(), "calligraphy".into()].into()
            ))
        );
        let purchases = p102.get("purchases_90d").unwrap();
        assert_eq!(purchases.count("tea"), Some(6.0));
        assert_eq!(purchases.count("teaware"), Some(2.0));
        assert_eq!(purchases.count("coffee"), None);
        assert_eq!(p102.get("nope"), None);

        let sparse = &all.iter().find(|(id, _)| id == "d-000114").unwrap().1;
        let names: Vec<&str> = sparse.attributes().iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["income_tier", "interests"]);
        assert_eq!(sparse.get("age"), None);
    }

    #[test]
    fn tombstones_delete_by_key() {
        let gone = |key: &'static [u8], value: Option<&'static [u8]>| match decode(Some(key), value)
        {
            Ok(ProfileRecord::Delete { device_id }) => device_id,
            other => panic!("{other:?}"),
        };
        assert_eq!(gone(b"d-000101", None), "d-000101");
        assert_eq!(gone(b"d-000101", Some(b" null\n")), "d-000101");
        assert!(err(None, None).contains("key"));
        assert!(err(None, Some(b"null")).contains("key"));
        assert_eq!(decode(Some(b""), None), Err(ProfileError::KeyLength(0)));
        assert_eq!(decode(Some(b"\xff"), None), Err(ProfileError::KeyNotUtf8));
        let long = "x".repeat(129);
        assert_eq!(
            decode(Some(long.as_bytes()), None),
            Err(ProfileError::KeyLength(129))
        );
    }

    #[test]
    fn body_device_id_wins_over_the_key() {
        let value = br#"{"device_id":"d-body","consent":true,"extra":[1,{"x":null}]}"#;
        let Ok(ProfileRecord::Upsert { device_id, profile }) =
            decode(Some(b"d-key"), Some(value.as_slice()))
        else {
            panic!()
        };
        assert_eq!(device_id, "d-body");
        assert!(matches!(device_id, Cow::Borrowed(_)), "borrowed from value");
        assert!(profile.consent);
        assert!(profile.attributes().is_empty(), "attributes are optional");
    }

    #[test]
    fn null_attributes_are_absent() {
        let (_, p) = upsert(br#"{"device_id":"d","consent":false,"attributes":{"age":null,"vip":true,"score":-1.5,"empty":[],"c":{}}}"#);
        assert_eq!(p.get("age"), None);
        assert_eq!(p.get("vip"), Some(&AttrValue::Bool(true)));
        assert_eq!(p.get("score"), Some(&AttrValue::Num(-1.5)));
        assert_eq!(p.get("empty"), Some(&AttrValue::List(Box::new([]))));
        assert_eq!(p.get("c"), Some(&AttrValue::Counts(Box::new([]))));
        assert_eq!(p.attributes().len(), 4);
        let (_, p) = upsert(br#"{"device_id":"d","consent":true,"attributes":null}"#);
        assert!(p.attributes().is_empty());
    }

    #[test]
    fn every_rejection_names_the_field() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"device_id\":\"d\"", "not a JSON object"),
            (b"[1,2]", "not a JSON object"),
            (b"", "not a JSON object"),
            (br#"{"consent":true}"#, "missing field `device_id`"),
            (br#"{"device_id":"d"}"#, "missing field `consent`"),
            (
                br#"{"device_id":7,"consent":true}"#,
                "field `device_id` must be a string",
            ),
            (
                br#"{"device_id":"d","consent":"yes"}"#,
                "field `consent` must be a bool",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":[1]}"#,
                "field `attributes` must be an object",
            ),
            (
                br#"{"device_id":"","consent":true}"#,
                "device_id must be 1..=128 characters, got 0",
            ),
            (
                br#"{"device_id":"d","device_id":"e","consent":true}"#,
                "duplicate field",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":{"tags":["a",1]}}"#,
                "attribute `tags`: a list may hold only strings",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":{"tags":["a",null]}}"#,
                "attribute `tags`: a list may hold only strings",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":{"tags":[["a"]]}}"#,
                "attribute `tags`: a list may hold only strings",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":{"purchases_90d":{"tea":"3"}}}"#,
                "attribute `purchases_90d`: entry `tea` must be a number",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":{"p":{"tea":{"n":1}}}}"#,
                "attribute `p`: entry `tea` must be a number",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":{"p":{"tea":1,"tea":2}}}"#,
                "attribute `p`: entry `tea` appears twice",
            ),
            (
                br#"{"device_id":"d","consent":true,"attributes":{"age":1,"age":null}}"#,
                "attribute `age`: appears twice",
            ),
        ];
        for (input, reason) in cases {
            let e = err(Some(b"d"), Some(input));
            assert!(
                e.contains(reason),
                "{} gave {e:?}, expected {reason:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            decode(None, Some(&vec![b' '; MAX_PROFILE_BYTES + 1])),
            Err(ProfileError::Oversize(MAX_PROFILE_BYTES + 1))
        );
    }

    #[test]
    fn limits_are_enforced() {
        let attrs: Vec<String> = (0..=MAX_ATTRIBUTES)
            .map(|i| format!("\"a{i}\":1"))
            .collect();
        let many = format!(
            r#"{{"device_id":"d","consent":true,"attributes":{{{}}}}}"#,
            attrs.join(",")
        );
        assert_eq!(
            decode(None, Some(many.as_bytes())),
            Err(ProfileError::TooManyAttributes(MAX_ATTRIBUTES + 1))
        );
        let items = vec!["\"x\""; MAX_ATTRIBUTE_ENTRIES + 1].join(",");
        let long_list =
            format!(r#"{{"device_id":"d","consent":true,"attributes":{{"tags":[{items}]}}}}"#);
        assert_eq!(
            decode(None, Some(long_list.as_bytes())),
            Err(ProfileError::Attribute {
                name: "tags".into(),
                reason: AttrError::TooManyEntries(MAX_ATTRIBUTE_ENTRIES + 1)
            })
        );
        let counts: Vec<String> = (0..=MAX_ATTRIBUTE_ENTRIES)
            .map(|i| format!("\"c{i}\":1"))
            .collect();
        let long_counts = format!(
            r#"{{"device_id":"d","consent":true,"attributes":{{"p":{{{}}}}}}}"#,
            counts.join(",")
        );
        assert!(err(None, Some(long_counts.as_bytes()))
            .contains("attribute `p`: 1025 entries, more than the 1024-entry limit"));
        let exactly = vec!["\"x\""; MAX_ATTRIBUTE_ENTRIES].join(",");
        upsert(
            format!(r#"{{"device_id":"d","consent":true,"attributes":{{"tags":[{exactly}]}}}}"#)
                .as_bytes(),
        );
    }

    #[test]
    fn a_file_lists_every_bad_line_and_later_lines_replace_earlier() {
        let file = b"{\"device_id\":\"a\",\"consent\":true,\"attributes\":{\"age\":1}}\n\n  \r\n\
            {\"device_id\":\"b\",\"consent\":true}\n\
            {\"device_id\":\"a\",\"consent\":false,\"attributes\":{\"age\":2}}\n";
        let got = parse_lines(file).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "a");
        assert!(!got[0].1.consent);
        assert_eq!(got[0].1.get("age"), Some(&AttrValue::Num(2.0)));
        assert_eq!(got[1].0, "b");

        let bad = b"{\"device_id\":\"a\",\"consent\":true}\nnull\n{\"device_id\":\"b\"}\n";
        let errors = parse_lines(bad).unwrap_err();
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3]);
        assert_eq!(errors[1].to_string(), "line 3: missing field `consent`");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profiles.jsonl");
        std::fs::write(&path, bad).unwrap();
        let e = load_profiles(&path).unwrap_err().to_string();
        assert!(e.contains("2 invalid profile line(s)"), "{e}");
        assert!(e.contains("line 3: missing field `consent`"), "{e}");
        assert!(load_profiles(&dir.path().join("missing.jsonl"))
            .unwrap_err()
            .to_string()
            .starts_with("cannot read profiles"));
    }
}
