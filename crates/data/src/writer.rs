//! Atomic writers: JSON Lines logs for the simulators, converters and the CLI.
//!
//! Everything is written to a temporary file in the destination's directory, flushed and
//! fsynced, then renamed over the destination (and the directory fsynced), so a reader never
//! sees a half-written file and a failed run never damages a file already there. A writer
//! dropped without [`AtomicFile::commit`] / [`JsonlWriter::finish`] removes its temporary
//! file and leaves the destination untouched.
//!
//! [`JsonlWriter::write_engagement`] and [`JsonlWriter::write_blender`] validate each record
//! with the readers' rules before writing it (serde_json would silently write a NaN as
//! `null`), so what the writers produce, the readers accept.

use crate::error::{DataError, Result};
use crate::record::{BlenderRecord, EngagementRecord};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file written under a temporary name and renamed into place on [`AtomicFile::commit`].
#[derive(Debug)]
pub struct AtomicFile {
    path: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `path` (through a temporary file beside it).
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let name = path
            .file_name()
            .ok_or_else(|| DataError::Invalid(format!("{}: not a file path", path.display())))?;
        let temp = path.with_file_name(format!(
            ".{}.tmp.{}.{}",
            name.to_string_lossy(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| DataError::Io {
                path: path.clone(),
                source: e,
            })?;
        Ok(Self {
            path,
            temp,
            writer: Some(BufWriter::with_capacity(1 << 16, file)),
        })
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_err(&self, e: std::io::Error) -> DataError {
        DataError::Io {
            path: self.path.clone(),
            source: e,
        }
    }

    /// Flushes, fsyncs and renames the temporary file onto the destination.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer
            .into_inner()
            .map_err(|e| self.io_err(e.into_error()))?;
        file.sync_all().map_err(|e| self.io_err(e))?;
        drop(file);
        std::fs::rename(&self.temp, &self.path).map_err(|e| self.io_err(e))?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            // Best effort: persists the rename; not every platform can open a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| f.io_err(e))?;
    f.commit()
}

/// An atomic JSON Lines writer, one record per line.
#[derive(Debug)]
pub struct JsonlWriter {
    file: AtomicFile,
    records: usize,
    buf: Vec<u8>,
    /// Shape of the first validated record: (feature width, candidate presence or blend width).
    first: Option<(usize, usize)>,
}

impl JsonlWriter {
    /// Starts writing `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self {
            file: AtomicFile::create(path)?,
            records: 0,
            buf: Vec::new(),
            first: None,
        })
    }

    /// Records written so far.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Writes any serializable value as one line, unvalidated.
    pub fn write<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<()> {
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, record).map_err(|e| {
            DataError::syntax(
                self.file.path(),
                self.records + 1,
                format!("cannot serialize: {e}"),
            )
        })?;
        self.buf.push(b'\n');
        let (file, buf) = (&mut self.file, &self.buf);
        file.write_all(buf).map_err(|e| file.io_err(e))?;
        self.records += 1;
        Ok(())
    }

    /// Checks the file-level shape rule: the first value (the feature width) and the second
    /// (candidate presence, or the blend width) are the same on every line.
    fn check_shape(&mut self, shape: (usize, usize), second: &str) -> Result<()> {
        let line = self.records + 1;
        match self.first {
            None => self.first = Some(shape),
            Some((w, _)) if w != shape.0 => {
                return Err(DataError::field_error(
                    self.file.path(),
                    line,
                    "features",
                    format!("expected {w} features (as on line 1), got {}", shape.0),
                ));
            }
            Some((_, c)) if c != shape.1 => {
                return Err(DataError::field_error(
                    self.file.path(),
                    line,
                    second,
                    format!(
                        "differs from line 1 ({c} vs {}): {second} must agree on every line",
                        shape.1
                    ),
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Validates an engagement record with the reader's rules (including the same feature
    /// width and candidate presence on every line), then writes it.
    pub fn write_engagement(&mut self, record: &EngagementRecord) -> Result<()> {
        let line = self.records + 1;
        record
            .check()
            .map_err(|p| DataError::field_error(self.file.path(), line, p.field, p.message))?;
        let shape = (
            record.features.len(),
            usize::from(record.candidate.is_some()),
        );
        self.check_shape(shape, "candidate")?;
        self.write(record)
    }

    /// Validates a blender record (finite values; the same feature and blend widths on every
    /// line), then writes it.
    pub fn write_blender(&mut self, record: &BlenderRecord) -> Result<()> {
        let line = self.records + 1;
        record
            .check()
            .map_err(|p| DataError::field_error(self.file.path(), line, p.field, p.message))?;
        self.check_shape((record.features.len(), record.blend.len()), "blend")?;
        self.write(record)
    }

    /// Commits the file; returns the number of records written.
    pub fn finish(self) -> Result<usize> {
        let n = self.records;
        self.file.commit()?;
        Ok(n)
    }
}

/// Writes `records` as JSON Lines, atomically and unvalidated; returns the count.
pub fn write_jsonl<T: Serialize>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = T>,
) -> Result<usize> {
    let mut w = JsonlWriter::create(path)?;
    for r in records {
        w.write(&r)?;
    }
    w.finish()
}

/// Validates and writes an engagement log atomically; returns the count.
pub fn write_engagement_log<'a>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = &'a EngagementRecord>,
) -> Result<usize> {
    let mut w = JsonlWriter::create(path)?;
    for r in records {
        w.write_engagement(r)?;
    }
    w.finish()
}

/// Validates and writes a blender log atomically; returns the count.
pub fn write_blender_log<'a>(
    path: impl AsRef<Path>,
    records: impl IntoIterator<Item = &'a BlenderRecord>,
) -> Result<usize> {
    let mut w = JsonlWriter::create(path)?;
    for r in records {
        w.write_blender(r)?;
    }
    w.finish()
}
