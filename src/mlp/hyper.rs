//! The MLP's hyperparameters (nn.py's and network2.py's), their defaults and their checks:
//! one set of checks for values from flags and from checkpoints.
use super::cost::Cost;
use super::io::infer_sizes;
use super::network::Network;
use super::rule::Init;
use super::sizes::{check_sizes, join_sizes};
use crate::checks::{check_non_negative, check_positive};
use crate::driver;
use crate::weights::Weights;
use anyhow::{anyhow, Result};
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

impl driver::Hyper for Hyper {
    /// The checks of every value, from flags or from a checkpoint.
    fn check(&self) -> Result<()> {
        check_sizes(&self.sizes)?;
        check_positive("--eta", self.eta)?;
        check_non_negative("--lambda", self.lambda)
    }

    /// Also says which `--sizes` the file's shapes are, when they are not the run's.
    fn check_weights(&self, weights: &Weights) -> Result<()> {
        Network::from_weights(weights, &self.sizes).map(|_| ()).map_err(|e| match infer_sizes(weights) {
            Ok(sizes) if sizes != self.sizes => {
                let s = join_sizes(&sizes);
                // The hint is offered only where --sizes would then be accepted.
                match check_sizes(&sizes) {
                    Ok(()) => anyhow!("{e:#} (its layers are {s}: pass --sizes {s})"),
                    Err(why) => anyhow!("{e:#} (its layers are {s}, which no MNIST MLP has: {why:#})"),
                }
            }
            Ok(_) => e,
            // What makes the file unreadable as an MLP (a gap in its layers) says more.
            Err(why) => anyhow!("{e:#} ({why:#})"),
        })
    }

    fn diverged_hint(&self) -> String {
        if self.lambda > 0.0 {
            // L2 multiplies the weights by 1 - eta*lambda/n each step: far from (0, 1], it is
            // the cause, not the cure.
            format!("a smaller learning rate (--eta) or a smaller --lambda (now {:?}: each step multiplies the weights by 1 - eta*lambda/n)", self.lambda)
        } else {
            "a smaller learning rate (--eta) or L2 regularisation (--lambda)".to_string()
        }
    }
}
