//! `closeup demo` end to end (at the test-only `--tiny` size), `closeup grid` on tiny data, and
//! `--help` of every command.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn mean_over_tasks(churn: &Value, field: &str) -> f64 {
    let tasks = churn["tasks"].as_object().unwrap();
    tasks.values().map(|t| num(&t[field])).sum::<f64>() / tasks.len() as f64
}

#[test]
fn demo_writes_a_sane_report_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let stdout = ok(closeup(&[
        "demo",
        "--tiny",
        "--seed",
        "3",
        "--threads",
        "1",
        "--out",
        s(&out),
    ]));
    assert!(stdout.contains("test mean AUC"), "{stdout}");

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for heading in ["## 1.", "## 2–3.", "## 4.", "## 5.", "## 6.", "## 7."] {
        assert!(report.contains(heading), "missing {heading}");
    }
    // Every figure the report links exists and is an SVG.
    let links: Vec<&str> = report
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|l| l.ends_with(".svg"))
        .collect();
    assert!(links.len() >= 6, "{links:?}");
    for l in links {
        let svg = std::fs::read_to_string(out.join(l)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{l}"
        );
    }

    let text = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    let m: Value = serde_json::from_str(&text).unwrap();
    // SPEC §4.3 shape at the top: the closeup model's test metrics.
    let auc = num(&m["mean_auc"]);
    assert!(auc > 0.5 && auc <= 1.0, "closeup mean AUC {auc}");
    assert!(m["tasks"]["repin"]["auc"].is_number());
    for model in m["models"].as_array().unwrap() {
        let a = num(&model["test"]["mean_auc"]);
        assert!(a > 0.5 && a <= 1.0, "{}: {a}", model["name"]);
    }
    let ceiling = num(&m["data"]["ceiling"]["mean_auc"]);
    assert!(ceiling > auc, "ceiling {ceiling} vs model {auc}");
    // Gates: each task's mean gate is a distribution over the experts.
    for row in m["gates"]["mean"].as_array().unwrap() {
        let sum: f64 = row.as_array().unwrap().iter().map(num).sum();
        assert!((sum - 1.0).abs() < 1e-4, "gate row sums to {sum}");
    }
    // Score regularization toward A reduces the churn against A.
    let b = mean_over_tasks(&m["churn"]["a_vs_b"], "mean_abs_delta");
    let b_sr = mean_over_tasks(&m["churn"]["a_vs_b_sr"], "mean_abs_delta");
    assert!(b_sr < b, "mean |Δp|: B' {b_sr} vs B {b}");
    // Blender and grid ran.
    assert!(!m["blender"]["rows"].as_array().unwrap().is_empty());
    assert_eq!(m["grid"]["rows"].as_array().unwrap().len(), 3);
    assert!(!text.contains("wall"), "no timings in metrics.json");

    // Same seed and threads: the same metrics.json, byte for byte.
    let again = dir.path().join("again");
    ok(closeup(&[
        "demo",
        "--tiny",
        "--seed",
        "3",
        "--threads",
        "1",
        "--out",
        s(&again),
    ]));
    assert_eq!(
        std::fs::read_to_string(again.join("metrics.json")).unwrap(),
        text
    );
}

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
epochs = 1
batch_size = 64
warmup_steps = 0
"#;

#[test]
fn grid_tabulates_every_point() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("tiny.toml"), TINY).unwrap();
    ok(closeup(&[
        "simulate",
        "--requests",
        "60",
        "--seed",
        "5",
        "--out",
        s(&p("w.jsonl")),
    ]));
    let table = ok(closeup(&[
        "grid",
        "--train",
        s(&p("w.jsonl")),
        "--config",
        s(&p("tiny.toml")),
        "--experts",
        "1,2",
        "--expert-hidden",
        "8;16,16",
        "--d-model",
        "8",
        "--threads",
        "1",
        "--out",
        s(&p("grid.json")),
    ]));
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| ")).count(),
        5,
        "{table}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(p("grid.json")).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["point"]["experts"], 2);
    assert_eq!(
        rows[3]["point"]["expert_hidden"],
        serde_json::json!([16, 16])
    );
    for r in rows {
        let a = num(&r["valid"]["mean_auc"]);
        assert!((0.0..=1.0).contains(&a));
    }

    // Bad usage (exit 2) and a runtime error (exit 1, one line) write nothing.
    let bad = closeup(&["grid", "--train", s(&p("w.jsonl")), "--experts", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = closeup(&[
        "grid",
        "--train",
        s(&p("w.jsonl")),
        "--experts",
        "2",
        "--expert-hidden",
        "16;x",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = closeup(&[
        "grid",
        "--train",
        s(&p("missing.jsonl")),
        "--experts",
        "2",
        "--out",
        s(&p("g.md")),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    assert!(err.contains("missing.jsonl"), "{err}");
    assert!(!p("g.md").exists());
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands: [&[&str]; 15] = [
        &[],
        &["demo"],
        &["simulate"],
        &["data"],
        &["data", "movielens"],
        &["blend"],
        &["blend", "train"],
        &["blend", "score"],
        &["blend", "eval"],
        &["train"],
        &["eval"],
        &["score"],
        &["churn"],
        &["gates"],
        &["grid"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let o = closeup(&args);
        assert_eq!(o.status.code(), Some(0), "{cmd:?}");
        let text = String::from_utf8(o.stdout).unwrap();
        let leaf = !matches!(cmd, [] | ["data"] | ["blend"]);
        if leaf {
            assert!(
                text.contains("Example"),
                "{cmd:?} --help has no example:\n{text}"
            );
        }
    }
    // No subcommand is bad usage.
    assert_eq!(closeup(&[]).status.code(), Some(2));
}
