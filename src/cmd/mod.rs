//! The commands other than training, one file each: what `nnmnist COMMAND` does once its flags
//! are resolved ([`crate::config`]). Training (`convnet`, `mlp`) is the run driver's
//! ([`crate::driver`]).
//! - [`eval`]: `nnmnist eval`, the test set through given weights;
//! - [`show`]: `nnmnist show N`, one image, its label and a prediction;
//! - [`predict`]: `nnmnist predict IMAGE...`, your own digit through MNIST's preprocessing,
//!   read by the networks given;
//! - [`trace`]: `nnmnist trace`, one training step with every intermediate tensor written out;
//! - [`diff`]: `nnmnist diff A B`, two files of named tensors compared tensor by tensor.
pub mod diff;
pub mod eval;
pub mod predict;
pub mod show;
pub mod trace;
