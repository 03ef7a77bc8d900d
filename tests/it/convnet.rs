//! The convnet (src/convnet/) and its run through the driver: layer shapes and state_dict
//! names, PyTorch's initialisation, learning on a subset, safetensors round trip, and resume
//! (after a whole epoch, and after a stop in the middle of one) ending bit-identical to an
//! uninterrupted run on the CPU.
//!
//! No lock between the tests: the libtorch CPU generator is only drawn from under
//! `torch_rng::lock` (by `Net::new`, each epoch's shuffle and the MLP's draws), every run
//! here uses one libtorch thread (`--threads 1`), and stops are injected per run.
use crate::common::{never, repo_data as data_dir, run_cli, stop_after};
use nnmnist::checkpoint;
use nnmnist::weights::RunState;
use nnmnist::convnet::{images_tensor, Net};
use nnmnist::outcome::Interrupted;
use nnmnist::metrics;
use nnmnist::tensors::{DType, TensorFile};
use nnmnist::weights::{Data, Entry, Weights};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// PyTorch's state_dict of nn_convnet.py's model as `torch.save(model.state_dict())` wrote it
/// (tests/fixtures/pt/convnet_state_dict.pt, by scripts.reference.make_pt_fixtures): each key
/// in PyTorch's order, with its shape; every tensor float32.
fn pytorch_state_dict() -> Vec<(String, Vec<usize>)> {
    let path = crate::common::root().join("tests/fixtures/pt/convnet_state_dict.pt");
    let file = TensorFile::open(&path, "PyTorch's state_dict").unwrap();
    file.tensors
        .iter()
        .map(|t| {
            assert_eq!(t.dtype, Some(DType::F32), "{}", t.name);
            (t.name.clone(), t.shape.clone())
        })
        .collect()
}

/// `nnmnist convnet --device cpu --threads 1 --data-dir <repo>/data <extra...>`, in process,
/// stopped by `stop`.
fn train_until(extra: &[&str], stop: &dyn nnmnist::signal::StopCondition) -> anyhow::Result<()> {
    let data = data_dir();
    let mut argv = vec!["convnet", "--device", "cpu", "--threads", "1", "--data-dir", data.to_str().unwrap()];
    argv.extend_from_slice(extra);
    run_cli(&argv, stop)
}

fn train(extra: &[&str]) -> anyhow::Result<()> {
    train_until(extra, &never())
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn tensors(path: &Path) -> Vec<Entry> {
    Weights::load(path).unwrap().read_all().unwrap()
}

/// The parameters are PyTorch's state_dict: the same keys in the same order, the same
/// shapes, float32 (against the state_dict PyTorch saved), each trained.
#[test]
fn layer_shapes_and_state_dict_keys() {
    let net = Net::new(Device::Cpu, 0);
    let ours: Vec<(String, Vec<usize>)> = net
        .parameters()
        .iter()
        .map(|(name, t)| {
            assert_eq!(t.kind(), Kind::Float, "{name}");
            assert!(t.requires_grad(), "{name} is not trained");
            (name.clone(), t.size().iter().map(|&d| d as usize).collect())
        })
        .collect();
    let pytorch = pytorch_state_dict();
    assert_eq!(ours, pytorch);
    // The VarStore holds exactly these variables, under these names.
    let mut vs_names: Vec<String> = net.vs.variables().into_keys().collect();
    vs_names.sort();
    let mut expected: Vec<String> = pytorch.into_iter().map(|(k, _)| k).collect();
    expected.sort();
    assert_eq!(vs_names, expected);

    // Shapes through the layers, as nn_convnet.py's Sequential computes them (conv0, relu,
    // pool, relu, conv4, pool, flatten, fc7, relu, fc9), from the chain trace also uses.
    let x = {
        let _rng = nnmnist::torch_rng::lock();
        Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu))
    };
    let layers = net.forward_layers(&x);
    let shapes: Vec<Vec<i64>> = layers.iter().map(|t| t.size()).collect();
    let expected: [&[i64]; 10] = [&[3, 8, 28, 28], &[3, 8, 28, 28], &[3, 8, 14, 14], &[3, 8, 14, 14], &[3, 16, 12, 12], &[3, 16, 6, 6], &[3, 576], &[3, 100], &[3, 100], &[3, 10]];
    assert_eq!(shapes, expected.map(<[i64]>::to_vec));
    let direct = net.forward(&x);
    assert!(layers[9].equal(&direct), "forward_layers' last output differs from forward");
}

/// PyTorch's default initialisation, bit for bit: for each seed tried, the weights equal
/// those of `torch.manual_seed(seed); NeuralNetwork()` (scripts.reference.nn_convnet's
/// build_model), drawn by PyTorch now. (Seed 1234 is also in the parity fixture.)
#[test]
fn initial_weights_equal_pytorchs_for_every_seed_tried() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("init.safetensors");
    let script = r#"
import sys
from safetensors.torch import save_file
from scripts.reference import nn_convnet
seeds = [int(s) for s in sys.argv[2].split(",")]
save_file({f"{seed}.{k}": v.contiguous() for seed in seeds
           for k, v in nn_convnet.build_model(seed, None, "cpu").state_dict().items()}, sys.argv[1])
"#;
    let seeds = [0u64, 1, 12345];
    let list = seeds.map(|s| s.to_string()).join(",");
    let made = crate::common::command(crate::common::python()).args(["-c", script, p(&out), &list]).current_dir(crate::common::root()).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let pytorch = Weights::load(&out).unwrap();
    for seed in seeds {
        let net = Net::new(Device::Cpu, seed);
        for e in net.entries() {
            let theirs = pytorch.get(&format!("{seed}.{}", e.name), &e.shape).unwrap().to_f32();
            assert!(e.to_f32() == theirs, "seed {seed} {}: differs from PyTorch's initialisation", e.name);
        }
    }
}

#[test]
fn seed_decides_the_initial_weights() {
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
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("net.safetensors");
    let net = Net::new(Device::Cpu, 5);
    checkpoint::save_to(&path, &net.entries(), None).unwrap();

    // The file, read with the safetensors crate itself: exactly PyTorch's state_dict keys,
    // shapes and dtype F32, so `model.load_state_dict(load_file(f))` takes it.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names().into_iter().map(str::to_string).collect::<Vec<_>>();
    names.sort();
    let pytorch = pytorch_state_dict();
    let mut expected: Vec<String> = pytorch.iter().map(|(k, _)| k.clone()).collect();
    expected.sort();
    assert_eq!(names, expected);
    for (key, shape) in &pytorch {
        let t = st.tensor(key).unwrap();
        assert_eq!(t.shape(), &shape[..], "{key}");
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
    let x = {
        let _rng = nnmnist::torch_rng::lock();
        Tensor::rand([4, 1, 28, 28], (Kind::Float, Device::Cpu))
    };
    assert!(net.forward(&x).equal(&loaded.forward(&x)));

    // A plain weights file is not a checkpoint; a checkpoint keeps its run state.
    assert!(Weights::load(&path).unwrap().state.is_none());
    let state = RunState { model: "convnet".into(), epochs_done: 3, next_batch: 17, hyper: serde_json::json!({"lr": 0.05, "seed": 9}), run: Some("r".into()), threads: Some(1), format: Some(nnmnist::weights::CHECKPOINT_FORMAT), data: None };
    let ckpt = tmp.path().join("ckpt.safetensors");
    checkpoint::save_to(&ckpt, &net.entries(), Some(&state)).unwrap();
    let w = Weights::load(&ckpt).unwrap();
    assert_eq!(w.state.as_ref(), Some(&state));
    assert_eq!(w.run_state("convnet").unwrap(), &state);
    let err = w.run_state("mlp").unwrap_err().to_string();
    assert_eq!(err, format!("{}: a checkpoint of the convnet model, not of the mlp", ckpt.display()));
    assert_eq!(Net::load(&ckpt, Device::Cpu).unwrap().entries(), net.entries());

    // PyTorch may save float64: loaded and rounded to f32, the same network.
    let f64_path = tmp.path().join("f64.safetensors");
    let wide: Vec<Entry> = net.entries().iter().map(|e| Entry::f64(e.name.clone(), e.shape.clone(), e.to_f64())).collect();
    checkpoint::save_to(&f64_path, &wide, None).unwrap();
    let read = Weights::load(&f64_path).unwrap().read_all().unwrap();
    assert!(matches!(read.iter().find(|e| e.name == "model.0.weight").unwrap().data, Data::F64(_)));
    assert_eq!(Net::load(&f64_path, Device::Cpu).unwrap().entries(), net.entries());
}

#[test]
fn short_run_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics_path = tmp.path().join("m.jsonl");
    // Loss of the untrained network on the test subset: about ln 10 = 2.30.
    let test = nnmnist::data::Mnist::load(&data_dir()).unwrap().test.take(1000);
    let initial = nnmnist::convnet::eval::evaluate(
        &Net::new(Device::Cpu, 0),
        &images_tensor(&test.images, Device::Cpu),
        &nnmnist::convnet::labels_tensor(&test.labels, Device::Cpu),
    )
    .unwrap();
    assert!((initial.loss - 10f64.ln()).abs() < 0.1, "initial loss {}", initial.loss);
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
    assert!(e.test_loss < initial.loss / 3.0, "test loss {} (initially {})", e.test_loss, initial.loss);
    let train_loss = e.train_loss.unwrap();
    assert!(train_loss < 0.8 * initial.loss, "mean train loss {train_loss} (initially {})", initial.loss);
}

#[test]
fn resume_after_an_epoch_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, split) = (tmp.path().join("whole.safetensors"), tmp.path().join("split.safetensors"));
    let common = ["--train-size", "1500", "--test-size", "200", "--seed", "3"];

    train(&[&common[..], &["--epochs", "2", "--save", p(&whole)]].concat()).unwrap();
    train(&[&common[..], &["--epochs", "1", "--save", p(&split)]].concat()).unwrap();
    let after_one = tensors(&split);
    let state = Weights::load(&split).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch, &state.hyper["seed"]), (1, 0, &serde_json::json!(3)));
    assert_ne!(after_one, tensors(&whole));
    train(&["--resume", p(&split), "--epochs", "2"]).unwrap();

    assert_eq!(tensors(&split), tensors(&whole), "1 epoch + resume differs from 2 epochs in one go");
    let state = Weights::load(&split).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch), (2, 0));
}

#[test]
fn resume_after_a_stop_mid_epoch_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let common = ["--train-size", "4000", "--test-size", "200", "--seed", "11", "--epochs", "2"];
    let batches = 4000 / 64;
    let whole = tmp.path().join("whole.safetensors");
    train(&[&common[..], &["--save", p(&whole)]].concat()).unwrap();

    // Stopped, as by a signal, before batch k of epoch 2, then resumed: the same weights.
    for k in [1usize, 17, batches - 1] {
        let ckpt = tmp.path().join(format!("stopped{k}.safetensors"));
        let e = train_until(&[&common[..], &["--save", p(&ckpt)]].concat(), &stop_after(batches + k)).unwrap_err();
        let msg = e.downcast_ref::<Interrupted>().unwrap_or_else(|| panic!("not an interruption: {e:#}")).to_string();
        assert_eq!(msg, format!("interrupted in epoch 2 of 2, after {k} of {batches} batches; saved to {0}; continue with --resume {0} --threads 1", ckpt.display()));
        let state = Weights::load(&ckpt).unwrap().state.unwrap();
        assert_eq!((state.epochs_done, state.next_batch), (1, k));
        train(&["--resume", p(&ckpt)]).unwrap();
        assert_eq!(tensors(&ckpt), tensors(&whole), "stopped before batch {k} of epoch 2 and resumed");
        let state = Weights::load(&ckpt).unwrap().state.unwrap();
        assert_eq!((state.epochs_done, state.next_batch), (2, 0));
    }
}

#[test]
fn stop_before_training_saves_a_resumable_checkpoint() {
    // A stop requested before the first batch: the run saves epoch 0, batch 0, and a resume
    // then does the whole run.
    let tmp = tempfile::tempdir().unwrap();
    let common = ["--train-size", "640", "--test-size", "100", "--seed", "2", "--epochs", "1"];
    let (whole, ckpt) = (tmp.path().join("whole.safetensors"), tmp.path().join("ckpt.safetensors"));
    train(&[&common[..], &["--save", p(&whole)]].concat()).unwrap();
    let e = train_until(&[&common[..], &["--save", p(&ckpt)]].concat(), &stop_after(0)).unwrap_err();
    assert!(e.downcast_ref::<Interrupted>().is_some(), "{e:#}");
    let state = Weights::load(&ckpt).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch), (0, 0));
    train(&["--resume", p(&ckpt)]).unwrap();
    assert_eq!(tensors(&ckpt), tensors(&whole));
}

/// `--deterministic` on the CPU is accepted and changes nothing: the same weights, bit for bit.
#[test]
fn deterministic_changes_nothing_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain, det) = (tmp.path().join("plain.safetensors"), tmp.path().join("det.safetensors"));
    let common = ["--train-size", "640", "--test-size", "100", "--seed", "4", "--epochs", "1"];
    train(&[&common[..], &["--save", p(&plain)]].concat()).unwrap();
    train(&[&common[..], &["--save", p(&det), "--deterministic"]].concat()).unwrap();
    assert_eq!(tensors(&plain), tensors(&det));
}
