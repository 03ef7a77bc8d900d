//! PyTorch's legacy format (`torch.save(..., _use_new_zipfile_serialization=False)`, and
//! every file of PyTorch 0.4 to 1.5): five pickles one after the other (the magic number,
//! the protocol version 1001, the saving machine's `sys_info`, the object itself, the list
//! of storage keys), then each storage in the order of that list as its element count
//! (int64, little-endian) followed by its raw little-endian elements. A storage is named in
//! the object's pickle by the persistent id `("storage", class, key, device, numel,
//! view_metadata)`; a module class by `("module", class, source file, source)`.
use super::pickle::{self, Budget, Value};
use super::torch::{self, Listing};
use super::input::{pickle_budget, Source};
use super::DType;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// The protocol version the legacy format's second pickle holds.
const PROTOCOL_VERSION: i64 = 1001;

/// Where each storage key's bytes are: (start in the file, length).
pub type Storages = HashMap<String, (u64, u64)>;

/// The tensors, and where each storage's bytes are.
pub fn open(src: &mut Source, len: u64) -> Result<(Listing, Storages), String> {
    // The pickles are read from a buffer that grows until they fit in it.
    let cap = len.min(pickle_budget(0));
    let mut size = cap.min(1 << 16);
    let (top, keys, end) = loop {
        src.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        (&mut *src).take(size).read_to_end(&mut buf).map_err(|e| e.to_string())?;
        match pickles(&buf) {
            Ok(found) => break found,
            Err(_) if size < cap => size = (size * 4).min(cap),
            Err(e) => return Err(e),
        }
    };
    let listing = torch::list(&top)?;
    let dtypes = storage_dtypes(&top)?;
    let mut storages = HashMap::new();
    let mut at = end as u64;
    for key in keys {
        let dtype = *dtypes.get(key.as_str()).ok_or_else(|| format!("storage {key:?} is listed but no tensor names its type, so its size is unknown"))?;
        src.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
        let mut n = [0u8; 8];
        src.read_exact(&mut n).map_err(|_| format!("the file ends before storage {key:?} (at byte {at})"))?;
        let bytes = u64::from_le_bytes(n).checked_mul(dtype.size() as u64).filter(|&b| at + 8 <= len && b <= len - at - 8);
        let bytes = bytes.ok_or_else(|| format!("storage {key:?} claims {} elements of {}, more than the file's remaining bytes", u64::from_le_bytes(n), dtype.short()))?;
        if storages.insert(key.clone(), (at + 8, bytes)).is_some() {
            return Err(format!("storage {key:?} is listed twice"));
        }
        at += 8 + bytes;
    }
    Ok((listing, storages))
}

/// The legacy format's pickles at the start of `buf`: the object, the storage keys, and
/// where the storages start.
fn pickles(buf: &[u8]) -> Result<(Value, Vec<String>, usize), String> {
    let mut budget = Budget::new(pickle_budget(buf.len() as u64));
    budget.charge(buf.len() as u64)?;
    let mut at = 0;
    let mut next = |what: &str| -> Result<Value, String> {
        let (v, n) = pickle::parse_prefix(&buf[at..], &mut budget).map_err(|e| format!("{what}: {e}"))?;
        at += n;
        Ok(v)
    };
    next("its magic number")?;
    match next("its protocol version")? {
        Value::Int(PROTOCOL_VERSION) => {}
        other => return Err(format!("its protocol version is {other:?}, not {PROTOCOL_VERSION}")),
    }
    if let Value::Dict(info) = next("its sys_info")? {
        if info.get("little_endian") == Some(&Value::Bool(false)) {
            return Err("it was saved on a big-endian machine (its sys_info says so): nnmnist reads little-endian files only".into());
        }
    }
    let top = next("its object")?;
    let keys = match next("its storage keys")? {
        Value::List(keys) => keys.into_iter().map(|k| if let Value::Str(s) = k { Ok(s) } else { Err("a storage key that is no string".to_string()) }).collect::<Result<Vec<_>, _>>()?,
        _ => return Err("its storage keys are not a list".into()),
    };
    Ok((top, keys, at))
}

/// The dtype of every storage the object's persistent ids name. A storage named with two
/// dtypes is refused: its size in the file, and so the place of every storage after it,
/// depends on which one counts (torch.load takes the first; torch.save never writes that).
fn storage_dtypes(top: &Value) -> Result<HashMap<&str, DType>, String> {
    fn scan<'a>(v: &'a Value, out: &mut HashMap<&'a str, DType>, clash: &mut Option<String>) {
        match v {
            Value::Persistent(id) => {
                if let Value::Tuple(t) = id.as_ref() {
                    if let (Some(Value::Str(s)), Some(Value::Global(class)), Some(Value::Str(key))) = (t.first(), t.get(1), t.get(2)) {
                        if let (true, Some(d)) = (s == "storage", DType::from_torch(class)) {
                            if let Some(other) = out.insert(key, d).filter(|&o| o != d) {
                                clash.get_or_insert_with(|| format!("storage {key:?} is named both as {} and as {}: its size in the file is unknown", other.name(), d.name()));
                            }
                        }
                    }
                }
            }
            Value::Dict(d) => d.items.iter().for_each(|(k, v)| {
                scan(k, out, clash);
                scan(v, out, clash)
            }),
            Value::List(items) | Value::Tuple(items) => items.iter().for_each(|v| scan(v, out, clash)),
            Value::Object { args, state, items, .. } => {
                args.iter().chain(items).for_each(|v| scan(v, out, clash));
                if let Some(s) = state {
                    scan(s, out, clash);
                }
            }
            _ => {}
        }
    }
    let (mut out, mut clash) = (HashMap::new(), None);
    scan(top, &mut out, &mut clash);
    match clash {
        Some(why) => Err(why),
        None => Ok(out),
    }
}
