//! The MLP as the commands know it ([`crate::classifier`]): told by `0.weight`, on the CPU,
//! its layer sizes read from the shapes of its weights; its probabilities the sigmoid
//! outputs divided by their sum, its evaluation nn.py's `evaluate` with the mean cost.
use super::cost::{pixels_f64, Cost};
use super::fast::FastNet;
use super::io::network_of;
use super::network::{Network, NAME};
use super::sizes::join_sizes;
use super::sparse::SparseImages;
use crate::classifier::{ten, Classifier, Kind};
use crate::data::{Split, CLASSES, PIXELS};
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
}
