//! `torch.save`'s zip format (PyTorch 1.6 and later), read in two steps so that memory stays
//! bounded whatever the file holds:
//! 1. [`PtZip::open`]: the zip's directory and `data.pkl`, read by the restricted unpickler
//!    of [`crate::pickle`] (no Python object is ever built or called), give every tensor's
//!    name, dtype, shape, strides, storage and offset: no tensor data is read.
//! 2. [`PtZip::read`]: one tensor's values, read from its storage (`data/KEY`) as its
//!    strides say (a transposed, sliced, expanded or channels_last view reads as PyTorch
//!    shows it), after its extent has been checked to lie within the storage.
//!
//! Layout: `STEM/data.pkl` (the pickle), `STEM/data/KEY` (one entry per storage: raw
//! little-endian values), `STEM/byteorder`, `STEM/version`...; `torch.save` names the
//! folder after the file's stem (or `archive` for a file object), so the zip's byte layout
//! shifts with the file name's length.
//!
//! The zip is read by the `zip` crate with the archive's offset declared to be 0 (torch.save
//! never puts anything before the archive). Its automatic detection of that offset misreads
//! torch.save's files whose first directory entry is 76 bytes long, the size of the ZIP64
//! end records torch.save writes between the directory and its end record: a stem of exactly
//! 21 characters (`STEM/data.pkl` is 30 bytes, 46 + 30 = 76), where it takes the second
//! directory entry for the first and 76 bytes of junk for the archive's start ("Invalid
//! Central Directory header"). With the offset known it looks where the end record says.
//!
//! A zip that names one entry twice is refused: readers disagree on which copy counts (the
//! `zip` crate keeps the last, `torch.load` the first).
use crate::pickle::{self, Value};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use zip::read::{ArchiveOffset, Config};
use zip::{CompressionMethod, ZipArchive};

/// The largest `data.pkl` read (a state_dict's pickle is a few KB per thousand tensors).
const MAX_PICKLE: u64 = 256 << 20;

/// The keys under which training checkpoints commonly nest a state_dict (or a whole module),
/// tried in order.
pub const NESTED_KEYS: [&str; 3] = ["model_state_dict", "state_dict", "model"];

/// Element types of PyTorch storages (`torch.FloatStorage`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
    C64,
    C128,
}

impl DType {
    /// From a storage class (`torch.FloatStorage`) or a dtype (`torch.float32`).
    pub fn from_torch(name: &str) -> Option<DType> {
        Some(match name.strip_prefix("torch.")? {
            "DoubleStorage" | "float64" => DType::F64,
            "FloatStorage" | "float32" => DType::F32,
            "HalfStorage" | "float16" => DType::F16,
            "BFloat16Storage" | "bfloat16" => DType::BF16,
            "LongStorage" | "int64" => DType::I64,
            "IntStorage" | "int32" => DType::I32,
            "ShortStorage" | "int16" => DType::I16,
            "CharStorage" | "int8" => DType::I8,
            "ByteStorage" | "uint8" => DType::U8,
            "BoolStorage" | "bool" => DType::Bool,
            "ComplexFloatStorage" | "complex64" => DType::C64,
            "ComplexDoubleStorage" | "complex128" => DType::C128,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::C64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::C128 => 16,
        }
    }
}

/// Where a tensor's values are: `numel` elements of storage `data/KEY`, the tensor's element
/// `[i0, i1, ...]` at `offset + sum(i_k * strides[k])`.
#[derive(Clone, Debug, PartialEq)]
pub struct Storage {
    pub key: String,
    pub dtype: DType,
    pub offset: usize,
    pub strides: Vec<usize>,
    /// The device it was saved from (`cpu`, `cuda:0`), for messages.
    pub device: String,
}

/// One entry of the state_dict as the pickle describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct PtTensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// The dtype's name as PyTorch's storage class gives it (F32, F64, F16, I64...).
    pub dtype: String,
    /// Where its values are, or why they cannot be read (a meta-device tensor holds none; a
    /// sparse or quantized tensor is not a plain strided one).
    pub storage: Result<Storage, String>,
}

/// An open `torch.save` zip: its tensors' descriptions, and the archive to read values from.
pub struct PtZip {
    archive: Mutex<ZipArchive<BufReader<File>>>,
    /// The folder holding `data.pkl`, with its trailing slash.
    root: String,
    pub tensors: Vec<PtTensor>,
    /// The key the state_dict was nested under in a checkpoint, if it was.
    pub nested: Option<&'static str>,
    /// Wrapper prefixes removed from every key (`module.`, `_orig_mod.`), outermost first.
    pub prefix: String,
    file_len: u64,
}

/// Why a file could not be opened as a `torch.save` zip: its directory is unreadable (a
/// truncated or damaged zip), or it is a zip that is no state_dict.
pub enum OpenError {
    Damaged(String),
    NotStateDict(String),
    /// A torch.save zip nnmnist refuses, the whole reason in the words.
    Refused(String),
}

impl PtZip {
    /// Reads the directory and the pickle; no tensor data.
    pub fn open(path: &Path) -> Result<PtZip, OpenError> {
        let file = File::open(path).map_err(|e| OpenError::Damaged(e.to_string()))?;
        let file_len = file.metadata().map_err(|e| OpenError::Damaged(e.to_string()))?.len();
        let config = Config { archive_offset: ArchiveOffset::Known(0) };
        let mut archive = ZipArchive::with_config(config, BufReader::new(file)).map_err(|e| OpenError::Damaged(format!("{e}")))?;
        if archive.has_duplicate_names() {
            let which = duplicate_name(path, archive.central_directory_start()).unwrap_or_else(|| "?".into());
            return Err(OpenError::Refused(format!("a zip that holds two entries named {which}: readers disagree on which counts (torch.load takes the first), so it is refused")));
        }
        let root = archive
            .file_names()
            .filter_map(|n| n.ok())
            .filter_map(|n| n.strip_suffix("data.pkl").map(str::to_string))
            .filter(|r| r.is_empty() || r.ends_with('/'))
            .min_by_key(|r| r.len())
            .ok_or_else(|| OpenError::NotStateDict("a zip without data.pkl, so not torch.save's format".into()))?;
        let read_small = |archive: &mut ZipArchive<BufReader<File>>, name: &str, max: u64| -> Result<Option<Vec<u8>>, OpenError> {
            let Ok(mut f) = archive.by_name(name) else { return Ok(None) };
            if f.size() > max {
                return Err(OpenError::NotStateDict(format!("{name} is {} bytes, beyond the {max} read", f.size())));
            }
            let mut v = Vec::with_capacity(f.size() as usize);
            f.read_to_end(&mut v).map_err(|e| OpenError::Damaged(format!("{name}: {e}")))?;
            Ok(Some(v))
        };
        if let Some(order) = read_small(&mut archive, &format!("{root}byteorder"), 64)? {
            let order = String::from_utf8_lossy(&order).trim().to_string();
            if order != "little" {
                return Err(OpenError::Refused(format!("a PyTorch file saved on a {order}-endian machine (its byteorder entry says so): nnmnist reads little-endian files only")));
            }
        }
        let pkl = read_small(&mut archive, &format!("{root}data.pkl"), MAX_PICKLE)?.ok_or_else(|| OpenError::Damaged(format!("{root}data.pkl is listed but cannot be opened")))?;
        let top = pickle::parse(&pkl).map_err(|e| OpenError::NotStateDict(format!("data.pkl: {e}")))?;
        let (found, nested) = state_dict(&top).ok_or_else(|| OpenError::NotStateDict("its pickle holds no dictionary of tensors or module".into()))?;
        let mut tensors = Vec::new();
        for (name, v) in found {
            tensors.push(describe(name, v));
        }
        let prefix = strip_wrappers(&mut tensors);
        Ok(PtZip { archive: Mutex::new(archive), root, tensors, nested, prefix, file_len })
    }

    /// The values of `t` as little-endian bytes in row-major order (`numel * dtype size`).
    pub fn read(&self, t: &PtTensor) -> Result<Vec<u8>, String> {
        let s = t.storage.as_ref().map_err(|why| why.clone())?;
        let numel = checked_numel(&t.shape).ok_or("its element count overflows")?;
        let esize = s.dtype.size();
        // The span of storage elements the view touches.
        let mut last = s.offset;
        for (&d, &st) in t.shape.iter().zip(&s.strides) {
            if d > 1 {
                last = (d - 1).checked_mul(st).and_then(|x| x.checked_add(last)).ok_or("its strides overflow")?;
            }
        }
        let name = format!("{}data/{}", self.root, s.key);
        let mut archive = self.archive.lock().unwrap_or_else(|p| p.into_inner());
        let idx = archive.index_for_name(&name).ok_or_else(|| format!("its storage {name} is missing from the zip"))?;
        let (size, compressed, method) = {
            let f = archive.by_index_raw(idx).map_err(|e| format!("{name}: {e}"))?;
            (f.size(), f.compressed_size(), f.compression())
        };
        // What the entry claims is checked against the bytes it has before anything is
        // allocated: a stored entry holds its bytes in the file, and deflate expands at most
        // 1032 times.
        let ratio = if method == CompressionMethod::Stored { 1 } else { 1032 };
        if compressed > self.file_len || size > compressed.saturating_mul(ratio) {
            return Err(format!("its storage {name} claims {size} bytes from {compressed} in a file of {}", self.file_len));
        }
        let stored = size / esize as u64;
        if numel > 0 && last as u64 >= stored {
            return Err(format!("its view reaches element {last} of storage {name}, which holds {stored}"));
        }
        if numel == 0 {
            return Ok(Vec::new());
        }
        let (from, to) = (s.offset * esize, (last + 1) * esize);
        let mut span = vec![0u8; to - from];
        let io_err = |e: io::Error| format!("{name}: {e}");
        if method == CompressionMethod::Stored {
            let mut f = archive.by_index_seek(idx).map_err(|e| format!("{name}: {e}"))?;
            f.seek(SeekFrom::Start(from as u64)).map_err(io_err)?;
            f.read_exact(&mut span).map_err(io_err)?;
        } else {
            let mut f = archive.by_index(idx).map_err(|e| format!("{name}: {e}"))?;
            io::copy(&mut (&mut f).take(from as u64), &mut io::sink()).map_err(io_err)?;
            f.read_exact(&mut span).map_err(io_err)?;
        }
        drop(archive);
        if contiguous(&t.shape, &s.strides) {
            span.truncate(numel * esize);
            return Ok(span);
        }
        let mut out = Vec::with_capacity(numel * esize);
        let mut index = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            let at = index.iter().zip(&s.strides).map(|(i, st)| i * st).sum::<usize>() * esize;
            out.extend_from_slice(&span[at..at + esize]);
            for k in (0..index.len()).rev() {
                index[k] += 1;
                if index[k] < t.shape[k] {
                    break;
                }
                index[k] = 0;
            }
        }
        Ok(out)
    }
}

fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// Whether strides are the row-major ones of `shape` (dimensions of size 1 aside).
fn contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expect = 1;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d != 1 && s != expect {
            return false;
        }
        expect *= d;
    }
    true
}

/// The name in a zip's central directory that occurs twice, read from the raw directory
/// (the `zip` crate says that there is one, not which).
fn duplicate_name(path: &Path, start: u64) -> Option<String> {
    let mut file = File::open(path).ok()?;
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let mut seen = std::collections::HashSet::new();
    let mut at = 0;
    while bytes.get(at..at + 4)? == b"PK\x01\x02" {
        let h = bytes.get(at..at + 46)?;
        let u16at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as usize;
        let (n, x, c) = (u16at(28), u16at(30), u16at(32));
        let name = String::from_utf8_lossy(bytes.get(at + 46..at + 46 + n)?).into_owned();
        if !seen.insert(name.clone()) {
            return Some(name);
        }
        at += 46 + n + x + c;
    }
    None
}

/// (name, value) pairs in file order.
type NamedValues<'a> = Vec<(String, &'a Value)>;

/// The state_dict in the pickle's top value, as (name, value) pairs in file order, and the
/// key of a checkpoint it was nested under:
/// - a dictionary holding tensors (a state_dict, an OrderedDict or plain dict);
/// - a checkpoint, a dictionary whose value under one of [`NESTED_KEYS`] is a state_dict or
///   a whole module (its other entries, an optimizer state, are not read);
/// - a whole module (`torch.save(model)`), its parameters and buffers under their
///   state_dict names.
fn state_dict(top: &Value) -> Option<(NamedValues<'_>, Option<&'static str>)> {
    if is_module(top) {
        let mut out = Vec::new();
        flatten_module(top, "", &mut out);
        return Some((out, None));
    }
    let Value::Dict(d) = top else { return None };
    for key in NESTED_KEYS {
        match d.get(key) {
            Some(m) if is_module(m) => {
                let mut out = Vec::new();
                flatten_module(m, "", &mut out);
                return Some((out, Some(key)));
            }
            Some(Value::Dict(inner)) if inner.items.iter().any(|(_, v)| is_tensor(v)) => return Some((tensor_items(inner), Some(key))),
            _ => {}
        }
    }
    Some((tensor_items(d), None))
}

/// The tensors of a dictionary, in file order: its own under their keys, and those inside
/// nested dictionaries, lists and tuples under dotted names (`{'sub': {'w': t}}` gives
/// `sub.w`, `{'lst': [t]}` gives `lst.0`; an integer key is written as its number), so that
/// no tensor of the file goes unlisted. Other values (numbers, strings) are not tensors.
fn tensor_items(d: &pickle::Dict) -> Vec<(String, &Value)> {
    fn walk<'a>(v: &'a Value, name: String, depth: usize, out: &mut Vec<(String, &'a Value)>) {
        if is_tensor(v) {
            out.push((name, v));
            return;
        }
        // The pickle's own nesting is bounded when it is parsed; this bound only keeps the
        // names short.
        if depth > 64 {
            return;
        }
        let child = |k: &str| if name.is_empty() { k.to_string() } else { format!("{name}.{k}") };
        match v {
            Value::Dict(d) => {
                for (k, v) in &d.items {
                    if let Some(key) = key_name(k) {
                        walk(v, child(&key), depth + 1, out);
                    }
                }
            }
            Value::List(items) | Value::Tuple(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, child(&i.to_string()), depth + 1, out);
                }
            }
            _ => {}
        }
    }
    /// A dictionary key as a name: a string, or an integer written as its number.
    fn key_name(k: &Value) -> Option<String> {
        match k {
            Value::Str(k) => Some(k.clone()),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
    let mut out = Vec::new();
    for (k, v) in &d.items {
        if let Some(key) = key_name(k) {
            walk(v, key, 1, &mut out);
        }
    }
    out
}

/// Whether `v` is a call that builds a tensor (of any kind, readable or not).
fn is_tensor(v: &Value) -> bool {
    matches!(v, Value::Object { callee, .. } if callee.starts_with("torch._utils._rebuild") || callee == "torch._tensor._rebuild_from_type_v2")
}

/// The `__dict__` of a pickled `torch.nn.Module`: the BUILD state holding `_parameters`
/// and `_modules`.
fn module_state(v: &Value) -> Option<&pickle::Dict> {
    match v {
        Value::Object { state: Some(s), .. } => match s.as_ref() {
            Value::Dict(d) if d.get("_parameters").is_some() && d.get("_modules").is_some() => Some(d),
            _ => None,
        },
        _ => None,
    }
}

fn is_module(v: &Value) -> bool {
    module_state(v).is_some()
}

/// A module's parameters and buffers under their state_dict names (parameters, then
/// buffers, then each submodule, as `Module.state_dict` orders them; a None is skipped).
fn flatten_module<'a>(m: &'a Value, prefix: &str, out: &mut Vec<(String, &'a Value)>) {
    let Some(d) = module_state(m) else { return };
    for field in ["_parameters", "_buffers"] {
        if let Some(Value::Dict(p)) = d.get(field) {
            for (k, v) in &p.items {
                if let (Value::Str(k), true) = (k, is_tensor(v)) {
                    out.push((format!("{prefix}{k}"), v));
                }
            }
        }
    }
    if let Some(Value::Dict(sub)) = d.get("_modules") {
        for (k, v) in &sub.items {
            if let Value::Str(k) = k {
                flatten_module(v, &format!("{prefix}{k}."), out);
            }
        }
    }
}

/// The description of tensor `v` named `name`.
fn describe(name: String, v: &Value) -> PtTensor {
    let unreadable = |shape: Vec<usize>, dtype: String, why: String| PtTensor { name: name.clone(), shape, dtype, storage: Err(why) };
    let Value::Object { callee, args, .. } = v else { return unreadable(vec![], "?".into(), "not a tensor".into()) };
    match callee.as_str() {
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => match args.first() {
            Some(inner) => describe(name, inner),
            None => unreadable(vec![], "?".into(), "a parameter without its tensor".into()),
        },
        "torch._tensor._rebuild_from_type_v2" => match (args.first(), args.get(2)) {
            // A tensor subclass: (function, class, arguments of the function, state).
            (Some(Value::Global(f)), Some(Value::Tuple(a))) => describe(name, &Value::Object { callee: f.clone(), args: a.clone(), state: None }),
            _ => unreadable(vec![], "?".into(), "a tensor subclass nnmnist cannot read".into()),
        },
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor_v3" | "torch._utils._rebuild_tensor" => strided(&name, args).unwrap_or_else(|(shape, dtype, why)| unreadable(shape, dtype, why)),
        "torch._utils._rebuild_meta_tensor_no_storage" => {
            let dtype = match args.first() {
                Some(Value::Global(g)) => DType::from_torch(g).map(|d| format!("{d:?}")).unwrap_or_else(|| g.clone()),
                _ => "?".into(),
            };
            unreadable(ints(args.get(1)).unwrap_or_default(), dtype, "a meta-device tensor: the file holds its shape but no values".into())
        }
        other => {
            let kind = other.trim_start_matches("torch._utils._rebuild_").replace('_', " ");
            unreadable(vec![], "?".into(), format!("not a plain strided tensor ({kind}, built by {other})"))
        }
    }
}

fn ints(v: Option<&Value>) -> Option<Vec<usize>> {
    match v? {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|x| if let Value::Int(i) = x { usize::try_from(*i).ok() } else { None }).collect(),
        _ => None,
    }
}

type Unreadable = (Vec<usize>, String, String);

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, ...)`,
/// the storage a persistent id `("storage", torch.FloatStorage, "KEY", "cpu", numel)`.
fn strided(name: &str, args: &[Value]) -> Result<PtTensor, Unreadable> {
    let shape = ints(args.get(2)).ok_or((vec![], "?".to_string(), "its size is not a tuple of integers".to_string()))?;
    let strides = ints(args.get(3)).ok_or((shape.clone(), "?".to_string(), "its stride is not a tuple of integers".to_string()))?;
    let offset = match args.get(1) {
        Some(Value::Int(i)) if *i >= 0 => *i as usize,
        _ => return Err((shape, "?".into(), "its storage offset is not an integer".into())),
    };
    let Some(Value::Persistent(id)) = args.first() else { return Err((shape, "?".into(), "its storage is not a persistent reference".into())) };
    let Value::Tuple(id) = id.as_ref() else { return Err((shape, "?".into(), "its storage reference is not a tuple".into())) };
    let (class, key, device) = match (id.get(1), id.get(2), id.get(3)) {
        (Some(Value::Global(c)), Some(Value::Str(k)), Some(Value::Str(d))) => (c.clone(), k.clone(), d.clone()),
        _ => return Err((shape, "?".into(), "its storage reference is not (\"storage\", class, key, device, size)".into())),
    };
    let Some(dtype) = DType::from_torch(&class) else { return Err((shape, class.trim_start_matches("torch.").to_string(), format!("storage class {class} is unknown to nnmnist"))) };
    if strides.len() != shape.len() {
        return Err((shape, format!("{dtype:?}"), "its size and stride differ in length".into()));
    }
    if key.contains('/') || key.contains("..") {
        return Err((shape, format!("{dtype:?}"), format!("storage key {key:?} is not a plain name")));
    }
    Ok(PtTensor { name: name.to_string(), shape, dtype: format!("{dtype:?}"), storage: Ok(Storage { key, dtype, offset, strides, device }) })
}

/// Removes from every name any stack of the wrapper prefixes `module.`
/// (`DistributedDataParallel`, `DataParallel`) and `_orig_mod.` (`torch.compile`) that all
/// names share; returns what was removed ("" if nothing).
fn strip_wrappers(tensors: &mut [PtTensor]) -> String {
    let mut removed = String::new();
    if tensors.is_empty() {
        return removed;
    }
    loop {
        let Some(p) = ["module.", "_orig_mod."].into_iter().find(|p| tensors.iter().all(|t| t.name.starts_with(p) && t.name.len() > p.len())) else { return removed };
        for t in tensors.iter_mut() {
            t.name.drain(..p.len());
        }
        removed.push_str(p);
    }
}
