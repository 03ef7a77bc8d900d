//! Weights files as read: named tensors (a state_dict) and, for nnmnist's own checkpoints,
//! the run state. Every read error names the file and what is wrong with it: not a weights
//! file, a missing key, a wrong shape or dtype, a NaN or infinity.
//!
//! The format is told by the content, not the extension:
//! - safetensors (what nnmnist writes, and `safetensors.torch.save_file`);
//! - PyTorch's own files, `torch.save` (the zip format, and the legacy and tar ones), read by
//!   the `pytorch-reader` crate: a state_dict (an OrderedDict or a plain dict), or a training
//!   checkpoint that nests it under `model_state_dict`, `state_dict` or `model` beside other
//!   entries (an optimizer state, an epoch number), which are ignored with a note.
use crate::files;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The header key under which a checkpoint's [`RunState`] is stored (safetensors metadata).
pub const META_KEY: &str = "nnmnist";

/// The values of one tensor, in the dtype they are stored in.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Any other dtype (named): never a parameter nnmnist reads, but allowed beside them (an
    /// integer `num_batches_tracked`, say).
    Other(String),
}

/// One named tensor: row-major values and their shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

impl Entry {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: Vec<f32>) -> Entry {
        Entry { name: name.into(), shape, data: Data::F32(values) }
    }

    pub fn f64(name: impl Into<String>, shape: Vec<usize>, values: Vec<f64>) -> Entry {
        Entry { name: name.into(), shape, data: Data::F64(values) }
    }

    /// The values as f64 (exact for both float dtypes; empty for others, which `get` refuses).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::Other(_) => Vec::new(),
        }
    }

    /// The values as f32 (rounded when stored as f64).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::Other(_) => Vec::new(),
        }
    }

    /// The index and value of the first NaN or infinity, if any.
    fn first_non_finite(&self) -> Option<(usize, f64)> {
        match &self.data {
            Data::F32(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i] as f64)),
            Data::F64(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i])),
            Data::Other(_) => None,
        }
    }
}

/// Where a run stands, stored in a checkpoint so that `--resume` continues it exactly.
/// `epochs_done` epochs are complete; when `next_batch` > 0 the run was stopped inside
/// epoch `epochs_done` (0-based) after that many batches. The batch order of an epoch is a
/// function of (seed, epoch), so it is rebuilt rather than stored. `hyper` holds the run's
/// hyperparameters (the [`crate::driver::Schedule`] and the model's own, seed included) as
/// one JSON object; the driver validates every value with the checks the flags get.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub model: String,
    pub epochs_done: usize,
    pub next_batch: usize,
    pub hyper: serde_json::Value,
}

impl RunState {
    /// Parses the JSON of a checkpoint header.
    pub fn parse(json: &str) -> Result<RunState> {
        Ok(serde_json::from_str(json)?)
    }
}

/// A weights file as read: its tensors by name, and the run state if it is a checkpoint.
#[derive(Debug)]
pub struct Weights {
    pub path: PathBuf,
    pub entries: BTreeMap<String, Entry>,
    pub state: Option<RunState>,
}

impl Weights {
    /// Reads a weights file (see the module comment for the formats).
    pub fn load(path: &Path) -> Result<Weights> {
        files::check_readable(path, "weights file")?;
        let bytes = std::fs::read(path).with_context(|| format!("cannot read weights file {}", path.display()))?;
        Weights::from_bytes(path, &bytes)
    }

    /// Parses the bytes of the file `path` (never panics, whatever the bytes).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Weights> {
        if bytes.is_empty() {
            bail!("{}: empty file, not a weights file", path.display());
        }
        let (entries, state) = if looks_like_safetensors(bytes) { read_safetensors(path, bytes)? } else { read_pytorch(path, bytes)? };
        for e in entries.values() {
            if let Some((i, v)) = e.first_non_finite() {
                bail!("{}: tensor {} holds {v} (at flat index {i}): weights must be finite numbers", path.display(), e.name);
            }
        }
        Ok(Weights { path: path.to_path_buf(), entries, state })
    }

    /// The float tensor `name`, checked to have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&Entry> {
        let entry = self.entries.get(name).ok_or_else(|| {
            let keys: Vec<&str> = self.entries.keys().map(|k| k.as_str()).collect();
            anyhow!("{}: missing tensor {name} (the file has: {})", self.path.display(), if keys.is_empty() { "no tensors".into() } else { keys.join(", ") })
        })?;
        if let Data::Other(dtype) = &entry.data {
            bail!("{}: tensor {name} has dtype {dtype}; nnmnist reads F32 or F64", self.path.display());
        }
        if entry.shape != shape {
            bail!("{}: tensor {name} has shape {:?}, expected {shape:?}", self.path.display(), entry.shape);
        }
        Ok(entry)
    }

    /// Notes on stderr the entries that are not among `expected` (the model's own keys),
    /// which are ignored.
    pub fn note_extras(&self, expected: &[String], model: &str) {
        let extra: Vec<&str> = self.entries.keys().filter(|k| !expected.contains(k)).map(|k| k.as_str()).collect();
        if !extra.is_empty() {
            let what = if extra.len() == 1 { "1 entry that is not a parameter".to_string() } else { format!("{} entries that are not parameters", extra.len()) };
            eprintln!("nnmnist: note: {}: ignoring {what} of the {model}: {}", self.path.display(), extra.join(", "));
        }
    }

    /// The run state, or an error saying the file is a plain weights file, not a checkpoint.
    pub fn run_state(&self, model: &str) -> Result<&RunState> {
        let state = self.state.as_ref().ok_or_else(|| {
            anyhow!("{}: no nnmnist run state in it, so it cannot be resumed (use --init-from to start from its weights)", self.path.display())
        })?;
        if state.model != model {
            bail!("{}: a checkpoint of the {} model, not of the {model}", self.path.display(), state.model);
        }
        Ok(state)
    }
}

type Parsed = (BTreeMap<String, Entry>, Option<RunState>);

/// A safetensors file starts with its header's length (u64, little-endian), then the JSON
/// header itself.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[8] == b'{'
}

/// The keys under which training checkpoints commonly nest a state_dict, tried in order.
pub const NESTED_KEYS: [&str; 3] = ["model_state_dict", "state_dict", "model"];

/// Reads a file `torch.save` wrote (see the module comment).
fn read_pytorch(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    use pytorch_reader::{DType, PytorchReader};
    let nested = NESTED_KEYS.iter().find_map(|key| {
        let r = PytorchReader::from_bytes(bytes.to_vec(), Some(key)).ok()?;
        (!r.is_empty()).then_some((r, *key))
    });
    let reader = match nested {
        Some((r, key)) => {
            eprintln!("nnmnist: note: {}: a checkpoint; reading the state_dict under \"{key}\" (its other entries are ignored)", path.display());
            r
        }
        None => PytorchReader::from_bytes(bytes.to_vec(), None).map_err(|e| {
            if bytes.starts_with(b"PK\x03\x04") {
                anyhow!("{}: a zip file (torch.save's format) that holds no state_dict nnmnist can read ({e})", path.display())
            } else {
                let head = read_safetensors(path, bytes).err().map(|e| format!("{e:#}")).unwrap_or_default();
                anyhow!("{head}; nor a PyTorch file ({e})")
            }
        })?,
    };
    let mut entries = BTreeMap::new();
    for (name, t) in reader.tensors() {
        let raw = t.read().with_context(|| format!("{}: cannot read tensor {name}", path.display()))?;
        let data = match t.dtype() {
            DType::F32 => Data::F32(raw.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F64 => Data::F64(raw.chunks_exact(8).map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()),
            other => Data::Other(format!("{other:?}")),
        };
        entries.insert(name.clone(), Entry { name: name.clone(), shape: t.shape().to_vec(), data });
    }
    Ok((entries, None))
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let not = |e: safetensors::SafeTensorError| anyhow!("{}: not a safetensors file ({e:?})", path.display());
    let tensors = SafeTensors::deserialize(bytes).map_err(not)?;
    let mut entries = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let data = match view.dtype() {
            Dtype::F32 => Data::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            Dtype::F64 => Data::F64(raw.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()),
            other => Data::Other(format!("{other:?}")),
        };
        entries.insert(name.clone(), Entry { name, shape, data });
    }
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not)?;
    let state = match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
        Some(json) => Some(RunState::parse(json).with_context(|| format!("{}: unreadable nnmnist run state in the header", path.display()))?),
        None => None,
    };
    Ok((entries, state))
}
