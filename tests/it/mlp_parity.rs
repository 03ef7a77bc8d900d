//! The MLP against PyTorch autograd and the numpy nn.py, from the fixtures in
//! tests/fixtures/mlp/, which this command rebuilds:
//!
//!     .venv/bin/python -m scripts.reference.make_mlp_fixtures
//!
//! Network 784,16,12,10, float64, weights N(0, 1/fan_in) (see the script's docstring).
//! Tolerance: every tensor's largest absolute difference at most TOL times
//! max(1, its largest absolute value), TOL = 1e-12 (float64 has 2.2e-16; the two sides add
//! the same terms in different orders). On failure the message names the tensor and
//! reports the largest difference and where it is.
//!
//! The same seed on both sides: the initial weights and the batch orders that
//! scripts/reference/nn_torch.py draws (written at test time by make_mlp_draws.py, through
//! .venv/bin/python or NNMNIST_PYTHON) equal `nnmnist mlp`'s bit for bit; and one epoch of
//! both, run now, ends within float64 rounding of each other.
use crate::common;
use nnmnist::mlp::fast::FastNet;
use nnmnist::mlp::sparse::SparseImages;
use nnmnist::mlp::{epoch_order, one_hot, pixels_f64, Cost, Init, Network, Sgd};
use nnmnist::weights::Weights;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TOL: f64 = 1e-12;
const SIZES: [usize; 4] = [784, 16, 12, 10];

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp").join(name)
}

/// Every tensor of a fixture file as (shape, values in f64); U8 and I64 converted exactly.
fn load(name: &str) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    load_path(&fixture_path(name), "rebuild with .venv/bin/python -m scripts.reference.make_mlp_fixtures")
}

/// Every tensor of the safetensors file `path`, as [`load`]; `hint` says how to make it.
fn load_path(path: &Path, hint: &str) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let name = path.display();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{name}: {e}; {hint}"));
    let st = SafeTensors::deserialize(&bytes).expect("fixture is safetensors");
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let d = v.data();
            let vals: Vec<f64> = match v.dtype() {
                Dtype::F64 => d.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
                Dtype::U8 => d.iter().map(|&b| b as f64).collect(),
                Dtype::I64 => d.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                other => panic!("{name}: {k} has dtype {other:?}"),
            };
            (k, (v.shape().to_vec(), vals))
        })
        .collect()
}

/// Panics with the largest difference if `got` and `want` differ by more than the tolerance.
fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, want {}", got.len(), want.len());
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let (i, diff) = got.iter().zip(want).map(|(g, w)| (g - w).abs()).enumerate().fold((0, 0.0f64), |best, (i, d)| if d > best.1 || d.is_nan() { (i, d) } else { best });
    assert!(
        diff <= TOL * scale,
        "{what}: largest difference {diff:e} at index {i} (got {}, want {}), tolerance {:e}",
        got[i],
        want[i],
        TOL * scale
    );
    eprintln!("{what}: largest difference {diff:.3e} (scale {scale:.3e})");
}

/// The fixture's network, read as nnmnist reads any weights file of the MLP.
fn net_from_fixture() -> Network {
    let path = fixture_path("net.safetensors");
    let weights = nnmnist::weights::Weights::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
    Network::from_weights(&weights, &SIZES).unwrap_or_else(|e| panic!("{e:#}"))
}

fn batch(t: &HashMap<String, (Vec<usize>, Vec<f64>)>) -> (Vec<u8>, Vec<u8>) {
    let x: Vec<u8> = t["x"].1.iter().map(|&v| v as u8).collect();
    let labels: Vec<u8> = t["labels"].1.iter().map(|&v| v as u8).collect();
    (x, labels)
}

fn check_cost(cost: Cost, file: &str) {
    let net = net_from_fixture();
    let (x8, labels) = batch(&load("net.safetensors"));
    let want = load(file);
    let (x, y, m) = (pixels_f64(&x8), one_hot(&labels), labels.len());
    let fwd = net.forward(&x, m);
    for i in 0..net.weights.len() {
        assert_close(&format!("{file} z.{i}"), &fwd.zs[i], &want[&format!("z.{i}")].1);
        assert_close(&format!("{file} a.{i}"), &fwd.activations[i + 1], &want[&format!("a.{i}")].1);
    }
    assert_close(&format!("{file} cost"), &[net.total_cost(&x, &y, m, cost)], &want["cost"].1);
    let (nabla_b, nabla_w) = net.backprop(&x, &y, m, cost);
    for i in 0..net.weights.len() {
        assert_eq!(want[&format!("nabla_w.{i}")].0, vec![SIZES[i + 1], SIZES[i]]);
        assert_close(&format!("{file} nabla_w.{i}"), &nabla_w[i], &want[&format!("nabla_w.{i}")].1);
        assert_close(&format!("{file} nabla_b.{i}"), &nabla_b[i], &want[&format!("nabla_b.{i}")].1);
    }
    // The fast path's forward gives the same output activations.
    let mut fast = FastNet::from_network(&net, m);
    let images = SparseImages::from_pixels(&x8, 784, &labels);
    let out = fast.forward_outputs(&images, &(0..m as u32).collect::<Vec<_>>());
    assert_close(&format!("{file} fast a.out"), &out, &want[&format!("a.{}", net.weights.len() - 1)].1);
}

#[test]
fn quadratic_forward_cost_and_gradients_match_pytorch_autograd() {
    check_cost(Cost::Quadratic, "quadratic.safetensors");
}

#[test]
fn cross_entropy_forward_cost_and_gradients_match_pytorch_autograd() {
    check_cost(Cost::CrossEntropy, "cross_entropy.safetensors");
}

/// K = 5 steps of nn.py's update rule, batches of 8 in the fixture's order, against the
/// numpy nn.py (nn_numpy.py); both the reference Network and the fast path.
#[test]
fn five_sgd_steps_match_numpy_nn_py() {
    let t = load("sgd.safetensors");
    let (x8, labels) = batch(&t);
    let order: Vec<u32> = t["order"].1.iter().map(|&v| v as u32).collect();
    let (x, y) = (pixels_f64(&x8), one_hot(&labels));
    let images = SparseImages::from_pixels(&x8, 784, &labels);
    for (run, cost, eta, lambda) in [("quadratic", Cost::Quadratic, 3.0, 0.0), ("cross_entropy_l2", Cost::CrossEntropy, 0.5, 5.0)] {
        let mut net = net_from_fixture();
        let mut fast = FastNet::from_network(&net, 8);
        for k in 0..5 {
            let idx = &order[8 * k..8 * (k + 1)];
            let xb: Vec<f64> = idx.iter().flat_map(|&i| x[i as usize * 784..(i as usize + 1) * 784].to_vec()).collect();
            let yb: Vec<f64> = idx.iter().flat_map(|&i| y[i as usize * 10..(i as usize + 1) * 10].to_vec()).collect();
            net.update_mini_batch(&xb, &yb, 8, &Sgd { eta, cost, lambda, n: 50_000 });
            fast.train_batch(&images, idx, &Sgd { eta, cost, lambda, n: 50_000 });
        }
        let fast_net = fast.to_network();
        assert_eq!(fast_net, net, "{run}: the fast path must equal the reference Network bit for bit");
        for i in 0..net.weights.len() {
            assert_close(&format!("{run} {}.weight", 2 * i), &net.weights[i], &t[&format!("{run}.{}.weight", 2 * i)].1);
            assert_close(&format!("{run} {}.bias", 2 * i), &net.biases[i], &t[&format!("{run}.{}.bias", 2 * i)].1);
        }
    }
}

// ---------------------------------------------------------------- the same seed, the same run

/// Runs `.venv/bin/python ARGS` (the repository's scripts), panicking with its stderr if it fails.
fn python(args: &[&str]) {
    let py = common::python();
    let out = common::command(&py).args(args).current_dir(common::root()).output().unwrap_or_else(|e| panic!("{}: {e} (scripts/setup makes .venv)", py.display()));
    assert!(out.status.success(), "{} {args:?} failed:\n{}", py.display(), String::from_utf8_lossy(&out.stderr));
}

/// `nnmnist mlp --seed S [--init I]` starts from nn_torch.py's initial weights for the same
/// flags and trains epoch e in nn_torch.py's order, bit for bit: for seeds 0, 3, 11, both
/// inits, one and two hidden layers (the order of the draws, every bias before any weight,
/// matters there), and the orders of two epochs over 1,000 images.
#[test]
fn initial_weights_and_batch_orders_equal_nn_torch_py_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("draws.safetensors");
    let (seeds, n) = ([0u64, 3, 11], 1000);
    python(&["-m", "scripts.reference.make_mlp_draws", "--out", common::s(&out), "--seeds", "0,3,11", "--sizes", "784,30,10", "--sizes", "784,16,12,10", "--epochs", "2", "--n", "1000"]);
    let t = load_path(&out, "written by scripts/reference/make_mlp_draws.py");
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for sizes in [&[784usize, 30, 10][..], &[784, 16, 12, 10]] {
        let tag = sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join("-");
        for seed in seeds {
            for (init, name) in [(Init::Normal, "normal"), (Init::Scaled, "scaled")] {
                let net = Network::seeded(sizes, init, seed);
                for i in 0..sizes.len() - 1 {
                    let (w, b) = (&t[&format!("{tag}.{seed}.{name}.{}.weight", 2 * i)], &t[&format!("{tag}.{seed}.{name}.{}.bias", 2 * i)]);
                    assert_eq!(w.0, [sizes[i + 1], sizes[i]], "{tag} layer {i}: weight shape");
                    assert!(bits(&net.weights[i]) == bits(&w.1), "{tag} seed {seed} {name}: layer {i}'s weights differ from nn_torch.py's");
                    assert!(bits(&net.biases[i]) == bits(&b.1), "{tag} seed {seed} {name}: layer {i}'s biases differ from nn_torch.py's");
                }
            }
        }
    }
    for seed in seeds {
        for epoch in 0..2 {
            let want: Vec<u32> = t[&format!("order.{seed}.{epoch}")].1.iter().map(|&v| v as u32).collect();
            assert_eq!(epoch_order(n, seed, epoch, true), want, "seed {seed} epoch {epoch}: the batch order differs from nn_torch.py's");
        }
    }
}

/// The largest difference between two weights files' tensors, relative to max(1, the
/// largest magnitude of each tensor); both hold the same tensors, with the same number of
/// values each.
fn weights_difference(a: &Path, b: &Path) -> f64 {
    let read = |p: &Path| -> std::collections::BTreeMap<String, Vec<f64>> { Weights::load(p).unwrap().read_all().unwrap().into_iter().map(|e| (e.name.clone(), e.to_f64())).collect() };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .map(|(name, x)| {
            let y = &b[name];
            assert!(!x.is_empty() && x.len() == y.len(), "{name}: {} values against {}", x.len(), y.len());
            let scale = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            x.iter().zip(y).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max) / scale
        })
        .fold(0.0, f64::max)
}

/// One epoch on the first 5,000 training images from the same seed, `nnmnist mlp` against
/// `nn_torch.py --threads 1`, both run now: the same correct count on the 10,000 test images,
/// the test cost within 1e-9 relative and every weight within TOL (relative to max(1, the
/// tensor's largest magnitude)). Both sides add the same terms in different orders, so they
/// agree to rounding (measured: 2e-15 to 5e-15), not bit for bit. The rates are ones
/// where training is stable: at --eta 3 with the cross-entropy cost a rounding difference
/// grows tenfold every ten batches, and PyTorch with 1 and 2 threads already disagrees after
/// 5,000 images (README, "Parity").
#[test]
fn one_epoch_from_the_same_seed_matches_nn_torch_py() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::repo_data();
    let configs: [&[&str]; 2] = [&["--seed", "3"], &["--seed", "11", "--cost", "cross-entropy", "--init", "scaled", "--lambda", "5", "--eta", "0.5"]];
    for (k, flags) in configs.into_iter().enumerate() {
        let side = |name: &str| (dir.path().join(format!("{name}{k}.jsonl")), dir.path().join(format!("{name}{k}.safetensors")));
        let ((rm, rw), (pm, pw)) = (side("rust"), side("torch"));
        let common_args = ["--epochs", "1", "--train-size", "5000", "--data-dir", common::s(&data)];
        let mut py = vec!["-m", "scripts.reference.nn_torch", "--threads", "1", "--metrics", common::s(&pm), "--save", common::s(&pw)];
        py.extend(common_args.iter().chain(flags));
        python(&py);
        let mut rust = vec!["mlp", "--metrics", common::s(&rm), "--save", common::s(&rw)];
        rust.extend(common_args.iter().chain(flags));
        common::run_cli(&rust, &common::never()).unwrap();
        let (r, p) = (&nnmnist::metrics::read(&rm).unwrap()[0], &nnmnist::metrics::read(&pm).unwrap()[0]);
        assert_eq!((r.test_correct, r.test_total), (p.test_correct, p.test_total), "{flags:?}: correct counts");
        let cost = (r.test_loss - p.test_loss).abs() / p.test_loss.abs();
        assert!(cost <= 1e-9, "{flags:?}: test cost {} against nn_torch.py's {} ({cost:e} relative)", r.test_loss, p.test_loss);
        let w = weights_difference(&rw, &pw);
        assert!(w <= TOL, "{flags:?}: the weights after the epoch differ from nn_torch.py's by {w:e}");
        eprintln!("{flags:?}: {} / {} both; test cost {cost:.1e} relative; weights {w:.1e}", r.test_correct, r.test_total);
    }
}
