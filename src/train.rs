//! Training and evaluating the convnet: nn_convnet.py's `train()` and `test()` loops, with
//! its console output, plus checkpoints, resume, metrics and Ctrl-C.
//!
//! Batch order contract (shared with scripts/reference/nn_convnet.py, so that on the CPU a
//! run here and a PyTorch run with the same seed are the same computation): epoch e
//! (0-based) draws `randperm(n)` on the CPU generator after `manual_seed(epoch_seed(seed,
//! e))`; batch i is `perm[i*bs..(i+1)*bs]`; the last partial batch is dropped.
use crate::checkpoint::{self, RunState, Weights};
use crate::cli::ConvnetArgs;
use crate::convnet::{images_tensor, labels_tensor, Net};
use crate::data::{Mnist, Split};
use crate::device;
use crate::metrics::{EpochMetrics, MetricsWriter};
use crate::run::{self, Console, Interrupted};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

/// The run's hyperparameters: what a checkpoint stores to resume it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Hyper {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub train_size: Option<usize>,
    pub test_size: Option<usize>,
    pub no_shuffle: bool,
}

impl Hyper {
    fn from_args(args: &ConvnetArgs) -> Hyper {
        Hyper {
            epochs: args.common.epochs.unwrap_or(20),
            batch_size: args.common.batch_size.unwrap_or(64),
            lr: args.lr,
            weight_decay: args.weight_decay,
            train_size: args.common.train_size,
            test_size: args.common.test_size,
            no_shuffle: args.common.no_shuffle,
        }
    }
}

/// The seed of epoch `epoch`'s batch order: `(seed * 100003 + epoch + 1) mod 2^63`.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(100_003).wrapping_add(epoch as u64 + 1) & (i64::MAX as u64)) as i64
}

/// The order of the `n` training images in epoch `epoch`: (n) i64 on the CPU.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Tensor {
    if shuffle {
        let _rng = crate::convnet::lock_rng();
        tch::manual_seed(epoch_seed(seed, epoch));
        Tensor::randperm(n as i64, (Kind::Int64, Device::Cpu))
    } else {
        Tensor::arange(n as i64, (Kind::Int64, Device::Cpu))
    }
}

/// The number of batches in an epoch of `n` images: the last partial batch is dropped, so
/// every batch has the same shape (which a captured CUDA graph needs).
pub fn batch_count(n: usize, batch_size: usize) -> usize {
    n / batch_size
}

/// Batch `batch` of an epoch: the images and labels at `order[batch*bs..(batch+1)*bs]`,
/// x (bs, 1, 28, 28) and y (bs).
pub fn batch_tensors(order: &Tensor, x: &Tensor, y: &Tensor, batch: usize, batch_size: usize) -> (Tensor, Tensor) {
    let idx = order.narrow(0, (batch * batch_size) as i64, batch_size as i64);
    (x.index_select(0, &idx), y.index_select(0, &idx))
}

/// Mean cross-entropy of a batch: logits (N, 10), labels (N) -> scalar, as nn.CrossEntropyLoss.
pub fn loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::Mean, -100, 0.0)
}

/// torch.optim.SGD(lr, weight_decay) without momentum: libtorch's own SGD (p -= lr * (grad +
/// wd * p)), the kernels Python's SGD runs on the CPU.
pub fn sgd(net: &Net, lr: f64, weight_decay: f64) -> Result<nn::Optimizer> {
    let config = nn::Sgd { momentum: 0.0, dampening: 0.0, wd: weight_decay, nesterov: false };
    Ok(config.build(&net.vs, lr)?)
}

/// One training step as nn_convnet.py's loop: forward, loss, backward, SGD step, zero_grad.
/// x (N, 1, 28, 28), y (N) -> the batch loss (scalar tensor, detached).
pub trait Step {
    fn step(&mut self, net: &Net, x: &Tensor, y: &Tensor) -> Result<Tensor>;
}

/// The eager step: each op launched as it comes.
pub struct EagerStep {
    pub opt: nn::Optimizer,
}

impl Step for EagerStep {
    fn step(&mut self, net: &Net, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let loss = loss(&net.forward_t(x, true), y);
        loss.backward();
        self.opt.step();
        self.opt.zero_grad();
        Ok(loss.detach())
    }
}

/// Test accuracy and loss as nn_convnet.py's `test()` computes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestResult {
    pub correct: usize,
    pub total: usize,
    /// Mean over test batches of 64 (in order, the last partial batch included) of each
    /// batch's mean cross-entropy.
    pub avg_loss: f64,
}

impl TestResult {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total as f64
    }

    /// nn_convnet.py's two lines: `Test Error: ` and ` Accuracy: ..%, Avg loss: .. `.
    pub fn lines(&self) -> String {
        format!("Test Error: \n Accuracy: {:.1}%, Avg loss: {:>8.6} \n", 100.0 * self.accuracy(), self.avg_loss)
    }
}

/// The batch size nn_convnet.py evaluates with; its avg loss is a mean of these batches' means.
pub const TEST_BATCH: i64 = 64;

/// Evaluates on `x` (N, 1, 28, 28), `y` (N). The loss is defined over batches of 64 as in
/// nn_convnet.py. On the CPU each forward pass takes one such batch (the very computation
/// PyTorch does); on CUDA forward passes take 32 batches at once and the per-image losses
/// are then grouped into the same batches of 64, with one host sync at the end.
pub fn evaluate(net: &Net, x: &Tensor, y: &Tensor) -> TestResult {
    tch::no_grad(|| {
        let n = x.size()[0];
        let chunk = if x.device().is_cuda() { 32 * TEST_BATCH } else { TEST_BATCH };
        let mut correct = Tensor::zeros([], (Kind::Int64, x.device()));
        let mut batch_means = Vec::new();
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let logits = net.forward_t(&x.narrow(0, start, len), false);
            let labels = y.narrow(0, start, len);
            correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
            if chunk == TEST_BATCH {
                batch_means.push(loss(&logits, &labels));
            } else {
                let per_image = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::None, -100, 0.0);
                let full = len / TEST_BATCH;
                if full > 0 {
                    batch_means.push(per_image.narrow(0, 0, full * TEST_BATCH).view([full, TEST_BATCH]).mean_dim(1, false, Kind::Float));
                }
                if len % TEST_BATCH != 0 {
                    batch_means.push(per_image.narrow(0, full * TEST_BATCH, len % TEST_BATCH).mean(Kind::Float).view([1]));
                }
            }
            start += len;
        }
        let means = Tensor::cat(&batch_means.iter().map(|t| t.view([-1])).collect::<Vec<_>>(), 0).to_kind(Kind::Double).to_device(Device::Cpu);
        let means = Vec::<f64>::try_from(means).expect("f64 losses");
        // Python sums the batch losses as doubles, in order, then divides.
        let avg_loss = means.iter().sum::<f64>() / means.len() as f64;
        TestResult { correct: correct.int64_value(&[]) as usize, total: n as usize, avg_loss }
    })
}

/// What `run` resolved from the arguments: hyperparameters, where to start, where to save.
struct Plan {
    hyper: Hyper,
    seed: u64,
    device: Device,
    save: Option<PathBuf>,
    start_epoch: usize,
    start_batch: usize,
    weights: Option<Weights>,
}

fn plan(args: &ConvnetArgs) -> Result<Plan> {
    args.validate()?;
    let device = device::resolve(&args.device)?;
    let mut hyper = Hyper::from_args(args);
    let mut seed = args.common.seed;
    let (mut start_epoch, mut start_batch) = (0, 0);
    let mut save = args.common.save.clone();
    let weights = if let Some(path) = &args.common.resume {
        let w = Weights::load(path)?;
        let state = w.run_state("convnet")?;
        let stored: Hyper = serde_json::from_value(state.args.clone())
            .with_context(|| format!("{}: unreadable hyperparameters in the checkpoint", path.display()))?;
        let defaults = Hyper::from_args(&crate::cli::ConvnetArgs::defaults());
        run::warn_ignored_on_resume(
            &run::with_seed(&Hyper::from_args(args), args.common.seed)?,
            &run::with_seed(&defaults, 0)?,
            &run::with_seed(&stored, state.seed)?,
        );
        hyper = Hyper { epochs: args.common.epochs.unwrap_or(stored.epochs), ..stored };
        seed = state.seed;
        start_epoch = state.epochs_done;
        start_batch = state.next_batch;
        save = Some(save.unwrap_or_else(|| path.clone()));
        Some(w)
    } else if let Some(path) = &args.common.init_from {
        Some(Weights::load(path)?)
    } else {
        None
    };
    if let Some(w) = &weights {
        crate::convnet::check_weights(w)?;
    }
    if let Some(path) = &save {
        checkpoint::check_writable(path)?;
    }
    Ok(Plan { hyper, seed, device, save, start_epoch, start_batch, weights })
}

fn subset(split: &Split, n: Option<usize>, flag: &str) -> Result<Split> {
    match n {
        Some(n) if n > split.len() => bail!("{flag} {n}: there are only {} images", split.len()),
        Some(n) => Ok(split.take(n)),
        None => Ok(split.clone()),
    }
}

/// The `nnmnist convnet` command.
pub fn run(args: &ConvnetArgs) -> Result<()> {
    let plan = plan(args)?;
    let h = &plan.hyper;
    if plan.start_epoch >= h.epochs {
        eprintln!(
            "nnmnist: the checkpoint already holds all {} epochs of this run; pass --epochs N (N > {}) to train further",
            plan.start_epoch, plan.start_epoch
        );
        return Ok(());
    }
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    let mnist = Mnist::load(&args.common.data_dir)?;
    let train = subset(&mnist.train, h.train_size, "--train-size")?;
    let test = subset(&mnist.test, h.test_size, "--test-size")?;
    if h.batch_size > train.len() {
        bail!("--batch-size {} is larger than the {} training images", h.batch_size, train.len());
    }
    let mut metrics = MetricsWriter::open(args.common.metrics.as_deref(), args.common.resume.is_some())?;
    let device = plan.device;
    let console = Console::new();
    console.line(&format!("Using {} device", device::console_name(device)));
    eprintln!("nnmnist: seed {}", plan.seed);

    let net = Net::new(device, plan.seed);
    if let Some(w) = &plan.weights {
        net.copy_from(w)?;
    }
    let (train_x, train_y) = (images_tensor(&train.images, device), labels_tensor(&train.labels, device));
    let (test_x, test_y) = (images_tensor(&test.images, device), labels_tensor(&test.labels, device));
    let opt = sgd(&net, h.lr, h.weight_decay)?;
    let stepper: Box<dyn Step> = if device.is_cuda() && !args.no_cuda_graph {
        crate::cuda_graph::graph_step_or_eager(opt, &net, h.batch_size)
    } else {
        Box::new(EagerStep { opt })
    };
    let mut trainer = Trainer { net, plan: &plan, console, stepper, train_x, train_y, test_x, test_y };
    trainer.run_epochs(&mut metrics)?;
    trainer.console.line("Done!");
    Ok(())
}

struct Trainer<'a> {
    net: Net,
    plan: &'a Plan,
    console: Console,
    stepper: Box<dyn Step>,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
}

impl Trainer<'_> {
    fn run_epochs(&mut self, metrics: &mut MetricsWriter) -> Result<()> {
        let h = &self.plan.hyper;
        let n = self.train_x.size()[0] as usize;
        let batches = batch_count(n, h.batch_size);
        for epoch in self.plan.start_epoch..h.epochs {
            let first = if epoch == self.plan.start_epoch { self.plan.start_batch } else { 0 };
            self.console.line(&format!("Epoch {}\n-------------------------------", epoch + 1));
            let started = Instant::now();
            let train_loss = self.train_epoch(epoch, first, batches, n)?;
            let train_seconds = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let result = evaluate(&self.net, &self.test_x, &self.test_y);
            let eval_seconds = started.elapsed().as_secs_f64();
            self.console.line(&result.lines());
            let record = EpochMetrics::new(
                "convnet",
                device::metrics_name(self.plan.device),
                self.plan.seed,
                epoch + 1,
                result.correct,
                result.total,
                result.avg_loss,
            );
            metrics.write(&EpochMetrics { train_loss: Some(train_loss), train_seconds, eval_seconds, ..record })?;
            self.save(epoch + 1, 0)?;
        }
        Ok(())
    }

    /// One epoch from batch `first` on; returns the mean batch loss.
    fn train_epoch(&mut self, epoch: usize, first: usize, batches: usize, n: usize) -> Result<f64> {
        let h = &self.plan.hyper;
        let order = epoch_order(n, self.plan.seed, epoch, !h.no_shuffle).to_device(self.train_x.device());
        let cuda = self.train_x.device().is_cuda();
        let mut loss_sum = Tensor::zeros([], (Kind::Float, self.train_x.device()));
        self.console.start_epoch(&format!("epoch {}", epoch + 1), batches);
        for batch in first..batches {
            if run::interrupted() {
                self.console.finish();
                let saved = self.save(epoch, batch)?;
                return Err(Interrupted(match saved {
                    Some(p) => format!(
                        "interrupted in epoch {} at batch {batch}: saved to {p}; continue with --resume {p}",
                        epoch + 1
                    ),
                    None => format!("interrupted in epoch {} at batch {batch} (no --save given, nothing saved)", epoch + 1),
                })
                .into());
            }
            let (x, y) = batch_tensors(&order, &self.train_x, &self.train_y, batch, h.batch_size);
            let loss = self.stepper.step(&self.net, &x, &y)?;
            loss_sum += &loss;
            let report = batch % 20 == 0;
            if report || !cuda {
                let value = loss.double_value(&[]);
                run::check_finite(value, epoch + 1, batch, "--lr")?;
                if report {
                    self.console.line(&format!("loss: {value:>7.6}  [{:>5}/{n:>5}]", (batch + 1) * h.batch_size));
                }
            }
            self.console.set_position(batch + 1);
        }
        self.console.finish();
        let done = batches - first;
        let mean = if done > 0 { loss_sum.double_value(&[]) / done as f64 } else { f64::NAN };
        run::check_finite(mean, epoch + 1, batches, "--lr")?;
        Ok(mean)
    }

    /// Saves the weights and the run state (`epochs_done`, `next_batch`) if --save was given;
    /// returns the path saved to.
    fn save(&self, epochs_done: usize, next_batch: usize) -> Result<Option<String>> {
        let Some(path) = &self.plan.save else { return Ok(None) };
        let state = RunState {
            model: "convnet".into(),
            epochs_done,
            next_batch,
            seed: self.plan.seed,
            args: serde_json::to_value(&self.plan.hyper)?,
        };
        self.net.save(path, Some(&state))?;
        Ok(Some(path.display().to_string()))
    }
}

/// The `nnmnist eval --model convnet` command: prints nn_convnet.py's test lines.
pub fn eval(args: &crate::cli::EvalArgs) -> Result<()> {
    let device = device::resolve(&args.device)?;
    let net = Net::load(&args.weights, device)?;
    let mnist = Mnist::load(&args.data_dir)?;
    let test = subset(&mnist.test, args.test_size, "--test-size")?;
    let mut metrics = MetricsWriter::open(args.metrics.as_deref(), false)?;
    let started = Instant::now();
    let result = evaluate(&net, &images_tensor(&test.images, device), &labels_tensor(&test.labels, device));
    println!("{}", result.lines());
    let record = EpochMetrics::new("convnet", device::metrics_name(device), 0, 0, result.correct, result.total, result.avg_loss);
    metrics.write(&EpochMetrics { eval_seconds: started.elapsed().as_secs_f64(), ..record })?;
    Ok(())
}
