//! Reader of the blender log (SPEC §4.2): one logged request per line,
//! `{"request": "r1", "features": [0.3, 1.0], "blend": [1.0, 0.4, 0.8, 0.1], "feedback": ["closeup"]}`.
//!
//! Line rules are those of [`crate::reader`] (1-based lines, blank lines only at the end, no
//! NaN/inf, unknown keys rejected). On top of them: `features` has the same length on every
//! line; `blend` has one entry per objective — as many as the caller says
//! ([`BlenderReadOptions::num_objectives`], the config's objective list) or else as on the
//! first line — and at least one; with [`BlenderReadOptions::allowed_events`] set, every
//! `feedback` event must be one of them (the blender crate passes its reward map's keys).

use crate::error::{DataError, Result};
use crate::reader::{Lines, parse_line};
use crate::record::BlenderRecord;
use ndarray::Array2;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Options for [`read_blender_log`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlenderReadOptions {
    /// Number of objectives (length of `blend`); None = take it from the first line.
    pub num_objectives: Option<usize>,
    /// Required feature width (e.g. a trained blender's); None = take it from the first line.
    pub feature_width: Option<usize>,
    /// If set, feedback events outside this set are errors.
    pub allowed_events: Option<BTreeSet<String>>,
}

/// A validated blender log, as arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct BlenderLog {
    /// The file.
    pub path: PathBuf,
    /// Line number of each request.
    pub lines: Vec<usize>,
    /// Request ids (optional field).
    pub requests: Vec<Option<String>>,
    /// Request features x, [N, F].
    pub features: Array2<f32>,
    /// Blending weights r used, [N, number of objectives].
    pub blend: Array2<f32>,
    /// Feedback events per request.
    pub feedback: Vec<Vec<String>>,
}

impl BlenderLog {
    /// Number of logged requests.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when empty (never for a log read from a file).
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Number of objectives (columns of `blend`).
    pub fn num_objectives(&self) -> usize {
        self.blend.ncols()
    }

    /// Dense feature width (columns of `features`).
    pub fn feature_width(&self) -> usize {
        self.features.ncols()
    }
}

fn width_error(
    path: &Path,
    line: usize,
    field: &str,
    want: usize,
    got: usize,
    why: &str,
) -> DataError {
    DataError::field_error(
        path,
        line,
        field,
        format!("expected {want} values ({why}), got {got}"),
    )
}

/// Reads and validates a whole blender log.
pub fn read_blender_log(path: impl AsRef<Path>, opts: &BlenderReadOptions) -> Result<BlenderLog> {
    let path = path.as_ref();
    let mut lines = Lines::open(path)?;
    let (mut width, mut width_why) = (opts.feature_width, "the model's width".to_string());
    let (mut k, mut k_why) = (
        opts.num_objectives,
        "one per configured objective".to_string(),
    );
    let (mut feats, mut blend) = (Vec::new(), Vec::new());
    let (mut line_nos, mut requests, mut feedback) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(line) = lines.next_line()? {
        let rec: BlenderRecord = parse_line(path, line, lines.current())?;
        rec.check()
            .map_err(|p| DataError::field_error(path, line, p.field, p.message))?;
        let w = *width.get_or_insert(rec.features.len());
        if rec.features.len() != w {
            return Err(width_error(
                path,
                line,
                "features",
                w,
                rec.features.len(),
                &width_why,
            ));
        }
        if k.is_none() && rec.blend.is_empty() {
            return Err(DataError::field_error(
                path,
                line,
                "blend",
                "blend must not be empty",
            ));
        }
        let nk = *k.get_or_insert(rec.blend.len());
        if rec.blend.len() != nk {
            return Err(width_error(
                path,
                line,
                "blend",
                nk,
                rec.blend.len(),
                &k_why,
            ));
        }
        if let Some(allowed) = &opts.allowed_events {
            for (i, e) in rec.feedback.iter().enumerate() {
                if !allowed.contains(e) {
                    let known: Vec<&str> = allowed.iter().map(String::as_str).collect();
                    return Err(DataError::field_error(
                        path,
                        line,
                        format!("feedback[{i}]"),
                        format!("unknown event {e:?}; the reward map knows {known:?}"),
                    ));
                }
            }
        }
        if line_nos.is_empty() {
            width_why = format!("as on line {line}");
            if opts.num_objectives.is_none() {
                k_why = format!("as on line {line}");
            }
        }
        feats.extend(rec.features.iter().map(|&x| x as f32));
        blend.extend(rec.blend.iter().map(|&x| x as f32));
        line_nos.push(line);
        requests.push(rec.request);
        feedback.push(rec.feedback);
    }
    if line_nos.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let n = line_nos.len();
    let (w, nk) = (width.unwrap_or(0), k.unwrap_or(0));
    Ok(BlenderLog {
        path: path.to_path_buf(),
        lines: line_nos,
        requests,
        features: Array2::from_shape_vec((n, w), feats).expect("rows checked to have width w"),
        blend: Array2::from_shape_vec((n, nk), blend).expect("rows checked to have width k"),
        feedback,
    })
}

/// Only the `features` of a line; other keys are ignored (for `closeup blend score`).
#[derive(Deserialize)]
struct FeaturesOnly {
    #[serde(default)]
    features: Vec<f64>,
}

/// Reads only `features` from every line (other keys are ignored, so blender logs and
/// request files both work), checking finiteness and width (`feature_width`, or the first
/// line's). Returns the line numbers and the [N, F] matrix.
pub fn read_blender_features(
    path: impl AsRef<Path>,
    feature_width: Option<usize>,
) -> Result<(Vec<usize>, Array2<f32>)> {
    let path = path.as_ref();
    let mut lines = Lines::open(path)?;
    let mut width = feature_width;
    let why = if feature_width.is_some() {
        "the model's width"
    } else {
        "as on the first line"
    };
    let (mut line_nos, mut feats) = (Vec::new(), Vec::new());
    while let Some(line) = lines.next_line()? {
        let rec: FeaturesOnly = parse_line(path, line, lines.current())?;
        let probe = BlenderRecord {
            features: rec.features,
            ..Default::default()
        };
        probe
            .check()
            .map_err(|p| DataError::field_error(path, line, p.field, p.message))?;
        let w = *width.get_or_insert(probe.features.len());
        if probe.features.len() != w {
            return Err(width_error(
                path,
                line,
                "features",
                w,
                probe.features.len(),
                why,
            ));
        }
        feats.extend(probe.features.iter().map(|&x| x as f32));
        line_nos.push(line);
    }
    if line_nos.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let n = line_nos.len();
    let m = Array2::from_shape_vec((n, width.unwrap_or(0)), feats).expect("rows checked");
    Ok((line_nos, m))
}
