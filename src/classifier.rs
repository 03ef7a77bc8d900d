//! The seam between the commands and the networks. A network nnmnist knows is a [`Kind`]:
//! its name, the tensor its weights are told by, whether it runs on a device, and how it is
//! built from weights into a [`Classifier`], which is what `eval` and `show` (and anything
//! else that classifies an image) ask of a network; what `nnmnist serve`'s page shows of its
//! insides is an [`Inside`] and a [`Portrait`]. Its step of `nnmnist trace` is a
//! [`TraceStep`]. Each network implements them in its own folder (src/convnet/, src/mlp/);
//! src/networks.rs lists the networks, and is the one place that does.
use crate::data::{Split, CLASSES, PIXELS};
use crate::device;
use crate::evaluation::Evaluation;
use crate::weights::{Entry, Weights};
use anyhow::{bail, Result};
use serde::Serialize;
use std::fmt::Debug;
use std::path::Path;
use tch::Device;

/// A network nnmnist knows, before any weights are read.
pub trait Kind: Sync {
    /// Its name in `--model`, checkpoints and metrics: "convnet", "mlp".
    fn name(&self) -> &'static str;
    /// Its name in a sentence: "convnet", "MLP".
    fn title(&self) -> &'static str;
    /// The tensor its weights are told by: a weights file that holds one of this name holds
    /// this network ("model.0.weight" for the convnet).
    fn marker(&self) -> &'static str;
    /// Whether it runs on a device `--device` and `--threads` choose (the convnet, through
    /// libtorch); one that does not refuses them.
    fn takes_device(&self) -> bool;
    /// The device it runs on for `flags`, resolved once (libtorch's thread count set);
    /// the CPU for a network that takes no device.
    fn place(&self, flags: &device::Flags) -> Result<Device>;
    /// The network `weights` holds, on `device`: every tensor it needs checked (name, shape,
    /// finite values); the others noted and left unread.
    fn load(&self, weights: &Weights, device: Device) -> Result<Box<dyn Classifier>>;
}

/// A network built from weights, ready to classify. It may move to another thread (`serve`
/// reads requests on its own).
pub trait Classifier: Send {
    /// The network it is.
    fn kind(&self) -> &'static dyn Kind;
    /// What it is and how its probabilities are obtained, for people:
    /// "MLP 784,30,10; probabilities: the sigmoid outputs divided by their sum".
    fn describe(&self) -> String;
    /// The device it runs on, as metrics record it: "cpu", "cuda:0".
    fn device_name(&self) -> String;
    /// The ten class probabilities of one image (28x28 pixels row by row, 0 = background,
    /// as MNIST's files hold them), summing to 1.
    fn probabilities(&self, image: &[u8; PIXELS]) -> Result<[f64; CLASSES]>;
    /// Evaluates `test` as the script the network ports does (its test loss, its
    /// predictions).
    fn evaluate(&self, test: &Split) -> Result<Evaluation>;
    /// The lines `nnmnist eval` prints of `ev`, an evaluation of the weights file `weights`:
    /// those of the script the network ports.
    fn eval_lines(&self, ev: &Evaluation, weights: &Path) -> String;
    /// What it does with one image, for `nnmnist serve`'s page: its scores, the outputs of
    /// its layers, a saliency map.
    fn inside(&self, image: &[u8; PIXELS]) -> Result<Inside>;
    /// What it is apart from any image, for `nnmnist serve`'s page.
    fn portrait(&self) -> Portrait;
}

/// A tensor `nnmnist serve`'s page draws: a layer's output for one image, or weights.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Picture {
    /// Its PyTorch name: the module whose output it is (`model.1`, `1`), or the parameter
    /// (`0.weight`).
    pub name: String,
    /// What it is, for people.
    pub title: String,
    /// (C, H, W): C pictures of H x W; (F): one row of F values.
    pub shape: Vec<usize>,
    /// Row-major, float32.
    pub values: Vec<f32>,
}

/// What a network does with one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Inside {
    /// Its scores before its output function (10): the convnet's logits, the MLP's output
    /// layer's z before the sigmoid.
    pub logits: Vec<f64>,
    /// The outputs of the layers the page draws, in the network's order.
    pub layers: Vec<Picture>,
    /// The gradient of the predicted digit's score (`logits[digit]`, digit the first index
    /// of the largest output) with respect to the 784 input values, (28, 28) row-major.
    pub saliency: Vec<f32>,
}

/// What a network is apart from any image.
#[derive(Clone, Debug, PartialEq)]
pub struct Portrait {
    /// What its saliency map is the gradient of, and how it is computed.
    pub saliency: &'static str,
    /// Its weights drawn as pictures where they show something (the MLP: each hidden
    /// neuron's incoming weights, (hidden, 28, 28)); none for others.
    pub weights: Vec<Picture>,
}

/// A network's step of `nnmnist trace`, its flags resolved: one training step on one batch,
/// with every intermediate tensor (see `crate::cmd::trace`).
pub trait TraceStep: Debug {
    /// The network it steps.
    fn kind(&self) -> &'static dyn Kind;
    /// The first of its flags that was given, if any: refused when another network is traced.
    fn given(&self) -> Option<&'static str>;
    /// Its flags, for messages: "--lr, --weight-decay and --deterministic".
    fn flags(&self) -> &'static str;
    /// The batch size without `--batch-size`: the network's training default.
    fn default_batch_size(&self) -> usize;
    /// The bytes of the tensors the step writes for a batch of `batch_size` images, with the
    /// network of `weights`.
    fn bytes(&self, weights: &Weights, batch_size: usize) -> Result<u128>;
    /// The step on `batch` from the network of `weights`, on `device`: every tensor, in the
    /// order the computation makes them.
    fn trace(&self, weights: &Weights, batch: &Split, device: Device) -> Result<Vec<Entry>>;
}

/// Ten probabilities from a network's outputs, refused unless there are ten finite ones.
pub fn ten(probs: Vec<f64>) -> Result<[f64; CLASSES]> {
    match <[f64; CLASSES]>::try_from(probs) {
        Ok(p) if p.iter().all(|p| p.is_finite()) => Ok(p),
        Ok(p) => bail!("the network gave {p:?}, expected {CLASSES} finite probabilities"),
        Err(p) => bail!("the network gave {} outputs ({p:?}), expected {CLASSES}", p.len()),
    }
}
