//! Versioned, checksummed, atomically written checkpoints of named tensors.
//!
//! A [`Checkpoint`] holds a module's parameters by dotted name (in visit order), a string
//! key–value metadata map (models store their TOML config and vocabularies there) and,
//! optionally, an optimizer's [`OptimizerState`] for resumable training.
//!
//! # File format (version 1)
//!
//! All integers little-endian:
//!
//! | offset | size | content                                                      |
//! |--------|------|--------------------------------------------------------------|
//! | 0      | 8    | magic `b"CLOSEUP\0"` ([`MAGIC`])                             |
//! | 8      | 4    | format version, `u32` ([`FORMAT_VERSION`])                   |
//! | 12     | 8    | payload length `N` in bytes, `u64`                           |
//! | 20     | 4    | CRC-32 (IEEE, as `crc32fast`) of the payload, `u32`          |
//! | 24     | N    | payload: bincode 2 (`config::standard()`, serde) encoding    |
//!
//! The payload is the serde encoding of, in order: the tensors as a sequence of
//! `(name: String, shape: Vec<u64>, data: Vec<f32>)` in the module's visit order, the metadata as
//! a sorted `BTreeMap<String, String>`, and an `Option<OptimizerState>`. The file is exactly
//! `24 + N` bytes long.
//!
//! # Loading never trusts the file
//!
//! [`Checkpoint::load`] reads the 24-byte header first and checks, in order: that the file is
//! not empty, the magic, the version, the payload length against the actual file size (so a
//! corrupted length can neither cause a huge allocation nor a short read), and the CRC; only
//! then does it decode, with a bincode size limit, and validate the decoded tensors (each
//! shape's element count equals its data length; names unique). Every failure is an
//! [`AutogradError::Format`] with a reason such as `truncated: expected 4096 bytes of payload,
//! found 1000`, `checksum mismatch`, `unsupported format version 7 (this build reads 1)` or
//! `not a Closeup checkpoint (bad magic)` — never a panic.
//!
//! # Saving is atomic
//!
//! [`Checkpoint::save`] writes `path` + `.tmp-<pid>` in the same directory, `fsync`s it, renames
//! it over `path` and then `fsync`s the directory. A crash or error at any point leaves either the
//! old file or the new one at `path`, never a partial file; on error the temporary file is
//! removed.
//!
//! # Restoring is all or nothing
//!
//! [`Checkpoint::restore_into`] first checks that the checkpoint and the model have exactly the
//! same parameter names with the same shapes; any missing or extra name or shape difference is
//! an [`AutogradError::Mismatch`] listing every problem, and the model is left untouched.
//!
//! ```
//! use closeup_autograd::checkpoint::Checkpoint;
//! use closeup_autograd::{Param, Parameterized, ParamVisitor, ParamVisitorMut};
//! use ndarray::array;
//!
//! struct Bias { b: Param }
//! impl Parameterized for Bias {
//!     fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) { v.param("b", &self.b); }
//!     fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) { v.param("b", &mut self.b); }
//! }
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("model.ckpt");
//! let model = Bias { b: Param::new(array![1.0_f32, 2.0].into_dyn()) };
//! Checkpoint::from_module(&model).with_metadata("config", "dim = 2").save(&path).unwrap();
//!
//! let ckpt = Checkpoint::load(&path).unwrap();
//! assert_eq!(ckpt.metadata("config"), Some("dim = 2"));
//! let mut fresh = Bias { b: Param::new(array![0.0_f32, 0.0].into_dyn()) };
//! ckpt.restore_into(&mut fresh).unwrap();
//! assert_eq!(fresh.b.value(), model.b.value());
//! ```

use crate::Tensor;
use crate::error::{AutogradError, Result};
use crate::optim::OptimizerState;
use crate::param::{Param, ParamVisitor, ParamVisitorMut, Parameterized};
use ndarray::IxDyn;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The first 8 bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"CLOSEUP\0";

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Size of the fixed header before the payload: magic, version, length, CRC.
pub const HEADER_LEN: usize = 24;

/// The largest payload this build decodes (16 GiB): the bincode size limit.
pub const MAX_PAYLOAD_LEN: u64 = 1 << 34;

/// [`MAX_PAYLOAD_LEN`] as a `usize` (saturating on 32-bit targets).
const DECODE_LIMIT: usize = {
    let max = MAX_PAYLOAD_LEN as u128;
    if max > usize::MAX as u128 { usize::MAX } else { max as usize }
};

/// The path reported in errors about a checkpoint that did not come from a file.
const IN_MEMORY: &str = "<in-memory checkpoint>";

/// One named tensor of a [`Checkpoint`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    /// The parameter's dotted name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its values in row-major order (`shape.iter().product()` of them).
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// The values as a tensor (a copy).
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_shape_vec(IxDyn(&self.shape), self.data.clone())
            .expect("a checkpoint's tensors are validated when it is built or loaded")
    }
}

/// What the payload encodes (see the module docs).
#[derive(Serialize, Deserialize)]
struct Payload {
    tensors: Vec<NamedTensor>,
    metadata: BTreeMap<String, String>,
    optimizer: Option<OptimizerState>,
}

/// A module's named parameters plus metadata and optional optimizer state; see the
/// [module docs](self) for the file format and guarantees.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    tensors: Vec<NamedTensor>,
    metadata: BTreeMap<String, String>,
    optimizer: Option<OptimizerState>,
    source: Option<PathBuf>,
}

impl Checkpoint {
    /// A snapshot of every parameter of `module`, in visit order, with no metadata.
    ///
    /// # Panics
    /// If `module` visits two parameters under the same name (a broken
    /// [`Parameterized`] implementation).
    pub fn from_module<M: Parameterized + ?Sized>(module: &M) -> Self {
        let mut tensors = Vec::new();
        let mut f = |name: &str, p: &Param| {
            tensors.push(NamedTensor {
                name: name.to_string(),
                shape: p.shape().to_vec(),
                data: p.value().iter().copied().collect(),
            });
        };
        module.visit_params(&mut ParamVisitor::new(&mut f));
        if let Some(dup) = first_duplicate(&tensors) {
            panic!("Checkpoint::from_module: the module visits `{dup}` twice; parameter names must be unique");
        }
        Checkpoint {
            tensors,
            metadata: BTreeMap::new(),
            optimizer: None,
            source: None,
        }
    }

    /// Adds (or replaces) a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_metadata(key, value);
        self
    }

    /// Adds (or replaces) a metadata entry in place.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// Attaches an optimizer's state (from [`crate::optim::Optimizer::state`]).
    pub fn with_optimizer_state(mut self, state: OptimizerState) -> Self {
        self.optimizer = Some(state);
        self
    }

    /// The metadata value stored under `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    /// All metadata, sorted by key.
    pub fn metadata_map(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The optimizer state, if one was attached (pass it to
    /// [`crate::optim::Optimizer::load_state`]).
    pub fn optimizer_state(&self) -> Option<&OptimizerState> {
        self.optimizer.as_ref()
    }

    /// The stored tensors in the module's visit order.
    pub fn tensors(&self) -> &[NamedTensor] {
        &self.tensors
    }

    /// The tensor stored under `name`, as a tensor.
    pub fn tensor(&self, name: &str) -> Option<Tensor> {
        self.tensors.iter().find(|t| t.name == name).map(NamedTensor::to_tensor)
    }

    /// The file this checkpoint was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    fn display_path(&self) -> PathBuf {
        self.source.clone().unwrap_or_else(|| PathBuf::from(IN_MEMORY))
    }

    /// The complete file contents: header and payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct PayloadRef<'a> {
            tensors: &'a [NamedTensor],
            metadata: &'a BTreeMap<String, String>,
            optimizer: &'a Option<OptimizerState>,
        }
        let payload = bincode::serde::encode_to_vec(
            PayloadRef {
                tensors: &self.tensors,
                metadata: &self.metadata,
                optimizer: &self.optimizer,
            },
            bincode::config::standard(),
        )
        .expect("encoding strings, sequences and floats into a Vec cannot fail");
        frame(&payload)
    }

    /// Parses complete file contents (as written by [`Checkpoint::to_bytes`]).
    ///
    /// # Errors
    /// [`AutogradError::Format`] (reported for the path `<in-memory checkpoint>`) if the bytes
    /// are not a valid checkpoint of this format version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let path = Path::new(IN_MEMORY);
        let header = check_header(bytes, bytes.len() as u64, path)?;
        let mut ckpt = decode_payload(&bytes[HEADER_LEN..], &header, path)?;
        ckpt.source = None;
        Ok(ckpt)
    }

    /// Writes the checkpoint to `path` atomically (see the [module docs](self#saving-is-atomic)).
    ///
    /// # Errors
    /// [`AutogradError::Io`] if the temporary file cannot be written, synced or renamed (e.g.
    /// the directory does not exist); an existing file at `path` is then left as it was.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes(), |_| Ok(()))
    }

    /// Reads and verifies a checkpoint file (see the
    /// [module docs](self#loading-never-trusts-the-file)).
    ///
    /// # Errors
    /// [`AutogradError::Io`] if the file cannot be read; [`AutogradError::Format`] if it is
    /// empty, foreign, truncated, corrupted or of another format version.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io_err = |source: io::Error| AutogradError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut head = Vec::with_capacity(HEADER_LEN);
        (&mut file)
            .take(HEADER_LEN as u64)
            .read_to_end(&mut head)
            .map_err(io_err)?;
        let header = check_header(&head, file_len.max(head.len() as u64), path)?;
        // The length was checked against the file size, so this allocation is bounded by it.
        let mut payload = Vec::with_capacity(header.len as usize);
        (&mut file)
            .take(header.len + 1)
            .read_to_end(&mut payload)
            .map_err(io_err)?;
        if payload.len() as u64 != header.len {
            // The file changed size while we read it.
            return Err(format_err(
                path,
                format!(
                    "truncated: expected {} bytes of payload, found {}",
                    header.len,
                    payload.len()
                ),
            ));
        }
        decode_payload(&payload, &header, path)
    }

    /// Copies every stored tensor into the parameter of `model` with the same name.
    ///
    /// # Errors
    /// [`AutogradError::Mismatch`] if a parameter of `model` is missing from the checkpoint, the
    /// checkpoint has a tensor `model` does not, or a shape differs (every problem is listed,
    /// naming the parameter and both shapes). On error `model` is not modified.
    pub fn restore_into<M: Parameterized + ?Sized>(&self, model: &mut M) -> Result<()> {
        let stored: HashMap<&str, &NamedTensor> =
            self.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        let mut values: HashMap<String, Tensor> = HashMap::new();
        let mut check = |name: &str, p: &Param| {
            if !seen.insert(name.to_string()) {
                problems.push(format!("the model visits `{name}` twice"));
                return;
            }
            match stored.get(name) {
                None => problems.push(format!(
                    "`{name}` (shape {:?}) is missing from the checkpoint",
                    p.shape()
                )),
                Some(t) if t.shape != p.shape() => problems.push(format!(
                    "`{name}` has shape {:?} in the checkpoint but {:?} in the model",
                    t.shape,
                    p.shape()
                )),
                Some(t) => {
                    values.insert(name.to_string(), t.to_tensor());
                }
            }
        };
        model.visit_params(&mut ParamVisitor::new(&mut check));
        for t in &self.tensors {
            if !seen.contains(&t.name) {
                problems.push(format!(
                    "the checkpoint has `{}` (shape {:?}), which the model does not",
                    t.name, t.shape
                ));
            }
        }
        if !problems.is_empty() {
            return Err(AutogradError::Mismatch {
                path: self.display_path(),
                reason: summarize(&problems),
            });
        }
        let mut assign = |name: &str, p: &mut Param| {
            if let Some(v) = values.remove(name) {
                p.set_value(v);
            }
        };
        model.visit_params_mut(&mut ParamVisitorMut::new(&mut assign));
        Ok(())
    }
}

fn summarize(problems: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut s = problems[..problems.len().min(SHOWN)].join("; ");
    if problems.len() > SHOWN {
        s.push_str(&format!("; and {} more", problems.len() - SHOWN));
    }
    s
}

fn first_duplicate(tensors: &[NamedTensor]) -> Option<&str> {
    let mut seen = HashSet::new();
    tensors
        .iter()
        .find(|t| !seen.insert(t.name.as_str()))
        .map(|t| t.name.as_str())
}

fn format_err(path: &Path, reason: String) -> AutogradError {
    AutogradError::Format {
        path: path.to_path_buf(),
        reason,
    }
}

/// Header + payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The verified fields of a header.
struct Header {
    len: u64,
    crc: u32,
}

/// Checks the header in `head` (the first up-to-24 bytes of a file of `file_len` bytes).
fn check_header(head: &[u8], file_len: u64, path: &Path) -> Result<Header> {
    let err = |reason: String| format_err(path, reason);
    if file_len == 0 {
        return Err(err("empty file (0 bytes)".into()));
    }
    let n = head.len().min(MAGIC.len());
    if head[..n] != MAGIC[..n] {
        return Err(err("not a Closeup checkpoint (bad magic)".into()));
    }
    if head.len() < HEADER_LEN {
        return Err(err(format!(
            "truncated: the file has {file_len} bytes, fewer than the {HEADER_LEN}-byte header"
        )));
    }
    let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(err(format!(
            "unsupported format version {version} (this build reads {FORMAT_VERSION})"
        )));
    }
    let len = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
    let crc = u32_at(20);
    let found = file_len - HEADER_LEN as u64;
    if found < len {
        return Err(err(format!(
            "truncated: expected {len} bytes of payload, found {found}"
        )));
    }
    if found > len {
        return Err(err(format!(
            "trailing data: expected {len} bytes of payload, found {found}"
        )));
    }
    if len > MAX_PAYLOAD_LEN {
        return Err(err(format!(
            "payload of {len} bytes exceeds this build's limit of {MAX_PAYLOAD_LEN}"
        )));
    }
    Ok(Header { len, crc })
}

/// Verifies the CRC, decodes and validates the payload.
fn decode_payload(payload: &[u8], header: &Header, path: &Path) -> Result<Checkpoint> {
    let err = |reason: String| format_err(path, reason);
    let actual = crc32fast::hash(payload);
    if actual != header.crc {
        return Err(err(format!(
            "checksum mismatch (header says {:#010x}, payload hashes to {actual:#010x}): the file is corrupted",
            header.crc
        )));
    }
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (p, used): (Payload, usize) = bincode::serde::decode_from_slice(payload, config)
        .map_err(|e| err(format!("payload does not decode: {e}")))?;
    if used != payload.len() {
        return Err(err(format!(
            "{} unread bytes after the payload",
            payload.len() - used
        )));
    }
    for t in &p.tensors {
        let want = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(t.data.len()) {
            return Err(err(format!(
                "tensor `{}` has shape {:?} but {} values",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
    }
    if let Some(dup) = first_duplicate(&p.tensors) {
        return Err(err(format!("tensor `{dup}` appears twice")));
    }
    Ok(Checkpoint {
        tensors: p.tensors,
        metadata: p.metadata,
        optimizer: p.optimizer,
        source: Some(path.to_path_buf()),
    })
}

/// Writes `bytes` to `path` via a synced temporary file in the same directory and a rename.
/// `before_rename` runs after the temporary file is complete (a test hook for failures).
fn write_atomic(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<()> {
    let io_err = |source: io::Error| AutogradError::Io {
        path: path.to_path_buf(),
        source,
    };
    let Some(file_name) = path.file_name() else {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a checkpoint path must name a file",
        )));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let context = |what: &str, e: io::Error| {
        io_err(io::Error::new(
            e.kind(),
            format!("{what} {}: {e}", tmp.display()),
        ))
    };

    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| context("cannot create temporary file", e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| context("cannot write temporary file", e))?;
        drop(file);
        before_rename(&tmp).map_err(|e| context("cannot finish temporary file", e))?;
        fs::rename(&tmp, path).map_err(|e| context("cannot rename temporary file", e))
    })();
    if let Err(e) = result {
        // Never leave a partial temporary file behind (it may not exist: ignore that error).
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable. Not every platform or file system can sync a directory;
    // the data is already in place, so a failure here is not an error.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
