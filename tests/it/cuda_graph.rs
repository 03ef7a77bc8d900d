//! What of the CUDA-graph path can be checked without a GPU: capture refuses a CPU network
//! cleanly, naming the phase that failed (with the C++ shim compiled in, as on this
//! CUDA-enabled libtorch, or without), a libtorch error inside a phase keeps its message and
//! leaves grad mode as it was, the fallback trains exactly as the eager step (loss sum
//! included), every batch has the static shape, the driver prints losses read after the
//! epoch in order and stops on a NaN among them, and scripts/device_check on a machine
//! without a GPU fails fast with a short summary. The GPU checks are tests/cuda.rs (ignored
//! unless asked for) and scripts/gpu_check.py.
use crate::common;
use nnmnist::convnet::cuda_graph::{catch_phase, graph_step_or_eager, GraphStep};
use nnmnist::convnet::step::{batch_count, batch_tensors, epoch_order, sgd, EagerStep, Step};
use nnmnist::convnet::{images_tensor, labels_tensor, Net};
use nnmnist::data::Split;
use nnmnist::driver::{Batching, EpochEnd, Files, Hyper, Model, Placement, RunSpec, Schedule, Start, Transcript};
use nnmnist::evaluation::Evaluation;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

fn max_param_diff(a: &Net, b: &Net) -> f64 {
    a.parameters()
        .iter()
        .zip(b.parameters())
        .map(|((_, x), (_, y))| (x - y).abs().max().double_value(&[]))
        .fold(0.0, f64::max)
}

#[test]
fn capture_on_cpu_fails_cleanly_and_leaves_weights_alone() {
    let net = Net::new(Device::Cpu, 7);
    let before = Net::new(Device::Cpu, 7);
    let opt = sgd(&net, 0.05, 0.001).unwrap();
    let sum = Tensor::zeros([], (Kind::Float, Device::Cpu));
    let Err((why, opt)) = GraphStep::capture(opt, &net, 64, &sum) else {
        panic!("capture of a CPU network must fail");
    };
    let msg = format!("{why:#}");
    let shim = cfg!(nnmnist_cuda_graph) || msg.contains("during warm-up");
    assert!(
        if shim { msg.contains("during warm-up") && msg.contains("not a CUDA device") } else { msg.contains("no CUDA-graph support") },
        "the failure names its phase and cause: {msg}"
    );
    assert!(opt.is_some(), "a failed capture gives the optimizer back: {msg}");
    assert_eq!(max_param_diff(&net, &before), 0.0, "a failed capture must not change the weights");
    assert!(net.parameters().iter().all(|(_, p)| !p.grad().defined() || p.grad().abs().max().double_value(&[]) == 0.0), "no gradient is left behind");
}

#[test]
fn a_libtorch_error_in_a_phase_keeps_its_message_and_grad_mode() {
    let err = catch_phase("capture", || {
        let _no_grad = tch::no_grad_guard();
        let _ = Tensor::zeros([2], (Kind::Float, Device::Cpu)).view([3]); // libtorch raises: tch panics
        Ok(())
    })
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.starts_with("during capture: "), "{msg}");
    assert!(msg.contains("shape '[3]' is invalid for input of size 2"), "libtorch's message is kept: {msg}");
    assert!(!msg.contains("Exception raised from") && !msg.contains("unwrap"), "only the message, not tch's wrapping or the C++ trace: {msg}");
    // Grad mode is on again: a tensor that needs grad gives a result that does.
    let w = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    assert!((&w * 2.0).requires_grad(), "grad mode stayed off after a panic inside no_grad");
    // An error returned (not a panic) gets the phase too.
    let err = catch_phase("restore", || -> anyhow::Result<()> { anyhow::bail!("copy failed") }).unwrap_err();
    assert_eq!(format!("{err:#}"), "during restore: copy failed");
}

/// What the CUDA tests put back after `--deterministic`: the three switches read, and
/// applied unchanged, through the shim (reading needs no GPU).
#[test]
fn determinism_settings_read_and_apply_unchanged() {
    use nnmnist::convnet::determinism;
    if !cfg!(nnmnist_cuda_graph) {
        let err = determinism::current().expect_err("without the shim reading must fail").to_string();
        assert_eq!(err, "--deterministic on CUDA needs the C++ shim, which this build lacks (libtorch's CUDA headers were missing at build time: run scripts/setup, then rebuild)");
        return;
    }
    let now = determinism::current().unwrap();
    assert!(!now.deterministic_algorithms, "nothing here turned deterministic algorithms on: {now:?}");
    assert_eq!(determinism::apply(now).unwrap(), now);
}

#[test]
fn fallback_step_trains_exactly_as_eager() {
    let mnist = nnmnist::data::Mnist::load(Path::new("data")).unwrap();
    let train = mnist.train.take(640);
    let (x, y) = (images_tensor(&train.images, Device::Cpu), labels_tensor(&train.labels, Device::Cpu));
    let order = epoch_order(train.len(), 3, 0, true);

    let fallback_net = Net::new(Device::Cpu, 3);
    let fallback_sum = Tensor::zeros([], (Kind::Float, Device::Cpu));
    let mut fallback = graph_step_or_eager(sgd(&fallback_net, 0.05, 0.001).unwrap(), &fallback_net, 64, &fallback_sum).unwrap();
    let eager_net = Net::new(Device::Cpu, 3);
    let eager_sum = Tensor::zeros([], (Kind::Float, Device::Cpu));
    let mut eager = EagerStep::summing(sgd(&eager_net, 0.05, 0.001).unwrap(), &eager_sum);
    let mut by_hand = 0f32;
    for batch in 0..batch_count(train.len(), 64) {
        let (bx, by) = batch_tensors(&order, &x, &y, batch, 64);
        let l1 = fallback.step(&fallback_net, &bx, &by).unwrap().double_value(&[]);
        let l2 = eager.step(&eager_net, &bx, &by).unwrap().double_value(&[]);
        assert_eq!(l1, l2, "batch {batch}: fallback loss {l1} vs eager {l2}");
        by_hand += l2 as f32;
    }
    let diff = max_param_diff(&fallback_net, &eager_net);
    assert_eq!(diff, 0.0, "fallback and eager weights differ by up to {diff}");
    let (s1, s2) = (fallback_sum.double_value(&[]), eager_sum.double_value(&[]));
    assert_eq!(s1, s2, "loss sums differ");
    assert_eq!(s2 as f32, by_hand, "the loss sum is the sum of the batch losses");
}

#[test]
fn every_batch_has_the_static_shape() {
    // 1000 images in batches of 64: 15 full batches, the 40 left over are dropped.
    let n = 1000;
    let x = Tensor::arange(n as i64, (tch::Kind::Float, Device::Cpu)).view([n as i64, 1, 1, 1]).expand([n as i64, 1, 28, 28], false);
    let y = Tensor::arange(n as i64, (tch::Kind::Int64, Device::Cpu));
    let order = epoch_order(n, 11, 2, true);
    assert_eq!(batch_count(n, 64), 15);
    let mut seen = std::collections::HashSet::new();
    for batch in 0..batch_count(n, 64) {
        let (bx, by) = batch_tensors(&order, &x, &y, batch, 64);
        assert_eq!(bx.size(), vec![64, 1, 28, 28], "batch {batch}");
        assert_eq!(by.size(), vec![64], "batch {batch}");
        for i in Vec::<i64>::try_from(&by).unwrap() {
            assert!(seen.insert(i), "image {i} appears twice in one epoch");
        }
    }
    assert_eq!(seen.len(), 960);
}

/// scripts/device_check --prepare refuses a binary without the shim, naming what is missing,
/// and copies binaries that hold it; `device_check 1` on a machine where torch sees no GPU
/// (CUDA_VISIBLE_DEVICES="" makes any machine one) fails within a minute, leaves at most 8
/// files, and its summary names each step and why it failed.
#[test]
fn device_check_without_a_gpu_fails_fast_with_a_summary() {
    let root = common::root();
    let script = root.join("scripts/device_check");
    let tmp = tempfile::tempdir().unwrap();
    let dev = tmp.path().join("device");
    let run = |args: &[&str], out: &Path| {
        let started = Instant::now();
        let o = std::process::Command::new(&script)
            .args(args)
            .current_dir(&root)
            .env("NNMNIST_DEVICE_DIR", &dev)
            .env("OUT", out)
            .env("NNMNIST_PYTHON", common::python())
            .env("CUDA_VISIBLE_DEVICES", "")
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        (o.status.code(), text, started.elapsed())
    };
    // A binary without the shim: the test binary of another area would do; /bin/true is one.
    let (code, text, _) = run(&["--prepare", "/bin/true", "/bin/true"], tmp.path());
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("lacks the CUDA-graph shim") && text.contains("nnm_graph_capture_begin"), "{text}");
    assert!(!dev.join("nnmnist").exists(), "nothing is copied after a failed check");

    // The nnmnist binary and this test binary both link the library with the shim.
    let me = std::env::current_exe().unwrap();
    let (code, text, _) = run(&["--prepare", common::s(&common::bin()), common::s(&me)], tmp.path());
    assert_eq!(code, Some(0), "{text}");
    assert!(dev.join("nnmnist").exists() && dev.join("cuda-tests").exists(), "{text}");

    let out = tmp.path().join("out");
    let (code, text, took) = run(&["1"], &out);
    assert_eq!(code, Some(1), "no GPU: the check must fail\n{text}");
    assert!(took < Duration::from_secs(60), "took {took:?}\n{text}");
    let files: Vec<_> = walk(&out);
    assert!(files.len() <= 8, "{} files under $OUT: {files:?}", files.len());
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(text.ends_with(&summary), "the summary is printed last\n{text}");
    assert!(summary.lines().count() <= 40, "the summary is short:\n{summary}");
    assert!(summary.contains("preflight: FAILED (exit 1)"), "{summary}");
    // The Python of the suite has torch; with CUDA_VISIBLE_DEVICES="" it sees no GPU.
    assert!(summary.contains("sees no CUDA device (CUDA_VISIBLE_DEVICES='')"), "the summary says why:\n{summary}");
    for step in ["cuda_tests", "gpu_check", "lockstep", "layers"] {
        assert!(summary.contains(&format!("{step}: not run (preflight failed)")), "{step} missing:\n{summary}");
    }
    assert!(summary.trim_end().ends_with("result: FAILED"), "{summary}");
}

/// The plain files under `dir`, at any depth.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// scripts/gpu_check.py's verdicts: a figure is GOAL at or under the goal, OK up to the
/// acceptable bound, FAIL past it; 3 seeds' accuracy is GOAL all inside PyTorch's range, OK
/// when only their mean is, FAIL otherwise.
#[test]
fn gpu_check_levels() {
    let code = r#"
from scripts import gpu_check as g
print(g.level(0.19, g.EPOCH_GOAL, g.EPOCH_ACCEPTABLE), g.level(0.2, 0.2, 0.25), g.level(0.23, 0.2, 0.25), g.level(0.26, 0.2, 0.25))
print(g.level(5.9, g.RUN_GOAL, g.RUN_ACCEPTABLE), g.level(7.5, g.RUN_GOAL, g.RUN_ACCEPTABLE), g.level(8.1, g.RUN_GOAL, g.RUN_ACCEPTABLE))
lo, hi = g.PYTORCH_RANGE
print(g.accuracy_level([0.988, 0.989, 0.9875], lo, hi), g.accuracy_level([0.9865, 0.989, 0.988], lo, hi), g.accuracy_level([0.9860, 0.9868, 0.9880], lo, hi))
"#;
    let out = std::process::Command::new(common::python()).args(["-c", code]).current_dir(common::root()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "GOAL GOAL OK FAIL\nGOAL OK FAIL\nGOAL OK FAIL\n");
}

/// A model that, as the convnet on CUDA, reads no loss during the epoch and hands the
/// every-20th losses to the driver at its end; it records what the driver asks of it.
struct Deferring {
    log: Rc<RefCell<Vec<String>>>,
    nan_at: Option<usize>,
    epoch_batches: Vec<usize>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct NoHyper {}

impl Hyper for NoHyper {
    fn check(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn check_weights(&self, _: &nnmnist::weights::Weights) -> anyhow::Result<()> {
        Ok(())
    }
    fn diverged_hint(&self) -> String {
        "nothing".into()
    }
}

impl Model for Deferring {
    const NAME: &'static str = "deferring";
    const BATCHING: Batching = Batching { default_train: None, drop_last: true };
    type Hyper = NoHyper;
    /// The log, and the batch whose deferred loss is NaN.
    type Options = (Rc<RefCell<Vec<String>>>, Option<usize>);
    fn build(spec: &RunSpec<NoHyper, Self::Options>, _: Option<&nnmnist::weights::Weights>, _: Split, _: Split) -> anyhow::Result<Self> {
        Ok(Deferring { log: spec.options.0.clone(), nan_at: spec.options.1, epoch_batches: Vec::new() })
    }
    fn transcript(&self) -> Box<dyn Transcript> {
        Box::new(DeferringLines { log: self.log.clone() })
    }
    fn start_epoch(&mut self, _: usize) {
        self.epoch_batches.clear();
    }
    fn train_batch(&mut self, batch: usize) -> anyhow::Result<Option<f64>> {
        self.epoch_batches.push(batch);
        Ok(None)
    }
    fn end_epoch(&mut self) -> anyhow::Result<EpochEnd> {
        self.log.borrow_mut().push(format!("end of epoch after {} batches", self.epoch_batches.len()));
        let nan = self.nan_at;
        let losses = self.epoch_batches.iter().filter(|b| *b % 20 == 0).map(|&b| (b, if Some(b) == nan { f64::NAN } else { b as f64 / 100.0 })).collect();
        Ok(EpochEnd { losses, train_loss: 0.5 })
    }
    fn evaluate(&mut self) -> anyhow::Result<Evaluation> {
        Ok(Evaluation { labels: vec![1], predictions: vec![1], confidence: vec![1.0], loss: 0.1 })
    }
    fn entries(&self) -> Vec<nnmnist::weights::Entry> {
        Vec::new()
    }
    fn placement(&self) -> Placement {
        Placement { device: "cpu".into(), threads: None }
    }
}

/// The test model's lines, logged so that the test sees their order.
struct DeferringLines {
    log: Rc<RefCell<Vec<String>>>,
}

impl Transcript for DeferringLines {
    fn intro(&self, _: &nnmnist::data::Mnist) -> String {
        "intro".into()
    }
    fn batch_line(&self, batch: usize, loss: f64) -> Option<String> {
        self.log.borrow_mut().push(format!("line {batch} {loss}"));
        None
    }
    fn eval_lines(&self, epoch: usize, _: &Evaluation) -> String {
        self.log.borrow_mut().push(format!("eval {epoch}"));
        format!("eval {epoch}")
    }
}

fn deferring_run(nan_at: Option<usize>) -> (anyhow::Result<nnmnist::outcome::Outcome>, Vec<String>) {
    let data = common::small_data(200);
    let log = Rc::new(RefCell::new(Vec::new()));
    let spec = RunSpec {
        schedule: Schedule { epochs: 2, batch_size: 4, train_size: Some(180), test_size: Some(10), shuffle: false, seed: 0 },
        hyper: NoHyper {},
        options: (log.clone(), nan_at),
        files: Files { data_dir: data.path().to_path_buf(), save: None, metrics: None },
        start: Start::Fresh,
        given: Default::default(),
    };
    let result = nnmnist::driver::train::<Deferring>(spec, &common::never());
    let log = log.borrow().clone();
    (result, log)
}

/// The driver's end of an epoch, for losses read after it: asked once per epoch after its
/// last batch, each loss checked and given its line in batch order, before the test lines; a
/// NaN among them stops the run naming its batch.
#[test]
fn losses_read_after_the_epoch_get_their_lines_in_order() {
    let (result, log) = deferring_run(None);
    assert!(matches!(result.unwrap(), nnmnist::outcome::Outcome::Done));
    // 180 images in batches of 4: 45 batches, lines after batches 0, 20 and 40.
    let epoch = |e: usize| vec!["end of epoch after 45 batches".to_string(), "line 0 0".into(), "line 20 0.2".into(), "line 40 0.4".into(), format!("eval {e}")];
    assert_eq!(log, [epoch(0), epoch(1)].concat());

    let (result, log) = deferring_run(Some(20));
    let msg = format!("{:#}", result.unwrap_err());
    assert!(msg.contains("the training loss became NaN in epoch 1, batch 21 of 45"), "{msg}");
    assert_eq!(log, ["end of epoch after 45 batches", "line 0 0"], "no line or test after the NaN");
}
