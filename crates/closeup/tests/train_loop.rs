//! The trainer on a small dense model: learning, masked tasks, score regularization,
//! determinism and the divergence guard.

mod common;

use closeup::autograd::{Checkpoint, Parameterized};
use closeup::train::{
    LrDecay, PredictOptions, Teacher, TrainConfig, TrainError, Trainer, VocabBridge, churn, predict,
};
use common::{DenseMtl, dataset, learnable_records};

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 12,
        batch_size: 32,
        lr: 0.02,
        warmup_steps: 0,
        decay: LrDecay::None,
        patience: 0,
        ..TrainConfig::default()
    }
}

#[test]
fn learnable_data_reaches_auc_near_one_and_best_weights_are_kept() {
    let ds = dataset(learnable_records(600, 1, false));
    let (train, valid) = ds.split_by_time(0.25).unwrap();
    let mut model = DenseMtl::new(ds.vocab.tasks(), 3, 7);
    let mut saved = Vec::new();
    let report = Trainer::new(config(), 0)
        .unwrap()
        .fit(&mut model, &train, &valid, &mut |m, rec| {
            saved.push((rec.epoch, Checkpoint::from_module(m).to_bytes()));
            Ok(())
        })
        .unwrap();
    let auc = report.mean_auc().unwrap();
    assert!(auc > 0.97, "mean validation AUC {auc}");
    assert_eq!(report.history.len(), 12);
    assert_eq!(report.valid_examples, 150);
    // The restored weights are those of the last saved (best) epoch.
    let (best_epoch, bytes) = saved.last().unwrap();
    assert_eq!(*best_epoch, report.best_epoch);
    assert_eq!(&Checkpoint::from_module(&model).to_bytes(), bytes);
    let best = &report.history[report.best_epoch - 1];
    assert_eq!(best.valid_mean_auc, report.mean_auc());
    assert!(
        report
            .history
            .iter()
            .all(|h| h.valid_mean_auc <= report.mean_auc())
    );
    // metrics.json has the SPEC shape.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert!(json["tasks"]["a"]["auc"].as_f64().unwrap() > 0.97);
    assert_eq!(json["tasks"]["b"]["n"], 150);
    assert!(json["mean_auc"].is_number());
}

#[test]
fn a_fully_masked_task_does_not_move_its_tower() {
    let ds = dataset(learnable_records(64, 2, true));
    assert_eq!(ds.vocab.tasks(), ["a", "b"]);
    let mut model = DenseMtl::new(ds.vocab.tasks(), 3, 3);
    let before = Checkpoint::from_module(&model);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 64,
        ..config()
    };
    Trainer::new(cfg, 0)
        .unwrap()
        .fit(&mut model, &ds, &ds, &mut |_, _| Ok(()))
        .unwrap();
    for (name, p) in model.named_params() {
        let moved = before.tensor(&name).unwrap() != *p.value();
        assert_eq!(moved, !name.starts_with("tower1"), "{name}");
    }
}

#[test]
fn large_score_regularization_pulls_the_student_to_the_teacher() {
    let ds = dataset(learnable_records(400, 3, false));
    let teacher = DenseMtl::new(ds.vocab.tasks(), 3, 99); // an untrained, different model
    let opts = PredictOptions {
        batch_size: 128,
        seq_len: 0,
    };
    let teacher_p = predict(&teacher, &ds, opts, None).scores;
    let gap = |lambda: f32| {
        let mut student = DenseMtl::new(ds.vocab.tasks(), 3, 5);
        let cfg = TrainConfig {
            epochs: 8,
            score_reg: lambda,
            ..config()
        };
        let bridge = VocabBridge::new(&ds.vocab, &ds.vocab);
        let t = Teacher::new(&teacher, bridge, 0).unwrap();
        let report = Trainer::new(cfg, 0)
            .unwrap()
            .with_teacher(t)
            .fit(&mut student, &ds, &ds, &mut |_, _| Ok(()))
            .unwrap();
        assert_eq!(report.history[0].score_reg_loss.is_some(), lambda > 0.0);
        let p = predict(&student, &ds, opts, None).scores;
        churn(&ds, &teacher_p, &p, 1).tasks[0]
            .1
            .mean_abs_delta
            .unwrap()
    };
    let (free, pulled) = (gap(0.0), gap(1000.0));
    assert!(free > 0.2, "unregularized student differs: {free}");
    assert!(
        pulled < 0.05,
        "regularized student follows the teacher: {pulled}"
    );
}

#[test]
fn logged_old_scores_regularize_and_are_required() {
    let mut records = learnable_records(200, 4, false);
    for r in &mut records {
        r.old_scores = Some([("a".to_string(), Some(0.3)), ("b".to_string(), None)].into());
    }
    let ds = dataset(records);
    let mut model = DenseMtl::new(ds.vocab.tasks(), 3, 1);
    let cfg = TrainConfig {
        score_reg: 1000.0,
        epochs: 6,
        ..config()
    };
    Trainer::new(cfg.clone(), 0)
        .unwrap()
        .fit(&mut model, &ds, &ds, &mut |_, _| Ok(()))
        .unwrap();
    let p = predict(&model, &ds, PredictOptions::default(), None).scores;
    let mean_a = p.column(0).mean().unwrap();
    assert!(
        (mean_a - 0.3).abs() < 0.05,
        "task a pulled to 0.3: {mean_a}"
    );
    // Without old scores or a teacher, λ > 0 is a configuration error.
    let plain = dataset(learnable_records(50, 4, false));
    let err = Trainer::new(cfg, 0)
        .unwrap()
        .fit(&mut model, &plain, &plain, &mut |_, _| Ok(()))
        .unwrap_err();
    assert!(matches!(err, TrainError::Config(_)), "{err}");
}

#[test]
fn same_seed_same_bytes() {
    let ds = dataset(learnable_records(300, 5, false));
    let (train, valid) = ds.split_by_time(0.2).unwrap();
    let run = || {
        let mut model = DenseMtl::new(ds.vocab.tasks(), 3, 11);
        let cfg = TrainConfig {
            epochs: 3,
            seed: 42,
            ..config()
        };
        let report = Trainer::new(cfg, 0)
            .unwrap()
            .fit(&mut model, &train, &valid, &mut |_, _| Ok(()))
            .unwrap();
        (Checkpoint::from_module(&model).to_bytes(), report.to_json())
    };
    assert_eq!(run(), run());
}

#[test]
fn divergence_is_an_error_naming_epoch_and_step_and_never_saved() {
    let ds = dataset(learnable_records(200, 6, false));
    let mut model = DenseMtl::new(ds.vocab.tasks(), 3, 1);
    let cfg = TrainConfig {
        lr: 1e30,
        max_grad_norm: 0.0,
        ..config()
    };
    let mut saves = 0;
    let err = Trainer::new(cfg, 0)
        .unwrap()
        .fit(&mut model, &ds, &ds, &mut |m, _| {
            assert!(
                m.named_params()
                    .iter()
                    .all(|(_, p)| p.value().iter().all(|x| x.is_finite()))
            );
            saves += 1;
            Ok(())
        })
        .unwrap_err();
    let TrainError::Diverged { epoch, step, .. } = &err else {
        panic!("expected divergence, got {err}");
    };
    assert!(*epoch >= 1 && *step >= 1);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("epoch {epoch}, step {step}")),
        "{msg}"
    );
}

#[test]
fn task_mismatch_is_a_config_error() {
    let ds = dataset(learnable_records(20, 7, false));
    let mut model = DenseMtl::new(&["x".to_string()], 3, 1);
    let err = Trainer::new(config(), 0)
        .unwrap()
        .fit(&mut model, &ds, &ds, &mut |_, _| Ok(()))
        .unwrap_err();
    assert!(err.to_string().contains("tasks differ"), "{err}");
}

#[test]
fn metrics_over_a_dataset_match_hand_computed_auc_with_ties_and_masks() {
    // Task a: labels 1, 0, 1, 0, 1 with scores 0.5, 0.5, 0.9, 0.1, 0.2.
    // Pairs (pos, neg): (0.5,0.5)=½, (0.5,0.1)=1, (0.9,·)=1+1, (0.2,0.5)=0, (0.2,0.1)=1 → 4.5/6.
    // Task b: the last two labels are missing (null), so only 1, 0, 1 count: AUC = 1.
    let rows = [
        (1, Some(1)),
        (0, Some(0)),
        (1, Some(1)),
        (0, None),
        (1, None),
    ];
    let records = rows.iter().map(|(a, b)| {
        serde_json::from_value(serde_json::json!({"features": [], "labels": {"a": a, "b": b}}))
            .unwrap()
    });
    let ds = dataset(records.collect());
    let scores = ndarray::array![
        [0.5f32, 0.5],
        [0.5, 0.3],
        [0.9, 0.9],
        [0.1, 0.99],
        [0.2, 0.0]
    ];
    let report = closeup::train::metrics(&ds, &scores, None);
    let a = report.task("a").unwrap();
    assert!((a.auc.unwrap() - 4.5 / 6.0).abs() < 1e-12);
    assert_eq!((a.n, a.positives), (5, 3));
    let b = report.task("b").unwrap();
    assert_eq!((b.auc, b.n, b.positives), (Some(1.0), 3, 2));
    assert!((report.mean_auc.unwrap() - (4.5 / 6.0 + 1.0) / 2.0).abs() < 1e-12);
}
