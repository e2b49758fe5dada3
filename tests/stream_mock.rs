//! The streaming engine over the Kafka protocol, fast tier: librdkafka's in-process mock
//! cluster as the broker, the engine in this process (`service::run`, exactly what `beckon run`
//! runs), an independent client producing pings and reading what came out. The real-broker
//! tier (`stream_broker.rs`) repeats the essentials against tansu with the binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use beckon::config::{Guarantee, RunConfig};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use support::*;

#[test]
fn offers_over_kafka_equal_replay_and_bad_input_is_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path(), 1_500, 12);
    let broker = Broker::mock();
    let bootstrap = broker.bootstrap();
    let cfg = run_config(&bootstrap, "beckon-test", &g.files);
    let topics = &cfg.kafka.topics;
    broker.create_topics(topics);
    produce_profiles(&bootstrap, topics, &g.profiles);
    let mut pings = keyed_lines(&g.pings);
    let corpus = bad_input();
    // The bad input sits in the middle of the stream: the engine must keep going after it.
    let middle = pings.len() / 2;
    for (i, (_, bytes)) in corpus.iter().enumerate() {
        pings.insert(
            middle + i,
            (format!("bad-{i}").into_bytes(), Some(bytes.clone())),
        );
    }
    produce(&bootstrap, &topics.pings, &pings);

    let engine = start(&cfg);
    wait_until_committed(
        &bootstrap,
        "beckon-test",
        &topics.pings,
        Duration::from_secs(120),
    );
    let (code, metrics) = http_get(engine.http, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(http_get(engine.http, "/readyz").0, 200);
    assert_eq!(http_get(engine.http, "/livez").0, 200);
    let totals = engine.stop();
    assert_eq!(totals.pings, pings.len() as u64, "every ping decided once");
    assert_eq!(totals.dead_letters, corpus.len() as u64);
    assert_eq!(totals.handed_over, 0);

    // Offers: byte-identical to replay's, as a set (partitions interleave devices).
    let mut want = replay_offers(&g.files, &g.profiles, &g.pings, PARTITIONS as u32);
    let offers = read_all(&bootstrap, &topics.offers);
    let mut got: Vec<String> = offers
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert!(
        want.len() > 50,
        "the generated day makes offers ({})",
        want.len()
    );
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len(), "offer count");
    assert!(got == want, "offers differ from replay");
    for r in &offers {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        assert_eq!(
            r.key,
            v["device_id"].as_str().unwrap().as_bytes(),
            "keyed by device"
        );
    }

    // Dead letters: key and value untouched, the reason in Kafka Connect's headers.
    let letters = read_all(&bootstrap, &topics.dead_letters);
    assert_eq!(letters.len(), corpus.len());
    for (i, (reason, bytes)) in corpus.iter().enumerate() {
        let key = format!("bad-{i}").into_bytes();
        let l = letters
            .iter()
            .find(|l| l.key == key)
            .unwrap_or_else(|| panic!("bad input {i} ({reason}) not dead-lettered"));
        assert_eq!(&l.value, bytes, "value of bad input {i} untouched");
        assert_eq!(l.headers["beckon.error.reason"], *reason, "bad input {i}");
        assert_eq!(l.headers["__connect.errors.topic"], topics.pings);
        assert!(!l.headers["__connect.errors.exception.message"].is_empty());
        let p: i32 = l.headers["__connect.errors.partition"].parse().unwrap();
        assert!((0..PARTITIONS).contains(&p));
        l.headers["__connect.errors.offset"].parse::<i64>().unwrap();
    }

    // Metrics: the counts above, and no device id in any label.
    let line = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(
        line("beckon_pings_total{outcome=\"dead_letter\",type=\"invalid\"}"),
        corpus.len() as f64
    );
    assert_eq!(line("beckon_dead_letters_total{reason=\"oversize\"}"), 1.0);
    let offered: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("beckon_offers_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(offered, want.len() as f64);
    assert!(line("beckon_ping_to_offer_latency_seconds_count") > 0.0);
    assert!(
        !metrics.contains("d-0"),
        "a device id leaked into the metrics"
    );
}

/// A generated day on a mock cluster with the topics and profiles in place, and a config for
/// `group` with exactly once, small batches, and sessions short enough that a restarted
/// member is let in soon.
fn exactly_once_on_mock(dir: &std::path::Path, group: &str) -> (Generated, Broker, RunConfig) {
    let g = generate(dir, 1_500, 12);
    let broker = Broker::mock();
    let mut cfg = run_config(&broker.bootstrap(), group, &g.files);
    cfg.pipeline.guarantee = Guarantee::ExactlyOnce;
    cfg.pipeline.batch_max = 256;
    cfg.kafka
        .client
        .insert("session.timeout.ms".into(), "6000".into());
    broker.create_topics(&cfg.kafka.topics);
    produce_profiles(&broker.bootstrap(), &cfg.kafka.topics, &g.profiles);
    (g, broker, cfg)
}

/// The mock cluster accepts the transactional calls but stores no transactional offsets
/// (README, "State and recovery"): so the run is followed through its metrics, and the restart
/// finds no committed offset at all. It must go on from the changelog's offsets instead.
#[test]
fn exactly_once_commits_transactions_and_a_restart_goes_on_from_the_changelog() {
    let dir = tempfile::tempdir().unwrap();
    let (g, broker, cfg) = exactly_once_on_mock(dir.path(), "beckon-eos");
    let (bootstrap, topics) = (broker.bootstrap(), cfg.kafka.topics.clone());
    let pings = keyed_lines(&g.pings);
    let total = pings.len() as u64;
    produce(&bootstrap, &topics.pings, &pings);

    let first = start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(120);
    while first.decided() < total {
        assert!(Instant::now() < deadline, "pings not all decided in time");
        std::thread::sleep(Duration::from_millis(200));
    }
    let t1 = first.stop();
    assert_eq!(t1.pings, total, "every ping decided once");
    assert!(
        t1.transactions > 1,
        "transactions committed: {}",
        t1.transactions
    );
    let mut want = replay_offers(&g.files, &g.profiles, &g.pings, PARTITIONS as u32);
    let mut got: Vec<String> = read_all(&bootstrap, &topics.offers)
        .iter()
        .map(|r| String::from_utf8(r.value.clone()).unwrap())
        .collect();
    assert!(want.len() > 50, "the day makes offers ({})", want.len());
    want.sort();
    got.sort();
    assert!(
        got == want,
        "offers differ from replay's ({} vs {})",
        got.len(),
        want.len()
    );

    let second = start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(second.http, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the restart was not assigned partitions"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Time to consume from the beginning, were it not for the changelog's offsets.
    std::thread::sleep(Duration::from_secs(3));
    let t2 = second.stop();
    assert!(t2.restored > 0, "state restored from the changelog");
    assert_eq!(
        (t2.pings, t2.offers),
        (0, 0),
        "the restart decided nothing twice"
    );
    assert_eq!(read_all(&bootstrap, &topics.offers).len(), want.len());
}

/// A transaction that fails for good (the coordinator refuses to end it) is aborted, and a new
/// pipeline goes on from the last commit in the same process: every offer still comes out,
/// repeats byte-identical (the mock cluster shows aborted records to `read_committed` readers).
#[test]
fn a_failed_transaction_is_aborted_and_the_engine_goes_on_from_the_last_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (g, broker, cfg) = exactly_once_on_mock(dir.path(), "beckon-abort");
    let (bootstrap, topics) = (broker.bootstrap(), cfg.kafka.topics.clone());
    let pings = keyed_lines(&g.pings);
    let (before, after) = pings.split_at(pings.len() / 2);
    produce(&bootstrap, &topics.pings, before);
    let want: BTreeSet<String> = replay_offers(&g.files, &g.profiles, &g.pings, PARTITIONS as u32)
        .into_iter()
        .collect();

    let engine = start(&cfg);
    let committed = r#"beckon_transactions_total{outcome="committed"}"#;
    let aborted = r#"beckon_transactions_total{outcome="aborted"}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.metric(committed) < 2 {
        assert!(Instant::now() < deadline, "no transactions committed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let Broker::Mock(cluster) = &broker else {
        unreachable!()
    };
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE],
    );
    // The rest arrives after the failure: the new pipeline must decide and commit it.
    produce(&bootstrap, &topics.pings, after);
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.metric(aborted) == 0 {
        assert!(
            Instant::now() < deadline,
            "the refused commit was not aborted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let at_abort = engine.metric(committed);
    let deadline = Instant::now() + Duration::from_secs(120);
    let offers = loop {
        let offers: Vec<String> = read_all(&bootstrap, &topics.offers)
            .iter()
            .map(|r| String::from_utf8(r.value.clone()).unwrap())
            .collect();
        if offers.iter().collect::<BTreeSet<_>>().len() >= want.len() {
            break offers;
        }
        assert!(Instant::now() < deadline, "offers missing after the abort");
        std::thread::sleep(Duration::from_millis(500));
    };
    while engine.metric(committed) <= at_abort {
        assert!(Instant::now() < deadline, "no commit after the abort");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(engine.metric(aborted), 1, "one transaction aborted");
    engine.stop();
    let got: BTreeSet<String> = offers.into_iter().collect();
    assert!(
        got == want,
        "distinct offers differ from replay's (repeats must be identical)"
    );
}

#[test]
fn a_stop_mid_stream_commits_exactly_what_was_decided_and_a_restart_resumes_there() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate(dir.path(), 3_000, 10);
    let broker = Broker::mock();
    let bootstrap = broker.bootstrap();
    let mut cfg = run_config(&bootstrap, "beckon-restart", &g.files);
    cfg.pipeline.batch_max = 256;
    // Here the mock cluster let the restarted member in only once the old member's session
    // expired (45 s by default); tansu (stream_broker.rs) admits it at once.
    cfg.kafka
        .client
        .insert("session.timeout.ms".into(), "6000".into());
    let topics = cfg.kafka.topics.clone();
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

    let first = start(&cfg);
    // Stop as soon as something was committed, i.e. mid-stream.
    wait_for_a_commit(&bootstrap, "beckon-restart", &topics.pings);
    let t1 = first.stop();
    let c1 = records_below(
        &bootstrap,
        &topics.pings,
        &committed(&bootstrap, "beckon-restart", &topics.pings),
    );
    assert_eq!(
        c1, t1.pings,
        "what was decided is exactly what was committed"
    );
    assert!(t1.pings < total, "stopped mid-stream ({} pings)", t1.pings);

    producing.join().unwrap();
    let second = start(&cfg);
    wait_until_committed(
        &bootstrap,
        "beckon-restart",
        &topics.pings,
        Duration::from_secs(120),
    );
    let t2 = second.stop();
    assert_eq!(t1.pings + t2.pings, total, "no ping lost or decided twice");
}

#[test]
fn campaign_files_reload_without_a_restart_and_a_bad_file_is_refused() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let dir = tempfile::tempdir().unwrap();
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).unwrap();
    for e in std::fs::read_dir(fixtures.join("campaigns")).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "chayun-welcome.json" {
            std::fs::copy(e.path(), campaigns.join(e.file_name())).unwrap();
        }
    }
    let mut world = beckon::config::WorldConfig {
        fences: Some(fixtures.join("fences.geojson")),
        beacons: Some(fixtures.join("beacons.json")),
        campaigns: Some(campaigns.clone()),
        ..Default::default()
    };
    world.reload_interval_s = 1;
    let broker = Broker::mock();
    let bootstrap = broker.bootstrap();
    let cfg = run_config(&bootstrap, "beckon-reload", &world);
    let topics = &cfg.kafka.topics;
    broker.create_topics(topics);
    produce_profiles(&bootstrap, topics, &fixtures.join("profiles.jsonl"));
    let pings = keyed_lines(&fixtures.join("pings.jsonl"));
    // The Hangzhou visitor, whose welcome offer needs the campaign the reload adds, comes last.
    let split = pings.iter().position(|(k, _)| k == b"d-000106").unwrap();
    produce(&bootstrap, &topics.pings, &pings[..split]);
    let engine = start(&cfg);
    wait_until_committed(
        &bootstrap,
        "beckon-reload",
        &topics.pings,
        Duration::from_secs(60),
    );

    let metric = |name: &str| -> f64 {
        let (_, text) = http_get(engine.http, "/metrics");
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    let wait_for = |name: &str, want: f64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while metric(name) < want {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never reached {want}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::fs::write(campaigns.join("broken.json"), r#"{"id":"broken"}"#).unwrap();
    wait_for("beckon_reloads_total{outcome=\"refused\"}", 1.0);
    assert_eq!(
        metric("beckon_campaigns_loaded"),
        7.0,
        "the old set keeps serving"
    );
    std::fs::remove_file(campaigns.join("broken.json")).unwrap();
    std::fs::copy(
        fixtures.join("campaigns/chayun-welcome.json"),
        campaigns.join("chayun-welcome.json"),
    )
    .unwrap();
    wait_for("beckon_reloads_total{outcome=\"applied\"}", 1.0);
    assert_eq!(metric("beckon_campaigns_loaded"), 8.0);

    produce(&bootstrap, &topics.pings, &pings[split..]);
    wait_until_committed(
        &bootstrap,
        "beckon-reload",
        &topics.pings,
        Duration::from_secs(60),
    );
    engine.stop();
    let mut got: Vec<String> = read_all(&bootstrap, &topics.offers)
        .into_iter()
        .map(|r| String::from_utf8(r.value).unwrap())
        .collect();
    assert!(got
        .iter()
        .any(|o| o.contains("\"campaign_id\":\"chayun-welcome\"")));
    // The reload kept every device's presence and caps: the day is what replay says about the
    // full campaign set.
    world.campaigns = Some(fixtures.join("campaigns"));
    let mut want = replay_offers(
        &world,
        &fixtures.join("profiles.jsonl"),
        &fixtures.join("pings.jsonl"),
        PARTITIONS as u32,
    );
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
