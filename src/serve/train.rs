//! `nnmnist serve` without `--weights`: both networks trained briefly first, so that the page
//! works on a fresh clone. Each is one epoch of its usual run (`nnmnist convnet --epochs 1
//! --device cpu`, `nnmnist mlp --epochs 1`) with the given seed, through the run driver, so
//! it prints what those commands print (progress bar included); each is saved to a private
//! temporary directory and read back, and the directory is removed at once. A signal stops
//! the training (and serve) at the next batch: nothing is kept.
use super::networks::Served;
use crate::driver::{self, Files, Model, RunSpec, Schedule, Start};
use crate::outcome::{Interrupted, Outcome};
use crate::signal::StopCondition;
use crate::weights::Weights;
use crate::{convnet, mlp, terminal};
use anyhow::{Context, Result};
use std::ops::ControlFlow;
use std::path::Path;

/// How many epochs each network is trained.
pub const EPOCHS: usize = 1;

/// Both networks, trained for [`EPOCHS`] with `seed` on the MNIST of `data_dir` (with
/// `keep_state`, their tensors kept for the PyTorch side); Break(how it ended) when a signal
/// stopped the training.
pub fn both(data_dir: &Path, seed: u64, keep_state: bool, stop: &dyn StopCondition) -> Result<ControlFlow<Outcome, Vec<Served>>> {
    let dir = tempfile::Builder::new().prefix("nnmnist-serve-").tempdir().context("cannot make a temporary directory for the networks serve trains")?;
    terminal::note(format_args!("no --weights: training each network for {EPOCHS} epoch first (seed {seed}); pass --weights FILE to serve saved weights"));
    let schedule = |batch_size| Schedule { epochs: EPOCHS, batch_size, train_size: None, test_size: None, shuffle: true, seed };
    let files = |name: &str| Files { data_dir: data_dir.to_path_buf(), save: Some(dir.path().join(name)), metrics: None };
    let convnet = RunSpec {
        schedule: schedule(convnet::hyper::DEFAULT_BATCH_SIZE),
        hyper: convnet::Hyper::default(),
        options: convnet::Options { device: tch::Device::Cpu, cuda_graph: false, threads: None, deterministic: false },
        files: files("convnet.safetensors"),
        start: Start::Fresh,
        given: Default::default(),
    };
    let mlp = RunSpec { schedule: schedule(mlp::hyper::DEFAULT_BATCH_SIZE), hyper: mlp::Hyper::default(), options: mlp::Options { engine: mlp::Engine::Fast }, files: files("mlp.safetensors"), start: Start::Fresh, given: Default::default() };
    let mut served = Vec::new();
    for trained in [train::<convnet::Convnet>(convnet, "convnet --device cpu", seed, keep_state, stop)?, train::<mlp::Mlp>(mlp, "mlp", seed, keep_state, stop)?] {
        match trained {
            ControlFlow::Continue(network) => served.push(network),
            ControlFlow::Break(stopped) => return Ok(ControlFlow::Break(stopped)),
        }
    }
    dir.close().context("cannot remove the temporary directory of the trained networks")?;
    Ok(ControlFlow::Continue(served))
}

/// One network trained by the run driver as `nnmnist {command} --epochs 1 --seed S` trains
/// it, then read back from its checkpoint.
fn train<M: Model>(spec: RunSpec<M::Hyper, M::Options>, command: &str, seed: u64, keep_state: bool, stop: &dyn StopCondition) -> Result<ControlFlow<Outcome, Served>> {
    let saved = spec.files.save.clone().expect("a checkpoint to read back");
    match driver::train::<M>(spec, stop)? {
        Outcome::Done => {}
        // The driver's message names the checkpoint, which goes with the temporary directory.
        Outcome::Interrupted(_) => {
            let what = format!("interrupted while training the {} before serving: nothing is kept (serve --weights FILE serves saved weights)", M::NAME);
            return Ok(ControlFlow::Break(Outcome::Interrupted(Interrupted(what))));
        }
        other => return Ok(ControlFlow::Break(other)),
    }
    let source = format!("trained by serve: nnmnist {command} --epochs {EPOCHS} --seed {seed}");
    Ok(ControlFlow::Continue(Served::new(&Weights::load(&saved)?, source, keep_state)?))
}
