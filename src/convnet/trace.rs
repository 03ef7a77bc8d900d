//! The convnet's step of `nnmnist trace` ([`crate::classifier::TraceStep`]): one step of
//! torch.optim.SGD(lr, weight_decay) on one batch in train mode, writing each layer's output
//! (`model.0` ... `model.9`), the loss, each gradient (`grad.KEY`) and the parameters after
//! the step (`after.KEY`), all float32.
use super::determinism;
use super::hyper::{Hyper, DEFAULT_BATCH_SIZE};
use super::kind::ConvnetKind;
use super::net::{images_tensor, labels_tensor, output_shapes, parameter_layers, Net};
use super::step::{loss, sgd};
use crate::classifier::{Kind, TraceStep};
use crate::data::Split;
use crate::driver::Hyper as _;
use crate::weights::{Entry, Weights};
use anyhow::{Context, Result};
use clap::Args;
use tch::{Device, Tensor};

/// The convnet's flags of `nnmnist trace`.
#[derive(Args, Clone, Debug, Default)]
pub struct StepFlags {
    /// convnet: SGD learning rate [default: 0.05]
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// convnet: SGD weight decay [default: 0.001]
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// convnet: deterministic kernels on CUDA (see `nnmnist convnet --help`)
    #[arg(long)]
    pub deterministic: bool,
}

impl StepFlags {
    /// The step these flags ask for, with nn_convnet.py's defaults, checked as `nnmnist
    /// convnet` checks them.
    pub fn resolve(&self) -> Result<Step> {
        let d = Hyper::default();
        let hyper = Hyper { lr: self.lr.unwrap_or(d.lr), weight_decay: self.weight_decay.unwrap_or(d.weight_decay) };
        hyper.check()?;
        let given = [("--lr", self.lr.is_some()), ("--weight-decay", self.weight_decay.is_some()), ("--deterministic", self.deterministic)];
        Ok(Step { hyper, deterministic: self.deterministic, given: given.iter().find(|(_, g)| *g).map(|(f, _)| *f) })
    }
}

/// The convnet's step, resolved.
#[derive(Clone, Debug)]
pub struct Step {
    hyper: Hyper,
    deterministic: bool,
    given: Option<&'static str>,
}

impl TraceStep for Step {
    fn kind(&self) -> &'static dyn Kind {
        &ConvnetKind
    }

    fn given(&self) -> Option<&'static str> {
        self.given
    }

    fn flags(&self) -> &'static str {
        "--lr, --weight-decay and --deterministic"
    }

    fn default_batch_size(&self) -> usize {
        DEFAULT_BATCH_SIZE
    }

    /// Float32: every layer's output, the loss, then the parameters twice (`grad.`,
    /// `after.`).
    fn bytes(&self, _weights: &Weights, batch_size: usize) -> Result<u128> {
        let numel = |shape: &[i64]| shape.iter().map(|&d| d as u128).product::<u128>();
        let per_image: u128 = output_shapes(1).iter().map(|s| numel(s)).sum();
        let params: u128 = parameter_layers().iter().map(|(_, w)| numel(w) + w[0] as u128).sum();
        Ok(4 * (batch_size as u128 * per_image + 1 + 2 * params))
    }

    fn trace(&self, weights: &Weights, batch: &Split, device: Device) -> Result<Vec<Entry>> {
        if self.deterministic {
            determinism::enable(device)?;
        }
        let net = Net::from_weights(weights, device)?;
        let (x, y) = (images_tensor(&batch.images, device), labels_tensor(&batch.labels, device));
        let mut out = Vec::new();
        let layers = net.forward_layers(&x);
        for (i, t) in layers.iter().enumerate() {
            out.push(f32_entry(format!("model.{i}"), t)?);
        }
        let loss = loss(&layers[layers.len() - 1], &y);
        out.push(f32_entry("loss".into(), &loss.reshape([1]))?);
        let mut opt = sgd(&net, self.hyper.lr, self.hyper.weight_decay)?;
        opt.zero_grad();
        loss.backward();
        // In the order backward computes them: the last layer first, its bias before its weight.
        for (name, p) in net.parameters().iter().rev() {
            out.push(f32_entry(format!("grad.{name}"), &p.grad())?);
        }
        opt.step();
        for (name, p) in net.parameters() {
            out.push(f32_entry(format!("after.{name}"), &p)?);
        }
        Ok(out)
    }
}

/// A tensor as an F32 entry on the CPU.
fn f32_entry(name: String, t: &Tensor) -> Result<Entry> {
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).to_kind(tch::Kind::Float).flatten(0, -1)).with_context(|| format!("reading {name}"))?;
    Ok(Entry::f32(name, shape, values))
}
