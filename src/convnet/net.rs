//! The convnet of nn_convnet.py, layer for layer, in tch.
//!
//! ```text
//! model = nn.Sequential(
//!     nn.Conv2d(1, 8, 3, padding=1),   # model.0  (8,1,3,3) + (8)
//!     nn.ReLU(),                       # model.1
//!     nn.MaxPool2d(2),                 # model.2
//!     nn.ReLU(),                       # model.3  (a second ReLU, kept as in the original)
//!     nn.Conv2d(8, 16, 3),             # model.4  (16,8,3,3) + (16)
//!     nn.MaxPool2d(2),                 # model.5  (no ReLU between 4 and 5)
//!     nn.Flatten(),                    # model.6
//!     nn.Linear(576, 100),             # model.7  (100,576) + (100)
//!     nn.ReLU(),                       # model.8
//!     nn.Linear(100, 10))              # model.9  (10,100) + (10)
//! ```
//! Expected: 95.5-96.0% test accuracy after 1 epoch, 98.7-99.0% (avg loss 0.031-0.041)
//! after 20 epochs of SGD (lr 0.05, weight decay 0.001, batch 64), as PyTorch gets.
//!
//! Initialisation is PyTorch's default, not tch's: weights kaiming_uniform(a=sqrt(5)), i.e.
//! U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn
//! weight then bias, layer by layer, from the CPU generator after `manual_seed(seed)`: the
//! same draws as `torch.manual_seed(seed); Net()` in PyTorch, so both start identical.
use crate::terminal::Shown;
use crate::weights::{Entry, Weights};
use crate::data::{COLS, PIXELS, ROWS};
use anyhow::Result;
use std::path::Path;
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

/// The convnet's name in checkpoints, metrics and `--model`.
pub const NAME: &str = "convnet";

/// One layer of an `nn.Sequential`, as nn_convnet.py writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// `nn.Conv2d(input, output, kernel, padding=padding)`, stride 1: weight
    /// (output, input, kernel, kernel) and bias (output);
    /// (N, input, H, W) -> (N, output, H + 2 padding - kernel + 1, W + ...).
    Conv2d { input: i64, output: i64, kernel: i64, padding: i64 },
    /// `nn.ReLU()`: max(x, 0), any shape.
    ReLU,
    /// `nn.MaxPool2d(k)`: (N, C, H, W) -> (N, C, H / k, W / k).
    MaxPool2d(i64),
    /// `nn.Flatten()`: (N, ...) -> (N, product of the rest).
    Flatten,
    /// `nn.Linear(input, output)`: weight (output, input) and bias (output);
    /// (N, input) -> (N, output).
    Linear { input: i64, output: i64 },
}

/// nn_convnet.py's `self.model`, the one statement of the network: `model.{i}` is
/// `MODEL[i]`, and its parameters are `model.{i}.weight` and `model.{i}.bias`.
pub const MODEL: [Layer; 10] = [
    Layer::Conv2d { input: 1, output: 8, kernel: 3, padding: 1 }, // model.0: (N, 8, 28, 28)
    Layer::ReLU,                                                  // model.1
    Layer::MaxPool2d(2),                                          // model.2: (N, 8, 14, 14)
    Layer::ReLU, // model.3: a second ReLU, kept as in the original
    Layer::Conv2d { input: 8, output: 16, kernel: 3, padding: 0 }, // model.4: (N, 16, 12, 12)
    Layer::MaxPool2d(2), // model.5: (N, 16, 6, 6); no ReLU between 4 and 5
    Layer::Flatten,      // model.6: (N, 576)
    Layer::Linear { input: 576, output: 100 }, // model.7
    Layer::ReLU,                               // model.8
    Layer::Linear { input: 100, output: 10 },  // model.9: the logits
];

impl Layer {
    /// The weight's shape, for a layer with parameters (its bias has the first dimension).
    pub fn weight_shape(&self) -> Option<Vec<i64>> {
        match *self {
            Layer::Conv2d { input, output, kernel, .. } => Some(vec![output, input, kernel, kernel]),
            Layer::Linear { input, output } => Some(vec![output, input]),
            Layer::ReLU | Layer::MaxPool2d(_) | Layer::Flatten => None,
        }
    }

    /// This layer applied to `xs`; `params` are its (weight, bias) when it has some.
    fn forward(&self, params: Option<&(Tensor, Tensor)>, xs: &Tensor) -> Tensor {
        match (*self, params) {
            (Layer::Conv2d { padding, .. }, Some((w, b))) => xs.conv2d(w, Some(b), [1, 1], [padding, padding], [1, 1], 1),
            (Layer::Linear { .. }, Some((w, b))) => xs.linear(w, Some(b)),
            (Layer::ReLU, _) => xs.relu(),
            (Layer::MaxPool2d(k), _) => xs.max_pool2d_default(k),
            (Layer::Flatten, _) => xs.flatten(1, -1),
            (layer, None) => unreachable!("{layer:?} built without its parameters"),
        }
    }
}

/// The layers with parameters: (state_dict key prefix `model.{i}`, weight shape), in
/// PyTorch's order.
pub fn parameter_layers() -> Vec<(String, Vec<i64>)> {
    MODEL.iter().enumerate().filter_map(|(i, layer)| Some((format!("model.{i}"), layer.weight_shape()?))).collect()
}

/// The shape of each layer's output (`model.0` ... `model.9`) for a batch of `n` images:
/// [`MODEL`] run on zeros, with zeros for its parameters.
pub fn output_shapes(n: i64) -> Vec<Vec<i64>> {
    tch::no_grad(|| {
        let zeros = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        let mut x = zeros(&[n, 1, ROWS as i64, COLS as i64]);
        MODEL
            .iter()
            .map(|layer| {
                let params = layer.weight_shape().map(|w| (zeros(&w), zeros(&w[..1])));
                x = layer.forward(params.as_ref(), &x);
                x.size()
            })
            .collect()
    })
}

/// The state_dict keys, in order.
pub fn keys() -> Vec<String> {
    parameter_layers().into_iter().flat_map(|(prefix, _)| [format!("{prefix}.weight"), format!("{prefix}.bias")]).collect()
}

/// Checks that `weights` holds every parameter of the network with its shape, so that a bad
/// file is refused before any data is loaded; other entries are noted and ignored.
pub fn check_weights(weights: &Weights) -> Result<()> {
    for (prefix, shape) in parameter_layers() {
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        for (name, shape) in [(format!("{prefix}.weight"), &shape[..]), (format!("{prefix}.bias"), &shape[..1])] {
            let entry = weights.get(&name, shape)?;
            // float64 weights are rounded to float32: one beyond its range would become inf.
            if let Some((i, v)) = entry.to_f64().iter().enumerate().find(|(_, v)| !(**v as f32).is_finite()) {
                anyhow::bail!("{}: tensor {name} holds {v:e} (at flat index {i}), beyond float32's range: the convnet computes in float32", weights.path.shown());
            }
        }
    }
    weights.note_extras(&keys(), "convnet");
    Ok(())
}

/// nn_convnet.py's network: [`MODEL`] with its parameters, which live in `vs` under
/// PyTorch's state_dict names.
#[derive(Debug)]
pub struct Net {
    pub vs: nn::VarStore,
    /// `model.{i}`'s (weight, bias), for the layers that have parameters.
    params: Vec<Option<(Tensor, Tensor)>>,
}

/// PyTorch's kaiming_uniform_(a=sqrt(5)) bound, computed as torch.nn.init does it.
fn kaiming_uniform_bound(fan_in: i64) -> f64 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a.powf(2.0))).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    3f64.sqrt() * std
}

impl Net {
    /// A new network with PyTorch's default initialisation, drawn on the CPU after
    /// `tch::manual_seed(seed)`, then moved to `device`.
    pub fn new(device: Device, seed: u64) -> Net {
        let _rng = crate::torch_rng::lock();
        crate::torch_rng::manual_seed(seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let model = vs.root() / "model";
        let params = MODEL
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let shape = layer.weight_shape()?;
                let fan_in: i64 = shape[1..].iter().product();
                let w_bound = kaiming_uniform_bound(fan_in);
                let b_bound = 1.0 / (fan_in as f64).sqrt();
                let path = &model / i;
                let w = path.var("weight", &shape, Init::Uniform { lo: -w_bound, up: w_bound });
                let b = path.var("bias", &shape[..1], Init::Uniform { lo: -b_bound, up: b_bound });
                Some((w, b))
            })
            .collect();
        // set_device swaps the data under the same variables, so the handles stay valid.
        if device != Device::Cpu {
            vs.set_device(device);
        }
        Net { vs, params }
    }

    /// A network with the weights of a state_dict file (ours or PyTorch's, F32 or F64),
    /// every key and shape checked.
    pub fn load(path: &Path, device: Device) -> Result<Net> {
        Net::from_weights(&Weights::load(path)?, device)
    }

    /// A network holding `weights` (checked first: keys, shapes, float32 range), on `device`.
    pub fn from_weights(weights: &Weights, device: Device) -> Result<Net> {
        check_weights(weights)?;
        let net = Net::new(device, 0);
        net.copy_from(weights)?;
        Ok(net)
    }

    /// Overwrites every parameter with the tensor of the same name in `weights`.
    pub fn copy_from(&self, weights: &Weights) -> Result<()> {
        for (name, mut var) in self.parameters() {
            let shape: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
            let entry = weights.get(&name, &shape)?;
            let src = Tensor::from_slice(&entry.to_f32()).view(var.size().as_slice()).to_device(var.device());
            tch::no_grad(|| var.copy_(&src));
        }
        Ok(())
    }

    /// The parameters in state_dict order, with PyTorch's key names (live variables).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
            .flat_map(|(i, (w, b))| [(format!("model.{i}.weight"), w.shallow_clone()), (format!("model.{i}.bias"), b.shallow_clone())])
            .collect()
    }

    /// The parameters as f32 entries on the CPU, for saving.
    pub fn entries(&self) -> Vec<Entry> {
        self.parameters()
            .into_iter()
            .map(|(name, t)| {
                let shape = t.size().iter().map(|&d| d as usize).collect();
                let values = Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).flatten(0, -1)).expect("f32 parameter");
                Entry::f32(name, shape, values)
            })
            .collect()
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Logits for a batch of images: (N, 1, 28, 28) f32 -> (N, 10), through [`MODEL`].
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        MODEL.iter().zip(&self.params).fold(xs.shallow_clone(), |x, (layer, p)| layer.forward(p.as_ref(), &x))
    }

    /// The output of each layer (`model.0` ... `model.9`) for a batch: the same chain as
    /// [`Net::forward`], with every step kept (for `nnmnist trace`).
    pub fn forward_layers(&self, xs: &Tensor) -> Vec<Tensor> {
        let mut outs: Vec<Tensor> = Vec::with_capacity(MODEL.len());
        for (layer, p) in MODEL.iter().zip(&self.params) {
            let next = layer.forward(p.as_ref(), outs.last().unwrap_or(xs));
            outs.push(next);
        }
        outs
    }
}

/// Images as the convnet takes them: (N, 1, 28, 28) f32 in [0, 1] (u8 / 255), on `device`.
pub fn images_tensor(images: &[u8], device: Device) -> Tensor {
    let n = (images.len() / PIXELS) as i64;
    Tensor::from_slice(images)
        .view([n, 1, ROWS as i64, COLS as i64])
        .to_kind(Kind::Float)
        .g_div_scalar(255.0)
        .to_device(device)
}

/// Labels as class indices: (N) i64 on `device`.
pub fn labels_tensor(labels: &[u8], device: Device) -> Tensor {
    Tensor::from_slice(labels).to_kind(Kind::Int64).to_device(device)
}
