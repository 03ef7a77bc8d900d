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
use crate::report::Shown;
use crate::weights::{Entry, Weights};
use crate::data::{COLS, PIXELS, ROWS};
use anyhow::Result;
use std::path::Path;
use tch::nn::{self, Init, Module};
use tch::{Device, Kind, Tensor};

/// (state_dict key prefix, weight shape) of each layer with parameters, in PyTorch's order.
pub const LAYERS: [(&str, &[i64]); 4] = [
    ("model.0", &[8, 1, 3, 3]),
    ("model.4", &[16, 8, 3, 3]),
    ("model.7", &[100, 576]),
    ("model.9", &[10, 100]),
];

/// The state_dict keys, in order.
pub fn keys() -> Vec<String> {
    LAYERS.iter().flat_map(|(prefix, _)| [format!("{prefix}.weight"), format!("{prefix}.bias")]).collect()
}

/// Checks that `weights` holds every parameter of the network with its shape, so that a bad
/// file is refused before any data is loaded; other entries are noted and ignored.
pub fn check_weights(weights: &Weights) -> Result<()> {
    for (prefix, shape) in LAYERS {
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

/// A Conv2d with stride 1: weight (out, in, k, k), bias (out).
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub padding: i64,
}

impl Module for Conv2d {
    /// (N, in, H, W) -> (N, out, H + 2p - k + 1, W + 2p - k + 1)
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.conv2d(&self.weight, Some(&self.bias), [1, 1], [self.padding, self.padding], [1, 1], 1)
    }
}

/// nn_convnet.py's network. The variables live in `vs` under PyTorch's state_dict names.
#[derive(Debug)]
pub struct Net {
    pub vs: nn::VarStore,
    pub conv0: Conv2d,
    pub conv4: Conv2d,
    pub fc7: nn::Linear,
    pub fc9: nn::Linear,
}

/// libtorch's CPU generator is global: whoever seeds it and draws from it holds this lock,
/// so that two networks built at once (tests run in threads) do not interleave their draws.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn lock_rng() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
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
        let _rng = lock_rng();
        tch::manual_seed(seed as i64);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let mut params = Vec::new();
        for (prefix, shape) in LAYERS {
            let fan_in: i64 = shape[1..].iter().product();
            let w_bound = kaiming_uniform_bound(fan_in);
            let b_bound = 1.0 / (fan_in as f64).sqrt();
            let mut path = root.clone();
            for part in prefix.split('.') {
                path = path / part;
            }
            let w = path.var("weight", shape, Init::Uniform { lo: -w_bound, up: w_bound });
            let b = path.var("bias", &shape[..1], Init::Uniform { lo: -b_bound, up: b_bound });
            params.push((w, b));
        }
        if device != Device::Cpu {
            vs.set_device(device);
        }
        // set_device swaps the data under the same variables, so the handles stay valid.
        let mut it = params.into_iter();
        let (w0, b0) = it.next().unwrap();
        let (w4, b4) = it.next().unwrap();
        let (w7, b7) = it.next().unwrap();
        let (w9, b9) = it.next().unwrap();
        Net {
            vs,
            conv0: Conv2d { weight: w0, bias: b0, padding: 1 },
            conv4: Conv2d { weight: w4, bias: b4, padding: 0 },
            fc7: nn::Linear { ws: w7, bs: Some(b7) },
            fc9: nn::Linear { ws: w9, bs: Some(b9) },
        }
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
        let layers = [
            (&self.conv0.weight, &self.conv0.bias),
            (&self.conv4.weight, &self.conv4.bias),
            (&self.fc7.ws, self.fc7.bs.as_ref().unwrap()),
            (&self.fc9.ws, self.fc9.bs.as_ref().unwrap()),
        ];
        LAYERS
            .iter()
            .zip(layers)
            .flat_map(|((prefix, _), (w, b))| {
                [(format!("{prefix}.weight"), w.shallow_clone()), (format!("{prefix}.bias"), b.shallow_clone())]
            })
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

    /// The output of each of nn_convnet.py's ten layers (`model.0` ... `model.9`) for a
    /// batch: the steps of [`Net::forward_t`], kept (tests check the last equals it).
    pub fn forward_layers(&self, xs: &Tensor) -> Vec<Tensor> {
        let mut outs: Vec<Tensor> = Vec::with_capacity(10);
        let steps: [&dyn Fn(&Tensor) -> Tensor; 10] = [
            &|x| x.apply(&self.conv0),
            &|x| x.relu(),
            &|x| x.max_pool2d_default(2),
            &|x| x.relu(),
            &|x| x.apply(&self.conv4),
            &|x| x.max_pool2d_default(2),
            &|x| x.flatten(1, -1),
            &|x| x.apply(&self.fc7),
            &|x| x.relu(),
            &|x| x.apply(&self.fc9),
        ];
        for step in steps {
            let next = step(outs.last().unwrap_or(xs));
            outs.push(next);
        }
        outs
    }

    /// Logits for a batch of images: (N, 1, 28, 28) f32 -> (N, 10).
    pub fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.conv0) // (N, 8, 28, 28)
            .relu()
            .max_pool2d_default(2) // (N, 8, 14, 14)
            .relu()
            .apply(&self.conv4) // (N, 16, 12, 12)
            .max_pool2d_default(2) // (N, 16, 6, 6)
            .flatten(1, -1) // (N, 576)
            .apply(&self.fc7) // (N, 100)
            .relu()
            .apply(&self.fc9) // (N, 10)
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
