//! nnmnist: MNIST two ways, side by side, checked against PyTorch.
//!
//! - [`mlp`]: Michael Nielsen's from-scratch network (nn.py / network.py): sigmoid layers,
//!   hand-written backprop and mini-batch SGD in plain Rust, no autograd, no libtorch in its
//!   arithmetic (only its random draws come from libtorch, see below).
//! - [`convnet`]: nn_convnet.py's small convnet in tch (libtorch), on CPU or CUDA (there as
//!   one captured CUDA graph).
//!
//! The path of a training run: [`cli`] (raw flags) -> [`config`] (typed configuration,
//! resolved once) -> [`driver`] (one run lifecycle for both models: start, data, epochs,
//! stop, checkpoints, metrics) -> the model ([`convnet::Convnet`] or [`mlp::Mlp`], through
//! [`driver::Model`]). The other commands ([`cmd`]) ask a network only through
//! [`classifier`]'s traits; [`networks`] lists the networks, the one place that does.
//! Files: [`data`] (MNIST), [`tensors`] (every tensor file, safetensors and PyTorch's, read
//! one way), [`weights`] (a model's state_dict and run state, through it), [`checkpoint`]
//! and [`files`] (writing), [`metrics`]; [`cmd::diff`] compares any two files of named
//! tensors. Both models draw their random numbers from libtorch's generator
//! ([`torch_rng`]), as their PyTorch references do, so a seed means the same run on both
//! sides. Only `main` touches process-wide signal state ([`signal`]) and maps how a command
//! ended ([`outcome`]) to the exit status; libtorch's process-wide settings (CPU threads,
//! deterministic kernels) are set by the convnet, its one user, before it computes
//! ([`convnet::Options::apply`]).
pub mod checkpoint;
pub mod classifier;
pub mod checks;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod convnet;
pub mod data;
pub mod device;
pub mod digit;
pub mod driver;
pub mod evaluation;
pub mod files;
pub mod metrics;
pub mod mlp;
pub mod networks;
pub mod nvidia;
pub mod outcome;
pub mod outputs;
pub mod serve;
pub mod signal;
pub mod system;
pub mod tensors;
pub mod terminal;
pub mod torch_rng;
pub mod version;
pub mod weights;
