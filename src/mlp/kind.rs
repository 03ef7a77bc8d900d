//! The MLP as the commands know it ([`crate::classifier`]): told by `0.weight`, on the CPU,
//! its layer sizes read from the shapes of its weights; its probabilities the sigmoid
//! outputs divided by their sum, its evaluation nn.py's `evaluate` with the mean cost; to
//! `serve`'s page its activations, its hidden neurons' incoming weights and its saliency
//! through its own backprop ([`super::inside`]).
use super::cost::{pixels_f64, Cost};
use super::fast::FastNet;
use super::io::network_of;
use super::network::{Network, NAME};
use super::sizes::join_sizes;
use super::sparse::SparseImages;
use crate::classifier::{ten, Classifier, Inside, Kind, Picture, Portrait};
use crate::data::{Split, CLASSES, COLS, PIXELS, ROWS};
use crate::device;
use crate::evaluation::Evaluation;
use crate::terminal::Shown;
use crate::weights::Weights;
use anyhow::Result;
use std::path::Path;
use tch::Device;

/// The MLP among the networks nnmnist knows.
pub struct MlpKind;

impl Kind for MlpKind {
    fn name(&self) -> &'static str {
        NAME
    }

    fn title(&self) -> &'static str {
        "MLP"
    }

    fn marker(&self) -> &'static str {
        "0.weight"
    }

    /// Plain Rust on the CPU, on one thread.
    fn takes_device(&self) -> bool {
        false
    }

    fn place(&self, _flags: &device::Flags) -> Result<Device> {
        Ok(Device::Cpu)
    }

    /// The cost is the checkpoint's, where `weights` is an MLP checkpoint; quadratic (nn.py's)
    /// for plain weights. `device` is not used: the MLP computes on the CPU.
    fn load(&self, weights: &Weights, _device: Device) -> Result<Box<dyn Classifier>> {
        let cost = weights
            .state
            .as_ref()
            .filter(|s| s.model == NAME)
            .and_then(|s| serde_json::from_value::<Cost>(s.hyper.get("cost")?.clone()).ok())
            .unwrap_or(Cost::Quadratic);
        Ok(Box::new(Trained { net: network_of(weights)?, cost }))
    }
}

/// An MLP with given weights, and the cost its evaluation reports.
struct Trained {
    net: Network,
    cost: Cost,
}

impl Classifier for Trained {
    fn kind(&self) -> &'static dyn Kind {
        &MlpKind
    }

    fn describe(&self) -> String {
        format!("MLP {}; probabilities: the sigmoid outputs divided by their sum", join_sizes(&self.net.sizes))
    }

    fn device_name(&self) -> String {
        "cpu".to_string()
    }

    /// The outputs divided by their sum (each output 1/10 where all are 0).
    fn probabilities(&self, image: &[u8; PIXELS]) -> Result<[f64; CLASSES]> {
        let out = self.net.feedforward(&pixels_f64(image));
        let sum: f64 = out.iter().sum();
        ten(if sum > 0.0 { out.iter().map(|a| a / sum).collect() } else { vec![1.0 / CLASSES as f64; CLASSES] })
    }

    fn evaluate(&self, test: &Split) -> Result<Evaluation> {
        let mut fast = FastNet::from_network(&self.net, 256);
        Ok(fast.evaluate(&SparseImages::from_split(test, test.len()), self.cost))
    }

    /// One line: the correct count and the mean cost, with the cost's name.
    fn eval_lines(&self, ev: &Evaluation, weights: &Path) -> String {
        format!(
            "MLP {} from {}: {} / {} correct ({:.2}%)  test cost {:.6} ({})",
            join_sizes(&self.net.sizes),
            weights.shown(),
            ev.correct(),
            ev.total(),
            100.0 * ev.accuracy(),
            ev.loss,
            serde_json::to_value(self.cost).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        )
    }

    /// The activations of every layer, named by nn.Sequential's index of their sigmoid
    /// (1, 3, ...).
    fn inside(&self, image: &[u8; PIXELS]) -> Result<Inside> {
        let inside = super::inside::inside(&self.net, &pixels_f64(image));
        let last = self.net.sizes.len() - 2;
        let layers = inside
            .hidden
            .iter()
            .chain([&inside.outputs])
            .enumerate()
            .map(|(l, a)| {
                let what = if l == last { "output layer" } else { "hidden layer" };
                Picture { name: (2 * l + 1).to_string(), title: format!("{what}: sigmoid(w a + b)"), shape: vec![a.len()], values: a.iter().map(|&v| v as f32).collect() }
            })
            .collect();
        Ok(Inside { logits: inside.logits, layers, saliency: inside.saliency.iter().map(|&v| v as f32).collect() })
    }

    /// Each hidden neuron of the first layer: its 784 incoming weights as 28 x 28.
    fn portrait(&self) -> Portrait {
        let hidden = self.net.sizes[1];
        let weights = if self.net.sizes.len() > 2 {
            let values = (0..hidden).flat_map(|j| super::inside::incoming(&self.net, j).iter().map(|&w| w as f32)).collect();
            vec![Picture { name: "0.weight".into(), title: "each hidden neuron's incoming weights: what it looks for".into(), shape: vec![hidden, ROWS, COLS], values }]
        } else {
            Vec::new()
        };
        Portrait { saliency: "d z[digit] / d pixel: the predicted digit's output-layer z, before its sigmoid, by the MLP's own backprop", weights }
    }
}
