//! Engagement-log parse throughput (MB/s) on a generated 20k-line file.

use closeup_data::{
    EngagementDataset, EngagementRecord, HistoryEntry, ReadOptions, read_engagement_log,
    write_engagement_log,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

const ACTIONS: [&str; 6] = ["repin", "click", "closeup", "long_click", "hide", "share"];
const TASKS: [&str; 4] = ["repin", "click", "closeup", "long_click"];

/// 20k impressions with realistic shapes: ~50 history entries, 32 dense features, 4 tasks.
fn generate(path: &std::path::Path) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let records: Vec<EngagementRecord> = (0..20_000)
        .map(|i| {
            let n_hist = rng.random_range(0..100);
            let history = (0..n_hist)
                .map(|_| HistoryEntry {
                    pin: rng.random_range(0..1_000_000),
                    action: ACTIONS[rng.random_range(0..ACTIONS.len())].to_string(),
                    ts: Some(1_700_000_000 + rng.random_range(0..100_000)),
                })
                .collect();
            let labels: BTreeMap<String, Option<f64>> = TASKS
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        Some(f64::from(u8::from(rng.random_bool(0.2)))),
                    )
                })
                .collect();
            let old: BTreeMap<String, Option<f64>> = TASKS
                .iter()
                .map(|t| (t.to_string(), Some(rng.random::<f64>())))
                .collect();
            EngagementRecord {
                user: Some(rng.random_range(0..10_000)),
                ts: Some(1_700_000_000 + i),
                candidate: Some(rng.random_range(0..1_000_000)),
                history,
                features: (0..32).map(|_| rng.random_range(-3.0..3.0)).collect(),
                labels,
                weight: Some(1.0),
                old_scores: Some(old),
                ..Default::default()
            }
        })
        .collect();
    write_engagement_log(path, &records).expect("write bench log");
}

fn bench_parse(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.jsonl");
    generate(&path);
    let bytes = std::fs::metadata(&path).expect("metadata").len();
    let mut group = c.benchmark_group("engagement_log");
    group.throughput(Throughput::Bytes(bytes));
    group.sample_size(10);
    group.bench_function("read_validate_20k", |b| {
        b.iter(|| read_engagement_log(&path).expect("parse").len())
    });
    group.bench_function("load_encode_20k", |b| {
        b.iter(|| {
            EngagementDataset::load_training(&path, &ReadOptions::default())
                .expect("load")
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
