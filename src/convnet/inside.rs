//! What the convnet does with one image, layer by layer: the feature maps `nnmnist serve`'s
//! page draws, its logits, and a saliency map through libtorch's autograd.
//!
//! ```text
//! x            (1, 1, 28, 28)  the input, u8 / 255
//! model.1      (1, 8, 28, 28)  conv 1 (model.0), then ReLU: 8 feature maps
//! model.2      (1, 8, 14, 14)  max-pooled (model.3's ReLU changes nothing after it)
//! model.4      (1, 16, 12, 12) conv 2: 16 feature maps (no ReLU before the pool)
//! model.5      (1, 16, 6, 6)   max-pooled
//! model.8      (1, 100)        the hidden layer: Linear (model.7), then ReLU
//! model.9      (1, 10)         the logits
//! saliency     (28, 28)        d logits[digit] / d x, digit = the largest logit
//! ```
//! The saliency is the gradient of the predicted digit's logit (its score before the
//! softmax) with respect to the 784 input values, by libtorch's autograd (`torch.autograd.grad`):
//! how much each pixel, made a little brighter, would raise that score.
use super::net::{images_tensor, Net, MODEL};
use crate::data::{COLS, PIXELS, ROWS};
use crate::evaluation::argmax;
use anyhow::{ensure, Context, Result};
use tch::{Device, Kind, Tensor};

/// The layers whose outputs the page shows (`model.{i}`), with what they are.
pub const SHOWN: [(usize, &str); 6] = [
    (1, "conv 1 (3x3, 8 channels) + ReLU"),
    (2, "max-pool 2x2"),
    (4, "conv 2 (3x3, 16 channels)"),
    (5, "max-pool 2x2"),
    (8, "linear 576 -> 100 + ReLU"),
    (9, "linear 100 -> 10: the logits"),
];

/// One layer's output for one image: `model.{index}`, its shape without the batch
/// dimension, (C, H, W) or (F), and its values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerOutput {
    pub index: usize,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// The convnet on one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Inside {
    /// The outputs of the [`SHOWN`] layers, in order.
    pub layers: Vec<LayerOutput>,
    /// model.9's output (10).
    pub logits: Vec<f32>,
    /// The first index of the largest logit.
    pub digit: usize,
    /// d logits[digit] / d x (28 x 28, row-major), x the input in [0, 1].
    pub saliency: Vec<f32>,
}

/// The convnet on one image of 784 u8 pixels (MNIST's form), on the network's device.
pub fn inside(net: &Net, pixels: &[u8]) -> Result<Inside> {
    ensure!(pixels.len() == PIXELS, "an image has {PIXELS} pixels, not {}", pixels.len());
    inside_of(net, &images_tensor(pixels, net.device()))
}

/// The convnet on the input `x` (1, 1, 28, 28), of the network's kind (float32, or
/// float64 for a network converted with `vs.double()`, as the gradient check does).
pub fn inside_of(net: &Net, x: &Tensor) -> Result<Inside> {
    let x = x.detach().set_requires_grad(true);
    let outs = net.forward_layers(&x);
    ensure!(outs.len() == MODEL.len(), "the convnet gave {} layer outputs", outs.len());
    let logits = to_f32(&outs[MODEL.len() - 1]).context("reading the logits")?;
    let digit = argmax(&logits);
    let grad = saliency(&x, &outs[MODEL.len() - 1], digit)?;
    let layers = SHOWN
        .iter()
        .map(|&(index, _)| {
            let t = &outs[index];
            Ok(LayerOutput { index, shape: t.size()[1..].iter().map(|&d| d as usize).collect(), values: to_f32(t)? })
        })
        .collect::<Result<_>>()?;
    Ok(Inside { layers, logits, digit, saliency: to_f32(&grad)? })
}

/// d logits[0, digit] / d x by autograd, without touching the parameters' gradients
/// (`torch.autograd.grad`, not `backward`): x (1, 1, 28, 28) requires grad, logits (1, 10) were
/// computed from it. Shape (28, 28), of x's kind.
pub fn saliency(x: &Tensor, logits: &Tensor, digit: usize) -> Result<Tensor> {
    let score = logits.get(0).get(digit as i64);
    let grad = Tensor::f_run_backward(&[score], &[x], false, false)?.pop().context("autograd gave no gradient")?;
    Ok(grad.view([ROWS as i64, COLS as i64]))
}

/// A tensor's values as f32 on the CPU, row-major.
fn to_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))?)
}
