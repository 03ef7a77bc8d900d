//! A run's outputs, checked before any data is loaded: the checkpoint it saves to (checked
//! and locked) and its metrics log (opened), both through [`outputs::Plan`], the one rule of
//! every output: no input, no other output, no console log, no unfinished run's checkpoint.
use super::spec::{RunSpec, Start};
use super::start::Begin;
use crate::files::SaveTarget;
use crate::metrics::MetricsLog;
use crate::outputs;
use crate::terminal::{self, Shown};
use anyhow::Result;

/// Where a run writes.
pub struct Outputs {
    /// The checkpoint after every epoch and on a stop, if any.
    pub save: Option<SaveTarget>,
    pub metrics: MetricsLog,
}

/// Checks and opens the outputs of the run `spec` starting at `begin`. A resumed run keeps
/// the metrics records its checkpoint holds and says so.
pub fn open<H, O>(spec: &RunSpec<H, O>, begin: &Begin) -> Result<Outputs> {
    let mut plan = outputs::Plan::new("the run");
    match &spec.start {
        Start::Fresh => {}
        Start::InitFrom(w) => {
            plan.reads("the weights file --init-from reads", w);
        }
        Start::Resume(ck) => {
            plan.continues(ck, Some(begin.run.as_str()));
        }
    }
    plan.reads_mnist(&spec.files.data_dir);
    let flag = if spec.files.save.is_some() { "--save" } else { "--resume" };
    let save = begin.save.as_deref().map(|p| plan.replace(flag, p)).transpose()?;
    let mut metrics = MetricsLog::open(&mut plan, spec.files.metrics.as_deref())?;
    if matches!(spec.start, Start::Resume(_)) {
        let kept = metrics.keep_recorded(&begin.run, begin.epoch);
        if let (false, Some(m)) = (kept.is_empty(), &spec.files.metrics) {
            terminal::note(format_args!("note: {} already holds this run's records of epochs {kept:?}; they are kept, and those epochs are not recorded again", m.shown()));
        }
    }
    Ok(Outputs { save, metrics })
}
