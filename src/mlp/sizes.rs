//! An MLP's layer sizes, as `--sizes` writes them ([`join_sizes`]), and what an MNIST MLP's
//! must be ([`check_sizes`]).
use super::fast::network_bytes;
use crate::data::{CLASSES, PIXELS};
use crate::system::available_memory;
use anyhow::{bail, Result};

/// MLP layer sizes: at least two layers, from 784 inputs to 10 outputs, none empty, and a
/// network that fits in memory.
pub fn check_sizes(sizes: &[usize]) -> Result<()> {
    if sizes.len() < 2 {
        bail!("--sizes needs at least an input and an output layer, e.g. 784,30,10");
    }
    if sizes[0] != PIXELS {
        bail!("--sizes must start at 784 (the 28x28 pixels), got {}", sizes[0]);
    }
    if sizes[sizes.len() - 1] != CLASSES {
        bail!("--sizes must end at 10 (the digits), got {}", sizes[sizes.len() - 1]);
    }
    if sizes.contains(&0) {
        bail!("--sizes: every layer needs at least one neuron, got {sizes:?}");
    }
    let bytes = network_bytes(sizes);
    if let Some(available) = available_memory() {
        if bytes > available as u128 {
            let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
            bail!(
                "--sizes {}: the network's weights and training buffers need about {:.1} GiB, and this machine has {:.1} GiB available",
                join_sizes(sizes),
                gib(bytes),
                gib(available as u128)
            );
        }
    }
    Ok(())
}

/// "784,30,10".
pub fn join_sizes(sizes: &[usize]) -> String {
    sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
}
