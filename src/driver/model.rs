//! What a model is to the run driver: [`Model`], a network it can train, and [`Hyper`], its
//! hyperparameters (stored in checkpoints, checked whether they come from flags or from a
//! checkpoint).
use super::spec::RunSpec;
use super::transcript::Transcript;
use crate::data::Split;
use crate::evaluation::Evaluation;
use crate::weights::{Entry, Weights};
use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// A model's hyperparameters: stored in checkpoints, checked whether they come from flags or
/// a checkpoint.
pub trait Hyper: Serialize + DeserializeOwned + Clone + Debug {
    /// Checks every value; the messages name the flags.
    fn check(&self) -> Result<()>;
    /// Checks that `weights` holds the network these hyperparameters describe (names,
    /// shapes), before any data is read.
    fn check_weights(&self, weights: &Weights) -> Result<()>;
    /// What to try when training with these diverges: "a smaller learning rate (--lr) or ...".
    fn diverged_hint(&self) -> String;
}

/// How a model goes through the training set.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    /// What it trains on without `--train-size`: None for all the training images, or
    /// (N, why) for the first N (the MLP: nn.py trains on the first 50,000).
    pub default_train: Option<(usize, &'static str)>,
    /// Whether the last, smaller batch is dropped (nn_convnet.py's
    /// `DataLoader(drop_last=True)`) or trained (nn.py).
    pub drop_last: bool,
}

impl Batching {
    /// The number of batches in an epoch of `train` images.
    pub fn batches(&self, train: usize, batch_size: usize) -> usize {
        if self.drop_last {
            train / batch_size
        } else {
            train.div_ceil(batch_size)
        }
    }
}

/// Where a model computes, as metrics and checkpoints record it.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// The device: "cpu", "cuda:0".
    pub device: String,
    /// The CPU threads its sums use, where the result depends on the count (libtorch on the
    /// CPU): a resume with another count says it will not repeat bit for bit.
    pub threads: Option<usize>,
}

/// What a model hands over at the end of an epoch's training (or at a stop inside it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochEnd {
    /// Batch losses read only now, as (batch, loss) in batch order: the convnet on CUDA
    /// reads none mid-epoch, so that nothing waits for the GPU.
    pub losses: Vec<(usize, f64)>,
    /// The mean loss of the batches trained since `start_epoch`.
    pub train_loss: f64,
}

/// A network the driver can train. Shapes and meanings are each model's own; the driver
/// only sequences the calls: `build`, then per epoch `start_epoch`, `train_batch` for each
/// batch, `end_epoch`, `evaluate`.
pub trait Model: Sized {
    /// The model's name in checkpoints and metrics: "convnet", "mlp".
    const NAME: &'static str;
    /// How it goes through the training set.
    const BATCHING: Batching;
    /// Its own hyperparameters, stored in checkpoints.
    type Hyper: Hyper;
    /// Its options that are not stored (device, threads, engine...).
    type Options;

    /// The network (from `weights`, else drawn from the seed) with its data.
    fn build(spec: &RunSpec<Self::Hyper, Self::Options>, weights: Option<&Weights>, train: Split, test: Split) -> Result<Self>;
    /// What the run prints (see [`Transcript`]).
    fn transcript(&self) -> Box<dyn Transcript>;
    /// Prepares epoch `epoch` (0-based): its batch order.
    fn start_epoch(&mut self, epoch: usize);
    /// One SGD step on batch `batch` of the current epoch; its loss when it was read now
    /// (else [`Model::end_epoch`] hands it over).
    fn train_batch(&mut self, batch: usize) -> Result<Option<f64>>;
    /// Ends the epoch's training: after its last batch, or at a stop inside it.
    fn end_epoch(&mut self) -> Result<EpochEnd>;
    /// Evaluates the test set.
    fn evaluate(&mut self) -> Result<Evaluation>;
    /// The parameters, with PyTorch's state_dict names.
    fn entries(&self) -> Vec<Entry>;
    /// Where it computes.
    fn placement(&self) -> Placement;
}
