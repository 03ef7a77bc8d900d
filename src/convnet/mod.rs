//! The convnet of nn_convnet.py, layer for layer, in tch (libtorch), trained on the CPU or
//! CUDA as nn_convnet.py trains it.
//!
//! - [`net`]: the network ([`Net`]), named as PyTorch's state_dict, PyTorch's init;
//! - [`step`]: the batch order, the loss, SGD and the eager training step;
//! - [`cuda_graph`]: the step captured as one CUDA graph (with its C++ shim, cuda_graph.cpp);
//! - [`determinism`]: `--deterministic` (cuDNN and ATen settings, through the shim);
//! - [`eval`]: nn_convnet.py's `test()`;
//! - [`inside`]: one image through the network, for `nnmnist serve`'s page: the feature maps
//!   after each layer, the logits, the saliency through autograd;
//! - [`hyper`]: hyperparameters, defaults and options; [`model`]: the plug-in of the run
//!   driver ([`crate::driver`]);
//! - [`kind`]: the convnet as the commands know it (told from weights, classifying);
//!   [`trace`]: its step of `nnmnist trace`.
pub mod cuda_graph;
pub mod determinism;
pub mod eval;
pub mod hyper;
pub mod inside;
pub mod kind;
pub mod model;
pub mod net;
pub mod step;
pub mod trace;

pub use hyper::{Hyper, Options};
pub use kind::ConvnetKind;
pub use model::Convnet;
pub use net::{images_tensor, labels_tensor, Net};
