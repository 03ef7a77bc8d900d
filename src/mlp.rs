//! Michael Nielsen's from-scratch network (nn.py / `network.py`, with `network2.py`'s cost,
//! L2 and init options): sigmoid layers, hand-written backprop, mini-batch SGD, in plain
//! Rust and f64 (nn.py computes in float64). No autograd, no libtorch.
//!
//! Two implementations of the same mathematics live here:
//! - [`Network`] and its methods ([`Network::feedforward`], [`Network::backprop`],
//!   [`Network::update_mini_batch`], ...) follow nn.py line for line, in its layout
//!   (`weights[i]` is (out, in), `biases[i]` is (out)). They are the readable reference, and
//!   what the gradient checks and the PyTorch parity tests exercise.
//! - [`fast::FastNet`] trains the same network much faster (transposed, padded weights;
//!   the first layer skips the ~80% zero pixels of MNIST, which is exact; runtime-selected
//!   SIMD). The tests check it against [`Network`] step for step.
//!
//! Shapes below are written (rows, cols), row-major. A mini-batch of `m` images is one
//! matrix `x` of shape (m, sizes[0]): image j is row j (nn.py's (784, m) matrix, transposed
//! in memory, the same numbers). Targets `y` are (m, 10) one-hot rows.
use crate::checkpoint::{Entry, Weights};
use crate::cli::{Cost, Init};
use anyhow::{bail, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

pub mod fast;
pub mod train;

pub use train::{eval, run, run_with, Hyper};

/// The logistic function of nn.py, with z clipped to [-100, 100]: 1 / (1 + exp(-z)).
/// Uses [`exp`], so that it vectorises and gives the same bits on every machine.
#[inline(always)]
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + exp(-z.clamp(-100.0, 100.0)))
}

/// e^x for |x| <= 700, within 1 ulp or so of the correctly rounded value (tests/mlp.rs
/// checks it against the C library), from additions, multiplications and bit operations
/// only: the compiler vectorises it, and it gives the same bits on every machine and SIMD
/// width (a libm call does neither). x = n ln 2 + r with n = round(x / ln 2) (the 1.5 * 2^52
/// trick) and |r| <= ln2 / 2 (Cody and Waite's two-part ln 2); e^r by its Taylor
/// polynomial of degree 13 (truncation below 1e-17 relative); times 2^n built in the
/// exponent bits. NaN gives NaN; the sigmoid never passes |x| > 100.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    const MAGIC: f64 = 6755399441055744.0; // 1.5 * 2^52
    // fdlibm's ln2_hi (its low 32 bits zero, so n * LN2_HI is exact) and ln2_lo.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const C: [f64; 14] = [
        1.0,
        1.0,
        0.5,
        0.16666666666666666,
        0.041666666666666664,
        0.008333333333333333,
        0.001388888888888889,
        0.0001984126984126984,
        2.48015873015873e-05,
        2.7557319223985893e-06,
        2.755731922398589e-07,
        2.505210838544172e-08,
        2.08767569878681e-09,
        1.6059043836821613e-10,
    ];
    let t = x * std::f64::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = C[13];
    for k in (0..13).rev() {
        p = p * r + C[k];
    }
    let ni = (t.to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64);
    p * f64::from_bits((ni.wrapping_add(1023) as u64) << 52)
}

/// Derivative of [`sigmoid`]: sigmoid(z) * (1 - sigmoid(z)).
#[inline(always)]
pub fn sigmoid_prime(z: f64) -> f64 {
    let s = sigmoid(z);
    s * (1.0 - s)
}

/// ln(1 + e^t) without overflow.
#[inline(always)]
fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

/// Cost of one image. `z`, `a` = sigmoid(z) and `y` are the output layer's (10) vectors.
/// Quadratic (nn.py): 0.5 * ||a - y||^2. Cross-entropy (network2.py):
/// sum -y ln a - (1 - y) ln(1 - a), computed from the clipped z as
/// y softplus(-z) + (1 - y) softplus(z): the same value wherever Nielsen's form is finite,
/// and finite where it is not (a saturated output rounds a to exactly 1.0).
pub fn cost_fn(cost: Cost, z: &[f64], a: &[f64], y: &[f64]) -> f64 {
    match cost {
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

/// nn.py's `cost_derivative`: dC/da of the quadratic cost, a - y. Shapes: a, y (10) -> (10).
pub fn cost_derivative(a: &[f64], y: &[f64]) -> Vec<f64> {
    a.iter().zip(y).map(|(a, y)| a - y).collect()
}

/// The output error delta_L = dC/dz_L of one output value: quadratic (a - y) * sigmoid'(z),
/// cross-entropy a - y (the sigmoid' cancels). sigmoid'(z) is computed as a * (1 - a), which
/// is bit for bit nn.py's sigmoid(z) * (1 - sigmoid(z)).
#[inline(always)]
pub fn output_delta(cost: Cost, a: f64, y: f64) -> f64 {
    match cost {
        Cost::Quadratic => (a - y) * (a * (1.0 - a)),
        Cost::CrossEntropy => a - y,
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

/// A fully connected sigmoid network. `sizes` = neurons per layer, input first;
/// `weights[i]`: (sizes[i+1], sizes[i]) row-major; `biases[i]`: (sizes[i+1]).
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub sizes: Vec<usize>,
    pub weights: Vec<Vec<f64>>,
    pub biases: Vec<Vec<f64>>,
}

/// The activations of one forward pass over a mini-batch of `m` images:
/// `zs[i]` and `activations[i + 1]` are (m, sizes[i+1]); `activations[0]` is the input (m, sizes[0]).
#[derive(Clone, Debug)]
pub struct Forward {
    pub zs: Vec<Vec<f64>>,
    pub activations: Vec<Vec<f64>>,
}

impl Network {
    /// A new network drawn from `rng` as nn.py does: first every bias vector, then every
    /// weight matrix, row-major, from N(0, 1); with [`Init::Scaled`] each weight is divided
    /// by sqrt(fan_in) (network2.py's default_weight_initializer).
    pub fn new<R: Rng>(sizes: &[usize], init: Init, rng: &mut R) -> Network {
        let biases = sizes[1..].iter().map(|&y| (0..y).map(|_| StandardNormal.sample(rng)).collect()).collect();
        let weights = sizes
            .windows(2)
            .map(|w| {
                let (x, y) = (w[0], w[1]);
                let scale = match init {
                    Init::Normal => 1.0,
                    Init::Scaled => (x as f64).sqrt(),
                };
                (0..x * y)
                    .map(|_| {
                        let v: f64 = StandardNormal.sample(rng);
                        if scale == 1.0 {
                            v
                        } else {
                            v / scale
                        }
                    })
                    .collect()
            })
            .collect();
        Network { sizes: sizes.to_vec(), weights, biases }
    }

    /// A network seeded as `nnmnist mlp --seed` does: ChaCha8 from `seed`, stream 0.
    pub fn seeded(sizes: &[usize], init: Init, seed: u64) -> Network {
        Network::new(sizes, init, &mut init_rng(seed))
    }

    /// Number of weight layers (sizes.len() - 1).
    pub fn num_layers(&self) -> usize {
        self.sizes.len() - 1
    }

    /// The network's output for one image. x: (sizes[0]) -> (sizes[last]), e.g. 784 -> 10.
    pub fn feedforward(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.sizes[0], "feedforward: input has {} values, the network takes {}", x.len(), self.sizes[0]);
        let mut a = x.to_vec();
        for (w, b) in self.weights.iter().zip(&self.biases) {
            let n_in = a.len();
            a = b
                .iter()
                .enumerate()
                .map(|(o, &bo)| {
                    let row = &w[o * n_in..(o + 1) * n_in];
                    sigmoid(row.iter().zip(&a).map(|(w, a)| w * a).sum::<f64>() + bo)
                })
                .collect();
        }
        a
    }

    /// Forward pass over a mini-batch, keeping what backprop needs.
    /// x: (m, sizes[0]); returns zs[i]: (m, sizes[i+1]), activations[i]: (m, sizes[i]).
    /// z = w a + b (nn.py's np.dot(w, activation) + b), a = sigmoid(z).
    pub fn forward(&self, x: &[f64], m: usize) -> Forward {
        assert_eq!(x.len(), m * self.sizes[0], "forward: x must be (m, {})", self.sizes[0]);
        let mut zs = Vec::with_capacity(self.num_layers());
        let mut activations = vec![x.to_vec()];
        for (i, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let (n_in, n_out) = (self.sizes[i], self.sizes[i + 1]);
            let a_prev = activations.last().unwrap();
            let mut z = vec![0.0; m * n_out];
            for j in 0..m {
                let aj = &a_prev[j * n_in..(j + 1) * n_in];
                for o in 0..n_out {
                    let row = &w[o * n_in..(o + 1) * n_in];
                    z[j * n_out + o] = row.iter().zip(aj).map(|(w, a)| w * a).sum::<f64>() + b[o];
                }
            }
            let a = z.iter().map(|&z| sigmoid(z)).collect();
            zs.push(z);
            activations.push(a);
        }
        Forward { zs, activations }
    }

    /// Gradient of the mini-batch's summed cost (nn.py's backprop over the batch matrix).
    /// x: (m, sizes[0]), y: (m, sizes[last]) one-hot. Returns (nabla_b, nabla_w) with
    /// nabla_b[i]: (sizes[i+1]) and nabla_w[i]: (sizes[i+1], sizes[i]), the sums over the m
    /// images of dC/db and dC/dw. Output error delta_L: (m, 10) by [`output_delta`]; then
    /// delta_l = (w_{l+1}^T delta_{l+1}) * sigmoid'(z_l); nabla_b = sum_j delta,
    /// nabla_w = delta^T a_prev.
    pub fn backprop(&self, x: &[f64], y: &[f64], m: usize, cost: Cost) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let nl = self.num_layers();
        let n_last = self.sizes[nl];
        assert_eq!(y.len(), m * n_last, "backprop: y must be (m, {n_last})");
        let fwd = self.forward(x, m);
        let mut nabla_b: Vec<Vec<f64>> = self.biases.iter().map(|b| vec![0.0; b.len()]).collect();
        let mut nabla_w: Vec<Vec<f64>> = self.weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let a_last = &fwd.activations[nl];
        let mut delta: Vec<f64> = a_last.iter().zip(y).map(|(&a, &y)| output_delta(cost, a, y)).collect();
        for l in (0..nl).rev() {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let a_prev = &fwd.activations[l];
            for j in 0..m {
                for o in 0..n_out {
                    let d = delta[j * n_out + o];
                    nabla_b[l][o] += d;
                    let row = &mut nabla_w[l][o * n_in..(o + 1) * n_in];
                    for (nw, a) in row.iter_mut().zip(&a_prev[j * n_in..(j + 1) * n_in]) {
                        *nw += d * a;
                    }
                }
            }
            if l > 0 {
                let w = &self.weights[l];
                let a_prev = &fwd.activations[l];
                let mut prev = vec![0.0; m * n_in];
                for j in 0..m {
                    for k in 0..n_in {
                        let s: f64 = (0..n_out).map(|o| w[o * n_in + k] * delta[j * n_out + o]).sum();
                        let a = a_prev[j * n_in + k];
                        prev[j * n_in + k] = s * (a * (1.0 - a));
                    }
                }
                delta = prev;
            }
        }
        (nabla_b, nabla_w)
    }

    /// One SGD step on a mini-batch (nn.py's update_mini_batch; network2.py's L2 term):
    /// w <- (1 - eta*lambda/n) w - (eta/m) nabla_w, b <- b - (eta/m) nabla_b, with `n` the
    /// training-set size. x: (m, sizes[0]), y: (m, 10). Returns the mean cost of the batch
    /// before the step (without the L2 term).
    #[allow(clippy::too_many_arguments)]
    pub fn update_mini_batch(&mut self, x: &[f64], y: &[f64], m: usize, eta: f64, cost: Cost, lambda: f64, n: usize) -> f64 {
        let batch_cost = self.total_cost(x, y, m, cost) / m as f64;
        let (nabla_b, nabla_w) = self.backprop(x, y, m, cost);
        let c = eta / m as f64;
        let decay = 1.0 - eta * (lambda / n as f64);
        for (w, nw) in self.weights.iter_mut().zip(&nabla_w) {
            for (w, nw) in w.iter_mut().zip(nw) {
                *w = decay * *w - c * nw;
            }
        }
        for (b, nb) in self.biases.iter_mut().zip(&nabla_b) {
            for (b, nb) in b.iter_mut().zip(nb) {
                *b -= c * nb;
            }
        }
        batch_cost
    }

    /// Summed cost of a batch (no L2 term). x: (m, sizes[0]), y: (m, 10).
    pub fn total_cost(&self, x: &[f64], y: &[f64], m: usize, cost: Cost) -> f64 {
        let fwd = self.forward(x, m);
        let nl = self.num_layers();
        let k = self.sizes[nl];
        (0..m)
            .map(|j| cost_fn(cost, &fwd.zs[nl - 1][j * k..(j + 1) * k], &fwd.activations[nl][j * k..(j + 1) * k], &y[j * k..(j + 1) * k]))
            .sum()
    }

    /// nn.py's evaluate: how many of the images x (m, sizes[0]) the network classifies as
    /// `labels` (m), the prediction being the first index of the largest output.
    pub fn evaluate(&self, x: &[f64], labels: &[u8]) -> usize {
        let n_in = self.sizes[0];
        labels.iter().enumerate().filter(|&(j, &l)| argmax(&self.feedforward(&x[j * n_in..(j + 1) * n_in])) == l as usize).count()
    }

    /// The tensors as PyTorch's nn.Sequential(Linear, Sigmoid, Linear, ...) names them:
    /// `{2i}.weight` (sizes[i+1], sizes[i]) and `{2i}.bias` (sizes[i+1]), F64.
    pub fn entries(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..self.num_layers() {
            out.push(Entry::f64(format!("{}.weight", 2 * i), vec![self.sizes[i + 1], self.sizes[i]], self.weights[i].clone()));
            out.push(Entry::f64(format!("{}.bias", 2 * i), vec![self.sizes[i + 1]], self.biases[i].clone()));
        }
        out
    }

    /// The network in `weights`, whose shapes must be those of `sizes` (F32 or F64; F32 is
    /// widened exactly). Errors name the file, the key and both shapes.
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
                weights.path.display(),
                join_sizes(sizes),
                infer_sizes(weights).map(|s| join_sizes(&s)).unwrap_or_else(|e| format!("unreadable ({e})"))
            );
        }
        Ok(Network { sizes: sizes.to_vec(), weights: ws, biases: bs })
    }
}

/// "784,30,10".
pub fn join_sizes(sizes: &[usize]) -> String {
    sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
}

/// The layer sizes of an MLP weights file, read from the shapes of `0.weight`, `2.weight`, ...
pub fn infer_sizes(weights: &Weights) -> Result<Vec<usize>> {
    let path = weights.path.display();
    let first = weights.entries.get("0.weight").ok_or_else(|| {
        let keys: Vec<&str> = weights.entries.keys().map(|k| k.as_str()).collect();
        anyhow::anyhow!("{path}: not MLP weights: no tensor 0.weight (the file has: {})", keys.join(", "))
    })?;
    if first.shape.len() != 2 {
        bail!("{path}: tensor 0.weight has shape {:?}, expected (out, in)", first.shape);
    }
    let mut sizes = vec![first.shape[1]];
    let mut i = 0;
    while let Some(e) = weights.entries.get(&format!("{i}.weight")) {
        if e.shape.len() != 2 || e.shape[1] != *sizes.last().unwrap() {
            bail!("{path}: tensor {i}.weight has shape {:?}, expected ({{out}}, {}) to follow the previous layer", e.shape, sizes.last().unwrap());
        }
        sizes.push(e.shape[0]);
        i += 2;
    }
    Ok(sizes)
}

/// Loads MLP weights for `show` and `eval`: sizes inferred from the file (must run
/// 784 -> ... -> 10), F32 or F64.
pub fn load_network(path: &Path) -> Result<Network> {
    let weights = Weights::load(path)?;
    network_of(&weights)
}

/// The MLP a weights file holds, its layer sizes read from the shapes of `0.weight`, `2.weight`...
pub fn network_of(weights: &Weights) -> Result<Network> {
    let sizes = infer_sizes(weights)?;
    crate::cli::check_sizes(&sizes).map_err(|e| anyhow::anyhow!("{}: layer sizes {} do not fit MNIST: {e}", weights.path.display(), join_sizes(&sizes)))?;
    Network::from_weights(weights, &sizes)
}

/// First index of the largest value (np.argmax).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// The RNG of the initial weights: ChaCha8 seeded from `seed`, stream 0.
pub fn init_rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// The training order of epoch `epoch` (0-based) over `n` images: a shuffle by ChaCha8
/// seeded from `seed` on stream `epoch + 1`, so any epoch's order can be rebuilt (a resumed
/// run follows the same batches); file order with `no_shuffle`.
pub fn epoch_order(seed: u64, epoch: usize, n: usize, no_shuffle: bool) -> Vec<u32> {
    use rand::seq::SliceRandom;
    let mut order: Vec<u32> = (0..n as u32).collect();
    if !no_shuffle {
        let mut rng = init_rng(seed);
        rng.set_stream(epoch as u64 + 1);
        order.shuffle(&mut rng);
    }
    order
}
