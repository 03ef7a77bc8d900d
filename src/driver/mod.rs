//! One driver owns a training run, for both models. The path of a run:
//!
//! 1. [`RunSpec`] (resolved from the flags by `crate::config`) says where it starts: fresh,
//!    `--init-from` weights, or `--resume` a checkpoint, whose stored hyperparameters and
//!    position replace the flags' (flags that ask for something else are named in a
//!    warning). Every value, from a flag or a checkpoint, goes through the same checks
//!    ([`Schedule::check`] and [`Model::check_hyper`]); the weights are checked against
//!    the model before any data is read.
//! 2. The save target is checked and locked and the metrics file opened before the data is
//!    loaded, both through [`outputs::Plan`], the one rule of every output (one loader, one
//!    size check, one wording: [`crate::data`]).
//! 3. The epoch loop asks the injected [`StopCondition`] before every batch; a stop saves
//!    where the run is and ends it as [`Outcome::Interrupted`]. After each epoch's training the
//!    checkpoint is written first, then the test set is evaluated and the metrics record
//!    appended, so any fault after training leaves that epoch on disk.
//!
//! A model plugs in through [`Model`]: train one batch, evaluate, its weight entries; what
//! it prints is its [`Transcript`]. Nothing here knows which model runs, and nothing here
//! touches process-wide state.
pub mod console;
pub mod spec;
pub mod transcript;

pub use console::Console;
pub use spec::{Files, RunSpec, Schedule, Start};
pub use transcript::Transcript;

use crate::terminal::Shown;
use crate::checkpoint;
use crate::data::{self, Mnist, Split};
use crate::evaluation::Evaluation;
use crate::files::SaveTarget;
use crate::outcome::{Interrupted, Outcome};
use crate::outputs;
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::terminal::{self, shell_word};
use crate::signal::StopCondition;
use crate::weights::{Entry, RunState, Weights, CHECKPOINT_FORMAT};
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::time::Instant;

/// A network the driver can train. Shapes and meanings are each model's own; the driver
/// only sequences the calls: `build`, then per epoch `start_epoch`, `train_batch` for each
/// batch, `epoch_train_loss`, `evaluate`.
pub trait Model: Sized {
    /// The model's name in checkpoints and metrics: "convnet", "mlp".
    const NAME: &'static str;
    /// What to try when training with `hyper` diverges: "a smaller learning rate (--lr) or ...".
    fn diverged_hint(hyper: &Self::Hyper) -> String;
    /// What the model trains on without `--train-size`: None for all the training images,
    /// or (N, why) for the first N (the MLP: nn.py trains on the first 50,000).
    const DEFAULT_TRAIN: Option<(usize, &'static str)>;
    /// The model's own hyperparameters, stored in checkpoints.
    type Hyper: Serialize + DeserializeOwned + Clone + Debug;
    /// The model's options that are not stored (device, threads, engine...).
    type Options;

    /// Checks hyperparameters, from flags or a checkpoint; messages name the flags.
    fn check_hyper(hyper: &Self::Hyper) -> Result<()>;
    /// Checks that `weights` holds this network's parameters (names, shapes), before any
    /// data is read.
    fn check_weights(hyper: &Self::Hyper, weights: &Weights) -> Result<()>;
    /// The number of batches of an epoch over `train` images.
    fn batches(train: usize, batch_size: usize) -> usize;
    /// The network (from `weights`, else drawn from the seed) with its data.
    fn build(spec: &RunSpec<Self::Hyper, Self::Options>, weights: Option<&Weights>, train: Split, test: Split) -> Result<Self>;
    /// What the run prints (see [`Transcript`]).
    fn transcript(&self) -> Box<dyn Transcript>;
    /// Prepares epoch `epoch` (0-based): its batch order.
    fn start_epoch(&mut self, epoch: usize);
    /// One SGD step on batch `batch` of the current epoch; its loss when it was read now
    /// (the convnet on CUDA defers its reads to `deferred_losses`).
    fn train_batch(&mut self, batch: usize) -> Result<Option<f64>>;
    /// The losses `train_batch` read only at the end of the epoch (the convnet on CUDA, so
    /// that nothing waits for the GPU mid-epoch), as (batch, loss) in batch order; asked
    /// after the epoch's last batch, and on a stop.
    fn deferred_losses(&mut self) -> Result<Vec<(usize, f64)>> {
        Ok(Vec::new())
    }
    /// The mean loss of the batches trained since `start_epoch`.
    fn epoch_train_loss(&mut self) -> f64;
    /// Evaluates the test set.
    fn evaluate(&mut self) -> Result<Evaluation>;
    /// The parameters, with PyTorch's state_dict names.
    fn entries(&self) -> Vec<Entry>;
    /// The device, as metrics record it: "cpu", "cuda:0".
    fn device_name(&self) -> String;
    /// The number of CPU threads its sums use, where the result depends on it (libtorch on
    /// the CPU); stored in checkpoints so that a resume can say when it will not repeat.
    fn threads(&self) -> Option<usize> {
        None
    }
}

/// What a checkpoint stores as `hyper`: the schedule and the model's hyperparameters, as one
/// JSON object.
#[derive(Serialize, Deserialize)]
struct Stored<H> {
    #[serde(flatten)]
    schedule: Schedule,
    #[serde(flatten)]
    hyper: H,
}

/// The checks every run's values get, whether they come from flags or a checkpoint.
pub fn check<M: Model>(schedule: &Schedule, hyper: &M::Hyper) -> Result<()> {
    schedule.check()?;
    M::check_hyper(hyper)
}

/// Refuses to resume a checkpoint of another format than [`CHECKPOINT_FORMAT`]: its fields
/// or its seed's draws mean something else. Its weights are weights all the same, and
/// `--init-from` starts a new run from them.
fn check_format(state: &RunState, path: &std::path::Path) -> Result<()> {
    let p = path.shown();
    match state.format {
        Some(CHECKPOINT_FORMAT) => Ok(()),
        Some(newer) if newer > CHECKPOINT_FORMAT => {
            bail!("{p}: a checkpoint of format {newer}, written by a newer nnmnist: this one resumes format {CHECKPOINT_FORMAT} only; --init-from {} starts a new run from its weights", shell_word(path))
        }
        older => bail!(
            "{p}: a checkpoint of format {}, written by an earlier nnmnist (whose MLP drew its random numbers from ChaCha8, not libtorch): this one resumes format {CHECKPOINT_FORMAT} only; --init-from {} starts a new run from its weights",
            older.unwrap_or(1),
            shell_word(path)
        ),
    }
}

/// Where a run begins, resolved from its spec.
struct Begin {
    weights: Option<Weights>,
    /// The checkpoint resumed, if any.
    resumed: Option<std::path::PathBuf>,
    epoch: usize,
    batch: usize,
    save: Option<std::path::PathBuf>,
    /// The run's id, kept through resumes.
    run: String,
    /// The threads the checkpoint was trained with, if it says.
    threads: Option<usize>,
    /// The data fingerprints the checkpoint stores, if any.
    data: Option<String>,
}

/// A new run's id: when it started and the process that started it.
fn new_run_id() -> String {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}-{}", since.as_secs(), since.subsec_nanos(), std::process::id())
}

/// Resolves fresh / `--init-from` / `--resume`: the checkpoint's hyperparameters replace the
/// spec's (`--epochs` excepted), every value is checked, the weights fit the model.
fn resolve<M: Model>(spec: &mut RunSpec<M::Hyper, M::Options>) -> Result<Begin> {
    let mut begin = Begin { weights: None, resumed: None, epoch: 0, batch: 0, save: spec.files.save.clone(), run: new_run_id(), threads: None, data: None };
    match spec.start.clone() {
        Start::Fresh => check::<M>(&spec.schedule, &spec.hyper)?,
        Start::InitFrom(path) => {
            check::<M>(&spec.schedule, &spec.hyper)?;
            begin.weights = Some(Weights::load(&path)?);
        }
        Start::Resume(path) => {
            let weights = Weights::load(&path)?;
            let state = weights.run_state(M::NAME)?.clone();
            check_format(&state, &path)?;
            let bad = || format!("{}: its run state is not valid", path.shown());
            let stored: Stored<M::Hyper> = serde_json::from_value(state.hyper.clone()).with_context(bad)?;
            check::<M>(&stored.schedule, &stored.hyper).with_context(bad)?;
            let known = serde_json::to_value(&stored)?;
            let unknown: Vec<&String> = state.hyper.as_object().map(|o| o.keys().filter(|k| known.get(k.as_str()).is_none()).collect()).unwrap_or_default();
            if !unknown.is_empty() {
                return Err(anyhow::anyhow!("unknown field(s) {unknown:?} among its hyperparameters")).with_context(bad);
            }
            if state.threads == Some(0) {
                return Err(anyhow::anyhow!("a thread count of 0")).with_context(bad);
            }
            let ignored = spec::ignored_on_resume(&spec.given, &state.hyper);
            if !ignored.is_empty() {
                terminal::note(format_args!("warning: --resume continues with the checkpoint's settings; ignoring {}", ignored.join(", ")));
            }
            let epochs = if spec.given.contains_key("epochs") { spec.schedule.epochs } else { stored.schedule.epochs };
            if state.next_batch > 0 && state.epochs_done >= stored.schedule.epochs {
                bail!("{}: its run state says batch {} of epoch {}, past the end of its {}-epoch run", path.shown(), state.next_batch, state.epochs_done + 1, stored.schedule.epochs);
            }
            spec.schedule = Schedule { epochs, ..stored.schedule };
            spec.hyper = stored.hyper;
            spec.schedule.check()?;
            begin.epoch = state.epochs_done;
            begin.batch = state.next_batch;
            begin.save = Some(spec.files.save.clone().unwrap_or_else(|| path.clone()));
            begin.resumed = Some(path);
            begin.weights = Some(weights);
            begin.run = state.run.clone().unwrap_or(begin.run);
            begin.threads = state.threads;
            begin.data = state.data.clone();
        }
    }
    if let Some(w) = &begin.weights {
        M::check_weights(&spec.hyper, w)?;
    }
    Ok(begin)
}

/// Trains the run `spec` describes. `stop` is asked before every batch; a stop saves where
/// the run is and ends it as [`Outcome::Interrupted`].
pub fn train<M: Model>(mut spec: RunSpec<M::Hyper, M::Options>, stop: &dyn StopCondition) -> Result<Outcome> {
    let begin = resolve::<M>(&mut spec)?;
    let mut s = spec.schedule.clone();
    if begin.epoch >= s.epochs {
        let inside = if begin.batch > 0 { format!(" and {} batches of the next", begin.batch) } else { String::new() };
        terminal::note(format_args!(
            "nothing to do: the checkpoint holds {} epochs{inside} of this run, and --epochs is {}; pass --epochs N (N > {}) to train further",
            begin.epoch, s.epochs, begin.epoch
        ));
        return Ok(Outcome::Done);
    }
    // Every output through one rule (`outputs::Plan`): the checkpoint, then the log.
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

    let (mnist, train, test, batches) = load_data::<M>(&spec, &begin)?;
    let data = format!("{}/{}", train.fingerprint(), test.fingerprint());
    if let (Some(was), Some(ck)) = (&begin.data, &begin.resumed) {
        if *was != data {
            bail!(
                "{}: its run trained on other images than the {} training and {} test images {} gives (data fingerprints {was} in the checkpoint, {data} here): resume it with the data it was trained on (--data-dir)",
                ck.shown(),
                train.len(),
                test.len(),
                spec.files.data_dir.shown()
            );
        }
    }
    // The checkpoint stores the sizes the run uses, not "all": a resume on other data then
    // takes the same images, or is refused.
    (s.train_size, s.test_size) = (Some(train.len()), Some(test.len()));
    tracing::info!("building the {} model and its data tensors", M::NAME);
    let mut model = M::build(&spec, begin.weights.as_ref(), train, test)?;
    drop(begin.weights);
    if let (Some(was), Some(now)) = (begin.threads, model.threads()) {
        if was != now {
            terminal::note(format_args!(
                "warning: the checkpoint was trained with {was} libtorch thread(s) and this run has {now}: libtorch's sums depend on the count, so it will not continue bit for bit (pass --threads {was})"
            ));
        }
    }
    let mut console = Console::new();
    let transcript = model.transcript();
    console.line(&transcript.intro(&mnist));
    drop(mnist);
    terminal::note(format_args!("seed {}", s.seed));

    let stored = serde_json::to_value(Stored { schedule: s.clone(), hyper: spec.hyper.clone() })?;
    let run = Run { s: &s, stored, save: save.as_ref(), batches, run: begin.run, hint: M::diverged_hint(&spec.hyper), data };
    stop.training(true);
    let result = run.epochs(&mut model, &*transcript, &mut console, &mut metrics, stop, begin.epoch, begin.batch);
    stop.training(false);
    if let Some(stopped) = result? {
        return Ok(Outcome::Interrupted(stopped));
    }
    if let Some(line) = transcript.done_line() {
        console.line(line);
    }
    Ok(Outcome::Done)
}

/// The data of a run with its one size check: the MNIST files, the training and test images
/// the run uses, and the number of batches an epoch has. A resumed run's sizes are its
/// checkpoint's, and the messages say so.
fn load_data<M: Model>(spec: &RunSpec<M::Hyper, M::Options>, begin: &Begin) -> Result<(Mnist, Split, Split, usize)> {
    let s = &spec.schedule;
    let dir = &spec.files.data_dir;
    let mnist = Mnist::load(dir)?;
    if let Some(ck) = &begin.resumed {
        // The sizes are the checkpoint's, not flags of this command: say so.
        let (train, test) = (s.train_size.or(M::DEFAULT_TRAIN.map(|d| d.0)), s.test_size);
        let unfit = [(train, mnist.train.len(), "training"), (test, mnist.test.len(), "test")].into_iter().find(|(n, len, _)| n.is_some_and(|n| n > *len));
        let smaller = mnist.train.len().min(train.unwrap_or(usize::MAX));
        if let Some((n, len, what)) = unfit {
            bail!("{}: its run uses the first {} {what} images, and {} has {len}: resume it with the data it was trained on (--data-dir)", ck.shown(), n.unwrap_or(0), dir.shown());
        }
        if s.batch_size > smaller {
            bail!("{}: its run's batch size {} is larger than the {smaller} training images in {}: resume it with the data it was trained on (--data-dir)", ck.shown(), s.batch_size, dir.shown());
        }
    }
    let train = data::take_train(&mnist.train, s.train_size, M::DEFAULT_TRAIN, dir)?;
    let test = data::take_test(&mnist.test, s.test_size, dir)?;
    if s.batch_size > train.len() {
        let what = if spec.given.contains_key("batch_size") { format!("--batch-size {}", s.batch_size) } else { format!("the default batch size {}", s.batch_size) };
        bail!("{what} is larger than the {} training images{}: use --batch-size N (N <= {})", train.len(), data::train_size_note(s.train_size), train.len());
    }
    let batches = M::batches(train.len(), s.batch_size);
    if begin.batch >= batches {
        bail!(
            "{}: its run state says batch {} of epoch {}, but an epoch of its run has {batches} batches: the checkpoint does not fit its own hyperparameters",
            begin.resumed.as_deref().map(|p| p.shown().to_string()).unwrap_or_default(),
            begin.batch,
            begin.epoch + 1
        );
    }
    Ok((mnist, train, test, batches))
}

/// An epoch loop in progress.
struct Run<'a> {
    s: &'a Schedule,
    /// The hyperparameters a checkpoint stores (`RunState::hyper`).
    stored: serde_json::Value,
    save: Option<&'a SaveTarget>,
    batches: usize,
    /// What to try if training diverges ([`Model::diverged_hint`]).
    hint: String,
    /// The data fingerprints checkpoints store (`RunState::data`).
    data: String,
    /// The run's id (checkpoints and metrics records carry it).
    run: String,
}

impl Run<'_> {
    #[allow(clippy::too_many_arguments)]
    fn epochs<M: Model>(&self, model: &mut M, transcript: &dyn Transcript, console: &mut Console, metrics: &mut MetricsLog, stop: &dyn StopCondition, first_epoch: usize, first_batch: usize) -> Result<Option<Interrupted>> {
        for epoch in first_epoch..self.s.epochs {
            let first = if epoch == first_epoch { first_batch } else { 0 };
            model.start_epoch(epoch);
            if let Some(header) = transcript.epoch_header(epoch) {
                console.line(&header);
            }
            console.start_epoch(&format!("epoch {}", epoch + 1), self.batches);
            let started = Instant::now();
            for batch in first..self.batches {
                if stop.should_stop() {
                    // The loss lines of the batches trained so far; the stop's save follows
                    // whatever they hold (the stop, not a bad loss, is what this reports).
                    let _ = self.deferred_lines(model, transcript, console, epoch);
                    console.finish();
                    return Ok(Some(self.stopped(model, epoch, batch)));
                }
                if let Some(loss) = model.train_batch(batch)? {
                    self.check_finite(loss, epoch, Some(batch))?;
                    if let Some(line) = transcript.batch_line(batch, loss) {
                        console.line(&line);
                    }
                }
                console.set_position(batch + 1);
            }
            self.deferred_lines(model, transcript, console, epoch)?;
            console.finish();
            let train_loss = model.epoch_train_loss();
            let train_seconds = started.elapsed().as_secs_f64();
            self.check_finite(train_loss, epoch, None)?;
            self.save(model, epoch + 1, 0)?;
            let started = Instant::now();
            let ev = model.evaluate()?;
            let eval_seconds = started.elapsed().as_secs_f64();
            ev.check_finite().with_context(|| format!("after epoch {} (its checkpoint is saved)", epoch + 1))?;
            console.line(&transcript.eval_lines(epoch, &ev));
            let record = EpochMetrics::new(M::NAME, model.device_name(), self.s.seed, epoch + 1, &ev);
            metrics.write(&EpochMetrics { train_loss: Some(train_loss), train_seconds, eval_seconds, run: Some(self.run.clone()), ..record })?;
        }
        Ok(None)
    }

    /// Checks and prints the losses the model read only at the end of the epoch.
    fn deferred_lines<M: Model>(&self, model: &mut M, transcript: &dyn Transcript, console: &mut Console, epoch: usize) -> Result<()> {
        for (batch, loss) in model.deferred_losses()? {
            self.check_finite(loss, epoch, Some(batch))?;
            if let Some(line) = transcript.batch_line(batch, loss) {
                console.line(&line);
            }
        }
        Ok(())
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
    fn save<M: Model>(&self, model: &M, epochs_done: usize, next_batch: usize) -> Result<()> {
        let Some(target) = self.save else { return Ok(()) };
        let state = RunState { model: M::NAME.into(), epochs_done, next_batch, hyper: self.stored.clone(), run: Some(self.run.clone()), threads: model.threads(), format: Some(CHECKPOINT_FORMAT), data: Some(self.data.clone()) };
        checkpoint::save(target, &model.entries(), Some(&state))
    }

    /// Saves (where there is somewhere to) and says what a stop before batch `batch` of
    /// epoch `epoch` (both 0-based) leaves.
    fn stopped<M: Model>(&self, model: &M, epoch: usize, batch: usize) -> Interrupted {
        let place = format!("interrupted in epoch {} of {}, after {batch} of {} batches", epoch + 1, self.s.epochs, self.batches);
        let Some(target) = self.save else {
            return Interrupted(format!("{place}; nothing saved (give --save FILE to be able to resume)"));
        };
        let p = target.path();
        let resume = outputs::resume_flags(p, model.threads());
        match self.save(model, epoch, batch) {
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
