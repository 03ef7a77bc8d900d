//! Where a run starts, and the checks a resume gets: fresh, `--init-from` weights, or
//! `--resume` a checkpoint, whose stored hyperparameters and position replace the flags'
//! (flags that ask for something else are named in a warning). Every value, from a flag or a
//! checkpoint, goes through the same checks ([`Schedule::check`] and [`Hyper::check`]); the
//! weights are checked against the model before any data is read, and a resumed run's data
//! against the checkpoint's.
use super::spec::{self, RunSpec, Schedule, Start};
use super::model::{Hyper, Model};
use crate::data::{self, Mnist, Split};
use crate::terminal::{self, shell_word, Shown};
use crate::weights::{RunState, Weights, CHECKPOINT_FORMAT};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a checkpoint stores as `hyper`: the schedule and the model's hyperparameters, as one
/// JSON object.
#[derive(Serialize, Deserialize)]
pub struct Stored<H> {
    #[serde(flatten)]
    pub schedule: Schedule,
    #[serde(flatten)]
    pub hyper: H,
}

/// Where a run begins, resolved from its spec.
pub struct Begin {
    pub weights: Option<Weights>,
    /// The checkpoint resumed, if any.
    pub resumed: Option<PathBuf>,
    /// The position: `epoch` epochs done, and `batch` batches of the next.
    pub epoch: usize,
    pub batch: usize,
    pub save: Option<PathBuf>,
    /// The run's id, kept through resumes.
    pub run: String,
    /// The threads the checkpoint was trained with, if it says.
    pub threads: Option<usize>,
    /// The data fingerprints the checkpoint stores, if any.
    pub data: Option<String>,
}

/// The checks every run's values get, whether they come from flags or a checkpoint.
pub fn check<H: Hyper>(schedule: &Schedule, hyper: &H) -> Result<()> {
    schedule.check()?;
    hyper.check()
}

/// A new run's id: when it started and the process that started it.
fn new_run_id() -> String {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}-{}", since.as_secs(), since.subsec_nanos(), std::process::id())
}

/// Refuses to resume a checkpoint of another format than [`CHECKPOINT_FORMAT`]: its fields
/// or its seed's draws mean something else. Its weights are weights all the same, and
/// `--init-from` starts a new run from them.
fn check_format(state: &RunState, path: &Path) -> Result<()> {
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

/// Resolves fresh / `--init-from` / `--resume`: the checkpoint's hyperparameters replace the
/// spec's (`--epochs` excepted), every value is checked, the weights fit the model.
pub fn resolve<M: Model>(spec: &mut RunSpec<M::Hyper, M::Options>) -> Result<Begin> {
    let mut begin = Begin { weights: None, resumed: None, epoch: 0, batch: 0, save: spec.files.save.clone(), run: new_run_id(), threads: None, data: None };
    match spec.start.clone() {
        Start::Fresh => check(&spec.schedule, &spec.hyper)?,
        Start::InitFrom(path) => {
            check(&spec.schedule, &spec.hyper)?;
            begin.weights = Some(Weights::load(&path)?);
        }
        Start::Resume(path) => {
            let weights = Weights::load(&path)?;
            let state = weights.run_state(M::NAME)?.clone();
            check_format(&state, &path)?;
            let bad = || format!("{}: its run state is not valid", path.shown());
            let stored: Stored<M::Hyper> = serde_json::from_value(state.hyper.clone()).with_context(bad)?;
            check(&stored.schedule, &stored.hyper).with_context(bad)?;
            let known = serde_json::to_value(&stored)?;
            let unknown: Vec<&String> = state.hyper.as_object().map(|o| o.keys().filter(|k| known.get(k.as_str()).is_none()).collect()).unwrap_or_default();
            if !unknown.is_empty() {
                return Err(anyhow!("unknown field(s) {unknown:?} among its hyperparameters")).with_context(bad);
            }
            if state.threads == Some(0) {
                return Err(anyhow!("a thread count of 0")).with_context(bad);
            }
            let ignored = spec::ignored_on_resume(&spec.given, &state.hyper);
            if !ignored.is_empty() {
                terminal::warning(format_args!("--resume continues with the checkpoint's settings; ignoring {}", ignored.join(", ")));
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
        spec.hyper.check_weights(w)?;
    }
    Ok(begin)
}

/// The data of a run.
pub struct RunData {
    /// The MNIST files as loaded (the console's first lines speak of them).
    pub mnist: Mnist,
    /// The training and test images the run uses.
    pub train: Split,
    pub test: Split,
    /// The batches of an epoch.
    pub batches: usize,
    /// Their fingerprints, "TRAIN/TEST", as checkpoints store them (`RunState::data`).
    pub fingerprints: String,
}

/// The data of a run with its one size check. A resumed run's sizes are its checkpoint's,
/// and the messages say so; so are its images (their fingerprints).
pub fn load_data<M: Model>(spec: &RunSpec<M::Hyper, M::Options>, begin: &Begin) -> Result<RunData> {
    let s = &spec.schedule;
    let dir = &spec.files.data_dir;
    let default_train = M::BATCHING.default_train;
    let mnist = Mnist::load(dir)?;
    if let Some(ck) = &begin.resumed {
        // The sizes are the checkpoint's, not flags of this command: say so.
        let (train, test) = (s.train_size.or(default_train.map(|d| d.0)), s.test_size);
        let unfit = [(train, mnist.train.len(), "training"), (test, mnist.test.len(), "test")].into_iter().find(|(n, len, _)| n.is_some_and(|n| n > *len));
        let smaller = mnist.train.len().min(train.unwrap_or(usize::MAX));
        if let Some((n, len, what)) = unfit {
            bail!("{}: its run uses the first {} {what} images, and {} has {len}: resume it with the data it was trained on (--data-dir)", ck.shown(), n.unwrap_or(0), dir.shown());
        }
        if s.batch_size > smaller {
            bail!("{}: its run's batch size {} is larger than the {smaller} training images in {}: resume it with the data it was trained on (--data-dir)", ck.shown(), s.batch_size, dir.shown());
        }
    }
    let train = data::take_train(&mnist.train, s.train_size, default_train, dir)?;
    let test = data::take_test(&mnist.test, s.test_size, dir)?;
    if s.batch_size > train.len() {
        let what = if spec.given.contains_key("batch_size") { format!("--batch-size {}", s.batch_size) } else { format!("the default batch size {}", s.batch_size) };
        bail!("{what} is larger than the {} training images{}: use --batch-size N (N <= {})", train.len(), data::train_size_note(s.train_size), train.len());
    }
    let batches = M::BATCHING.batches(train.len(), s.batch_size);
    if begin.batch >= batches {
        bail!(
            "{}: its run state says batch {} of epoch {}, but an epoch of its run has {batches} batches: the checkpoint does not fit its own hyperparameters",
            begin.resumed.as_deref().map(|p| p.shown().to_string()).unwrap_or_default(),
            begin.batch,
            begin.epoch + 1
        );
    }
    let here = format!("{}/{}", train.fingerprint(), test.fingerprint());
    if let (Some(was), Some(ck)) = (&begin.data, &begin.resumed) {
        if *was != here {
            bail!(
                "{}: its run trained on other images than the {} training and {} test images {} gives (data fingerprints {was} in the checkpoint, {here} here): resume it with the data it was trained on (--data-dir)",
                ck.shown(),
                train.len(),
                test.len(),
                dir.shown()
            );
        }
    }
    Ok(RunData { mnist, train, test, batches, fingerprints: here })
}

/// Warns when a resumed run computes with another libtorch thread count than its
/// checkpoint's (`now`), since its sums, so its bits, depend on it.
pub fn warn_of_threads(begin: &Begin, now: Option<usize>) {
    if let (Some(was), Some(now)) = (begin.threads, now) {
        if was != now {
            terminal::warning(format_args!(
                "the checkpoint was trained with {was} libtorch thread(s) and this run has {now}: libtorch's sums depend on the count, so it will not continue bit for bit (pass --threads {was})"
            ));
        }
    }
}
