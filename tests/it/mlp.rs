//! The from-scratch MLP: gradients against finite differences, the fast path against the
//! reference, learning, bad input, checkpoints and resume. (Parity with PyTorch and the
//! numpy nn.py: tests/it/mlp_parity.rs.)
#![allow(clippy::needless_range_loop)]
use crate::common::{never, real as mnist, repo_data as data_dir, run_cli, stop_after};
use nnmnist::checkpoint;
use nnmnist::outcome::Interrupted;
use nnmnist::mlp::fast::{FastNet, Simd};
use nnmnist::mlp::sparse::SparseImages;
use nnmnist::mlp::{self, epoch_order, network_of, one_hot, pixels_f64, sigmoid, Cost, Init, Network, Sgd};
use nnmnist::weights::{Entry, Weights};
use rand::{Rng, SeedableRng};
use std::path::Path;

/// `nnmnist mlp --data-dir <repo>/data <extra...>`, in process, stopped by `stop`.
fn mlp_until(extra: &[&str], stop: &dyn nnmnist::signal::StopCondition) -> anyhow::Result<()> {
    let dir = data_dir();
    let mut v = vec!["mlp", "--data-dir", dir.to_str().unwrap()];
    v.extend(extra);
    run_cli(&v, stop)
}

fn mlp_run(extra: &[&str]) -> anyhow::Result<()> {
    mlp_until(extra, &never())
}

fn err_of(extra: &[&str]) -> String {
    format!("{:#}", mlp_run(extra).expect_err("must fail"))
}

fn load_network(path: &Path) -> anyhow::Result<Network> {
    network_of(&Weights::load(path)?)
}

// ---------------------------------------------------------------- gradients

/// Central finite differences for every weight and bias against backprop.
/// Tolerance: |numeric - backprop| <= 1e-6 |backprop| + 1e-8 (h = 1e-5: truncation ~1e-10,
/// rounding ~1e-11 for costs of order 1).
fn gradient_check(sizes: &[usize], x: &[f64], labels: &[usize], cost: Cost) {
    let m = labels.len();
    let k = *sizes.last().unwrap();
    let mut y = vec![0.0; m * k];
    for (j, &l) in labels.iter().enumerate() {
        y[j * k + l] = 1.0;
    }
    let net = Network::seeded(sizes, Init::Normal, 7);
    let (nabla_b, nabla_w) = net.backprop(x, &y, m, cost);
    let h = 1e-5;
    // worst = the largest |numeric - backprop| / tolerance; it must stay <= 1.
    let (mut worst, mut worst_at) = (-1.0f64, String::new());
    let mut checked = 0;
    let mut check = |numeric: f64, analytic: f64, name: String| {
        let ratio = (numeric - analytic).abs() / (1e-6 * analytic.abs() + 1e-8);
        if ratio > worst || ratio.is_nan() {
            worst = ratio;
            worst_at = format!("{name}: numeric {numeric:e}, backprop {analytic:e}, |difference| / tolerance {ratio:.3}");
        }
        checked += 1;
    };
    for l in 0..net.weights.len() {
        for i in 0..net.weights[l].len() {
            let mut p = net.clone();
            p.weights[l][i] += h;
            let up = p.total_cost(x, &y, m, cost);
            p.weights[l][i] -= 2.0 * h;
            let down = p.total_cost(x, &y, m, cost);
            check((up - down) / (2.0 * h), nabla_w[l][i], format!("weights[{l}][{i}]"));
        }
        for i in 0..net.biases[l].len() {
            let mut p = net.clone();
            p.biases[l][i] += h;
            let up = p.total_cost(x, &y, m, cost);
            p.biases[l][i] -= 2.0 * h;
            let down = p.total_cost(x, &y, m, cost);
            check((up - down) / (2.0 * h), nabla_b[l][i], format!("biases[{l}][{i}]"));
        }
    }
    let total: usize = net.weights.iter().chain(&net.biases).map(|v| v.len()).sum();
    assert_eq!(checked, total);
    assert!(worst <= 1.0, "{cost:?} {sizes:?}: finite differences disagree beyond tolerance; worst at {worst_at}");
    eprintln!("{cost:?} {sizes:?}: {checked} parameters checked; worst {worst_at}");
}

#[test]
fn gradients_match_finite_differences_small_network() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f64> = (0..4 * 6).map(|_| rng.gen_range(0.0..1.0)).collect();
    for cost in [Cost::Quadratic, Cost::CrossEntropy] {
        gradient_check(&[6, 5, 4, 3], &x, &[0, 2, 1, 2], cost);
    }
}

#[test]
fn gradients_match_finite_differences_on_mnist_images() {
    let train = &mnist().train;
    let x = pixels_f64(&train.images[..2 * 784]);
    let labels: Vec<usize> = train.labels[..2].iter().map(|&l| l as usize).collect();
    for cost in [Cost::Quadratic, Cost::CrossEntropy] {
        gradient_check(&[784, 5, 4, 10], &x, &labels, cost);
    }
}

// ---------------------------------------------------------------- math pieces

#[test]
fn exp_is_within_one_ulp_of_libm_on_the_sigmoid_range() {
    let n = 400_000;
    let mut worst = 0i64;
    for i in 0..=n {
        let x = -100.0 + 200.0 * i as f64 / n as f64;
        let d = (mlp::exp::exp(x).to_bits() as i64 - x.exp().to_bits() as i64).abs();
        assert!(d <= 1, "exp({x}) = {} differs from libm's {} by {d} ulp", mlp::exp::exp(x), x.exp());
        worst = worst.max(d);
    }
    assert_eq!(mlp::exp::exp(0.0), 1.0);
    assert!(mlp::exp::exp(f64::NAN).is_nan());
}

#[test]
fn sigmoid_clips_z_and_cross_entropy_stays_finite() {
    assert_eq!(sigmoid(1000.0), sigmoid(100.0));
    assert_eq!(sigmoid(-1000.0), sigmoid(-100.0));
    assert!(sigmoid(-1000.0) > 0.0);
    assert_eq!(sigmoid(0.0), 0.5);
    // Saturated output (a rounds to 1.0 for a wrong class): Nielsen's form is infinite,
    // ours is the exact value, about z.
    let z = [50.0, -3.0];
    let a: Vec<f64> = z.iter().map(|&z| sigmoid(z)).collect();
    let c = Cost::CrossEntropy.cost(&z, &a, &[0.0, 1.0]);
    assert!((c - (50.0 + (1.0 + 3f64.exp()).ln())).abs() < 1e-12, "{c}");
    // Moderate z: equal to -y ln a - (1-y) ln(1-a).
    let z = [0.3, -1.2, 2.0];
    let a: Vec<f64> = z.iter().map(|&z| sigmoid(z)).collect();
    let y = [0.0, 1.0, 0.0];
    let nielsen: f64 = a.iter().zip(&y).map(|(a, y)| -y * a.ln() - (1.0 - y) * (1.0 - a).ln()).sum();
    assert!((Cost::CrossEntropy.cost(&z, &a, &y) - nielsen).abs() < 1e-14);
}

// ---------------------------------------------------------------- fast == reference

/// Several steps of the fast path with the `simd` kernels equal Network::update_mini_batch
/// bit for bit: batches by pixel (<= 64 images) and by image (> 64), both costs, with and
/// without L2, one and two hidden layers (widths 30 and 40 exercise the 32- and 8-lane
/// blocks). Fails where the CPU lacks the kernel set.
fn fast_path_equals_reference_bit_for_bit(simd: Simd) {
    let train = &mnist().train;
    let n = 600;
    let images = SparseImages::from_split(train, n);
    let x = pixels_f64(&train.images[..n * 784]);
    let y = one_hot(&train.labels[..n]);
    let configs: [(&[usize], usize, Cost, f64, f64); 4] = [
        (&[784, 30, 10], 10, Cost::Quadratic, 3.0, 0.0),
        (&[784, 40, 20, 10], 10, Cost::CrossEntropy, 0.5, 5.0),
        (&[784, 30, 10], 100, Cost::Quadratic, 3.0, 0.0),
        (&[784, 40, 20, 10], 70, Cost::CrossEntropy, 0.5, 5.0),
    ];
    for (sizes, m, cost, eta, lambda) in configs {
        let start = Network::seeded(sizes, Init::Normal, 11);
        let mut reference = start.clone();
        let order = epoch_order(n, 5, 0, true);
        let batches: Vec<&[u32]> = order.chunks(m).take(6).collect();
        let mut ref_costs = Vec::new();
        for b in &batches {
            let xb: Vec<f64> = b.iter().flat_map(|&i| x[i as usize * 784..(i as usize + 1) * 784].to_vec()).collect();
            let yb: Vec<f64> = b.iter().flat_map(|&i| y[i as usize * 10..(i as usize + 1) * 10].to_vec()).collect();
            ref_costs.push(reference.update_mini_batch(&xb, &yb, b.len(), &Sgd { eta, cost, lambda, n }));
        }
        let mut fast = FastNet::from_network(&start, m);
        assert!(fast.set_simd(simd), "this CPU lacks the {simd} kernels");
        let costs: Vec<f64> = batches.iter().map(|b| fast.train_batch(&images, b, &Sgd { eta, cost, lambda, n })).collect();
        assert_eq!(costs, ref_costs, "{sizes:?} m={m} {cost:?} {simd}: batch costs");
        assert!(fast.to_network() == reference, "{sizes:?} m={m} {cost:?} {simd}: weights differ from the reference");
        // Evaluation agrees with nn.py's evaluate.
        let ev = fast.evaluate(&images, cost);
        assert_eq!(ev.correct(), reference.evaluate(&x, &train.labels[..n]));
    }
}

#[test]
fn fast_path_equals_reference_bit_for_bit_baseline() {
    fast_path_equals_reference_bit_for_bit(Simd::Baseline);
}

#[test]
#[ignore = "needs a CPU with AVX2: scripts/test runs it where /proc/cpuinfo lists avx2"]
fn fast_path_equals_reference_bit_for_bit_avx2() {
    fast_path_equals_reference_bit_for_bit(Simd::Avx2);
}

#[test]
#[ignore = "needs a CPU with AVX-512: scripts/test runs it where /proc/cpuinfo lists avx512f"]
fn fast_path_equals_reference_bit_for_bit_avx512() {
    fast_path_equals_reference_bit_for_bit(Simd::Avx512);
}

// ---------------------------------------------------------------- learning

#[test]
fn learns_on_a_subset() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("m.jsonl");
    mlp_run(&["--train-size", "2000", "--test-size", "1000", "--epochs", "5", "--seed", "1", "--metrics", metrics.to_str().unwrap()]).unwrap();
    let recs = nnmnist::metrics::read(&metrics).unwrap();
    assert_eq!(recs.len(), 5);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!((r.epoch, r.model.as_str(), r.implementation.as_str(), r.device.as_str(), r.seed), (i + 1, "mlp", "nnmnist", "cpu", 1));
        assert_eq!(r.test_total, 1000);
        assert!(r.train_loss.unwrap().is_finite() && r.test_loss.is_finite() && r.train_seconds > 0.0);
    }
    let last = recs.last().unwrap();
    assert!(last.test_accuracy > 0.6, "after 5 epochs of nn.py on 2,000 images: accuracy {} (chance is 0.1)", last.test_accuracy);
    assert!(last.test_loss < recs[0].test_loss);
}

// ---------------------------------------------------------------- bad input

/// Each bad value gets its one message, whole.
#[test]
fn bad_input_gives_clear_errors() {
    let data = data_dir();
    let cases: [(&[&str], String); 10] = [
        (&["--sizes", "785,30,10"], "--sizes must start at 784 (the 28x28 pixels), got 785".into()),
        (&["--sizes", "784,30,9"], "--sizes must end at 10 (the digits), got 9".into()),
        (&["--sizes", "784,0,10"], "--sizes: every layer needs at least one neuron, got [784, 0, 10]".into()),
        (&["--batch-size", "0"], "--batch-size must be at least 1".into()),
        (&["--epochs", "0"], "--epochs must be at least 1".into()),
        (&["--eta", "NaN"], "--eta must be a finite number above 0, got NaN".into()),
        (&["--train-size", "60001"], format!("--train-size 60001 is larger than the 60000 training images in {}", data.display())),
        (&["--train-size", "50", "--batch-size", "100"], "--batch-size 100 is larger than the 50 training images (--train-size 50): use --batch-size N (N <= 50)".into()),
        (&["--test-size", "10001", "--train-size", "100"], format!("--test-size 10001 is larger than the 10000 test images in {}", data.display())),
        (&["--save", "/nonexistent-dir/x.safetensors"], "cannot save to /nonexistent-dir/x.safetensors: directory /nonexistent-dir does not exist".into()),
    ];
    for (extra, want) in cases {
        assert_eq!(err_of(extra), want, "{extra:?}");
    }
}

#[test]
fn weights_of_the_wrong_shape_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("w.safetensors");
    checkpoint::save_to(&f, &Network::seeded(&[784, 20, 10], Init::Normal, 0).entries(), None).unwrap();
    let msg = err_of(&["--init-from", f.to_str().unwrap(), "--train-size", "100"]);
    assert!(msg.contains("w.safetensors") && msg.contains("0.weight") && msg.contains("[20, 784]") && msg.contains("[30, 784]"), "{msg}");
    // Deeper file than --sizes.
    checkpoint::save_to(&f, &Network::seeded(&[784, 30, 20, 10], Init::Normal, 0).entries(), None).unwrap();
    let msg = err_of(&["--init-from", f.to_str().unwrap(), "--train-size", "100"]);
    assert!(msg.contains("tensor 2.weight has shape [20, 30], expected [10, 30] (its layers are 784,30,20,10: pass --sizes 784,30,20,10)"), "{msg}");
    // A plain weights file cannot be resumed; a missing file is named.
    checkpoint::save_to(&f, &Network::seeded(&[784, 30, 10], Init::Normal, 0).entries(), None).unwrap();
    let msg = err_of(&["--resume", f.to_str().unwrap()]);
    assert_eq!(msg, format!("{}: no nnmnist run state in it, so it cannot be resumed (use --init-from to start from its weights)", f.display()));
    let msg = err_of(&["--init-from", "/nonexistent.safetensors"]);
    assert_eq!(msg, "cannot read weights file /nonexistent.safetensors: No such file or directory (os error 2)");
    // network_of (eval, show) infers the sizes and checks them.
    checkpoint::save_to(&f, &Network::seeded(&[100, 30, 10], Init::Normal, 0).entries(), None).unwrap();
    let msg = format!("{:#}", load_network(&f).unwrap_err());
    assert_eq!(msg, format!("{}: layer sizes 100,30,10 do not fit MNIST: --sizes must start at 784 (the 28x28 pixels), got 100", f.display()));
}

// ---------------------------------------------------------------- checkpoints

#[test]
fn save_and_load_round_trip_f64_and_f32() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("net.safetensors");
    let net = Network::seeded(&[784, 100, 30, 10], Init::Scaled, 3);
    checkpoint::save_to(&f, &net.entries(), None).unwrap();
    let back = load_network(&f).unwrap();
    assert_eq!(back, net);
    let keys: Vec<String> = Weights::load(&f).unwrap().entries.keys().cloned().collect();
    assert_eq!(keys, ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]);
    // PyTorch's float32 weights load too (widened exactly).
    let f32_entries: Vec<_> = net.entries().iter().map(|e| Entry::f32(e.name.clone(), e.shape.clone(), e.to_f32())).collect();
    checkpoint::save_to(&f, &f32_entries, None).unwrap();
    let back = load_network(&f).unwrap();
    assert_eq!(back.weights[1][5], net.weights[1][5] as f32 as f64);
    let out = back.feedforward(&pixels_f64(mnist().test.image(0)));
    assert_eq!(out.len(), 10);
}

fn entries_of(p: &Path) -> Vec<(String, Vec<f64>)> {
    Weights::load(p).unwrap().read_all().unwrap().into_iter().map(|e| (e.name.clone(), e.to_f64())).collect()
}

/// Stopped mid-epoch (and at an epoch boundary), then resumed: the same weights, bit for
/// bit, as the run that was never stopped.
#[test]
fn resumed_run_equals_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let common = ["--train-size", "1000", "--test-size", "100", "--epochs", "3", "--seed", "42", "--batch-size", "10", "--lambda", "1.0", "--cost", "cross-entropy", "--eta", "0.5"];
    let full = path("full.safetensors");
    mlp_run(&[&common[..], &["--save", &full]].concat()).unwrap();
    for stop_after_batches in [130usize, 200] {
        let part = path(&format!("part{stop_after_batches}.safetensors"));
        let metrics = path(&format!("m{stop_after_batches}.jsonl"));
        let err = mlp_until(&[&common[..], &["--save", &part, "--metrics", &metrics]].concat(), &stop_after(stop_after_batches)).unwrap_err();
        let interrupted = err.downcast_ref::<Interrupted>().expect("an Interrupted error");
        let (e, b) = (stop_after_batches / 100, stop_after_batches % 100);
        assert_eq!(interrupted.0, format!("interrupted in epoch {} of 3, after {b} of 100 batches; saved to {part}; continue with --resume {part}", e + 1));
        let state = Weights::load(Path::new(&part)).unwrap().state.unwrap();
        assert_eq!((state.epochs_done, state.next_batch), (e, b));
        // Resume with different values on the command line: the checkpoint's win.
        mlp_run(&["--resume", &part, "--eta", "9.0", "--seed", "1", "--metrics", &metrics, "--test-size", "100"]).unwrap();
        assert!(entries_of(Path::new(&part)) == entries_of(Path::new(&full)), "stopped after {stop_after_batches} batches and resumed: weights differ");
        let state = Weights::load(Path::new(&part)).unwrap().state.unwrap();
        assert_eq!((state.epochs_done, state.next_batch, &state.hyper["seed"]), (3, 0, &serde_json::json!(42)));
        let recs = nnmnist::metrics::read(Path::new(&metrics)).unwrap();
        assert_eq!(recs.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2, 3]);
    }
    // --epochs extends a finished run.
    mlp_run(&["--resume", &full, "--epochs", "4", "--test-size", "100"]).unwrap();
    assert_eq!(Weights::load(Path::new(&full)).unwrap().state.unwrap().epochs_done, 4);
}

/// The textbook Network and the fast path, each under the driver: the same checkpoint, bit
/// for bit, and the same metrics (timings aside).
#[test]
fn reference_engine_trains_to_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let common = ["--train-size", "300", "--test-size", "100", "--epochs", "2", "--seed", "5", "--sizes", "784,12,10", "--cost", "cross-entropy", "--lambda", "2.0"];
    let (fast, reference) = (path("fast.safetensors"), path("ref.safetensors"));
    let (mf, mr) = (path("fast.jsonl"), path("ref.jsonl"));
    mlp_run(&[&common[..], &["--save", &fast, "--metrics", &mf]].concat()).unwrap();
    mlp_run(&[&common[..], &["--save", &reference, "--metrics", &mr, "--reference"]].concat()).unwrap();
    assert!(entries_of(Path::new(&fast)) == entries_of(Path::new(&reference)), "the two engines end with different weights");
    let strip = |p: &str| nnmnist::metrics::read(Path::new(p)).unwrap().into_iter().map(|r| (r.test_correct, r.test_loss, r.train_loss, r.confusion)).collect::<Vec<_>>();
    assert_eq!(strip(&mf), strip(&mr));
}

/// network.py's SGD loop as one function ([`Network::sgd`]) and `nnmnist mlp` (the driver,
/// with checkpoints and metrics around the same steps): the same weights, bit for bit, and
/// the same correct counts, from the same seed.
#[test]
fn network_sgd_is_the_run_the_driver_makes() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("run.safetensors");
    let metrics = dir.path().join("run.jsonl");
    let (sizes, seed, epochs, bs) = ([784, 16, 10], 7u64, 2, 10);
    let args = ["--train-size", "400", "--test-size", "100", "--epochs", "2", "--seed", "7", "--sizes", "784,16,10", "--cost", "cross-entropy", "--lambda", "1.5", "--eta", "0.5"];
    mlp_run(&[&args[..], &["--save", saved.to_str().unwrap(), "--metrics", metrics.to_str().unwrap()]].concat()).unwrap();
    let (train, test) = (mnist().train.take(400), mnist().test.take(100));
    let mut net = Network::seeded(&sizes, Init::Normal, seed);
    let rule = Sgd { eta: 0.5, cost: Cost::CrossEntropy, lambda: 1.5, n: 400 };
    let correct = net.sgd(&train, epochs, bs, &rule, |e| epoch_order(400, seed, e, true), &test);
    let recorded: Vec<usize> = nnmnist::metrics::read(&metrics).unwrap().iter().map(|r| r.test_correct).collect();
    assert_eq!(correct, recorded, "correct counts per epoch");
    let sorted = |mut v: Vec<(String, Vec<f64>)>| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let mine = sorted(net.entries().into_iter().map(|e| (e.name.clone(), e.to_f64())).collect());
    assert!(mine == sorted(entries_of(&saved)), "Network::sgd and the driver end with different weights");
}

#[test]
fn stop_without_save_says_nothing_was_saved() {
    let err = mlp_until(&["--train-size", "100", "--test-size", "10"], &stop_after(0)).unwrap_err();
    let i = err.downcast_ref::<Interrupted>().expect("Interrupted");
    assert!(i.0.contains("nothing saved"), "{}", i.0);
}

#[test]
fn eval_reads_sizes_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("e.safetensors");
    let m = dir.path().join("e.jsonl");
    mlp_run(&["--sizes", "784,20,10", "--train-size", "500", "--test-size", "50", "--epochs", "1", "--save", f.to_str().unwrap()]).unwrap();
    let data = data_dir();
    let eval = |extra: &[&str]| {
        let mut argv = vec!["eval", "--model", "mlp", "--weights", f.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
        argv.extend_from_slice(extra);
        run_cli(&argv, &never())
    };
    eval(&["--test-size", "300", "--metrics", m.to_str().unwrap()]).unwrap();
    let recs = nnmnist::metrics::read(&m).unwrap();
    assert_eq!((recs[0].test_total, recs[0].epoch, recs[0].train_loss), (300, 1, None));
    let err = format!("{:#}", eval(&["--test-size", "20000"]).unwrap_err());
    assert!(err.contains(&format!("--test-size 20000 is larger than the 10000 test images in {}", data.display())), "{err}");
}
