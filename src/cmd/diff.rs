//! `nnmnist diff A B`: where two files of named tensors part, for anyone porting a PyTorch
//! model (two state_dicts, or two dumps of intermediate tensors: one from PyTorch, one from
//! the port). No model is assumed: any two files nnmnist can read, in any mix of formats.
//!
//! - Formats (told by the content): safetensors (read header first, then one tensor at a
//!   time from its offsets), and `torch.save`'s `.pt`/`.pth` (a state_dict, or a training
//!   checkpoint nesting one, read through the `pytorch-reader` crate, one tensor at a time).
//!   So memory holds at most one tensor of each file, as f64, whatever the files' size.
//! - Values are compared in f64 (exact for every dtype but 64-bit integers beyond 2^53).
//!   B is the expected side, as in `torch.testing.assert_close(A, B)`: an element is within
//!   tolerance when |a - b| <= atol + rtol*|b|, with assert_close's default (rtol, atol)
//!   for B's dtype ([`DType::default_tolerance`]), or `--rtol`/`--atol` for every dtype, or
//!   `--exact` for bit identity. NaN equals NaN only at the same place (assert_close's
//!   `equal_nan=True`); an infinity equals only the same infinity.
//! - Order of the rows: the order a file records under the safetensors metadata key
//!   [`ORDER_KEY`] (a JSON list of names: `nnmnist trace`, the reference scripts' traces and
//!   scripts/reference/dump_tensors.py record their causal order there), A's first, else
//!   B's; without one, A's data order (safetensors) or name order (`.pt`: the reader does
//!   not keep the pickle's order). Names only in the other file go after their predecessor
//!   in that file. `--sort name` sorts by name, numbers by value (`layer.2` before `layer.10`).
//! - Names only in A or only in B, and shape or dtype disagreements, are differences.
//! - Exit status as diff(1): 0 when every tensor is within tolerance, 1 when any differs
//!   (the error [`Differ`]), 2 on trouble (an unreadable file, a bad flag), with the file
//!   and the reason.
use crate::files;
use crate::terminal::Shown;
use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The safetensors metadata key under which a writer records its tensors' order (a JSON
/// list of names, e.g. `["model.0", "model.1", "loss", ...]`): a trace's causal order,
/// which the data's order (by dtype, then name) loses.
pub const ORDER_KEY: &str = "order";

/// The rows' order.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// The order a file records (a trace's causal order), else A's order
    File,
    /// By name, numbers by value
    Name,
}

/// What counts as equal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// |a - b| <= atol + rtol*|b|; each `None` is the dtype's default.
    Close { rtol: Option<f64>, atol: Option<f64> },
    /// Bit for bit (same dtype, same bytes).
    Exact,
}

/// A resolved `nnmnist diff` command.
#[derive(Debug, Clone)]
pub struct DiffSpec {
    /// The file checked.
    pub a: PathBuf,
    /// The reference (expected).
    pub b: PathBuf,
    pub tolerance: Tolerance,
    pub sort: SortOrder,
    /// Shell-style patterns (`*`, `?`, `[...]`); a tensor is compared when its name matches
    /// one. Empty: every tensor.
    pub only: Vec<glob::Pattern>,
}

impl DiffSpec {
    /// Checks the tolerances and compiles the patterns.
    pub fn new(a: PathBuf, b: PathBuf, rtol: Option<f64>, atol: Option<f64>, exact: bool, sort: SortOrder, only: &[String]) -> Result<DiffSpec> {
        for (flag, v) in [("--rtol", rtol), ("--atol", atol)] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("{flag} must be a finite number >= 0, not {v}");
                }
            }
        }
        if exact && (rtol.is_some() || atol.is_some()) {
            bail!("--exact asks for bit identity: leave out --rtol and --atol");
        }
        let only = only
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| anyhow!("--only {}: not a pattern ({e})", p.shown())))
            .collect::<Result<_>>()?;
        let tolerance = if exact { Tolerance::Exact } else { Tolerance::Close { rtol, atol } };
        Ok(DiffSpec { a, b, tolerance, sort, only })
    }
}

/// The files differ (exit status 1); the table has said where.
#[derive(Debug)]
pub struct Differ(pub usize);

impl std::fmt::Display for Differ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the files differ in {} tensor(s)", self.0)
    }
}

impl std::error::Error for Differ {}

// ------------------------------------------------------------------------------ dtypes

/// The element types `nnmnist diff` reads (torch's names in [`DType::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    /// torch's name.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::U16 => "uint16",
            DType::I32 => "int32",
            DType::U32 => "uint32",
            DType::I64 => "int64",
            DType::U64 => "uint64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// torch.testing.assert_close's default (rtol, atol): float16 (1e-3, 1e-5), bfloat16
    /// (1.6e-2, 1e-5), float32 (1.3e-6, 1e-5), float64 (1e-7, 1e-7); integers and bool exact.
    pub fn default_tolerance(self) -> (f64, f64) {
        match self {
            DType::F16 => (1e-3, 1e-5),
            DType::BF16 => (1.6e-2, 1e-5),
            DType::F32 => (1.3e-6, 1e-5),
            DType::F64 => (1e-7, 1e-7),
            _ => (0.0, 0.0),
        }
    }

    fn of_safetensors(d: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match d {
            S::BOOL => DType::Bool,
            S::U8 => DType::U8,
            S::I8 => DType::I8,
            S::I16 => DType::I16,
            S::U16 => DType::U16,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I32 => DType::I32,
            S::U32 => DType::U32,
            S::F32 => DType::F32,
            S::F64 => DType::F64,
            S::I64 => DType::I64,
            S::U64 => DType::U64,
            _ => return None,
        })
    }

    /// From the dtype names of [`crate::pytorch::PtTensor`] (F32, BF16, I64, Bool...).
    fn of_name(name: &str) -> Option<DType> {
        Some(match name {
            "F64" => DType::F64,
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U8" => DType::U8,
            "Bool" => DType::Bool,
            _ => return None,
        })
    }

    fn of_pytorch(d: pytorch_reader::DType) -> DType {
        use pytorch_reader::DType as P;
        match d {
            P::F64 => DType::F64,
            P::F32 => DType::F32,
            P::F16 => DType::F16,
            P::BF16 => DType::BF16,
            P::I64 => DType::I64,
            P::I32 => DType::I32,
            P::I16 => DType::I16,
            P::I8 => DType::I8,
            P::U64 => DType::U64,
            P::U32 => DType::U32,
            P::U16 => DType::U16,
            P::U8 => DType::U8,
            P::Bool => DType::Bool,
        }
    }

    /// Little-endian element bytes as f64 values.
    pub fn to_f64(self, raw: &[u8]) -> Vec<f64> {
        fn conv<const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
            raw.chunks_exact(N).map(|c| f(c.try_into().expect("chunks of N bytes"))).collect()
        }
        match self {
            DType::Bool | DType::U8 => raw.iter().map(|&b| b as f64).collect(),
            DType::I8 => raw.iter().map(|&b| b as i8 as f64).collect(),
            DType::I16 => conv(raw, |b| i16::from_le_bytes(b) as f64),
            DType::U16 => conv(raw, |b| u16::from_le_bytes(b) as f64),
            DType::F16 => conv(raw, |b| half::f16::from_le_bytes(b).to_f64()),
            DType::BF16 => conv(raw, |b| half::bf16::from_le_bytes(b).to_f64()),
            DType::I32 => conv(raw, |b| i32::from_le_bytes(b) as f64),
            DType::U32 => conv(raw, |b| u32::from_le_bytes(b) as f64),
            DType::F32 => conv(raw, |b| f32::from_le_bytes(b) as f64),
            DType::I64 => conv(raw, |b| i64::from_le_bytes(b) as f64),
            DType::U64 => conv(raw, |b| u64::from_le_bytes(b) as f64),
            DType::F64 => conv(raw, f64::from_le_bytes),
        }
    }

    /// A value of this dtype as it would print in it (f32's shortest digits for float32).
    fn show(self, v: f64) -> String {
        match self {
            DType::F16 | DType::BF16 | DType::F32 => format!("{}", v as f32),
            _ => format!("{v}"),
        }
    }
}

// ------------------------------------------------------------------------------ reading

/// One tensor of a file, known before its data is read.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A file of named tensors, read one tensor at a time.
pub trait TensorFile {
    fn path(&self) -> &Path;
    /// Every tensor, in the file's order (see the module comment).
    fn index(&self) -> &[TensorInfo];
    /// Whether that order is one the writer recorded ([`ORDER_KEY`]).
    fn recorded_order(&self) -> bool;
    /// The tensor's elements as little-endian bytes (row-major).
    fn read(&mut self, info: &TensorInfo) -> Result<Vec<u8>>;
    /// How many tensors of the file could not be read, and so are not in the index (noted
    /// when the file was opened). The files cannot be called the same if any is.
    fn left_out(&self) -> usize {
        0
    }
}

/// Opens `path` (safetensors or a PyTorch file, told by the content) and reads its index.
pub fn open(path: &Path) -> Result<Box<dyn TensorFile>> {
    let size = files::check_readable(path, "tensor file")?;
    if size == 0 {
        bail!("{}: empty file, not a tensor file", path.shown());
    }
    let mut head = Vec::new();
    File::open(path).and_then(|f| f.take(9).read_to_end(&mut head)).with_context(|| format!("cannot read tensor file {}", path.shown()))?;
    if head.len() > 8 && head[8] == b'{' {
        Ok(Box::new(Safetensors::open(path, size)?))
    } else {
        Ok(Box::new(Pytorch::open(path, &head)?))
    }
}

/// A safetensors file: the 8-byte little-endian header length, the JSON header, the data.
struct Safetensors {
    path: PathBuf,
    file: File,
    /// Where the data section starts.
    data_start: u64,
    index: Vec<TensorInfo>,
    /// Data offsets by name, relative to `data_start`.
    offsets: HashMap<String, (u64, u64)>,
    recorded: bool,
}

/// safetensors' own bound on a header.
const MAX_HEADER: u64 = 100_000_000;

impl Safetensors {
    fn open(path: &Path, size: u64) -> Result<Safetensors> {
        let p = path.shown();
        let mut file = File::open(path).with_context(|| format!("cannot read tensor file {p}"))?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).with_context(|| format!("cannot read tensor file {p}"))?;
        let n = u64::from_le_bytes(len);
        if n > MAX_HEADER || n > size - 8 {
            bail!("{p}: not a safetensors file (its header length, {n} bytes, runs past the file's {size} bytes)");
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).with_context(|| format!("cannot read tensor file {p}"))?;
        let text = std::str::from_utf8(&header).map_err(|_| anyhow!("{p}: not a safetensors file (its header is not UTF-8)"))?;
        let meta: safetensors::tensor::Metadata = serde_json::from_str(text).map_err(|e| anyhow!("{p}: not a safetensors file (its header: {e})"))?;
        let data_len = size - 8 - n;
        let mut rows = Vec::new();
        let mut offsets = HashMap::new();
        for (name, t) in meta.tensors() {
            let shown = name.shown();
            let dtype = DType::of_safetensors(t.dtype).ok_or_else(|| anyhow!("{p}: tensor {shown} has dtype {:?}, which nnmnist diff does not read", t.dtype))?;
            let bytes = t.shape.iter().try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64));
            let (s, e) = (t.data_offsets.0 as u64, t.data_offsets.1 as u64);
            if bytes != e.checked_sub(s) {
                bail!("{p}: tensor {shown}: its data offsets [{s}, {e}) do not hold shape {:?} of {}", t.shape, dtype.name());
            }
            if e > data_len {
                bail!("{p}: tensor {shown}: its data [{s}, {e}) runs past the end of the file (the data section has {data_len} bytes; a truncated file?)");
            }
            offsets.insert(name.clone(), (s, e));
            rows.push(TensorInfo { name, shape: t.shape.clone(), dtype });
        }
        rows.sort_by_key(|r| offsets[&r.name]);
        // Another writer may use the key for something else: then it is noted and left alone.
        let recorded = match meta.metadata().as_ref().and_then(|m| m.get(ORDER_KEY)).map(|json| serde_json::from_str::<Vec<String>>(json)) {
            Some(Ok(order)) => {
                let rank: HashMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
                // Names the list leaves out keep their data order, after the listed ones.
                rows.sort_by_key(|r| rank.get(r.name.as_str()).copied().unwrap_or(usize::MAX));
                true
            }
            Some(Err(e)) => {
                crate::terminal::note(format_args!("note: {p}: its metadata \"{ORDER_KEY}\" is not a JSON list of names ({e}); using the data's order"));
                false
            }
            None => false,
        };
        Ok(Safetensors { path: path.to_path_buf(), file, data_start: 8 + n, index: rows, offsets, recorded })
    }
}

impl TensorFile for Safetensors {
    fn path(&self) -> &Path {
        &self.path
    }
    fn index(&self) -> &[TensorInfo] {
        &self.index
    }
    fn recorded_order(&self) -> bool {
        self.recorded
    }
    fn read(&mut self, info: &TensorInfo) -> Result<Vec<u8>> {
        let (s, e) = self.offsets[&info.name];
        let cannot = || format!("{}: cannot read tensor {}", self.path.shown(), info.name.shown());
        let mut bytes = vec![0u8; (e - s) as usize];
        self.file.seek(SeekFrom::Start(self.data_start + s)).with_context(cannot)?;
        self.file.read_exact(&mut bytes).with_context(cannot)?;
        Ok(bytes)
    }
}

/// A `torch.save` file: the zip format through [`crate::pytorch`] (every entry described
/// from the pickle before any value is read), the legacy and tar formats through
/// `pytorch-reader` (which parses the pickle, then reads each tensor's storage when asked).
struct Pytorch {
    path: PathBuf,
    source: PytorchSource,
    index: Vec<TensorInfo>,
    /// Tensors of the file that nnmnist cannot read (noted when it was opened).
    left_out: usize,
}

enum PytorchSource {
    Zip(crate::pytorch::PtZip),
    Reader(pytorch_reader::PytorchReader),
}

impl Pytorch {
    fn open(path: &Path, head: &[u8]) -> Result<Pytorch> {
        if head.starts_with(b"PK\x03\x04") {
            return Pytorch::open_zip(path);
        }
        use pytorch_reader::PytorchReader;
        let nested = crate::weights::nested_key(path);
        let opened = match nested {
            Some(key) => PytorchReader::with_top_level_key(path, key),
            None => PytorchReader::new(path),
        };
        let reader = opened.map_err(|e| anyhow!("{}: neither a safetensors nor a PyTorch file ({e})", path.shown()))?;
        if let Some(key) = nested {
            crate::terminal::note(format_args!("note: {}: a checkpoint; comparing the state_dict under \"{key}\" (its other entries are left out)", path.shown()));
        }
        let mut index: Vec<TensorInfo> = reader.tensors().iter().map(|(name, t)| TensorInfo { name: name.clone(), shape: t.shape().to_vec(), dtype: DType::of_pytorch(t.dtype()) }).collect();
        index.sort_by(|x, y| natural_cmp(&x.name, &y.name));
        Ok(Pytorch { path: path.to_path_buf(), source: PytorchSource::Reader(reader), index, left_out: 0 })
    }

    /// torch.save's zip: tensors nnmnist cannot read (a meta-device, sparse or complex one)
    /// are left out with a note.
    fn open_zip(path: &Path) -> Result<Pytorch> {
        let zip = crate::weights::open_zip(path)?;
        if let Some(key) = zip.nested {
            crate::terminal::note(format_args!("note: {}: a checkpoint; comparing the state_dict under \"{key}\" (its other entries are left out)", path.display()));
        }
        if !zip.prefix.is_empty() {
            crate::terminal::note(format_args!("note: {}: every key starts with \"{}\" (a wrapped model's); comparing the keys without it", path.display(), zip.prefix));
        }
        let (mut index, mut left_out) = (Vec::new(), Vec::new());
        for t in &zip.tensors {
            match (DType::of_name(&t.dtype), &t.storage) {
                (Some(dtype), Ok(_)) => index.push(TensorInfo { name: t.name.clone(), shape: t.shape.clone(), dtype }),
                (_, Err(why)) => left_out.push(format!("{} ({why})", t.name.shown())),
                (None, Ok(_)) => left_out.push(format!("{} (dtype {})", t.name.shown(), t.dtype)),
            }
        }
        if !left_out.is_empty() {
            crate::terminal::note(format_args!("note: {}: {} tensor(s) nnmnist cannot read, not compared: {}", path.shown(), left_out.len(), left_out.join(", ")));
        }
        index.sort_by(|x, y| natural_cmp(&x.name, &y.name));
        Ok(Pytorch { path: path.to_path_buf(), source: PytorchSource::Zip(zip), index, left_out: left_out.len() })
    }
}

impl TensorFile for Pytorch {
    fn path(&self) -> &Path {
        &self.path
    }
    fn index(&self) -> &[TensorInfo] {
        &self.index
    }
    fn recorded_order(&self) -> bool {
        false
    }
    fn left_out(&self) -> usize {
        self.left_out
    }
    fn read(&mut self, info: &TensorInfo) -> Result<Vec<u8>> {
        let cannot = || format!("{}: cannot read tensor {}", self.path.shown(), info.name.shown());
        let bytes = match &self.source {
            PytorchSource::Zip(zip) => {
                let t = zip.tensors.iter().rev().find(|t| t.name == info.name).ok_or_else(|| anyhow!("{}", cannot()))?;
                zip.read(t).map_err(|e| anyhow!("{}: {e}", cannot()))?
            }
            PytorchSource::Reader(reader) => {
                let t = reader.get(&info.name).ok_or_else(|| anyhow!("{}", cannot()))?;
                // pytorch-reader refuses big-endian files, so these are little-endian bytes.
                t.read().with_context(cannot)?
            }
        };
        if bytes.len() != info.numel() * info.dtype.size() {
            bail!("{}: {} bytes for shape {:?} of {}", cannot(), bytes.len(), info.shape, info.dtype.name());
        }
        Ok(bytes)
    }
}

// ------------------------------------------------------------------------------ names

/// Names in order, numbers by value: `layer.2` < `layer.10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(&rb) {
        let o = match (x, y) {
            ((true, p), (true, q)) => {
                let (p, q) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                p.len().cmp(&q.len()).then(p.cmp(q))
            }
            ((_, p), (_, q)) => p.cmp(q),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ra.len().cmp(&rb.len()).then(a.cmp(b))
}

/// `primary`'s names, with the names only `secondary` has placed after their predecessor
/// in `secondary` (at the start when they come first there).
pub fn merge_order(primary: &[&str], secondary: &[&str]) -> Vec<String> {
    let known: HashSet<&str> = primary.iter().copied().collect();
    let mut after: HashMap<Option<&str>, Vec<&str>> = HashMap::new();
    let mut anchor = None;
    for &n in secondary {
        if known.contains(n) {
            anchor = Some(n);
        } else {
            after.entry(anchor).or_default().push(n);
        }
    }
    let mut out: Vec<String> = after.remove(&None).unwrap_or_default().into_iter().map(String::from).collect();
    for &n in primary {
        out.push(n.to_string());
        out.extend(after.remove(&Some(n)).unwrap_or_default().into_iter().map(String::from));
    }
    out
}

// ------------------------------------------------------------------------------ comparing

/// One tensor compared: A against B (expected), same shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub numel: usize,
    /// Over the elements where neither side is NaN.
    pub max_abs: f64,
    pub max_rel: f64,
    pub mean_abs: f64,
    pub median_abs: f64,
    /// Elements outside tolerance (NaN on one side only included).
    pub outside: usize,
    /// Elements NaN on one side only.
    pub nan_one_side: usize,
    /// The first element outside tolerance: (flat index, a, b).
    pub first: Option<(usize, f64, f64)>,
}

/// Compares `a` with `e` (expected) elementwise with (rtol, atol); with `exact_bytes`
/// (the raw bytes of each side and the element size), "equal" is bit identity instead.
/// `a` is reused as scratch space for the differences.
pub fn compare(mut a: Vec<f64>, e: &[f64], rtol: f64, atol: f64, exact_bytes: Option<(&[u8], &[u8], usize)>) -> Stats {
    let numel = e.len();
    let (mut outside, mut nan_one_side, mut first) = (0, 0, None);
    let (mut max_abs, mut max_rel, mut sum) = (0.0f64, 0.0f64, 0.0f64);
    let mut k = 0;
    for i in 0..numel {
        let (x, y) = (a[i], e[i]);
        let (d, close) = if x.is_nan() || y.is_nan() {
            if !(x.is_nan() && y.is_nan()) {
                nan_one_side += 1;
            }
            (None, x.is_nan() && y.is_nan())
        } else if x.is_infinite() || y.is_infinite() {
            (Some(if x == y { 0.0 } else { f64::INFINITY }), x == y)
        } else {
            let d = (x - y).abs();
            (Some(d), d <= atol + rtol * y.abs())
        };
        let equal = match exact_bytes {
            Some((ra, rb, size)) => ra[i * size..(i + 1) * size] == rb[i * size..(i + 1) * size],
            None => close,
        };
        if !equal {
            outside += 1;
            first.get_or_insert((i, x, y));
        }
        if let Some(d) = d {
            let r = if d == 0.0 { 0.0 } else { d / y.abs() };
            max_abs = max_abs.max(d);
            max_rel = max_rel.max(r);
            sum += d;
            a[k] = d;
            k += 1;
        }
    }
    let diffs = &mut a[..k];
    let median_abs = if k == 0 {
        0.0
    } else {
        let mid = k / 2;
        let (lower, m, _) = diffs.select_nth_unstable_by(mid, f64::total_cmp);
        let m = *m;
        if k % 2 == 1 {
            m
        } else {
            let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (below + m) / 2.0
        }
    };
    let mean_abs = if k == 0 { 0.0 } else { sum / k as f64 };
    Stats { numel, max_abs, max_rel, mean_abs, median_abs, outside, nan_one_side, first }
}

// ------------------------------------------------------------------------------ the table

/// How one row ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Verdict {
    Within,
    Outside,
    OnlyA,
    OnlyB,
    Shape,
    Dtype,
}

fn shape_text(shape: &[usize]) -> String {
    if shape.is_empty() {
        "scalar".into()
    } else {
        shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
    }
}

fn num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.3e}")
    }
}

/// The row-major index of flat element `i` of `shape`: "[2, 0, 5]".
fn position(mut i: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for (slot, &d) in idx.iter_mut().zip(shape).rev() {
        if d > 0 {
            *slot = i % d;
            i /= d;
        }
    }
    format!("[{}]", idx.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
}

/// Runs the comparison and prints the table; `Err(Differ)` when the files differ.
pub fn run(spec: &DiffSpec) -> Result<()> {
    let mut fa = open(&spec.a)?;
    let mut fb = open(&spec.b)?;
    let ia: HashMap<String, TensorInfo> = fa.index().iter().map(|t| (t.name.clone(), t.clone())).collect();
    let ib: HashMap<String, TensorInfo> = fb.index().iter().map(|t| (t.name.clone(), t.clone())).collect();
    let names_a: Vec<&str> = fa.index().iter().map(|t| t.name.as_str()).collect();
    let names_b: Vec<&str> = fb.index().iter().map(|t| t.name.as_str()).collect();
    let mut order = match spec.sort {
        SortOrder::File if !fa.recorded_order() && fb.recorded_order() => merge_order(&names_b, &names_a),
        _ => merge_order(&names_a, &names_b),
    };
    if spec.sort == SortOrder::Name {
        order.sort_by(|x, y| natural_cmp(x, y));
    }
    if !spec.only.is_empty() {
        // Each pattern must match something: one that matches nothing is most likely a typo,
        // and its tensors would silently go unchecked.
        let unmatched: Vec<String> = spec.only.iter().filter(|p| !order.iter().any(|n| p.matches(n))).map(|p| p.as_str().shown().to_string()).collect();
        if !unmatched.is_empty() {
            bail!("--only {}: matches none of the {} tensor names of {} and {}", unmatched.join(", --only "), order.len(), spec.a.shown(), spec.b.shown());
        }
        order.retain(|n| spec.only.iter().any(|p| p.matches(n)));
    }
    let dtypes: Vec<DType> = {
        let mut seen = Vec::new();
        for n in &order {
            for t in [ia.get(n), ib.get(n)].into_iter().flatten() {
                if !seen.contains(&t.dtype) {
                    seen.push(t.dtype);
                }
            }
        }
        seen
    };
    let name_w = order.iter().map(|n| n.shown().to_string().chars().count()).max().unwrap_or(0).max(6);
    let shape_w = order.iter().filter_map(|n| ia.get(n).or(ib.get(n))).map(|t| shape_text(&t.shape).len()).max().unwrap_or(0).max(5);
    let mut out = String::new();
    let _ = writeln!(out, "A: {}", spec.a.shown());
    let _ = writeln!(out, "B: {} (expected)", spec.b.shown());
    let _ = writeln!(out, "{}", tolerance_line(spec.tolerance, &dtypes));
    let _ = writeln!(out);
    let head = format!(
        "{:<name_w$}  {:<shape_w$}  {:<8}  {:>10}  {:>10}  {:>10}  {:>10}  {:>20}  note",
        "tensor", "shape", "dtype", "max abs", "max rel", "mean abs", "median abs", "outside"
    );
    let _ = writeln!(out, "{head}");
    let _ = writeln!(out, "{}", "-".repeat(head.len()));
    crate::terminal::print(std::mem::take(&mut out))?;

    let mut counts: HashMap<Verdict, usize> = HashMap::new();
    let mut first: Option<&str> = None;
    for name in &order {
        let shown = name.shown().to_string();
        let dash = "-";
        let (verdict, line) = match (ia.get(name), ib.get(name)) {
            (Some(t), None) | (None, Some(t)) => {
                let (v, side) = if ia.contains_key(name) { (Verdict::OnlyA, "A") } else { (Verdict::OnlyB, "B") };
                let cells = format!("{dash:>10}  {dash:>10}  {dash:>10}  {dash:>10}  {dash:>20}");
                (v, format!("{shown:<name_w$}  {:<shape_w$}  {:<8}  {cells}  only in {side}", shape_text(&t.shape), t.dtype.name()))
            }
            (Some(ta), Some(tb)) if ta.shape != tb.shape => {
                let cells = format!("{dash:>10}  {dash:>10}  {dash:>10}  {dash:>10}  {dash:>20}");
                (Verdict::Shape, format!("{shown:<name_w$}  {:<shape_w$}  {:<8}  {cells}  shape differs: B {}", shape_text(&ta.shape), ta.dtype.name(), shape_text(&tb.shape)))
            }
            (Some(ta), Some(tb)) => {
                let (ra, rb) = (fa.read(ta)?, fb.read(tb)?);
                let (rtol, atol) = row_tolerance(spec.tolerance, ta.dtype, tb.dtype);
                let (va, vb) = (ta.dtype.to_f64(&ra), tb.dtype.to_f64(&rb));
                // Integers and bools under their default (exact) tolerance are compared by their
                // bits too: f64 cannot tell 64-bit integers beyond 2^53 apart.
                let default_exact = !ta.dtype.is_float() && spec.tolerance == (Tolerance::Close { rtol: None, atol: None });
                let exact = ((spec.tolerance == Tolerance::Exact || default_exact) && ta.dtype == tb.dtype).then_some((&ra[..], &rb[..], ta.dtype.size()));
                let s = compare(va, &vb, rtol, atol, exact);
                drop((ra, rb));
                let mut notes = Vec::new();
                if ta.dtype != tb.dtype {
                    notes.push(format!("dtype differs: B {}", tb.dtype.name()));
                }
                if s.nan_one_side > 0 {
                    notes.push(format!("{} NaN on one side only", s.nan_one_side));
                }
                if let Some((i, x, y)) = s.first {
                    notes.push(format!("first at {}: A {} B {}", position(i, &ta.shape), ta.dtype.show(x), tb.dtype.show(y)));
                }
                let v = if ta.dtype != tb.dtype {
                    Verdict::Dtype
                } else if s.outside > 0 {
                    Verdict::Outside
                } else {
                    Verdict::Within
                };
                let cells = format!(
                    "{:>10}  {:>10}  {:>10}  {:>10}  {:>20}",
                    num(s.max_abs),
                    num(s.max_rel),
                    num(s.mean_abs),
                    num(s.median_abs),
                    format!("{} of {}", s.outside, s.numel)
                );
                (v, format!("{shown:<name_w$}  {:<shape_w$}  {:<8}  {cells}  {}", shape_text(&ta.shape), ta.dtype.name(), notes.join("; ")))
            }
            (None, None) => unreachable!("every name comes from one of the files"),
        };
        *counts.entry(verdict).or_default() += 1;
        if verdict != Verdict::Within && first.is_none() {
            first = Some(name);
        }
        crate::terminal::print(format!("{}\n", line.trim_end()))?;
    }
    let c = |v| counts.get(&v).copied().unwrap_or(0);
    let differ = order.len() - c(Verdict::Within);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "tensors: {} in all, {} within tolerance, {} outside it, {} only in A, {} only in B, {} of another shape, {} of another dtype",
        order.len(),
        c(Verdict::Within),
        c(Verdict::Outside),
        c(Verdict::OnlyA),
        c(Verdict::OnlyB),
        c(Verdict::Shape),
        c(Verdict::Dtype)
    );
    let _ = writeln!(out, "first divergence: {}", first.map(|n| n.shown().to_string()).unwrap_or_else(|| "none".into()));
    crate::terminal::print(out)?;
    // Trouble (exit 2), as diff(1): what was not compared could differ.
    let unread: Vec<String> = [(&spec.a, fa.left_out()), (&spec.b, fb.left_out())].iter().filter(|(_, n)| *n > 0).map(|(p, n)| format!("{n} in {}", p.shown())).collect();
    if !unread.is_empty() {
        bail!("tensors that nnmnist cannot read were not compared ({}; see the notes above): the files may differ there", unread.join(", "));
    }
    if order.is_empty() {
        bail!("{} and {} hold no tensors to compare", spec.a.shown(), spec.b.shown());
    }
    if differ > 0 {
        return Err(Differ(differ).into());
    }
    Ok(())
}

/// (rtol, atol) of one row: the flags, else B's dtype's defaults (the looser of the two
/// dtypes' when they differ; such a row is a difference anyway).
fn row_tolerance(t: Tolerance, a: DType, b: DType) -> (f64, f64) {
    match t {
        Tolerance::Exact => (0.0, 0.0),
        Tolerance::Close { rtol, atol } => {
            let (da, db) = (a.default_tolerance(), b.default_tolerance());
            let d = if a == b { db } else { (da.0.max(db.0), da.1.max(db.1)) };
            (rtol.unwrap_or(d.0), atol.unwrap_or(d.1))
        }
    }
}

/// The header line saying what "within tolerance" means here.
fn tolerance_line(t: Tolerance, dtypes: &[DType]) -> String {
    let rule = "within tolerance: |A - B| <= atol + rtol*|B|";
    let nan = "NaN equals NaN only at the same place, an infinity only the same infinity";
    match t {
        Tolerance::Exact => "within tolerance: bit for bit equal (--exact)".into(),
        Tolerance::Close { rtol, atol } => {
            let per: Vec<String> = dtypes
                .iter()
                .map(|d| {
                    let (r, a) = d.default_tolerance();
                    let (r, a) = (rtol.unwrap_or(r), atol.unwrap_or(a));
                    if r == 0.0 && a == 0.0 {
                        format!("{} exact", d.name())
                    } else {
                        format!("{} rtol {r:e} atol {a:e}", d.name())
                    }
                })
                .collect();
            let source = match (rtol, atol) {
                (None, None) => "torch.testing.assert_close's defaults",
                (Some(_), Some(_)) => "--rtol and --atol",
                (Some(_), None) => "--rtol, the dtype's default atol",
                (None, Some(_)) => "--atol, the dtype's default rtol",
            };
            let list = if per.is_empty() { String::new() } else { format!(": {}", per.join(", ")) };
            format!("{rule} ({source}{list}); {nan}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_is_relative_to_b_and_nan_matches_only_nan() {
        let s = compare(vec![1.0, 2.0 + 1e-5, f64::NAN, f64::NAN, f64::INFINITY], &[1.0, 2.0, f64::NAN, 0.0, f64::INFINITY], 1e-6, 1e-6, None);
        // 1e-5 > 1e-6 + 1e-6*2: outside; NaN vs NaN equal; NaN vs 0 outside; inf vs inf equal.
        assert_eq!((s.outside, s.nan_one_side), (2, 1));
        assert_eq!(s.first.map(|f| f.0), Some(1));
        let s = compare(vec![f64::INFINITY], &[1e300], 1.0, 1.0, None);
        assert_eq!((s.outside, s.max_abs), (1, f64::INFINITY), "inf is close to nothing finite, whatever the tolerance");
    }

    #[test]
    fn median_and_mean_of_the_differences() {
        let s = compare(vec![1.0, 2.0, 3.0, 4.0], &[0.0, 0.0, 0.0, 0.0], 0.0, 10.0, None);
        assert_eq!((s.median_abs, s.mean_abs, s.max_abs, s.outside), (2.5, 2.5, 4.0, 0));
        assert_eq!(s.max_rel, f64::INFINITY, "a difference from 0 is infinitely relative");
    }

    #[test]
    fn exact_is_bit_identity() {
        // -0.0 == 0.0 as numbers, not as bits.
        let (a, b) = ((-0.0f32).to_le_bytes(), 0.0f32.to_le_bytes());
        let s = compare(vec![-0.0], &[0.0], 0.0, 0.0, Some((&a, &b, 4)));
        assert_eq!(s.outside, 1);
    }

    #[test]
    fn names_sort_numbers_by_value_and_merge_after_their_predecessor() {
        let mut v = vec!["layer.10.w", "layer.2.w", "layer.1.w", "a"];
        v.sort_by(|x, y| natural_cmp(x, y));
        assert_eq!(v, ["a", "layer.1.w", "layer.2.w", "layer.10.w"]);
        assert_eq!(merge_order(&["x", "y", "z"], &["w", "x", "q", "z", "r"]), ["w", "x", "q", "y", "z", "r"]);
    }

    #[test]
    fn half_precision_and_integers_read_as_their_values() {
        assert_eq!(DType::F16.to_f64(&half::f16::from_f32(0.5).to_le_bytes()), [0.5]);
        assert_eq!(DType::BF16.to_f64(&half::bf16::from_f32(-2.0).to_le_bytes()), [-2.0]);
        assert_eq!(DType::I64.to_f64(&(-7i64).to_le_bytes()), [-7.0]);
        assert_eq!(position(7, &[2, 3, 4]), "[0, 1, 3]");
    }
}
