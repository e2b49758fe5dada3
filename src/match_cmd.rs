//! `beckon match` (CONTRACTS §7): for each line of a JSON Lines ping file, the ids of every
//! fence that covers the ping, sorted. Streams in fixed-size batches, so memory does not grow
//! with the number of pings, and times the index apart from parsing and output.

use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use crate::fence::{Batch, FenceIndex, Hits};
use crate::ping::{self, PingKind};
use crate::sphere::LatLon;

const BATCH: usize = 4096;

/// What a run did, for the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct MatchStats {
    pub pings: u64,
    pub invalid: u64,
    /// Time spent inside `FenceIndex::containing` only.
    pub containing: Duration,
    pub total: Duration,
}

impl MatchStats {
    /// `key=value` pairs, so scripts (benches/peers) can read them.
    pub fn summary(&self, fences: usize, load: Duration) -> String {
        let per_s = |d: Duration| {
            if d.is_zero() {
                0.0
            } else {
                self.pings as f64 / d.as_secs_f64()
            }
        };
        format!(
            "beckon match: pings={} invalid={} fences={fences} load_s={:.3} containing_s={:.3} containing_per_s={:.0} end_to_end_per_s={:.0}",
            self.pings,
            self.invalid,
            load.as_secs_f64(),
            self.containing.as_secs_f64(),
            per_s(self.containing),
            per_s(self.total)
        )
    }
}

/// One decoded line of a batch: a position to match, nothing to match (a beacon ping), or why
/// the line is not a ping.
enum Line {
    At(LatLon),
    NoPosition,
    Invalid(String),
}

/// Matches every line of `input` and writes one JSON line per input line to `output`.
pub fn run(index: &FenceIndex, input: impl BufRead, output: impl Write) -> io::Result<MatchStats> {
    let started = Instant::now();
    let quoted_ids: Vec<String> = index
        .fences()
        .iter()
        .map(|f| serde_json::to_string(&f.id).unwrap_or_default())
        .collect();
    let mut stats = MatchStats::default();
    let mut lines = input.split(b'\n');
    let mut out = io::BufWriter::with_capacity(1 << 16, output);
    let mut batch: Vec<Line> = Vec::with_capacity(BATCH);
    let mut points: Vec<LatLon> = Vec::with_capacity(BATCH);
    let mut hits: Vec<Hits> = vec![Hits::new(); BATCH];
    let mut scratch = Batch::default();
    loop {
        batch.clear();
        for line in lines.by_ref() {
            let mut line = line?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            batch.push(match ping::decode(&line) {
                Ok(p) => match p.kind {
                    PingKind::Location { at, .. } => Line::At(at),
                    PingKind::Beacon { .. } => Line::NoPosition,
                },
                Err(e) => Line::Invalid(e.to_string()),
            });
            if batch.len() == BATCH {
                break;
            }
        }
        if batch.is_empty() {
            break;
        }
        points.clear();
        points.extend(batch.iter().filter_map(|l| match l {
            Line::At(at) => Some(*at),
            _ => None,
        }));
        let t = Instant::now();
        index.containing_many(&points, &mut hits[..points.len()], &mut scratch);
        stats.containing += t.elapsed();
        let mut answers = hits.iter();
        for line in &batch {
            let h = match line {
                Line::At(_) => answers.next().map_or(&[][..], |h| h.as_slice()),
                _ => &[],
            };
            write!(out, "{{\"i\":{},\"fences\":[", stats.pings)?;
            for (k, f) in h.iter().enumerate() {
                if k > 0 {
                    out.write_all(b",")?;
                }
                out.write_all(quoted_ids[f.get()].as_bytes())?;
            }
            out.write_all(b"]")?;
            if let Line::Invalid(reason) = line {
                stats.invalid += 1;
                write!(
                    out,
                    ",\"error\":{}",
                    serde_json::Value::String(reason.clone())
                )?;
            }
            out.write_all(b"}\n")?;
            stats.pings += 1;
        }
    }
    out.flush()?;
    stats.total = started.elapsed();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{parse_fences, IndexOptions, LoadMode};

    #[test]
    fn writes_one_sorted_line_per_input_line() {
        let fences = br#"{"type":"FeatureCollection","features":[
          {"type":"Feature","id":"b-square","properties":{"store_id":"s1"},
           "geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]}},
          {"type":"Feature","id":"a-circle","properties":{"store_id":"s2","radius_m":20000},
           "geometry":{"type":"Point","coordinates":[0.5,0.5]}}]}"#;
        let index = FenceIndex::new(
            parse_fences(fences, LoadMode::Strict).unwrap().fences,
            IndexOptions::default(),
        );
        let pings = concat!(
            r#"{"type":"location","device_id":"d","ts":"2026-11-22T10:00:00Z","lat":0.5,"lon":0.5}"#,
            "\n",
            r#"{"type":"location","device_id":"d","ts":"2026-11-22T10:00:00Z","lat":0.95,"lon":0.95}"#,
            "\r\n",
            "not json\n",
            r#"{"type":"beacon","device_id":"d","ts":"2026-11-22T10:00:00Z","uuid":"f7826da6-4fa2-4e98-8024-bc5b71e0893e","major":1,"minor":2,"rssi":-60}"#,
            "\n",
            r#"{"type":"location","device_id":"d","ts":"2026-11-22T10:00:00Z","lat":1.0,"lon":0.5}"#,
        );
        let mut out = Vec::new();
        let stats = run(&index, pings.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"i":0,"fences":["a-circle","b-square"]}"#);
        assert_eq!(lines[1], r#"{"i":1,"fences":["b-square"]}"#);
        assert!(
            lines[2].starts_with(r#"{"i":2,"fences":[],"error":"not a JSON object"#),
            "{}",
            lines[2]
        );
        assert_eq!(lines[3], r#"{"i":3,"fences":[]}"#);
        // On the square's top edge: covered.
        assert_eq!(lines[4], r#"{"i":4,"fences":["b-square"]}"#);
        assert_eq!((stats.pings, stats.invalid), (5, 1));
    }
}
