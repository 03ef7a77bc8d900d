//! The MLP against PyTorch autograd and the numpy nn.py, from the fixtures in
//! tests/fixtures/mlp/, which this command rebuilds:
//!
//!     .venv/bin/python scripts/reference/make_mlp_fixtures.py
//!
//! Network 784,16,12,10, float64, weights N(0, 1/fan_in) (see the script's docstring).
//! Tolerance: every tensor's largest absolute difference at most TOL times
//! max(1, its largest absolute value), TOL = 1e-12 (float64 has 2.2e-16; the two sides add
//! the same terms in different orders). On failure the message names the tensor and
//! reports the largest difference and where it is.
use nnmnist::mlp::fast::FastNet;
use nnmnist::mlp::sparse::SparseImages;
use nnmnist::mlp::{one_hot, pixels_f64, Cost, Network};
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::PathBuf;

const TOL: f64 = 1e-12;
const SIZES: [usize; 4] = [784, 16, 12, 10];

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp").join(name)
}

/// Every tensor of a fixture file as (shape, values in f64); U8 and I64 converted exactly.
fn load(name: &str) -> HashMap<String, (Vec<usize>, Vec<f64>)> {
    let path = fixture_path(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; rebuild with .venv/bin/python scripts/reference/make_mlp_fixtures.py", path.display())
    });
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
            net.update_mini_batch(&xb, &yb, 8, eta, cost, lambda, 50_000);
            fast.train_batch(&images, idx, eta, cost, lambda, 50_000);
        }
        let fast_net = fast.to_network();
        assert_eq!(fast_net, net, "{run}: the fast path must equal the reference Network bit for bit");
        for i in 0..net.weights.len() {
            assert_close(&format!("{run} {}.weight", 2 * i), &net.weights[i], &t[&format!("{run}.{}.weight", 2 * i)].1);
            assert_close(&format!("{run} {}.bias", 2 * i), &net.biases[i], &t[&format!("{run}.{}.bias", 2 * i)].1);
        }
    }
}
