//! Strict, line-level readers for JSON Lines logs.
//!
//! Every line is parsed with serde_json straight into the typed records of [`crate::record`]
//! (the fast path); only when that fails is the line parsed again with field-path tracking to
//! say *which* field is wrong. Files are read with a `BufReader`, reusing one line buffer.
//!
//! Rules common to both logs:
//! - Line numbers are 1-based physical lines.
//! - A UTF-8 byte-order mark on line 1 and `\r\n` line ends are accepted.
//! - Blank (whitespace-only) lines are allowed **only at the end of the file**; a blank line
//!   followed by a record is an error naming the blank line. This keeps "record *i*" and
//!   "line *i*" the same, so `closeup score` output lines match input lines one to one.
//! - A file with no records is [`DataError::Empty`]; a missing file is
//!   [`DataError::NotFound`].
//! - JSON has no NaN or infinity: `"NaN"` is a string (wrong type) and `1e999` overflows; both
//!   are errors, as is a finite f64 that overflows f32 (e.g. `1e300` in `features`).

use crate::error::{DataError, Result};
use crate::record::EngagementRecord;
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Line source shared by the JSON Lines readers (and the CSV reader's line counting).
#[derive(Debug)]
pub(crate) struct Lines {
    path: PathBuf,
    reader: BufReader<File>,
    buf: Vec<u8>,
    line: usize,
    blank_at: Option<usize>,
    current: (usize, usize),
}

impl Lines {
    /// Opens `path` for line-by-line reading.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 16, file),
            buf: Vec::with_capacity(4096),
            line: 0,
            blank_at: None,
            current: (0, 0),
        })
    }

    /// The file being read.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Physical lines consumed so far.
    pub(crate) fn lines_read(&self) -> usize {
        self.line
    }

    /// Advances to the next non-blank line and returns its number, or `None` at end of file;
    /// its trimmed bytes are then [`Lines::current`]. A blank line followed by a non-blank one
    /// is an error.
    pub(crate) fn next_line(&mut self) -> Result<Option<usize>> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| DataError::io(&self.path, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let mut start = 0;
            if self.line == 1 && self.buf.starts_with(&[0xEF, 0xBB, 0xBF]) {
                start = 3;
            }
            let trimmed = self.buf[start..].trim_ascii();
            if trimmed.is_empty() {
                self.blank_at.get_or_insert(self.line);
                continue;
            }
            if let Some(blank) = self.blank_at {
                return Err(DataError::syntax(
                    &self.path,
                    blank,
                    "blank line before the end of the file (blank lines are only allowed at the end)",
                ));
            }
            let begin = trimmed.as_ptr() as usize - self.buf.as_ptr() as usize;
            self.current = (begin, begin + trimmed.len());
            return Ok(Some(self.line));
        }
    }

    /// The trimmed bytes of the line last returned by [`Lines::next_line`].
    pub(crate) fn current(&self) -> &[u8] {
        &self.buf[self.current.0..self.current.1]
    }
}

/// Parses one JSON line into `T`; on failure re-parses with path tracking to name the field.
/// Lines must be JSON objects (serde would also accept a struct written as an array).
pub(crate) fn parse_line<T: DeserializeOwned>(path: &Path, line: usize, bytes: &[u8]) -> Result<T> {
    if bytes.first() != Some(&b'{') {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(20)]).into_owned();
        return Err(DataError::syntax(
            path,
            line,
            format!("expected a JSON object `{{...}}` on each line, got `{shown}`"),
        ));
    }
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => Ok(v),
        Err(fast) => Err(diagnose::<T>(path, line, bytes, fast)),
    }
}

/// serde_json appends " at line L column C" to its messages; the line is always 1 here.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A hint for the two ways a non-finite number shows up in JSON: as a string, or as a literal
/// that overflows f64.
fn number_hint(message: &str) -> &'static str {
    if message.starts_with("number out of range") {
        return " (the number overflows f64; NaN and infinity are not allowed)";
    }
    let Some(rest) = message.strip_prefix("invalid type: string \"") else {
        return "";
    };
    if !message.ends_with("expected f64") {
        return "";
    }
    let literal = rest
        .split('"')
        .next()
        .unwrap_or("")
        .trim()
        .trim_start_matches(['+', '-']);
    if ["nan", "inf", "infinity"].contains(&literal.to_ascii_lowercase().as_str()) {
        " (NaN and infinity are not allowed: JSON numbers must be finite)"
    } else {
        " (write numbers without quotes)"
    }
}

fn diagnose<T: DeserializeOwned>(
    path: &Path,
    line: usize,
    bytes: &[u8],
    fast: serde_json::Error,
) -> DataError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => match de.end() {
            Ok(()) => fast,
            Err(e) => e,
        },
        Err(e) => {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let is_value_error = inner.classify() == serde_json::error::Category::Data
                || inner.to_string().starts_with("number out of range");
            if is_value_error && field != "." {
                let mut message = strip_position(&inner.to_string());
                message.push_str(number_hint(&message));
                return DataError::field_error(path, line, field, message);
            }
            inner
        }
    };
    let message = strip_position(&err.to_string());
    let what = match err.classify() {
        serde_json::error::Category::Data => "bad record",
        _ => "malformed JSON",
    };
    DataError::syntax(
        path,
        line,
        format!("{what}: {message} (column {})", err.column()),
    )
}

/// The per-record and file-level rules of an engagement log: [`EngagementRecord::check`], the
/// same feature width on every line as on the first, and a candidate on every line or none.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileRules {
    /// (line, feature width, has candidate) of the first record.
    first: Option<(usize, usize, bool)>,
}

impl FileRules {
    /// Checks one record at `line` of `path`.
    pub(crate) fn check(&mut self, path: &Path, line: usize, rec: &EngagementRecord) -> Result<()> {
        rec.check()
            .map_err(|p| DataError::field_error(path, line, p.field, p.message))?;
        let has_candidate = rec.candidate.is_some();
        let Some((first_line, width, cand)) = self.first else {
            self.first = Some((line, rec.features.len(), has_candidate));
            return Ok(());
        };
        if rec.features.len() != width {
            return Err(DataError::field_error(
                path,
                line,
                "features",
                format!(
                    "expected {width} features (as on line {first_line}), got {}",
                    rec.features.len()
                ),
            ));
        }
        if cand != has_candidate {
            let (this, that) = if cand { ("no", "a") } else { ("a", "no") };
            return Err(DataError::field_error(
                path,
                line,
                "candidate",
                format!(
                    "this line has {this} candidate but line {first_line} has {that} \
                     candidate (a file has a candidate on every line or on none)"
                ),
            ));
        }
        Ok(())
    }
}

/// Streaming, validating reader of an engagement log (SPEC §4.1).
///
/// Yields `(line number, record)` for each record. Each record passes
/// [`EngagementRecord::check`], and the file-level rules: every line has as many `features` as
/// the first record, and either every line or no line has a `candidate`. After the first
/// error, or when the file turns out to hold no records ([`DataError::Empty`]), the iterator
/// ends.
#[derive(Debug)]
pub struct EngagementReader {
    lines: Lines,
    rules: FileRules,
    records: usize,
    done: bool,
}

impl EngagementReader {
    /// Opens a log; a missing file is [`DataError::NotFound`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self {
            lines: Lines::open(path.as_ref())?,
            rules: FileRules::default(),
            records: 0,
            done: false,
        })
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        self.lines.path()
    }

    /// The dense feature width, known once the first record is read.
    pub fn feature_width(&self) -> Option<usize> {
        self.rules.first.map(|(_, w, _)| w)
    }

    /// The line number of the first record, once read.
    pub fn first_line(&self) -> Option<usize> {
        self.rules.first.map(|(l, _, _)| l)
    }

    /// Physical lines consumed so far (records plus trailing blank lines).
    pub fn lines_read(&self) -> usize {
        self.lines.lines_read()
    }

    /// Records yielded so far.
    pub fn records_read(&self) -> usize {
        self.records
    }

    fn read_next(&mut self) -> Result<Option<(usize, EngagementRecord)>> {
        let Some(line) = self.lines.next_line()? else {
            if self.records == 0 {
                return Err(DataError::Empty {
                    path: self.lines.path().to_path_buf(),
                });
            }
            return Ok(None);
        };
        let path = self.lines.path();
        let rec: EngagementRecord = parse_line(path, line, self.lines.current())?;
        self.rules.check(path, line, &rec)?;
        self.records += 1;
        Ok(Some((line, rec)))
    }
}

impl Iterator for EngagementReader {
    type Item = Result<(usize, EngagementRecord)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_next() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Reads and validates a whole engagement log into `(line number, record)` pairs.
pub fn read_engagement_log(path: impl AsRef<Path>) -> Result<Vec<(usize, EngagementRecord)>> {
    EngagementReader::open(path)?.collect()
}
