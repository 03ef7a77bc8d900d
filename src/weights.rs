//! Weights files as read: a model's named tensors (a state_dict) and, for nnmnist's own
//! checkpoints, the run state. Every read error names the file and what is wrong with it:
//! not a weights file, a missing key, a wrong shape or dtype, a NaN or infinity.
//!
//! Files are read through [`crate::tensors`] (safetensors and PyTorch's own `.pt`/`.pth`,
//! told by the content; a checkpoint's nested state_dict and a wrapped model's prefixes are
//! read under the state_dict's names, with a note). Memory stays bounded by construction:
//! [`Weights::load`] reads every tensor's name, dtype and shape and no values;
//! [`Weights::get`] reads one tensor's values only once its dtype and shape have been
//! checked against the model's. An entry that is not one of the model's parameters is never
//! read (its name is noted), nor need it be readable (a sparse, complex or meta-device
//! tensor).
use crate::tensors::{DType, TensorFile};
use crate::terminal::Shown;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::tensors::META_KEY;

/// The values of one tensor, in the dtype they are stored in.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Any other dtype (named): never a parameter nnmnist reads, but allowed beside them (an
    /// integer `num_batches_tracked`, say).
    Other(String),
    /// F32 or F64 values (the dtype named) not read yet: read by [`Weights::get`] once its
    /// shape has been checked.
    Unread(String),
    /// An entry whose values cannot be read, and why (a meta-device or sparse tensor): allowed
    /// beside the parameters, refused as one.
    Unreadable(String),
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
            _ => Vec::new(),
        }
    }

    /// The values as f32 (rounded when stored as f64).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
            _ => Vec::new(),
        }
    }

    /// The index and value of the first NaN or infinity, if any.
    fn first_non_finite(&self) -> Option<(usize, f64)> {
        match &self.data {
            Data::F32(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i] as f64)),
            Data::F64(v) => v.iter().position(|x| !x.is_finite()).map(|i| (i, v[i])),
            _ => None,
        }
    }
}

/// Where a run stands, stored in a checkpoint so that `--resume` continues it exactly.
/// `epochs_done` epochs are complete; when `next_batch` > 0 the run was stopped inside
/// epoch `epochs_done` (0-based) after that many batches. The batch order of an epoch is a
/// function of (seed, epoch), so it is rebuilt rather than stored. `hyper` holds the run's
/// hyperparameters (the [`crate::driver::Schedule`] and the model's own, seed included) as
/// one JSON object; the driver validates every value with the checks the flags get. `run`
/// identifies the run through its resumes (its metrics records carry it); `threads` is the
/// number of libtorch threads it trained with (its sums, so its bits, depend on it);
/// `data` fingerprints the images it trains and tests on. `format` is the version of the
/// meaning of these fields ([`CHECKPOINT_FORMAT`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunState {
    pub model: String,
    pub epochs_done: usize,
    pub next_batch: usize,
    pub hyper: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
    /// The fingerprints of the training and test images the run uses
    /// ([`crate::data::Split::fingerprint`]), "TRAIN/TEST".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// The checkpoint format this nnmnist writes and resumes: the meaning of [`RunState`]'s
/// fields, and the random draws a seed stands for (both models draw from libtorch's
/// generator, [`crate::torch_rng`]). A checkpoint without a `format` is of format 1.
pub const CHECKPOINT_FORMAT: u32 = 2;

impl RunState {
    /// Parses the JSON of a checkpoint header.
    pub fn parse(json: &str) -> Result<RunState> {
        Ok(serde_json::from_str(json)?)
    }
}

/// A weights file as read: its tensors by name (their values [`Data::Unread`] until
/// [`Weights::get`] reads them), and the run state if it is a checkpoint.
pub struct Weights {
    pub path: PathBuf,
    pub entries: BTreeMap<String, Entry>,
    pub state: Option<RunState>,
    file: TensorFile,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights").field("path", &self.path).field("entries", &self.entries).field("state", &self.state).finish_non_exhaustive()
    }
}

/// The most tensor names a message lists (a file of 200,000 tensors would make a line of
/// megabytes).
const LISTED_KEYS: usize = 30;

impl Weights {
    /// Reads a weights file's description (see the module comment), noting on stderr what
    /// was read instead of its top level.
    pub fn load(path: &Path) -> Result<Weights> {
        let w = Weights::new(TensorFile::open(path, "weights file")?)?;
        for note in w.file.notes("are ignored (not weights)") {
            crate::terminal::note(format_args!("note: {note}"));
        }
        Ok(w)
    }

    /// Reads the bytes of the file `path` (never panics, whatever the bytes).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Weights> {
        Weights::new(TensorFile::from_bytes(path, bytes.to_vec())?)
    }

    fn new(file: TensorFile) -> Result<Weights> {
        // A checkpoint's tensors outside its state_dict (an optimizer's state) are no weights.
        let entries = file
            .tensors
            .iter()
            .filter(|t| !t.outside_state_dict)
            .map(|t| {
                let data = match (t.unreadable(), t.dtype) {
                    (Some(why), _) => Data::Unreadable(why.to_string()),
                    (None, Some(DType::F32 | DType::F64)) => Data::Unread(t.dtype_short().to_string()),
                    (None, _) => Data::Other(t.dtype_short().to_string()),
                };
                (t.name.clone(), Entry { name: t.name.clone(), shape: t.shape.clone(), data })
            })
            .collect();
        let state = match file.metadata.as_ref().and_then(|m| m.get(META_KEY)) {
            Some(json) => Some(RunState::parse(json).with_context(|| format!("{}: unreadable nnmnist run state in the header", file.path.shown()))?),
            None => None,
        };
        Ok(Weights { path: file.path.clone(), entries, state, file })
    }

    /// The names of the file's tensors, for messages: "a, b, c", the first
    /// [`LISTED_KEYS`] and how many more, or "no tensors".
    pub fn key_list(&self) -> String {
        if self.entries.is_empty() {
            return "no tensors".to_string();
        }
        let mut list = self.entries.keys().take(LISTED_KEYS).map(|k| k.shown().to_string()).collect::<Vec<_>>().join(", ");
        if self.entries.len() > LISTED_KEYS {
            list.push_str(&format!(", and {} more", self.entries.len() - LISTED_KEYS));
        }
        list
    }

    /// The float tensor `name`, checked to have `shape` (before any of its values are read)
    /// and finite values.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Cow<'_, Entry>> {
        let path = self.path.shown();
        let entry = self.entries.get(name).ok_or_else(|| anyhow!("{path}: missing tensor {} (the file has: {}){}", name.shown(), self.key_list(), self.prefix_hint(name)))?;
        match &entry.data {
            Data::Other(dtype) => bail!("{path}: tensor {} has dtype {dtype}; nnmnist reads F32 or F64", name.shown()),
            Data::Unreadable(why) => bail!("{path}: tensor {} cannot be read: {why}", name.shown()),
            _ => {}
        }
        if entry.shape != shape {
            bail!("{path}: tensor {} has shape {:?}, expected {shape:?}", name.shown(), entry.shape);
        }
        let Data::Unread(_) = entry.data else { return Ok(Cow::Borrowed(entry)) };
        let t = self.file.get(name).expect("every entry is one of the file's tensors");
        let view = self.file.read(t)?;
        let dtype = view.dtype;
        let bytes = t.numel() as u64 * dtype.size() as u64;
        let raw = view.into_contiguous(bytes).map_err(|e| anyhow!("{path}: cannot read tensor {}: {e}", name.shown()))?;
        let data = match dtype {
            DType::F32 => Data::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            _ => Data::F64(raw.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()),
        };
        let read = Entry { name: name.to_string(), shape: shape.to_vec(), data };
        if let Some((i, v)) = read.first_non_finite() {
            bail!("{path}: tensor {} holds {v} (at flat index {i}): weights must be finite numbers", name.shown());
        }
        Ok(Cow::Owned(read))
    }

    /// Every entry in name order, its values read when it is a readable float tensor (as by
    /// [`Weights::get`]); the others as they are.
    pub fn read_all(&self) -> Result<Vec<Entry>> {
        self.entries
            .values()
            .map(|e| match e.data {
                Data::Unread(_) => Ok(self.get(&e.name, &e.shape)?.into_owned()),
                _ => Ok(e.clone()),
            })
            .collect()
    }

    /// For a missing `name`: a hint when every key carries one prefix before it
    /// (`foo.model.0.weight`), saved from a model wrapped in something nnmnist does not know.
    fn prefix_hint(&self, name: &str) -> String {
        let Some(key) = self.entries.keys().find(|k| k.ends_with(&format!(".{name}"))) else { return String::new() };
        let prefix = &key[..key.len() - name.len()];
        if self.entries.keys().all(|k| k.starts_with(prefix)) {
            format!("; every key starts with \"{}\": saved from a wrapped model? nnmnist removes only the prefixes module. and _orig_mod.", prefix.shown())
        } else {
            String::new()
        }
    }

    /// Notes on stderr the entries that are not among `expected` (the model's own keys),
    /// which are ignored.
    pub fn note_extras(&self, expected: &[String], model: &str) {
        let extra: Vec<String> = self.entries.keys().filter(|k| !expected.contains(k)).map(|k| k.shown().to_string()).collect();
        if !extra.is_empty() {
            let what = if extra.len() == 1 { "1 entry that is not a parameter".to_string() } else { format!("{} entries that are not parameters", extra.len()) };
            crate::terminal::note(format_args!("note: {}: ignoring {what} of the {model}: {}", self.path.shown(), extra.join(", ")));
        }
    }

    /// The run state, or an error saying the file is a plain weights file, not a checkpoint.
    pub fn run_state(&self, model: &str) -> Result<&RunState> {
        let state = self.state.as_ref().ok_or_else(|| {
            anyhow!("{}: no nnmnist run state in it, so it cannot be resumed (use --init-from to start from its weights)", self.path.shown())
        })?;
        if state.model != model {
            bail!("{}: a checkpoint of the {} model, not of the {model}", self.path.shown(), state.model);
        }
        Ok(state)
    }
}
