//! The `nnmnist mlp` and `nnmnist eval --model mlp` commands: data, checkpoints, resume,
//! console and metrics around [`FastNet`].
use super::fast::{FastNet, SparseImages};
use super::{epoch_order, join_sizes, network_of, Network};
use crate::checkpoint::{self, RunState, Weights};
use crate::cli::{check_non_negative, check_positive, check_sizes, Cost, Init, MlpArgs};
use crate::data::Mnist;
use crate::metrics::{EpochMetrics, MetricsWriter};
use crate::run::{self, Console, Interrupted};
use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// nn.py's defaults.
pub const DEFAULT_EPOCHS: usize = 30;
pub const DEFAULT_BATCH_SIZE: usize = 10;
pub const DEFAULT_TRAIN_SIZE: usize = 50_000;

/// The hyperparameters of a run, stored as JSON in a checkpoint's [`RunState`] `args`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    pub sizes: Vec<usize>,
    pub eta: f64,
    pub cost: String,
    pub lambda: f64,
    pub init: String,
    pub batch_size: usize,
    pub train_size: usize,
    pub epochs: usize,
    pub no_shuffle: bool,
}

impl Hyper {
    /// From the command line, with nn.py's defaults for what is not given.
    pub fn from_args(args: &MlpArgs) -> Hyper {
        let c = &args.common;
        Hyper {
            sizes: args.sizes.clone(),
            eta: args.eta,
            cost: value_name(args.cost),
            lambda: args.lambda,
            init: value_name(args.init),
            batch_size: c.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
            train_size: c.train_size.unwrap_or(DEFAULT_TRAIN_SIZE),
            epochs: c.epochs.unwrap_or(DEFAULT_EPOCHS),
            no_shuffle: c.no_shuffle,
        }
    }

    pub fn cost(&self) -> Result<Cost> {
        Cost::from_str(&self.cost, true).map_err(|_| anyhow!("unknown cost {:?}", self.cost))
    }

    pub fn init(&self) -> Result<Init> {
        Init::from_str(&self.init, true).map_err(|_| anyhow!("unknown init {:?}", self.init))
    }

    /// The checks of `MlpArgs::validate`, for values read back from a checkpoint.
    fn validate(&self) -> Result<()> {
        check_sizes(&self.sizes)?;
        check_positive("--eta", self.eta)?;
        check_non_negative("--lambda", self.lambda)?;
        self.cost()?;
        self.init()?;
        if self.batch_size == 0 || self.train_size == 0 || self.epochs == 0 {
            bail!("batch size, train size and epochs must be at least 1");
        }
        Ok(())
    }
}

fn value_name<T: ValueEnum>(v: T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// `nnmnist mlp`: train, stopping at the next batch boundary after Ctrl-C.
pub fn run(args: &MlpArgs) -> Result<()> {
    run_with(args, &mut run::interrupted)
}

/// `nnmnist mlp` with the stop condition given: `stop()` is asked before every batch; when
/// it says true the run saves (with --save or --resume) and returns [`Interrupted`].
pub fn run_with(args: &MlpArgs, stop: &mut dyn FnMut() -> bool) -> Result<()> {
    args.validate()?;
    let c = &args.common;
    // Where the run starts: fresh, from given weights, or from a checkpoint.
    let (hyper, seed, net, start_epoch, start_batch, save_path) = match &c.resume {
        Some(path) => {
            let weights = Weights::load(path)?;
            let state = weights.run_state("mlp")?;
            let mut hyper: Hyper = serde_json::from_value(state.args.clone())
                .with_context(|| format!("{}: unreadable MLP hyperparameters in its run state", path.display()))?;
            hyper.validate().with_context(|| format!("{}: bad hyperparameters in its run state", path.display()))?;
            run::warn_ignored_on_resume(
                &run::with_seed(&Hyper::from_args(args), c.seed)?,
                &run::with_seed(&Hyper::from_args(&MlpArgs::defaults()), 0)?,
                &run::with_seed(&hyper, state.seed)?,
            );
            if let Some(e) = c.epochs {
                hyper.epochs = e;
            }
            let net = Network::from_weights(&weights, &hyper.sizes)?;
            let save = c.save.clone().unwrap_or_else(|| path.clone());
            (hyper, state.seed, net, state.epochs_done, state.next_batch, Some(save))
        }
        None => {
            let hyper = Hyper::from_args(args);
            let net = match &c.init_from {
                Some(path) => Network::from_weights(&Weights::load(path)?, &hyper.sizes)?,
                None => Network::seeded(&hyper.sizes, args.init, c.seed),
            };
            (hyper, c.seed, net, 0, 0, c.save.clone())
        }
    };
    let cost = hyper.cost()?;
    eprintln!("nnmnist: seed {seed}");
    if start_epoch >= hyper.epochs {
        let inside = if start_batch > 0 { format!(" and {start_batch} batches of the next") } else { String::new() };
        eprintln!("nnmnist: nothing to do: the checkpoint has {start_epoch} epochs done{inside}, and --epochs is {} (give a larger --epochs to continue)", hyper.epochs);
        return Ok(());
    }
    if let Some(p) = &save_path {
        checkpoint::check_writable(p)?;
    }
    let mnist = Mnist::load(&c.data_dir)?;
    if hyper.train_size > mnist.train.len() {
        bail!("--train-size {} is larger than the {} training images in {}", hyper.train_size, mnist.train.len(), c.data_dir.display());
    }
    let test_size = c.test_size.unwrap_or(mnist.test.len());
    if test_size > mnist.test.len() {
        bail!("--test-size {test_size} is larger than the {} test images in {}", mnist.test.len(), c.data_dir.display());
    }
    if hyper.batch_size > hyper.train_size {
        bail!("--batch-size {} is larger than the training set (--train-size {})", hyper.batch_size, hyper.train_size);
    }
    let batches = hyper.train_size.div_ceil(hyper.batch_size);
    if start_batch > batches {
        bail!("checkpoint says batch {start_batch} of an epoch of {batches} batches: it does not fit its own hyperparameters");
    }
    let mut console = Console::new();
    console.line(&mnist.loaded_lines());
    let train = SparseImages::from_split(&mnist.train, hyper.train_size);
    let test = SparseImages::from_split(&mnist.test, test_size);
    drop(mnist);
    let mut metrics = MetricsWriter::open(c.metrics.as_deref(), c.resume.is_some())?;
    let mut fast = FastNet::from_network(&net, hyper.batch_size.max(256));
    tracing::debug!("mlp kernels: {:?}; training pixels non-zero: {:.1}%", fast.simd(), 100.0 * train.density());
    let state = |epochs_done: usize, next_batch: usize| RunState {
        model: "mlp".into(),
        epochs_done,
        next_batch,
        seed,
        args: serde_json::to_value(&hyper).expect("hyperparameters serialise"),
    };
    for epoch in start_epoch..hyper.epochs {
        let order = epoch_order(seed, epoch, hyper.train_size, hyper.no_shuffle);
        let first = if epoch == start_epoch { start_batch } else { 0 };
        console.start_epoch(&format!("Epoch {epoch}"), batches);
        let (mut loss_sum, mut train_seconds) = (0.0, 0.0);
        for (b, batch) in order.chunks(hyper.batch_size).enumerate().skip(first) {
            if stop() {
                console.finish();
                return Err(stopped(&fast, save_path.as_deref(), state(epoch, b), epoch, b, batches));
            }
            let t = Instant::now();
            if let Some(next) = order.get((b + 1) * hyper.batch_size..((b + 2) * hyper.batch_size).min(order.len())) {
                train.prefetch(next);
            }
            let cost_b = fast.train_batch(&train, batch, hyper.eta, cost, hyper.lambda, hyper.train_size);
            train_seconds += t.elapsed().as_secs_f64();
            run::check_finite(cost_b, epoch, b, "--eta")?;
            loss_sum += cost_b;
            if b % 100 == 0 {
                console.set_position(b);
            }
        }
        console.finish();
        let t = Instant::now();
        let (correct, test_cost) = fast.evaluate(&test, cost);
        let eval_seconds = t.elapsed().as_secs_f64();
        console.line(&format!("Epoch {epoch}: {correct} / {}  test cost {test_cost:.6}", test.len()));
        let record = EpochMetrics::new("mlp", "cpu".into(), seed, epoch + 1, correct, test.len(), test_cost);
        let train_loss = Some(loss_sum / (batches - first).max(1) as f64);
        metrics.write(&EpochMetrics { train_loss, train_seconds, eval_seconds, ..record })?;
        if let Some(p) = &save_path {
            checkpoint::save(p, &fast.to_network().entries(), Some(&state(epoch + 1, 0)))?;
        }
    }
    Ok(())
}

/// Saves (if there is somewhere to) and builds the [`Interrupted`] error.
fn stopped(fast: &FastNet, save: Option<&Path>, state: RunState, epoch: usize, b: usize, batches: usize) -> anyhow::Error {
    let place = format!("in epoch {epoch} after {b} of {batches} batches");
    match save {
        Some(p) => match checkpoint::save(p, &fast.to_network().entries(), Some(&state)) {
            Ok(()) => Interrupted(format!("interrupted {place}; saved to {0}; continue with --resume {0}", p.display())).into(),
            Err(e) => e.context(format!("interrupted {place}, and saving failed")),
        },
        None => Interrupted(format!("interrupted {place}; nothing saved (give --save FILE to be able to resume)")).into(),
    }
}

/// `nnmnist eval --model mlp`: accuracy and cost of saved weights on the test set. The
/// layer sizes come from the file; the cost is the checkpoint's (quadratic for plain weights).
pub fn eval(weights: &Path, data_dir: &Path, test_size: Option<usize>, metrics: Option<&Path>) -> Result<()> {
    let w = Weights::load(weights)?;
    let net = network_of(&w)?;
    let hyper: Option<Hyper> = w.state.as_ref().filter(|s| s.model == "mlp").and_then(|s| serde_json::from_value(s.args.clone()).ok());
    let cost = hyper.as_ref().and_then(|h| h.cost().ok()).unwrap_or(Cost::Quadratic);
    let epoch = w.state.as_ref().map(|s| s.epochs_done).unwrap_or(0);
    let seed = w.state.as_ref().map(|s| s.seed).unwrap_or(0);
    let mnist = Mnist::load(data_dir)?;
    let n = test_size.unwrap_or(mnist.test.len());
    if n == 0 || n > mnist.test.len() {
        bail!("--test-size {n} must be between 1 and the {} test images in {}", mnist.test.len(), data_dir.display());
    }
    let test = SparseImages::from_split(&mnist.test, n);
    let mut writer = MetricsWriter::open(metrics, false)?;
    let mut fast = FastNet::from_network(&net, 256);
    let t = Instant::now();
    let (correct, test_cost) = fast.evaluate(&test, cost);
    let eval_seconds = t.elapsed().as_secs_f64();
    println!(
        "MLP {} from {}: {correct} / {n} correct ({:.2}%)  test cost {test_cost:.6} ({})",
        join_sizes(&net.sizes),
        weights.display(),
        100.0 * correct as f64 / n as f64,
        value_name(cost)
    );
    let record = EpochMetrics::new("mlp", "cpu".into(), seed, epoch, correct, n, test_cost);
    writer.write(&EpochMetrics { eval_seconds, ..record })
}
