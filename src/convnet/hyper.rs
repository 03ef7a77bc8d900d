//! The convnet's hyperparameters (nn_convnet.py's), their defaults and their checks, and its
//! options that a checkpoint does not store.
use super::net::check_weights;
use crate::checks::{check_non_negative, check_positive};
use crate::driver;
use crate::weights::Weights;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Device;

/// nn_convnet.py: 20 epochs of SGD(lr=0.05, weight_decay=0.001) on batches of 64.
pub const DEFAULT_EPOCHS: usize = 20;
pub const DEFAULT_BATCH_SIZE: usize = 64;
pub const DEFAULT_LR: f64 = 0.05;
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.001;

/// What a checkpoint stores of a convnet run besides the schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// SGD learning rate.
    pub lr: f64,
    /// SGD weight decay (L2).
    pub weight_decay: f64,
}

impl Default for Hyper {
    fn default() -> Hyper {
        Hyper { lr: DEFAULT_LR, weight_decay: DEFAULT_WEIGHT_DECAY }
    }
}

impl driver::Hyper for Hyper {
    /// The checks of every value, from flags or from a checkpoint.
    fn check(&self) -> Result<()> {
        check_positive("--lr", self.lr)?;
        check_non_negative("--weight-decay", self.weight_decay)?;
        // libtorch's SGD takes them as float32: beyond its range they overflow, below it
        // a learning rate becomes 0.
        for (flag, v) in [("--lr", self.lr), ("--weight-decay", self.weight_decay)] {
            if !(v as f32).is_finite() {
                bail!("{flag} must be at most {:e} (the convnet computes in float32), got {v:e}", f32::MAX);
            }
        }
        if self.lr as f32 == 0.0 {
            bail!("--lr {:e} is 0 in float32 (the convnet computes in float32): the smallest is {:e}", self.lr, f32::from_bits(1));
        }
        Ok(())
    }

    fn check_weights(&self, weights: &Weights) -> Result<()> {
        check_weights(weights)
    }

    fn diverged_hint(&self) -> String {
        if self.weight_decay > 0.0 {
            format!("a smaller learning rate (--lr) or a smaller weight decay (--weight-decay, now {:?})", self.weight_decay)
        } else {
            "a smaller learning rate (--lr) or weight decay (--weight-decay)".to_string()
        }
    }
}

/// How a convnet run executes: not stored, may differ on resume.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Resolved once from `--device`.
    pub device: Device,
    /// On CUDA, capture the step as one CUDA graph (`--no-cuda-graph` turns it off).
    pub cuda_graph: bool,
    /// libtorch's CPU threads (None: its own choice).
    pub threads: Option<usize>,
    /// Deterministic kernels on CUDA (`--deterministic`).
    pub deterministic: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { device: Device::Cpu, cuda_graph: true, threads: None, deterministic: false }
    }
}

impl Options {
    /// Sets libtorch's process-wide state these options ask for: its CPU threads, and
    /// deterministic kernels on a CUDA device. The convnet is libtorch's one user, and sets
    /// it before its first computation.
    pub fn apply(&self) -> Result<()> {
        if let Some(t) = self.threads {
            tch::set_num_threads(t as i32);
        }
        if self.deterministic {
            super::determinism::enable(self.device)?;
        }
        Ok(())
    }
}
