//! The streaming engine against a real Kafka-protocol broker process on loopback (tansu 0.6.0,
//! SQLite storage), with `beckon run` as a process, as it is deployed: pings produced by an
//! independent client (rdkafka), offers and dead letters read back, SIGTERM mid-stream.
//! Without tansu installed these tests fail saying how to install it (`.ci/run` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

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

    let engine = beckon_run(
        dir.path(),
        &bootstrap,
        "beckon-broker",
        &g,
        &Member::default(),
    );
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

    let first = beckon_run(
        dir.path(),
        &bootstrap,
        "beckon-sigterm",
        &g,
        &Member::default(),
    );
    wait_for_a_commit(&bootstrap, "beckon-sigterm", &topics.pings);
    let t1 = first.terminate();
    let decided1 = t1["pings"].as_u64().unwrap();
    let c1 = committed(&bootstrap, "beckon-sigterm", &topics.pings);
    let committed1 = records_below(&bootstrap, &topics.pings, &c1);
    assert_eq!(committed1, decided1, "committed exactly what was decided");
    assert!(decided1 < total, "stopped mid-stream");

    producing.join().unwrap();
    let second = beckon_run(
        dir.path(),
        &bootstrap,
        "beckon-sigterm",
        &g,
        &Member::default(),
    );
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
