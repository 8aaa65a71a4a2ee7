//! Every bad-input class of the engagement log (SPEC §4.1) is an error naming file, line and
//! field; good files round-trip through the writer.

use closeup_data::{
    DataError, EngagementDataset, EngagementRecord, HistoryEntry, ReadOptions, read_engagement_log,
    write_engagement_log,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const GOOD: &str = r#"{"user": 17, "ts": 1700000000, "candidate": 4821, "history": [{"pin": 4411, "action": "repin", "ts": 1699999000}], "features": [0.13, -1.2], "labels": {"repin": 1, "click": 0, "closeup": 1, "long_click": 0}, "weight": 1.0, "old_scores": {"repin": 0.31, "click": 0.05, "closeup": 0.4, "long_click": 0.02}}"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Writes two good lines then `bad` as line 3, reads, and returns the error.
fn bad_line(bad: &str) -> DataError {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.jsonl",
        &format!("{GOOD}\n{GOOD}\n{bad}\n{GOOD}\n"),
    );
    let err = read_engagement_log(&p).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("{}:3: ", p.display())),
        "{err}"
    );
    // The dataset loader gives the same error before anything is encoded.
    let err2 = EngagementDataset::load_training(&p, &ReadOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), err2.to_string());
    err
}

fn assert_field(err: &DataError, field: &str, needle: &str) {
    assert_eq!(err.line(), Some(3), "{err}");
    assert_eq!(err.field(), Some(field), "{err}");
    assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
}

#[test]
fn good_example_from_the_spec_parses() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "good.jsonl", &format!("{GOOD}\n"));
    let recs = read_engagement_log(&p).unwrap();
    assert_eq!(recs.len(), 1);
    let (line, r) = &recs[0];
    assert_eq!(*line, 1);
    assert_eq!(r.candidate, Some(4821));
    assert_eq!(r.history[0].ts, Some(1699999000));
    assert_eq!(r.labels["closeup"], Some(1.0));
    assert_eq!(r.old_scores.as_ref().unwrap()["long_click"], Some(0.02));
}

#[test]
fn malformed_json() {
    let e = bad_line(r#"{"features": [1.0, 2.0], "labels": {"#);
    assert!(matches!(e, DataError::Syntax { line: 3, .. }), "{e}");
    assert!(e.to_string().contains("malformed JSON"), "{e}");
    let e = bad_line(r#"{"features": [1.0, 2.0]} trailing"#);
    assert!(e.to_string().contains("malformed JSON"), "{e}");
    let e = bad_line("[1, 2]");
    assert!(matches!(e, DataError::Syntax { line: 3, .. }), "{e}");
}

#[test]
fn wrong_types() {
    let e = bad_line(r#"{"features": [1.0, "x"]}"#);
    assert_field(&e, "features[1]", "invalid type");
    let e = bad_line(r#"{"user": -3, "features": [1.0, 2.0]}"#);
    assert_field(&e, "user", "-3");
    let e = bad_line(r#"{"candidate": 1.5, "features": [1.0, 2.0]}"#);
    assert_field(&e, "candidate", "floating point");
    let e = bad_line(r#"{"features": [1.0, 2.0], "history": [{"pin": 3}]}"#);
    assert_field(&e, "history[0]", "missing field `action`");
    let e = bad_line(r#"{"features": [1.0, 2.0], "labels": {"click": true}}"#);
    assert_field(&e, "labels.click", "boolean");
    let e = bad_line(r#"{"features": [1.0, 2.0], "labels": [1, 0]}"#);
    assert_field(&e, "labels", "invalid type");
}

#[test]
fn unknown_keys_are_rejected() {
    let e = bad_line(r#"{"features": [1.0, 2.0], "lables": {"click": 1}}"#);
    assert!(e.to_string().contains("unknown field `lables`"), "{e}");
    assert_eq!(e.line(), Some(3));
}

#[test]
fn nan_and_infinity() {
    let e = bad_line(r#"{"features": [1.0, "NaN"]}"#);
    assert_field(&e, "features[1]", "NaN and infinity are not allowed");
    let e = bad_line(r#"{"features": [1.0, "-Infinity"]}"#);
    assert_field(&e, "features[1]", "NaN and infinity are not allowed");
    let e = bad_line(r#"{"features": [1.0, "2.5"]}"#);
    assert_field(&e, "features[1]", "write numbers without quotes");
    let e = bad_line(r#"{"features": [1.0, 1e999]}"#);
    assert_field(
        &e,
        "features[1]",
        "number out of range (the number overflows f64",
    );
    // Finite as f64 but infinite once stored as f32.
    let e = bad_line(r#"{"features": [1.0, 1e300]}"#);
    assert_field(&e, "features[1]", "not a finite f32");
    let e = bad_line(r#"{"features": [1.0, 2.0], "weight": "inf"}"#);
    assert_field(&e, "weight", "invalid type");
}

#[test]
fn labels_must_be_binary_or_null() {
    let e = bad_line(r#"{"features": [1.0, 2.0], "labels": {"click": 2}}"#);
    assert_field(&e, "labels.click", "label must be 0, 1 or null, got 2");
    let e = bad_line(r#"{"features": [1.0, 2.0], "labels": {"repin": 0.5}}"#);
    assert_field(&e, "labels.repin", "got 0.5");
    let e = bad_line(r#"{"features": [1.0, 2.0], "labels": {"": 1}}"#);
    assert_field(&e, "labels", "must not be empty");
}

#[test]
fn feature_width_must_match_the_first_line() {
    let e = bad_line(r#"{"candidate": 1, "features": [1.0]}"#);
    assert_field(&e, "features", "expected 2 features (as on line 1), got 1");
}

#[test]
fn candidate_on_every_line_or_none() {
    let e = bad_line(r#"{"features": [1.0, 2.0]}"#);
    assert_field(&e, "candidate", "line 1 has a candidate");
}

#[test]
fn weight_must_be_non_negative() {
    let e = bad_line(r#"{"candidate": 1, "features": [1.0, 2.0], "weight": -0.5}"#);
    assert_field(&e, "weight", "got -0.5");
}

#[test]
fn old_scores_are_probabilities() {
    let e = bad_line(r#"{"candidate": 1, "features": [1.0, 2.0], "old_scores": {"click": -0.1}}"#);
    assert_field(&e, "old_scores.click", "[0, 1]");
    let e = bad_line(r#"{"candidate": 1, "features": [1.0, 2.0], "old_scores": {"click": 1.5}}"#);
    assert_field(&e, "old_scores.click", "got 1.5");
    let e = bad_line(r#"{"candidate": 1, "features": [1.0, 2.0], "old_scores": {"click": "NaN"}}"#);
    assert_field(&e, "old_scores.click", "NaN");
}

#[test]
fn history_actions_checked() {
    let e = bad_line(
        r#"{"candidate": 1, "features": [1.0, 2.0], "history": [{"pin": 1, "action": ""}]}"#,
    );
    assert_field(&e, "history[0].action", "must not be empty");
    let e = bad_line(
        r#"{"candidate": 1, "features": [1.0, 2.0], "history": [{"pin": 1, "action": "<pad>"}]}"#,
    );
    assert_field(&e, "history[0].action", "reserved");
    let e = bad_line(
        r#"{"candidate": 1, "features": [1.0, 2.0], "history": [{"pin": -1, "action": "x"}]}"#,
    );
    assert_field(&e, "history[0].pin", "-1");
}

#[test]
fn empty_missing_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.jsonl", "");
    let e = read_engagement_log(&empty).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e}");
    assert!(
        e.to_string().contains("empty.jsonl: the file is empty"),
        "{e}"
    );
    let blanks = write(dir.path(), "blanks.jsonl", "\n  \n\r\n");
    assert!(matches!(
        read_engagement_log(&blanks).unwrap_err(),
        DataError::Empty { .. }
    ));
    let missing = dir.path().join("nope.jsonl");
    let e = EngagementDataset::load_training(&missing, &ReadOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::NotFound { .. }), "{e}");
    assert!(e.to_string().ends_with("nope.jsonl: file not found"), "{e}");
    // Trailing blank lines, CRLF and a BOM are fine.
    let ok = write(
        dir.path(),
        "ok.jsonl",
        &format!("\u{feff}{GOOD}\r\n{GOOD}\r\n\n \n"),
    );
    assert_eq!(read_engagement_log(&ok).unwrap().len(), 2);
    // A blank line in the middle is an error naming the blank line.
    let mid = write(dir.path(), "mid.jsonl", &format!("{GOOD}\n\n{GOOD}\n"));
    let e = read_engagement_log(&mid).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    assert!(e.to_string().contains("blank line"), "{e}");
    // A directory is an I/O error, not a panic.
    let e = read_engagement_log(dir.path()).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
}

#[test]
fn invalid_utf8_is_a_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bin.jsonl");
    let mut bytes = format!("{GOOD}\n").into_bytes();
    bytes.extend_from_slice(b"{\"features\": [1.0, 2.0], \"request\": \"\xff\xfe\"}\n");
    std::fs::write(&p, bytes).unwrap();
    let e = read_engagement_log(&p).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
}

fn record(i: u64) -> EngagementRecord {
    let mut labels = BTreeMap::new();
    labels.insert("click".to_string(), Some((i % 2) as f64));
    labels.insert("hide".to_string(), None);
    EngagementRecord {
        user: Some(i),
        ts: Some(100 + i as i64),
        request: (i == 2).then(|| "req-2".to_string()),
        candidate: Some(1000 + i),
        history: (0..i)
            .map(|j| HistoryEntry {
                pin: j,
                action: if j % 2 == 0 { "repin" } else { "hide" }.into(),
                ts: None,
            })
            .collect(),
        features: vec![i as f64 * 0.25, -1.5],
        labels,
        weight: (i == 1).then_some(2.5),
        old_scores: (i == 0).then(|| BTreeMap::from([("click".to_string(), Some(0.25))])),
    }
}

#[test]
fn write_then_read_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rt.jsonl");
    let recs: Vec<EngagementRecord> = (0..5).map(record).collect();
    assert_eq!(write_engagement_log(&p, &recs).unwrap(), 5);
    let back: Vec<EngagementRecord> = read_engagement_log(&p)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(back, recs);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["rt.jsonl"]);
}

#[test]
fn writer_refuses_what_the_reader_would_reject_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("log.jsonl");
    std::fs::write(&p, "previous contents\n").unwrap();
    let mut bad = vec![record(0), record(1)];
    bad[1].features[0] = f64::NAN;
    let e = write_engagement_log(&p, &bad).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(2), Some("features[0]")), "{e}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "previous contents\n");
    let mut narrow = vec![record(0), record(1)];
    narrow[1].features.pop();
    let e = write_engagement_log(&p, &narrow).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(2), Some("features")), "{e}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["log.jsonl"], "temporary files must be cleaned up");
}
