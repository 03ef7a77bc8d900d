//! The convnet on CUDA. Every test here needs a CUDA GPU and is ignored by default; on a GPU
//! machine run them with `--include-ignored` (scripts/device_check does, with
//! NNMNIST_REQUIRE_CUDA=1; README, "CUDA tests with binaries built elsewhere"). Asked to run
//! where libtorch sees no GPU, a test fails and says why (the driver diagnosis of
//! `nnmnist::nvidia` where a driver is present): a test that could not run has not passed.
//! - the CUDA-graph step (captured directly: a failed capture fails the test) against the
//!   eager step, from the same weights on the same batches, loss sums included;
//! - CUDA against the CPU fixture PyTorch wrote (tests/fixtures/convnet/parity.safetensors):
//!   logits, loss and every gradient;
//! - the console of a CUDA run, whose loss lines are printed after each epoch;
//! - `--deterministic`: two CUDA runs end bit-identical, and PyTorch's side of one step
//!   (scripts/compare --layers --device cuda --deterministic) is bit-identical to ours.
//!
//! The tests run one at a time (a lock): a capture runs in CUDA's global capture mode, where
//! another thread's synchronisation would break it, and `--deterministic` changes
//! process-wide settings, which the test puts back.
//!
//! Tolerances, and why: cuDNN may run convolutions in TF32 (PyTorch's and libtorch's default
//! for cuDNN: a 10-bit mantissa, about 1e-3 relative) and its default backward algorithms add
//! with atomics in no fixed order, so CUDA is compared with the CPU at 2e-2 of each tensor's
//! largest value (a wrong layer, init or step is off by far more), and graph with eager at
//! 1e-4 after 20 steps (each step's atomics move the weights by ~1e-7).
mod common;
use common::{never, run_cli};
use nnmnist::convnet::cuda_graph::GraphStep;
use nnmnist::convnet::determinism;
use nnmnist::convnet::step::{batch_tensors, epoch_order, loss, sgd, EagerStep, Step};
use nnmnist::convnet::{images_tensor, labels_tensor, Net};
use nnmnist::weights::Weights;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// Held by each test while it uses the GPU.
static GPU: Mutex<()> = Mutex::new(());

/// The lock and CUDA device 0; panics, saying why, where there is no usable GPU.
fn gpu() -> (MutexGuard<'static, ()>, Device) {
    let lock = GPU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !tch::Cuda::is_available() {
        let why = nnmnist::nvidia::diagnose().unwrap_or_else(|| "libtorch sees no CUDA device and no NVIDIA driver is loaded".into());
        let required = if std::env::var_os("NNMNIST_REQUIRE_CUDA").is_some_and(|v| v == "1") { " (NNMNIST_REQUIRE_CUDA=1)" } else { "" };
        panic!("this test needs a CUDA GPU{required} and there is none usable here: {why}");
    }
    (lock, Device::Cuda(0))
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu).to_kind(Kind::Double) - b.to_device(Device::Cpu).to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn graph_step_matches_eager_step() {
    let (_lock, cuda) = gpu();
    let train = common::real().train.take(20 * 64);
    let (x, y) = (images_tensor(&train.images, cuda), labels_tensor(&train.labels, cuda));
    let order = epoch_order(train.len(), 3, 0, true).to_device(cuda);
    let graph_net = Net::new(cuda, 3);
    let graph_sum = Tensor::zeros([], (Kind::Float, cuda));
    let mut graph = GraphStep::capture(sgd(&graph_net, 0.05, 0.001).unwrap(), &graph_net, 64, &graph_sum)
        .unwrap_or_else(|(why, _)| panic!("CUDA-graph capture failed: {why:#}"));
    let eager_net = Net::new(cuda, 3);
    let eager_sum = Tensor::zeros([], (Kind::Float, cuda));
    let mut eager = EagerStep::summing(sgd(&eager_net, 0.05, 0.001).unwrap(), &eager_sum);
    let mut worst_loss = 0f64;
    for batch in 0..20 {
        let (bx, by) = batch_tensors(&order, &x, &y, batch, 64);
        let l1 = graph.step(&graph_net, &bx, &by).unwrap().double_value(&[]);
        let l2 = eager.step(&eager_net, &bx, &by).unwrap().double_value(&[]);
        worst_loss = worst_loss.max((l1 - l2).abs());
    }
    let worst = graph_net.parameters().iter().zip(eager_net.parameters()).map(|((_, a), (_, b))| max_abs(a, &b)).fold(0.0, f64::max);
    let (s1, s2) = (graph_sum.double_value(&[]), eager_sum.double_value(&[]));
    eprintln!("graph vs eager over 20 steps: loss |diff| <= {worst_loss:e}, weights |diff| <= {worst:e}, loss sums {s1} vs {s2}");
    assert!(worst_loss <= 1e-4, "losses differ by {worst_loss:e}");
    assert!(worst <= 1e-4, "weights differ by {worst:e}");
    assert!(s2 > 0.0 && (s1 - s2).abs() <= 20.0 * 1e-4, "the graph's loss sum {s1} is not the eager sum {s2}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_forward_and_gradients_match_the_cpu_fixture() {
    let (_lock, cuda) = gpu();
    let path = common::root().join("tests/fixtures/convnet/parity.safetensors");
    let fx: HashMap<String, Tensor> = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
    let net = Net::new(cuda, 0);
    for (name, mut p) in net.parameters() {
        tch::no_grad(|| p.copy_(&fx[&name].to_device(cuda)));
    }
    let idx = Vec::<i64>::try_from(&fx["x_idx"]).unwrap();
    let test = &common::real().test;
    let images: Vec<u8> = idx.iter().flat_map(|&i| test.image(i as usize).to_vec()).collect();
    let labels: Vec<u8> = idx.iter().map(|&i| test.labels[i as usize]).collect();
    let logits = net.forward(&images_tensor(&images, cuda));
    let l = loss(&logits, &labels_tensor(&labels, cuda));
    l.backward();
    let mut failures = Vec::new();
    let mut check = |name: &str, ours: &Tensor, want: &Tensor| {
        let scale = want.abs().max().double_value(&[]).max(1e-12);
        let d = max_abs(&ours.detach(), want);
        eprintln!("CUDA vs CPU fixture: {name}: max |diff| {d:e} ({:.1e} of its largest value)", d / scale);
        if d > 2e-2 * scale || d.is_nan() {
            failures.push(format!("{name}: max |diff| {d:e} > 2e-2 x {scale:e}"));
        }
    };
    check("logits", &logits, &fx["logits"]);
    check("loss", &l.reshape([1]), &fx["loss"]);
    for (name, p) in net.parameters() {
        check(&format!("grad.{name}"), &p.grad(), &fx[&format!("grad.{name}")]);
    }
    assert!(failures.is_empty(), "CUDA differs from PyTorch's CPU fixture:\n  {}", failures.join("\n  "));
}

/// The console of a CUDA run, graph and eager: nn_convnet.py's lines, the loss lines of each
/// epoch (printed after it) in order before its test lines, and the two runs' losses close.
#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_console_has_every_loss_line_in_order() {
    let (_lock, _) = gpu();
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(common::bin())
            .args(["convnet", "--device", "cuda", "--epochs", "2", "--train-size", "2560", "--test-size", "640", "--seed", "5", "--data-dir"])
            .arg(common::repo_data())
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "nnmnist {extra:?} failed: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let (graph, graph_err) = run(&[]);
    assert!(!graph_err.contains("capture failed"), "the graph was not captured: {graph_err}");
    let (eager, _) = run(&["--no-cuda-graph"]);
    let losses = |stdout: &str| -> Vec<f64> {
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.first(), Some(&"Using cuda device"), "{stdout}");
        let mut want = Vec::new();
        for epoch in 1..=2 {
            want.push(format!("Epoch {epoch}"));
            want.push("-".repeat(31));
            // 2560 images in batches of 64: 40 batches, lines after batches 1 and 21.
            want.push(format!("loss: [{:>5}/ 2560]", 64));
            want.push(format!("loss: [{:>5}/ 2560]", 21 * 64));
            want.push("Test Error: ".into());
        }
        let got: Vec<String> = lines
            .iter()
            .filter(|l| l.starts_with("Epoch") || l.starts_with("---") || l.starts_with("loss:") || l.starts_with("Test Error"))
            .map(|l| if l.starts_with("loss:") { format!("loss: {}", &l[l.find('[').unwrap()..]) } else { l.to_string() })
            .collect();
        assert_eq!(got, want, "console lines out of order:\n{stdout}");
        assert_eq!(lines.last(), Some(&"Done!"), "{stdout}");
        lines.iter().filter(|l| l.starts_with("loss:")).map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap()).collect()
    };
    let (g, e) = (losses(&graph), losses(&eager));
    for (a, b) in g.iter().zip(&e) {
        assert!((a - b).abs() <= 1e-3, "graph loss {a} vs eager loss {b}:\n{graph}\n{eager}");
    }
}

/// Puts back what `--deterministic` changes in the process: libtorch's three settings and
/// CUBLAS_WORKSPACE_CONFIG.
struct RestoreDeterminism {
    settings: determinism::Settings,
    cublas: Option<std::ffi::OsString>,
}

impl Drop for RestoreDeterminism {
    fn drop(&mut self) {
        let back = determinism::apply(self.settings);
        match &self.cublas {
            Some(v) => std::env::set_var("CUBLAS_WORKSPACE_CONFIG", v),
            None => std::env::remove_var("CUBLAS_WORKSPACE_CONFIG"),
        }
        if !std::thread::panicking() {
            assert_eq!(back.ok(), Some(self.settings), "libtorch's determinism settings were not put back");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn deterministic_cuda_runs_repeat_bit_for_bit() {
    let (_lock, _) = gpu();
    let _restore = RestoreDeterminism { settings: determinism::current().unwrap(), cublas: std::env::var_os("CUBLAS_WORKSPACE_CONFIG") };
    let tmp = tempfile::tempdir().unwrap();
    let data = common::repo_data();
    let run = |name: &str| {
        let save = tmp.path().join(name);
        let args = ["convnet", "--device", "cuda", "--deterministic", "--epochs", "1", "--train-size", "6400", "--test-size", "1000", "--seed", "7"];
        run_cli(&[&args[..], &["--data-dir", common::s(&data), "--save", common::s(&save)]].concat(), &never()).unwrap();
        Weights::load(&save).unwrap().entries
    };
    let (a, b) = (run("a.safetensors"), run("b.safetensors"));
    assert_eq!(determinism::current().unwrap(), determinism::DETERMINISTIC, "--deterministic did not set libtorch's switches");
    assert!(a == b, "two --deterministic CUDA runs from the same seed end with different weights");

    // PyTorch's side of one step, deterministic on CUDA too: every tensor bit-identical.
    let python = common::python();
    assert!(python.exists(), "{} is missing (scripts/setup, or NNMNIST_PYTHON): PyTorch's side cannot run", python.display());
    let layers = tmp.path().join("layers");
    let out = std::process::Command::new(&python)
        .args(["-m", "scripts.compare", "--layers", "--model", "convnet", "--device", "cuda", "--deterministic", "--bin", common::s(&common::bin())])
        .args(["--out", common::s(&layers)])
        .current_dir(common::root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("PyTorch step on CUDA, deterministic:\n{stdout}");
    assert_eq!(out.status.code(), Some(0), "compare --layers: exit {:?}\n{stdout}\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    let trace = |side: &str| -> HashMap<String, Tensor> {
        let path = std::fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("_trace.safetensors") && p.file_name().unwrap().to_string_lossy().contains(side))
            .unwrap_or_else(|| panic!("no {side} trace in {}", layers.display()));
        Tensor::read_safetensors(&path).unwrap().into_iter().collect()
    };
    let (ours, theirs) = (trace("_nnmnist_"), trace("_pytorch_"));
    let mut keys: Vec<&String> = theirs.keys().collect();
    keys.sort();
    assert!(!keys.is_empty(), "PyTorch's trace is empty");
    let differ: Vec<String> = keys
        .iter()
        .filter(|k| ours.get(k.as_str()).is_none_or(|t| t.size() != theirs[k.as_str()].size() || !t.equal(&theirs[k.as_str()])))
        .map(|k| match ours.get(k.as_str()) {
            None => format!("{k} (not in ours)"),
            Some(t) if t.size() != theirs[k.as_str()].size() => format!("{k} (shape {:?})", t.size()),
            Some(t) => format!("{k} (max |diff| {:e})", max_abs(t, &theirs[k.as_str()])),
        })
        .collect();
    assert!(differ.is_empty(), "deterministic CUDA, Rust vs PyTorch, not bit-identical: {}", differ.join(", "));
}
