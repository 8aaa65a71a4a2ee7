//! The crate's error type: every bad input names the file, the 1-based line and the field.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, validating, converting or writing data.
///
/// Display strings follow the compiler convention `path:line: field "name": message`, e.g.
/// `data/train.jsonl:17: field "labels.click": label must be 0, 1 or null, got 2`.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file does not exist.
    #[error("{}: file not found", .path.display())]
    NotFound {
        /// The file that was asked for.
        path: PathBuf,
    },
    /// Any other I/O failure (permissions, a directory instead of a file, a full disk, ...).
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no records (zero bytes, or only blank lines).
    #[error("{}: the file is empty (no records)", .path.display())]
    Empty {
        /// The empty file.
        path: PathBuf,
    },
    /// A line that cannot be read at all: malformed JSON, invalid UTF-8, a misplaced blank
    /// line, an unterminated CSV quote.
    #[error("{}:{line}: {message}", .path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A well-formed line with a bad value in one field (wrong type, NaN/inf, a label not
    /// 0/1, a negative weight, a feature vector of the wrong length, ...).
    #[error("{}:{line}: field \"{field}\": {message}", .path.display())]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Dotted path of the field, e.g. `labels.click`, `features[3]`, `history[0].pin`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The file's dense feature width differs from the one the model was trained with.
    #[error(
        "{}:{line}: field \"features\": the file has {found} dense features per line but the \
         model was trained with {expected}",
        .path.display()
    )]
    FeatureWidth {
        /// The file.
        path: PathBuf,
        /// The first record's line, where the width was read.
        line: usize,
        /// The model's width.
        expected: usize,
        /// The file's width.
        found: usize,
    },
    /// A bad argument from the caller (not from a file), e.g. a split fraction outside (0, 1).
    #[error("{0}")]
    Invalid(String),
}

/// Result with [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// The 1-based line number the error points at, if it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Syntax { line, .. }
            | Self::Field { line, .. }
            | Self::FeatureWidth { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// The field the error is about, if any (`"features"` for a width mismatch).
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. } => Some(field),
            Self::FeatureWidth { .. } => Some("features"),
            _ => None,
        }
    }

    /// The file the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::NotFound { path }
            | Self::Io { path, .. }
            | Self::Empty { path }
            | Self::Syntax { path, .. }
            | Self::Field { path, .. }
            | Self::FeatureWidth { path, .. } => Some(path),
            Self::Invalid(_) => None,
        }
    }

    /// Wraps an I/O error for `path`, mapping "not found" to [`DataError::NotFound`].
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            Self::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }

    /// A [`DataError::Field`] error.
    pub fn field_error(
        path: &Path,
        line: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Field {
            path: path.to_path_buf(),
            line,
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`DataError::Syntax`] error.
    pub fn syntax(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Self::Syntax {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_line_and_field() {
        let e = DataError::field_error(
            Path::new("data/train.jsonl"),
            17,
            "labels.click",
            "label must be 0, 1 or null, got 2",
        );
        assert_eq!(
            e.to_string(),
            "data/train.jsonl:17: field \"labels.click\": label must be 0, 1 or null, got 2"
        );
        assert_eq!(e.line(), Some(17));
        assert_eq!(e.field(), Some("labels.click"));
    }

    #[test]
    fn not_found_is_mapped() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = DataError::io(Path::new("x.jsonl"), io);
        assert!(matches!(e, DataError::NotFound { .. }));
        assert_eq!(e.to_string(), "x.jsonl: file not found");
    }
}
