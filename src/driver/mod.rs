//! One driver owns a training run, for both models. The path of a run:
//!
//! 1. [`RunSpec`] (resolved from the flags by `crate::config`) says where it starts: fresh,
//!    `--init-from` weights, or `--resume` a checkpoint ([`start`]: every value checked, a
//!    checkpoint's replacing the flags', the weights checked against the model before any
//!    data is read).
//! 2. The save target is checked and locked and the metrics file opened before the data is
//!    loaded ([`outputs`], through the one rule of every output), then the data is loaded
//!    with one size check ([`start::load_data`]).
//! 3. The epoch loop (`Epochs`) asks the injected [`StopCondition`] before every batch; a
//!    stop saves where the run is and ends it as [`Outcome::Interrupted`]. After each
//!    epoch's training the checkpoint is written first, then the test set is evaluated and
//!    the metrics record appended, so any fault after training leaves that epoch on disk.
//!
//! A model plugs in through [`Model`] (its hyperparameters through [`Hyper`]): build, train
//! one batch, end an epoch, evaluate, its weight entries; what it prints is its
//! [`Transcript`]. Nothing here knows which model runs, and nothing here touches
//! process-wide state.
pub mod console;
pub mod model;
pub mod outputs;
pub mod spec;
pub mod start;
pub mod transcript;

pub use console::Console;
pub use model::{Batching, EpochEnd, Hyper, Model, Placement};
pub use spec::{Files, RunSpec, Schedule, Start};
pub use transcript::Transcript;

use crate::checkpoint;
use crate::files::SaveTarget;
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::outcome::{Interrupted, Outcome};
use crate::signal::StopCondition;
use crate::terminal::{self, Shown};
use crate::weights::{RunState, Weights, CHECKPOINT_FORMAT};
use anyhow::{bail, Context, Result};
use std::time::Instant;

/// Trains the run `spec` describes. `stop` is asked before every batch; a stop saves where
/// the run is and ends it as [`Outcome::Interrupted`].
pub fn train<M: Model>(mut spec: RunSpec<M::Hyper, M::Options>, stop: &dyn StopCondition) -> Result<Outcome> {
    let mut begin = start::resolve::<M>(&mut spec)?;
    if begin.epoch >= spec.schedule.epochs {
        let inside = if begin.batch > 0 { format!(" and {} batches of the next", begin.batch) } else { String::new() };
        terminal::note(format_args!(
            "nothing to do: the checkpoint holds {} epochs{inside} of this run, and --epochs is {}; pass --epochs N (N > {}) to train further",
            begin.epoch, spec.schedule.epochs, begin.epoch
        ));
        return Ok(Outcome::Done);
    }
    let outputs = outputs::open(&spec, &begin)?;
    let data = start::load_data::<M>(&spec, &begin)?;
    // The checkpoint stores the sizes the run uses, not "all": a resume on other data then
    // takes the same images, or is refused.
    let schedule = Schedule { train_size: Some(data.train.len()), test_size: Some(data.test.len()), ..spec.schedule.clone() };
    tracing::info!("building the {} model and its data tensors", M::NAME);
    let model = M::build(&spec, begin.weights.as_ref(), data.train, data.test)?;
    begin.weights = None;
    start::warn_of_threads(&begin, model.placement().threads);
    let mut console = Console::new();
    let transcript = model.transcript();
    console.line(&transcript.intro(&data.mnist));
    drop(data.mnist);
    terminal::note(format_args!("seed {}", schedule.seed));

    let stored = serde_json::to_value(start::Stored { schedule: schedule.clone(), hyper: spec.hyper.clone() })?;
    let mut epochs = Epochs {
        model,
        transcript,
        console,
        metrics: outputs.metrics,
        save: outputs.save,
        schedule,
        stored,
        batches: data.batches,
        hint: spec.hyper.diverged_hint(),
        data: data.fingerprints,
        run: begin.run,
    };
    stop.training(true);
    let result = epochs.run(stop, begin.epoch, begin.batch);
    stop.training(false);
    if let Some(stopped) = result? {
        return Ok(Outcome::Interrupted(stopped));
    }
    if let Some(line) = epochs.transcript.done_line() {
        epochs.console.line(line);
    }
    Ok(Outcome::Done)
}

/// The epoch loop of a run, with all it writes to.
struct Epochs<M> {
    model: M,
    transcript: Box<dyn Transcript>,
    console: Console,
    metrics: MetricsLog,
    save: Option<SaveTarget>,
    schedule: Schedule,
    /// The hyperparameters a checkpoint stores (`RunState::hyper`).
    stored: serde_json::Value,
    batches: usize,
    /// What to try if training diverges ([`Hyper::diverged_hint`]).
    hint: String,
    /// The data fingerprints checkpoints store (`RunState::data`).
    data: String,
    /// The run's id (checkpoints and metrics records carry it).
    run: String,
}

impl<M: Model> Epochs<M> {
    /// Trains from batch `first_batch` of epoch `first_epoch` (both 0-based) to the end of
    /// the schedule; what a stop left, if one came.
    fn run(&mut self, stop: &dyn StopCondition, first_epoch: usize, first_batch: usize) -> Result<Option<Interrupted>> {
        for epoch in first_epoch..self.schedule.epochs {
            let first = if epoch == first_epoch { first_batch } else { 0 };
            self.model.start_epoch(epoch);
            if let Some(header) = self.transcript.epoch_header(epoch) {
                self.console.line(&header);
            }
            self.console.start_epoch(&format!("epoch {}", epoch + 1), self.batches);
            let started = Instant::now();
            for batch in first..self.batches {
                if stop.should_stop() {
                    // The loss lines of the batches trained so far; the stop's save follows
                    // whatever they hold (the stop, not a bad loss, is what this reports).
                    let _ = self.end_epoch(epoch);
                    self.console.finish();
                    return Ok(Some(self.stopped(epoch, batch)));
                }
                if let Some(loss) = self.model.train_batch(batch)? {
                    self.batch_line(epoch, batch, loss)?;
                }
                self.console.set_position(batch + 1);
            }
            let train_loss = self.end_epoch(epoch)?;
            self.console.finish();
            let train_seconds = started.elapsed().as_secs_f64();
            self.check_finite(train_loss, epoch, None)?;
            self.save(epoch + 1, 0)?;
            let started = Instant::now();
            let ev = self.model.evaluate()?;
            let eval_seconds = started.elapsed().as_secs_f64();
            ev.check_finite().with_context(|| format!("after epoch {} (its checkpoint is saved)", epoch + 1))?;
            self.console.line(&self.transcript.eval_lines(epoch, &ev));
            let record = EpochMetrics::new(M::NAME, self.model.placement().device, self.schedule.seed, epoch + 1, &ev);
            self.metrics.write(&EpochMetrics { train_loss: Some(train_loss), train_seconds, eval_seconds, run: Some(self.run.clone()), ..record })?;
        }
        Ok(None)
    }

    /// Checks a batch's loss and prints its line, if it has one.
    fn batch_line(&mut self, epoch: usize, batch: usize, loss: f64) -> Result<()> {
        self.check_finite(loss, epoch, Some(batch))?;
        if let Some(line) = self.transcript.batch_line(batch, loss) {
            self.console.line(&line);
        }
        Ok(())
    }

    /// Ends the epoch's training: checks and prints the losses the model read only now;
    /// returns the epoch's mean training loss.
    fn end_epoch(&mut self, epoch: usize) -> Result<f64> {
        let end = self.model.end_epoch()?;
        for (batch, loss) in end.losses {
            self.batch_line(epoch, batch, loss)?;
        }
        Ok(end.train_loss)
    }

    /// Stops the run on a NaN or infinite loss, naming where it happened.
    fn check_finite(&self, loss: f64, epoch: usize, batch: Option<usize>) -> Result<()> {
        if !loss.is_finite() {
            let at = match batch {
                Some(b) => format!("batch {} of {}", b + 1, self.batches),
                None => "its mean over the epoch".to_string(),
            };
            bail!("the training loss became {loss} in epoch {}, {at}: training diverged; try {}", epoch + 1, self.hint);
        }
        Ok(())
    }

    /// Saves the weights and the position (`epochs_done`, `next_batch`), if there is a target.
    fn save(&self, epochs_done: usize, next_batch: usize) -> Result<()> {
        let Some(target) = &self.save else { return Ok(()) };
        let state = RunState {
            model: M::NAME.into(),
            epochs_done,
            next_batch,
            hyper: self.stored.clone(),
            run: Some(self.run.clone()),
            threads: self.model.placement().threads,
            format: Some(CHECKPOINT_FORMAT),
            data: Some(self.data.clone()),
        };
        checkpoint::save(target, &self.model.entries(), Some(&state))
    }

    /// Saves (where there is somewhere to) and says what a stop before batch `batch` of
    /// epoch `epoch` (both 0-based) leaves.
    fn stopped(&self, epoch: usize, batch: usize) -> Interrupted {
        let place = format!("interrupted in epoch {} of {}, after {batch} of {} batches", epoch + 1, self.schedule.epochs, self.batches);
        let Some(target) = &self.save else {
            return Interrupted(format!("{place}; nothing saved (give --save FILE to be able to resume)"));
        };
        let p = target.path();
        let resume = crate::outputs::resume_flags(p, self.model.placement().threads);
        match self.save(epoch, batch) {
            Ok(()) => Interrupted(format!("{place}; saved to {}; continue with {resume}", p.shown())),
            Err(e) => {
                let kept = match Weights::load(p).ok().and_then(|w| w.state) {
                    Some(st) => format!("{} still holds the checkpoint of {} epoch(s) and {} batch(es); continue from it with {resume}", p.shown(), st.epochs_done, st.next_batch),
                    None => "no checkpoint was saved before".to_string(),
                };
                Interrupted(format!("{place}; saving failed ({e:#}): {kept}"))
            }
        }
    }
}
