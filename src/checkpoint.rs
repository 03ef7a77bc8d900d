//! Writing weights and checkpoints: safetensors with PyTorch's state_dict keys, so that
//! `model.load_state_dict(safetensors.torch.load_file(f))` works in PyTorch, plus, for a
//! checkpoint, what a resume needs in the header's `__metadata__` under the key `nnmnist`
//! (a JSON [`RunState`]; PyTorch ignores it). Files are written through
//! [`crate::files::SaveTarget`]: atomically, through symbolic links, one run at a time.
use crate::files::SaveTarget;
use crate::tensors::{META_KEY, ORDER_KEY};
use crate::weights::{Data, Entry, RunState};
use anyhow::{anyhow, Result};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The bytes of a safetensors file holding `entries` (F32 or F64) and `state`, if any.
pub fn serialize(entries: &[Entry], state: Option<&RunState>) -> Result<Vec<u8>> {
    let meta = match state {
        Some(s) => Some(HashMap::from([(META_KEY.to_string(), serde_json::to_string(s)?)])),
        None => None,
    };
    serialize_with(entries, &meta)
}

/// Writes `entries` to `target` with their order recorded in the header (the metadata key
/// [`crate::tensors::ORDER_KEY`]), which the data's order (by dtype, then name) loses: a
/// trace's causal order, for `nnmnist diff`.
pub fn save_in_order(target: &SaveTarget, entries: &[Entry]) -> Result<()> {
    let order: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let meta = Some(HashMap::from([(ORDER_KEY.to_string(), serde_json::to_string(&order)?)]));
    target.write(&serialize_with(entries, &meta)?)
}

fn serialize_with(entries: &[Entry], meta: &Option<HashMap<String, String>>) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| match &e.data {
            Data::F32(v) => Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::F64(v) => Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::Other(d) => Err(anyhow!("tensor {}: cannot write dtype {d}", e.name)),
            Data::Unread(_) | Data::Unreadable(_) => Err(anyhow!("tensor {}: cannot write values that were not read", e.name)),
        })
        .collect::<Result<_>>()?;
    let views = entries
        .iter()
        .zip(&bytes)
        .map(|(e, b)| {
            let dtype = if matches!(e.data, Data::F64(_)) { Dtype::F64 } else { Dtype::F32 };
            Ok((e.name.clone(), TensorView::new(dtype, e.shape.clone(), b)?))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow!("cannot serialise tensors ({e})"))?;
    safetensors::tensor::serialize(views, meta.clone()).map_err(|e| anyhow!("cannot serialise tensors ({e})"))
}

/// Writes `entries` (and `state`, if any) to `target`.
pub fn save(target: &SaveTarget, entries: &[Entry], state: Option<&RunState>) -> Result<()> {
    target.write(&serialize(entries, state)?)
}

/// Writes `entries` to the file `path` in one go (opening, locking and releasing it).
pub fn save_to(path: &Path, entries: &[Entry], state: Option<&RunState>) -> Result<()> {
    save(&SaveTarget::open(path)?, entries, state)
}
