//! `nnmnist trace`: one training step on one batch, every intermediate tensor written to a
//! safetensors file, for `scripts/compare --layers` (which has the PyTorch reference scripts
//! write the same file and reports where the two part).
//!
//! The file records its tensors' causal order (the order below) in its header, for
//! `nnmnist diff`. The batch: training images [start, start + N) in file order. The tensors (CPU; f32 for
//! the convnet, f64 for the MLP):
//! - each layer's output: `model.0` ... `model.9` for the convnet (train mode); `0`, `1`,
//!   `2`, ... for the MLP, as nn.Sequential(Linear, Sigmoid, ...) numbers its modules (z,
//!   then the sigmoid's a, per layer);
//! - `loss` (1): the convnet's mean cross-entropy; the MLP's mean cost over the batch;
//! - `grad.KEY` per parameter: the gradient of that loss (the MLP's nabla / m), the last
//!   layer's first, bias before weight (the order backward computes them);
//! - `after.KEY`: the parameters after one step (torch.optim.SGD(lr, weight_decay) for the
//!   convnet, nn.py's rule with eta, lambda and n for the MLP).
use crate::terminal::Shown;
use crate::classifier::ModelKind;
use crate::convnet::{self, images_tensor, labels_tensor, Net};
use crate::data::{self, Mnist, Split};
use crate::outputs::Plan;
use crate::system::{available_memory, free_space};
use crate::mlp::{self, one_hot, pixels_f64, Cost, Network};
use crate::weights::{Entry, Weights};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// A resolved `nnmnist trace` command.
#[derive(Clone, Debug)]
pub struct TraceSpec {
    pub model: ModelKind,
    pub weights: PathBuf,
    pub out: PathBuf,
    pub batch_size: usize,
    pub batch_start: usize,
    pub data_dir: PathBuf,
    pub device: Device,
    pub threads: Option<usize>,
    pub deterministic: bool,
    pub convnet: convnet::Hyper,
    pub mlp: mlp::Hyper,
    /// The MLP's n in its L2 term.
    pub train_size_n: usize,
}

/// Runs the step and writes the file.
pub fn run(spec: &TraceSpec) -> Result<()> {
    let weights = Weights::load(&spec.weights)?;
    let out = Plan::new("the trace").reads("the weights file --weights reads", &spec.weights).reads_mnist(&spec.data_dir).replace("--out", &spec.out)?;
    check_size(spec, &weights)?;
    let train = Mnist::load(&spec.data_dir)?.train;
    let batch = batch(&train, spec)?;
    let entries = match spec.model {
        ModelKind::Convnet => convnet_step(spec, &weights, &batch)?,
        ModelKind::Mlp => mlp_step(spec, &weights, &batch)?,
    };
    crate::checkpoint::save_in_order(&out, &entries)?;
    crate::terminal::note(format_args!("trace of one step on training images {}..{} written to {} ({} tensors)", spec.batch_start, spec.batch_start + spec.batch_size, spec.out.shown(), entries.len()));
    Ok(())
}

/// The bytes of the trace file of `spec`: every tensor it writes.
pub fn trace_bytes(spec: &TraceSpec, weights: &Weights) -> Result<u128> {
    let m = spec.batch_size as u128;
    Ok(match spec.model {
        // Per image, float32: model.0-1 (8,28,28), model.2-3 (8,14,14), model.4 (16,12,12),
        // model.5 (16,6,6), model.6 (576), model.7-8 (100), model.9 (10); then the
        // parameters twice (grad., after.).
        ModelKind::Convnet => {
            let per_image: u128 = 2 * 8 * 28 * 28 + 2 * 8 * 14 * 14 + 16 * 12 * 12 + 16 * 6 * 6 + 576 + 2 * 100 + 10;
            let params: u128 = weights.entries.values().map(|e| e.shape.iter().product::<usize>() as u128).sum();
            4 * (m * per_image + 2 * params + 1)
        }
        // Float64: z and a per layer, then the parameters twice.
        ModelKind::Mlp => {
            let sizes = mlp::infer_sizes(weights)?;
            let neurons: u128 = sizes[1..].iter().map(|&n| n as u128).sum();
            let params: u128 = sizes.windows(2).map(|w| (w[0] as u128 + 1) * w[1] as u128).sum();
            8 * (2 * m * neurons + 2 * params + 1)
        }
    })
}

/// Refuses a trace that would not fit: the file is held about three times in memory (the
/// tensors, their copies as entries, the serialised bytes) and must fit the free space
/// where `--out` goes.
fn check_size(spec: &TraceSpec, weights: &Weights) -> Result<()> {
    let bytes = trace_bytes(spec, weights)?;
    let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
    if let Some(available) = available_memory() {
        if 3 * bytes > available as u128 {
            bail!(
                "--batch-size {}: the trace holds about {:.1} GiB ({:.1} GiB of tensors, about three times over) and this machine has {:.1} GiB available: use a smaller --batch-size",
                spec.batch_size,
                gib(3 * bytes),
                gib(bytes),
                gib(available as u128)
            );
        }
    }
    let dir = match spec.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if bytes > 1 << 30 {
        crate::terminal::note(format_args!("note: --batch-size {}: the trace file will take about {:.1} GiB, and about {:.1} GiB of memory while it is made", spec.batch_size, gib(bytes), gib(3 * bytes)));
    }
    if let Some(free) = free_space(&dir) {
        if bytes > free as u128 {
            bail!("--batch-size {}: the trace file would take about {:.1} GiB and {} has {:.1} GiB free: use a smaller --batch-size", spec.batch_size, gib(bytes), dir.shown(), gib(free as u128));
        }
    }
    Ok(())
}

/// Training images [start, start + N).
fn batch(train: &Split, spec: &TraceSpec) -> Result<Split> {
    if spec.batch_start >= train.len() {
        bail!(
            "--batch-start {} is past the {} training images in {} (the first is 0, the last {})",
            spec.batch_start,
            train.len(),
            spec.data_dir.shown(),
            train.len().saturating_sub(1)
        );
    }
    let end = spec.batch_start.checked_add(spec.batch_size).filter(|&e| e <= train.len());
    let Some(end) = end else {
        bail!(
            "the batch, training images [{}, {}) (--batch-start, --batch-size), runs past the {} training images in {}",
            spec.batch_start,
            spec.batch_start.saturating_add(spec.batch_size),
            train.len(),
            spec.data_dir.shown()
        )
    };
    let all = data::take_train(train, Some(end), None, &spec.data_dir)?;
    Ok(Split { images: all.images[spec.batch_start * data::PIXELS..].to_vec(), labels: all.labels[spec.batch_start..].to_vec() })
}

/// A tensor as an F32 entry.
fn f32_entry(name: String, t: &Tensor) -> Result<Entry> {
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1)).with_context(|| format!("reading {name}"))?;
    Ok(Entry::f32(name, shape, values))
}

fn convnet_step(spec: &TraceSpec, weights: &Weights, batch: &Split) -> Result<Vec<Entry>> {
    let net = Net::from_weights(weights, spec.device)?;
    let (x, y) = (images_tensor(&batch.images, spec.device), labels_tensor(&batch.labels, spec.device));
    let mut out = Vec::new();
    let layers = net.forward_layers(&x);
    for (i, t) in layers.iter().enumerate() {
        out.push(f32_entry(format!("model.{i}"), t)?);
    }
    let loss = convnet::step::loss(&layers[layers.len() - 1], &y);
    out.push(f32_entry("loss".into(), &loss.reshape([1]))?);
    let mut opt = convnet::step::sgd(&net, spec.convnet.lr, spec.convnet.weight_decay)?;
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

fn mlp_step(spec: &TraceSpec, weights: &Weights, batch: &Split) -> Result<Vec<Entry>> {
    let mut net: Network = mlp::network_of(weights)?;
    let m = batch.len();
    let (x, y) = (pixels_f64(&batch.images), one_hot(&batch.labels));
    let (h, cost): (&mlp::Hyper, Cost) = (&spec.mlp, spec.mlp.cost);
    let fwd = net.forward(&x, m);
    let mut out = Vec::new();
    for (i, (z, a)) in fwd.zs.iter().zip(&fwd.activations[1..]).enumerate() {
        let width = net.sizes[i + 1];
        out.push(Entry::f64(format!("{}", 2 * i), vec![m, width], z.clone()));
        out.push(Entry::f64(format!("{}", 2 * i + 1), vec![m, width], a.clone()));
    }
    out.push(Entry::f64("loss", vec![1], vec![net.total_cost(&x, &y, m, cost) / m as f64]));
    let (nabla_b, nabla_w) = net.backprop(&x, &y, m, cost);
    // In the order backprop computes them: the last layer first, its bias before its weight.
    for (i, (nw, nb)) in nabla_w.iter().zip(&nabla_b).enumerate().rev() {
        let shape = vec![net.sizes[i + 1], net.sizes[i]];
        out.push(Entry::f64(format!("grad.{}.bias", 2 * i), vec![net.sizes[i + 1]], nb.iter().map(|g| g / m as f64).collect()));
        out.push(Entry::f64(format!("grad.{}.weight", 2 * i), shape, nw.iter().map(|g| g / m as f64).collect()));
    }
    net.update_mini_batch(&x, &y, m, &mlp::Sgd { eta: h.eta, cost, lambda: h.lambda, n: spec.train_size_n });
    out.extend(net.entries().into_iter().map(|e| Entry { name: format!("after.{}", e.name), ..e }));
    Ok(out)
}
