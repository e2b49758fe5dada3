//! Store geofences: what a fence is (CONTRACTS §1–2), how a file of them is loaded, and the
//! index that answers "which fences cover this point" and "which are near".
//!
//! A [`Fence`] is always valid: `load` refuses anything the contract calls invalid, so the index
//! and everything downstream never re-check geometry.

mod cells;
mod exact;
mod index;
mod load;
mod ring;

pub use cells::CellScheme;
pub use index::{Batch, FenceIndex, Hits, IndexOptions, Nearby};
pub use load::{load_fences, parse_fences, FenceError, FenceFileError, LoadMode, LoadReport};

use geo::{BoundingRect, LineString, MultiPolygon, Point};
use serde_json::{Map, Value};

use crate::hours::WeeklyHours;
use crate::local_time::Zone;
use crate::sphere::Meters;

/// Position of a fence in its [`FenceIndex`]: the small `Copy` id the hot path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FenceIdx(pub u32);

impl FenceIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Every ring of a MultiPolygon: each polygon's exterior, then its holes.
fn rings(mp: &MultiPolygon<f64>) -> impl Iterator<Item = &LineString<f64>> {
    mp.0.iter()
        .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors()))
}

/// The largest circle the contract allows (CONTRACTS §1).
pub const MAX_RADIUS: Meters = Meters(50_000.0);

/// A fence's geometry.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Polygon or MultiPolygon, holes included; covers-semantics, planar in lon/lat.
    Area(MultiPolygon<f64>),
    /// Great-circle distance from `center` ≤ `radius`.
    Circle { center: Point<f64>, radius: Meters },
}

impl Shape {
    pub fn vertex_count(&self) -> usize {
        match self {
            Shape::Area(mp) => rings(mp).map(|r| r.0.len()).sum(),
            Shape::Circle { .. } => 1,
        }
    }

    /// The planar lon/lat bounding box of an area; `None` for circles (see `sphere::cap_boxes`).
    pub fn area_bounds(&self) -> Option<geo::Rect<f64>> {
        match self {
            Shape::Area(mp) => mp.bounding_rect(),
            Shape::Circle { .. } => None,
        }
    }
}

/// The selector properties of CONTRACTS §2, plus everything else as pass-through metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FenceProps {
    pub store_id: String,
    pub brand: Option<String>,
    pub region: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    /// The zone schedules, opening hours and local days are read in (UTC when absent).
    pub timezone: Option<Zone>,
    /// Opening hours in local time; absent means always open.
    pub hours: Option<WeeklyHours>,
    /// Every other property, kept for offers.
    pub metadata: Map<String, Value>,
}

/// One valid store geofence.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    pub id: String,
    pub shape: Shape,
    pub props: FenceProps,
}
