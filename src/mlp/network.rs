//! Nielsen's `Network` (network.py), in his vocabulary and his layout: `sizes`, `weights[i]`
//! (out, in), `biases[i]` (out), `feedforward`, `sgd`, `update_mini_batch`, `backprop`,
//! `evaluate`; the matrix products are named helpers ([`super::matrix`]) standing for
//! network.py's `np.dot` expressions.
//! It is the readable reference: the gradient checks and the PyTorch parity tests exercise
//! it, and the fast path ([`super::fast::FastNet`]) equals it bit for bit.
//!
//! Shapes are written (rows, cols), row-major. A mini-batch of `m` images is one matrix `x`
//! of shape (m, sizes[0]): image j is row j (nn.py's (784, m) matrix, transposed in memory,
//! the same numbers). Targets `y` are (m, 10) one-hot rows.
use super::cost::{sigmoid, sigmoid_prime, Cost};
use super::matrix::{add_row, dot, dot_at, dot_bt, sum_rows};
use super::rule::{Init, Sgd};
use crate::evaluation::argmax;

/// The MLP's name in checkpoints, metrics and `--model`.
pub const NAME: &str = "mlp";

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
    /// network.py: `for b, w in zip(self.biases, self.weights): a = sigmoid(np.dot(w, a) + b)`.
    pub fn feedforward(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.sizes[0], "feedforward: input has {} values, the network takes {}", x.len(), self.sizes[0]);
        self.forward(x, 1).activations.pop().unwrap()
    }

    /// Forward pass over a mini-batch, keeping what backprop needs.
    /// x: (m, sizes[0]); returns zs[i]: (m, sizes[i+1]), activations[i]: (m, sizes[i]).
    /// z = w a + b (network.py's `np.dot(w, activation) + b`), a = sigmoid(z).
    pub fn forward(&self, x: &[f64], m: usize) -> Forward {
        assert_eq!(x.len(), m * self.sizes[0], "forward: x must be (m, {})", self.sizes[0]);
        let mut zs = Vec::with_capacity(self.weights.len());
        let mut activations = vec![x.to_vec()];
        for (i, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            let z = add_row(dot_bt(activations.last().unwrap(), w, m, self.sizes[i], self.sizes[i + 1]), b);
            activations.push(z.iter().map(|&z| sigmoid(z)).collect());
            zs.push(z);
        }
        Forward { zs, activations }
    }

    /// Gradient of the mini-batch's summed cost (network.py's `backprop`, over the batch
    /// matrix). x: (m, sizes[0]), y: (m, sizes[last]) one-hot. Returns (nabla_b, nabla_w)
    /// with nabla_b[i]: (sizes[i+1]) and nabla_w[i]: (sizes[i+1], sizes[i]), the sums over the
    /// m images of dC/db and dC/dw. As network.py:
    /// - the output error `delta = cost_derivative(a_L, y) * sigmoid_prime(z_L)`
    ///   (network2.py's `Cost::delta`), (m, 10);
    /// - `nabla_b[-1] = delta`, `nabla_w[-1] = np.dot(delta, activations[-2].T)`;
    /// - layer by layer backwards `delta = np.dot(w.T, delta) * sigmoid_prime(z)`.
    pub fn backprop(&self, x: &[f64], y: &[f64], m: usize, cost: Cost) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let nl = self.weights.len();
        assert_eq!(y.len(), m * self.sizes[nl], "backprop: y must be (m, {})", self.sizes[nl]);
        let fwd = self.forward(x, m);
        let (mut nabla_b, mut nabla_w) = (vec![Vec::new(); nl], vec![Vec::new(); nl]);
        let (z_last, a_last) = (&fwd.zs[nl - 1], &fwd.activations[nl]);
        let mut delta: Vec<f64> = (0..z_last.len()).map(|i| cost.delta(z_last[i], a_last[i], y[i])).collect();
        for l in (0..nl).rev() {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            nabla_b[l] = sum_rows(&delta, n_out);
            nabla_w[l] = dot_at(&delta, &fwd.activations[l], m, n_out, n_in);
            if l > 0 {
                let back = dot(&delta, &self.weights[l], m, n_out, n_in);
                delta = back.iter().zip(&fwd.zs[l - 1]).map(|(d, &z)| d * sigmoid_prime(z)).collect();
            }
        }
        (nabla_b, nabla_w)
    }

    /// One gradient-descent step on a mini-batch of `m` images (network.py's
    /// `update_mini_batch`, with network2.py's L2 term):
    /// w <- (1 - eta*lambda/n) w - (eta/m) nabla_w, b <- b - (eta/m) nabla_b.
    /// x: (m, sizes[0]), y: (m, 10). Returns the mean cost of the batch before the step
    /// (without the L2 term).
    pub fn update_mini_batch(&mut self, x: &[f64], y: &[f64], m: usize, rule: &Sgd) -> f64 {
        let batch_cost = self.total_cost(x, y, m, rule.cost) / m as f64;
        let (nabla_b, nabla_w) = self.backprop(x, y, m, rule.cost);
        let c = rule.eta / m as f64;
        let decay = 1.0 - rule.eta * (rule.lambda / rule.n as f64);
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

    /// network.py's `SGD`: `epochs` epochs of mini-batch gradient descent over `training`
    /// (images (n, sizes[0]) as `u8`, and labels), each epoch in the order `order(epoch)`
    /// gives, in batches of `mini_batch_size` (the last one possibly smaller); after each
    /// epoch, `evaluate` on `test`. Returns the correct counts, one per epoch. (`nnmnist mlp`
    /// runs the same steps through the run driver, which adds checkpoints, signals and
    /// metrics; a test checks that the two agree.)
    pub fn sgd(&mut self, training: &crate::data::Split, epochs: usize, mini_batch_size: usize, rule: &Sgd, order: impl Fn(usize) -> Vec<u32>, test: &crate::data::Split) -> Vec<usize> {
        let test_x = super::pixels_f64(&test.images);
        (0..epochs)
            .map(|epoch| {
                for batch in order(epoch).chunks(mini_batch_size) {
                    let (x, y) = mini_batch(training, batch);
                    self.update_mini_batch(&x, &y, batch.len(), rule);
                }
                self.evaluate(&test_x, &test.labels)
            })
            .collect()
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

/// The images and one-hot targets of the training images `idx`: x (m, 784) in [0, 1] and
/// y (m, 10).
pub fn mini_batch(training: &crate::data::Split, idx: &[u32]) -> (Vec<f64>, Vec<f64>) {
    let images: Vec<u8> = idx.iter().flat_map(|&i| training.image(i as usize).iter().copied()).collect();
    let labels: Vec<u8> = idx.iter().map(|&i| training.labels[i as usize]).collect();
    (super::pixels_f64(&images), super::one_hot(&labels))
}
