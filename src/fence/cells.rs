//! The cell cache in front of the R-tree: for each cell (of a grid, or of H3 at one resolution)
//! that touches a fence, the fences that cover the whole cell (answered with no geometric test)
//! and the fences that cover part of it (tested exactly). A point in a cell that no fence touches
//! is answered by a probe of a small, cache-hot map of tiles and at most one array read.
//!
//! Soundness rests on one conservative step: a cell is judged through a lon/lat box that holds
//! every point the scheme assigns to the cell (a grid cell's own box, padded against rounding; an
//! H3 cell's bounding box, padded for the bulge of its great-circle edges). "Full" means the
//! fence covers the whole box; "none" means the box misses the fence; anything else is "partial".

use geo::{Coord, Intersects, Point};
use h3o::{CellIndex, LatLng, Resolution};
use rstar::RTree;
use rustc_hash::{FxHashMap, FxHashSet};

use super::index::{Bounds, Envelope};
use super::{Fence, FenceIdx, Shape};
use crate::sphere::{self, LatLon, LonLatBox, Meters};

/// How points are bucketed into cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellScheme {
    /// Square cells of `deg` degrees in lon/lat: a point's cell is two divisions away.
    Grid { deg: f64 },
    /// H3 cells at one resolution: a point's cell costs h3o's `LatLng::to_cell`.
    H3(Resolution),
}

/// Sample spacing while enumerating a fence's H3 cells, as a share of the cell edge: small enough
/// that every cell meeting the fence's box holds a sample or borders a cell that does.
const SAMPLE_SPACING: f64 = 0.4;
/// Padding of an H3 cell's box, as a share of its size: covers the bulge of H3's great-circle
/// edges over the straight lon/lat edges between the same vertices.
const H3_PAD: f64 = 0.05;
/// Padding of a grid cell's box, degrees: covers rounding in the point → cell division.
const GRID_PAD: f64 = 1e-9;
/// A circle covers a cell's box only with this much to spare, against haversine rounding.
const CIRCLE_SLACK: Meters = Meters(0.001);
const METERS_PER_DEG_LAT: f64 = sphere::EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

/// A cell's run in `members`: `full` fences covering all of it, then `len - full` to test.
#[derive(Clone, Copy)]
pub(super) struct Span {
    start: u32,
    full: u32,
    len: u32,
}

impl Span {
    const EMPTY: Span = Span {
        start: 0,
        full: 0,
        len: 0,
    };
}

/// Grid cells are stored in square tiles of `TILE × TILE` cells: the map of tiles stays small
/// enough to be cache-hot, and a point in an empty cell of a known tile costs one read of a
/// dense array, not a probe of a large hash map.
const TILE_BITS: u32 = 4;
const TILE: u32 = 1 << TILE_BITS;

/// Grid levels: a fence too large for the fine cells is tiled in cells `TILE` times larger, so
/// that only the rare giant is left for the R-tree (searched on every query).
const GRID_LEVELS: usize = 2;

pub(super) struct CellCache {
    /// Finest first; each fence is listed at exactly one level.
    levels: Vec<Level>,
    /// Fences too large for every level.
    untiled: RTree<Envelope>,
    untiled_count: usize,
}

/// One resolution of cells.
pub(super) struct Level {
    scheme: CellScheme,
    /// Tile key → position of the tile's first span in `spans`.
    tiles: FxHashMap<u64, u32>,
    /// `cells_per_tile` spans per tile, row-major; an empty cell has an empty span.
    spans: Vec<Span>,
    /// Per cell, its fully covering fences then its partly covering ones.
    members: Vec<Member>,
}

/// A fence listed in a cell, with its bounding box inline: most partly covering fences are
/// rejected by the box, read from the same cache lines as the list itself.
#[derive(Clone, Copy, Debug)]
pub(super) struct Member {
    pub fence: FenceIdx,
    /// `[min lon, min lat, max lon, max lat]`, rounded outward to `f32`.
    bbox: [f32; 4],
}

impl Member {
    fn new(fence: FenceIdx, bounds: &Bounds) -> Self {
        let boxes = bounds.boxes();
        // Several boxes only happen on both sides of the antimeridian: merged, they take every
        // longitude.
        let (min_lon, max_lon) = match boxes {
            [one] => (one.min[0], one.max[0]),
            _ => (-180.0, 180.0),
        };
        let min_lat = boxes.iter().map(|b| b.min[1]).fold(f64::INFINITY, f64::min);
        let max_lat = boxes
            .iter()
            .map(|b| b.max[1])
            .fold(f64::NEG_INFINITY, f64::max);
        Self {
            fence,
            bbox: [down(min_lon), down(min_lat), up(max_lon), up(max_lat)],
        }
    }

    /// Whether `p` may be in the fence (never false when it is).
    pub fn may_cover(&self, p: LatLon) -> bool {
        let (x, y) = (p.lon(), p.lat());
        f64::from(self.bbox[0]) <= x
            && x <= f64::from(self.bbox[2])
            && f64::from(self.bbox[1]) <= y
            && y <= f64::from(self.bbox[3])
    }
}

fn down(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) > v {
        f.next_down()
    } else {
        f
    }
}

fn up(v: f64) -> f32 {
    let f = v as f32;
    if f64::from(f) < v {
        f.next_up()
    } else {
        f
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cover {
    Full,
    Partial,
}

/// Where a cell is stored: its tile, and its position within the tile.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    tile: u64,
    cell: u32,
}

impl CellScheme {
    /// The schemes of the cache's levels, finest first.
    fn levels(self) -> Vec<CellScheme> {
        match self {
            CellScheme::Grid { deg } => (0..GRID_LEVELS)
                .map(|l| CellScheme::Grid {
                    deg: deg * f64::from(TILE.pow(l as u32)),
                })
                .collect(),
            CellScheme::H3(_) => vec![self],
        }
    }

    fn cells_per_tile(self) -> usize {
        match self {
            CellScheme::Grid { .. } => (TILE * TILE) as usize,
            // H3 cells are sparse identifiers: each is its own tile.
            CellScheme::H3(_) => 1,
        }
    }

    /// The slot of the cell holding `p`.
    fn slot(self, p: LatLon) -> Option<Slot> {
        match self {
            CellScheme::Grid { deg } => {
                let (x, y) = grid_xy(deg, p.lon(), p.lat());
                Some(grid_slot(x, y))
            }
            CellScheme::H3(res) => LatLng::new(p.lat(), p.lon()).ok().map(|ll| Slot {
                tile: u64::from(ll.to_cell(res)),
                cell: 0,
            }),
        }
    }
}

fn grid_slot(x: u32, y: u32) -> Slot {
    Slot {
        tile: u64::from(y >> TILE_BITS) << 32 | u64::from(x >> TILE_BITS),
        cell: (y & (TILE - 1)) << TILE_BITS | (x & (TILE - 1)),
    }
}

/// The grid cell of a position. `lon + 180` and `lat + 90` are never negative, so truncation is
/// the floor; the reciprocal is hoisted out of batch loops, and its rounding (~1e-13 of a cell)
/// is far inside the cells' `GRID_PAD`. Tiling and lookup both use this one function.
fn grid_xy(deg: f64, lon: f64, lat: f64) -> (u32, u32) {
    let per_deg = 1.0 / deg;
    (
        ((lon + 180.0) * per_deg) as u32,
        ((lat + 90.0) * per_deg) as u32,
    )
}

impl CellCache {
    pub fn build(
        scheme: CellScheme,
        max_cells: usize,
        fences: &[Fence],
        bounds: &[Bounds],
        envelopes: &[Envelope],
    ) -> Self {
        let mut pending: Vec<FenceIdx> = (0..fences.len() as u32).map(FenceIdx).collect();
        let mut levels = Vec::new();
        for scheme in scheme.levels() {
            let mut left = Vec::new();
            levels.push(Level::build(
                scheme, max_cells, fences, bounds, &pending, &mut left,
            ));
            pending = left;
        }
        let mut untiled = vec![false; fences.len()];
        for i in &pending {
            untiled[i.get()] = true;
        }
        let untiled = RTree::bulk_load(
            envelopes
                .iter()
                .filter(|e| untiled[e.data.get()])
                .copied()
                .collect(),
        );
        Self {
            levels,
            untiled,
            untiled_count: pending.len(),
        }
    }

    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    pub fn untiled(&self) -> usize {
        self.untiled_count
    }

    pub fn untiled_tree(&self) -> &RTree<Envelope> {
        &self.untiled
    }
}

impl Level {
    /// Tiles the `fences` it can; pushes the others onto `left`.
    fn build(
        scheme: CellScheme,
        max_cells: usize,
        fences: &[Fence],
        bounds: &[Bounds],
        which: &[FenceIdx],
        left: &mut Vec<FenceIdx>,
    ) -> Self {
        let mut pairs: Vec<(Slot, Cover, FenceIdx)> = Vec::with_capacity(which.len() * 4);
        let mut tiler = Tiler::new(scheme, max_cells);
        for &idx in which {
            match tiler.tile(&fences[idx.get()].shape, &bounds[idx.get()]) {
                Some(cells) => pairs.extend(cells.iter().map(|&(cell, cover)| (cell, cover, idx))),
                None => left.push(idx),
            }
        }
        pairs.sort_unstable();
        let per_tile = scheme.cells_per_tile();
        let (mut tiles, mut spans) = (FxHashMap::default(), Vec::new());
        let mut members = Vec::with_capacity(pairs.len());
        for run in pairs.chunk_by(|a, b| a.0 == b.0) {
            let slot = run[0].0;
            let base = *tiles.entry(slot.tile).or_insert_with(|| {
                spans.resize(spans.len() + per_tile, Span::EMPTY);
                (spans.len() - per_tile) as u32
            });
            spans[base as usize + slot.cell as usize] = Span {
                start: members.len() as u32,
                full: run.iter().filter(|p| p.1 == Cover::Full).count() as u32,
                len: run.len() as u32,
            };
            members.extend(run.iter().map(|p| Member::new(p.2, &bounds[p.2.get()])));
        }
        spans.shrink_to_fit();
        Self {
            scheme,
            tiles,
            spans,
            members,
        }
    }

    /// Where the tiled fences of `p`'s cell are listed (an empty span for an empty cell).
    pub fn span(&self, p: LatLon) -> Span {
        self.scheme
            .slot(p)
            .and_then(|slot| {
                let base = *self.tiles.get(&slot.tile)?;
                self.spans.get(base as usize + slot.cell as usize).copied()
            })
            .unwrap_or(Span::EMPTY)
    }

    /// A span's fences: those covering all of the cell, and those to test exactly.
    pub fn members(&self, s: Span) -> (&[Member], &[Member]) {
        self.members[s.start as usize..(s.start + s.len) as usize].split_at(s.full as usize)
    }

    /// Starts loading a span's members (see `prefetch`).
    pub fn prefetch(&self, s: Span) {
        if let Some(m) = self.members.get(s.start as usize) {
            crate::cache::prefetch(m);
        }
    }
}

/// Enumerates and classifies the cells of one fence at a time, reusing its buffers.
struct Tiler {
    scheme: CellScheme,
    max_cells: usize,
    seen: FxHashSet<CellIndex>,
    frontier: Vec<CellIndex>,
    out: Vec<(Slot, Cover)>,
}

impl Tiler {
    fn new(scheme: CellScheme, max_cells: usize) -> Self {
        Self {
            scheme,
            max_cells,
            seen: FxHashSet::default(),
            frontier: Vec::new(),
            out: Vec::new(),
        }
    }

    /// The cells that meet `shape`, or `None` when there would be more than `max_cells`.
    fn tile(&mut self, shape: &Shape, bounds: &Bounds) -> Option<&[(Slot, Cover)]> {
        self.out.clear();
        match self.scheme {
            CellScheme::Grid { deg } => {
                for b in bounds.boxes() {
                    let (x0, y0) = grid_xy(deg, b.min[0], b.min[1]);
                    let (x1, y1) = grid_xy(deg, b.max[0], b.max[1]);
                    let count = (u64::from(x1 - x0) + 1) * (u64::from(y1 - y0) + 1);
                    if count + self.out.len() as u64 > self.max_cells as u64 {
                        return None;
                    }
                    for y in y0..=y1 {
                        for x in x0..=x1 {
                            let cell = LonLatBox {
                                min: [
                                    x as f64 * deg - 180.0 - GRID_PAD,
                                    y as f64 * deg - 90.0 - GRID_PAD,
                                ],
                                max: [
                                    (x + 1) as f64 * deg - 180.0 + GRID_PAD,
                                    (y + 1) as f64 * deg - 90.0 + GRID_PAD,
                                ],
                            };
                            if let Some(cover) = classify(shape, bounds, Some(cell)) {
                                self.out.push((grid_slot(x, y), cover));
                            }
                        }
                    }
                }
            }
            CellScheme::H3(res) => self.tile_h3(res, shape, bounds)?,
        }
        Some(&self.out)
    }

    fn tile_h3(&mut self, res: Resolution, shape: &Shape, bounds: &Bounds) -> Option<()> {
        self.seen.clear();
        self.frontier.clear();
        let edge_m = res.edge_length_m();
        let cell_m2 = res.area_m2();
        let step_lat = SAMPLE_SPACING * edge_m / METERS_PER_DEG_LAT;
        for b in bounds.boxes() {
            // Longitude steps shrink in metres toward the equator: size them where they are widest.
            let nearest_equator = if b.min[1] <= 0.0 && b.max[1] >= 0.0 {
                0.0
            } else {
                b.min[1].abs().min(b.max[1].abs())
            };
            let cos = nearest_equator.to_radians().cos();
            let (w_m, h_m) = (
                (b.max[0] - b.min[0]) * METERS_PER_DEG_LAT * cos,
                (b.max[1] - b.min[1]) * METERS_PER_DEG_LAT,
            );
            if (w_m + 2.0 * edge_m) * (h_m + 2.0 * edge_m) / cell_m2 > self.max_cells as f64 {
                return None;
            }
            let step_lon = step_lat / cos.max(1e-12);
            let nx = ((b.max[0] - b.min[0]) / step_lon).ceil() as usize + 1;
            let ny = ((b.max[1] - b.min[1]) / step_lat).ceil() as usize + 1;
            if nx.saturating_mul(ny) > self.max_cells * 64 {
                return None;
            }
            for iy in 0..ny {
                let lat = (b.min[1] + iy as f64 * step_lat).min(b.max[1]);
                for ix in 0..nx {
                    let lon = (b.min[0] + ix as f64 * step_lon).min(b.max[0]);
                    if let Ok(ll) = LatLng::new(lat, lon) {
                        let cell = ll.to_cell(res);
                        if self.seen.insert(cell) {
                            self.frontier.push(cell);
                        }
                    }
                }
            }
        }
        for c in std::mem::take(&mut self.frontier) {
            for nb in c.grid_disk::<Vec<_>>(1) {
                self.seen.insert(nb);
            }
        }
        for &cell in &self.seen {
            if let Some(cover) = classify(shape, bounds, h3_box(cell)) {
                self.out.push((
                    Slot {
                        tile: u64::from(cell),
                        cell: 0,
                    },
                    cover,
                ));
                if self.out.len() > self.max_cells {
                    return None;
                }
            }
        }
        Some(())
    }
}

/// How `shape` covers a cell, judged on the box that holds all of the cell's points; `None` when
/// it misses. A cell with no such box (an H3 cell around a pole or across the antimeridian) is
/// always tested exactly.
fn classify(shape: &Shape, bounds: &Bounds, cell: Option<LonLatBox>) -> Option<Cover> {
    let Some(b) = cell else {
        return Some(Cover::Partial);
    };
    match shape {
        Shape::Area(mp) => {
            for l in super::rings(mp).flat_map(|r| r.lines()) {
                if segment_meets_box(l.start, l.end, &b) {
                    return Some(Cover::Partial);
                }
            }
            // No edge meets the box: it is wholly inside or wholly outside.
            let center = Coord {
                x: (b.min[0] + b.max[0]) / 2.0,
                y: (b.min[1] + b.max[1]) / 2.0,
            };
            mp.intersects(&center).then_some(Cover::Full)
        }
        Shape::Circle { center, radius } => {
            // On the sphere a small box's farthest point from any centre is one of its corners.
            let corners = [
                [b.min[0], b.min[1]],
                [b.min[0], b.max[1]],
                [b.max[0], b.min[1]],
                [b.max[0], b.max[1]],
            ];
            if corners.iter().all(|c| {
                sphere::distance(*center, Point::new(c[0], c[1])).0 <= radius.0 - CIRCLE_SLACK.0
            }) {
                return Some(Cover::Full);
            }
            bounds
                .boxes()
                .iter()
                .any(|c| c.intersects(&b))
                .then_some(Cover::Partial)
        }
    }
}

fn h3_box(cell: CellIndex) -> Option<LonLatBox> {
    let mut b = LonLatBox {
        min: [f64::INFINITY; 2],
        max: [f64::NEG_INFINITY; 2],
    };
    for v in cell.boundary().iter() {
        b.min = [b.min[0].min(v.lng()), b.min[1].min(v.lat())];
        b.max = [b.max[0].max(v.lng()), b.max[1].max(v.lat())];
    }
    let (w, h) = (b.max[0] - b.min[0], b.max[1] - b.min[1]);
    if !(w.is_finite() && h.is_finite()) || w > 180.0 || b.max[1] >= 89.0 || b.min[1] <= -89.0 {
        return None;
    }
    let pad = H3_PAD * w.max(h) + 1e-9;
    Some(LonLatBox {
        min: [b.min[0] - pad, b.min[1] - pad],
        max: [b.max[0] + pad, b.max[1] + pad],
    })
}

/// Whether the closed segment `a`–`b` meets the closed box (Liang–Barsky clipping).
fn segment_meets_box(a: Coord<f64>, b: Coord<f64>, bx: &LonLatBox) -> bool {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.x - bx.min[0]),
        (dx, bx.max[0] - a.x),
        (-dy, a.y - bx.min[1]),
        (dy, bx.max[1] - a.y),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return false;
            }
        } else {
            let t = q / p;
            if p < 0.0 {
                t0 = t0.max(t);
            } else {
                t1 = t1.min(t);
            }
            if t0 > t1 {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_meet_boxes_when_they_touch_or_cross_them() {
        let b = LonLatBox {
            min: [0.0, 0.0],
            max: [1.0, 1.0],
        };
        let c = |x, y| Coord { x, y };
        assert!(segment_meets_box(c(-1.0, 0.5), c(2.0, 0.5), &b));
        assert!(segment_meets_box(c(0.2, 0.2), c(0.3, 0.3), &b));
        assert!(segment_meets_box(c(1.0, -1.0), c(1.0, 2.0), &b));
        assert!(!segment_meets_box(c(1.5, -1.0), c(3.0, 2.0), &b));
        assert!(!segment_meets_box(c(-1.0, 0.5), c(-0.1, 3.0), &b));
    }
}
