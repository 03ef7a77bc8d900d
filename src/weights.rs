//! Weights files as read: named tensors (a state_dict) and, for nnmnist's own checkpoints,
//! the run state. Every read error names the file and what is wrong with it: not a weights
//! file, a missing key, a wrong shape or dtype, a NaN or infinity.
//!
//! The format is told by the content, not the extension:
//! - safetensors (what nnmnist writes, and `safetensors.torch.save_file`);
//! - PyTorch's own files, `torch.save`'s zip format (read by [`crate::pytorch`]; the legacy
//!   and tar formats by the `pytorch-reader` crate): a state_dict (an OrderedDict or a plain
//!   dict), a whole module, or a training checkpoint that nests either under
//!   `model_state_dict`, `state_dict` or `model` beside other entries (an optimizer state, an
//!   epoch number), which are ignored with a note. Keys saved from a wrapped model
//!   (`module.` from DistributedDataParallel/DataParallel, `_orig_mod.` from torch.compile,
//!   in any stack) are read without the wrapper's prefix, with a note.
//!
//! Memory stays bounded by construction for a zip: [`Weights::load`] reads the name, dtype,
//! shape, storage and offset of every entry, and no values; [`Weights::get`] reads one
//! tensor's values only once its dtype and shape have been checked against the model's.
//! An entry that is not one of the model's parameters is never read (its name is noted), nor
//! need it be readable (a sparse, complex, quantized or meta-device tensor).
//!
//! Model-independent access, one tensor at a time: [`TensorFile`] (or [`tensor_index`] and
//! [`read_tensor`]).
use crate::terminal::Shown;
use crate::files;
use crate::pytorch::{OpenError, PtZip};
use std::borrow::Cow;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
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
    /// F32 or F64 values (the dtype named) not read yet: a PyTorch zip's entry, read by
    /// [`Weights::get`] once its shape has been checked.
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
/// meaning of these fields ([`CHECKPOINT_FORMAT`]); absent in checkpoints of format 1.
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
    /// ([`crate::data::Split::fingerprint`]), "TRAIN/TEST"; absent in older checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// The checkpoint format this nnmnist writes. 1 (no `format` field): the MLP drew its
/// initial weights and batch orders from ChaCha8; 2: it draws them from libtorch's generator
/// ([`crate::torch_rng`]), so a seed's batch order differs from format 1's. The convnet's
/// draws are the same in both.
pub const CHECKPOINT_FORMAT: u32 = 2;

impl RunState {
    /// Parses the JSON of a checkpoint header.
    pub fn parse(json: &str) -> Result<RunState> {
        Ok(serde_json::from_str(json)?)
    }

    /// The checkpoint's format: 1 when it names none.
    pub fn format(&self) -> u32 {
        self.format.unwrap_or(1)
    }
}

/// A weights file as read: its tensors by name, and the run state if it is a checkpoint.
/// The entries of a PyTorch zip hold [`Data::Unread`] until [`Weights::get`] reads them.
pub struct Weights {
    pub path: PathBuf,
    pub entries: BTreeMap<String, Entry>,
    pub state: Option<RunState>,
    /// The open zip the unread entries are read from.
    zip: Option<PtZip>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights").field("path", &self.path).field("entries", &self.entries).field("state", &self.state).finish_non_exhaustive()
    }
}

impl Weights {
    /// Reads a weights file (see the module comment for the formats). Only a safetensors
    /// file is read whole; a PyTorch file is read tensor by tensor.
    pub fn load(path: &Path) -> Result<Weights> {
        let w = Weights::load_quiet(path)?;
        if let Some(zip) = &w.zip {
            if let Some(key) = zip.nested {
                crate::terminal::note(format_args!("note: {}: a checkpoint; reading the state_dict under \"{}\" (its other entries are ignored)", path.shown(), key.shown()));
            }
            if !zip.prefix.is_empty() {
                crate::terminal::note(format_args!(
                    "note: {}: every key starts with \"{}\" (saved from a model wrapped by DistributedDataParallel, DataParallel or torch.compile); reading the keys without it",
                    path.shown(),
                    zip.prefix
                ));
            }
        }
        Ok(w)
    }

    /// [`Weights::load`] without its notes on stderr.
    fn load_quiet(path: &Path) -> Result<Weights> {
        let size = files::check_readable(path, "weights file")?;
        let cannot = || format!("cannot read weights file {}", path.shown());
        let mut head = Vec::new();
        std::fs::File::open(path).and_then(|f| f.take(16).read_to_end(&mut head)).with_context(cannot)?;
        if looks_like_safetensors(&head) {
            let bytes = std::fs::read(path).with_context(cannot)?;
            return Weights::from_bytes(path, &bytes);
        }
        if size == 0 {
            bail!("{}: empty file, not a weights file", path.shown());
        }
        if head.starts_with(b"PK\x03\x04") {
            let zip = open_zip(path)?;
            let entries = zip.tensors.iter().map(|t| (t.name.clone(), zip_entry(t))).collect();
            return Ok(Weights { path: path.to_path_buf(), entries, state: None, zip: Some(zip) });
        }
        let (entries, state) = read_pytorch(path, Source::File, &head)?;
        Weights::checked(path, entries, state)
    }

    /// Parses the bytes of the file `path` (never panics, whatever the bytes). A PyTorch
    /// checkpoint that nests its state_dict is read from there by [`Weights::load`] only.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Weights> {
        if bytes.is_empty() {
            bail!("{}: empty file, not a weights file", path.shown());
        }
        let (entries, state) = if looks_like_safetensors(bytes) { read_safetensors(path, bytes)? } else { read_pytorch(path, Source::Bytes(bytes), bytes)? };
        Weights::checked(path, entries, state)
    }

    /// Refuses NaN and infinities.
    fn checked(path: &Path, entries: BTreeMap<String, Entry>, state: Option<RunState>) -> Result<Weights> {
        for e in entries.values() {
            if let Some((i, v)) = e.first_non_finite() {
                bail!("{}: tensor {} holds {v} (at flat index {i}): weights must be finite numbers", path.shown(), e.name.shown());
            }
        }
        Ok(Weights { path: path.to_path_buf(), entries, state, zip: None })
    }

    /// The names of the file's tensors, for messages: "a, b, c" or "no tensors".
    pub fn key_list(&self) -> String {
        if self.entries.is_empty() {
            "no tensors".to_string()
        } else {
            self.entries.keys().map(|k| k.shown().to_string()).collect::<Vec<_>>().join(", ")
        }
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
        let zip = self.zip.as_ref().expect("unread entries come from a zip");
        let t = zip.tensors.iter().rev().find(|t| t.name == name).expect("every entry is described");
        let read = zip_values(zip, t).map_err(|e| anyhow!("{path}: cannot read tensor {}: {e}", name.shown()))?;
        if let Some((i, v)) = read.first_non_finite() {
            bail!("{path}: tensor {} holds {v} (at flat index {i}): weights must be finite numbers", name.shown());
        }
        Ok(Cow::Owned(read))
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

type Parsed = (BTreeMap<String, Entry>, Option<RunState>);

/// A safetensors file starts with its header's length (u64, little-endian), then the JSON
/// header itself.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[8] == b'{'
}

pub use crate::pytorch::NESTED_KEYS;

/// Opens a `torch.save` zip (no tensor data read), its errors in words naming the file.
pub(crate) fn open_zip(path: &Path) -> Result<PtZip> {
    PtZip::open(path).map_err(|e| match e {
        OpenError::Damaged(e) => anyhow!("{}: a truncated or damaged zip file, unreadable as torch.save's format ({e})", path.shown()),
        OpenError::NotStateDict(e) => anyhow!("{}: a zip file (torch.save's format) that holds no state_dict nnmnist can read ({e})", path.shown()),
        OpenError::Refused(e) => anyhow!("{}: {e}", path.shown()),
    })
}

/// The entry standing for a zip's tensor before its values are read.
fn zip_entry(t: &crate::pytorch::PtTensor) -> Entry {
    let data = match &t.storage {
        Err(why) => Data::Unreadable(why.clone()),
        Ok(_) if t.dtype == "F32" || t.dtype == "F64" => Data::Unread(t.dtype.clone()),
        Ok(_) => Data::Other(t.dtype.clone()),
    };
    Entry { name: t.name.clone(), shape: t.shape.clone(), data }
}

/// The values of a zip's tensor: F32 and F64 read, other dtypes named only.
fn zip_values(zip: &PtZip, t: &crate::pytorch::PtTensor) -> std::result::Result<Entry, String> {
    let data = match zip_entry(t).data {
        Data::Unread(_) => {
            let bytes = zip.read(t)?;
            if t.dtype == "F32" {
                Data::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            } else {
                Data::F64(bytes.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect())
            }
        }
        Data::Unreadable(why) => return Err(why),
        other => other,
    };
    Ok(Entry { name: t.name.clone(), shape: t.shape.clone(), data })
}

/// One tensor of a weights file, as described before its values are read.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    /// F32, F64, F16, BF16, I64, I32, I16, I8, U8, Bool, C64, C128 (what the file says).
    pub dtype: String,
    /// Why its values cannot be read, if they cannot (a meta-device or sparse tensor).
    pub unreadable: Option<String>,
}

/// A weights file opened for reading one tensor at a time, whatever model it holds. A
/// PyTorch zip is described without reading any values; a safetensors file (nnmnist's own,
/// validated whole by the `safetensors` crate) and PyTorch's legacy and tar formats are read
/// whole when opened.
pub struct TensorFile {
    pub path: PathBuf,
    /// The tensors: in file order for a PyTorch zip, by name otherwise.
    pub tensors: Vec<TensorInfo>,
    /// The key a checkpoint nested its state_dict under, and the wrapper prefix removed from
    /// every key ("" if none): PyTorch zips only.
    pub nested: Option<&'static str>,
    pub prefix: String,
    weights: Weights,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<TensorFile> {
        let weights = Weights::load_quiet(path)?;
        let (tensors, nested, prefix) = match &weights.zip {
            Some(zip) => (
                zip.tensors.iter().map(|t| TensorInfo { name: t.name.clone(), shape: t.shape.clone(), dtype: t.dtype.clone(), unreadable: t.storage.as_ref().err().cloned() }).collect(),
                zip.nested,
                zip.prefix.clone(),
            ),
            None => (
                weights
                    .entries
                    .values()
                    .map(|e| {
                        let dtype = match &e.data {
                            Data::F32(_) => "F32".to_string(),
                            Data::F64(_) => "F64".to_string(),
                            Data::Other(d) | Data::Unread(d) | Data::Unreadable(d) => d.clone(),
                        };
                        TensorInfo { name: e.name.clone(), shape: e.shape.clone(), dtype, unreadable: None }
                    })
                    .collect(),
                None,
                String::new(),
            ),
        };
        Ok(TensorFile { path: path.to_path_buf(), tensors, nested, prefix, weights })
    }

    /// The values of `info` (one of [`TensorFile::tensors`]): F32 and F64 as such, any other
    /// dtype as [`Data::Other`]; an unreadable tensor is an error naming the file and why.
    pub fn read(&self, info: &TensorInfo) -> Result<Entry> {
        let path = self.path.shown();
        match &self.weights.zip {
            Some(zip) => {
                let t = zip.tensors.iter().rev().find(|t| t.name == info.name).ok_or_else(|| anyhow!("{path}: no tensor {}", info.name))?;
                zip_values(zip, t).map_err(|e| anyhow!("{path}: cannot read tensor {}: {e}", info.name))
            }
            None => self.weights.entries.get(&info.name).cloned().ok_or_else(|| anyhow!("{path}: no tensor {}", info.name)),
        }
    }

    /// The run state of an nnmnist checkpoint.
    pub fn state(&self) -> Option<&RunState> {
        self.weights.state.as_ref()
    }
}

/// The tensors of a weights file, described without reading a PyTorch zip's values.
pub fn tensor_index(path: &Path) -> Result<Vec<TensorInfo>> {
    Ok(TensorFile::open(path)?.tensors)
}

/// The values of one tensor of `path` (opening it again: for many, use [`TensorFile`]).
pub fn read_tensor(path: &Path, info: &TensorInfo) -> Result<Entry> {
    TensorFile::open(path)?.read(info)
}

/// Where a PyTorch file's bytes are.
enum Source<'a> {
    File,
    Bytes(&'a [u8]),
}

/// The key a training checkpoint nests its state_dict under: one of [`NESTED_KEYS`] that the
/// top-level dictionary holds, whose value is a state_dict (a dictionary holding tensors).
/// A state_dict itself (keys such as `model.0.weight`) nests nothing; nor does a whole
/// pickled module (`torch.save(model)`: its attribute `model` holds submodules, not tensors),
/// whose parameters read under their state_dict names.
pub(crate) fn nested_key(path: &Path) -> Option<&'static str> {
    use pytorch_reader::{PickleValue, PytorchReader};
    let PickleValue::Dict(top) = PytorchReader::read_pickle_data(path, None).ok()? else { return None };
    NESTED_KEYS.into_iter().find(|k| match top.get(*k) {
        Some(PickleValue::Dict(inner)) => inner.values().any(|v| matches!(v, PickleValue::Unsupported(t) if t.contains("Tensor") || t.contains("Parameter"))),
        _ => false,
    })
}

/// How PyTorch's legacy format starts: a pickle (protocol 2) of its magic number
/// 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// Reads a file `torch.save` wrote (see the module comment); `head` is its start.
fn read_pytorch(path: &Path, source: Source, head: &[u8]) -> Result<Parsed> {
    use pytorch_reader::{DType, PytorchReader};
    let nested = match source {
        Source::File => nested_key(path),
        Source::Bytes(_) => None,
    };
    let opened = match (source, nested) {
        (Source::File, Some(key)) => PytorchReader::with_top_level_key(path, key),
        (Source::File, None) => PytorchReader::new(path),
        (Source::Bytes(b), _) => PytorchReader::from_bytes(b.to_vec(), None),
    };
    let reader = opened.map_err(|e| {
        if head.starts_with(b"PK\x03\x04") {
            anyhow!("{}: a zip file (torch.save's format) that holds no state_dict nnmnist can read ({e})", path.shown())
        } else if head.starts_with(LEGACY_MAGIC) {
            anyhow!("{}: a PyTorch file in the legacy format (PyTorch before 1.6, or _use_new_zipfile_serialization=False) that nnmnist cannot read ({e})", path.shown())
        } else {
            anyhow!("{}: neither a safetensors nor a PyTorch file ({e})", path.shown())
        }
    })?;
    if let Some(key) = nested {
        crate::terminal::note(format_args!("note: {}: a checkpoint; reading the state_dict under \"{key}\" (its other entries are ignored)", path.shown()));
    }
    let mut entries = BTreeMap::new();
    for (name, t) in reader.tensors() {
        let bytes = || t.read().with_context(|| format!("{}: cannot read tensor {}", path.shown(), name.shown()));
        // Only weights and biases are read: a buffer or an optimizer state (any size, even a
        // huge expanded view) is named and shaped, never loaded.
        let parameter = name.ends_with(".weight") || name.ends_with(".bias");
        let data = match t.dtype() {
            DType::F32 | DType::F64 if !parameter => Data::Other(format!("{:?} (not read: not a weight or bias)", t.dtype())),
            DType::F32 => Data::F32(bytes()?.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect()),
            DType::F64 => Data::F64(bytes()?.chunks_exact(8).map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()),
            // Not read: never a parameter here, only noted or refused by name.
            other => Data::Other(format!("{other:?}")),
        };
        entries.insert(name.clone(), Entry { name: name.clone(), shape: t.shape().to_vec(), data });
    }
    Ok((entries, None))
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<Parsed> {
    let not = |e: safetensors::SafeTensorError| anyhow!("{}: not a safetensors file ({})", path.shown(), safetensors_error(&e));
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
        Some(json) => Some(RunState::parse(json).with_context(|| format!("{}: unreadable nnmnist run state in the header", path.shown()))?),
        None => None,
    };
    Ok((entries, state))
}

/// A safetensors error in words (the crate's own Display is its variant's name).
fn safetensors_error(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooLarge => "its header length is beyond the file (HeaderTooLarge)".into(),
        E::HeaderTooSmall => "shorter than a safetensors header (HeaderTooSmall)".into(),
        E::InvalidHeaderLength => "its header length is beyond the file (InvalidHeaderLength)".into(),
        E::MetadataIncompleteBuffer => "its tensors' data is cut short (MetadataIncompleteBuffer)".into(),
        E::InvalidOffset(name) => format!("tensor {}'s data offsets do not fit the file (InvalidOffset)", name.shown()),
        other => format!("{other:?}"),
    }
}
