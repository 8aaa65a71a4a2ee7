//! `closeup train`, `eval`, `score`, `churn` and `gates`, run as a user runs them, on tiny data
//! with a tiny model configuration.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small model so each run takes well under a second.
const TINY: &str = r#"
[model]
architecture = "mmoe"
[model.sequence]
seq_len = 8
pin_buckets = 512
d_model = 8
layers = 1
heads = 2
ffn_hidden = 16
[model.mmoe]
num_experts = 3
expert_hidden = [16]
tower_hidden = [8]
[train]
epochs = 2
batch_size = 64
warmup_steps = 0
"#;

fn closeup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_closeup"))
        .args(args)
        .output()
        .expect("the closeup binary runs")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn failed(o: Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(
        err.trim_end()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "{err}"
    );
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tiny.toml"), TINY).unwrap();
        let f = Fixture { dir };
        ok(closeup(&[
            "simulate",
            "--requests",
            "60",
            "--seed",
            "5",
            "--out",
            s(&f.path("world.jsonl")),
        ]));
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn train(&self, out: &str, extra: &[&str]) -> Output {
        let (data, cfg, out) = (
            self.path("world.jsonl"),
            self.path("tiny.toml"),
            self.path(out),
        );
        let mut args = vec!["train", "--train", s(&data), "--out", s(&out)];
        args.extend(["--config", s(&cfg), "--threads", "1"]);
        args.extend_from_slice(extra);
        closeup(&args)
    }
}

#[test]
fn train_writes_the_three_files_deterministically() {
    let f = Fixture::new();
    let table = ok(f.train("m1", &["--seed", "3"]));
    assert!(table.contains("repin") && table.contains("mean"), "{table}");
    ok(f.train("m2", &["--seed", "3"]));
    for file in ["model.bin", "metrics.json", "config.toml"] {
        let a = std::fs::read(f.path("m1").join(file)).unwrap();
        let b = std::fs::read(f.path("m2").join(file)).unwrap();
        assert!(a == b, "{file} differs between two runs with the same seed");
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.path("m1/metrics.json")).unwrap()).unwrap();
    assert!(m["tasks"]["repin"]["auc"].is_number(), "{m}");
    assert!(m["tasks"]["click"]["n"].as_u64().unwrap() > 0);
    assert!(m["mean_auc"].is_number());
    assert_eq!(m["history"].as_array().unwrap().len(), 2);
    let cfg = std::fs::read_to_string(f.path("m1/config.toml")).unwrap();
    assert!(
        cfg.contains("seed = 3") && cfg.contains("num_experts = 3"),
        "{cfg}"
    );
    // The resolved config trains again as given.
    let again = closeup(&[
        "train",
        "--train",
        s(&f.path("world.jsonl")),
        "--out",
        s(&f.path("m3")),
        "--config",
        s(&f.path("m1/config.toml")),
        "--threads",
        "1",
    ]);
    ok(again);
    assert_eq!(
        std::fs::read(f.path("m1/model.bin")).unwrap(),
        std::fs::read(f.path("m3/model.bin")).unwrap()
    );
}

#[test]
fn eval_score_churn_and_gates() {
    let f = Fixture::new();
    ok(f.train("a", &["--seed", "1"]));
    ok(f.train("b", &["--seed", "2", "--model", "mmoe", "--experts", "2"]));
    let data = f.path("world.jsonl");
    let table = ok(closeup(&[
        "eval",
        "--model",
        s(&f.path("a")),
        "--data",
        s(&data),
    ]));
    assert!(
        table.contains("AUC") && table.contains("long_click"),
        "{table}"
    );
    let json = ok(closeup(&[
        "eval",
        "--model",
        s(&f.path("a")),
        "--data",
        s(&data),
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(m["tasks"]["closeup"]["auc"].as_f64().unwrap() > 0.0);

    let scores = f.path("scores.jsonl");
    ok(closeup(&[
        "score",
        "--model",
        s(&f.path("a")),
        "--data",
        s(&data),
        "--out",
        s(&scores),
    ]));
    let lines: Vec<String> = std::fs::read_to_string(&scores)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let inputs = std::fs::read_to_string(&data).unwrap().lines().count();
    assert_eq!(lines.len(), inputs);
    assert!(
        lines[0].starts_with(r#"{"scores":{"repin":"#),
        "{}",
        lines[0]
    );
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    let p = v["scores"]["long_click"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));

    let churn = ok(closeup(&[
        "churn",
        "--a",
        s(&f.path("a")),
        "--b",
        s(&f.path("b")),
        "--data",
        s(&data),
    ]));
    assert!(
        churn.contains("top-3 flips") && churn.contains("Kendall"),
        "{churn}"
    );
    let cj = ok(closeup(&[
        "churn",
        "--a",
        s(&f.path("a")),
        "--b",
        s(&f.path("a")),
        "--data",
        s(&data),
        "--json",
        "--k",
        "2",
    ]));
    let c: serde_json::Value = serde_json::from_str(&cj).unwrap();
    assert_eq!(c["tasks"]["repin"]["mean_abs_delta"].as_f64(), Some(0.0));
    assert_eq!(c["tasks"]["repin"]["kendall_tau"].as_f64(), Some(1.0));

    let svg = f.path("gates.svg");
    let gates = ok(closeup(&[
        "gates",
        "--model",
        s(&f.path("a")),
        "--data",
        s(&data),
        "--out",
        s(&svg),
    ]));
    let rows: Vec<&str> = gates.lines().collect();
    assert_eq!(rows.len(), 5, "{gates}");
    assert!(rows[0].contains("e2"));
    let weights: f64 = rows[1]
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<f64>().unwrap())
        .sum();
    assert!(
        (weights - 1.0).abs() < 0.01,
        "gate weights sum to 1: {}",
        rows[1]
    );
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
}

#[test]
fn score_regularization_with_a_teacher_and_its_errors() {
    let f = Fixture::new();
    ok(f.train("teacher", &["--seed", "1"]));
    ok(f.train(
        "student",
        &[
            "--seed",
            "2",
            "--score-reg",
            "5",
            "--teacher",
            s(&f.path("teacher")),
        ],
    ));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.path("student/metrics.json")).unwrap()).unwrap();
    assert!(
        m["history"][0]["score_reg_loss"].as_f64().unwrap() > 0.0,
        "{m}"
    );
    // λ without old scores or a teacher.
    let err = failed(f.train("x", &["--score-reg", "1"]));
    assert!(err.contains("--teacher"), "{err}");
    assert!(!f.path("x").exists());
    // A teacher that is not a model.
    std::fs::create_dir(f.path("empty")).unwrap();
    let err = failed(f.train("y", &["--score-reg", "1", "--teacher", s(&f.path("empty"))]));
    assert!(err.contains("model.bin"), "{err}");
}

#[test]
fn bad_input_fails_before_anything_is_written() {
    let f = Fixture::new();
    ok(f.train("m", &[]));
    let before = std::fs::read(f.path("m/model.bin")).unwrap();
    let metrics_before = std::fs::read(f.path("m/metrics.json")).unwrap();
    let bad = f.path("bad.jsonl");
    let mut text = std::fs::read_to_string(f.path("world.jsonl")).unwrap();
    text.push_str("{\"features\": [], \"labels\": {\"click\": 2}}\n");
    let line = text.lines().count();
    std::fs::write(&bad, text).unwrap();
    let o = closeup(&[
        "train",
        "--train",
        s(&bad),
        "--out",
        s(&f.path("m")),
        "--config",
        s(&f.path("tiny.toml")),
    ]);
    let err = failed(o);
    assert!(
        err.contains(&format!("bad.jsonl:{line}:")) && err.contains("labels.click"),
        "{err}"
    );
    assert_eq!(std::fs::read(f.path("m/model.bin")).unwrap(), before);
    assert_eq!(
        std::fs::read(f.path("m/metrics.json")).unwrap(),
        metrics_before
    );

    // An absurd learning rate diverges: a one-line error naming epoch and step, model.bin kept.
    let err = failed(f.train("m", &["--lr", "1e30"]));
    assert!(err.contains("diverged at epoch 1, step"), "{err}");
    assert_eq!(std::fs::read(f.path("m/model.bin")).unwrap(), before);
    assert_eq!(
        std::fs::read(f.path("m/metrics.json")).unwrap(),
        metrics_before
    );

    // Scoring a file with another feature width names the file and line.
    let narrow = f.path("narrow.jsonl");
    std::fs::write(&narrow, "{\"features\": [1.0], \"labels\": {}}\n").unwrap();
    let err = failed(closeup(&[
        "score",
        "--model",
        s(&f.path("m")),
        "--data",
        s(&narrow),
        "--out",
        s(&f.path("o.jsonl")),
    ]));
    assert!(err.contains("narrow.jsonl:1"), "{err}");
    assert!(!f.path("o.jsonl").exists());

    // Unknown config keys, bad flags and missing models are one-line errors too.
    std::fs::write(f.path("typo.toml"), "[train]\nepoch = 3\n").unwrap();
    let o = closeup(&[
        "train",
        "--train",
        s(&f.path("world.jsonl")),
        "--out",
        s(&f.path("t")),
        "--config",
        s(&f.path("typo.toml")),
    ]);
    assert!(failed(o).contains("epoch"));
    assert!(failed(f.train("t", &["--model", "nope"])).contains("nope"));
    assert!(failed(f.train("t", &["--epochs", "0"])).contains("epochs"));
    let err = failed(closeup(&[
        "eval",
        "--model",
        s(&f.path("nowhere")),
        "--data",
        s(&narrow),
    ]));
    assert!(err.contains("nowhere"), "{err}");
    assert!(!f.path("t").exists());
}
