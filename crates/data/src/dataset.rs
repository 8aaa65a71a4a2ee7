//! The typed, vocabulary-encoded engagement dataset.
//!
//! A training file is read with [`EngagementDataset::load_training`], which learns the
//! [`Vocab`] in the same pass; files scored or evaluated by a trained model are read with
//! [`EngagementDataset::load_with_vocab`], which encodes them with the model's vocabulary and
//! rejects a different feature width. Both read the whole file and validate every line before
//! returning, so nothing can start training on half-checked data.
//!
//! Histories are kept in full (oldest first) unless [`ReadOptions::max_history`] truncates
//! them at read time to the most recent entries; batching keeps the most recent `seq_len` in
//! any case (see [`crate::batch`]).

use crate::error::{DataError, Result};
use crate::reader::{EngagementReader, FileRules};
use crate::record::EngagementRecord;
use crate::vocab::{Vocab, VocabBuilder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One encoded action of a user's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryToken {
    /// The pin id (models hash it into buckets).
    pub pin: u64,
    /// The action id from the [`Vocab`] (never 0 in a dataset; 1 = unknown).
    pub action: u32,
}

/// What groups impressions into one request (for per-request churn metrics): the explicit
/// `request` field if the line has one, else the pair (user, ts). Lines with none of the three
/// all share the key `UserTs { user: None, ts: None }`, i.e. form one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestKey {
    /// The line's `request` string.
    Named(String),
    /// The line's (user, ts).
    UserTs {
        /// The `user` field.
        user: Option<u64>,
        /// The `ts` field.
        ts: Option<i64>,
    },
}

/// One encoded impression.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The line of the file it came from (1-based).
    pub line: usize,
    /// The user's history, oldest first.
    pub history: Vec<HistoryToken>,
    /// The candidate pin, if the file has candidates.
    pub candidate: Option<u64>,
    /// Dense features.
    pub features: Vec<f32>,
    /// One entry per vocabulary task: `Some(0.0 | 1.0)` or `None` when missing (never 0).
    pub labels: Vec<Option<f32>>,
    /// Example weight (default 1).
    pub weight: f32,
    /// Logged scores of a previous model, one entry per vocabulary task, if the line has any.
    pub old_scores: Option<Vec<Option<f32>>>,
    /// The `user` field.
    pub user: Option<u64>,
    /// The `ts` field.
    pub ts: Option<i64>,
    /// The request this impression belongs to.
    pub request: RequestKey,
}

/// Facts about the file a dataset was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetMeta {
    /// The file.
    pub path: PathBuf,
    /// Physical lines read (records plus trailing blank lines).
    pub n_lines: usize,
    /// Some line has a non-empty history.
    pub has_history: bool,
    /// Every line has a candidate (files have candidates on all lines or none).
    pub has_candidate: bool,
    /// Some line has `old_scores`.
    pub has_old_scores: bool,
    /// Dense features per line.
    pub feature_width: usize,
    /// Label tasks present in the file but not in the vocabulary (ignored), in order of first
    /// appearance.
    pub ignored_tasks: Vec<String>,
    /// History tokens whose action was not in the vocabulary (encoded as unknown).
    pub unknown_actions: usize,
}

impl DatasetMeta {
    /// Neither history nor candidate anywhere: the file trains a dense-only MMoE.
    pub fn is_dense_only(&self) -> bool {
        !self.has_history && !self.has_candidate
    }
}

/// Options for reading a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadOptions {
    /// Keep only this many most recent history entries per line (None: keep all).
    pub max_history: Option<usize>,
    /// Training only: a fixed task list (e.g. from a config) instead of learning it.
    pub tasks: Option<Vec<String>>,
}

/// An engagement log, validated and encoded with a vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct EngagementDataset {
    /// The examples in file order.
    pub examples: Vec<Example>,
    /// Facts about the file.
    pub meta: DatasetMeta,
    /// The vocabulary the examples are encoded with.
    pub vocab: Vocab,
}

enum Mode<'a> {
    Learn(VocabBuilder),
    Fixed(&'a Vocab),
}

impl EngagementDataset {
    /// Reads a training file and learns its vocabulary (available as `dataset.vocab`).
    pub fn load_training(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<Self> {
        let builder = match &opts.tasks {
            Some(t) => VocabBuilder::with_tasks(t.clone()),
            None => VocabBuilder::new(),
        };
        Self::load(path.as_ref(), opts, Mode::Learn(builder))
    }

    /// Reads a file with a trained model's vocabulary: unseen actions become
    /// [`crate::vocab::UNKNOWN_ACTION`], unseen tasks are ignored (listed in
    /// [`DatasetMeta::ignored_tasks`]), and a different feature width is an error.
    /// `opts.tasks` is not used.
    pub fn load_with_vocab(
        path: impl AsRef<Path>,
        vocab: &Vocab,
        opts: &ReadOptions,
    ) -> Result<Self> {
        Self::load(path.as_ref(), opts, Mode::Fixed(vocab))
    }

    /// Like [`EngagementDataset::load_training`] for records already in memory (e.g. from a
    /// simulator): the same checks run, `name` stands for the file in errors and meta, and
    /// record *i* is "line" *i + 1*.
    pub fn from_records_training(
        name: impl AsRef<Path>,
        records: impl IntoIterator<Item = EngagementRecord>,
        opts: &ReadOptions,
    ) -> Result<Self> {
        let builder = match &opts.tasks {
            Some(t) => VocabBuilder::with_tasks(t.clone()),
            None => VocabBuilder::new(),
        };
        Self::from_memory(name.as_ref(), records, opts, Mode::Learn(builder))
    }

    /// Like [`EngagementDataset::load_with_vocab`] for records already in memory.
    pub fn from_records_with_vocab(
        name: impl AsRef<Path>,
        records: impl IntoIterator<Item = EngagementRecord>,
        vocab: &Vocab,
        opts: &ReadOptions,
    ) -> Result<Self> {
        Self::from_memory(name.as_ref(), records, opts, Mode::Fixed(vocab))
    }

    fn from_memory(
        name: &Path,
        records: impl IntoIterator<Item = EngagementRecord>,
        opts: &ReadOptions,
        mode: Mode<'_>,
    ) -> Result<Self> {
        let mut rules = FileRules::default();
        let source = records
            .into_iter()
            .enumerate()
            .map(|(i, rec)| rules.check(name, i + 1, &rec).map(|()| (i + 1, rec)));
        let mut ds = Self::encode_all(name, source, opts, mode)?;
        ds.meta.n_lines = ds.len();
        Ok(ds)
    }

    fn load(path: &Path, opts: &ReadOptions, mode: Mode<'_>) -> Result<Self> {
        let mut reader = EngagementReader::open(path)?;
        let mut ds = Self::encode_all(path, reader.by_ref(), opts, mode)?;
        ds.meta.n_lines = reader.lines_read();
        Ok(ds)
    }

    /// Encodes validated `(line, record)` items; `meta.n_lines` is left to the caller.
    fn encode_all(
        path: &Path,
        source: impl Iterator<Item = Result<(usize, EngagementRecord)>>,
        opts: &ReadOptions,
        mut mode: Mode<'_>,
    ) -> Result<Self> {
        let mut tasks = VocabBuilder::new(); // provisional task indices
        let mut examples = Vec::new();
        let (mut has_history, mut has_old_scores, mut unknown_actions) = (false, false, 0usize);
        for item in source {
            let (line, rec) = item?;
            if examples.is_empty() {
                match &mut mode {
                    Mode::Learn(b) => b.set_feature_width(rec.features.len()),
                    Mode::Fixed(v) => v.check_feature_width(path, line, rec.features.len())?,
                }
            }
            has_history |= !rec.history.is_empty();
            has_old_scores |= rec.old_scores.is_some();
            let ex = encode(
                line,
                rec,
                opts.max_history,
                &mut tasks,
                |a| match &mut mode {
                    Mode::Learn(b) => b.action_id(a),
                    Mode::Fixed(v) => {
                        let id = v.action_id(a);
                        unknown_actions += usize::from(id == crate::vocab::UNKNOWN_ACTION);
                        id
                    }
                },
            );
            examples.push(ex);
        }
        if examples.is_empty() {
            return Err(DataError::Empty {
                path: path.to_path_buf(),
            });
        }
        if let Mode::Learn(b) = &mut mode {
            for t in tasks.seen_tasks() {
                b.observe_task(t);
            }
        }
        let vocab = match mode {
            Mode::Learn(b) => b.build()?,
            Mode::Fixed(v) => v.clone(),
        };
        let map: Vec<Option<usize>> = tasks
            .seen_tasks()
            .iter()
            .map(|t| vocab.task_index(t))
            .collect();
        let ignored_tasks = tasks
            .seen_tasks()
            .iter()
            .zip(&map)
            .filter(|(_, m)| m.is_none())
            .map(|(t, _)| t.clone())
            .collect();
        let remap = |v: &[Option<f32>]| {
            let mut out = vec![None; vocab.num_tasks()];
            for (p, x) in v.iter().enumerate() {
                if let Some(i) = map[p] {
                    out[i] = *x;
                }
            }
            out
        };
        for ex in &mut examples {
            ex.labels = remap(&ex.labels);
            if let Some(s) = &ex.old_scores {
                ex.old_scores = Some(remap(s));
            }
        }
        let meta = DatasetMeta {
            path: path.to_path_buf(),
            n_lines: 0,
            has_history,
            has_candidate: examples.first().is_some_and(|e| e.candidate.is_some()),
            has_old_scores,
            feature_width: vocab.feature_width(),
            ignored_tasks,
            unknown_actions,
        };
        Ok(Self {
            examples,
            meta,
            vocab,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// True when there are no examples (never for a dataset read from a file).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The examples at `indices`, in that order, with the same meta and vocabulary.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            examples: indices.iter().map(|&i| self.examples[i].clone()).collect(),
            meta: self.meta.clone(),
            vocab: self.vocab.clone(),
        }
    }

    /// Splits into (train, valid) by time: examples are ordered by `ts` (stable, so ties keep
    /// file order) when every example has a `ts`, else kept in file order; the last
    /// `round(valid_fraction * n)` (at least 1, at most n - 1) form the validation set. Both
    /// parts keep that order and the parent's meta and vocabulary.
    pub fn split_by_time(&self, valid_fraction: f64) -> Result<(Self, Self)> {
        if !(valid_fraction > 0.0 && valid_fraction < 1.0) {
            return Err(DataError::Invalid(format!(
                "validation fraction must be in (0, 1), got {valid_fraction}"
            )));
        }
        let n = self.len();
        if n < 2 {
            return Err(DataError::Invalid(format!(
                "{}: cannot split {n} example(s) into train and validation",
                self.meta.path.display()
            )));
        }
        let mut order: Vec<usize> = (0..n).collect();
        if self.examples.iter().all(|e| e.ts.is_some()) {
            order.sort_by_key(|&i| self.examples[i].ts);
        }
        let n_valid = ((valid_fraction * n as f64).round() as usize).clamp(1, n - 1);
        let (train, valid) = order.split_at(n - n_valid);
        Ok((self.subset(train), self.subset(valid)))
    }

    /// Example indices grouped by [`RequestKey`], groups in order of first appearance.
    pub fn requests(&self) -> Vec<Vec<usize>> {
        let mut index: HashMap<&RequestKey, usize> = HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, e) in self.examples.iter().enumerate() {
            let g = *index.entry(&e.request).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        groups
    }

    /// Per task (vocabulary order): (examples with a label, positive labels).
    pub fn label_counts(&self) -> Vec<(usize, usize)> {
        let mut counts = vec![(0, 0); self.vocab.num_tasks()];
        for e in &self.examples {
            for (c, l) in counts.iter_mut().zip(&e.labels) {
                if let Some(v) = l {
                    c.0 += 1;
                    c.1 += usize::from(*v == 1.0);
                }
            }
        }
        counts
    }
}

/// Encodes one validated record; labels and old scores use provisional task indices.
fn encode(
    line: usize,
    rec: EngagementRecord,
    max_history: Option<usize>,
    tasks: &mut VocabBuilder,
    mut action_id: impl FnMut(&str) -> u32,
) -> Example {
    let skip = max_history.map_or(0, |m| rec.history.len().saturating_sub(m));
    let history = rec.history[skip..]
        .iter()
        .map(|h| HistoryToken {
            pin: h.pin,
            action: action_id(&h.action),
        })
        .collect();
    let mut per_task = |map: &std::collections::BTreeMap<String, Option<f64>>| {
        let mut out: Vec<Option<f32>> = Vec::new();
        for (task, v) in map {
            let i = tasks.observe_task(task);
            if out.len() <= i {
                out.resize(i + 1, None);
            }
            out[i] = v.map(|x| x as f32);
        }
        out
    };
    let labels = per_task(&rec.labels);
    let old_scores = rec.old_scores.as_ref().map(&mut per_task);
    let request = match rec.request {
        Some(r) => RequestKey::Named(r),
        None => RequestKey::UserTs {
            user: rec.user,
            ts: rec.ts,
        },
    };
    Example {
        line,
        history,
        candidate: rec.candidate,
        features: rec.features.iter().map(|&x| x as f32).collect(),
        labels,
        weight: rec.weight.unwrap_or(1.0) as f32,
        old_scores,
        user: rec.user,
        ts: rec.ts,
        request,
    }
}
