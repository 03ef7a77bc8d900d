//! From raw flags ([`crate::cli`]) to typed configuration, once: the defaults (named
//! constants of each model), the device resolved to a [`tch::Device`], the seed inside the
//! run's schedule, and which hyperparameters were given (a resumed run warns about those it
//! ignores). Values are checked by the run driver, with the same code that checks a
//! checkpoint's. A command that reads weights (`eval`, `show`, `trace`) may leave the
//! network to the file: what depends on it (its device, its step) is settled once the file
//! has told it, and where `--model` says it, here.
use crate::cli::{Cli, Command, CommonArgs, DeviceArgs, PredictArgs, TraceArgs};
use crate::cmd::diff::DiffSpec;
use crate::cmd::eval::EvalSpec;
use crate::cmd::predict::{PredictFormat, PredictSpec};
use crate::cmd::show::ShowSpec;
use crate::cmd::trace::TraceSpec;
use crate::driver::{self, Files, Model, RunSpec, Schedule, Start};
use crate::networks;
use crate::outcome::Outcome;
use crate::signal::StopCondition;
use crate::{convnet, device, mlp};
use anyhow::{bail, Result};
use serde_json::{Map, Value};

/// What the command line asks for.
pub enum Job {
    /// `nnmnist convnet`, `nnmnist mlp`.
    Train(Box<dyn Train>),
    Eval(EvalSpec),
    Show(ShowSpec),
    Predict(PredictSpec),
    Trace(TraceSpec),
    Diff(DiffSpec),
    Serve(crate::serve::ServeSpec),
}

/// A training run of some model, resolved.
pub trait Train {
    /// Trains; `stop` is asked before every batch.
    fn train(self: Box<Self>, stop: &dyn StopCondition) -> Result<Outcome>;
}

/// A training run of `M`.
struct Training<M: Model>(RunSpec<M::Hyper, M::Options>);

impl<M: Model> Train for Training<M> {
    fn train(self: Box<Self>, stop: &dyn StopCondition) -> Result<Outcome> {
        driver::train::<M>(self.0, stop)
    }
}

impl Job {
    /// Runs the job; a training run asks `stop` before every batch.
    pub fn run(self, stop: &dyn StopCondition) -> Result<Outcome> {
        match self {
            Job::Train(run) => run.train(stop),
            Job::Eval(spec) => crate::cmd::eval::run(&spec).map(|()| Outcome::Done),
            Job::Show(spec) => crate::cmd::show::run(&spec).map(|()| Outcome::Done),
            Job::Predict(spec) => crate::cmd::predict::run(&spec).map(|()| Outcome::Done),
            Job::Trace(spec) => crate::cmd::trace::run(&spec).map(|()| Outcome::Done),
            Job::Diff(spec) => crate::cmd::diff::run(&spec),
            Job::Serve(spec) => crate::serve::run(&spec, stop),
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
                let spec = run_spec(&a.common, convnet::hyper::DEFAULT_EPOCHS, convnet::hyper::DEFAULT_BATCH_SIZE, hyper, options, given)?;
                Job::Train(Box::new(Training::<convnet::Convnet>(spec)))
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
                let spec = run_spec(&a.common, mlp::hyper::DEFAULT_EPOCHS, mlp::hyper::DEFAULT_BATCH_SIZE, hyper, mlp::Options { engine }, given)?;
                Job::Train(Box::new(Training::<mlp::Mlp>(spec)))
            }
            Command::Eval(a) => {
                let device = device_flags(&a.device);
                if let Some(m) = a.model {
                    networks::check_device(m, &device)?;
                }
                if a.test_size == Some(0) {
                    bail!("--test-size must be at least 1");
                }
                Job::Eval(EvalSpec {
                    model: a.model,
                    weights: a.weights,
                    data_dir: crate::data::resolve_dir(a.data_dir)?,
                    device,
                    metrics: a.metrics,
                    test_size: a.test_size,
                    confusion: a.confusion,
                    errors: a.errors,
                })
            }
            Command::Show(a) => Job::Show(ShowSpec { index: a.index, weights: a.weights, model: a.model, data_dir: crate::data::resolve_dir(a.data_dir)? }),
            Command::Predict(a) => Job::Predict(predict_spec(a)?),
            Command::Trace(a) => Job::Trace(trace_spec(a)?),
            Command::Diff(a) => Job::Diff(DiffSpec::new(a.a, a.b, a.rtol, a.atol, a.exact, a.sort, &a.only, a.format)?),
            Command::Serve(a) => Job::Serve(crate::serve::ServeSpec { host: a.host, port: a.port, weights: a.weights, seed: a.seed.unwrap_or(0), pytorch: a.pytorch, data_dir: crate::data::resolve_dir(a.data_dir)? }),
        })
    }
}

/// `nnmnist predict`: something to show for each image, and no drawing in a JSON stream.
fn predict_spec(a: PredictArgs) -> Result<PredictSpec> {
    if a.weights.is_empty() && !a.show && a.save_input.is_none() {
        bail!("give the networks to read the images with: --weights FILE (repeatable); or --show / --save-input DIR to see the 28x28 inputs alone");
    }
    if a.show && a.format == PredictFormat::Json {
        bail!("--show draws for people and --format json writes for scripts: choose one (--save-input DIR writes the inputs as PNG)");
    }
    Ok(PredictSpec { images: a.images, weights: a.weights, format: a.format, show: a.show, save_input: a.save_input })
}

/// `nnmnist trace`: every network's step flags resolved and checked, a flag of another
/// network than `--model`'s refused (not ignored).
fn trace_spec(a: TraceArgs) -> Result<TraceSpec> {
    if let Some(n) = a.batch_size {
        crate::checks::at_least_one("--batch-size", n)?;
    }
    let device = device_flags(&a.device);
    let steps = a.step.resolve()?;
    if let Some(m) = a.model {
        networks::check_device(m, &device)?;
        steps.of(m)?;
    }
    let data_dir = crate::data::resolve_dir(a.data_dir)?;
    Ok(TraceSpec { model: a.model, weights: a.weights, out: a.out, batch_size: a.batch_size, batch_start: a.batch_start, data_dir, device, steps })
}

/// `--device` and `--threads` resolved (see [`crate::device::device_and_threads`]).
fn resolve_device(d: &DeviceArgs) -> Result<(tch::Device, Option<usize>)> {
    device::device_and_threads(d.device.as_deref().unwrap_or("auto"), d.threads)
}

/// `--device` and `--threads` of a command whose network may be known only from its weights.
fn device_flags(d: &DeviceArgs) -> device::Flags {
    device::Flags { device: d.device.clone(), threads: d.threads }
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
