//! The sigmoid neuron and the two costs of Nielsen's book, as his `network.py` (quadratic)
//! and `network2.py` (`QuadraticCost`, `CrossEntropyCost`) define them.
use super::exp::exp;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The logistic function of nn.py, with z clipped to [-100, 100]: 1 / (1 + exp(-z)).
/// Uses [`exp`], so that it vectorises and gives the same bits on every machine.
#[inline(always)]
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + exp(-z.clamp(-100.0, 100.0)))
}

/// Derivative of [`sigmoid`]: sigmoid(z) * (1 - sigmoid(z)).
#[inline(always)]
pub fn sigmoid_prime(z: f64) -> f64 {
    let s = sigmoid(z);
    s * (1.0 - s)
}

/// network.py's `cost_derivative`: dC/da of the quadratic cost for one output, a - y.
#[inline(always)]
pub fn cost_derivative(a: f64, y: f64) -> f64 {
    a - y
}

/// ln(1 + e^t) without overflow.
#[inline(always)]
fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Cost {
    /// nn.py: C = 0.5 * ||a - y||^2
    Quadratic,
    /// network2.py: C = -sum(y ln a + (1 - y) ln(1 - a))
    CrossEntropy,
}

impl Cost {
    /// The cost of one image (network2.py's `fn`). `z`, `a` = sigmoid(z) and `y` are the
    /// output layer's (10) vectors. Quadratic: 0.5 * ||a - y||^2. Cross-entropy:
    /// sum -y ln a - (1 - y) ln(1 - a), computed from the clipped z as
    /// y softplus(-z) + (1 - y) softplus(z): the same value wherever Nielsen's form is
    /// finite, and finite where it is not (a saturated output rounds a to exactly 1.0).
    pub fn cost(self, z: &[f64], a: &[f64], y: &[f64]) -> f64 {
        match self {
            Cost::Quadratic => 0.5 * a.iter().zip(y).map(|(a, y)| (a - y) * (a - y)).sum::<f64>(),
            Cost::CrossEntropy => z
                .iter()
                .zip(y)
                .map(|(&z, &y)| {
                    let z = z.clamp(-100.0, 100.0);
                    let mut c = 0.0;
                    if y != 0.0 {
                        c += y * softplus(-z);
                    }
                    if y != 1.0 {
                        c += (1.0 - y) * softplus(z);
                    }
                    c
                })
                .sum(),
        }
    }

    /// The output error delta_L = dC/dz_L of one output (network2.py's `delta`):
    /// quadratic `cost_derivative(a, y) * sigmoid_prime(z)`, cross-entropy `a - y` (the
    /// sigmoid' cancels).
    #[inline(always)]
    pub fn delta(self, z: f64, a: f64, y: f64) -> f64 {
        match self {
            Cost::Quadratic => cost_derivative(a, y) * sigmoid_prime(z),
            Cost::CrossEntropy => a - y,
        }
    }
}

/// One-hot rows for `labels`: shape (labels.len(), 10).
pub fn one_hot(labels: &[u8]) -> Vec<f64> {
    let mut y = vec![0.0; labels.len() * crate::data::CLASSES];
    for (j, &l) in labels.iter().enumerate() {
        y[j * crate::data::CLASSES + l as usize] = 1.0;
    }
    y
}

/// Pixels as nn.py reads them: u8 / 255 in f64. Shape (n * 784) -> the same.
pub fn pixels_f64(pixels: &[u8]) -> Vec<f64> {
    pixels.iter().map(|&p| p as f64 / 255.0).collect()
}
