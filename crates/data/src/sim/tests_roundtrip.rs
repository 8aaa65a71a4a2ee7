//! The simulators' output is a valid log: written with the validating writers and read back
//! with the strict readers, it keeps its contents.

use super::*;
use crate::EngagementDataset;
use crate::blender_log::{BlenderReadOptions, read_blender_log};
use crate::dataset::ReadOptions;
use crate::writer::{write_blender_log, write_engagement_log};

#[test]
fn engagement_log_roundtrips_through_the_reader() {
    let cfg = EngagementConfig {
        num_users: 40,
        num_pins: 300,
        num_requests: 120,
        history_len: 20,
        ..Default::default()
    };
    let sim = simulate_engagement(&cfg, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.jsonl");
    assert_eq!(
        write_engagement_log(&path, &sim.train).unwrap(),
        sim.train.len()
    );
    let ds = EngagementDataset::load_training(&path, &ReadOptions::default()).unwrap();
    assert_eq!(ds.len(), sim.train.len());
    assert_eq!(ds.vocab.tasks(), ENGAGEMENT_TASKS);
    for action in [
        "repin",
        "click",
        "closeup",
        "long_click",
        "hide",
        "impression",
    ] {
        assert!(
            ds.vocab.action_id(action) >= 2,
            "action {action} missing from the vocabulary"
        );
    }
    assert!(!ds.meta.is_dense_only());
    // Labels survive: per task (vocabulary order = ENGAGEMENT_TASKS) every line is labelled
    // and the positives agree.
    let counts = ds.label_counts();
    for (k, task) in ENGAGEMENT_TASKS.iter().enumerate() {
        let pos = sim
            .train
            .iter()
            .filter(|r| r.labels[*task] == Some(1.0))
            .count();
        assert_eq!(counts[k], (sim.train.len(), pos), "task {task}");
    }
}

#[test]
fn mmoe_synthetic_is_a_dense_only_log() {
    let sim = simulate_mmoe_synthetic(
        &MmoeSyntheticConfig {
            num_examples: 50,
            dim: 6,
            ..Default::default()
        },
        2,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mmoe.jsonl");
    write_engagement_log(&path, &sim.records).unwrap();
    let ds = EngagementDataset::load_training(&path, &ReadOptions::default()).unwrap();
    assert!(ds.meta.is_dense_only());
    assert_eq!(ds.vocab.tasks(), MMOE_TASKS);
    assert_eq!(ds.len(), 50);
}

#[test]
fn blender_log_roundtrips_through_the_reader() {
    let sim = simulate_blender(
        &BlenderConfig {
            num_logged_requests: 80,
            num_eval_requests: 1,
            ..Default::default()
        },
        3,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blend.jsonl");
    write_blender_log(&path, &sim.logs).unwrap();
    let log = read_blender_log(
        &path,
        &BlenderReadOptions {
            num_objectives: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(log.len(), 80);
    assert_eq!(log.feature_width(), sim.world.config.num_features);
    assert_eq!(
        log.feedback,
        sim.logs
            .iter()
            .map(|l| l.feedback.clone())
            .collect::<Vec<_>>()
    );
    assert!((f64::from(log.blend[[5, 2]]) - sim.logs[5].blend[2]).abs() < 1e-6);
}
