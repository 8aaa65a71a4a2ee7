//! The blender log reader (SPEC §4.2).

use closeup_data::{
    BlenderReadOptions, BlenderRecord, DataError, read_blender_features, read_blender_log,
    write_blender_log,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const GOOD: &str = r#"{"request": "r1", "features": [0.3, 1.0], "blend": [1.0, 0.4, 0.8, 0.1], "feedback": ["closeup"]}"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("blend.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

fn err_on_line2(second: &str, opts: &BlenderReadOptions) -> DataError {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), &format!("{GOOD}\n{second}\n"));
    let e = read_blender_log(&p, opts).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    e
}

#[test]
fn reads_the_spec_example() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        &format!("{GOOD}\n{{\"features\": [0.0, -2.0], \"blend\": [1, 1, 1, 1]}}\n\n"),
    );
    let log = read_blender_log(&p, &BlenderReadOptions::default()).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log.num_objectives(), log.feature_width()), (4, 2));
    assert_eq!(log.blend.row(0).to_vec(), [1.0, 0.4, 0.8, 0.1]);
    assert_eq!(log.features.row(1).to_vec(), [0.0, -2.0]);
    assert_eq!(log.feedback, [vec!["closeup".to_string()], vec![]]);
    assert_eq!(log.requests, [Some("r1".to_string()), None]);
    assert_eq!(log.lines, [1, 2]);
}

#[test]
fn blend_length_checks() {
    let e = err_on_line2(
        r#"{"features": [0.3, 1.0], "blend": [1.0, 0.4]}"#,
        &BlenderReadOptions::default(),
    );
    assert_eq!(e.field(), Some("blend"));
    assert!(
        e.to_string()
            .contains("expected 4 values (as on line 1), got 2"),
        "{e}"
    );
    let three = BlenderReadOptions {
        num_objectives: Some(3),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), &format!("{GOOD}\n"));
    let e = read_blender_log(&p, &three).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(1), Some("blend")), "{e}");
    assert!(
        e.to_string().contains("one per configured objective"),
        "{e}"
    );
    let p = write(dir.path(), "{\"features\": [], \"blend\": []}\n");
    let e = read_blender_log(&p, &BlenderReadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("blend must not be empty"), "{e}");
}

#[test]
fn feature_width_and_values() {
    let e = err_on_line2(
        r#"{"features": [0.3], "blend": [1, 1, 1, 1]}"#,
        &BlenderReadOptions::default(),
    );
    assert_eq!(e.field(), Some("features"));
    let e = err_on_line2(
        r#"{"features": [0.3, "NaN"], "blend": [1, 1, 1, 1]}"#,
        &BlenderReadOptions::default(),
    );
    assert_eq!(e.field(), Some("features[1]"));
    let e = err_on_line2(
        r#"{"features": [0.3, 1], "blend": [1, 1, 1e999, 1]}"#,
        &BlenderReadOptions::default(),
    );
    assert_eq!(e.field(), Some("blend[2]"));
    let e = err_on_line2(
        r#"{"features": [0.3, 1], "blend": [1, 1, 1, 1], "feedback": "closeup"}"#,
        &BlenderReadOptions::default(),
    );
    assert_eq!(e.field(), Some("feedback"));
    let e = err_on_line2(
        r#"{"features": [0.3, 1], "blend": [1, 1, 1, 1], "reward": 1}"#,
        &BlenderReadOptions::default(),
    );
    assert!(e.to_string().contains("unknown field `reward`"), "{e}");
}

#[test]
fn unknown_events_are_named() {
    let allowed: BTreeSet<String> = ["closeup", "hide"].iter().map(|s| s.to_string()).collect();
    let opts = BlenderReadOptions {
        allowed_events: Some(allowed),
        ..Default::default()
    };
    let e = err_on_line2(
        r#"{"features": [0, 0], "blend": [1, 1, 1, 1], "feedback": ["hide", "clik"]}"#,
        &opts,
    );
    assert_eq!(e.field(), Some("feedback[1]"));
    assert!(e.to_string().contains("unknown event \"clik\""), "{e}");
}

#[test]
fn empty_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "\n");
    assert!(matches!(
        read_blender_log(&p, &Default::default()),
        Err(DataError::Empty { .. })
    ));
    let missing = dir.path().join("missing.jsonl");
    assert!(matches!(
        read_blender_log(&missing, &Default::default()),
        Err(DataError::NotFound { .. })
    ));
}

#[test]
fn features_only_reader_ignores_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        &format!("{GOOD}\n{{\"features\": [2, 3], \"anything\": 1}}\n"),
    );
    let (lines, x) = read_blender_features(&p, Some(2)).unwrap();
    assert_eq!(lines, [1, 2]);
    assert_eq!(x.row(1).to_vec(), [2.0, 3.0]);
    let e = read_blender_features(&p, Some(3)).unwrap_err();
    assert!(e.to_string().contains("the model's width"), "{e}");
}

#[test]
fn writer_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.jsonl");
    let recs = vec![
        BlenderRecord {
            request: Some("a".into()),
            features: vec![1.0],
            blend: vec![0.5, 0.25],
            feedback: vec!["hide".into()],
        },
        BlenderRecord {
            request: None,
            features: vec![2.0],
            blend: vec![1.0, 0.0],
            feedback: vec![],
        },
    ];
    write_blender_log(&p, &recs).unwrap();
    let log = read_blender_log(
        &p,
        &BlenderReadOptions {
            num_objectives: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(log.blend.row(0).to_vec(), [0.5, 0.25]);
    assert_eq!(log.feedback[0], ["hide"]);
    let mut bad = recs.clone();
    bad[1].blend.push(1.0);
    let e = write_blender_log(&p, &bad).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(2), Some("blend")), "{e}");
}
