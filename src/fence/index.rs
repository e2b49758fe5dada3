//! The fence index: an R-tree over fence envelopes with exact geometric tests behind it (see
//! `exact`), and a cell cache in front of it (see `cells`).
//!
//! Fences are stored sorted by id, so a [`FenceIdx`] orders like its id and callers get sorted
//! answers by sorting small integers. Queries allocate nothing: the caller owns the output
//! buffers and reuses them.

use geo::{BoundingRect, Point};
use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{RTree, AABB};
use smallvec::SmallVec;
use std::ops::ControlFlow;

use super::cells::{CellCache, CellScheme, Span};
use super::exact::ExactTests;
use super::{Fence, FenceIdx, Shape};
use crate::sphere::{self, LatLon, LonLatBox, Meters, Probe};

pub(super) type Envelope = GeomWithData<Rectangle<[f64; 2]>, FenceIdx>;

/// Fences that cover one point; inline up to eight, the most that overlap in real layouts.
pub type Hits = SmallVec<[FenceIdx; 8]>;

/// How the index is built. The defaults are the measured best on the generated city data
/// (README, "Performance").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexOptions {
    /// The cell cache's cells, or `None` to answer from the R-tree alone.
    pub cells: Option<CellScheme>,
    /// A fence that would cover more cells than this is looked up in the R-tree instead.
    pub max_cells_per_fence: usize,
    /// Polygons with more vertices than this are prepared as monotone pieces (O(log n) tests).
    pub prepare_above_vertices: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            cells: Some(CellScheme::Grid { deg: 0.008 }),
            max_cells_per_fence: 64,
            prepare_above_vertices: 32,
        }
    }
}

/// A fence within reach of a point, with the distance to its edge (0 inside).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nearby {
    pub fence: FenceIdx,
    pub distance: Meters,
}

/// All fences of a data set, ready for point queries.
pub struct FenceIndex {
    fences: Vec<Fence>,
    exact: ExactTests,
    tree: RTree<Envelope>,
    cells: Option<CellCache>,
    bounds: Vec<Bounds>,
}

impl FenceIndex {
    /// Builds the index. Fence ids must be unique (the loader guarantees it).
    pub fn new(mut fences: Vec<Fence>, options: IndexOptions) -> Self {
        fences.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        let exact = ExactTests::new(&fences, options.prepare_above_vertices);
        let bounds: Vec<Bounds> = fences.iter().map(|f| Bounds::of(&f.shape)).collect();
        let envelopes: Vec<Envelope> = bounds
            .iter()
            .enumerate()
            .flat_map(|(i, b)| envelopes(FenceIdx(i as u32), b))
            .collect();
        let cells = options.cells.map(|scheme| {
            CellCache::build(
                scheme,
                options.max_cells_per_fence,
                &fences,
                &bounds,
                &envelopes,
            )
        });
        Self {
            fences,
            exact,
            tree: RTree::bulk_load(envelopes),
            cells,
            bounds,
        }
    }

    pub fn len(&self) -> usize {
        self.fences.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fences.is_empty()
    }

    pub fn fence(&self, idx: FenceIdx) -> &Fence {
        &self.fences[idx.get()]
    }

    pub fn fences(&self) -> &[Fence] {
        &self.fences
    }

    /// The fence's bounding boxes (two for a fence split at the antimeridian).
    pub fn boxes(&self, idx: FenceIdx) -> &[LonLatBox] {
        self.bounds[idx.get()].boxes()
    }

    /// How many fences the cell cache could not tile and leaves to the R-tree.
    pub fn untiled_fences(&self) -> Option<usize> {
        self.cells.as_ref().map(CellCache::untiled)
    }

    /// Every fence that covers `p`, ascending by fence id, into `out` (cleared first).
    pub fn containing(&self, p: LatLon, out: &mut Hits) {
        out.clear();
        let pt = p.point();
        match &self.cells {
            Some(cells) => {
                for level in cells.levels() {
                    let (full, partial) = level.members(level.span(p));
                    out.extend(full.iter().map(|m| m.fence));
                    out.extend(
                        partial
                            .iter()
                            .filter(|m| m.may_cover(p) && self.covers(m.fence, pt))
                            .map(|m| m.fence),
                    );
                }
                self.finish(cells, pt, out);
            }
            None => {
                self.tree_containing(&self.tree, pt, out);
                sort_hits(out);
            }
        }
    }

    /// [`containing`](Self::containing) for many points: `out[k]` gets the answer for
    /// `points[k]`. On an index larger than the CPU caches this is faster than one call per
    /// point: it works in stages (cells, then candidates, then exact tests), so the memory reads
    /// of different points are independent and overlap instead of each waiting on the last.
    pub fn containing_many(&self, points: &[LatLon], out: &mut [Hits], batch: &mut Batch) {
        let Some(cells) = &self.cells else {
            for (&p, o) in points.iter().zip(out.iter_mut()) {
                self.containing(p, o);
            }
            return;
        };
        for o in out.iter_mut() {
            o.clear();
        }
        batch.candidates.clear();
        for level in cells.levels() {
            batch.spans.clear();
            for &p in points {
                let span = level.span(p);
                level.prefetch(span);
                batch.spans.push(span);
            }
            for (k, ((&p, &span), o)) in points
                .iter()
                .zip(&batch.spans)
                .zip(out.iter_mut())
                .enumerate()
            {
                let (full, partial) = level.members(span);
                o.extend(full.iter().map(|m| m.fence));
                batch.candidates.extend(
                    partial
                        .iter()
                        .filter(|m| m.may_cover(p))
                        .map(|m| (k as u32, m.fence)),
                );
            }
        }
        for &(_, f) in &batch.candidates {
            self.exact.prefetch_test(f);
        }
        for &(_, f) in &batch.candidates {
            self.exact.prefetch_coords(f);
        }
        for &(k, f) in &batch.candidates {
            if self.covers(f, points[k as usize].point()) {
                out[k as usize].push(f);
            }
        }
        for (&p, o) in points.iter().zip(out.iter_mut()) {
            self.finish(cells, p.point(), o);
        }
    }

    /// Adds the untiled fences covering `pt` and sorts.
    fn finish(&self, cells: &CellCache, pt: Point<f64>, out: &mut Hits) {
        if cells.untiled_tree().size() > 0 {
            self.tree_containing(cells.untiled_tree(), pt, out);
        }
        sort_hits(out);
    }

    fn tree_containing(&self, tree: &RTree<Envelope>, pt: Point<f64>, out: &mut Hits) {
        let _ = tree.locate_all_at_point_int(&[pt.x(), pt.y()], |e| {
            if self.covers(e.data, pt) {
                out.push(e.data);
            }
            ControlFlow::<()>::Continue(())
        });
    }

    /// Whether `p` lies in some fence's bounding box (whether or not the fence covers it).
    pub fn in_some_envelope(&self, p: LatLon) -> bool {
        self.tree.locate_at_point(&[p.lon(), p.lat()]).is_some()
    }

    /// The exact test of CONTRACTS §1 for one fence (callers reject by bounding box first).
    fn covers(&self, i: FenceIdx, pt: Point<f64>) -> bool {
        self.exact.covers(i, pt)
    }

    /// Fences whose edge is within `radius` of `p`, nearest first (ties by id), at most `limit`,
    /// into `out` (cleared first).
    pub fn nearby(&self, p: LatLon, radius: Meters, limit: usize, out: &mut Vec<Nearby>) {
        out.clear();
        let pt = p.point();
        let (boxes, n) = sphere::cap_boxes(pt, radius);
        for b in &boxes[..n] {
            let env = AABB::from_corners(b.min, b.max);
            let _ = self.tree.locate_in_envelope_intersecting_int(&env, |e| {
                let distance = self.distance(e.data, pt);
                if distance <= radius {
                    out.push(Nearby {
                        fence: e.data,
                        distance,
                    });
                }
                ControlFlow::<()>::Continue(())
            });
        }
        out.sort_unstable_by(|a, b| {
            a.distance
                .0
                .total_cmp(&b.distance.0)
                .then(a.fence.cmp(&b.fence))
        });
        out.dedup_by_key(|n| n.fence);
        out.truncate(limit);
    }

    /// Distance from `pt` to the fence's edge on the sphere, 0 when the fence covers it.
    pub fn distance(&self, i: FenceIdx, pt: Point<f64>) -> Meters {
        if self.covers(i, pt) {
            return Meters(0.0);
        }
        self.edge_distance(i, &Probe::new(pt))
    }

    /// Distance from `pt` to the fence's edge on the sphere, from inside or outside: how far a
    /// fix can be off before it would fall on the other side (presence weighs it against the
    /// fix's accuracy).
    pub fn edge_distance(&self, i: FenceIdx, at: &Probe) -> Meters {
        self.exact.edge_distance(i, at)
    }
}

fn sort_hits(out: &mut Hits) {
    if out.len() > 1 {
        out.sort_unstable();
        // A circle across the antimeridian has two envelopes; a point on ±180° can hit both.
        out.dedup();
    }
}

/// Scratch space for [`FenceIndex::containing_many`], reused from batch to batch.
#[derive(Default)]
pub struct Batch {
    spans: Vec<Span>,
    /// (point, fence) pairs whose bounding box holds the point, awaiting the exact test.
    candidates: Vec<(u32, FenceIdx)>,
}

fn area_box(shape: &Shape) -> LonLatBox {
    shape.area_bounds().map_or(
        LonLatBox {
            min: [0.0; 2],
            max: [0.0; 2],
        },
        lon_lat_box,
    )
}

fn lon_lat_box(r: geo::Rect<f64>) -> LonLatBox {
    LonLatBox {
        min: [r.min().x, r.min().y],
        max: [r.max().x, r.max().y],
    }
}

/// The lon/lat boxes that bound a fence: its bounding box; a circle's one or two cap boxes; one
/// box per part for a MultiPolygon given split at the antimeridian (whose single box would span
/// every longitude). Computed once per fence when the index is built, and shared by every
/// structure that needs it.
#[derive(Debug, Clone)]
pub(super) struct Bounds {
    boxes: SmallVec<[LonLatBox; 2]>,
}

impl Bounds {
    fn of(shape: &Shape) -> Self {
        let boxes = match shape {
            Shape::Circle { center, radius } => {
                let (b, n) = sphere::cap_boxes(*center, *radius);
                b[..n].iter().copied().collect()
            }
            Shape::Area(mp) => {
                let whole = area_box(shape);
                if whole.max[0] - whole.min[0] > 180.0 {
                    mp.0.iter()
                        .filter_map(|p| p.bounding_rect())
                        .map(lon_lat_box)
                        .collect()
                } else {
                    SmallVec::from_elem(whole, 1)
                }
            }
        };
        Self { boxes }
    }

    pub fn boxes(&self) -> &[LonLatBox] {
        &self.boxes
    }
}

fn envelopes(i: FenceIdx, bounds: &Bounds) -> impl Iterator<Item = Envelope> + '_ {
    bounds
        .boxes()
        .iter()
        .map(move |b| GeomWithData::new(Rectangle::from_corners(b.min, b.max), i))
}
