//! From raw flags ([`crate::cli`]) to typed configuration, once: the defaults (named
//! constants of each model), the device resolved to a [`tch::Device`], the seed inside the
//! run's schedule, and which hyperparameters were given (a resumed run warns about those it
//! ignores). Values are checked by the run driver, with the same code that checks a
//! checkpoint's.
use crate::classifier::ModelKind;
use crate::cli::{Cli, Command, CommonArgs, DeviceArgs, TraceArgs};
use crate::driver::{self, Files, RunSpec, Schedule, Start};
use crate::signal::StopCondition;
use crate::cmd::eval::EvalSpec;
use crate::cmd::trace::TraceSpec;
use crate::cmd::diff::DiffSpec;
use crate::{convnet, mlp};
use anyhow::{bail, Result};
use serde_json::{Map, Value};

/// What the command line asks for.
pub enum Job {
    Convnet(RunSpec<convnet::Hyper, convnet::Options>),
    Mlp(RunSpec<mlp::Hyper, mlp::Options>),
    Eval(EvalSpec),
    Show(crate::cmd::show::ShowSpec),
    Trace(TraceSpec),
    Diff(DiffSpec),
}

impl Job {
    /// Runs the job; a training run asks `stop` before every batch. libtorch's process-wide
    /// settings the job asks for are applied first, here and nowhere else.
    pub fn run(self, stop: &dyn StopCondition) -> Result<()> {
        self.process_settings().apply()?;
        match self {
            Job::Convnet(spec) => driver::train::<convnet::Convnet>(spec, stop),
            Job::Mlp(spec) => driver::train::<mlp::Mlp>(spec, stop),
            Job::Eval(spec) => crate::cmd::eval::run(&spec),
            Job::Show(args) => crate::cmd::show::run(&args),
            Job::Trace(spec) => crate::cmd::trace::run(&spec),
            Job::Diff(spec) => crate::cmd::diff::run(&spec),
        }
    }

    /// The libtorch threads and deterministic kernels this job asks for.
    fn process_settings(&self) -> ProcessSettings {
        match self {
            Job::Convnet(spec) => ProcessSettings { threads: spec.options.threads, deterministic: spec.options.deterministic.then_some(spec.options.device) },
            Job::Eval(spec) => ProcessSettings { threads: spec.threads, deterministic: None },
            Job::Trace(spec) => ProcessSettings { threads: spec.threads, deterministic: spec.deterministic.then_some(spec.device) },
            Job::Mlp(_) | Job::Show(_) | Job::Diff(_) => ProcessSettings::default(),
        }
    }

    /// The job `cli` asks for (`--version` is answered before, in `main`).
    pub fn from_cli(cli: Cli) -> Result<Job> {
        let Some(command) = cli.command else { bail!("no command given: see nnmnist --help") };
        Ok(match command {
            Command::Convnet(a) => {
                let d = convnet::Hyper::default();
                let hyper = convnet::Hyper { lr: a.lr.unwrap_or(d.lr), weight_decay: a.weight_decay.unwrap_or(d.weight_decay) };
                let (device, threads) = resolve_device(&a.device)?;
                let options = convnet::Options { device, cuda_graph: !a.no_cuda_graph, threads, deterministic: a.deterministic };
                let mut given = given_common(&a.common);
                put(&mut given, "lr", a.lr);
                put(&mut given, "weight_decay", a.weight_decay);
                Job::Convnet(run_spec(&a.common, convnet::hyper::DEFAULT_EPOCHS, convnet::hyper::DEFAULT_BATCH_SIZE, hyper, options, given)?)
            }
            Command::Mlp(a) => {
                let d = mlp::Hyper::default();
                let hyper = mlp::Hyper {
                    sizes: a.sizes.clone().unwrap_or(d.sizes),
                    eta: a.eta.unwrap_or(d.eta),
                    cost: a.cost.unwrap_or(d.cost),
                    lambda: a.lambda.unwrap_or(d.lambda),
                    init: a.init.unwrap_or(d.init),
                };
                let engine = if a.reference { mlp::Engine::Reference } else { mlp::Engine::Fast };
                let mut given = given_common(&a.common);
                put(&mut given, "sizes", a.sizes.clone());
                put(&mut given, "eta", a.eta);
                put(&mut given, "cost", a.cost);
                put(&mut given, "lambda", a.lambda);
                put(&mut given, "init", a.init);
                Job::Mlp(run_spec(&a.common, mlp::hyper::DEFAULT_EPOCHS, mlp::hyper::DEFAULT_BATCH_SIZE, hyper, mlp::Options { engine }, given)?)
            }
            Command::Eval(a) => {
                let (device, threads) = match a.model {
                    ModelKind::Convnet => resolve_device(&a.device)?,
                    ModelKind::Mlp => {
                        refuse_device_for_mlp(&a.device)?;
                        (tch::Device::Cpu, None)
                    }
                };
                if a.test_size == Some(0) {
                    bail!("--test-size must be at least 1");
                }
                Job::Eval(EvalSpec {
                    model: a.model,
                    weights: a.weights,
                    data_dir: crate::data::resolve_dir(a.data_dir)?,
                    device,
                    threads,
                    metrics: a.metrics,
                    test_size: a.test_size,
                    confusion: a.confusion,
                    errors: a.errors,
                })
            }
            Command::Show(a) => Job::Show(crate::cmd::show::ShowSpec { index: a.index, weights: a.weights, data_dir: crate::data::resolve_dir(a.data_dir)? }),
            Command::Trace(a) => Job::Trace(trace_spec(a)?),
            Command::Diff(a) => Job::Diff(DiffSpec::new(a.a, a.b, a.rtol, a.atol, a.exact, a.sort, &a.only, a.format)?),
        })
    }
}

/// `nnmnist trace`: the model's step flags (a flag of the other model is refused, not
/// ignored), the device, and the defaults.
fn trace_spec(a: TraceArgs) -> Result<TraceSpec> {
    // A flag of the other model would be ignored: refused instead.
    let (device, threads) = match a.model {
        ModelKind::Convnet => {
            let other = [("--eta", a.eta.is_some()), ("--lambda", a.lambda.is_some()), ("--cost", a.cost.is_some()), ("--train-size-n", a.train_size_n.is_some())];
            if let Some((flag, _)) = other.iter().find(|(_, given)| *given) {
                bail!("{flag} is the MLP's; the convnet's step takes --lr and --weight-decay");
            }
            resolve_device(&a.device)?
        }
        ModelKind::Mlp => {
            let other = [("--lr", a.lr.is_some()), ("--weight-decay", a.weight_decay.is_some()), ("--deterministic", a.deterministic)];
            if let Some((flag, _)) = other.iter().find(|(_, given)| *given) {
                bail!("{flag} is the convnet's; the MLP's step takes --eta, --lambda, --cost and --train-size-n");
            }
            refuse_device_for_mlp(&a.device)?;
            (tch::Device::Cpu, None)
        }
    };
    let (c, m) = (convnet::Hyper::default(), mlp::Hyper::default());
    let convnet = convnet::Hyper { lr: a.lr.unwrap_or(c.lr), weight_decay: a.weight_decay.unwrap_or(c.weight_decay) };
    let mlp = mlp::Hyper { eta: a.eta.unwrap_or(m.eta), lambda: a.lambda.unwrap_or(m.lambda), cost: a.cost.unwrap_or(m.cost), ..m };
    let batch_size = a.batch_size.unwrap_or(match a.model {
        ModelKind::Convnet => convnet::hyper::DEFAULT_BATCH_SIZE,
        ModelKind::Mlp => mlp::hyper::DEFAULT_BATCH_SIZE,
    });
    crate::checks::at_least_one("--batch-size", batch_size)?;
    let train_size_n = a.train_size_n.unwrap_or(mlp::hyper::DEFAULT_TRAIN_SIZE);
    crate::checks::at_least_one("--train-size-n", train_size_n)?;
    match a.model {
        ModelKind::Convnet => convnet.check()?,
        ModelKind::Mlp => mlp.check()?,
    }
    Ok(TraceSpec {
        model: a.model,
        weights: a.weights,
        out: a.out,
        batch_size,
        batch_start: a.batch_start,
        data_dir: crate::data::resolve_dir(a.data_dir)?,
        device,
        threads,
        deterministic: a.deterministic,
        convnet,
        mlp,
        train_size_n,
    })
}

/// `--device` and `--threads` resolved (see [`crate::device::device_and_threads`]).
fn resolve_device(d: &DeviceArgs) -> Result<(tch::Device, Option<usize>)> {
    crate::device::device_and_threads(d.device.as_deref().unwrap_or("auto"), d.threads)
}

/// Fails when either flag was given to a command that runs the MLP (always on the CPU, on
/// one thread): a flag that would be ignored is an error, not a silence.
fn refuse_device_for_mlp(d: &DeviceArgs) -> Result<()> {
    if d.device.is_some() || d.threads.is_some() {
        bail!("--device and --threads apply to the convnet; the MLP runs on the CPU, on one thread");
    }
    Ok(())
}

/// libtorch's process-wide state a command sets before its work: the number of CPU threads
/// (`--threads`) and deterministic kernels on a CUDA device (`--deterministic`).
#[derive(Debug, Default)]
struct ProcessSettings {
    threads: Option<usize>,
    deterministic: Option<tch::Device>,
}

impl ProcessSettings {
    fn apply(&self) -> Result<()> {
        if let Some(t) = self.threads {
            tch::set_num_threads(t as i32);
        }
        if let Some(device) = self.deterministic {
            convnet::determinism::enable(device)?;
        }
        Ok(())
    }
}

/// The schedule and files of a training command, with the model's defaults.
fn run_spec<H, O>(c: &CommonArgs, epochs: usize, batch_size: usize, hyper: H, options: O, given: Map<String, Value>) -> Result<RunSpec<H, O>> {
    let schedule = Schedule {
        epochs: c.epochs.unwrap_or(epochs),
        batch_size: c.batch_size.unwrap_or(batch_size),
        train_size: c.train_size,
        test_size: c.test_size,
        shuffle: !c.no_shuffle,
        seed: c.seed.unwrap_or(0),
    };
    let start = match (&c.resume, &c.init_from) {
        (Some(p), _) => Start::Resume(p.clone()),
        (None, Some(p)) => Start::InitFrom(p.clone()),
        (None, None) => Start::Fresh,
    };
    let files = Files { data_dir: crate::data::resolve_dir(c.data_dir.clone())?, save: c.save.clone(), metrics: c.metrics.clone() };
    Ok(RunSpec { schedule, hyper, options, files, start, given })
}

/// The schedule's flags that were given, by stored field name.
fn given_common(c: &CommonArgs) -> Map<String, Value> {
    let mut given = Map::new();
    put(&mut given, "epochs", c.epochs);
    put(&mut given, "batch_size", c.batch_size);
    put(&mut given, "train_size", c.train_size);
    put(&mut given, "test_size", c.test_size);
    put(&mut given, "shuffle", c.no_shuffle.then_some(false));
    put(&mut given, "seed", c.seed);
    given
}

fn put<T: serde::Serialize>(given: &mut Map<String, Value>, field: &str, value: Option<T>) {
    if let Some(v) = value.and_then(|v| serde_json::to_value(v).ok()) {
        given.insert(field.into(), v);
    }
}
