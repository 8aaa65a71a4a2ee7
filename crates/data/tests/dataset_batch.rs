//! Vocabulary learning, encoding, masks, batching determinism and the time split.

use closeup_data::batch::{BatchOptions, Batches, make_batch};
use closeup_data::vocab::{PAD_ACTION, UNKNOWN_ACTION};
use closeup_data::{DataError, EngagementDataset, ReadOptions, RequestKey, Vocab};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

const TRAIN: [&str; 4] = [
    r#"{"user": 1, "ts": 30, "candidate": 10, "history": [{"pin": 1, "action": "click"}, {"pin": 2, "action": "repin"}, {"pin": 3, "action": "hide"}], "features": [1.0, 2.0], "labels": {"zeta": 1, "click": 0}, "weight": 2.0}"#,
    r#"{"user": 2, "ts": 10, "candidate": 11, "features": [3.0, 4.0], "labels": {"repin": 1, "click": null}, "old_scores": {"click": 0.25}}"#,
    r#"{"user": 1, "ts": 30, "candidate": 12, "history": [{"pin": 5, "action": "share"}], "features": [5.0, 6.0], "labels": {"alpha": 0}}"#,
    r#"{"request": "q", "user": 3, "ts": 20, "candidate": 13, "history": [], "features": [7.0, 8.0], "labels": {}}"#,
];

fn train_set(dir: &Path) -> EngagementDataset {
    let p = write(dir, "train.jsonl", &TRAIN);
    EngagementDataset::load_training(&p, &ReadOptions::default()).unwrap()
}

#[test]
fn learns_vocab_in_documented_order() {
    let dir = tempfile::tempdir().unwrap();
    let ds = train_set(dir.path());
    // Default tasks first (repin, click), then others by first appearance (alphabetical
    // within a line): zeta (line 1), alpha (line 3).
    assert_eq!(ds.vocab.tasks(), ["repin", "click", "zeta", "alpha"]);
    assert_eq!(
        ds.vocab.learned_actions(),
        ["click", "repin", "hide", "share"]
    );
    assert_eq!(ds.vocab.action_id("click"), 2);
    assert_eq!(ds.vocab.feature_width(), 2);
    let e0 = &ds.examples[0];
    assert_eq!(
        e0.history.iter().map(|t| t.action).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    assert_eq!(e0.labels, [None, Some(0.0), Some(1.0), None]);
    assert_eq!(e0.weight, 2.0);
    // click: null is missing, never 0.
    assert_eq!(ds.examples[1].labels, [Some(1.0), None, None, None]);
    assert_eq!(
        ds.examples[1].old_scores,
        Some(vec![None, Some(0.25), None, None])
    );
    assert_eq!(ds.examples[0].old_scores, None);
    assert_eq!(ds.label_counts(), [(1, 1), (1, 0), (1, 1), (1, 0)]);
    let m = &ds.meta;
    assert!(m.has_history && m.has_candidate && m.has_old_scores && !m.is_dense_only());
    assert_eq!((m.n_lines, m.feature_width), (4, 2));
}

#[test]
fn explicit_task_list_and_request_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "t.jsonl", &TRAIN);
    let opts = ReadOptions {
        tasks: Some(vec!["click".into(), "alpha".into()]),
        ..Default::default()
    };
    let ds = EngagementDataset::load_training(&p, &opts).unwrap();
    assert_eq!(ds.vocab.tasks(), ["click", "alpha"]);
    assert_eq!(ds.meta.ignored_tasks, ["zeta", "repin"]);
    assert_eq!(ds.examples[0].labels, [Some(0.0), None]);
    assert_eq!(ds.examples[3].request, RequestKey::Named("q".into()));
    assert_eq!(
        ds.examples[1].request,
        RequestKey::UserTs {
            user: Some(2),
            ts: Some(10)
        }
    );
    // Lines 1 and 3 share (user 1, ts 30).
    assert_eq!(ds.requests(), [vec![0, 2], vec![1], vec![3]]);
}

#[test]
fn scoring_uses_the_training_vocab() {
    let dir = tempfile::tempdir().unwrap();
    let train = train_set(dir.path());
    let json = serde_json::to_string(&train.vocab).unwrap();
    let vocab: Vocab = serde_json::from_str(&json).unwrap();
    let p = write(
        dir.path(),
        "score.jsonl",
        &[
            r#"{"candidate": 1, "history": [{"pin": 9, "action": "never-seen"}, {"pin": 8, "action": "hide"}], "features": [0.0, 0.0], "labels": {"new_task": 1, "click": 1}}"#,
        ],
    );
    let ds = EngagementDataset::load_with_vocab(&p, &vocab, &ReadOptions::default()).unwrap();
    assert_eq!(
        ds.examples[0]
            .history
            .iter()
            .map(|t| t.action)
            .collect::<Vec<_>>(),
        [UNKNOWN_ACTION, 4]
    );
    assert_eq!(ds.meta.unknown_actions, 1);
    assert_eq!(ds.meta.ignored_tasks, ["new_task"]);
    assert_eq!(ds.examples[0].labels, [None, Some(1.0), None, None]);
    // A different feature width is a clear error naming the first line.
    let wide = write(
        dir.path(),
        "wide.jsonl",
        &[r#"{"candidate": 1, "features": [0.0, 0.0, 1.0]}"#],
    );
    let e = EngagementDataset::load_with_vocab(&wide, &vocab, &ReadOptions::default()).unwrap_err();
    assert!(
        matches!(
            e,
            DataError::FeatureWidth {
                expected: 2,
                found: 3,
                line: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("3 dense features per line but the model was trained with 2"),
        "{e}"
    );
}

#[test]
fn dense_only_files_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "d.jsonl",
        &[
            r#"{"features": [1.0], "labels": {"a": 1}}"#,
            r#"{"features": [2.0], "history": [], "labels": {"a": 0}}"#,
        ],
    );
    let ds = EngagementDataset::load_training(&p, &ReadOptions::default()).unwrap();
    assert!(ds.meta.is_dense_only());
    let b = Batches::sequential(&ds, BatchOptions::default())
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(b.hist_mask.dim(), (2, 1));
    assert!(b.hist_mask.iter().all(|m| !m));
    assert_eq!(b.hist_len, [0, 0]);
    assert!(b.candidates.is_none() && b.old_scores.is_none());
    let b0 = make_batch(
        &ds,
        &[0, 1],
        &BatchOptions {
            seq_len: 0,
            ..Default::default()
        },
    );
    assert_eq!(b0.hist_pins.dim(), (2, 0));
}

#[test]
fn batch_layout_masks_and_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let ds = train_set(dir.path());
    let opts = BatchOptions {
        batch_size: 4,
        seq_len: 2,
        ..Default::default()
    };
    let b = make_batch(&ds, &[0, 1, 2, 3], &opts);
    // Most recent first, left-aligned, truncated to seq_len = 2: line 1 keeps hide, repin.
    assert_eq!(b.hist_pins.row(0).to_vec(), [3, 2]);
    assert_eq!(b.hist_actions.row(0).to_vec(), [4, 3]);
    assert_eq!(b.hist_mask.row(0).to_vec(), [true, true]);
    assert_eq!(b.hist_actions.row(1).to_vec(), [PAD_ACTION, PAD_ACTION]);
    assert_eq!(b.hist_mask.row(2).to_vec(), [true, false]);
    assert_eq!(b.hist_pins.row(2).to_vec(), [5, 0]);
    assert_eq!(b.hist_len, [2, 0, 1, 0]);
    assert_eq!(b.candidates.as_deref(), Some(&[10, 11, 12, 13][..]));
    assert_eq!(b.features.row(3).to_vec(), [7.0, 8.0]);
    assert_eq!(b.labels.row(0).to_vec(), [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(b.label_mask.row(0).to_vec(), [0.0, 1.0, 1.0, 0.0]);
    assert_eq!(b.label_mask.row(3).to_vec(), [0.0; 4]);
    assert_eq!(b.weights.to_vec(), [2.0, 1.0, 1.0, 1.0]);
    let (vals, mask) = b.old_scores.as_ref().unwrap();
    assert_eq!(vals.row(1).to_vec(), [0.0, 0.25, 0.0, 0.0]);
    assert_eq!(mask.row(1).to_vec(), [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(mask.row(0).to_vec(), [0.0; 4]);
    // Dynamic width follows the longest history in the batch; fixed width is seq_len.
    let wide = BatchOptions {
        seq_len: 100,
        ..opts
    };
    assert_eq!(make_batch(&ds, &[0, 2], &wide).hist_pins.ncols(), 3);
    assert_eq!(make_batch(&ds, &[2], &wide).hist_pins.ncols(), 1);
    assert_eq!(make_batch(&ds, &[1, 3], &wide).hist_pins.ncols(), 1);
    let fixed = BatchOptions {
        fixed_len: true,
        ..wide
    };
    assert_eq!(make_batch(&ds, &[1], &fixed).hist_mask.dim(), (1, 100));
    // Read-time truncation keeps the most recent entries.
    let p = write(dir.path(), "t.jsonl", &TRAIN);
    let short = EngagementDataset::load_training(
        &p,
        &ReadOptions {
            max_history: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        short.examples[0]
            .history
            .iter()
            .map(|t| t.pin)
            .collect::<Vec<_>>(),
        [3]
    );
}

#[test]
fn shuffling_is_deterministic_per_seed() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"features": [{i}.0], "labels": {{"a": {}}}}}"#, i % 2))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let p = write(dir.path(), "s.jsonl", &refs);
    let ds = EngagementDataset::load_training(&p, &ReadOptions::default()).unwrap();
    let opts = BatchOptions {
        batch_size: 8,
        ..Default::default()
    };
    let run = |seed, epoch| -> Vec<Vec<usize>> {
        Batches::seeded(&ds, opts, seed, epoch)
            .unwrap()
            .map(|b| b.indices)
            .collect()
    };
    let a = run(7, 0);
    assert_eq!(a, run(7, 0));
    assert_ne!(a, run(8, 0));
    assert_ne!(a, run(7, 1));
    assert_eq!(a.len(), 7);
    assert_eq!(a.last().unwrap().len(), 2);
    let mut all: Vec<usize> = a.concat();
    assert_ne!(all, (0..50).collect::<Vec<_>>());
    all.sort_unstable();
    assert_eq!(all, (0..50).collect::<Vec<_>>());
    let it = Batches::seeded(
        &ds,
        BatchOptions {
            drop_last: true,
            ..opts
        },
        7,
        0,
    )
    .unwrap();
    assert_eq!(it.num_batches(), 6);
    assert_eq!(it.count(), 6);
    // Batch contents follow the indices.
    let b = Batches::seeded(&ds, opts, 7, 0).unwrap().next().unwrap();
    for (row, &i) in b.indices.iter().enumerate() {
        assert_eq!(b.features[[row, 0]], i as f32);
    }
    assert!(
        Batches::sequential(
            &ds,
            BatchOptions {
                batch_size: 0,
                ..opts
            }
        )
        .is_err()
    );
    assert!(Batches::new(&ds, vec![50], opts).is_err());
}

#[test]
fn time_split_orders_by_ts_stably() {
    let dir = tempfile::tempdir().unwrap();
    let ds = train_set(dir.path());
    // ts: 30, 10, 30, 20 -> order 1 (10), 3 (20), 0 (30), 2 (30).
    let (train, valid) = ds.split_by_time(0.5).unwrap();
    assert_eq!(
        train.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        [2, 4]
    );
    assert_eq!(
        valid.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 3]
    );
    let (train, valid) = ds.split_by_time(0.01).unwrap();
    assert_eq!((train.len(), valid.len()), (3, 1));
    assert_eq!(valid.examples[0].line, 3);
    assert!(ds.split_by_time(0.0).is_err());
    assert!(ds.split_by_time(1.0).is_err());
    assert!(ds.split_by_time(f64::NAN).is_err());
    // Without ts on every line, file order is used.
    let p = write(
        dir.path(),
        "nots.jsonl",
        &[
            r#"{"ts": 5, "features": []}"#,
            r#"{"features": []}"#,
            r#"{"ts": 1, "features": []}"#,
        ],
    );
    let ds = EngagementDataset::load_training(&p, &ReadOptions::default()).unwrap();
    let (train, valid) = ds.split_by_time(0.34).unwrap();
    assert_eq!(
        train.examples.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(valid.examples[0].line, 3);
    let one = write(dir.path(), "one.jsonl", &[r#"{"features": []}"#]);
    let ds = EngagementDataset::load_training(&one, &ReadOptions::default()).unwrap();
    assert!(matches!(ds.split_by_time(0.5), Err(DataError::Invalid(_))));
}

#[test]
fn in_memory_records_get_the_same_checks() {
    use closeup_data::EngagementRecord;
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "t.jsonl", &TRAIN);
    let from_file = EngagementDataset::load_training(&p, &ReadOptions::default()).unwrap();
    let recs: Vec<EngagementRecord> = TRAIN
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mem = EngagementDataset::from_records_training(&p, recs.clone(), &ReadOptions::default())
        .unwrap();
    assert_eq!(mem, from_file);
    let scored = EngagementDataset::from_records_with_vocab(
        "sim",
        recs.clone(),
        &from_file.vocab,
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(scored.examples, from_file.examples);
    let mut bad = recs.clone();
    bad[2].features.push(1.0);
    let e =
        EngagementDataset::from_records_training("sim", bad, &ReadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sim:3: field \"features\": expected 2 features (as on line 1), got 3"
    );
    let mut bad = recs;
    bad[1].labels.insert("x".into(), Some(3.0));
    let e =
        EngagementDataset::from_records_training("sim", bad, &ReadOptions::default()).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(2), Some("labels.x")));
    let e = EngagementDataset::from_records_training("sim", vec![], &ReadOptions::default())
        .unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e}");
}

#[test]
fn writing_into_a_missing_directory_names_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("no/such/dir/out.jsonl");
    let e = closeup_data::write_jsonl(&dest, [1, 2]).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&dest.display().to_string()),
        "{e}"
    );
}
