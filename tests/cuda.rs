//! The convnet on CUDA. On a machine without a usable GPU every test here prints why it
//! skips (the driver diagnosis of `nnmnist::nvidia` where a driver is present) and checks
//! nothing; on a GPU machine (see README, "CUDA tests with binaries built elsewhere") they
//! run:
//! - the CUDA-graph step against the eager step, from the same weights on the same batches;
//! - CUDA against the CPU fixture PyTorch wrote (tests/fixtures/convnet/parity.safetensors):
//!   logits, loss and every gradient;
//! - `--deterministic`: two CUDA runs end bit-identical, and a PyTorch lockstep
//!   (scripts/compare --layers --device cuda --deterministic) is reported.
//!
//! Tolerances, and why: cuDNN may run convolutions in TF32 (PyTorch's and libtorch's default
//! for cuDNN: a 10-bit mantissa, about 1e-3 relative) and its default backward algorithms add
//! with atomics in no fixed order, so CUDA is compared with the CPU at 2e-2 of each tensor's
//! largest value (a wrong layer, init or step is off by far more), and graph with eager at
//! 1e-4 after 20 steps (each step's atomics move the weights by ~1e-7).
mod common;
use common::{never, run_cli};
use nnmnist::convnet::cuda_graph::graph_step_or_eager;
use nnmnist::convnet::step::{batch_tensors, epoch_order, loss, sgd, EagerStep, Step};
use nnmnist::convnet::{images_tensor, labels_tensor, Net};
use nnmnist::weights::Weights;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// CUDA device 0, or None after printing why the test skips.
fn gpu(test: &str) -> Option<Device> {
    if tch::Cuda::is_available() {
        return Some(Device::Cuda(0));
    }
    let why = nnmnist::nvidia::diagnose().unwrap_or_else(|| "libtorch sees no CUDA device and no NVIDIA driver is loaded".into());
    // Straight to the stderr handle, which the test harness does not capture: a skip shows
    // in every `cargo test` log, not only with --nocapture.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped {test}: no usable CUDA here: {why}");
    None
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_device(Device::Cpu).to_kind(Kind::Double) - b.to_device(Device::Cpu).to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
fn graph_step_matches_eager_step() {
    let Some(cuda) = gpu("graph_step_matches_eager_step") else { return };
    let train = common::real().train.take(20 * 64);
    let (x, y) = (images_tensor(&train.images, cuda), labels_tensor(&train.labels, cuda));
    let order = epoch_order(train.len(), 3, 0, true).to_device(cuda);
    let graph_net = Net::new(cuda, 3);
    let mut graph = graph_step_or_eager(sgd(&graph_net, 0.05, 0.001).unwrap(), &graph_net, 64);
    let eager_net = Net::new(cuda, 3);
    let mut eager = EagerStep { opt: sgd(&eager_net, 0.05, 0.001).unwrap() };
    let mut worst_loss = 0f64;
    for batch in 0..20 {
        let (bx, by) = batch_tensors(&order, &x, &y, batch, 64);
        let l1 = graph.step(&graph_net, &bx, &by).unwrap().double_value(&[]);
        let l2 = eager.step(&eager_net, &bx, &by).unwrap().double_value(&[]);
        worst_loss = worst_loss.max((l1 - l2).abs());
    }
    let worst = graph_net.parameters().iter().zip(eager_net.parameters()).map(|((_, a), (_, b))| max_abs(a, &b)).fold(0.0, f64::max);
    eprintln!("graph vs eager over 20 steps: loss |diff| <= {worst_loss:e}, weights |diff| <= {worst:e}");
    assert!(worst_loss <= 1e-4, "losses differ by {worst_loss:e}");
    assert!(worst <= 1e-4, "weights differ by {worst:e}");
}

#[test]
fn cuda_forward_and_gradients_match_the_cpu_fixture() {
    let Some(cuda) = gpu("cuda_forward_and_gradients_match_the_cpu_fixture") else { return };
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
    let logits = net.forward_t(&images_tensor(&images, cuda), true);
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

#[test]
fn deterministic_cuda_runs_repeat_bit_for_bit() {
    let Some(_) = gpu("deterministic_cuda_runs_repeat_bit_for_bit") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = common::repo_data();
    let run = |name: &str| {
        let save = tmp.path().join(name);
        let args = ["convnet", "--device", "cuda", "--deterministic", "--epochs", "1", "--train-size", "6400", "--test-size", "1000", "--seed", "7"];
        run_cli(&[&args[..], &["--data-dir", common::s(&data), "--save", common::s(&save)]].concat(), &never()).unwrap();
        Weights::load(&save).unwrap().entries
    };
    let (a, b) = (run("a.safetensors"), run("b.safetensors"));
    assert!(a == b, "two --deterministic CUDA runs from the same seed end with different weights");
    // PyTorch's side of the same step, deterministic on CUDA too: reported, the goal being 0.
    let python = common::python();
    if python.exists() || std::env::var_os("NNMNIST_PYTHON").is_some() {
        let out = std::process::Command::new(python)
            .args(["scripts/compare.py", "--layers", "--model", "convnet", "--device", "cuda", "--deterministic", "--bin", common::s(&common::bin())])
            .args(["--out", common::s(&tmp.path().join("layers"))])
            .current_dir(common::root())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let last = stdout.lines().last().unwrap_or("no report");
        eprintln!("PyTorch lockstep on CUDA, deterministic: {last}\n{stdout}");
        assert!(out.status.code() == Some(0) || out.status.code() == Some(1), "compare --layers failed to run: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        eprintln!("PyTorch lockstep not run: {} is missing (scripts/setup)", python.display());
    }
}
