//! Reach: which fences a fix is near, for nearby campaigns. The fences they select, grown by how
//! far they reach (plus the presence exit buffer, so leaving reach can be seen), are filed under
//! the grid cells they touch; a fix looks up its one cell, and most fences it finds there are
//! ruled out by a lower bound on the distance to their bounding box before any exact distance.

use rustc_hash::FxHashMap;

use crate::cache::prefetch;
use crate::fence::{FenceIdx, FenceIndex};
use crate::presence::Reach;
use crate::sphere::{self, LatLon, LonLatBox, Meters, Probe, EARTH_RADIUS_M};

/// Cells of 0.01° (about 1.1 km north–south): a fix's cell holds few fences, and a fence with
/// a 5 km reach spans at most a few hundred cells.
const CELL_DEG: f64 = 0.01;

#[derive(Debug, Default)]
pub struct ReachIndex {
    slack_m: f64,
    /// The cells that have fences, by open addressing (linear probing, at most half full): a
    /// cell's place follows from its coordinates alone, so a batch can prefetch it, then its
    /// entries, before it queries (see `Engine::on_batch`).
    cells: Vec<Cell>,
    /// Each cell's fences, contiguous, with what a query needs inline: no pointer to follow.
    entries: Vec<Entry>,
}

/// A cell's entries, `entries[start..start + len]`; `len == 0` marks a free place.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    key: (i32, i32),
    start: u32,
    len: u32,
}

/// A fence's box (one of two for a fence split at the antimeridian) filed under a cell.
#[derive(Debug, Clone, Copy)]
struct Entry {
    fence: FenceIdx,
    /// How far nearby campaigns reach around the fence.
    radius: f64,
    b: LonLatBox,
    /// cos of the box's largest |latitude|: where a degree of longitude is shortest in it.
    cos_lat: f64,
}

fn cell(p: LatLon) -> (i32, i32) {
    cell_of(p.lon(), p.lat())
}

fn cell_of(lon: f64, lat: f64) -> (i32, i32) {
    (
        (lon / CELL_DEG).floor() as i32,
        (lat / CELL_DEG).floor() as i32,
    )
}

impl ReachIndex {
    /// `radius[f]`: the largest reach of a nearby campaign selecting fence `f` (0 for none).
    pub fn new(radius: Vec<f64>, fences: &FenceIndex, slack_m: f64) -> Self {
        let mut lists: FxHashMap<_, Vec<Entry>> = FxHashMap::default();
        for (fi, &r) in radius.iter().enumerate().filter(|(_, &r)| r > 0.0) {
            let fence = FenceIdx(fi as u32);
            for b in fences.boxes(fence) {
                let entry = Entry {
                    fence,
                    radius: r,
                    b: *b,
                    cos_lat: b.min[1].abs().max(b.max[1].abs()).to_radians().cos(),
                };
                let g = grow(b, Meters(r + slack_m));
                let (x0, y0) = cell_of(g.min[0], g.min[1]);
                let (x1, y1) = cell_of(g.max[0], g.max[1]);
                for x in x0..=x1 {
                    for y in y0..=y1 {
                        lists.entry((x, y)).or_default().push(entry);
                    }
                }
            }
        }
        let mut index = Self {
            slack_m,
            cells: vec![Cell::default(); (lists.len() * 2).next_power_of_two()],
            entries: Vec::with_capacity(lists.values().map(Vec::len).sum()),
        };
        for (key, list) in lists {
            let mut i = index.home(key);
            while index.cells[i].len != 0 {
                i = (i + 1) & (index.cells.len() - 1);
            }
            index.cells[i] = Cell {
                key,
                start: index.entries.len() as u32,
                len: list.len() as u32,
            };
            index.entries.extend(list);
        }
        index
    }

    fn home(&self, key: (i32, i32)) -> usize {
        let k = u64::from(key.0 as u32) << 32 | u64::from(key.1 as u32);
        // Fibonacci hashing: the product's high bits, as many as the table needs.
        let bits = self.cells.len().trailing_zeros();
        (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (63 - bits) >> 1) as usize
    }

    /// The fences filed under `p`'s cell.
    fn list(&self, p: LatLon) -> &[Entry] {
        if self.cells.is_empty() {
            return &[];
        }
        let key = cell(p);
        let mut i = self.home(key);
        loop {
            let c = self.cells[i];
            if c.len == 0 {
                return &[];
            }
            if c.key == key {
                return &self.entries[c.start as usize..][..c.len as usize];
            }
            i = (i + 1) & (self.cells.len() - 1);
        }
    }

    /// Batch stage 1: start loading the place `p`'s cell is looked up at.
    pub fn prefetch_cell(&self, p: LatLon) {
        if !self.cells.is_empty() {
            prefetch(&self.cells[self.home(cell(p))]);
        }
    }

    /// Batch stage 2 (the cell loaded): start loading its first entries.
    pub fn prefetch_entries(&self, p: LatLon) {
        for e in self.list(p).iter().step_by(2).take(4) {
            prefetch(e);
        }
    }

    /// The fences reached from `p`, ascending, into `out` (cleared first). `hits` are the
    /// fences covering `p` (distance 0, no test needed).
    pub fn query(&self, p: LatLon, hits: &[FenceIdx], fences: &FenceIndex, out: &mut Vec<Reach>) {
        out.clear();
        let list = self.list(p);
        if list.is_empty() {
            return;
        }
        let at = Probe::new(p.point());
        for e in list {
            let limit = e.radius + self.slack_m;
            let distance = if hits.binary_search(&e.fence).is_ok() {
                Meters(0.0)
            } else if lower_bound(&e.b, p, e.cos_lat.min(at.cos_lat)) > limit {
                continue;
            } else {
                fences.edge_distance(e.fence, &at)
            };
            if distance.0 <= limit {
                out.push(Reach {
                    fence: e.fence,
                    distance,
                    radius: Meters(e.radius),
                });
            }
        }
        out.sort_unstable_by_key(|r| r.fence);
        // A fence split at the antimeridian can be filed twice under one cell.
        out.dedup_by_key(|r| r.fence);
    }
}

/// A lower bound on the distance from `p` to anything in `b`, metres: the latitude gap is a
/// true great-circle lower bound; the longitude gap is scaled by `cos_lat`, the cosine at the
/// higher of the two latitudes (where a degree is shortest), and trimmed by 1% for the sphere's
/// curvature.
fn lower_bound(b: &LonLatBox, p: LatLon, cos_lat: f64) -> f64 {
    let per_deg = EARTH_RADIUS_M.to_radians();
    let dy = (b.min[1] - p.lat()).max(p.lat() - b.max[1]).max(0.0);
    let dx = (b.min[0] - p.lon()).max(p.lon() - b.max[0]).max(0.0);
    (dy * per_deg).max(dx * per_deg * cos_lat * 0.99)
}

/// A lon/lat box grown by `d` on the sphere (generously in longitude near the poles).
fn grow(b: &LonLatBox, d: Meters) -> LonLatBox {
    let dlat = sphere::meters_to_lat_deg(d);
    let lat = b.min[1].abs().max(b.max[1].abs()) + dlat;
    let dlon = if lat >= 89.0 {
        360.0
    } else {
        dlat / lat.to_radians().cos()
    };
    LonLatBox {
        min: [(b.min[0] - dlon).max(-180.0), (b.min[1] - dlat).max(-90.0)],
        max: [(b.max[0] + dlon).min(180.0), (b.max[1] + dlat).min(90.0)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{parse_fences, IndexOptions, LoadMode};
    use proptest::prelude::*;

    /// Three fences (a shop, a circle, a triangle) laid out from (`lat`, 121°).
    fn index(lat: f64) -> FenceIndex {
        let y = |d: f64| lat + d;
        let file = format!(
            r#"{{"type":"FeatureCollection","features":[
          {{"type":"Feature","id":"a","properties":{{"store_id":"s"}},"geometry":{{"type":"Polygon",
           "coordinates":[[[121.0,{a0}],[121.002,{a0}],[121.002,{a2}],[121.0,{a2}],[121.0,{a0}]]]}}}},
          {{"type":"Feature","id":"b","properties":{{"store_id":"s","radius_m":80}},
           "geometry":{{"type":"Point","coordinates":[121.01,{b}]}}}},
          {{"type":"Feature","id":"c","properties":{{"store_id":"t"}},"geometry":{{"type":"Polygon",
           "coordinates":[[[121.03,{a0}],[121.031,{a0}],[121.031,{c}],[121.03,{a0}]]]}}}}]}}"#,
            a0 = y(0.0),
            a2 = y(0.002),
            b = y(0.005),
            c = y(0.001)
        );
        FenceIndex::new(
            parse_fences(file.as_bytes(), LoadMode::Strict)
                .unwrap()
                .fences,
            IndexOptions::default(),
        )
    }

    proptest! {
        /// The grid and the lower bound never lose a fence: the same answer as measuring every
        /// fence — in Shanghai, and at 69° where a degree of longitude is a third as long.
        #[test]
        fn agrees_with_measuring_every_fence(
            base in prop::sample::select(vec![31.0, 69.0, -69.0]),
            dlat in -0.02f64..0.03,
            lon in 120.98f64..121.05,
        ) {
            let fences = index(base);
            let reach = ReachIndex::new(vec![150.0, 400.0, 0.0], &fences, 25.0);
            let p = LatLon::new(base + dlat, lon).unwrap();
            let mut hits = crate::fence::Hits::new();
            fences.containing(p, &mut hits);
            let mut got = Vec::new();
            reach.query(p, &hits, &fences, &mut got);
            let want: Vec<(u32, f64)> = [(0, 150.0), (1, 400.0)]
                .into_iter()
                .map(|(f, r)| (f, r, fences.distance(FenceIdx(f), p.point()).0))
                .filter(|&(_, r, d)| d <= r + 25.0)
                .map(|(f, _, d)| (f, d))
                .collect();
            let got: Vec<(u32, f64)> = got.iter().map(|r| (r.fence.0, r.distance.0)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
