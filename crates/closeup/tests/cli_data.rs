//! The `simulate` and `data` commands, run as a user runs them.

use closeup_data::{EngagementDataset, ReadOptions, read_blender_log};
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

#[test]
fn simulate_each_kind_writes_valid_logs() {
    let dir = tempfile::tempdir().unwrap();
    let eng = dir.path().join("eng.jsonl");
    let o = closeup(&[
        "simulate",
        "--requests",
        "40",
        "--seed",
        "3",
        "--out",
        eng.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Bayes-ceiling AUC"));
    let ds = EngagementDataset::load_training(&eng, &ReadOptions::default()).unwrap();
    assert_eq!(
        ds.vocab.tasks(),
        ["repin", "click", "closeup", "long_click"]
    );
    assert!(ds.len() >= 40);

    // Same seed → same bytes; the test split is a strict subset.
    let again = dir.path().join("again.jsonl");
    closeup(&[
        "simulate",
        "--requests",
        "40",
        "--seed",
        "3",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&eng).unwrap(), std::fs::read(&again).unwrap());
    let test = dir.path().join("test.jsonl");
    let o = closeup(&[
        "simulate",
        "--requests",
        "40",
        "--seed",
        "3",
        "--split",
        "test",
        "--out",
        test.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n_test = std::fs::read_to_string(&test).unwrap().lines().count();
    assert!(n_test > 0 && n_test < ds.len());

    let bl = dir.path().join("blender.jsonl");
    let o = closeup(&[
        "simulate",
        "--kind",
        "blender",
        "--requests",
        "50",
        "--out",
        bl.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = read_blender_log(&bl, &Default::default()).unwrap();
    assert_eq!(log.lines.len(), 50);

    let mm = dir.path().join("mmoe.jsonl");
    let o = closeup(&[
        "simulate",
        "--kind",
        "mmoe-synthetic",
        "--requests",
        "30",
        "--correlation",
        "0.9",
        "--out",
        mm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ds = EngagementDataset::load_training(&mm, &ReadOptions::default()).unwrap();
    assert_eq!(ds.len(), 30);
}

#[test]
fn simulate_config_file_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("world.toml");
    std::fs::write(&cfg, "num_requests = 12\ncandidates_per_request = 3\n").unwrap();
    let out = dir.path().join("w.jsonl");
    let o = closeup(&[
        "simulate",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 36);

    // Bad usage: exit code 2. Bad config or values: exit code 1 with one readable line.
    assert_eq!(
        closeup(&["simulate", "--kind", "nope", "--out", "x"])
            .status
            .code(),
        Some(2)
    );
    std::fs::write(&cfg, "num_requests = \"many\"\n").unwrap();
    let o = closeup(&[
        "simulate",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: ") && stderr(&o).contains("world.toml"),
        "{}",
        stderr(&o)
    );
    let o = closeup(&[
        "simulate",
        "--kind",
        "mmoe-synthetic",
        "--correlation",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--correlation"));
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn movielens_conversion_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ratings = dir.path().join("ratings.csv");
    write(
        &ratings,
        "userId,movieId,rating,timestamp\n1,10,5.0,100\n1,11,2.0,200\n1,12,4.0,300\n2,10,4.5,150\n2,12,1.0,250\n",
    );
    let tags = dir.path().join("tags.csv");
    write(
        &tags,
        "userId,movieId,tag,timestamp\n1,12,\"funny, dark\",310\n",
    );
    let out = dir.path().join("ml.jsonl");
    let o = closeup(&[
        "data",
        "movielens",
        "--ratings",
        ratings.to_str().unwrap(),
        "--tags",
        tags.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ds = EngagementDataset::load_training(&out, &ReadOptions::default()).unwrap();
    assert!(ds.vocab.tasks().contains(&"like".to_string()));
    assert!(ds.len() >= 5);

    // A missing file and a malformed line are errors naming the file (and the line).
    let o = closeup(&[
        "data",
        "movielens",
        "--ratings",
        "/no/such/ratings.csv",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/no/such/ratings.csv"));
    write(
        &ratings,
        "userId,movieId,rating,timestamp\n1,10,5.0,100\n1,eleven,2.0,200\n",
    );
    let before = std::fs::read(&out).unwrap();
    let o = closeup(&[
        "data",
        "movielens",
        "--ratings",
        ratings.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("ratings.csv:3"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "a failed run leaves the old output intact"
    );
}
