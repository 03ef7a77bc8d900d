//! The convnet (src/convnet.rs) and its training (src/train.rs): layer shapes and state_dict
//! names, PyTorch's initialisation, learning on a subset, safetensors round trip, and resume
//! (after a whole epoch, and after a stop in the middle of one) ending bit-identical to an
//! uninterrupted run on the CPU.
//!
//! Every test takes one lock: libtorch's CPU generator (seeded by `Net::new` and by each
//! epoch's shuffle) and the stop flag of `nnmnist::run` are process-wide, and the test
//! harness runs tests in parallel threads.
use clap::Parser;
use nnmnist::checkpoint::{self, Data, Entry, Weights};
use nnmnist::cli::{Cli, Command, ConvnetArgs};
use nnmnist::convnet::{images_tensor, Net};
use nnmnist::metrics;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};
use tch::nn::Module;
use tch::{Device, Kind, Tensor};

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests of this file (a failed test must not block the others). Training
/// uses one libtorch thread: on a shared machine that is faster than several, and every
/// bit-for-bit comparison below is between runs with the same thread count.
fn lock() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    guard
}

const KEYS: [(&str, &[usize]); 8] = [
    ("model.0.weight", &[8, 1, 3, 3]),
    ("model.0.bias", &[8]),
    ("model.4.weight", &[16, 8, 3, 3]),
    ("model.4.bias", &[16]),
    ("model.7.weight", &[100, 576]),
    ("model.7.bias", &[100]),
    ("model.9.weight", &[10, 100]),
    ("model.9.bias", &[10]),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// `nnmnist convnet --device cpu --data-dir <repo>/data <extra...>`, parsed as the binary does.
fn convnet_args(extra: &[&str]) -> ConvnetArgs {
    let data = data_dir();
    let mut argv = vec!["nnmnist", "convnet", "--device", "cpu", "--data-dir", data.to_str().unwrap()];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}")).command {
        Command::Convnet(args) => args,
        other => panic!("parsed as {other:?}"),
    }
}

fn train(extra: &[&str]) -> anyhow::Result<()> {
    nnmnist::train::run(&convnet_args(extra))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn tensors(path: &Path) -> Vec<Entry> {
    Weights::load(path).unwrap().entries.into_values().collect()
}

#[test]
fn layer_shapes_and_state_dict_keys() {
    let _g = lock();
    let net = Net::new(Device::Cpu, 0);
    let params = net.parameters();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    for ((name, t), (_, shape)) in params.iter().zip(KEYS) {
        let size: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        assert_eq!(size, shape, "{name}");
        assert_eq!(t.kind(), Kind::Float, "{name}");
        assert!(t.requires_grad(), "{name} is not trained");
    }
    // The VarStore holds exactly these variables, under these names.
    let mut vs_names: Vec<String> = net.vs.variables().into_keys().collect();
    vs_names.sort();
    let mut expected: Vec<String> = KEYS.iter().map(|(k, _)| k.to_string()).collect();
    expected.sort();
    assert_eq!(vs_names, expected);
    let total: usize = KEYS.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(total, 8 * 9 + 8 + 16 * 8 * 9 + 16 + 100 * 576 + 100 + 10 * 100 + 10);

    // Shapes through the layers, as nn_convnet.py's Sequential computes them.
    let x = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    let h = net.conv0.forward(&x);
    assert_eq!(h.size(), [3, 8, 28, 28]);
    let h = h.relu().max_pool2d_default(2).relu();
    assert_eq!(h.size(), [3, 8, 14, 14]);
    let h = net.conv4.forward(&h);
    assert_eq!(h.size(), [3, 16, 12, 12]);
    let h = h.max_pool2d_default(2).flatten(1, -1);
    assert_eq!(h.size(), [3, 576]);
    let h = net.fc7.forward(&h);
    assert_eq!(h.size(), [3, 100]);
    let logits = net.fc9.forward(&h.relu());
    assert_eq!(logits.size(), [3, 10]);
    let direct = net.forward_t(&x, false);
    assert_eq!(direct.size(), [3, 10]);
    assert!(direct.allclose(&logits, 0.0, 0.0, false));
}

#[test]
fn initial_weights_follow_pytorch_defaults() {
    let _g = lock();
    for seed in [0u64, 1, 12345] {
        let net = Net::new(Device::Cpu, seed);
        for e in net.entries() {
            // fan_in = in_channels * k * k for a conv, in_features for a linear layer; the
            // bias shares its layer's fan_in.
            let layer = &e.name[..7];
            let (_, wshape) = KEYS.iter().find(|(k, _)| k.starts_with(layer) && k.ends_with("weight")).unwrap();
            let fan_in: usize = wshape[1..].iter().product();
            let bound = 1.0 / (fan_in as f64).sqrt();
            let v = e.to_f64();
            let max = v.iter().fold(0f64, |m, x| m.max(x.abs()));
            assert!(max <= bound * (1.0 + 1e-6), "seed {seed} {}: max |w| {max} above 1/sqrt({fan_in}) = {bound}", e.name);
            // Spread over the whole interval, not zero (tch's default conv bias) or narrow.
            let n = v.len();
            let floor = if n >= 100 { 0.95 } else { 0.5 };
            assert!(max >= floor * bound, "seed {seed} {}: max |w| {max}, bound {bound}", e.name);
            assert!(v.iter().filter(|&&x| x == 0.0).count() <= n / 100, "{}: zeros", e.name);
            if n >= 1000 {
                // U(-b, b): mean 0, standard deviation b / sqrt(3).
                let mean = v.iter().sum::<f64>() / n as f64;
                let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64).sqrt();
                assert!(mean.abs() < 0.05 * bound, "{}: mean {mean}", e.name);
                let expected = bound / 3f64.sqrt();
                assert!((sd / expected - 1.0).abs() < 0.05, "{}: sd {sd}, expected {expected}", e.name);
            }
        }
    }
}

#[test]
fn seed_decides_the_initial_weights() {
    let _g = lock();
    let a = Net::new(Device::Cpu, 42).entries();
    let b = Net::new(Device::Cpu, 42).entries();
    let c = Net::new(Device::Cpu, 43).entries();
    assert_eq!(a, b, "the same seed must give the same weights");
    for (x, y) in a.iter().zip(&c) {
        assert_ne!(x.data, y.data, "{}: seeds 42 and 43 give the same values", x.name);
    }
}

#[test]
fn safetensors_round_trip() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("net.safetensors");
    let net = Net::new(Device::Cpu, 5);
    net.save(&path, None).unwrap();

    // The file, read with the safetensors crate itself: exactly PyTorch's state_dict keys,
    // shapes and dtype F32, so `model.load_state_dict(load_file(f))` takes it.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names().into_iter().cloned().collect::<Vec<_>>();
    names.sort();
    let mut expected: Vec<String> = KEYS.iter().map(|(k, _)| k.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
    for (key, shape) in KEYS {
        let t = st.tensor(key).unwrap();
        assert_eq!(t.shape(), shape, "{key}");
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{key}");
    }

    // Saved and loaded back: the same values, and the same outputs.
    let loaded = Net::load(&path, Device::Cpu).unwrap();
    assert_eq!(loaded.entries(), net.entries());
    assert_eq!(tensors(&path), {
        let mut e = net.entries();
        e.sort_by(|a, b| a.name.cmp(&b.name));
        e
    });
    let x = Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu));
    assert!(net.forward_t(&x, false).equal(&loaded.forward_t(&x, false)));

    // A plain weights file is not a checkpoint; a checkpoint keeps its run state.
    assert!(Weights::load(&path).unwrap().state.is_none());
    let state = checkpoint::RunState {
        model: "convnet".into(),
        epochs_done: 3,
        next_batch: 17,
        seed: 9,
        args: serde_json::json!({"lr": 0.05}),
    };
    let ckpt = tmp.path().join("ckpt.safetensors");
    net.save(&ckpt, Some(&state)).unwrap();
    let w = Weights::load(&ckpt).unwrap();
    assert_eq!(w.state.as_ref(), Some(&state));
    assert_eq!(w.run_state("convnet").unwrap(), &state);
    assert!(w.run_state("mlp").is_err());
    assert_eq!(Net::load(&ckpt, Device::Cpu).unwrap().entries(), net.entries());

    // PyTorch may save float64: loaded and rounded to f32, the same network.
    let f64_path = tmp.path().join("f64.safetensors");
    let wide: Vec<Entry> = net.entries().iter().map(|e| Entry::f64(e.name.clone(), e.shape.clone(), e.to_f64())).collect();
    checkpoint::save(&f64_path, &wide, None).unwrap();
    assert!(matches!(Weights::load(&f64_path).unwrap().entries["model.0.weight"].data, Data::F64(_)));
    assert_eq!(Net::load(&f64_path, Device::Cpu).unwrap().entries(), net.entries());
}

#[test]
fn short_run_learns() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let metrics_path = tmp.path().join("m.jsonl");
    // Loss of the untrained network on the test subset: about ln 10 = 2.30.
    let test = nnmnist::data::Mnist::load(&data_dir()).unwrap().test.take(1000);
    let initial = nnmnist::train::evaluate(
        &Net::new(Device::Cpu, 0),
        &images_tensor(&test.images, Device::Cpu),
        &nnmnist::convnet::labels_tensor(&test.labels, Device::Cpu),
    );
    assert!((initial.avg_loss - 10f64.ln()).abs() < 0.1, "initial loss {}", initial.avg_loss);
    assert!(initial.accuracy() < 0.3, "initial accuracy {}", initial.accuracy());

    // One epoch on 5000 images in batches of 16: 312 SGD steps (PyTorch's recipe otherwise).
    let started = Instant::now();
    train(&["--epochs", "1", "--train-size", "5000", "--batch-size", "16", "--test-size", "1000", "--metrics", p(&metrics_path)])
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let m = metrics::read(&metrics_path).unwrap();
    assert_eq!(m.len(), 1);
    let e = &m[0];
    assert_eq!((e.model.as_str(), e.epoch, e.test_total, e.device.as_str(), e.seed), ("convnet", 1, 1000, "cpu", 0));
    assert!((e.test_accuracy - e.test_correct as f64 / 1000.0).abs() < 1e-12);
    eprintln!("1 epoch on 5000 images: accuracy {}, test loss {}, train loss {:?}, {seconds:.1} s", e.test_accuracy, e.test_loss, e.train_loss);
    assert!(e.test_accuracy > 0.75, "accuracy {} after 1 epoch on 5000 images (chance: 0.1)", e.test_accuracy);
    assert!(e.test_loss < initial.avg_loss / 3.0, "test loss {} (initially {})", e.test_loss, initial.avg_loss);
    let train_loss = e.train_loss.unwrap();
    assert!(train_loss < 0.8 * initial.avg_loss, "mean train loss {train_loss} (initially {})", initial.avg_loss);
}

#[test]
fn resume_after_an_epoch_is_bit_identical() {
    let _g = lock();
    let tmp = tempfile::tempdir().unwrap();
    let (whole, split) = (tmp.path().join("whole.safetensors"), tmp.path().join("split.safetensors"));
    let common = ["--train-size", "1500", "--test-size", "200", "--seed", "3"];

    train(&[&common[..], &["--epochs", "2", "--save", p(&whole)]].concat()).unwrap();
    train(&[&common[..], &["--epochs", "1", "--save", p(&split)]].concat()).unwrap();
    let after_one = tensors(&split);
    let state = Weights::load(&split).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch, state.seed), (1, 0, 3));
    assert_ne!(after_one, tensors(&whole));
    train(&["--resume", p(&split), "--epochs", "2"]).unwrap();

    assert_eq!(tensors(&split), tensors(&whole), "1 epoch + resume differs from 2 epochs in one go");
    let state = Weights::load(&split).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch), (2, 0));
}

/// Clears the process-wide stop flag when dropped, whatever happens.
struct ClearStop;

impl Drop for ClearStop {
    fn drop(&mut self) {
        nnmnist::run::clear_stop();
    }
}

#[test]
fn resume_after_a_stop_mid_epoch_is_bit_identical() {
    let _g = lock();
    let _clear = ClearStop;
    let tmp = tempfile::tempdir().unwrap();
    let common = ["--train-size", "4000", "--test-size", "200", "--seed", "11", "--epochs", "2"];
    let batches = 4000 / 64;
    let whole = tmp.path().join("whole.safetensors");
    train(&[&common[..], &["--save", p(&whole)]].concat()).unwrap();

    // Stop the same run in its second epoch, as Ctrl-C does: a watcher thread waits for the
    // checkpoint of epoch 1, lets a few batches of epoch 2 run, then requests the stop. Where
    // exactly it lands depends on timing; any batch must resume to the same weights, and the
    // attempt is repeated if it missed the epoch (stopped at its start or after the run ended).
    let mut stopped_at = None;
    for (attempt, delay_ms) in [30u64, 10, 60, 3].into_iter().enumerate() {
        let ckpt = tmp.path().join(format!("stopped{attempt}.safetensors"));
        nnmnist::run::clear_stop();
        let watch = ckpt.clone();
        let watcher = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !watch.exists() && Instant::now() < deadline {
                thread::sleep(Duration::from_micros(200));
            }
            thread::sleep(Duration::from_millis(delay_ms));
            nnmnist::run::request_stop();
        });
        let result = train(&[&common[..], &["--save", p(&ckpt)]].concat());
        watcher.join().unwrap();
        nnmnist::run::clear_stop();
        let Err(e) = result else {
            eprintln!("attempt {attempt}: the run ended before the stop request");
            continue;
        };
        let interrupted = e.downcast_ref::<nnmnist::run::Interrupted>().unwrap_or_else(|| panic!("not an interruption: {e:#}"));
        let msg = interrupted.to_string();
        assert!(msg.contains("interrupted in epoch 2") && msg.contains(&format!("--resume {}", ckpt.display())), "{msg}");
        let state = Weights::load(&ckpt).unwrap().state.unwrap();
        assert_eq!(state.epochs_done, 1, "{msg}");
        assert!(msg.contains(&format!("at batch {}", state.next_batch)), "{msg} vs {state:?}");
        if state.next_batch == 0 {
            eprintln!("attempt {attempt}: stopped before the first batch of epoch 2");
            continue;
        }
        let k = state.next_batch;
        assert!(k < batches);
        // The checkpoint holds the weights after exactly next_batch batches of epoch 2.
        train(&["--resume", p(&ckpt)]).unwrap();
        assert_eq!(tensors(&ckpt), tensors(&whole), "stopped at batch {k} of epoch 2 and resumed");
        let state = Weights::load(&ckpt).unwrap().state.unwrap();
        assert_eq!((state.epochs_done, state.next_batch), (2, 0));
        eprintln!("attempt {attempt}: stopped at batch {k} of {batches} in epoch 2, resumed to identical weights");
        stopped_at = Some(k);
        break;
    }
    assert!(stopped_at.is_some(), "no attempt stopped inside epoch 2");
}

#[test]
fn stop_before_training_saves_a_resumable_checkpoint() {
    // A stop requested before the first batch: the run saves epoch 0, batch 0, and a resume
    // then does the whole run.
    let _g = lock();
    let _clear = ClearStop;
    let tmp = tempfile::tempdir().unwrap();
    let common = ["--train-size", "640", "--test-size", "100", "--seed", "2", "--epochs", "1"];
    let (whole, ckpt) = (tmp.path().join("whole.safetensors"), tmp.path().join("ckpt.safetensors"));
    train(&[&common[..], &["--save", p(&whole)]].concat()).unwrap();
    nnmnist::run::request_stop();
    let e = train(&[&common[..], &["--save", p(&ckpt)]].concat()).unwrap_err();
    nnmnist::run::clear_stop();
    assert!(e.downcast_ref::<nnmnist::run::Interrupted>().is_some(), "{e:#}");
    let state = Weights::load(&ckpt).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch), (0, 0));
    train(&["--resume", p(&ckpt)]).unwrap();
    assert_eq!(tensors(&ckpt), tensors(&whole));
}
