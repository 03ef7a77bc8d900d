//! The MLP's hyperparameters (nn.py's and network2.py's), their defaults and their checks:
//! one set of checks for values from flags and from checkpoints; layer sizes as `--sizes`
//! writes them ([`join_sizes`]).
use super::cost::Cost;
use super::fast::network_bytes;
use super::rule::Init;
use crate::data::{CLASSES, PIXELS};
use crate::checks::{check_non_negative, check_positive};
use crate::system::available_memory;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// nn.py: `Network([784, 30, 10])`.
pub const DEFAULT_SIZES: [usize; 3] = [784, 30, 10];
/// nn.py: `SGD(training_data, 30, 10, 3.0, test_data)`.
pub const DEFAULT_EPOCHS: usize = 30;
pub const DEFAULT_BATCH_SIZE: usize = 10;
pub const DEFAULT_ETA: f64 = 3.0;
pub const DEFAULT_LAMBDA: f64 = 0.0;
/// nn.py trains on the first 50,000 training images (the rest is Nielsen's validation set).
pub const DEFAULT_TRAIN_SIZE: usize = 50_000;

/// What a checkpoint stores of an MLP run besides the schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// Neurons per layer, input first: 784, ..., 10.
    pub sizes: Vec<usize>,
    /// Learning rate.
    pub eta: f64,
    pub cost: Cost,
    /// L2 regularisation (network2.py's lmbda): w *= 1 - eta*lambda/n before the step.
    pub lambda: f64,
    pub init: Init,
}

impl Default for Hyper {
    fn default() -> Hyper {
        Hyper { sizes: DEFAULT_SIZES.to_vec(), eta: DEFAULT_ETA, cost: Cost::Quadratic, lambda: DEFAULT_LAMBDA, init: Init::Normal }
    }
}

impl Hyper {
    /// The checks of every value, from flags or from a checkpoint.
    pub fn check(&self) -> Result<()> {
        check_sizes(&self.sizes)?;
        check_positive("--eta", self.eta)?;
        check_non_negative("--lambda", self.lambda)
    }
}

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
