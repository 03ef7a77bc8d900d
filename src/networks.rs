//! The networks nnmnist knows, listed once ([`NETWORKS`]): what `--model` takes, what a
//! weights file is told as, and each network's flags of `nnmnist trace` ([`StepFlags`]).
//! Everything else a network is lives in its folder, behind [`crate::classifier`]'s
//! traits. A new network is a folder that implements them, a line in [`NETWORKS`], and, for
//! flags of its own in `nnmnist trace`, a field of [`StepFlags`].
use crate::classifier::{Classifier, Kind, TraceStep};
use crate::convnet::{self, ConvnetKind};
use crate::device;
use crate::mlp::{self, MlpKind};
use crate::terminal::Shown;
use crate::weights::Weights;
use anyhow::{bail, Result};
use clap::builder::PossibleValue;
use clap::{Args, ValueEnum};
use tch::Device;

/// Every network nnmnist knows, in `--model`'s order.
pub static NETWORKS: [ModelKind; 2] = [ModelKind(&ConvnetKind), ModelKind(&MlpKind)];

/// One of [`NETWORKS`], as `--model` names it.
#[derive(Clone, Copy)]
pub struct ModelKind(pub &'static dyn Kind);

impl std::ops::Deref for ModelKind {
    type Target = dyn Kind;
    fn deref(&self) -> &(dyn Kind + 'static) {
        self.0
    }
}

impl PartialEq for ModelKind {
    fn eq(&self, other: &ModelKind) -> bool {
        self.name() == other.name()
    }
}

impl Eq for ModelKind {}

impl std::fmt::Debug for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ValueEnum for ModelKind {
    fn value_variants<'a>() -> &'a [ModelKind] {
        &NETWORKS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()))
    }
}

/// The network `weights` holds, told by its tensors' names (each network's
/// [`Kind::marker`]: `model.0.weight` for the convnet, `0.weight` for an MLP). `given` is
/// `--model`: it must not contradict the file; with a file that holds neither, it says
/// which network to read it as (and the reading then says what is missing).
pub fn tell(weights: &Weights, given: Option<ModelKind>) -> Result<ModelKind> {
    let held: Vec<ModelKind> = NETWORKS.iter().copied().filter(|m| weights.entries.contains_key(m.marker())).collect();
    let path = weights.path.shown();
    let markers = || NETWORKS.iter().map(|m| format!("{} weights ({}, ...)", m.title(), m.marker())).collect::<Vec<_>>().join(" nor ");
    match (given, held.as_slice()) {
        (Some(m), []) => Ok(m),
        (Some(m), held) if held.contains(&m) => Ok(m),
        (Some(m), [other, ..]) => bail!(
            "{path}: --model {} does not fit the file, which holds {} weights ({}, ...): leave out --model, or pass --model {}",
            m.name(),
            other.title(),
            other.marker(),
            other.name()
        ),
        (None, [one]) => Ok(*one),
        (None, []) => bail!("{path}: neither {}; the file has: {}", markers(), weights.key_list()),
        (None, many) => bail!(
            "{path}: the file holds the tensors of {}: pass --model to say which to read",
            many.iter().map(|m| format!("the {} ({})", m.title(), m.marker())).collect::<Vec<_>>().join(" and ")
        ),
    }
}

/// The network `weights` holds, built on `device`: [`tell`], then its [`Kind::load`]. What a
/// command that classifies with a weights file calls.
pub fn load(weights: &Weights, given: Option<ModelKind>, device: Device) -> Result<Box<dyn Classifier>> {
    tell(weights, given)?.load(weights, device)
}

/// Refuses `--device` and `--threads` for a network that takes no device.
pub fn check_device(model: ModelKind, flags: &device::Flags) -> Result<()> {
    if flags.given() && !model.takes_device() {
        let takers: Vec<&str> = NETWORKS.iter().filter(|m| m.takes_device()).map(|m| m.title()).collect();
        bail!("--device and --threads apply to the {}; the {} runs on the CPU, on one thread", takers.join(" and the "), model.title());
    }
    Ok(())
}

/// The device `model` runs on for `flags` (refused where it takes none), resolved once.
pub fn place(model: ModelKind, flags: &device::Flags) -> Result<Device> {
    check_device(model, flags)?;
    model.place(flags)
}

/// Each network's flags of `nnmnist trace`.
#[derive(Args, Clone, Debug, Default)]
pub struct StepFlags {
    #[command(flatten)]
    pub convnet: convnet::trace::StepFlags,
    #[command(flatten)]
    pub mlp: mlp::trace::StepFlags,
}

impl StepFlags {
    /// Every network's step, each with its defaults and every flag given checked: which
    /// network is traced may be known only once the weights are read.
    pub fn resolve(&self) -> Result<Steps> {
        Ok(Steps(vec![Box::new(self.convnet.resolve()?), Box::new(self.mlp.resolve()?)]))
    }
}

/// Every network's step of `nnmnist trace`, resolved.
#[derive(Debug)]
pub struct Steps(Vec<Box<dyn TraceStep>>);

impl Steps {
    /// `model`'s step; an error when a flag of another network's was given (it would be
    /// ignored).
    pub fn of(&self, model: ModelKind) -> Result<&dyn TraceStep> {
        let mut mine = None;
        for step in &self.0 {
            if step.kind().name() == model.name() {
                mine = Some(step.as_ref());
            } else if let Some(flag) = step.given() {
                let takes = self.0.iter().find(|s| s.kind().name() == model.name()).map(|s| s.flags()).unwrap_or("no flags of its own");
                bail!("{flag} is the {}'s; the {}'s step takes {takes}", step.kind().title(), model.title());
            }
        }
        mine.ok_or_else(|| anyhow::anyhow!("the {} has no step of nnmnist trace", model.title()))
    }
}
