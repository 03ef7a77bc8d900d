//! The networks `nnmnist serve` serves, and what the page is shown of each for one input:
//! the digit and the ten probabilities (the function `nnmnist predict` uses), the layers
//! and the saliency of each network's own `inside` module ([`crate::convnet::inside`],
//! [`crate::mlp::inside`]).
use crate::classifier::Classifier;
use crate::data::{COLS, ROWS};
use crate::evaluation::argmax;
use crate::mlp::pixels_f64;
use crate::weights::Weights;
use crate::{convnet, mlp};
use anyhow::Result;
use serde::Serialize;
use std::sync::Mutex;

/// One network, ready to read inputs.
pub struct Served {
    /// "convnet" or "mlp".
    pub model: &'static str,
    /// Where its weights came from: the file, or the training `serve` did.
    pub source: String,
    /// The weights as the network holds them, for the PyTorch side.
    pub state: Vec<crate::weights::Entry>,
    /// libtorch's tensors are not `Sync`: one request at a time uses a network.
    classifier: Mutex<Classifier>,
}

/// What the page is told once about a network (`GET /api/models`).
#[derive(Serialize)]
pub struct About {
    pub model: &'static str,
    pub source: String,
    /// What the network is and how its probabilities are obtained.
    pub description: String,
    /// The layers each reading holds, without their values.
    pub layers: Vec<Layer>,
    /// What its saliency map is the gradient of.
    pub saliency: &'static str,
    /// The MLP's first layer: each hidden neuron's incoming weights, (neurons, 28, 28).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incoming: Option<Layer>,
}

/// A named tensor the page draws: its shape and values (float32, row-major; empty in
/// [`About`]).
#[derive(Serialize, Clone, Debug)]
pub struct Layer {
    /// The PyTorch name of the module whose output it is: `model.1`, `0`, ...
    pub name: String,
    /// What it is, for people.
    pub title: String,
    pub shape: Vec<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f32>,
}

/// One network's reading of one input (an element of `models` in `POST /api/predict`).
#[derive(Serialize)]
pub struct Reading {
    pub model: &'static str,
    /// The first index of the largest probability.
    pub digit: usize,
    /// Ten probabilities, as `nnmnist predict` gives them.
    pub probabilities: Vec<f64>,
    /// The scores before the output function: the convnet's model.9 output (float32,
    /// widened exactly), the MLP's output-layer z before its sigmoid (float64).
    pub logits: Vec<f64>,
    /// Each layer the page shows, in order.
    pub layers: Vec<Layer>,
    /// d logits[digit] / d input, (28, 28): see [`About::saliency`].
    pub saliency: Vec<f32>,
    /// With `--pytorch`: the same weights in PyTorch on the same input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pytorch: Option<Parity>,
}

/// PyTorch's side of one reading.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Parity {
    /// The first index of PyTorch's largest logit.
    pub digit: usize,
    /// max over the ten of |PyTorch's logit - ours|.
    pub max_abs_diff: f64,
}

/// The convnet's saliency, as [`About::saliency`] says it.
const CONVNET_SALIENCY: &str = "d logit[digit] / d pixel: the predicted digit's score before the softmax, by libtorch's autograd";
/// The MLP's saliency.
const MLP_SALIENCY: &str = "d z[digit] / d pixel: the predicted digit's output-layer z, before its sigmoid, by the MLP's own backprop";

impl Served {
    /// The network in `weights` (told by its tensor names), on the CPU.
    pub fn new(weights: &Weights, source: String) -> Result<Served> {
        let classifier = Classifier::new(weights, None, tch::Device::Cpu)?;
        let (model, state) = match &classifier {
            Classifier::Convnet(net) => (convnet::net::NAME, net.entries()),
            Classifier::Mlp(net, _) => (mlp::network::NAME, net.entries()),
        };
        Ok(Served { model, source, state, classifier: Mutex::new(classifier) })
    }

    /// The MLP's layer sizes (None for the convnet).
    pub fn sizes(&self) -> Option<Vec<usize>> {
        match &*self.lock() {
            Classifier::Mlp(net, _) => Some(net.sizes.clone()),
            Classifier::Convnet(_) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Classifier> {
        // A panic elsewhere cannot leave a network half-changed: reading changes nothing.
        self.classifier.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the page is told once about this network.
    pub fn about(&self) -> About {
        let classifier = self.lock();
        let description = classifier.describe();
        match &*classifier {
            Classifier::Convnet(_) => About {
                model: self.model,
                source: self.source.clone(),
                description,
                layers: convnet::inside::SHOWN.iter().map(|&(i, title)| Layer { name: format!("model.{i}"), title: title.into(), shape: Vec::new(), values: Vec::new() }).collect(),
                saliency: CONVNET_SALIENCY,
                incoming: None,
            },
            Classifier::Mlp(net, _) => {
                let hidden = net.sizes[1..net.sizes.len() - 1].len();
                let layers = (0..=hidden).map(|l| mlp_layer(net, l, Vec::new())).collect();
                let incoming = (hidden > 0).then(|| Layer {
                    name: "0.weight".into(),
                    title: "each hidden neuron's incoming weights: what it looks for".into(),
                    shape: vec![net.sizes[1], ROWS, COLS],
                    values: (0..net.sizes[1]).flat_map(|j| mlp::inside::incoming(net, j).iter().map(|&w| w as f32)).collect(),
                });
                About { model: self.model, source: self.source.clone(), description, layers, saliency: MLP_SALIENCY, incoming }
            }
        }
    }

    /// The network's reading of `pixels` (784, MNIST's form); `pytorch` is filled in later.
    pub fn read(&self, pixels: &[u8]) -> Result<Reading> {
        let classifier = self.lock();
        let probabilities = classifier.probabilities(pixels)?;
        let digit = argmax(&probabilities);
        let reading = match &*classifier {
            Classifier::Convnet(net) => {
                let inside = convnet::inside::inside(net, pixels)?;
                let layers = inside
                    .layers
                    .into_iter()
                    .zip(convnet::inside::SHOWN)
                    .map(|(l, (_, title))| Layer { name: format!("model.{}", l.index), title: title.into(), shape: l.shape, values: l.values })
                    .collect();
                Reading { model: self.model, digit, probabilities, logits: inside.logits.iter().map(|&v| v as f64).collect(), layers, saliency: inside.saliency, pytorch: None }
            }
            Classifier::Mlp(net, _) => {
                let inside = mlp::inside::inside(net, &pixels_f64(pixels));
                let mut values = inside.hidden.iter().chain([&inside.outputs]);
                let layers = (0..net.sizes.len() - 1).map(|l| mlp_layer(net, l, values.next().map(|v| v.iter().map(|&a| a as f32).collect()).unwrap_or_default())).collect();
                Reading { model: self.model, digit, probabilities, logits: inside.logits, layers, saliency: inside.saliency.iter().map(|&v| v as f32).collect(), pytorch: None }
            }
        };
        Ok(reading)
    }
}

/// The MLP's layer `l` + 1 (0: the first hidden layer; the last: the output layer), as the
/// page shows it: the activations of `nn.Sequential`'s sigmoid at index 2l + 1.
fn mlp_layer(net: &mlp::Network, l: usize, values: Vec<f32>) -> Layer {
    let last = l + 2 == net.sizes.len();
    let what = if last { "output layer" } else { "hidden layer" };
    Layer { name: format!("{}", 2 * l + 1), title: format!("{what}: sigmoid(w a + b), {} neurons", net.sizes[l + 1]), shape: vec![net.sizes[l + 1]], values }
}
