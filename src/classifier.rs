//! Saved weights of either network, ready to classify: what `eval` and `show` use.
use crate::terminal::Shown;
use crate::convnet::eval;
use crate::convnet::{images_tensor, labels_tensor, Net};
use crate::data::{Split, CLASSES};
use crate::evaluation::Evaluation;
use crate::mlp::fast::FastNet;
use crate::mlp::sparse::SparseImages;
use crate::mlp::{join_sizes, network_of, pixels_f64, Cost, Network};
use crate::weights::Weights;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use tch::Device;

/// The two networks, as `--model` names them.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Convnet,
    Mlp,
}

impl ModelKind {
    /// The model's name in checkpoints and metrics ([`crate::driver::Model::NAME`]).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Convnet => crate::convnet::net::NAME,
            ModelKind::Mlp => crate::mlp::network::NAME,
        }
    }
}

/// A trained network.
pub enum Classifier {
    /// nn_convnet.py's convnet, on its device.
    Convnet(Net),
    /// An MLP, with the cost its checkpoint trained with (quadratic for plain weights).
    Mlp(Network, Cost),
}

impl Classifier {
    /// The device, as metrics record it: "cpu", "cuda:0".
    pub fn device_name(&self) -> String {
        match self {
            Classifier::Convnet(net) => crate::device::metrics_name(net.device()),
            Classifier::Mlp(..) => "cpu".to_string(),
        }
    }

    /// The network in `weights`: of `kind`, or told by its keys when `kind` is None
    /// (`model.0.weight`: the convnet; `0.weight`: an MLP).
    pub fn new(weights: &Weights, kind: Option<ModelKind>, device: Device) -> Result<Classifier> {
        let kind = match kind {
            Some(k) => k,
            None if weights.entries.contains_key("model.0.weight") => ModelKind::Convnet,
            None if weights.entries.contains_key("0.weight") => ModelKind::Mlp,
            None => {
                bail!("{}: neither convnet weights (model.0.weight, ...) nor MLP weights (0.weight, ...); the file has: {}", weights.path.shown(), weights.key_list())
            }
        };
        Ok(match kind {
            ModelKind::Convnet => Classifier::Convnet(Net::from_weights(weights, device)?),
            ModelKind::Mlp => {
                let cost = weights
                    .state
                    .as_ref()
                    .filter(|s| s.model == crate::mlp::network::NAME)
                    .and_then(|s| serde_json::from_value::<Cost>(s.hyper.get("cost")?.clone()).ok())
                    .unwrap_or(Cost::Quadratic);
                Classifier::Mlp(network_of(weights)?, cost)
            }
        })
    }

    /// Evaluates `test`: nn_convnet.py's `test()` for the convnet, nn.py's `evaluate` with
    /// the mean cost for the MLP.
    pub fn evaluate(&self, test: &Split) -> Result<Evaluation> {
        match self {
            Classifier::Convnet(net) => {
                let device = net.device();
                eval::evaluate(net, &images_tensor(&test.images, device), &labels_tensor(&test.labels, device))
            }
            Classifier::Mlp(net, cost) => {
                let mut fast = FastNet::from_network(net, 256);
                Ok(fast.evaluate(&SparseImages::from_split(test, test.len()), *cost))
            }
        }
    }

    /// What the network is and how its probabilities are obtained, for the output.
    pub fn describe(&self) -> String {
        match self {
            Classifier::Convnet(_) => "convnet; probabilities: softmax of the logits".to_string(),
            Classifier::Mlp(n, _) => format!("MLP {}; probabilities: the sigmoid outputs divided by their sum", join_sizes(&n.sizes)),
        }
    }

    /// The ten class probabilities for one image (784 u8 pixels), summing to 1.
    pub fn probabilities(&self, pixels: &[u8]) -> Result<Vec<f64>> {
        let probs = match self {
            Classifier::Convnet(net) => {
                let x = images_tensor(pixels, net.device());
                let p = tch::no_grad(|| net.forward(&x).softmax(-1, tch::Kind::Double).view([-1]).to_device(Device::Cpu));
                Vec::<f64>::try_from(p).context("reading the convnet's output")?
            }
            Classifier::Mlp(net, _) => {
                let out = net.feedforward(&pixels_f64(pixels));
                let sum: f64 = out.iter().sum();
                if sum > 0.0 {
                    out.iter().map(|a| a / sum).collect()
                } else {
                    vec![1.0 / CLASSES as f64; CLASSES]
                }
            }
        };
        if probs.len() != CLASSES || probs.iter().any(|p| !p.is_finite()) {
            bail!("the network gave {} outputs ({probs:?}), expected {CLASSES} finite values", probs.len());
        }
        Ok(probs)
    }
}
