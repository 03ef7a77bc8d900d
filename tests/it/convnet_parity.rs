//! Parity of the tch convnet with PyTorch, on fixtures PyTorch wrote.
//!
//! The fixture tests/fixtures/convnet/parity.safetensors is rebuilt by
//!     .venv/bin/python -m scripts.reference.make_convnet_fixtures
//! (its docstring lists every tensor). It holds PyTorch's initial weights for seed 1234, the
//! logits, loss and every parameter's gradient for 16 test images, and 3 SGD steps (lr 0.05,
//! weight decay 0.001) on 3 batches of 64 training images: the step losses and the weights
//! after. Images come from data/ through the Rust loader, by the indices the fixture stores.
//!
//! Tolerances (max abs difference, float32 throughout; both sides run libtorch 2.11's CPU
//! kernels with 1 thread, which each test that computes sets first, so on the machine that
//! wrote the fixture every tensor is expected to be bit-identical, and was when measured):
//! - initial weights: 0 (the same mt19937 draws and the same bound arithmetic; 1e-7 allowed);
//! - logits 1e-5, loss 1e-6, gradients 1e-6, step losses 1e-6, weights after 3 steps 1e-6:
//!   room for another CPU's SIMD path (AVX2 vs AVX-512) summing in a different order (about
//!   1e-7 here), while a real mismatch is far larger: a wrong weight decay alone moves the
//!   conv0 weights by ~5e-5 over 3 steps, a wrong init or layer by ~1e-1.
//!
//! On failure each check prints the tensor name and its largest absolute difference; with
//! `cargo test --release --test it convnet_parity -- --nocapture` every measured difference is printed.
use crate::common::{real as mnist, root};
use nnmnist::convnet::{images_tensor, labels_tensor, Net};
use nnmnist::data::Split;
use nnmnist::convnet::step::{loss, sgd, EagerStep, Step};
use nnmnist::convnet::eval::evaluate;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

const REBUILD: &str = ".venv/bin/python -m scripts.reference.make_convnet_fixtures";
const SEED: u64 = 1234;
const LR: f64 = 0.05;
const WD: f64 = 0.001;

fn fixture() -> HashMap<String, Tensor> {
    let path = root().join("tests/fixtures/convnet/parity.safetensors");
    let tensors = Tensor::read_safetensors(&path)
        .unwrap_or_else(|e| panic!("cannot read {} ({e}); rebuild it with: {REBUILD}", path.display()));
    tensors.into_iter().collect()
}

fn get<'a>(fx: &'a HashMap<String, Tensor>, name: &str) -> &'a Tensor {
    fx.get(name).unwrap_or_else(|| panic!("fixture lacks {name}; rebuild it with: {REBUILD}"))
}

/// The images and labels at `idx` (any shape of i64 indices), as the convnet takes them.
fn batch(split: &Split, idx: &Tensor) -> (Tensor, Tensor) {
    let idx = Vec::<i64>::try_from(idx.flatten(0, -1)).expect("i64 indices");
    let mut images = Vec::with_capacity(idx.len() * 784);
    let mut labels = Vec::with_capacity(idx.len());
    for &i in &idx {
        images.extend_from_slice(split.image(i as usize));
        labels.push(split.labels[i as usize]);
    }
    (images_tensor(&images, Device::Cpu), labels_tensor(&labels, Device::Cpu))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Collects comparisons; panics at the end listing every tensor over its tolerance.
struct Checks {
    what: &'static str,
    failures: Vec<String>,
}

impl Checks {
    fn new(what: &'static str) -> Checks {
        Checks { what, failures: Vec::new() }
    }

    fn compare(&mut self, name: &str, ours: &Tensor, pytorch: &Tensor, tol: f64) {
        let d = max_abs_diff(&ours.detach(), pytorch);
        eprintln!("{}: {name}: max abs diff {d:e} (tolerance {tol:e})", self.what);
        if d.is_nan() || d > tol {
            self.failures.push(format!("{name}: max abs diff {d:e} > tolerance {tol:e}"));
        }
    }

    fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{}: {} tensor(s) differ from PyTorch's:\n  {}\n(if the fixture is stale, rebuild it with: {REBUILD})",
                self.what,
                self.failures.len(),
                self.failures.join("\n  ")
            );
        }
    }
}

/// Overwrites the network's parameters with the fixture's `{prefix}model.*` tensors.
fn set_weights(net: &Net, fx: &HashMap<String, Tensor>, prefix: &str) {
    for (name, mut p) in net.parameters() {
        let src = get(fx, &format!("{prefix}{name}"));
        tch::no_grad(|| p.copy_(src));
    }
}

#[test]
fn labels_of_the_fixture_batches_match_the_rust_loader() {
    let fx = fixture();
    let (_, y) = batch(&mnist().test, get(&fx, "x_idx"));
    assert!(y.equal(get(&fx, "x_labels")), "x_labels differ: data/ is not the data the fixture was made from");
    let (_, y) = batch(&mnist().train, get(&fx, "steps_idx"));
    assert!(y.equal(&get(&fx, "steps_labels").flatten(0, -1)), "steps_labels differ: data/ is not the fixture's data");
}

#[test]
fn initial_weights_equal_pytorch_for_the_same_seed() {
    let fx = fixture();
    let net = Net::new(Device::Cpu, SEED);
    let mut checks = Checks::new("init (seed 1234)");
    for (name, p) in net.parameters() {
        checks.compare(&name, &p, get(&fx, &name), 1e-7);
    }
    checks.finish();
}

#[test]
fn logits_loss_and_gradients_match_pytorch() {
    tch::set_num_threads(1); // the fixture's thread count (see the module comment)
    let fx = fixture();
    let net = Net::new(Device::Cpu, SEED);
    set_weights(&net, &fx, "");
    let (x, y) = batch(&mnist().test, get(&fx, "x_idx"));
    let logits = net.forward(&x);
    let loss = loss(&logits, &y);
    loss.backward();
    let mut checks = Checks::new("forward/backward");
    checks.compare("logits", &logits, get(&fx, "logits"), 1e-5);
    checks.compare("loss", &loss.reshape([1]), get(&fx, "loss"), 1e-6);
    for (name, p) in net.parameters() {
        checks.compare(&format!("grad.{name}"), &p.grad(), get(&fx, &format!("grad.{name}")), 1e-6);
    }
    checks.finish();
}

#[test]
fn three_sgd_steps_match_pytorch() {
    tch::set_num_threads(1); // the fixture's thread count (see the module comment)
    let fx = fixture();
    let net = Net::new(Device::Cpu, SEED);
    set_weights(&net, &fx, "");
    // The training step itself, as `nnmnist convnet` runs it on the CPU.
    let mut step = EagerStep::new(sgd(&net, LR, WD).expect("SGD optimizer"));
    let steps_idx = get(&fx, "steps_idx");
    let k = steps_idx.size()[0];
    let mut losses = Vec::new();
    for i in 0..k {
        let (x, y) = batch(&mnist().train, &steps_idx.get(i));
        losses.push(step.step(&net, &x, &y).expect("a step").reshape([1]));
    }
    let mut checks = Checks::new("3 SGD steps");
    checks.compare("steps_loss", &Tensor::cat(&losses, 0), get(&fx, "steps_loss"), 1e-6);
    for (name, p) in net.parameters() {
        checks.compare(&format!("after.{name}"), &p, get(&fx, &format!("after.{name}")), 1e-6);
    }
    checks.finish();
}

/// The fixture is what its maker writes for the constants these tests use: the seed, rate
/// and decay in its metadata, every tensor the tests read with the model's shapes (16
/// images, 3 steps of 64), and small enough to commit.
#[test]
fn fixture_holds_what_the_tests_read_with_the_settings_they_assume() {
    let path = root().join("tests/fixtures/convnet/parity.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; rebuild with {REBUILD}", path.display()));
    assert!(bytes.len() < 1 << 20, "{}: {} bytes; expected a file under 1 MiB (rebuild: {REBUILD})", path.display(), bytes.len());
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("a safetensors header");
    let meta = header.metadata().clone().expect("the fixture's metadata");
    assert_eq!(meta.get("made_by").map(String::as_str), Some("scripts/reference/make_convnet_fixtures.py"));
    assert!(root().join(&meta["made_by"]).is_file(), "its maker {} is in the repository", meta["made_by"]);
    let number = |k: &str| meta.get(k).unwrap_or_else(|| panic!("metadata lacks {k}")).parse::<f64>().unwrap();
    assert_eq!((number("seed"), number("lr"), number("weight_decay")), (SEED as f64, LR, WD), "the fixture was made with other settings than these tests use");
    let fx = fixture();
    let shape = |name: &str| get(&fx, name).size();
    for (name, p) in Net::new(Device::Cpu, 0).parameters() {
        for key in [name.clone(), format!("grad.{name}"), format!("after.{name}")] {
            assert_eq!(shape(&key), p.size(), "{key}");
        }
    }
    assert_eq!((shape("x_idx"), shape("x_labels"), shape("logits"), shape("loss")), (vec![16], vec![16], vec![16, 10], vec![1]));
    assert_eq!((shape("steps_idx"), shape("steps_labels"), shape("steps_loss")), (vec![3, 64], vec![3, 64], vec![3]));
}

/// `nnmnist eval` on a state_dict that PyTorch trained and saved: the same number of
/// correct test images, and the same avg loss within 1e-5 (the loss is the mean of 157
/// batch means, summed as doubles on both sides; only the float32 sum inside each batch
/// may differ in order). The file and PyTorch's result (in its metadata) are written by
/// make_convnet_fixtures.py; the command-line `eval` prints from the same `evaluate`.
#[test]
fn eval_of_pytorch_trained_weights_matches_pytorch() {
    tch::set_num_threads(1); // the fixture's thread count (see the module comment)
    let path = root().join("tests/fixtures/convnet/trained.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; rebuild with {REBUILD}", path.display()));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
    let meta = header.metadata().clone().expect("PyTorch's result in the metadata");
    let expected_correct: usize = meta["test_correct"].parse().unwrap();
    let expected_loss: f64 = meta["test_loss"].parse().unwrap();

    let net = Net::load(&path, Device::Cpu).expect("PyTorch's state_dict loads");
    let test = &mnist().test;
    let result = evaluate(&net, &images_tensor(&test.images, Device::Cpu), &labels_tensor(&test.labels, Device::Cpu)).unwrap();
    let loss_diff = (result.loss - expected_loss).abs();
    println!("eval: {} correct (PyTorch {expected_correct}), avg loss {} (PyTorch {expected_loss}), |diff| {loss_diff:.3e}", result.correct(), result.loss);
    assert_eq!(result.total(), 10000);
    assert_eq!(result.correct(), expected_correct, "correct test images differ from PyTorch's");
    assert!(loss_diff <= 1e-5, "avg loss {} vs PyTorch {expected_loss}: |diff| {loss_diff:.3e} > 1e-5", result.loss);
}
