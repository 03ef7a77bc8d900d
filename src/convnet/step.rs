//! nn_convnet.py's training step: the batch order, the loss, SGD, and the step itself
//! (eager here; captured as a CUDA graph in [`super::cuda_graph`]).
//!
//! Batch order contract (shared with scripts/reference/nn_convnet.py, so that on the CPU a
//! run here and a PyTorch run with the same seed are the same computation): epoch e
//! (0-based) draws `randperm(n)` on the CPU generator after `manual_seed(epoch_seed(seed,
//! e))` ([`crate::torch_rng`]); batch i is `perm[i*bs..(i+1)*bs]`; the last partial batch
//! is dropped.
use super::net::Net;
use anyhow::Result;
use tch::nn::{self, OptimizerConfig};
use tch::{Reduction, Tensor};

pub use crate::torch_rng::epoch_order;

/// The number of batches in an epoch of `n` images: the last partial batch is dropped, so
/// every batch has the same shape (which a captured CUDA graph needs).
pub fn batch_count(n: usize, batch_size: usize) -> usize {
    n / batch_size
}

/// Batch `batch` of an epoch: the images and labels at `order[batch*bs..(batch+1)*bs]`,
/// x (bs, 1, 28, 28) and y (bs).
pub fn batch_tensors(order: &Tensor, x: &Tensor, y: &Tensor, batch: usize, batch_size: usize) -> (Tensor, Tensor) {
    let idx = order.narrow(0, (batch * batch_size) as i64, batch_size as i64);
    (x.index_select(0, &idx), y.index_select(0, &idx))
}

/// Mean cross-entropy of a batch: logits (N, 10), labels (N) -> scalar, as nn.CrossEntropyLoss.
pub fn loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
}

/// torch.optim.SGD(lr, weight_decay) without momentum: libtorch's own SGD (p -= lr * (grad +
/// wd * p)), the kernels Python's SGD runs on the CPU.
pub fn sgd(net: &Net, lr: f64, weight_decay: f64) -> Result<nn::Optimizer> {
    let config = nn::Sgd { momentum: 0.0, dampening: 0.0, wd: weight_decay, nesterov: false };
    Ok(config.build(&net.vs, lr)?)
}

/// One training step as nn_convnet.py's loop: forward, loss, backward, SGD step, zero_grad,
/// and the batch loss added into the epoch's loss sum where the step keeps one.
/// x (N, 1, 28, 28), y (N) -> the batch loss (scalar tensor, detached).
pub trait Step {
    fn step(&mut self, net: &Net, x: &Tensor, y: &Tensor) -> Result<Tensor>;
}

/// The eager step: each op launched as it comes.
pub struct EagerStep {
    pub opt: nn::Optimizer,
    /// () float on the network's device: every step adds its loss here, if set.
    pub loss_sum: Option<Tensor>,
}

impl EagerStep {
    /// A step that keeps no loss sum.
    pub fn new(opt: nn::Optimizer) -> EagerStep {
        EagerStep { opt, loss_sum: None }
    }

    /// A step that adds each batch loss into `loss_sum` (in place: the caller zeroes it).
    pub fn summing(opt: nn::Optimizer, loss_sum: &Tensor) -> EagerStep {
        EagerStep { opt, loss_sum: Some(loss_sum.shallow_clone()) }
    }
}

impl Step for EagerStep {
    fn step(&mut self, net: &Net, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let loss = loss(&net.forward(x), y);
        loss.backward();
        self.opt.step();
        self.opt.zero_grad();
        let loss = loss.detach();
        if let Some(sum) = &mut self.loss_sum {
            *sum += &loss;
        }
        Ok(loss)
    }
}
