//! `nnmnist serve` without `--weights`: both networks trained briefly first, so that the page
//! works on a fresh clone. Each is one epoch of its usual run (`nnmnist convnet --epochs 1
//! --device cpu`, `nnmnist mlp --epochs 1`) with the given seed, through the run driver, so
//! it prints what those commands print (progress bar included); each is saved to a private
//! temporary directory and read back, and the directory is removed at once.
use super::networks::Served;
use crate::driver::{self, Files, RunSpec, Schedule, Start};
use crate::signal::StopCondition;
use crate::weights::Weights;
use crate::{convnet, mlp, terminal};
use anyhow::{Context, Result};
use std::path::Path;

/// How many epochs each network is trained.
pub const EPOCHS: usize = 1;

/// Both networks, trained for [`EPOCHS`] with `seed` on the MNIST of `data_dir`.
pub fn both(data_dir: &Path, seed: u64, stop: &dyn StopCondition) -> Result<Vec<Served>> {
    let dir = tempfile::Builder::new().prefix("nnmnist-serve-").tempdir().context("cannot make a temporary directory for the networks serve trains")?;
    terminal::note(format_args!("no --weights: training each network for {EPOCHS} epoch first (seed {seed}); pass --weights FILE to serve saved weights"));
    let schedule = |batch_size| Schedule { epochs: EPOCHS, batch_size, train_size: None, test_size: None, shuffle: true, seed };
    let files = |name: &str| Files { data_dir: data_dir.to_path_buf(), save: Some(dir.path().join(name)), metrics: None };

    let convnet_file = files("convnet.safetensors");
    let options = convnet::Options { device: tch::Device::Cpu, cuda_graph: false, threads: None, deterministic: false };
    let spec = RunSpec { schedule: schedule(convnet::hyper::DEFAULT_BATCH_SIZE), hyper: convnet::Hyper::default(), options, files: convnet_file.clone(), start: Start::Fresh, given: Default::default() };
    driver::train::<convnet::Convnet>(spec, stop)?;

    let mlp_file = files("mlp.safetensors");
    let spec = RunSpec { schedule: schedule(mlp::hyper::DEFAULT_BATCH_SIZE), hyper: mlp::Hyper::default(), options: mlp::Options { engine: mlp::Engine::Fast }, files: mlp_file.clone(), start: Start::Fresh, given: Default::default() };
    driver::train::<mlp::Mlp>(spec, stop)?;

    let source = |what: &str| format!("trained by serve: nnmnist {what} --epochs {EPOCHS} --seed {seed}");
    let served = vec![
        Served::new(&Weights::load(convnet_file.save.as_deref().expect("set above"))?, source("convnet --device cpu"))?,
        Served::new(&Weights::load(mlp_file.save.as_deref().expect("set above"))?, source("mlp"))?,
    ];
    dir.close().context("cannot remove the temporary directory of the trained networks")?;
    Ok(served)
}
