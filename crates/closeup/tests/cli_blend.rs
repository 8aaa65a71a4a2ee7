//! `closeup blend train|score|eval`, run as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

fn closeup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_closeup"))
        .args(args)
        .output()
        .expect("the closeup binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn simulate(dir: &Path, n: &str) -> std::path::PathBuf {
    let log = dir.join("log.jsonl");
    let o = closeup(&[
        "simulate",
        "--kind",
        "blender",
        "--requests",
        n,
        "--seed",
        "2",
        "--out",
        s(&log),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    log
}

#[test]
fn train_then_score_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = simulate(dir.path(), "400");
    let model = dir.path().join("blender");
    let o = closeup(&[
        "blend",
        "train",
        "--logs",
        s(&log),
        "--out",
        s(&model),
        "--prior",
        "1,0.4,0.8,0.1",
        "--lambda",
        "0.03",
        "--reward",
        "closeup=1,hide=-2",
        "--convention",
        "post",
        "--epochs",
        "3",
        "--seed",
        "5",
        "--hidden",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["model.bin", "config.toml", "metrics.json"] {
        assert!(model.join(f).exists(), "{f} missing");
    }
    let config = std::fs::read_to_string(model.join("config.toml")).unwrap();
    assert!(config.contains("convention = \"post\"") && config.contains("hidden = [8]"));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["num_requests"], 400);
    assert!(metrics["valid_loss"].is_number() && metrics["mean_reward"].is_number());

    let out = dir.path().join("weights.jsonl");
    let o = closeup(&[
        "blend",
        "score",
        "--model",
        s(&model),
        "--data",
        s(&log),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 400);
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 1, "{line}");
        let w = obj["weights"].as_array().unwrap();
        assert_eq!(w.len(), 4);
        assert!(w.iter().all(|x| x.as_f64().unwrap().is_finite()));
    }

    // Same seed, same log → the same weights.
    let again = dir.path().join("again");
    let o = closeup(&[
        "blend",
        "train",
        "--logs",
        s(&log),
        "--out",
        s(&again),
        "--prior",
        "1,0.4,0.8,0.1",
        "--lambda",
        "0.03",
        "--convention",
        "post",
        "--epochs",
        "3",
        "--seed",
        "5",
        "--hidden",
        "8",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out2 = dir.path().join("weights2.jsonl");
    closeup(&[
        "blend",
        "score",
        "--model",
        s(&again),
        "--data",
        s(&log),
        "--out",
        s(&out2),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());

    // Feature width mismatch at scoring time: a clear error, nothing written.
    let wide = dir.path().join("wide.jsonl");
    std::fs::write(&wide, "{\"features\": [1, 2, 3]}\n").unwrap();
    let bad_out = dir.path().join("bad.jsonl");
    let o = closeup(&[
        "blend",
        "score",
        "--model",
        s(&model),
        "--data",
        s(&wide),
        "--out",
        s(&bad_out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("wide.jsonl:1") && e.contains("expected 6 values"),
        "{e}"
    );
    assert!(!bad_out.exists());
    // Not a model directory.
    let o = closeup(&[
        "blend",
        "score",
        "--model",
        s(dir.path()),
        "--data",
        s(&log),
        "--out",
        s(&bad_out),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no model.bin"), "{}", stderr(&o));
}

fn train_err(dir: &Path, content: &str, extra: &[&str]) -> (String, Option<i32>) {
    let log = dir.join("bad.jsonl");
    std::fs::write(&log, content).unwrap();
    let out = dir.join("model");
    let mut args = vec![
        "blend",
        "train",
        "--logs",
        s(&log),
        "--out",
        s(&out),
        "--epochs",
        "1",
    ];
    args.extend_from_slice(extra);
    let o = closeup(&args);
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    (stderr(&o), o.status.code())
}

#[test]
fn bad_logs_give_line_numbered_errors_and_damage_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = r#"{"request": "a", "features": [0.1, 1.0], "blend": [1, 0.4, 0.8, 0.1], "feedback": ["closeup"]}"#;
    // A previous model in the output directory survives every failed run.
    let out = dir.path().join("model");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("model.bin"), b"previous").unwrap();

    let short = r#"{"features": [0.1, 1.0], "blend": [1, 0.4, 0.8], "feedback": []}"#;
    let (e, code) = train_err(dir.path(), &format!("{good}\n{short}\n"), &[]);
    assert_eq!(code, Some(1));
    assert!(
        e.contains("bad.jsonl:2") && e.contains("blend") && e.contains("expected 4"),
        "{e}"
    );

    let unknown = r#"{"features": [0.1, 1.0], "blend": [1, 0.4, 0.8, 0.1], "feedback": ["share"]}"#;
    let content = format!("{good}\n{good}\n{unknown}\n");
    let (e, code) = train_err(dir.path(), &content, &["--strict-rewards"]);
    assert_eq!(code, Some(1));
    assert!(
        e.contains("bad.jsonl:3") && e.contains("unknown event \"share\""),
        "{e}"
    );
    // Lenient (the default): the unknown event is worth 0 and training succeeds.
    let o = closeup(&[
        "blend",
        "train",
        "--logs",
        s(&dir.path().join("bad.jsonl")),
        "--out",
        s(&dir.path().join("lenient")),
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Strict with the event declared: accepted.
    let o = closeup(&[
        "blend",
        "train",
        "--logs",
        s(&dir.path().join("bad.jsonl")),
        "--out",
        s(&dir.path().join("declared")),
        "--epochs",
        "1",
        "--strict-rewards",
        "--reward",
        "share=0.5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (e, code) = train_err(dir.path(), &content, &["--lambda=-1"]);
    assert_eq!(code, Some(1));
    assert!(e.contains("lambda must be finite and >= 0"), "{e}");

    let nan = r#"{"features": [NaN, 1.0], "blend": [1, 0.4, 0.8, 0.1], "feedback": []}"#;
    let (e, code) = train_err(dir.path(), &format!("{good}\n{nan}\n"), &[]);
    assert_eq!(code, Some(1));
    assert!(e.contains("bad.jsonl:2"), "{e}");

    let (e, code) = train_err(
        dir.path(),
        &format!("{good}\n"),
        &["--objectives", "repin,click"],
    );
    assert_eq!(code, Some(1));
    assert!(e.contains("bad.jsonl:1") && e.contains("expected 2"), "{e}");

    assert_eq!(std::fs::read(out.join("model.bin")).unwrap(), b"previous");
    assert!(!out.join("config.toml").exists());

    // A foreign model file is a clear error.
    let w = dir.path().join("w.jsonl");
    let o = closeup(&[
        "blend",
        "score",
        "--model",
        s(&out),
        "--data",
        s(&dir.path().join("bad.jsonl")),
        "--out",
        s(&w),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("not a valid Closeup checkpoint"),
        "{}",
        stderr(&o)
    );

    // Bad usage is clap's exit code 2.
    let o = closeup(&["blend", "train", "--logs", "x.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
    let o = closeup(&[
        "blend",
        "train",
        "--logs",
        "x",
        "--out",
        "y",
        "--convention",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn eval_runs_the_study() {
    let o = closeup(&[
        "blend",
        "eval",
        "--quick",
        "--requests",
        "600",
        "--eval-requests",
        "200",
        "--epochs",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = &v["baselines"];
    assert!(b["production"].as_f64().unwrap() <= b["oracle"].as_f64().unwrap());
    assert_eq!(v["rows"].as_array().unwrap().len(), 6); // 2 conventions × 3 λ
    assert!(!v["sensitivity"].as_array().unwrap().is_empty());
    let o = closeup(&[
        "blend",
        "eval",
        "--quick",
        "--requests",
        "600",
        "--eval-requests",
        "200",
        "--epochs",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(md.contains("| production weights s |") && md.contains("oracle (segment known)"));
}
