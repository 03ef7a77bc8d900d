//! nnmnist: MNIST two ways, side by side, checked against PyTorch.
//!
//! - [`mlp`]: Michael Nielsen's from-scratch network (nn.py / network.py): sigmoid layers,
//!   hand-written backprop and mini-batch SGD in plain Rust, no autograd, no libtorch.
//! - [`convnet`]: nn_convnet.py's small convnet in tch (libtorch), trained by [`train`] on
//!   CPU or CUDA (on CUDA as one captured CUDA graph, see [`cuda_graph`]).
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod metrics;
pub mod mlp;
pub mod run;
pub mod show;
pub mod convnet;
pub mod cuda_graph;
pub mod device;
pub mod train;
