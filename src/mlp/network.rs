//! Nielsen's `Network` (network.py), in his vocabulary and his layout: `sizes`, `weights[i]`
//! (out, in), `biases[i]` (out), `feedforward`, `backprop`, `update_mini_batch`, `evaluate`.
//! It is the readable reference: the gradient checks and the PyTorch parity tests exercise
//! it, and the fast path ([`super::fast::FastNet`]) equals it bit for bit.
//!
//! Shapes are written (rows, cols), row-major. A mini-batch of `m` images is one matrix `x`
//! of shape (m, sizes[0]): image j is row j (nn.py's (784, m) matrix, transposed in memory,
//! the same numbers). Targets `y` are (m, 10) one-hot rows.
use super::cost::{sigmoid, sigmoid_prime, Cost};
use super::hyper::Init;
use crate::evaluation::argmax;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

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

    /// A network seeded as `nnmnist mlp --seed` does, with the draws of nn_torch.py's
    /// `--seed` ([`super::shuffle::initial_draws`]: libtorch's generator, biases before
    /// weights); with [`Init::Scaled`] each weight is divided by sqrt(fan_in), as nn_torch.py's
    /// `w / np.sqrt(n_in)` (one correctly rounded division, so the same bits).
    pub fn seeded(sizes: &[usize], init: Init, seed: u64) -> Network {
        let (biases, mut weights) = super::shuffle::initial_draws(sizes, seed);
        if init == Init::Scaled {
            for (w, &fan_in) in weights.iter_mut().zip(sizes) {
                let scale = (fan_in as f64).sqrt();
                w.iter_mut().for_each(|v| *v /= scale);
            }
        }
        Network { sizes: sizes.to_vec(), weights, biases }
    }

    /// The number of layers, the input layer included (network.py's `num_layers`): 3 for
    /// 784,30,10, which has 2 weight layers.
    pub fn num_layers(&self) -> usize {
        self.sizes.len()
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
        let mut zs = Vec::with_capacity(self.weights.len());
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
    /// images of dC/db and dC/dw. As network.py: the output error
    /// delta = cost_derivative(a_L, y) * sigmoid_prime(z_L) (network2.py's `Cost::delta`),
    /// (m, 10); then layer by layer backwards delta = (w^T delta) * sigmoid_prime(z);
    /// nabla_b = sum over images of delta, nabla_w = delta^T a_prev.
    pub fn backprop(&self, x: &[f64], y: &[f64], m: usize, cost: Cost) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let nl = self.weights.len();
        let n_last = self.sizes[nl];
        assert_eq!(y.len(), m * n_last, "backprop: y must be (m, {n_last})");
        let fwd = self.forward(x, m);
        let mut nabla_b: Vec<Vec<f64>> = self.biases.iter().map(|b| vec![0.0; b.len()]).collect();
        let mut nabla_w: Vec<Vec<f64>> = self.weights.iter().map(|w| vec![0.0; w.len()]).collect();
        let (z_last, a_last) = (&fwd.zs[nl - 1], &fwd.activations[nl]);
        let mut delta: Vec<f64> = (0..m * n_last).map(|i| cost.delta(z_last[i], a_last[i], y[i])).collect();
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
                let z = &fwd.zs[l - 1];
                let mut prev = vec![0.0; m * n_in];
                for j in 0..m {
                    for k in 0..n_in {
                        let s: f64 = (0..n_out).map(|o| w[o * n_in + k] * delta[j * n_out + o]).sum();
                        prev[j * n_in + k] = s * sigmoid_prime(z[j * n_in + k]);
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
        let nl = self.weights.len();
        let k = self.sizes[nl];
        (0..m).map(|j| cost.cost(&fwd.zs[nl - 1][j * k..(j + 1) * k], &fwd.activations[nl][j * k..(j + 1) * k], &y[j * k..(j + 1) * k])).sum()
    }

    /// nn.py's evaluate: how many of the images x (m, sizes[0]) the network classifies as
    /// `labels` (m), the prediction being the first index of the largest output.
    pub fn evaluate(&self, x: &[f64], labels: &[u8]) -> usize {
        let n_in = self.sizes[0];
        labels.iter().enumerate().filter(|&(j, &l)| argmax(&self.feedforward(&x[j * n_in..(j + 1) * n_in])) == l as usize).count()
    }
}
