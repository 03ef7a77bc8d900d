//! The convnet's whole training step (forward, loss, backward, SGD) captured once as a CUDA
//! graph and replayed per batch. Placeholder until the shim is wired: eager everywhere.
use crate::convnet::Net;
use crate::train::{EagerStep, Step};
use tch::nn;

/// A graph-replaying step where capture works, else (with a warning) the eager step.
pub fn graph_step_or_eager(opt: nn::Optimizer, _net: &Net, _batch_size: usize) -> Box<dyn Step> {
    tracing::warn!("CUDA-graph capture is not available in this build: training eagerly");
    Box::new(EagerStep { opt })
}
