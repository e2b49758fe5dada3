//! The `beckon` binary as a user runs it: files in, JSON Lines out, clear errors.
#![allow(clippy::expect_used)] // a test helper that cannot start the binary should fail the test

use std::path::Path;
use std::process::{Command, Output};

fn beckon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(args)
        .output()
        .expect("run beckon")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn match_answers_the_fixture_stories_line_by_line() {
    let out = beckon(&[
        "match",
        "--fences",
        &fixture("fences.geojson"),
        "--pings",
        &fixture("pings.jsonl"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 218, "one output line per input line");
    let fences = |i: usize| -> Vec<&str> {
        assert_eq!(lines[i]["i"], i, "line {i} is numbered from 0");
        lines[i]["fences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    };
    // The shopper's location pings during her visit to the tea experience store (file lines
    // 59–93, interleaved with beacon pings and another device).
    let input = std::fs::read_to_string(fixture("pings.jsonl")).unwrap();
    let visit: Vec<usize> = input
        .lines()
        .enumerate()
        .filter(|(i, l)| {
            (58..=92).contains(i)
                && l.contains(r#""device_id":"d-000102""#)
                && l.contains(r#""type":"location""#)
        })
        .map(|(i, _)| i)
        .collect();
    assert!(visit.len() > 10, "{visit:?}");
    for i in visit {
        assert!(
            fences(i).contains(&"f-sh-chayun-0003"),
            "line {i}: {:?}",
            fences(i)
        );
    }
    // Walking through the mall's atrium (a hole): outside the mall, still in the region.
    assert_eq!(fences(153), ["f-sh-region-0001"]);
    // At the cosmetics counter inside the mall.
    assert_eq!(
        fences(159),
        ["f-sh-mall-0001", "f-sh-region-0001", "f-sh-yanse-0001"]
    );
    for w in (0..218).map(fences) {
        assert!(
            w.windows(2).all(|p| p[0] < p[1]),
            "ids sorted and unique: {w:?}"
        );
    }
    // The malformed tail: each line keeps its place and says why.
    let reasons: Vec<&str> = (214..218)
        .map(|i| lines[i]["error"].as_str().unwrap())
        .collect();
    assert!(reasons[0].starts_with("not a JSON object"), "{reasons:?}");
    assert!(reasons[1].contains("latitude 123.4"));
    assert_eq!(reasons[2], "missing field `device_id`");
    assert!(reasons[3].contains("major 70000"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("pings=218 invalid=4 fences=46"), "{stderr}");
}

#[test]
fn every_cell_scheme_gives_the_same_answers_on_generated_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let gen = beckon(&[
        "gen", "--fences", "3000", "--pings", "20000", "--seed", "9", "--out", &out,
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let (fences, pings) = (
        format!("{out}/fences.geojson"),
        format!("{out}/pings.jsonl"),
    );
    let answers: Vec<Vec<u8>> = ["off", "grid:0.008", "grid:0.001", "h3:10"]
        .iter()
        .map(|cells| {
            let o = beckon(&[
                "match", "--fences", &fences, "--pings", &pings, "--cells", cells,
            ]);
            assert!(
                o.status.success(),
                "{cells}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            o.stdout
        })
        .collect();
    assert_eq!(answers[0].iter().filter(|&&b| b == b'\n').count(), 20_000);
    assert!(
        answers[0].windows(6).any(|w| w == b"\"f-000"),
        "some pings are inside fences"
    );
    for a in &answers[1..] {
        assert!(a == &answers[0], "cell schemes disagree");
    }
}

#[test]
fn a_bad_fence_file_is_refused_naming_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.geojson");
    std::fs::write(
        &path,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"f-bowtie","properties":{"store_id":"s"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,1],[1,0],[0,1],[0,0]]]}}]}"#,
    )
    .unwrap();
    let out = beckon(&[
        "match",
        "--fences",
        &path.display().to_string(),
        "--pings",
        &fixture("pings.jsonl"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("bad.geojson"), "{stderr}");
    assert!(
        stderr.contains(
            "feature \"f-bowtie\" (#0 in the collection): polygon 0 ring 0: ring self-intersects"
        ),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is matched against a refused file"
    );
    let lenient = beckon(&[
        "check",
        "--fences",
        &path.display().to_string(),
        "--lenient",
    ]);
    assert!(lenient.status.success());
    assert!(String::from_utf8_lossy(&lenient.stderr).contains("skipped feature \"f-bowtie\""));
}

#[test]
fn check_validates_the_fixture_registry_against_the_fences() {
    let out = beckon(&[
        "check",
        "--fences",
        &fixture("fences.geojson"),
        "--beacons",
        &fixture("beacons.json"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("46 fences") && stdout.contains("25 beacons, every store_id has a fence"),
        "{stdout}"
    );
}

/// `beckon replay` over all the fixtures, with `more` arguments.
fn replay_fixtures(more: &[&str]) -> Output {
    let files = [
        ("--fences", "fences.geojson"),
        ("--beacons", "beacons.json"),
        ("--campaigns", "campaigns"),
        ("--profiles", "profiles.jsonl"),
        ("--pings", "pings.jsonl"),
    ]
    .map(|(flag, name)| (flag, fixture(name)));
    let mut args = vec!["replay"];
    for (flag, path) in &files {
        args.extend([*flag, path.as_str()]);
    }
    args.extend(more);
    beckon(&args)
}

#[test]
fn replay_writes_offers_presence_dead_letters_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let out = replay_fixtures(&[
        "--presence",
        &file("presence.jsonl"),
        "--dead-letters",
        &file("dead.jsonl"),
        "--summary",
        &file("summary.json"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offers = String::from_utf8(out.stdout).unwrap();
    assert_eq!(offers.lines().count(), 7, "{offers}");
    let first: serde_json::Value = serde_json::from_str(offers.lines().next().unwrap()).unwrap();
    for field in [
        "offer_id",
        "device_id",
        "campaign_id",
        "store_id",
        "fence_id",
        "trigger",
        "event_ts",
        "expires_at",
        "title",
        "body",
        "coupon_code",
        "distance_m",
    ] {
        assert!(first.get(field).is_some(), "offer without {field}: {first}");
    }
    let dead = std::fs::read_to_string(file("dead.jsonl")).unwrap();
    let lines: Vec<u64> = dead
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lines, [215, 216, 217, 218]);
    assert!(
        std::fs::read_to_string(file("presence.jsonl"))
            .unwrap()
            .lines()
            .count()
            > 20
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["offers"], 7);
    assert_eq!(summary["offers_by_campaign"]["chayun-tasting"], 1);
    assert_eq!(summary["suppressed_by_reason"]["no_consent"], 2);
}

#[test]
fn replay_refuses_a_bad_campaign_naming_it_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "id: autumn\nname: Autumn\ntrigger: {type: dwell, min_s: 0}\noffer: {title: Hi, ttl_s: 60}\n",
    )
    .unwrap();
    let out = beckon(&[
        "replay",
        "--fences",
        &fixture("fences.geojson"),
        "--campaigns",
        dir.path().to_str().unwrap(),
        "--pings",
        &fixture("pings.jsonl"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml: campaign autumn: trigger.min_s: must be > 0"),
        "{err}"
    );
}

#[test]
fn replay_takes_a_yaml_config_and_refuses_unknown_settings() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &str| {
        let path = dir.path().join("beckon.yaml");
        std::fs::write(&path, config).unwrap();
        replay_fixtures(&["--config", path.to_str().unwrap()])
    };
    // Quiet hours over the whole fixture day: every candidate that passed consent and audience is
    // held back (the 7 offers, and the door greeting that lost the visit to one of them).
    let quiet = run("caps:\n  quiet_hours: \"08:00-20:00\"\npresence:\n  dwell_s: 120\n");
    assert!(
        quiet.status.success(),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    assert!(
        quiet.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&quiet.stdout)
    );
    assert!(String::from_utf8_lossy(&quiet.stderr).contains("\"quiet_hours\": 8"));
    let bad = run("presence:\n  dwel_s: 120\n");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("beckon.yaml") && err.contains("unknown field `dwel_s`"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_bad_setting_or_a_bad_fence_file_before_touching_kafka() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args(["run", "--fences", "f.geojson", "--campaigns", "c"])
        .env("BECKON_HTTP_LISTEN", "not-an-address")
        .output()
        .expect("run beckon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BECKON_HTTP_LISTEN (for http.listen)"),
        "{err}"
    );

    let fences = dir.path().join("fences.geojson");
    std::fs::write(
        &fences,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":"f-open",
            "properties":{"store_id":"s-1"},"geometry":{"type":"Polygon",
            "coordinates":[[[121.0,31.0],[121.1,31.0],[121.1,31.1],[121.0,31.1]]]}}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_beckon"))
        .args([
            "run",
            "--brokers",
            "127.0.0.1:1",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--fences",
            fences.to_str().unwrap(),
            "--campaigns",
            &fixture("campaigns"),
        ])
        .output()
        .expect("run beckon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("f-open") && err.contains("not closed"),
        "{err}"
    );
}

/// `beckon replay` over the fixtures with `more` arguments: offers and presence events.
fn replay_fixture_events(more: &[&str], dir: &Path) -> (String, String) {
    let presence = dir.join("presence.jsonl");
    let mut args = vec![
        "--presence",
        presence.to_str().expect("a UTF-8 temporary path"),
    ];
    args.extend(more);
    let out = replay_fixtures(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).expect("offers are UTF-8"),
        std::fs::read_to_string(presence).expect("presence events written"),
    )
}

#[test]
fn replay_over_one_partition_is_the_plain_replay_and_partitions_change_no_unbudgeted_offer() {
    let dir = tempfile::tempdir().unwrap();
    let plain = replay_fixture_events(&[], dir.path());
    let one = replay_fixture_events(&["--partitions", "1"], dir.path());
    assert_eq!(one, plain);
    assert_eq!(one.0.lines().count(), 7);
    // No fixture budget binds: every device gets the same offers whichever engine decides it.
    // (Not always the same presence events: a device that fell silent is exited once its
    // engine's event time, which the engine's other devices advance, is far enough past it.)
    let three = replay_fixture_events(&["--partitions", "3"], dir.path());
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&three.0), sorted(&one.0));
}

#[test]
fn replay_over_partitions_spends_each_partitions_share_of_an_exhausted_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    let gen = beckon(&[
        "gen",
        "--fences",
        "300",
        "--pings",
        "0",
        "--devices",
        "400",
        "--seed",
        "3",
        "--out",
        &path("gen"),
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    // Ten coupons for whoever walks into any store first: 400 devices want more.
    std::fs::write(
        path("tight.json"),
        r#"{"id":"tight","name":"Ten coupons","anonymous":true,"priority":1000,
            "schedule":{"opening_hours":false},"trigger":{"type":"enter"},
            "offer":{"title":"Welcome to {store_name}","ttl_s":600},"budget":{"total":10}}"#,
    )
    .unwrap();
    let replay = |partitions: &str| {
        let summary = path(&format!("summary-{partitions}.json"));
        let out = beckon(&[
            "replay",
            "--fences",
            &path("gen/fences.geojson"),
            "--campaigns",
            &path("tight.json"),
            "--pings",
            &path("gen/device-pings.jsonl"),
            "--partitions",
            partitions,
            "--summary",
            &summary,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(summary).unwrap()).unwrap();
        (String::from_utf8(out.stdout).unwrap(), summary)
    };

    let (_, whole) = replay("1");
    assert_eq!(whole["budgets"]["tight"]["spent"], 10, "{whole}");
    assert!(
        whole["suppressed_by_reason"]["total_budget"]
            .as_u64()
            .unwrap()
            > 0
    );

    let (offers, split) = replay("3");
    let burn = &split["budgets"]["tight"];
    let by_partition: Vec<u64> = burn["spent_by_partition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    // 10 over 3 partitions: shares of 4, 3 and 3, each spent and none exceeded.
    assert_eq!(by_partition, [4, 3, 3], "{burn}");
    assert_eq!(burn["spent"], 10);
    assert_eq!(split["offers"], 10);
    // Each partition's coupons went to the devices Kafka's default partitioner puts there.
    let mut offered = [0u64; 3];
    for o in offers.lines() {
        let o: serde_json::Value = serde_json::from_str(o).unwrap();
        let device = o["device_id"].as_str().unwrap();
        offered[beckon::partition::partition_of(device.as_bytes(), 3) as usize] += 1;
    }
    assert_eq!(offered.to_vec(), by_partition);
}
