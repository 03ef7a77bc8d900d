//! Weights files and checkpoints: safetensors with PyTorch's state_dict keys, so that
//! `model.load_state_dict(safetensors.torch.load_file(f))` works in PyTorch, plus, for a
//! checkpoint, what a resume needs in the header's `__metadata__` under the key `nnmnist`
//! (a JSON [`RunState`]; PyTorch ignores it).
//!
//! Files are written atomically: a temporary file in the same directory, fsync, rename, so a
//! crash or Ctrl-C never leaves a half-written checkpoint behind. Every read error names the
//! file and what is wrong with it (not safetensors, a missing key, a wrong shape or dtype).
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const META_KEY: &str = "nnmnist";

/// The values of one tensor, in the dtype they are stored in.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
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

    /// The values as f64 (exact for both dtypes).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
        }
    }

    /// The values as f32 (rounded when stored as f64).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match &self.data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn dtype(&self) -> Dtype {
        match self.data {
            Data::F32(_) => Dtype::F32,
            Data::F64(_) => Dtype::F64,
        }
    }
}

/// Where a run stands, stored in a checkpoint so that `--resume` continues it exactly.
/// `epochs_done` epochs are complete; when `next_batch` > 0 the run was interrupted inside
/// epoch `epochs_done` (0-based) after that many batches. The batch order of an epoch is a
/// function of (seed, epoch), so it is rebuilt rather than stored. `args` holds the
/// hyperparameters as given on the command line that started the run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub model: String,
    pub epochs_done: usize,
    pub next_batch: usize,
    pub seed: u64,
    pub args: serde_json::Value,
}

/// A weights file as read: its tensors by name, and the run state if it is a checkpoint.
#[derive(Debug)]
pub struct Weights {
    pub path: PathBuf,
    pub entries: BTreeMap<String, Entry>,
    pub state: Option<RunState>,
}

impl Weights {
    /// Reads a safetensors file (F32 or F64 tensors).
    pub fn load(path: &Path) -> Result<Weights> {
        let bytes = fs::read(path).with_context(|| format!("cannot read weights file {}", path.display()))?;
        if bytes.is_empty() {
            bail!("{}: empty file, not a safetensors weights file", path.display());
        }
        let tensors = SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file ({e:?})", path.display()))?;
        let mut entries = BTreeMap::new();
        for (name, view) in tensors.tensors() {
            let shape = view.shape().to_vec();
            let raw = view.data();
            let data = match view.dtype() {
                Dtype::F32 => Data::F32(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
                Dtype::F64 => Data::F64(raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()),
                other => bail!("{}: tensor {name} has dtype {other:?}; nnmnist reads F32 or F64", path.display()),
            };
            entries.insert(name.clone(), Entry { name, shape, data });
        }
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file ({e:?})", path.display()))?;
        let state = match header.metadata().as_ref().and_then(|m| m.get(META_KEY)) {
            Some(json) => Some(
                serde_json::from_str(json)
                    .with_context(|| format!("{}: unreadable nnmnist run state in the header", path.display()))?,
            ),
            None => None,
        };
        Ok(Weights { path: path.to_path_buf(), entries, state })
    }

    /// The tensor `name`, checked to have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&Entry> {
        let entry = self.entries.get(name).ok_or_else(|| {
            let keys: Vec<&str> = self.entries.keys().map(|k| k.as_str()).collect();
            anyhow!("{}: missing tensor {name} (the file has: {})", self.path.display(), keys.join(", "))
        })?;
        if entry.shape != shape {
            bail!("{}: tensor {name} has shape {:?}, expected {shape:?}", self.path.display(), entry.shape);
        }
        Ok(entry)
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

/// Writes `entries` (and `state`, if any) to `path` atomically.
pub fn save(path: &Path, entries: &[Entry], state: Option<&RunState>) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>)> = entries.iter().map(|e| (e.name.clone(), e.bytes())).collect();
    let views = entries
        .iter()
        .zip(&bytes)
        .map(|(e, (name, b))| Ok((name.clone(), TensorView::new(e.dtype(), e.shape.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow!("{}: cannot serialise tensors ({e:?})", path.display()))?;
    let meta = match state {
        Some(s) => Some(HashMap::from([(META_KEY.to_string(), serde_json::to_string(s)?)])),
        None => None,
    };
    let buffer = safetensors::tensor::serialize(views, &meta)
        .map_err(|e| anyhow!("{}: cannot serialise tensors ({e:?})", path.display()))?;
    write_atomic(path, &buffer)
}

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it over `path`, and
/// fsyncs the directory, so `path` holds either the old or the new contents, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let file_name = path.file_name().ok_or_else(|| anyhow!("{}: not a file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", file_name.to_string_lossy(), std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Fails now, before any training, if `path` could not be written later: its directory
/// must exist and take a new file, and `path` itself must not be a directory.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        bail!("cannot save to {}: directory {} does not exist", path.display(), dir.display());
    }
    if path.is_dir() {
        bail!("cannot save to {}: it is a directory", path.display());
    }
    let probe = dir.join(format!(".nnmnist-write-test{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .with_context(|| format!("cannot save to {}: directory {} is not writable", path.display(), dir.display()))?;
    let _ = fs::remove_file(&probe);
    if path.exists() {
        OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot save to {}: the file is not writable", path.display()))?;
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
