//! The networks `nnmnist serve` serves, and what the page is shown of each for one input:
//! the digit and the ten probabilities (the [`Classifier`] `nnmnist predict` asks), the
//! layers and the saliency map of its [`Classifier::inside`], what it is apart from any
//! image ([`Classifier::portrait`]). Nothing here knows which network it serves.
use crate::classifier::{Classifier, Picture};
use crate::data::PIXELS;
use crate::device;
use crate::evaluation::argmax;
use crate::networks;
use crate::weights::{Data, Entry, Weights};
use anyhow::Result;
use serde::Serialize;
use std::sync::Mutex;

/// One network, ready to read inputs.
pub struct Served {
    /// Its name: "convnet", "mlp".
    pub model: &'static str,
    /// Where its weights came from: the file, or the training `serve` did.
    pub source: String,
    /// With `--pytorch`: the weights file's readable floating-point tensors (the network's
    /// parameters among them), which the PyTorch side loads as a state_dict.
    pub state: Vec<Entry>,
    /// One request at a time uses a network (libtorch's tensors are not `Sync`).
    classifier: Mutex<Box<dyn Classifier>>,
}

/// What the page is told once about a network (`GET /api/models`).
#[derive(Serialize)]
pub struct About {
    pub model: &'static str,
    pub source: String,
    /// What the network is and how its probabilities are obtained.
    pub description: String,
    /// What its saliency map is the gradient of.
    pub saliency: &'static str,
    /// The MLP's first layer: each hidden neuron's incoming weights, (neurons, 28, 28).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incoming: Option<Picture>,
}

/// One network's reading of one input (an element of `models` in `POST /api/predict`).
#[derive(Serialize)]
pub struct Reading {
    pub model: &'static str,
    /// The first index of the largest probability.
    pub digit: usize,
    /// Ten probabilities, as `nnmnist predict` gives them.
    pub probabilities: Vec<f64>,
    /// The scores before the output function: the convnet's logits (float32, widened
    /// exactly), the MLP's output-layer z before its sigmoid.
    pub logits: Vec<f64>,
    /// Each layer the page shows, in order.
    pub layers: Vec<Picture>,
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

impl Served {
    /// The network `weights` holds (told from its tensor names), on the CPU with one
    /// libtorch thread, as `nnmnist predict` builds it; with `keep_state`, its tensors for the
    /// PyTorch side too.
    pub fn new(weights: &Weights, source: String, keep_state: bool) -> Result<Served> {
        let cpu = device::Flags { device: Some("cpu".into()), threads: Some(1) };
        let model = networks::tell(weights, None)?;
        let classifier = model.load(weights, model.place(&cpu)?)?;
        // Tensors that cannot be read (not floats, not finite) are no parameter of a network
        // that loaded: they are left out.
        let state = if keep_state { weights.entries.values().filter_map(|e| weights.get(&e.name, &e.shape).ok()).map(|e| e.into_owned()).filter(|e| matches!(e.data, Data::F32(_) | Data::F64(_))).collect() } else { Vec::new() };
        Ok(Served { model: model.name(), source, state, classifier: Mutex::new(classifier) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn Classifier>> {
        // Reading changes nothing in a network, so one a panic left locked is whole.
        self.classifier.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the page is told once about this network.
    pub fn about(&self) -> About {
        let classifier = self.lock();
        let portrait = classifier.portrait();
        About { model: self.model, source: self.source.clone(), description: classifier.describe(), saliency: portrait.saliency, incoming: portrait.weights.into_iter().next() }
    }

    /// The network's reading of `pixels` (MNIST's form); `pytorch` is filled in later.
    pub fn read(&self, pixels: &[u8; PIXELS]) -> Result<Reading> {
        let classifier = self.lock();
        let probabilities = classifier.probabilities(pixels)?;
        let inside = classifier.inside(pixels)?;
        Ok(Reading {
            model: self.model,
            digit: argmax(&probabilities),
            probabilities: probabilities.to_vec(),
            logits: inside.logits,
            layers: inside.layers,
            saliency: inside.saliency,
            pytorch: None,
        })
    }
}
