//! The streaming engine against a real Kafka-protocol broker process on loopback (tansu 0.6.0,
//! SQLite storage), with `beckon run` as a process, as it is deployed: pings produced by an
//! independent client (rdkafka), offers and dead letters read back, SIGTERM mid-stream.
//! Without tansu installed these tests fail saying how to install it (`.ci/run` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::*;

struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// `beckon run` with a config file naming the broker and the generated world, JSON logs.
fn beckon_run(dir: &Path, bootstrap: &str, group: &str, g: &Generated) -> Process {
    let config = dir.join(format!("{group}.yaml"));
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().unwrap().display().to_string();
    std::fs::write(
        &config,
        format!(
            "kafka: {{brokers: '{bootstrap}', group_id: {group}}}\n\
             world: {{fences: '{}', campaigns: '{}', reload_interval_s: 0}}\n\
             http: {{listen: '127.0.0.1:0'}}\n\
             log: {{format: json, level: info}}\n\
             pipeline: {{batch_max: 256, batch_linger_ms: 2}}\n",
            path(&g.files.fences),
            path(&g.files.campaigns),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beckon run");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    Process { child, lines }
}

impl Process {
    /// SIGTERM, then the exit status must be success and the last log line its totals.
    fn terminate(mut self) -> serde_json::Value {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        let log: Vec<String> = self.lines.try_iter().collect();
        assert!(
            exit.success(),
            "beckon run exited {exit} after SIGTERM:\n{}",
            log.join("\n")
        );
        let stopped = log
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message"] == "stopped")
            .unwrap_or_else(|| panic!("no \"stopped\" line in\n{}", log.join("\n")));
        stopped
    }
}

#[test]
fn offers_through_a_real_broker_equal_replay_and_bad_input_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path(), 1_000, 10);
    let broker = Broker::tansu();
    let bootstrap = broker.bootstrap();
    let topics = beckon::config::Topics::default();
    broker.create_topics(&topics);
    produce_profiles(&bootstrap, &topics, &g.profiles);
    let mut pings = keyed_lines(&g.pings);
    let corpus = bad_input();
    for (i, (_, bytes)) in corpus.iter().enumerate() {
        pings.insert(
            pings.len() / 3 + i,
            (format!("bad-{i}").into_bytes(), Some(bytes.clone())),
        );
    }
    produce(&bootstrap, &topics.pings, &pings);

    let engine = beckon_run(dir.path(), &bootstrap, "beckon-broker", &g);
    wait_until_committed(
        &bootstrap,
        "beckon-broker",
        &topics.pings,
        Duration::from_secs(180),
    );
    let totals = engine.terminate();
    assert_eq!(totals["pings"], pings.len());
    assert_eq!(totals["dead_letters"], corpus.len());

    let mut want = replay_offers(&g.files, &g.profiles, &g.pings, PARTITIONS as u32);
    let mut got: Vec<String> = read_all(&bootstrap, &topics.offers)
        .into_iter()
        .map(|r| String::from_utf8(r.value).unwrap())
        .collect();
    assert!(
        want.len() > 20,
        "the generated day makes offers ({})",
        want.len()
    );
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "offer count");
    assert!(got == want, "offers differ from replay");

    let letters = read_all(&bootstrap, &topics.dead_letters);
    assert_eq!(letters.len(), corpus.len());
    for (i, (reason, bytes)) in corpus.iter().enumerate() {
        let key = format!("bad-{i}").into_bytes();
        let l = letters.iter().find(|l| l.key == key).unwrap();
        assert_eq!(&l.value, bytes);
        assert_eq!(l.headers["beckon.error.reason"], *reason);
        assert_eq!(l.headers["__connect.errors.topic"], topics.pings);
    }
}

#[test]
fn sigterm_mid_stream_loses_nothing_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path(), 3_000, 10);
    let broker = Broker::tansu();
    let bootstrap = broker.bootstrap();
    let topics = beckon::config::Topics::default();
    broker.create_topics(&topics);
    produce_profiles(&bootstrap, &topics, &g.profiles);
    let pings = keyed_lines(&g.pings);
    let total = pings.len() as u64;
    // Still producing when the engine is stopped: it stops mid-stream.
    let producing = produce_paced(
        &bootstrap,
        &topics.pings,
        pings,
        1_000,
        Duration::from_millis(100),
    );

    let first = beckon_run(dir.path(), &bootstrap, "beckon-sigterm", &g);
    wait_for_a_commit(&bootstrap, "beckon-sigterm", &topics.pings);
    let t1 = first.terminate();
    let decided1 = t1["pings"].as_u64().unwrap();
    let c1 = committed(&bootstrap, "beckon-sigterm", &topics.pings);
    let committed1 = records_below(&bootstrap, &topics.pings, &c1);
    assert_eq!(committed1, decided1, "committed exactly what was decided");
    assert!(decided1 < total, "stopped mid-stream");

    producing.join().unwrap();
    let second = beckon_run(dir.path(), &bootstrap, "beckon-sigterm", &g);
    wait_until_committed(
        &bootstrap,
        "beckon-sigterm",
        &topics.pings,
        Duration::from_secs(180),
    );
    let t2 = second.terminate();
    assert_eq!(
        decided1 + t2["pings"].as_u64().unwrap(),
        total,
        "every ping decided exactly once across the restart"
    );
}
