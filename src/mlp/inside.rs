//! What the MLP does with one image, in Nielsen's terms: the activations of every layer,
//! what each hidden neuron looks for, and a saliency map through the network's own
//! backprop (no autograd). Shapes for the default 784,30,10:
//!
//! ```text
//! x                   (784)     the input, u8 / 255
//! activations[1]      (30)      the hidden layer: sigmoid(w[0] x + b[0])
//! zs[last]            (10)      the output layer's z, before its sigmoid: the logits
//! activations[last]   (10)      sigmoid(zs[last])
//! weights[0] row j    (784)     hidden neuron j's incoming weights, drawn as 28 x 28: the
//!                               pattern that excites it most (Nielsen, chapter 1)
//! saliency            (784)     d zs[last][digit] / d x, digit = the largest output
//! ```
//! The saliency is the gradient of the predicted digit's z (its score before the sigmoid)
//! with respect to the 784 input values: `backprop`'s backward pass started from that one
//! output, with delta = 1 there and 0 elsewhere, and carried one layer further, to the input:
//!
//! ```text
//! delta_L  = e_digit                                   (10)
//! delta_l  = (w[l+1]^T delta_{l+1}) * sigmoid'(z_l)    (sizes[l+1]), for each hidden layer
//! d z / dx = w[0]^T delta_0                            (784)
//! ```
use super::cost::sigmoid_prime;
use super::matrix::dot;
use super::network::{Forward, Network};
use crate::evaluation::argmax;

/// The MLP on one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Inside {
    /// The activations of each hidden layer, `activations[1..last]`: (sizes[1]), ...
    pub hidden: Vec<Vec<f64>>,
    /// The output layer's z, before its sigmoid (sizes[last]).
    pub logits: Vec<f64>,
    /// The output layer's activations, sigmoid(logits).
    pub outputs: Vec<f64>,
    /// The first index of the largest output.
    pub digit: usize,
    /// d logits[digit] / d x (sizes[0]), x the input in [0, 1].
    pub saliency: Vec<f64>,
}

/// The MLP on one input x (sizes[0]) in [0, 1].
pub fn inside(net: &Network, x: &[f64]) -> Inside {
    let fwd = net.forward(x, 1);
    let last = net.weights.len();
    let outputs = fwd.activations[last].clone();
    let digit = argmax(&outputs);
    Inside {
        hidden: fwd.activations[1..last].to_vec(),
        logits: fwd.zs[last - 1].clone(),
        saliency: saliency(net, &fwd, digit),
        outputs,
        digit,
    }
}

/// d zs[last][class] / d x for the one image of `fwd` (a forward pass with m = 1): the
/// backward pass of [`Network::backprop`], started from that output and carried to the
/// input. Shape (sizes[0]).
pub fn saliency(net: &Network, fwd: &Forward, class: usize) -> Vec<f64> {
    let nl = net.weights.len();
    let mut delta = vec![0.0; net.sizes[nl]];
    delta[class] = 1.0;
    for l in (0..nl).rev() {
        let (n_in, n_out) = (net.sizes[l], net.sizes[l + 1]);
        // (1, n_out) . (n_out, n_in): w[l]^T delta, as a row
        let back = dot(&delta, &net.weights[l], 1, n_out, n_in);
        if l == 0 {
            return back;
        }
        delta = back.iter().zip(&fwd.zs[l - 1]).map(|(d, &z)| d * sigmoid_prime(z)).collect();
    }
    unreachable!("a network has at least one weight layer")
}

/// Hidden neuron `j`'s incoming weights (sizes[0]): row j of `weights[0]`, what it looks for.
pub fn incoming(net: &Network, j: usize) -> &[f64] {
    let n_in = net.sizes[0];
    &net.weights[0][j * n_in..(j + 1) * n_in]
}
