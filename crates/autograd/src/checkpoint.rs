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
    if max > usize::MAX as u128 {
        usize::MAX
    } else {
        max as usize
    }
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
            panic!(
                "Checkpoint::from_module: the module visits `{dup}` twice; parameter names must be unique"
            );
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
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .map(NamedTensor::to_tensor)
    }

    /// The file this checkpoint was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    fn display_path(&self) -> PathBuf {
        self.source
            .clone()
            .unwrap_or_else(|| PathBuf::from(IN_MEMORY))
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
        let mut file =
            File::create(&tmp).map_err(|e| context("cannot create temporary file", e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::randn;
    use crate::optim::test_util::grads_of;
    use crate::optim::{Adam, Optimizer};

    #[derive(Debug, Clone)]
    struct Layer {
        weight: Param,
        bias: Param,
    }
    impl Parameterized for Layer {
        fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
            v.param("weight", &self.weight);
            v.param("bias", &self.bias);
        }
        fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
            v.param("weight", &mut self.weight);
            v.param("bias", &mut self.bias);
        }
    }

    #[derive(Debug, Clone)]
    struct Net {
        embed: Param,
        layers: Vec<Layer>,
    }
    impl Parameterized for Net {
        fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
            v.param("embed", &self.embed);
            v.child("layers", &self.layers);
        }
        fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
            v.param("embed", &mut self.embed);
            v.child("layers", &mut self.layers);
        }
    }

    fn net(seed: u64, hidden: usize) -> Net {
        Net {
            embed: Param::new(randn(&[6, 4], seed)),
            layers: (0..2)
                .map(|i| Layer {
                    weight: Param::new(randn(&[hidden, 4], seed + 10 + i)),
                    bias: Param::new(randn(&[hidden], seed + 20 + i)),
                })
                .collect(),
        }
    }

    fn values(m: &Net) -> Vec<(String, Vec<usize>, Vec<u32>)> {
        m.named_params()
            .into_iter()
            .map(|(n, p)| {
                (
                    n,
                    p.shape().to_vec(),
                    p.value().iter().map(|x| x.to_bits()).collect(),
                )
            })
            .collect()
    }

    fn format_reason(e: AutogradError) -> String {
        match e {
            AutogradError::Format { reason, .. } => reason,
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    fn mismatch_reason(e: AutogradError) -> String {
        match e {
            AutogradError::Mismatch { reason, .. } => reason,
            other => panic!("expected a Mismatch error, got {other:?}"),
        }
    }

    /// A saved checkpoint file and its bytes.
    fn saved(dir: &Path) -> (PathBuf, Vec<u8>) {
        let path = dir.join("model.ckpt");
        Checkpoint::from_module(&net(1, 3))
            .with_metadata("config", "[model]\ndim = 4\n")
            .save(&path)
            .unwrap();
        let bytes = fs::read(&path).unwrap();
        (path, bytes)
    }

    #[test]
    fn round_trip_is_bit_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.ckpt");
        let mut model = net(1, 3);
        // Special values survive bit for bit.
        let specials = [
            0.0_f32,
            -0.0,
            f32::MIN_POSITIVE / 2.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(0x7fc0_1234),
        ];
        model.layers[1].weight.value_mut().as_slice_mut().unwrap()[..6].copy_from_slice(&specials);
        let mut opt = Adam::new(0.01);
        let g = grads_of(&[(&model.embed, randn(&[6, 4], 9))], &[]);
        opt.step(&mut model, &g);
        let state = opt.state();
        Checkpoint::from_module(&model)
            .with_metadata("config", "[model]\ndim = 4\n")
            .with_metadata("vocab.actions", "repin\nclick\n")
            .with_metadata("empty", "")
            .with_optimizer_state(state.clone())
            .save(&path)
            .unwrap();

        let ckpt = Checkpoint::load(&path).unwrap();
        assert_eq!(ckpt.source(), Some(path.as_path()));
        let names: Vec<&str> = ckpt.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "embed",
                "layers.0.weight",
                "layers.0.bias",
                "layers.1.weight",
                "layers.1.bias"
            ]
        );
        assert_eq!(ckpt.metadata("config"), Some("[model]\ndim = 4\n"));
        assert_eq!(ckpt.metadata("vocab.actions"), Some("repin\nclick\n"));
        assert_eq!(ckpt.metadata("empty"), Some(""));
        assert_eq!(ckpt.metadata("missing"), None);
        assert_eq!(ckpt.metadata_map().len(), 3);
        assert_eq!(ckpt.optimizer_state(), Some(&state));
        assert_eq!(
            ckpt.tensor("layers.0.weight").unwrap(),
            *model.layers[0].weight.value()
        );
        assert!(ckpt.tensor("nope").is_none());

        let mut fresh = net(50, 3);
        assert_ne!(values(&fresh), values(&model));
        ckpt.restore_into(&mut fresh).unwrap();
        assert_eq!(values(&fresh), values(&model));

        // Bytes are a pure function of the content; to_bytes / from_bytes agree with the file.
        let again = Checkpoint::from_bytes(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(again.to_bytes(), fs::read(&path).unwrap());
        assert_eq!(again.source(), None);

        // Restoring the optimizer state continues training identically.
        let mut opt2 = Adam::new(0.5);
        opt2.load_state(ckpt.optimizer_state().unwrap().clone(), &fresh)
            .unwrap();
        let g1 = grads_of(&[(&model.embed, randn(&[6, 4], 11))], &[]);
        let g2 = grads_of(&[(&fresh.embed, randn(&[6, 4], 11))], &[]);
        opt.step(&mut model, &g1);
        opt2.step(&mut fresh, &g2);
        assert_eq!(values(&fresh), values(&model));
    }

    #[test]
    fn save_leaves_no_temporary_file_and_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (path, first) = saved(dir.path());
        Checkpoint::from_module(&net(2, 3)).save(&path).unwrap();
        assert_ne!(fs::read(&path).unwrap(), first);
        let entries: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(entries, ["model.ckpt"]);
        // A path that names no file is an I/O error.
        let ck = Checkpoint::from_module(&net(2, 3));
        assert!(ck.save("").is_err());
    }

    #[test]
    fn truncated_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = saved(dir.path());
        let n = bytes.len();
        let cut_path = dir.path().join("cut.ckpt");
        for cut in [1, 5, 8, 12, 20, 23, 24, 25, n / 2, n - 1] {
            fs::write(&cut_path, &bytes[..cut]).unwrap();
            let reason = format_reason(Checkpoint::load(&cut_path).unwrap_err());
            assert!(reason.starts_with("truncated"), "cut {cut}: {reason}");
            if cut >= HEADER_LEN {
                let want = format!(
                    "expected {} bytes of payload, found {}",
                    n - HEADER_LEN,
                    cut - HEADER_LEN
                );
                assert!(reason.contains(&want), "cut {cut}: {reason}");
            }
            let reason = format_reason(Checkpoint::from_bytes(&bytes[..cut]).unwrap_err());
            assert!(reason.starts_with("truncated"), "cut {cut}: {reason}");
        }
        // Extra bytes after the payload.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"junk");
        fs::write(&cut_path, &longer).unwrap();
        let reason = format_reason(Checkpoint::load(&cut_path).unwrap_err());
        assert!(reason.starts_with("trailing data"), "{reason}");
        // The original still loads.
        Checkpoint::load(&path).unwrap();
    }

    #[test]
    fn empty_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.ckpt");
        fs::write(&path, b"").unwrap();
        let e = Checkpoint::load(&path).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("empty.ckpt") && msg.contains("empty file (0 bytes)"),
            "{msg}"
        );
    }

    #[test]
    fn flipped_payload_bytes_fail_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (_, bytes) = saved(dir.path());
        let path = dir.path().join("flipped.ckpt");
        for pos in [HEADER_LEN, HEADER_LEN + 7, bytes.len() / 2, bytes.len() - 1] {
            for bit in [0x01_u8, 0x80] {
                let mut b = bytes.clone();
                b[pos] ^= bit;
                fs::write(&path, &b).unwrap();
                let reason = format_reason(Checkpoint::load(&path).unwrap_err());
                assert!(
                    reason.starts_with("checksum mismatch"),
                    "byte {pos}: {reason}"
                );
            }
        }
        // A flipped CRC byte is caught too.
        let mut b = bytes.clone();
        b[21] ^= 0x10;
        assert!(
            format_reason(Checkpoint::from_bytes(&b).unwrap_err()).starts_with("checksum mismatch")
        );
        // A corrupted length is reported as truncation or trailing data, never decoded.
        let len = (bytes.len() - HEADER_LEN) as u64;
        for (claimed, prefix) in [
            (len + 1, "truncated"),
            (len | 1 << 62, "truncated"),
            (len - 1, "trailing data"),
        ] {
            let mut b = bytes.clone();
            b[12..20].copy_from_slice(&claimed.to_le_bytes());
            let reason = format_reason(Checkpoint::from_bytes(&b).unwrap_err());
            assert!(reason.starts_with(prefix), "length {claimed}: {reason}");
            fs::write(&path, &b).unwrap();
            let reason = format_reason(Checkpoint::load(&path).unwrap_err());
            assert!(reason.starts_with(prefix), "length {claimed}: {reason}");
        }
    }

    #[test]
    fn foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("foreign");
        let text = b"[model]\nname = \"closeup\"\nlayers = 2\n";
        let random: Vec<u8> = randn(&[4096], 3)
            .iter()
            .map(|x| x.to_bits() as u8)
            .collect();
        let shorts: [&[u8]; 3] = [b"x", b"CLOSEUX", b"\x89PNG\r\n\x1a\n0000000000000000000000"];
        for bytes in [&text[..], &random, shorts[0], shorts[1], shorts[2]] {
            fs::write(&path, bytes).unwrap();
            let reason = format_reason(Checkpoint::load(&path).unwrap_err());
            assert_eq!(reason, "not a Closeup checkpoint (bad magic)");
        }
        // A directory or a missing file is an I/O error, not a format error.
        assert!(matches!(
            Checkpoint::load(dir.path()),
            Err(AutogradError::Io { .. })
        ));
        assert!(matches!(
            Checkpoint::load(dir.path().join("missing")),
            Err(AutogradError::Io { .. })
        ));
    }

    #[test]
    fn wrong_version_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut bytes) = saved(dir.path());
        bytes[8..12].copy_from_slice(&7u32.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let e = Checkpoint::load(&path).unwrap_err();
        assert_eq!(
            format_reason(e),
            "unsupported format version 7 (this build reads 1)"
        );
    }

    /// Payloads with a valid frame and checksum but bad content: decode errors, no panic and no
    /// huge allocation.
    #[test]
    fn hostile_payloads_with_valid_checksums() {
        // A sequence length of u64::MAX (bincode varint marker 0xFD + 8 bytes).
        let huge_len = frame(&[0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        let reason = format_reason(Checkpoint::from_bytes(&huge_len).unwrap_err());
        assert!(reason.starts_with("payload does not decode"), "{reason}");
        // One tensor claiming 2^40 floats (over the size limit) or 2^30 floats (under it) with a
        // few bytes of data.
        for claimed in [1u64 << 40, 1 << 30] {
            let mut p = vec![1u8, 1, b'x', 1, 0xFC];
            p.extend_from_slice(&(1u32 << 31).to_le_bytes());
            p.push(0xFD);
            p.extend_from_slice(&claimed.to_le_bytes());
            p.extend_from_slice(&[0; 16]);
            let reason = format_reason(Checkpoint::from_bytes(&frame(&p)).unwrap_err());
            assert!(reason.starts_with("payload does not decode"), "{reason}");
        }
        // Empty and garbage payloads.
        for payload in [&[][..], &[0xFF; 64][..]] {
            let reason = format_reason(Checkpoint::from_bytes(&frame(payload)).unwrap_err());
            assert!(reason.starts_with("payload does not decode"), "{reason}");
        }
        let encode = |tensors: Vec<NamedTensor>| {
            let p = Payload {
                tensors,
                metadata: BTreeMap::new(),
                optimizer: None,
            };
            frame(&bincode::serde::encode_to_vec(&p, bincode::config::standard()).unwrap())
        };
        let t = |name: &str, shape: Vec<usize>, n: usize| NamedTensor {
            name: name.into(),
            shape,
            data: vec![0.5; n],
        };
        // Shape and data disagree.
        let reason = format_reason(
            Checkpoint::from_bytes(&encode(vec![t("w", vec![2, 3], 5)])).unwrap_err(),
        );
        assert_eq!(reason, "tensor `w` has shape [2, 3] but 5 values");
        // A shape whose element count overflows.
        let reason = format_reason(
            Checkpoint::from_bytes(&encode(vec![t("w", vec![usize::MAX, 3], 0)])).unwrap_err(),
        );
        assert!(reason.contains("tensor `w` has shape"), "{reason}");
        // Duplicate names.
        let reason = format_reason(
            Checkpoint::from_bytes(&encode(vec![t("w", vec![1], 1), t("w", vec![1], 1)]))
                .unwrap_err(),
        );
        assert_eq!(reason, "tensor `w` appears twice");
        // Trailing bytes inside the checksummed payload.
        let mut p = bincode::serde::encode_to_vec(
            Payload {
                tensors: vec![],
                metadata: BTreeMap::new(),
                optimizer: None,
            },
            bincode::config::standard(),
        )
        .unwrap();
        p.push(0);
        let reason = format_reason(Checkpoint::from_bytes(&frame(&p)).unwrap_err());
        assert_eq!(reason, "1 unread bytes after the payload");
    }

    #[test]
    fn mismatched_models_are_rejected_and_left_unchanged() {
        let ckpt = Checkpoint::from_module(&net(1, 3));

        // Shape mismatch: both shapes named.
        let mut other = net(2, 5);
        let before = values(&other);
        let reason = mismatch_reason(ckpt.restore_into(&mut other).unwrap_err());
        assert!(
            reason.contains(
                "`layers.0.weight` has shape [3, 4] in the checkpoint but [5, 4] in the model"
            ),
            "{reason}"
        );
        assert!(
            reason.contains("`layers.1.bias` has shape [3] in the checkpoint but [5] in the model"),
            "{reason}"
        );
        assert_eq!(values(&other), before);

        // Missing parameter (the model has a third layer).
        let mut bigger = net(2, 3);
        bigger.layers.push(bigger.layers[0].clone());
        let before = values(&bigger);
        let reason = mismatch_reason(ckpt.restore_into(&mut bigger).unwrap_err());
        assert_eq!(
            reason,
            "`layers.2.weight` (shape [3, 4]) is missing from the checkpoint; \
             `layers.2.bias` (shape [3]) is missing from the checkpoint"
        );
        assert_eq!(values(&bigger), before);

        // Extra parameter (the model has one layer).
        let mut smaller = net(2, 3);
        smaller.layers.pop();
        let before = values(&smaller);
        let e = ckpt.restore_into(&mut smaller).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(IN_MEMORY), "{msg}");
        let reason = mismatch_reason(e);
        assert!(
            reason.contains(
                "the checkpoint has `layers.1.weight` (shape [3, 4]), which the model does not"
            ),
            "{reason}"
        );
        assert_eq!(values(&smaller), before);

        // Loaded from a file, the error names the file.
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = saved(dir.path());
        let e = Checkpoint::load(&path)
            .unwrap()
            .restore_into(&mut smaller)
            .unwrap_err();
        assert!(matches!(&e, AutogradError::Mismatch { path: p, .. } if p == &path));
    }

    #[test]
    #[should_panic(expected = "visits `w` twice")]
    fn from_module_rejects_duplicate_names() {
        struct Dup(Param);
        impl Parameterized for Dup {
            fn visit_params<'a>(&'a self, v: &mut ParamVisitor<'_, 'a>) {
                v.param("w", &self.0);
                v.param("w", &self.0);
            }
            fn visit_params_mut(&mut self, v: &mut ParamVisitorMut<'_>) {
                v.param("w", &mut self.0);
            }
        }
        let _ = Checkpoint::from_module(&Dup(Param::new(randn(&[2], 0))));
    }

    #[test]
    fn failed_write_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let (path, old) = saved(dir.path());
        let new = Checkpoint::from_module(&net(9, 3)).to_bytes();
        let tmp = dir
            .path()
            .join(format!("model.ckpt.tmp-{}", std::process::id()));

        // Failure after the temporary file is written (injected before the rename).
        let e = write_atomic(&path, &new, |t| {
            assert_eq!(t, tmp);
            assert_eq!(fs::read(t).unwrap(), new);
            Err(io::Error::other("injected failure"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("injected failure"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), old);
        assert!(!tmp.exists(), "temporary file removed");

        // The temporary path cannot be created (a directory is in the way).
        fs::create_dir(&tmp).unwrap();
        let e = Checkpoint::from_module(&net(9, 3)).save(&path).unwrap_err();
        assert!(matches!(e, AutogradError::Io { .. }), "{e:?}");
        assert_eq!(fs::read(&path).unwrap(), old);
        assert!(tmp.is_dir(), "someone else's directory is not removed");
        fs::remove_dir(&tmp).unwrap();

        // The rename fails (the target is a non-empty directory): temp file removed.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), b"x").unwrap();
        let e = Checkpoint::from_module(&net(9, 3))
            .save(&blocked)
            .unwrap_err();
        assert!(e.to_string().contains("cannot rename"), "{e}");
        assert_eq!(fs::read(blocked.join("keep")).unwrap(), b"x");
        let mut entries: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        entries.sort();
        assert_eq!(entries, ["blocked", "model.ckpt"]);
        assert_eq!(Checkpoint::load(&path).unwrap().to_bytes(), old);
    }

    #[test]
    fn missing_or_non_directory_parent_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::remove_dir(&sub).unwrap();
        let ck = Checkpoint::from_module(&net(1, 3));
        let e = ck.save(sub.join("m.ckpt")).unwrap_err();
        assert!(
            matches!(&e, AutogradError::Io { path, .. } if path == &sub.join("m.ckpt")),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("cannot create temporary file"),
            "{e}"
        );

        let file = dir.path().join("plain.txt");
        fs::write(&file, b"not a directory").unwrap();
        let e = ck.save(file.join("m.ckpt")).unwrap_err();
        assert!(matches!(e, AutogradError::Io { .. }), "{e:?}");
        assert_eq!(fs::read(&file).unwrap(), b"not a directory");
    }
}
