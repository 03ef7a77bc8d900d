//! The integration tests in one binary, a module per area, so that libtorch is linked once
//! rather than once per file. (The CUDA tests, tests/cuda.rs, are a binary of their own: it
//! is the one copied to a GPU machine.)
//!
//! In-process tests share libtorch's process-wide state: they draw from its CPU generator only
//! under `torch_rng::lock`, and every in-process convnet run uses one libtorch thread.
//! Children get default signal dispositions (`common::command`).
#[path = "../common/mod.rs"]
mod common;

mod browser;
mod checkpoints;
mod compare_layers;
mod console;
mod convnet;
mod convnet_parity;
mod cuda_graph;
mod data;
mod diff;
mod digit;
mod flags;
mod inside;
mod layering;
mod metrics_log;
mod mlp;
mod mlp_parity;
mod networks;
mod outputs;
mod predict;
mod pytorch_files;
mod saving;
mod serve;
mod show;
mod signals;
mod tensor_files;
mod terminal_output;
mod torch_layout;
mod version;
mod weights;
