//! Bench sizes from the environment (`BECKON_BENCH_*`), so one bench runs at several scales.

/// The variable `name` as a count (`1_000_000` allowed), or `default` if unset or not a number.
pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}
