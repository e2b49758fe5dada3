//! Throughput of the streaming engine, at least once against exactly once, side by side in one
//! run: `cargo bench --bench pipeline` (env `BECKON_BENCH_PINGS`, default 100 000;
//! `BECKON_BENCH_DEVICES`, default 10 000; `BECKON_BENCH_REPS`, default 5;
//! `BECKON_BENCH_COMMIT_INTERVAL_MS`, default 100, exactly once's `pipeline.commit_interval_ms`).
//!
//! Each run gets a fresh librdkafka mock cluster (in this process) with the tests' topics (3
//! partitions), the generated world's profiles and all the pings produced up front; then the
//! engine starts in this process (`service::run`, what `beckon run` runs, default pipeline
//! settings but the guarantee) and `/metrics` is polled until `beckon_pings_total` counts every
//! ping. The rate is over the window from the first poll that saw a ping decided to the one that
//! saw the last, so joining the group and loading profiles are not in it. A ping counts when its
//! batch is decided and produced; exactly once's last transaction commits after that (the
//! mock cluster never stores transactional offsets, so there is no committed offset to wait on).
//!
//! Runs alternate at least once / exactly once, `REPS` of each; medians and their ratio are
//! printed at the end. The mock cluster keeps about 5 MB per partition, so about 100 k pings is
//! the most one run can hold (the bench refuses a run whose pings were not all kept).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "support/env.rs"]
mod env;
use env::env;
use std::time::{Duration, Instant};

use beckon::config::{Guarantee, PipelineConfig};
use beckon::stream::Totals;
use rdkafka::consumer::{BaseConsumer, Consumer};

use support::{
    client, generate, keyed_lines, produce, produce_profiles, run_config, start, Broker, Generated,
    PARTITIONS,
};

/// How often `/metrics` is read while the engine runs.
const POLL: Duration = Duration::from_millis(5);
/// A run that has not decided every ping by then has failed.
const DEADLINE: Duration = Duration::from_secs(300);

/// What one run measured.
struct Run {
    /// From start to the first ping decided seen.
    startup: Duration,
    /// From the first ping decided seen to the last.
    window: Duration,
    /// Pings decided in the window.
    decided: u64,
    totals: Totals,
}

impl Run {
    fn rate(&self) -> f64 {
        self.decided as f64 / self.window.as_secs_f64()
    }
}

/// Records kept in `topic` (high minus low watermark, over its partitions).
fn kept(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = client(bootstrap).create().unwrap();
    (0..PARTITIONS)
        .map(|p| {
            let (lo, hi) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            hi - lo
        })
        .sum()
}

fn run_once(
    g: &Generated,
    pings: &[(Vec<u8>, Option<Vec<u8>>)],
    guarantee: Guarantee,
    commit_interval_ms: u64,
    rep: usize,
) -> Run {
    let broker = Broker::mock();
    let bootstrap = broker.bootstrap();
    let mut cfg = run_config(&bootstrap, &format!("beckon-bench-{rep}"), &g.files);
    cfg.pipeline = PipelineConfig {
        guarantee,
        commit_interval_ms,
        ..PipelineConfig::default()
    };
    let topics = &cfg.kafka.topics;
    broker.create_topics(topics);
    produce_profiles(&bootstrap, topics, &g.profiles);
    produce(&bootstrap, &topics.pings, pings);
    let total = pings.len() as u64;
    assert_eq!(
        kept(&bootstrap, &topics.pings),
        total as i64,
        "the mock cluster did not keep every ping (about 5 MB per partition): use fewer"
    );

    let started = Instant::now();
    let engine = start(&cfg);
    let mut first: Option<(Instant, u64)> = None;
    let (end, n) = loop {
        let n = engine.decided();
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n));
        }
        if n >= total {
            break (now, n);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{n} of {total} pings decided after {DEADLINE:?}"
        );
        std::thread::sleep(POLL);
    };
    let (at, n0) = first.expect("a ping decided");
    let totals = engine.stop();
    assert_eq!(totals.pings, total, "every ping decided once");
    Run {
        startup: at - started,
        window: end - at,
        decided: n - n0,
        totals,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len().is_multiple_of(2) {
        (xs[m - 1] + xs[m]) / 2.0
    } else {
        xs[m]
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means another bench.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"pipeline".contains(a.as_str()))
    {
        return;
    }
    let pings = env("BECKON_BENCH_PINGS", 100_000);
    let devices = env("BECKON_BENCH_DEVICES", 10_000).max(1);
    let reps = env("BECKON_BENCH_REPS", 5).max(1);
    let commit_interval_ms = env("BECKON_BENCH_COMMIT_INTERVAL_MS", 100) as u64;
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path(), devices, (pings / devices).max(1));
    let records = keyed_lines(&g.pings);
    let bytes: usize = records
        .iter()
        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
        .sum();
    eprintln!(
        "pipeline bench: {} pings ({:.1} MB) from {devices} devices on {PARTITIONS} partitions, \
         {reps} runs of each guarantee, exactly once committing every {commit_interval_ms} ms",
        records.len(),
        bytes as f64 / 1e6
    );

    let modes = [
        ("at_least_once", Guarantee::AtLeastOnce),
        ("exactly_once", Guarantee::ExactlyOnce),
    ];
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..reps {
        for (m, &(name, guarantee)) in modes.iter().enumerate() {
            let run = run_once(&g, &records, guarantee, commit_interval_ms, rep);
            eprintln!(
                "{name:>13} run {}: {:>7.0} pings/s ({} pings in {:.3} s; first decided after \
                 {:.2} s; {} offers, {} transactions)",
                rep + 1,
                run.rate(),
                run.decided,
                run.window.as_secs_f64(),
                run.startup.as_secs_f64(),
                run.totals.offers,
                run.totals.transactions,
            );
            rates[m].push(run.rate());
        }
    }
    let [alo, eos] = rates.map(median);
    println!("at_least_once: median {alo:.0} pings/s over {reps} runs");
    println!(
        "exactly_once:  median {eos:.0} pings/s over {reps} runs (commit_interval_ms {commit_interval_ms})"
    );
    println!("exactly_once / at_least_once: {:.2}", eos / alo);
}
