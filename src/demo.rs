//! `beckon demo`: the fixtures, built into the binary, replayed through the matching core so a
//! new user sees, with no setup, which stores each simulated device walks into and out of.
//!
//! Offers, presence with dwell and debounce, and the Kafka pipeline arrive with the decision
//! core and the streaming engine; until then this prints what the fences alone can say.

use std::io::{self, Write};

use rustc_hash::FxHashMap;

use crate::fence::{parse_fences, FenceIdx, FenceIndex, Hits, IndexOptions, LoadMode};
use crate::ping::{self, PingKind};

pub const FENCES: &[u8] = include_bytes!("../fixtures/fences.geojson");
pub const PINGS: &[u8] = include_bytes!("../fixtures/pings.jsonl");

/// Replays the embedded pings and writes one line per change of a device's fences.
pub fn run(mut out: impl Write) -> io::Result<()> {
    let fences = parse_fences(FENCES, LoadMode::Strict)
        .map_err(io::Error::other)?
        .fences;
    let index = FenceIndex::new(fences, IndexOptions::default());
    writeln!(out, "beckon demo: {} fixture fences in Shanghai, Hangzhou and Shenzhen; replaying fixtures/pings.jsonl\n", index.len())?;
    let name = |i: FenceIdx| {
        let f = index.fence(i);
        f.props.name.clone().unwrap_or_else(|| f.id.clone())
    };
    let mut last: FxHashMap<String, Hits> = FxHashMap::default();
    let mut hits = Hits::new();
    let (mut pings, mut rejected) = (0, 0);
    for (n, line) in PINGS
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        pings += 1;
        let p = match ping::decode(line) {
            Ok(p) => p,
            Err(e) => {
                rejected += 1;
                writeln!(out, "  line {:>3}  rejected: {e}", n + 1)?;
                continue;
            }
        };
        let PingKind::Location { at, .. } = p.kind else {
            continue;
        };
        index.containing(at, &mut hits);
        let before = last.entry(p.device_id.to_string()).or_default();
        for &i in hits.iter().filter(|i| !before.contains(i)) {
            writeln!(out, "  {}  {}  in   {}", p.ts, p.device_id, name(i))?;
        }
        for &i in before.iter().filter(|i| !hits.contains(i)) {
            writeln!(out, "  {}  {}  out  {}", p.ts, p.device_id, name(i))?;
        }
        *before = hits.clone();
    }
    writeln!(
        out,
        "\n{pings} pings, {rejected} rejected. Offers (campaigns, audiences, caps) and the Kafka \
         pipeline come with the decision core and the streaming engine; the naive in/out above \
         (a late ping re-entering, GPS jitter flickering) is what presence with hysteresis fixes."
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_shows_devices_entering_and_leaving_stores() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("d-000102  in   Cha Yun Tea House - Jing'an Experience Store"),
            "{text}"
        );
        assert!(
            text.contains("d-000102  out  Cha Yun Tea House - Jing'an Experience Store"),
            "{text}"
        );
        assert!(text.contains("rejected: latitude 123.4"), "{text}");
    }
}
