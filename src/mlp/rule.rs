//! How a network starts and how it learns: [`Init`], the scale of its initial weights, and
//! [`Sgd`], the rule of each gradient-descent step (network2.py's `SGD` arguments).
use super::cost::Cost;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// nn.py: every weight and bias from N(0, 1)
    Normal,
    /// network2.py: weights from N(0, 1/fan_in), biases from N(0, 1)
    Scaled,
}

/// The gradient-descent rule of a run (network2.py's `SGD` arguments): the learning rate
/// `eta`, the cost, and L2 regularisation `lambda` over a training set of `n` images.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub eta: f64,
    pub cost: Cost,
    pub lambda: f64,
    pub n: usize,
}
