//! The safetensors header, read and validated as the `safetensors` library does before it
//! hands out a single tensor: the 8-byte little-endian header length, a JSON object of at
//! most [`MAX_HEADER`] bytes, one entry per tensor (`dtype`, `shape`, `data_offsets`) and an
//! optional `__metadata__` of string values. Refused, naming the entry: a name given twice
//! (JSON readers disagree on which copy counts), an unknown dtype, offsets that do not hold
//! dtype x shape, and data sections that overlap, leave a gap or do not end where the file
//! does. Fields of an entry that the format does not name are ignored, as the library
//! ignores them. Nothing but the header is read here.
use super::DType;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// The `safetensors` library's bound on a header.
pub const MAX_HEADER: u64 = 100_000_000;

/// One tensor of the header: where its bytes are in the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// [start, end) in the data section.
    pub start: u64,
    pub end: u64,
}

/// A validated header: its tensors in data order, and its metadata.
#[derive(Debug)]
pub struct Header {
    /// The header's length (the data section starts at 8 + this).
    pub len: u64,
    pub entries: Vec<Entry>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Whether a file's first bytes look like safetensors: a length, then the JSON's `{`.
pub fn looks_like(head: &[u8]) -> bool {
    head.len() > 8 && head[8] == b'{'
}

/// The header's length from a file's first 8 bytes, checked against the file's size.
pub fn header_len(first8: [u8; 8], file_len: u64) -> Result<u64, String> {
    let n = u64::from_le_bytes(first8);
    if n > MAX_HEADER {
        return Err(format!("its header length, {n} bytes, is beyond the {MAX_HEADER} the safetensors format allows"));
    }
    if n > file_len.saturating_sub(8) {
        return Err(format!("its header length, {n} bytes, runs past the file's {file_len} bytes"));
    }
    Ok(n)
}

/// An entry; other fields are ignored, as the library ignores them.
#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// The header's JSON object with every key kept in file order, duplicates included.
struct RawHeader {
    items: Vec<(String, Raw)>,
}

enum Raw {
    Metadata(Option<BTreeMap<String, String>>),
    Tensor(RawEntry),
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
                let mut items = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = if key == "__metadata__" {
                        Raw::Metadata(map.next_value()?)
                    } else {
                        Raw::Tensor(map.next_value().map_err(|e| de::Error::custom(format!("tensor {key:?}: {e}")))?)
                    };
                    items.push((key, value));
                }
                Ok(RawHeader { items })
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses and validates the header `json` of a file whose data section has `data_len` bytes.
pub fn parse(json: &[u8], data_len: u64) -> Result<Header, String> {
    let text = std::str::from_utf8(json).map_err(|_| "its header is not UTF-8".to_string())?;
    let raw: RawHeader = serde_json::from_str(text).map_err(|e| format!("its header: {e}"))?;
    let mut seen = HashSet::new();
    let mut metadata = None;
    let mut entries = Vec::new();
    for (name, value) in raw.items {
        if !seen.insert(name.clone()) {
            return Err(format!("its header names {name:?} twice"));
        }
        match value {
            Raw::Metadata(m) => metadata = m,
            Raw::Tensor(t) => {
                let dtype = DType::from_short(&t.dtype).ok_or_else(|| format!("tensor {name:?} has dtype {:?}, which nnmnist does not know", t.dtype))?;
                let shape = t.shape.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<usize>>>().ok_or_else(|| format!("tensor {name:?}: its shape {:?} does not fit this machine", t.shape))?;
                let bytes = t.shape.iter().try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d));
                let (start, end) = t.data_offsets;
                if end < start || bytes != Some(end - start) {
                    return Err(format!("tensor {name:?}: its data offsets [{start}, {end}) do not hold shape {:?} of {}", t.shape, dtype.short()));
                }
                entries.push(Entry { name, dtype, shape, start, end });
            }
        }
    }
    entries.sort_by_key(|e| (e.start, e.end));
    let mut at = 0u64;
    for e in &entries {
        if e.end > data_len {
            return Err(format!("tensor {:?}: its data [{}, {}) runs past the end of the file (the data section has {data_len} bytes; a truncated file?)", e.name, e.start, e.end));
        }
        if e.start != at {
            let how = if e.start < at { "overlaps the tensor before it" } else { "leaves a gap before it" };
            return Err(format!("tensor {:?}: its data [{}, {}) {how} (the data sections must follow each other from offset 0)", e.name, e.start, e.end));
        }
        at = e.end;
    }
    if at != data_len {
        let how = if at > data_len { "runs past the end of the file (a truncated file?)" } else { "ends before the file does (bytes nothing describes)" };
        return Err(format!("its tensors' data ends at byte {at} of a data section of {data_len} bytes: it {how}"));
    }
    Ok(Header { len: json.len() as u64, entries, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str, data_len: u64) -> Result<Header, String> {
        parse(json.as_bytes(), data_len)
    }

    #[test]
    fn what_the_library_refuses_is_refused() {
        let ok = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "I64", "shape": [], "data_offsets": [8, 16]}}"#;
        assert_eq!(header(ok, 16).unwrap().entries.len(), 2);
        let two = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#;
        assert!(header(two, 16).unwrap_err().contains("names \"a\" twice"));
        let overlap = r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#;
        assert!(header(overlap, 12).unwrap_err().contains("overlaps"));
        let gap = r#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}"#;
        assert!(header(gap, 12).unwrap_err().contains("gap"));
        assert!(header(ok, 20).unwrap_err().contains("ends before the file does"));
        assert!(header(ok, 12).unwrap_err().contains("runs past the end"));
        let size = r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#;
        assert!(header(size, 8).unwrap_err().contains("do not hold shape"));
        let wraps = r#"{"a": {"dtype": "F64", "shape": [2305843009213693952, 2], "data_offsets": [0, 0]}}"#;
        assert!(header(wraps, 0).unwrap_err().contains("do not hold shape"));
        let dtype = r#"{"a": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}}"#;
        assert!(header(dtype, 1).unwrap_err().contains("dtype \"F7\""));
        assert!(header("[1, 2]", 0).is_err());
    }
}
