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
//!
//! The network is told from the weights (or `--model`); its step is its own
//! ([`crate::classifier::TraceStep`], in its folder).
use crate::data::{self, Mnist, Split};
use crate::device;
use crate::networks::{self, ModelKind, Steps};
use crate::outputs::Plan;
use crate::system::{available_memory, free_space};
use crate::terminal::Shown;
use crate::weights::Weights;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// A resolved `nnmnist trace` command.
#[derive(Debug)]
pub struct TraceSpec {
    /// `--model`; None: told from the weights.
    pub model: Option<ModelKind>,
    pub weights: PathBuf,
    pub out: PathBuf,
    /// None: the traced network's default.
    pub batch_size: Option<usize>,
    pub batch_start: usize,
    pub data_dir: PathBuf,
    /// `--device` and `--threads`, for the network that takes them.
    pub device: device::Flags,
    /// Every network's step; the traced network's is taken.
    pub steps: Steps,
}

/// Runs the step and writes the file.
pub fn run(spec: &TraceSpec) -> Result<()> {
    let weights = Weights::load(&spec.weights)?;
    let model = networks::tell(&weights, spec.model)?;
    let step = spec.steps.of(model)?;
    let device = networks::place(model, &spec.device)?;
    let out = Plan::new("the trace").reads("the weights file --weights reads", &spec.weights).reads_mnist(&spec.data_dir).replace("--out", &spec.out)?;
    let batch_size = spec.batch_size.unwrap_or_else(|| step.default_batch_size());
    check_size(spec, batch_size, step.bytes(&weights, batch_size)?)?;
    let train = Mnist::load(&spec.data_dir)?.train;
    let batch = batch(&train, spec, batch_size)?;
    let entries = step.trace(&weights, &batch, device)?;
    crate::checkpoint::save_in_order(&out, &entries)?;
    crate::terminal::note(format_args!("trace of one step on training images {}..{} written to {} ({} tensors)", spec.batch_start, spec.batch_start + batch_size, spec.out.shown(), entries.len()));
    Ok(())
}

/// The bytes of the trace file of `spec` with `weights`: every tensor it writes.
pub fn trace_bytes(spec: &TraceSpec, weights: &Weights) -> Result<u128> {
    let step = spec.steps.of(networks::tell(weights, spec.model)?)?;
    step.bytes(weights, spec.batch_size.unwrap_or_else(|| step.default_batch_size()))
}

/// Refuses a trace that would not fit: the file is held about three times in memory (the
/// tensors, their copies as entries, the serialised bytes) and must fit the free space
/// where `--out` goes.
fn check_size(spec: &TraceSpec, batch_size: usize, bytes: u128) -> Result<()> {
    let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
    if let Some(available) = available_memory() {
        if 3 * bytes > available as u128 {
            bail!(
                "--batch-size {}: the trace holds about {:.1} GiB ({:.1} GiB of tensors, about three times over) and this machine has {:.1} GiB available: use a smaller --batch-size",
                batch_size,
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
        crate::terminal::note(format_args!("note: --batch-size {}: the trace file will take about {:.1} GiB, and about {:.1} GiB of memory while it is made", batch_size, gib(bytes), gib(3 * bytes)));
    }
    if let Some(free) = free_space(&dir) {
        if bytes > free as u128 {
            bail!("--batch-size {}: the trace file would take about {:.1} GiB and {} has {:.1} GiB free: use a smaller --batch-size", batch_size, gib(bytes), dir.shown(), gib(free as u128));
        }
    }
    Ok(())
}

/// Training images [start, start + batch_size).
fn batch(train: &Split, spec: &TraceSpec, batch_size: usize) -> Result<Split> {
    if spec.batch_start >= train.len() {
        bail!(
            "--batch-start {} is past the {} training images in {} (the first is 0, the last {})",
            spec.batch_start,
            train.len(),
            spec.data_dir.shown(),
            train.len().saturating_sub(1)
        );
    }
    let end = spec.batch_start.checked_add(batch_size).filter(|&e| e <= train.len());
    let Some(end) = end else {
        bail!(
            "the batch, training images [{}, {}) (--batch-start, --batch-size), runs past the {} training images in {}",
            spec.batch_start,
            spec.batch_start.saturating_add(batch_size),
            train.len(),
            spec.data_dir.shown()
        )
    };
    let all = data::take_train(train, Some(end), None, &spec.data_dir)?;
    Ok(Split { images: all.images[spec.batch_start * data::PIXELS..].to_vec(), labels: all.labels[spec.batch_start..].to_vec() })
}
