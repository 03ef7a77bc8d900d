//! The convnet as the commands know it ([`crate::classifier`]): told by `model.0.weight`,
//! placed by `--device` and `--threads`, built from any state_dict of it, classifying with
//! the softmax of its logits and evaluating as nn_convnet.py's `test()`; to `serve`'s page
//! its feature maps after each layer and its saliency through autograd ([`super::inside`]).
use super::eval::{evaluate, lines};
use super::hyper::Options;
use super::net::{images_tensor, labels_tensor, Net, NAME};
use crate::classifier::{ten, Classifier, Inside, Kind, Picture, Portrait};
use crate::data::{Split, CLASSES, PIXELS};
use crate::device;
use crate::evaluation::Evaluation;
use crate::weights::Weights;
use anyhow::{Context, Result};
use std::path::Path;
use tch::Device;

/// The convnet among the networks nnmnist knows.
pub struct ConvnetKind;

impl Kind for ConvnetKind {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "convnet"
    }

    fn marker(&self) -> &'static str {
        "model.0.weight"
    }

    fn takes_device(&self) -> bool {
        true
    }

    /// `--device` (auto when not given) and `--threads`, which libtorch then uses.
    fn place(&self, flags: &device::Flags) -> Result<Device> {
        let (device, threads) = device::device_and_threads(flags.device.as_deref().unwrap_or("auto"), flags.threads)?;
        Options { device, threads, ..Options::default() }.apply()?;
        Ok(device)
    }

    fn load(&self, weights: &Weights, device: Device) -> Result<Box<dyn Classifier>> {
        Ok(Box::new(Trained { net: Net::from_weights(weights, device)? }))
    }
}

/// nn_convnet.py's network with given weights.
struct Trained {
    net: Net,
}

impl Classifier for Trained {
    fn kind(&self) -> &'static dyn Kind {
        &ConvnetKind
    }

    fn describe(&self) -> String {
        "convnet; probabilities: softmax of the logits".to_string()
    }

    fn device_name(&self) -> String {
        device::metrics_name(self.net.device())
    }

    fn probabilities(&self, image: &[u8; PIXELS]) -> Result<[f64; CLASSES]> {
        let x = images_tensor(image, self.net.device());
        let p = tch::no_grad(|| self.net.forward(&x).softmax(-1, tch::Kind::Double).view([-1]).to_device(Device::Cpu));
        ten(Vec::<f64>::try_from(p).context("reading the convnet's output")?)
    }

    fn evaluate(&self, test: &Split) -> Result<Evaluation> {
        let device = self.net.device();
        evaluate(&self.net, &images_tensor(&test.images, device), &labels_tensor(&test.labels, device))
    }

    /// nn_convnet.py's `Test Error` lines.
    fn eval_lines(&self, ev: &Evaluation, _weights: &Path) -> String {
        lines(ev)
    }

    /// The outputs of [`super::inside::SHOWN`], named `model.{i}` as PyTorch names them.
    fn inside(&self, image: &[u8; PIXELS]) -> Result<Inside> {
        let inside = super::inside::inside(&self.net, image)?;
        let layers = inside
            .layers
            .into_iter()
            .zip(super::inside::SHOWN)
            .map(|(l, (_, title))| Picture { name: format!("model.{}", l.index), title: title.into(), shape: l.shape, values: l.values })
            .collect();
        Ok(Inside { logits: inside.logits.iter().map(|&v| v as f64).collect(), layers, saliency: inside.saliency })
    }

    fn portrait(&self) -> Portrait {
        Portrait { saliency: "d logit[digit] / d pixel: the predicted digit's score before the softmax, by libtorch's autograd", weights: Vec::new() }
    }
}
