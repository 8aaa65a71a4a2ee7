//! MovieLens (`ml-latest-small` layout) → engagement log (SPEC §4.1).
//!
//! Inputs: `ratings.csv` with header `userId,movieId,rating,timestamp` and optionally
//! `tags.csv` with header `userId,movieId,tag,timestamp` (extra columns are ignored; the
//! header is required; quoted fields are handled). Movies play the role of pins.
//!
//! **History actions.** Each rating is an action on the movie, typed by its value:
//! `love` (5.0), `like` (4.0–4.5), `neutral` (2.5–3.5), `dislike` (≤ 2.0). Each (user, movie)
//! pair the user tagged adds one `tag` action at the time of its first tag.
//!
//! **Impressions.** Every rating is one impression (candidate = the movie, `user`, `ts` = the
//! rating's time) whose history is the user's actions with a timestamp **strictly before**
//! the rating's (so ratings given in the same second never see each other), oldest first, at
//! most [`MovieLensOptions::max_history`] most recent ones. History entries carry no `ts`.
//!
//! **Tasks.** `like` = rating ≥ 4, `love` = rating = 5, `dislike` = rating ≤ 2, and — only
//! when `tags.csv` is given — `tagged` = the user tagged this movie (at any time).
//!
//! **Negatives.** For each impression with rating ≥ 4, [`MovieLensOptions::neg_per_pos`]
//! distinct movies are drawn uniformly (seeded ChaCha8 from [`MovieLensOptions::seed`]) from
//! the movies **known at that time** — those with at least one rating (by anyone) strictly
//! before the impression's ts, so a negative is never a movie that does not exist yet —
//! excluding movies the user ever rated or tagged. Each is written right after the positive
//! as an impression with the same user, ts and history and all labels 0. If fewer eligible
//! movies exist (early in the log), fewer are drawn.
//!
//! **Dense features** (5, all from data strictly before the impression's ts — no leakage):
//! 0. `ln(1 + user's ratings so far)`;
//! 1. `(user's mean rating so far − 3) / 2`, 0 if none;
//! 2. `ln(1 + candidate's ratings so far, by all users)` (popularity so far);
//! 3. `(candidate's mean rating so far − 3) / 2`, 0 if none;
//! 4. `ln(1 + hours since the user's previous action)`, 0 if none.
//!
//! Impressions are written in order of (ts, user, movie, file line), each positive followed by
//! its negatives; the request key (user, ts) groups them.

use crate::csv::CsvReader;
use crate::error::{DataError, Result};
use crate::record::{EngagementRecord, HistoryEntry};
use crate::writer::JsonlWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Converter options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovieLensOptions {
    /// Most recent actions kept in each impression's history.
    pub max_history: usize,
    /// Sampled negative impressions per impression with rating ≥ 4.
    pub neg_per_pos: usize,
    /// Seed of the negative sampling.
    pub seed: u64,
}

impl Default for MovieLensOptions {
    /// 100 history actions (SPEC seq_len), 1 negative per positive, seed 0.
    fn default() -> Self {
        Self {
            max_history: 100,
            neg_per_pos: 1,
            seed: 0,
        }
    }
}

/// One row of `ratings.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    /// `userId`.
    pub user: u64,
    /// `movieId`.
    pub movie: u64,
    /// `rating`, in [0, 5].
    pub rating: f64,
    /// `timestamp` (seconds).
    pub ts: i64,
    /// Line in the file.
    pub line: usize,
}

/// One row of `tags.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    /// `userId`.
    pub user: u64,
    /// `movieId`.
    pub movie: u64,
    /// `tag` text.
    pub tag: String,
    /// `timestamp` (seconds).
    pub ts: i64,
    /// Line in the file.
    pub line: usize,
}

/// What a conversion produced.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MovieLensStats {
    /// Distinct users.
    pub users: usize,
    /// Distinct movies in `ratings.csv` (the catalog).
    pub movies: usize,
    /// Rating rows.
    pub ratings: usize,
    /// Tag rows.
    pub tags: usize,
    /// Distinct tagged (user, movie) pairs.
    pub tagged_pairs: usize,
    /// Lines written (rating impressions + negatives).
    pub impressions: usize,
    /// Sampled negative impressions.
    pub negatives: usize,
    /// Positive labels per task.
    pub positives: BTreeMap<String, usize>,
    /// History actions per action type (over all users' full histories).
    pub actions: BTreeMap<String, usize>,
    /// Mean history length over written impressions.
    pub mean_history: f64,
}

/// The history action of a rating value.
pub fn rating_action(rating: f64) -> &'static str {
    if rating >= 5.0 {
        "love"
    } else if rating >= 4.0 {
        "like"
    } else if rating <= 2.0 {
        "dislike"
    } else {
        "neutral"
    }
}

/// Reads the header and returns the column index of each name in `need`.
fn header(r: &mut CsvReader, need: &[&str]) -> Result<Vec<usize>> {
    let mut fields = Vec::new();
    let Some(line) = r.next_record(&mut fields)? else {
        return Err(DataError::Empty {
            path: r.path().to_path_buf(),
        });
    };
    need.iter()
        .map(|n| {
            fields.iter().position(|f| f.trim() == *n).ok_or_else(|| {
                DataError::field_error(
                    r.path(),
                    line,
                    "header",
                    format!(
                        "missing column {n:?} (expected a header {}, got {fields:?})",
                        need.join(",")
                    ),
                )
            })
        })
        .collect()
}

fn parse<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    fields: &[String],
    col: usize,
    name: &str,
) -> Result<T> {
    let raw = fields.get(col).ok_or_else(|| {
        DataError::field_error(
            path,
            line,
            name,
            format!("missing (the line has {} fields)", fields.len()),
        )
    })?;
    raw.trim()
        .parse()
        .map_err(|_| DataError::field_error(path, line, name, format!("cannot parse {raw:?}")))
}

/// Reads `ratings.csv`.
pub fn read_ratings(path: impl AsRef<Path>) -> Result<Vec<Rating>> {
    let path = path.as_ref();
    let mut r = CsvReader::open(path)?;
    let cols = header(&mut r, &["userId", "movieId", "rating", "timestamp"])?;
    let (mut out, mut f) = (Vec::new(), Vec::new());
    while let Some(line) = r.next_record(&mut f)? {
        let rating: f64 = parse(path, line, &f, cols[2], "rating")?;
        if !(0.0..=5.0).contains(&rating) {
            return Err(DataError::field_error(
                path,
                line,
                "rating",
                format!("must be in [0, 5], got {rating}"),
            ));
        }
        out.push(Rating {
            user: parse(path, line, &f, cols[0], "userId")?,
            movie: parse(path, line, &f, cols[1], "movieId")?,
            rating,
            ts: parse(path, line, &f, cols[3], "timestamp")?,
            line,
        });
    }
    if out.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Reads `tags.csv` (a header-only file gives no tags).
pub fn read_tags(path: impl AsRef<Path>) -> Result<Vec<Tag>> {
    let path = path.as_ref();
    let mut r = CsvReader::open(path)?;
    let cols = header(&mut r, &["userId", "movieId", "tag", "timestamp"])?;
    let (mut out, mut f) = (Vec::new(), Vec::new());
    while let Some(line) = r.next_record(&mut f)? {
        out.push(Tag {
            user: parse(path, line, &f, cols[0], "userId")?,
            movie: parse(path, line, &f, cols[1], "movieId")?,
            tag: f.get(cols[2]).cloned().unwrap_or_default(),
            ts: parse(path, line, &f, cols[3], "timestamp")?,
            line,
        });
    }
    Ok(out)
}

/// Timestamps (sorted) with prefix sums of ratings: "count and mean before t" in O(log n).
#[derive(Default)]
struct Timeline {
    ts: Vec<i64>,
    prefix: Vec<f64>,
}

impl Timeline {
    fn build(mut pts: Vec<(i64, f64)>) -> Self {
        pts.sort_by_key(|p| p.0);
        let mut prefix = Vec::with_capacity(pts.len() + 1);
        prefix.push(0.0);
        for p in &pts {
            prefix.push(prefix.last().copied().unwrap_or(0.0) + p.1);
        }
        Self {
            ts: pts.iter().map(|p| p.0).collect(),
            prefix,
        }
    }

    /// (count, centred mean) of entries strictly before `t`.
    fn before(&self, t: i64) -> (usize, f64) {
        let n = self.ts.partition_point(|&x| x < t);
        let mean = if n == 0 {
            0.0
        } else {
            (self.prefix[n] / n as f64 - 3.0) / 2.0
        };
        (n, mean)
    }
}

/// One user's actions, sorted by time.
#[derive(Default)]
struct UserEvents {
    ts: Vec<i64>,
    movie: Vec<u64>,
    action: Vec<&'static str>,
}

/// Converts MovieLens files into an engagement log at `out` (written atomically).
pub fn convert_movielens(
    ratings: impl AsRef<Path>,
    tags: Option<&Path>,
    out: impl AsRef<Path>,
    opts: &MovieLensOptions,
) -> Result<MovieLensStats> {
    let ratings = read_ratings(ratings)?;
    let tags = tags.map(read_tags).transpose()?;
    let with_tags = tags.is_some();
    let tags = tags.unwrap_or_default();

    let mut first_tag: HashMap<(u64, u64), i64> = HashMap::new();
    for t in &tags {
        let e = first_tag.entry((t.user, t.movie)).or_insert(t.ts);
        *e = (*e).min(t.ts);
    }
    // Per-user actions (ratings then tags, sorted by time; ties keep ratings first).
    let mut raw: HashMap<u64, Vec<(i64, u8, u64, &'static str)>> = HashMap::new();
    let mut seen: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut user_pts: HashMap<u64, Vec<(i64, f64)>> = HashMap::new();
    let mut movie_pts: HashMap<u64, Vec<(i64, f64)>> = HashMap::new();
    let mut stats = MovieLensStats {
        ratings: ratings.len(),
        tags: tags.len(),
        ..Default::default()
    };
    for r in &ratings {
        raw.entry(r.user)
            .or_default()
            .push((r.ts, 0, r.movie, rating_action(r.rating)));
        seen.entry(r.user).or_default().insert(r.movie);
        user_pts.entry(r.user).or_default().push((r.ts, r.rating));
        movie_pts.entry(r.movie).or_default().push((r.ts, r.rating));
    }
    let mut pairs: Vec<(&(u64, u64), &i64)> = first_tag.iter().collect();
    pairs.sort();
    for (&(user, movie), &ts) in pairs {
        raw.entry(user).or_default().push((ts, 1, movie, "tag"));
        seen.entry(user).or_default().insert(movie);
    }
    stats.tagged_pairs = first_tag.len();
    let mut events: HashMap<u64, UserEvents> = HashMap::with_capacity(raw.len());
    for (user, mut ev) in raw {
        ev.sort();
        let mut u = UserEvents::default();
        for (ts, _, movie, action) in ev {
            *stats.actions.entry(action.to_string()).or_default() += 1;
            u.ts.push(ts);
            u.movie.push(movie);
            u.action.push(action);
        }
        events.insert(user, u);
    }
    let users: HashMap<u64, Timeline> = user_pts
        .into_iter()
        .map(|(k, v)| (k, Timeline::build(v)))
        .collect();
    let movies: HashMap<u64, Timeline> = movie_pts
        .into_iter()
        .map(|(k, v)| (k, Timeline::build(v)))
        .collect();
    // The catalog ordered by first rating, so the movies known before t are a prefix.
    let mut catalog: Vec<(i64, u64)> = movies.iter().map(|(&m, tl)| (tl.ts[0], m)).collect();
    catalog.sort_unstable();
    let first_ts: HashMap<u64, i64> = catalog.iter().map(|&(t, m)| (m, t)).collect();
    stats.users = users.len();
    stats.movies = catalog.len();

    let mut order: Vec<&Rating> = ratings.iter().collect();
    order.sort_by_key(|r| (r.ts, r.user, r.movie, r.line));
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut writer = JsonlWriter::create(out)?;
    let mut history_total = 0usize;
    let empty = Timeline::default();
    for r in order {
        let ev = &events[&r.user];
        let hi = ev.ts.partition_point(|&t| t < r.ts);
        let lo = hi.saturating_sub(opts.max_history);
        let history: Vec<HistoryEntry> = (lo..hi)
            .map(|i| HistoryEntry {
                pin: ev.movie[i],
                action: ev.action[i].to_string(),
                ts: None,
            })
            .collect();
        let (n_user, mean_user) = users[&r.user].before(r.ts);
        let since = if hi == 0 {
            0.0
        } else {
            ((r.ts - ev.ts[hi - 1]) as f64 / 3600.0).ln_1p()
        };
        let features = |movie: u64| {
            let (n_movie, mean_movie) = movies.get(&movie).unwrap_or(&empty).before(r.ts);
            let (n_user, n_movie) = (n_user as f64, n_movie as f64);
            vec![
                n_user.ln_1p(),
                mean_user,
                n_movie.ln_1p(),
                mean_movie,
                since,
            ]
        };
        let mut labels = BTreeMap::new();
        let flag = |b: bool| Some(if b { 1.0 } else { 0.0 });
        labels.insert("like".to_string(), flag(r.rating >= 4.0));
        labels.insert("love".to_string(), flag(r.rating >= 5.0));
        labels.insert("dislike".to_string(), flag(r.rating <= 2.0));
        if with_tags {
            labels.insert(
                "tagged".to_string(),
                flag(first_tag.contains_key(&(r.user, r.movie))),
            );
        }
        for (task, v) in &labels {
            if *v == Some(1.0) {
                *stats.positives.entry(task.clone()).or_default() += 1;
            }
        }
        let mut rec = EngagementRecord {
            user: Some(r.user),
            ts: Some(r.ts),
            candidate: Some(r.movie),
            history,
            features: features(r.movie),
            labels,
            ..Default::default()
        };
        writer.write_engagement(&rec)?;
        history_total += hi - lo;
        if r.rating < 4.0 || opts.neg_per_pos == 0 {
            continue;
        }
        let exclude = &seen[&r.user];
        let known = catalog.partition_point(|&(t, _)| t < r.ts);
        let known_excluded = exclude
            .iter()
            .filter(|m| first_ts.get(m).is_some_and(|&t| t < r.ts))
            .count();
        let want = opts.neg_per_pos.min(known - known_excluded);
        let mut chosen: Vec<u64> = Vec::with_capacity(want);
        while chosen.len() < want {
            let m = catalog[rng.random_range(0..known)].1;
            if !exclude.contains(&m) && !chosen.contains(&m) {
                chosen.push(m);
            }
        }
        for m in chosen {
            rec.candidate = Some(m);
            rec.features = features(m);
            for v in rec.labels.values_mut() {
                *v = Some(0.0);
            }
            writer.write_engagement(&rec)?;
            history_total += hi - lo;
            stats.negatives += 1;
        }
    }
    stats.impressions = writer.records();
    stats.mean_history = history_total as f64 / stats.impressions.max(1) as f64;
    writer.finish()?;
    Ok(stats)
}
