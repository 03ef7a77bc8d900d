//! Michael Nielsen's from-scratch network (nn.py / `network.py`, with `network2.py`'s cost,
//! L2 and init options): sigmoid layers, hand-written backprop, mini-batch SGD, in plain
//! Rust and f64 (nn.py computes in float64). No autograd; libtorch only draws the random
//! numbers ([`shuffle`]), the same draws as the PyTorch reference's for a seed.
//!
//! - [`network`]: [`Network`] in Nielsen's vocabulary (`feedforward`, `backprop`,
//!   `update_mini_batch`, `nabla_w`, `eta`), the readable reference;
//! - [`cost`]: the sigmoid and the two costs; [`exp`]: the e^x they use;
//! - [`fast`]: [`fast::FastNet`], the same arithmetic laid out for speed (sparse first
//!   layer, runtime-selected SIMD), bit for bit equal to [`Network`]; [`sparse`]: the images
//!   as it reads them;
//! - [`rule`]: how a network starts ([`Init`]) and each step's rule ([`Sgd`]);
//! - [`hyper`]: the hyperparameters and their checks; [`sizes`]: layer sizes; [`io`]:
//!   weights files; [`shuffle`]: the random streams;
//! - [`inside`]: one image through the network, for `nnmnist serve`'s page: activations,
//!   each hidden neuron's incoming weights, the saliency through backprop;
//! - [`model`]: the plug-in of the run driver ([`crate::driver`]), training either
//!   [`Network`] or [`fast::FastNet`];
//! - [`kind`]: the MLP as the commands know it (told from weights, classifying);
//!   [`trace`]: its step of `nnmnist trace`.
pub mod cost;
pub mod exp;
pub mod fast;
pub mod hyper;
pub mod inside;
pub mod io;
pub mod kind;
pub mod matrix;
pub mod model;
pub mod network;
pub mod rule;
pub mod shuffle;
pub mod sizes;
pub mod sparse;
pub mod trace;

pub use cost::{one_hot, pixels_f64, sigmoid, sigmoid_prime, Cost};
pub use hyper::Hyper;
pub use sizes::{check_sizes, join_sizes};
pub use io::{infer_sizes, network_of};
pub use kind::MlpKind;
pub use model::{Engine, Mlp, Options};
pub use network::Network;
pub use rule::{Init, Sgd};
pub use shuffle::epoch_order;
