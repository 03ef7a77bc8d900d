//! MLP weights as files: PyTorch's nn.Sequential(Linear, Sigmoid, Linear, ...) state_dict
//! keys (`0.weight`, `0.bias`, `2.weight`, ...), F64 as nnmnist writes them, F32 or F64 read.
use crate::terminal::Shown;
use super::sizes::{check_sizes, join_sizes};
use super::network::Network;
use crate::weights::{Entry, Weights};
use anyhow::{anyhow, bail, Result};

impl Network {
    /// The tensors as PyTorch's nn.Sequential names them: `{2i}.weight` (sizes[i+1],
    /// sizes[i]) and `{2i}.bias` (sizes[i+1]), F64.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..self.weights.len() {
            out.push(Entry::f64(format!("{}.weight", 2 * i), vec![self.sizes[i + 1], self.sizes[i]], self.weights[i].clone()));
            out.push(Entry::f64(format!("{}.bias", 2 * i), vec![self.sizes[i + 1]], self.biases[i].clone()));
        }
        out
    }

    /// The network in `weights`, whose shapes must be those of `sizes` (F32 is widened
    /// exactly). Errors name the file, the key and both shapes. Other entries are noted and
    /// ignored.
    pub fn from_weights(weights: &Weights, sizes: &[usize]) -> Result<Network> {
        let nl = sizes.len() - 1;
        let mut ws = Vec::with_capacity(nl);
        let mut bs = Vec::with_capacity(nl);
        for i in 0..nl {
            ws.push(weights.get(&format!("{}.weight", 2 * i), &[sizes[i + 1], sizes[i]])?.to_f64());
            bs.push(weights.get(&format!("{}.bias", 2 * i), &[sizes[i + 1]])?.to_f64());
        }
        let extra = format!("{}.weight", 2 * nl);
        if weights.entries.contains_key(&extra) {
            bail!(
                "{}: has more layers than --sizes {} (it holds {extra}); its layer sizes are {}",
                weights.path.shown(),
                join_sizes(sizes),
                infer_sizes(weights).map(|s| join_sizes(&s)).unwrap_or_else(|e| format!("unreadable ({e})"))
            );
        }
        weights.note_extras(&keys(sizes), "MLP");
        Ok(Network { sizes: sizes.to_vec(), weights: ws, biases: bs })
    }
}

/// The state_dict keys of an MLP of `sizes`, in order.
pub fn keys(sizes: &[usize]) -> Vec<String> {
    (0..sizes.len() - 1).flat_map(|i| [format!("{}.weight", 2 * i), format!("{}.bias", 2 * i)]).collect()
}

/// The layer sizes of an MLP weights file, read from the shapes of `0.weight`, `2.weight`, ...
pub fn infer_sizes(weights: &Weights) -> Result<Vec<usize>> {
    let path = weights.path.shown();
    let first = weights.entries.get("0.weight").ok_or_else(|| anyhow!("{path}: not MLP weights: no tensor 0.weight (the file has: {})", weights.key_list()))?;
    if first.shape.len() != 2 {
        bail!("{path}: tensor 0.weight has shape {:?}, expected (out, in)", first.shape);
    }
    let mut sizes = vec![first.shape[1]];
    let mut i = 0;
    while let Some(e) = weights.entries.get(&format!("{i}.weight")) {
        if e.shape.len() != 2 || e.shape[1] != sizes[sizes.len() - 1] {
            bail!("{path}: tensor {i}.weight has shape {:?}, expected (N, {}) for some N, to follow the previous layer", e.shape, sizes[sizes.len() - 1]);
        }
        sizes.push(e.shape[0]);
        i += 2;
    }
    // A later layer after the gap: the file skips layer {i}, it does not end there.
    let later = weights.entries.keys().filter_map(|k| k.strip_suffix(".weight")?.parse::<usize>().ok()).filter(|&n| n > i).min();
    if let Some(n) = later {
        bail!("{path}: tensor {i}.weight is missing, but the file has {n}.weight: an MLP's layers are 0.weight, 2.weight, 4.weight, ... without gaps");
    }
    Ok(sizes)
}

/// The MLP a weights file holds, its layer sizes read from the shapes of `0.weight`,
/// `2.weight`... (they must run 784 -> ... -> 10).
pub fn network_of(weights: &Weights) -> Result<Network> {
    let sizes = infer_sizes(weights)?;
    check_sizes(&sizes).map_err(|e| anyhow!("{}: layer sizes {} do not fit MNIST: {e}", weights.path.shown(), join_sizes(&sizes)))?;
    Network::from_weights(weights, &sizes)
}
