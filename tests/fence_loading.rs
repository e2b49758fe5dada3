//! Fence files as an operator writes them: every invalid feature is refused with its id and the
//! reason, strict loading refuses the whole file, lenient loading keeps the rest.

use beckon::fence::{load_fences, parse_fences, FenceFileError, LoadMode, Shape};

fn collection(features: &[&str]) -> String {
    format!(
        r#"{{"type":"FeatureCollection","features":[{}]}}"#,
        features.join(",")
    )
}

fn polygon(id: &str, ring: &str) -> String {
    format!(
        r#"{{"type":"Feature","id":"{id}","properties":{{"store_id":"s-1"}},"geometry":{{"type":"Polygon","coordinates":[{ring}]}}}}"#
    )
}

const SQUARE: &str = "[[121.0,31.0],[121.001,31.0],[121.001,31.001],[121.0,31.001],[121.0,31.0]]";

/// The reason given for the only feature of a file, in strict mode.
fn refusal(feature: &str) -> String {
    match parse_fences(collection(&[feature]).as_bytes(), LoadMode::Strict) {
        Err(FenceFileError::Invalid(errors)) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            errors[0].to_string()
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn each_invalid_feature_is_refused_with_its_id_and_reason() {
    let cases = [
        (polygon("unclosed", "[[121.0,31.0],[121.001,31.0],[121.001,31.001],[121.0,31.001]]"), "\"unclosed\"", "ring is not closed"),
        (polygon("few", "[[121.0,31.0],[121.001,31.0],[121.0,31.0]]"), "\"few\"", "at least 4 positions"),
        (polygon("lat", "[[121.0,31.0],[121.001,91.0],[121.001,31.001],[121.0,31.0]]"), "\"lat\"", "latitude 91"),
        (polygon("lon", "[[181.0,31.0],[121.001,31.0],[121.001,31.001],[181.0,31.0]]"), "\"lon\"", "longitude 181"),
        (polygon("bowtie", "[[0,0],[1,1],[1,0],[0,1],[0,0]]"), "\"bowtie\"", "self-intersects at [0.5, 0.5]"),
        (polygon("dateline", "[[179.9,0],[-179.9,0],[-179.9,0.1],[179.9,0.1],[179.9,0]]"), "\"dateline\"", "antimeridian"),
        (polygon("text", "[[\"121\",31.0],[121.001,31.0],[121.001,31.001],[121.0,31.0]]"), "\"text\"", "two numbers [lon, lat]"),
        (
            format!(r#"{{"type":"Feature","id":"nostore","properties":{{"brand":"x"}},"geometry":{{"type":"Polygon","coordinates":[{SQUARE}]}}}}"#),
            "\"nostore\"",
            "missing properties.store_id",
        ),
        (
            r#"{"type":"Feature","id":"r0","properties":{"store_id":"s","radius_m":0},"geometry":{"type":"Point","coordinates":[121,31]}}"#.into(),
            "\"r0\"",
            "radius_m must be a number in (0, 50000]",
        ),
        (
            r#"{"type":"Feature","id":"rbig","properties":{"store_id":"s","radius_m":50001},"geometry":{"type":"Point","coordinates":[121,31]}}"#.into(),
            "\"rbig\"",
            "got 50001",
        ),
        (
            r#"{"type":"Feature","id":"rnone","properties":{"store_id":"s"},"geometry":{"type":"Point","coordinates":[121,31]}}"#.into(),
            "\"rnone\"",
            "needs properties.radius_m",
        ),
        (
            r#"{"type":"Feature","id":"line","properties":{"store_id":"s"},"geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}"#.into(),
            "\"line\"",
            "\"LineString\" is not a fence",
        ),
        (
            format!(r#"{{"type":"Feature","id":7,"properties":{{"store_id":"s"}},"geometry":{{"type":"Polygon","coordinates":[{SQUARE}]}}}}"#),
            "<no id>",
            "`id` must be a string, got 7",
        ),
        (
            format!(r#"{{"type":"Feature","properties":{{"store_id":"s"}},"geometry":{{"type":"Polygon","coordinates":[{SQUARE}]}}}}"#),
            "<no id>",
            "missing `id`",
        ),
    ];
    for (feature, who, why) in cases {
        let text = refusal(&feature);
        assert!(text.starts_with(&format!("feature {who} (#0")), "{text}");
        assert!(text.contains(why), "{text:?} should say {why:?}");
    }
}

#[test]
fn a_bad_hole_names_its_polygon_and_ring() {
    let mall = format!(
        r#"{{"type":"Feature","id":"mall","properties":{{"store_id":"m"}},"geometry":{{"type":"MultiPolygon","coordinates":[[{SQUARE}],[{SQUARE},[[0,0],[1,1],[1,0],[0,1],[0,0]]]]}}}}"#
    );
    let text = refusal(&mall);
    assert!(
        text.contains("polygon 1 ring 1: ring self-intersects"),
        "{text}"
    );
}

#[test]
fn duplicates_are_refused_pointing_at_the_first() {
    let file = collection(&[
        &polygon("a", SQUARE),
        &polygon("b", SQUARE),
        &polygon("a", SQUARE),
    ]);
    let Err(FenceFileError::Invalid(errors)) = parse_fences(file.as_bytes(), LoadMode::Strict)
    else {
        panic!("duplicate accepted")
    };
    assert_eq!(
        errors[0].to_string(),
        "feature \"a\" (#2 in the collection): duplicate id (first seen at #0)"
    );
}

#[test]
fn strict_refuses_the_whole_file_and_lenient_keeps_the_valid_fences() {
    let file = collection(&[
        &polygon("good", SQUARE),
        &polygon("bad", "[[0,0],[1,1],[0,0]]"),
        &polygon("also-good", SQUARE),
    ]);
    let strict = parse_fences(file.as_bytes(), LoadMode::Strict)
        .unwrap_err()
        .to_string();
    assert!(
        strict.starts_with("1 invalid feature(s); the file was refused whole"),
        "{strict}"
    );
    assert!(strict.contains("feature \"bad\" (#1"), "{strict}");
    let lenient = parse_fences(file.as_bytes(), LoadMode::Lenient).unwrap();
    let ids: Vec<&str> = lenient.fences.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["good", "also-good"]);
    assert_eq!(lenient.rejected.len(), 1);
}

#[test]
fn broken_json_and_wrong_documents_are_refused_with_where() {
    let truncated = parse_fences(
        br#"{"type":"FeatureCollection","features":[{"type":"Feature""#,
        LoadMode::Lenient,
    )
    .unwrap_err()
    .to_string();
    assert!(truncated.contains("line 1 column"), "{truncated}");
    let nan = parse_fences(
        collection(&[&polygon("n", "[[NaN,0],[1,0],[1,1],[NaN,0]]")]).as_bytes(),
        LoadMode::Lenient,
    )
    .unwrap_err()
    .to_string();
    assert!(nan.contains("not valid GeoJSON"), "{nan}");
    let feature = parse_fences(polygon("x", SQUARE).as_bytes(), LoadMode::Strict)
        .unwrap_err()
        .to_string();
    assert!(
        feature.contains("expected \"FeatureCollection\""),
        "{feature}"
    );
    let missing = load_fences(
        std::path::Path::new("/nonexistent/fences.geojson"),
        LoadMode::Strict,
    )
    .unwrap_err()
    .to_string();
    assert!(missing.starts_with("cannot read fence file"), "{missing}");
}

#[test]
fn valid_shapes_and_properties_are_kept() {
    let file = collection(&[
        r#"{"type":"Feature","id":"c","properties":{"store_id":"s-9","brand":"chayun","region":"sh-puxi","kind":"circle","name":"Metro exit","timezone":"Asia/Shanghai","radius_m":120.5,"purpose":"nearby"},"geometry":{"type":"Point","coordinates":[121.47,31.23,4.0]}}"#,
        // Either winding, a hole, repeated positions.
        r#"{"type":"Feature","id":"p","properties":{"store_id":"s-1","hours":{"mon":["10:00-22:00"]}},"geometry":{"type":"Polygon","coordinates":[[[0,0],[0,4],[4,4],[4,4],[4,0],[0,0]],[[1,1],[2,1],[2,2],[1,2],[1,1]]]}}"#,
    ]);
    let fences = parse_fences(file.as_bytes(), LoadMode::Strict)
        .unwrap()
        .fences;
    let c = &fences[0];
    assert_eq!(c.props.store_id, "s-9");
    assert_eq!(
        (
            c.props.brand.as_deref(),
            c.props.region.as_deref(),
            c.props.kind.as_deref()
        ),
        (Some("chayun"), Some("sh-puxi"), Some("circle"))
    );
    assert_eq!(
        c.props.metadata.get("purpose").and_then(|v| v.as_str()),
        Some("nearby")
    );
    assert!(
        !c.props.metadata.contains_key("radius_m"),
        "radius is geometry, not metadata"
    );
    assert!(matches!(c.shape, Shape::Circle { radius, .. } if radius.0 == 120.5));
    let Shape::Area(mp) = &fences[1].shape else {
        panic!()
    };
    assert_eq!(
        (
            mp.0.len(),
            mp.0[0].interiors().len(),
            mp.0[0].exterior().0.len()
        ),
        (1, 1, 5)
    );
    assert!(fences[1].props.hours.is_some());
}
