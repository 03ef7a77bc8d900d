//! What every reader of a tensor file shares: the bytes it reads from ([`Source`]), the
//! memory that reading its pickles may take ([`pickle_budget`]), and allocations that fail
//! rather than abort ([`alloc`]).
use std::io::{Read, Seek};

/// The memory that reading one file's pickles may take, for pickles of `real` bytes in the
/// file (compressed, for a deflated zip entry): 32 MiB, plus 4 times what the file holds.
pub fn pickle_budget(real: u64) -> u64 {
    (32 << 20) + 4 * real
}

/// An empty buffer with room for `n` bytes, or an error (never an abort) when the memory
/// cannot be had.
pub fn alloc(n: u64) -> std::result::Result<Vec<u8>, String> {
    let mut v = Vec::new();
    usize::try_from(n).ok().and_then(|n| v.try_reserve_exact(n).ok()).ok_or_else(|| format!("cannot allocate {n} bytes for it"))?;
    Ok(v)
}

/// Bytes nnmnist reads a tensor file from: a file, or bytes in memory.
pub trait Input: Read + Seek + Send {}
impl<T: Read + Seek + Send> Input for T {}

pub type Source = Box<dyn Input>;
