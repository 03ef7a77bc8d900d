//! Tensor files, read one way everywhere: safetensors, and `torch.save`'s zip and legacy
//! formats, told apart by their content. [`TensorFile::open`] reads a file's description
//! (the safetensors header; a pickle, which describes without executing anything) and lists
//! every tensor it holds under one unique name, with its dtype and shape, or refuses the
//! file naming the place it cannot account for; no tensor values are read then.
//! [`TensorFile::read`] reads one tensor's values: only the bytes its storage really holds
//! (a stride-0 view of one element reads that element), checked against the file first.
//!
//! Memory is bounded by the file's real size, never by what it claims: a safetensors header
//! is at most [`safetensors::MAX_HEADER`] bytes; a pickle and the values it describes may
//! take at most [`pickle_budget`] of memory; a storage's claimed size is checked against the
//! bytes the file has before anything is allocated, and allocations are fallible.
pub mod dtype;
mod input;
mod legacy;
pub mod pickle;
pub mod safetensors;
pub mod torch;
mod zip;

pub use dtype::DType;
pub use input::{alloc, pickle_budget};
pub use torch::{Others, NESTED_KEYS};

use input::Source;

use crate::terminal::Shown;
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The safetensors metadata key under which an nnmnist checkpoint stores its run state.
pub const META_KEY: &str = "nnmnist";

/// The safetensors metadata key under which a writer records its tensors' order (a JSON
/// list of names, e.g. `["model.0", "model.1", "loss", ...]`): a trace's causal order,
/// which the data's order (by dtype, then name) loses.
pub const ORDER_KEY: &str = "order";

/// How a file was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    /// `torch.save`'s zip format (PyTorch 1.6 and later).
    TorchZip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)` and PyTorch before 1.6.
    TorchLegacy,
}

/// One tensor of a file, as described before its values are read.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Unique within the file (see [`torch`] for how a `.pt`'s names are made).
    pub name: String,
    pub shape: Vec<usize>,
    /// None when the file names a dtype nnmnist does not know.
    pub dtype: Option<DType>,
    /// Outside the state_dict a `.pt` checkpoint nests ([`TensorFile::nested`]): an
    /// optimizer's state, say, named by its full path.
    pub outside_state_dict: bool,
    place: std::result::Result<Place, String>,
}

impl Tensor {
    /// Why its values cannot be read, if they cannot (a meta-device or sparse tensor).
    pub fn unreadable(&self) -> Option<&str> {
        self.place.as_ref().err().map(String::as_str)
    }

    /// Its dtype as safetensors spells it (`F32`), or `?`.
    pub fn dtype_short(&self) -> &'static str {
        self.dtype.map_or("?", DType::short)
    }

    /// The element count, which can exceed every machine's memory (an expanded view).
    pub fn numel(&self) -> u128 {
        self.shape.iter().map(|&d| d as u128).product()
    }
}

/// Where a tensor's values are.
#[derive(Clone, Debug, PartialEq)]
struct Place {
    storage: Storage,
    /// In elements, from the storage's start.
    offset: usize,
    strides: Vec<usize>,
    /// The storage's element count as the file describes it (a `.pt`'s persistent id), which
    /// must be what the storage holds.
    claimed: Option<u64>,
}

/// A run of bytes holding a storage's elements.
#[derive(Clone, Debug, PartialEq)]
enum Storage {
    /// `len` bytes at `start` in the file.
    Range { start: u64, len: u64 },
    /// An entry of a zip (torch.save's `STEM/data/KEY`).
    ZipEntry(String),
}

/// A tensor's values: the bytes of the part of its storage it covers, and the strides (in
/// elements, within those bytes) that lay its elements out.
#[derive(Debug)]
pub struct View {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl View {
    /// Whether its elements are laid out row-major, one after the other.
    pub fn is_contiguous(&self) -> bool {
        contiguous(&self.shape, &self.strides)
    }

    /// The byte offset of the element at flat row-major index `i`.
    pub fn byte_at(&self, mut i: u128) -> usize {
        let mut at = 0usize;
        for (&d, &s) in self.shape.iter().zip(&self.strides).rev() {
            if d > 0 {
                at += (i % d as u128) as usize * s;
                i /= d as u128;
            }
        }
        at * self.dtype.size()
    }

    /// The elements in row-major order, as little-endian bytes (the view laid out; fails
    /// rather than allocate more than `max_bytes`).
    pub fn into_contiguous(self, max_bytes: u64) -> std::result::Result<Vec<u8>, String> {
        let numel: u128 = self.shape.iter().map(|&d| d as u128).product();
        let bytes = numel * self.dtype.size() as u128;
        if self.is_contiguous() {
            let mut b = self.bytes;
            b.truncate(bytes as usize);
            return Ok(b);
        }
        if bytes > max_bytes as u128 {
            return Err(format!("its {numel} elements would take {bytes} bytes laid out, more than the {max_bytes} allowed here"));
        }
        let mut out = alloc(bytes as u64)?;
        let esize = self.dtype.size();
        for i in 0..numel {
            let at = self.byte_at(i);
            out.extend_from_slice(&self.bytes[at..at + esize]);
        }
        Ok(out)
    }
}

/// Whether strides are the row-major ones of `shape` (dimensions of size 1 aside).
fn contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expect = 1usize;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d != 1 && s != expect {
            return false;
        }
        expect = expect.saturating_mul(d);
    }
    true
}

/// What a tensor's bytes are read through.
enum Reader {
    Plain(Source),
    Zip(Box<::zip::ZipArchive<std::io::BufReader<Source>>>),
}

/// An open tensor file: every tensor described, values read on demand.
pub struct TensorFile {
    /// The file, for messages.
    pub path: PathBuf,
    pub format: Format,
    /// Every tensor, in the file's order (safetensors: data order; `.pt`: the pickle's).
    pub tensors: Vec<Tensor>,
    /// A safetensors file's `__metadata__`.
    pub metadata: Option<BTreeMap<String, String>>,
    /// The key a `.pt` checkpoint nested its state_dict under.
    pub nested: Option<&'static str>,
    /// The wrapper prefixes removed from the state_dict's names ("" if none).
    pub prefix: String,
    /// The values of a `.pt` file that are not tensors (none in a safetensors file).
    pub others: Others,
    /// Each name's place in `tensors`: a lookup costs the same in a file of a million
    /// tensors as in one of ten.
    index: HashMap<String, usize>,
    reader: Mutex<Reader>,
    len: u64,
}

/// How PyTorch's legacy format starts: a pickle (protocol 2) of its magic number
/// 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

impl TensorFile {
    /// Opens `path`, a regular file (anything else is refused before it is read), and
    /// describes its tensors. `what` names it in messages ("weights file", "tensor file").
    pub fn open(path: &Path, what: &str) -> Result<TensorFile> {
        let (file, len) = crate::files::open_readable(path, what)?;
        TensorFile::from_source(path, Box::new(file), len, what)
    }

    /// Describes the tensors of `bytes`, the contents of `path` (never panics, whatever the
    /// bytes).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<TensorFile> {
        let len = bytes.len() as u64;
        TensorFile::from_source(path, Box::new(Cursor::new(bytes)), len, "tensor file")
    }

    fn from_source(path: &Path, mut src: Source, len: u64, what: &str) -> Result<TensorFile> {
        let p = path.shown();
        if len == 0 {
            bail!("{p}: empty file, not a {what}");
        }
        let mut head = Vec::new();
        (&mut src).take(16).read_to_end(&mut head).map_err(|e| anyhow!("cannot read {p}: {e}"))?;
        src.seek(SeekFrom::Start(0)).map_err(|e| anyhow!("cannot read {p}: {e}"))?;
        let file = |format, tensors: Vec<Tensor>, metadata, nested, prefix, others, reader| {
            let index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
            TensorFile { path: path.to_path_buf(), format, tensors, metadata, nested, prefix, others, index, reader: Mutex::new(reader), len }
        };
        if safetensors::looks_like(&head) {
            let (tensors, metadata) = open_safetensors(&mut src, len).map_err(|e| anyhow!("{p}: not a safetensors file ({e})"))?;
            return Ok(file(Format::Safetensors, tensors, metadata, None, String::new(), Others::default(), Reader::Plain(src)));
        }
        if head.starts_with(b"PK\x03\x04") {
            let (archive, listing, storages) = zip::open(src, len).map_err(|e| anyhow!("{p}: {e}"))?;
            let tensors = placed(listing.tensors, |key| storages.get(key).map(|name| Storage::ZipEntry(name.clone())));
            return Ok(file(Format::TorchZip, tensors, None, listing.nested, listing.prefix, listing.others, Reader::Zip(Box::new(archive))));
        }
        if head.starts_with(LEGACY_MAGIC) {
            let (listing, storages) = legacy::open(&mut src, len).map_err(|e| anyhow!("{p}: a PyTorch file in the legacy format (PyTorch before 1.6, or _use_new_zipfile_serialization=False) that nnmnist cannot read ({e})"))?;
            let tensors = placed(listing.tensors, |key| storages.get(key).map(|&(start, len)| Storage::Range { start, len }));
            return Ok(file(Format::TorchLegacy, tensors, None, listing.nested, listing.prefix, listing.others, Reader::Plain(src)));
        }
        if is_tar(&mut src) {
            bail!("{p}: a PyTorch file in the tar format of PyTorch 0.1 to 0.3, which nnmnist does not read: load it in PyTorch and save it again");
        }
        bail!("{p}: neither a safetensors nor a PyTorch file (it starts with neither a safetensors header, a zip, nor PyTorch's legacy magic number)");
    }

    /// Notes on what was read instead of the file's top level: the nested key of a
    /// checkpoint, the wrapper prefix removed (none when neither). `others` says what the
    /// reader does with a checkpoint's tensors outside its state_dict ("are ignored").
    pub fn notes(&self, others: &str) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(key) = self.nested {
            let n = self.tensors.iter().filter(|t| t.outside_state_dict).count();
            let rest = if n == 0 { String::new() } else { format!("; its {n} other tensor(s) {others}") };
            notes.push(format!("{}: a checkpoint; its state_dict under \"{key}\" is read under the state_dict's own names{rest}", self.path.shown()));
        }
        if !self.prefix.is_empty() {
            notes.push(format!(
                "{}: every key of its state_dict starts with \"{}\" (saved from a model wrapped by DistributedDataParallel, DataParallel or torch.compile); reading the keys without it",
                self.path.shown(),
                self.prefix
            ));
        }
        notes
    }

    /// A note naming the values of the file that are not tensors (see [`Others`]), when
    /// there are some: `what` says what becomes of them ("are not compared").
    pub fn others_note(&self, what: &str) -> Option<String> {
        let o = &self.others;
        let more = match o.count - o.first.len() {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        (o.count > 0).then(|| format!("{}: {} value(s) in it are not tensors and {what}: {}{more}", self.path.shown(), o.count, o.first.iter().map(|p| p.shown().to_string()).collect::<Vec<_>>().join(", ")))
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The order a writer recorded under [`ORDER_KEY`]: Some(Ok) a list of names, Some(Err)
    /// something else stored under the key, None no such key.
    pub fn recorded_order(&self) -> Option<std::result::Result<Vec<String>, String>> {
        let json = self.metadata.as_ref()?.get(ORDER_KEY)?;
        Some(serde_json::from_str::<Vec<String>>(json).map_err(|e| e.to_string()))
    }

    /// The values of `t` (one of [`TensorFile::tensors`]): the part of its storage it
    /// covers, checked to lie within what the file holds before it is read.
    pub fn read(&self, t: &Tensor) -> Result<View> {
        let cannot = |why: String| anyhow!("{}: cannot read tensor {}: {why}", self.path.shown(), t.name.shown());
        let place = t.place.as_ref().map_err(|why| cannot(why.clone()))?;
        let dtype = t.dtype.ok_or_else(|| cannot("its dtype is unknown".into()))?;
        self.read_view(place, dtype, &t.shape).map_err(cannot)
    }

    fn read_view(&self, place: &Place, dtype: DType, shape: &[usize]) -> std::result::Result<View, String> {
        let esize = dtype.size() as u64;
        let numel: u128 = shape.iter().map(|&d| d as u128).product();
        // The last storage element the view touches, and the bytes from its first.
        let mut last = place.offset as u128;
        for (&d, &s) in shape.iter().zip(&place.strides) {
            if d > 1 {
                last += (d as u128 - 1) * s as u128;
            }
        }
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let (stored, name) = match (&place.storage, &mut *reader) {
            (Storage::Range { len, .. }, _) => (*len, "its storage".to_string()),
            (Storage::ZipEntry(name), Reader::Zip(archive)) => (zip::entry_size(archive, name, self.len)?, format!("its storage {name}")),
            (Storage::ZipEntry(_), Reader::Plain(_)) => return Err("its storage is in no zip".into()),
        };
        if let Some(n) = place.claimed.filter(|&n| n.checked_mul(esize) != Some(stored)) {
            return Err(format!("{name} holds {stored} bytes, but the file describes it as {n} elements of {}: torch.load refuses such a file", dtype.name()));
        }
        let held = stored / esize;
        if numel == 0 {
            return Ok(View { dtype, shape: shape.to_vec(), strides: place.strides.clone(), bytes: Vec::new() });
        }
        if last >= held as u128 {
            return Err(format!("its view reaches element {last} of {name}, which holds {held}"));
        }
        let (from, to) = (place.offset as u64 * esize, (last as u64 + 1) * esize);
        let mut span = alloc(to - from)?;
        match (&place.storage, &mut *reader) {
            (Storage::Range { start, .. }, Reader::Plain(src)) => {
                src.seek(SeekFrom::Start(start + from)).map_err(|e| e.to_string())?;
                src.take(to - from).read_to_end(&mut span).map_err(|e| e.to_string())?;
            }
            (Storage::ZipEntry(name), Reader::Zip(archive)) => zip::read_span(archive, name, from, to - from, &mut span)?,
            _ => return Err("its storage is not where the file's format puts it".into()),
        }
        if span.len() as u64 != to - from {
            return Err(format!("{name} is cut short: {} of its {} bytes are in the file", span.len(), to - from));
        }
        drop(reader);
        Ok(View { dtype, shape: shape.to_vec(), strides: place.strides.clone(), bytes: span })
    }
}

/// The tensors of a `.pt` listing, each storage key resolved to its bytes by `find`. A
/// storage that tensors read as two dtypes is read by none of them: torch.load reads it as
/// the dtype of the first it meets (torch.save refuses to write such a file).
fn placed(described: Vec<torch::Described>, find: impl Fn(&str) -> Option<Storage>) -> Vec<Tensor> {
    let mut dtypes: HashMap<String, Vec<DType>> = HashMap::new();
    for d in &described {
        if let (Ok(s), Some(dtype)) = (&d.storage, d.dtype) {
            let seen = dtypes.entry(s.key.clone()).or_default();
            if !seen.contains(&dtype) {
                seen.push(dtype);
            }
        }
    }
    described
        .into_iter()
        .map(|d| {
            let place = d.storage.and_then(|s| {
                if let Some(seen) = dtypes.get(&s.key).filter(|seen| seen.len() > 1) {
                    let names: Vec<&str> = seen.iter().map(|d| d.name()).collect();
                    return Err(format!("its storage {:?} is read as {} by the file's tensors, and torch.load would read it as one of them only", s.key, names.join(" and ")));
                }
                let storage = find(&s.key).ok_or_else(|| format!("its storage {:?} is missing from the file", s.key))?;
                Ok(Place { storage, offset: s.offset, strides: s.strides, claimed: s.numel })
            });
            Tensor { name: d.name, shape: d.shape, dtype: d.dtype, outside_state_dict: d.outside, place }
        })
        .collect()
}

type Safetensors = (Vec<Tensor>, Option<BTreeMap<String, String>>);

/// A safetensors file's header, validated ([`safetensors::parse`]).
fn open_safetensors(src: &mut Source, len: u64) -> std::result::Result<Safetensors, String> {
    let mut first8 = [0u8; 8];
    src.read_exact(&mut first8).map_err(|e| e.to_string())?;
    let n = safetensors::header_len(first8, len)?;
    let mut json = alloc(n)?;
    src.take(n).read_to_end(&mut json).map_err(|e| e.to_string())?;
    let header = safetensors::parse(&json, len - 8 - n)?;
    let data = 8 + n;
    let tensors = header
        .entries
        .into_iter()
        .map(|e| {
            let strides = row_major(&e.shape);
            let place = Ok(Place { storage: Storage::Range { start: data + e.start, len: e.end - e.start }, offset: 0, strides, claimed: None });
            Tensor { name: e.name, shape: e.shape, dtype: Some(e.dtype), outside_state_dict: false, place }
        })
        .collect();
    Ok((tensors, header.metadata))
}

/// The row-major strides of `shape`.
fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut s = 1usize;
    for (st, &d) in strides.iter_mut().zip(shape).rev() {
        *st = s;
        s = s.saturating_mul(d);
    }
    strides
}

/// Whether the file is a tar archive (`ustar` at byte 257), PyTorch's oldest format.
fn is_tar(src: &mut Source) -> bool {
    let mut b = [0u8; 262];
    let ok = src.seek(SeekFrom::Start(0)).is_ok() && src.read_exact(&mut b).is_ok();
    ok && &b[257..262] == b"ustar"
}
