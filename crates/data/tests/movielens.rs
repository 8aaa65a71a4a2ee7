//! MovieLens conversion on a small hand-checked fixture.

use closeup_data::movielens::{MovieLensOptions, convert_movielens, read_ratings, read_tags};
use closeup_data::{EngagementDataset, ReadOptions, read_engagement_log};
use std::path::{Path, PathBuf};

const RATINGS: &str = "userId,movieId,rating,timestamp\n1,10,5.0,100\n1,20,3.0,200\n1,30,4.0,200\n2,10,2.0,150\n2,40,4.5,300\n";
const TAGS: &str = "userId,movieId,tag,timestamp\n1,20,\"funny, really\",150\n1,20,again,160\n2,50,\"say \"\"hi\"\"\",50\n";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn converts_the_fixture_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let r = write(
        dir.path(),
        "ratings.csv",
        &format!("{RATINGS}3,20,4.0,250\n"),
    );
    let t = write(dir.path(), "tags.csv", TAGS);
    let out = dir.path().join("ml.jsonl");
    let opts = MovieLensOptions {
        max_history: 100,
        neg_per_pos: 2,
        seed: 3,
    };
    let stats = convert_movielens(&r, Some(&t), &out, &opts).unwrap();
    assert_eq!(
        (
            stats.users,
            stats.movies,
            stats.ratings,
            stats.tags,
            stats.tagged_pairs
        ),
        (3, 4, 6, 3, 2)
    );
    // Movies first rated at: 10 -> 100, 20 -> 200, 30 -> 200, 40 -> 300. Negatives come only
    // from movies known strictly before the impression and never rated/tagged by the user:
    // (1, 10, t100): none known; (1, 30, t200): only 10, rated by user 1; (3, 20, t250):
    // 10 and 30; (2, 40, t300): 20 and 30 (user 2 rated 10 and 40; 50 is only tagged).
    assert_eq!((stats.impressions, stats.negatives), (10, 4));
    assert_eq!(stats.positives["like"], 4);
    assert_eq!(stats.positives["love"], 1);
    assert_eq!(stats.positives["dislike"], 1);
    assert_eq!(stats.positives["tagged"], 1);
    assert_eq!(stats.actions["tag"], 2);
    assert_eq!(stats.actions["love"], 1);

    let recs = read_engagement_log(&out).unwrap();
    let cands: Vec<(u64, u64, i64)> = recs
        .iter()
        .map(|(_, r)| (r.user.unwrap(), r.candidate.unwrap(), r.ts.unwrap()))
        .collect();
    assert_eq!(
        cands[..5],
        [
            (1, 10, 100),
            (2, 10, 150),
            (1, 20, 200),
            (1, 30, 200),
            (3, 20, 250)
        ]
    );
    let negs = |a: usize, b: usize| {
        let mut v: Vec<u64> = cands[a..b].iter().map(|c| c.1).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(negs(5, 7), [10, 30]);
    assert!(cands[5..7].iter().all(|c| (c.0, c.2) == (3, 250)));
    assert_eq!(cands[7], (2, 40, 300));
    assert_eq!(negs(8, 10), [20, 30]);

    let hist = |i: usize| -> Vec<(u64, String)> {
        recs[i]
            .1
            .history
            .iter()
            .map(|h| (h.pin, h.action.clone()))
            .collect()
    };
    assert!(hist(0).is_empty());
    assert_eq!(hist(1), [(50, "tag".to_string())]);
    // Strictly earlier only: the rating of movie 30 in the same second is not in line 3's history.
    assert_eq!(hist(2), [(10, "love".to_string()), (20, "tag".to_string())]);
    assert_eq!(hist(3), hist(2));
    assert_eq!(
        hist(7),
        [(50, "tag".to_string()), (10, "dislike".to_string())]
    );
    assert_eq!(hist(8), hist(7));

    let label = |i: usize, t: &str| recs[i].1.labels[t];
    assert_eq!(
        (label(0, "like"), label(0, "love"), label(0, "dislike")),
        (Some(1.0), Some(1.0), Some(0.0))
    );
    assert_eq!(label(1, "dislike"), Some(1.0));
    assert_eq!(label(2, "tagged"), Some(1.0));
    assert_eq!(label(4, "like"), Some(1.0));
    assert!(recs[5].1.labels.values().all(|v| *v == Some(0.0)));
    assert!(recs[9].1.labels.values().all(|v| *v == Some(0.0)));

    // Features: no information from the impression's own second or later.
    let f = |i: usize| recs[i].1.features.clone();
    assert_eq!(f(0), [0.0; 5]);
    let ln2 = 2.0f64.ln();
    assert_eq!(f(1), [0.0, 0.0, ln2, 1.0, (100.0f64 / 3600.0).ln_1p()]);
    // User 3 at t250 (no earlier actions); movie 20 was rated 3.0 once before.
    assert_eq!(f(4), [0.0, 0.0, ln2, 0.0, 0.0]);
    // Line 4 (user 1, movie 30, t200): user has one earlier rating (5.0); movie 30 none.
    assert_eq!(f(3)[..4], [ln2, 1.0, 0.0, 0.0]);

    // The log trains: the default loader accepts it.
    let ds = EngagementDataset::load_training(&out, &ReadOptions::default()).unwrap();
    assert_eq!(ds.vocab.tasks(), ["dislike", "like", "love", "tagged"]);
    assert!(ds.meta.has_history && ds.meta.has_candidate);

    // Same seed, same bytes.
    let out2 = dir.path().join("ml2.jsonl");
    convert_movielens(&r, Some(&t), &out2, &opts).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
}

#[test]
fn without_tags_and_with_truncated_history() {
    let dir = tempfile::tempdir().unwrap();
    let r = write(dir.path(), "ratings.csv", RATINGS);
    let out = dir.path().join("ml.jsonl");
    let opts = MovieLensOptions {
        max_history: 1,
        neg_per_pos: 0,
        seed: 0,
    };
    let stats = convert_movielens(&r, None, &out, &opts).unwrap();
    assert_eq!((stats.impressions, stats.negatives, stats.tags), (5, 0, 0));
    let recs = read_engagement_log(&out).unwrap();
    assert!(recs.iter().all(|(_, r)| !r.labels.contains_key("tagged")));
    assert!(recs.iter().all(|(_, r)| r.history.len() <= 1));
    assert_eq!(recs[4].1.history[0].pin, 10); // user 2's most recent earlier action
}

#[test]
fn csv_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "r.csv",
        "userId,movieId,rating,timestamp\n1,10,5.0,100\n1,abc,4.0,100\n",
    );
    let e = read_ratings(&bad).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(3), Some("movieId")), "{e}");
    assert!(
        e.to_string()
            .contains("r.csv:3: field \"movieId\": cannot parse \"abc\""),
        "{e}"
    );
    let range = write(
        dir.path(),
        "r2.csv",
        "userId,movieId,rating,timestamp\n1,10,7,100\n",
    );
    let e = read_ratings(&range).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(2), Some("rating")), "{e}");
    let short = write(
        dir.path(),
        "r3.csv",
        "userId,movieId,rating,timestamp\n1,10,4.0\n",
    );
    let e = read_ratings(&short).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(2), Some("timestamp")), "{e}");
    let noheader = write(dir.path(), "r4.csv", "1,10,4.0,100\n");
    let e = read_ratings(&noheader).unwrap_err();
    assert_eq!((e.line(), e.field()), (Some(1), Some("header")), "{e}");
    let empty = write(dir.path(), "r5.csv", "userId,movieId,rating,timestamp\n");
    assert!(
        read_ratings(&empty)
            .unwrap_err()
            .to_string()
            .contains("empty")
    );
    let t = write(
        dir.path(),
        "t.csv",
        "userId,movieId,tag,timestamp\n1,2,\"open,5\n",
    );
    let e = read_tags(&t).unwrap_err();
    assert_eq!(e.line(), Some(2), "{e}");
    let tags = read_tags(write(dir.path(), "t2.csv", TAGS)).unwrap();
    assert_eq!(tags[0].tag, "funny, really");
    assert_eq!(tags[2].tag, "say \"hi\"");
    let out = dir.path().join("o.jsonl");
    assert!(
        convert_movielens(
            dir.path().join("nope.csv"),
            None,
            &out,
            &MovieLensOptions::default()
        )
        .is_err()
    );
    assert!(!out.exists(), "a failed conversion writes nothing");
}
