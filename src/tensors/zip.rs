//! `torch.save`'s zip format (PyTorch 1.6 and later): `STEM/data.pkl` (the pickle),
//! `STEM/data/KEY` (one entry per storage: raw little-endian values), `STEM/byteorder`,
//! `STEM/version`...; `torch.save` names the folder after the file's stem (or `archive` for
//! a file object), so the zip's byte layout shifts with the file name's length.
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
//! `zip` crate keeps the last, `torch.load` the first). So is one whose entries are not all
//! in the folder of its first entry: `torch.load` reads that folder and refuses the rest, so
//! another folder's `data.pkl` would be a file PyTorch never reads.
use super::pickle::{self, Budget};
use super::torch::{self, Listing};
use super::input::{alloc, pickle_budget, Source};
use crate::terminal::Shown;
use std::collections::HashMap;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use zip::read::{ArchiveOffset, Config};
use zip::{CompressionMethod, ZipArchive};

pub type Archive = ZipArchive<BufReader<Source>>;

/// Opens the zip and reads its pickle: the archive, the tensors, and the zip entry of each
/// storage key.
pub fn open(src: Source, len: u64) -> Result<(Archive, Listing, HashMap<String, String>), String> {
    let config = Config { archive_offset: ArchiveOffset::Known(0) };
    let damaged = |e: String| format!("a truncated or damaged zip file, unreadable as torch.save's format ({e})");
    let mut archive = ZipArchive::with_config(config, BufReader::new(src)).map_err(|e| damaged(e.to_string()))?;
    if archive.has_duplicate_names() {
        let which = duplicate_name(archive).unwrap_or_else(|| "?".into());
        return Err(format!("a zip that holds two entries named {which}: readers disagree on which counts (torch.load takes the first), so it is refused"));
    }
    let not_torch = |e: String| format!("a zip file (torch.save's format) that nnmnist cannot read: {e}");
    let root = root(&archive).map_err(not_torch)?;
    if let Some(order) = read_small(&mut archive, &format!("{root}byteorder"), len, &mut Budget::new(64))? {
        let order = String::from_utf8_lossy(&order).trim().to_string();
        if order != "little" {
            return Err(format!("a PyTorch file saved on a {order}-endian machine (its byteorder entry says so): nnmnist reads little-endian files only"));
        }
    }
    let pkl_name = format!("{root}data.pkl");
    let real = archive.by_name(&pkl_name).map(|f| f.compressed_size()).map_err(|e| damaged(format!("{pkl_name}: {e}")))?;
    let mut budget = Budget::new(pickle_budget(real));
    let pkl = read_small(&mut archive, &pkl_name, len, &mut budget)?.ok_or_else(|| damaged(format!("{pkl_name} is listed but cannot be opened")))?;
    let top = pickle::parse(&pkl, &mut budget).map_err(|e| not_torch(format!("data.pkl: {e}")))?;
    drop(pkl);
    let listing = torch::list(&top).map_err(not_torch)?;
    let storages = archive
        .file_names()
        .filter_map(|n| n.ok())
        .filter_map(|n| Some((n.strip_prefix(&root)?.strip_prefix("data/")?.to_string(), n.to_string())))
        .collect();
    Ok((archive, listing, storages))
}

/// The folder every entry is in, with its `/` (`archive/`), found as `torch.load` finds it:
/// the first entry's folder, which every other entry must share, and which holds `data.pkl`.
fn root(archive: &Archive) -> Result<String, String> {
    let names: Vec<String> = archive.file_names().map(|n| n.map(|n| n.into_owned()).map_err(|e| e.to_string())).collect::<Result<_, _>>()?;
    if !names.iter().any(|n| n.ends_with("data.pkl")) {
        return Err("it has no data.pkl, so it is not torch.save's format".into());
    }
    let first = &names[0];
    let Some(slash) = first.find('/') else {
        return Err(format!("its first entry {} is in no folder: torch.save puts every entry in one folder, and torch.load refuses such a zip", first.as_str().shown()));
    };
    let root = first[..=slash].to_string();
    if !names.iter().any(|n| *n == format!("{root}data.pkl")) {
        return Err(format!("it has no data.pkl in the folder {} of its first entry, where torch.load looks for it", root.as_str().shown()));
    }
    if let Some(out) = names.iter().find(|n| !n.starts_with(&root)) {
        return Err(format!("its entry {} is outside the folder {} of its first entry: torch.load refuses such a zip (it reads one folder)", out.as_str().shown(), root.as_str().shown()));
    }
    Ok(root)
}

/// The whole entry `name`, its inflated bytes charged to `budget`; None when there is none.
fn read_small(archive: &mut Archive, name: &str, len: u64, budget: &mut Budget) -> Result<Option<Vec<u8>>, String> {
    let Some(idx) = archive.index_for_name(name) else { return Ok(None) };
    let size = entry_size(archive, name, len)?;
    budget.charge(size).map_err(|e| format!("{name}: {e}"))?;
    let mut f = archive.by_index(idx).map_err(|e| format!("{name}: {e}"))?;
    let mut v = alloc(size)?;
    (&mut f).take(size).read_to_end(&mut v).map_err(|e| format!("{name}: {e}"))?;
    Ok(Some(v))
}

/// The size entry `name` claims, checked against the bytes it has: a stored entry holds its
/// bytes in the file, and deflate expands at most 1032 times.
pub fn entry_size(archive: &mut Archive, name: &str, len: u64) -> Result<u64, String> {
    let idx = archive.index_for_name(name).ok_or_else(|| format!("its storage {name} is missing from the zip"))?;
    let f = archive.by_index_raw(idx).map_err(|e| format!("{name}: {e}"))?;
    let (size, compressed, method) = (f.size(), f.compressed_size(), f.compression());
    let ratio = if method == CompressionMethod::Stored { 1 } else { 1032 };
    if compressed > len || size > compressed.saturating_mul(ratio) {
        return Err(format!("its entry {name} claims {size} bytes from {compressed} in a file of {len}"));
    }
    Ok(size)
}

/// Appends `n` bytes of entry `name`, from byte `from` on, to `out`.
pub fn read_span(archive: &mut Archive, name: &str, from: u64, n: u64, out: &mut Vec<u8>) -> Result<(), String> {
    let io_err = |e: io::Error| format!("{name}: {e}");
    let idx = archive.index_for_name(name).ok_or_else(|| format!("its storage {name} is missing from the zip"))?;
    let stored = archive.by_index_raw(idx).map(|f| f.compression() == CompressionMethod::Stored).map_err(|e| format!("{name}: {e}"))?;
    if stored {
        let mut f = archive.by_index_seek(idx).map_err(|e| format!("{name}: {e}"))?;
        f.seek(SeekFrom::Start(from)).map_err(io_err)?;
        (&mut f).take(n).read_to_end(out).map_err(io_err)?;
    } else {
        let mut f = archive.by_index(idx).map_err(|e| format!("{name}: {e}"))?;
        io::copy(&mut (&mut f).take(from), &mut io::sink()).map_err(io_err)?;
        (&mut f).take(n).read_to_end(out).map_err(io_err)?;
    }
    Ok(())
}

/// The name in a zip's central directory that occurs twice, read from the raw directory
/// (the `zip` crate says that there is one, not which), a bounded number of bytes.
fn duplicate_name(archive: Archive) -> Option<String> {
    let start = archive.central_directory_start();
    let mut src = archive.into_inner();
    src.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    (&mut src).take(64 << 20).read_to_end(&mut bytes).ok()?;
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
