//! GeoJSON fence files (CONTRACTS §2) → valid [`Fence`]s, or errors naming the feature and why.
//!
//! The FeatureCollection is read with a streaming serde visitor rather than as one JSON tree, so
//! a million-fence file costs its fences, not a document model of it, and a bad feature is
//! reported by id without stopping the scan.

use std::fmt;
use std::path::Path;

use geo::{Coord, MultiPolygon, Point, Polygon};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::hours::{HoursError, WeeklyHours};
use crate::local_time::{Zone, ZoneError};
use serde_json::{Map, Value};

use super::ring::{self, RingError};
use super::{Fence, FenceProps, Shape, MAX_RADIUS};
use crate::sphere::{LatLon, LatLonError, Meters};

/// What to do with invalid features (CONTRACTS §1: the load fails whole unless the operator
/// asked for lenient loading).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadMode {
    #[default]
    Strict,
    /// Load the valid features and report the rest.
    Lenient,
}

/// The fences of a file, and in lenient mode the features that were refused.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub fences: Vec<Fence>,
    pub rejected: Vec<FenceError>,
}

/// One refused feature: which (its id, or its position when it has no usable id) and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("feature {feature} (#{index} in the collection): {reason}")]
pub struct FenceError {
    /// The feature's id in quotes, or `<no id>`.
    pub feature: String,
    /// 0-based position in the `features` array.
    pub index: usize,
    pub reason: Rejection,
}

/// Why a feature is not a valid fence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("missing `id` (every fence needs a unique string id)")]
    MissingId,
    #[error("`id` must be a string, got {0}")]
    IdNotString(String),
    #[error("duplicate id (first seen at #{first})")]
    DuplicateId { first: usize },
    #[error("`type` is {0:?}, expected \"Feature\"")]
    NotAFeature(String),
    #[error("missing geometry")]
    MissingGeometry,
    #[error("geometry type {0:?} is not a fence: use Polygon, MultiPolygon, or Point with properties.radius_m")]
    UnsupportedGeometry(String),
    #[error("malformed coordinates: {0}")]
    Malformed(&'static str),
    #[error("coordinate {0}")]
    Coordinate(LatLonError),
    #[error("polygon {polygon} ring {ring}: {error}")]
    Ring {
        polygon: usize,
        ring: usize,
        error: RingError,
    },
    #[error("missing properties.store_id (a non-empty string)")]
    MissingStoreId,
    #[error("properties.{0} must be a string")]
    NotAString(&'static str),
    #[error("properties.{0}")]
    BadHours(#[from] HoursError),
    #[error("properties.timezone: {0}")]
    BadTimezone(#[from] ZoneError),
    #[error("a circle (Point) fence needs properties.radius_m")]
    MissingRadius,
    #[error("properties.radius_m must be a number in (0, {max}] metres, got {got}")]
    BadRadius { got: String, max: f64 },
}

/// A fence file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FenceFileError {
    #[error("cannot read fence file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not valid GeoJSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{} invalid feature(s); the file was refused whole (use lenient loading to skip them):\n  {}", .0.len(), list(.0))]
    Invalid(Vec<FenceError>),
}

fn list(errors: &[FenceError]) -> String {
    const SHOWN: usize = 20;
    let mut s: Vec<String> = errors.iter().take(SHOWN).map(|e| e.to_string()).collect();
    if errors.len() > SHOWN {
        s.push(format!("… and {} more", errors.len() - SHOWN));
    }
    s.join("\n  ")
}

/// Reads and validates a fence file.
pub fn load_fences(path: &Path, mode: LoadMode) -> Result<LoadReport, FenceFileError> {
    parse_fences(&std::fs::read(path)?, mode)
}

/// Validates a fence file's bytes.
pub fn parse_fences(bytes: &[u8], mode: LoadMode) -> Result<LoadReport, FenceFileError> {
    let mut state = Collector::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    CollectionSeed(&mut state).deserialize(&mut de)?;
    de.end()?;
    if !state.seen_features {
        return Err(FenceFileError::Json(de::Error::custom(
            "expected a FeatureCollection with a `features` array",
        )));
    }
    match mode {
        LoadMode::Strict if !state.report.rejected.is_empty() => {
            Err(FenceFileError::Invalid(state.report.rejected))
        }
        _ => Ok(state.report),
    }
}

#[derive(Default)]
struct Collector {
    report: LoadReport,
    /// Each id seen so far, with the position of its first feature.
    first_index: rustc_hash::FxHashMap<String, usize>,
    seen_features: bool,
}

impl Collector {
    fn accept(&mut self, index: usize, raw: RawFeature) {
        let id = match raw.id {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => {
                return self.reject("<no id>".into(), index, Rejection::MissingId)
            }
            Some(other) => {
                let reason = Rejection::IdNotString(other.to_string());
                return self.reject("<no id>".into(), index, reason);
            }
        };
        match self
            .unique(&id, index)
            .and_then(|()| build(raw.kind, raw.geometry, raw.properties))
        {
            Ok((shape, props)) => self.report.fences.push(Fence { id, shape, props }),
            Err(reason) => self.reject(format!("{id:?}"), index, reason),
        }
    }

    fn reject(&mut self, feature: String, index: usize, reason: Rejection) {
        self.report.rejected.push(FenceError {
            feature,
            index,
            reason,
        });
    }

    fn unique(&mut self, id: &str, index: usize) -> Result<(), Rejection> {
        match self.first_index.get(id) {
            Some(&first) => Err(Rejection::DuplicateId { first }),
            None => {
                self.first_index.insert(id.to_owned(), index);
                Ok(())
            }
        }
    }
}

#[derive(Deserialize)]
struct RawFeature {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<Value>,
    geometry: Option<Value>,
    properties: Option<Value>,
}

/// A feature's geometry and properties, checked.
fn build(
    kind: Option<String>,
    geometry: Option<Value>,
    properties: Option<Value>,
) -> Result<(Shape, FenceProps), Rejection> {
    if let Some(k) = kind.filter(|k| k != "Feature") {
        return Err(Rejection::NotAFeature(k));
    }
    let mut props = match properties {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let geometry = match geometry {
        Some(Value::Object(g)) => g,
        _ => return Err(Rejection::MissingGeometry),
    };
    let coords = geometry
        .get("coordinates")
        .ok_or(Rejection::Malformed("missing `coordinates`"))?;
    let shape = match geometry.get("type").and_then(Value::as_str) {
        Some("Polygon") => Shape::Area(MultiPolygon(vec![polygon(coords, 0)?])),
        Some("MultiPolygon") => {
            let polys = coords.as_array().ok_or(Rejection::Malformed(
                "MultiPolygon coordinates must be an array of polygons",
            ))?;
            if polys.is_empty() {
                return Err(Rejection::Malformed("MultiPolygon has no polygons"));
            }
            Shape::Area(MultiPolygon(
                polys
                    .iter()
                    .enumerate()
                    .map(|(k, p)| polygon(p, k))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Some("Point") => {
            let center = position(coords)?;
            let radius = match props.remove("radius_m") {
                None | Some(Value::Null) => return Err(Rejection::MissingRadius),
                Some(v) => match v.as_f64() {
                    Some(r) if r > 0.0 && r <= MAX_RADIUS.0 => Meters(r),
                    _ => {
                        return Err(Rejection::BadRadius {
                            got: v.to_string(),
                            max: MAX_RADIUS.0,
                        })
                    }
                },
            };
            Shape::Circle {
                center: Point(center),
                radius,
            }
        }
        Some(other) => return Err(Rejection::UnsupportedGeometry(other.to_owned())),
        None => return Err(Rejection::Malformed("geometry has no string `type`")),
    };
    Ok((shape, fence_props(props)?))
}

fn fence_props(mut m: Map<String, Value>) -> Result<FenceProps, Rejection> {
    let mut text = |key: &'static str| match m.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::NotAString(key)),
    };
    let store_id = match text("store_id") {
        Ok(Some(s)) if !s.is_empty() => s,
        Ok(_) => return Err(Rejection::MissingStoreId),
        Err(e) => return Err(e),
    };
    let (brand, region, kind, name, timezone) = (
        text("brand")?,
        text("region")?,
        text("kind")?,
        text("name")?,
        text("timezone")?,
    );
    let timezone = timezone.as_deref().map(Zone::named).transpose()?;
    let hours = match m.remove("hours") {
        None | Some(Value::Null) => None,
        Some(h) => Some(WeeklyHours::from_json(&h)?),
    };
    Ok(FenceProps {
        store_id,
        brand,
        region,
        kind,
        name,
        timezone,
        hours,
        metadata: m,
    })
}

fn polygon(v: &Value, index: usize) -> Result<Polygon<f64>, Rejection> {
    let rings = v
        .as_array()
        .ok_or(Rejection::Malformed("a polygon must be an array of rings"))?;
    let mut rings = rings.iter().enumerate().map(|(r, ring_v)| {
        let positions = ring_v
            .as_array()
            .ok_or(Rejection::Malformed("a ring must be an array of positions"))?;
        let coords = positions
            .iter()
            .map(position)
            .collect::<Result<Vec<_>, _>>()?;
        ring::validate(coords).map_err(|error| Rejection::Ring {
            polygon: index,
            ring: r,
            error,
        })
    });
    let exterior = rings
        .next()
        .ok_or(Rejection::Malformed("a polygon needs an exterior ring"))??;
    Ok(Polygon::new(exterior, rings.collect::<Result<_, _>>()?))
}

fn position(v: &Value) -> Result<Coord<f64>, Rejection> {
    let p = v.as_array().ok_or(Rejection::Malformed(
        "a position must be an array [lon, lat]",
    ))?;
    let (Some(lon), Some(lat)) = (
        p.first().and_then(Value::as_f64),
        p.get(1).and_then(Value::as_f64),
    ) else {
        return Err(Rejection::Malformed(
            "a position must start with two numbers [lon, lat]",
        ));
    };
    if p.len() > 3 {
        return Err(Rejection::Malformed(
            "a position has at most 3 numbers [lon, lat, alt]",
        ));
    }
    let ll = LatLon::new(lat, lon).map_err(Rejection::Coordinate)?;
    Ok(Coord {
        x: ll.lon(),
        y: ll.lat(),
    })
}

/// Walks the top-level object, streaming each element of `features` into the collector.
struct CollectionSeed<'a>(&'a mut Collector);

impl<'de> DeserializeSeed<'de> for CollectionSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CollectionSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GeoJSON FeatureCollection object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => {
                    let t: String = map.next_value()?;
                    if t != "FeatureCollection" {
                        return Err(de::Error::custom(format!(
                            "top-level `type` is {t:?}, expected \"FeatureCollection\""
                        )));
                    }
                }
                "features" => {
                    map.next_value_seed(FeaturesSeed(self.0))?;
                    self.0.seen_features = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct FeaturesSeed<'a>(&'a mut Collector);

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of GeoJSON Features")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = self.0.report.fences.len() + self.0.report.rejected.len();
        while let Some(raw) = seq.next_element::<RawFeature>()? {
            self.0.accept(index, raw);
            index += 1;
        }
        Ok(())
    }
}
