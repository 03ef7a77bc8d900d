//! The network told from a weights file's tensor names, wherever weights are given (`eval`,
//! `show`, `trace`): each kind of file (nnmnist's safetensors and checkpoints, PyTorch's
//! .pt/.pth state_dicts, checkpoints that nest them, a pickled module), a file that fits
//! neither network, and a `--model` that contradicts the file.
use crate::common::{self, never, run_cli, s};
use nnmnist::networks::{self, ModelKind, NETWORKS};
use nnmnist::weights::Weights;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(path: &str) -> PathBuf {
    common::root().join("tests/fixtures").join(path)
}

fn model(name: &str) -> ModelKind {
    *NETWORKS.iter().find(|m| m.name() == name).unwrap_or_else(|| panic!("no network {name}"))
}

/// One checkpoint of `model` written by `nnmnist --save` (one short epoch).
fn checkpoint_of(name: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.safetensors"));
    let data = common::repo_data();
    let mut argv = vec![name, "--epochs", "1", "--train-size", "128", "--test-size", "50", "--batch-size", "64", "--data-dir", s(&data), "--save", s(&path)];
    if name == "convnet" {
        argv.extend(["--device", "cpu", "--threads", "1"]);
    }
    run_cli(&argv, &never()).unwrap();
    path
}

/// Every kind of weights file, and the network it holds.
fn files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixture("pt/expected.json")).unwrap()).unwrap();
    let mut files: Vec<(PathBuf, &'static str)> = expected["files"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, e)| (fixture(&format!("pt/{name}")), if e["model"] == "convnet" { "convnet" } else { "mlp" }))
        .collect();
    files.extend([
        (fixture("pt/more/convnet_module.pt"), "convnet"),
        (fixture("convnet/trained.safetensors"), "convnet"),
        (fixture("mlp/net.safetensors"), "mlp"),
        (checkpoint_of("convnet", dir), "convnet"),
        (checkpoint_of("mlp", dir), "mlp"),
    ]);
    files
}

/// Each file tells its network; a `--model` that agrees is taken, one that contradicts the
/// file is refused naming the file, both networks and the `--model` that fits.
#[test]
fn every_kind_of_file_tells_its_network() {
    let tmp = tempfile::tempdir().unwrap();
    let files = files(tmp.path());
    assert!(files.len() >= 14, "{} files", files.len());
    for (path, name) in files {
        let w = Weights::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let told = networks::tell(&w, None).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        assert_eq!(told.name(), name, "{}", path.display());
        assert_eq!(networks::tell(&w, Some(model(name))).unwrap().name(), name);
        let other = NETWORKS.iter().copied().find(|m| m.name() != name).unwrap();
        let err = format!("{:#}", networks::tell(&w, Some(other)).unwrap_err());
        let held = if name == "convnet" { "convnet weights (model.0.weight, ...)" } else { "MLP weights (0.weight, ...)" };
        assert_eq!(err, format!("{}: --model {} does not fit the file, which holds {held}: leave out --model, or pass --model {name}", path.display(), other.name()));
    }
}

/// `eval`, `show` and `trace` without `--model`, through the binary, on PyTorch's files of
/// each network: the convnet's nested training checkpoint, the MLP's .pth state_dict.
#[test]
fn eval_show_and_trace_need_no_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::repo_data();
    let d = s(&data);
    let convnet = fixture("pt/convnet_checkpoint.pt");
    let mlp = fixture("pt/mlp_state_dict.pth");
    for (w, first_line) in [(&convnet, "Test Error: "), (&mlp, "MLP 784,30,10 from ")] {
        let out = common::nnmnist().args(["eval", "--weights", s(w), "--test-size", "500", "--data-dir", d]).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "eval --weights {}: {stderr}", w.display());
        assert!(stdout.starts_with(first_line), "{stdout}");

        let out = common::nnmnist().args(["show", "0", "--weights", s(w), "--data-dir", d]).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "show --weights {}: {stderr}", w.display());
        let described = if w == &convnet { "convnet; probabilities: softmax of the logits" } else { "MLP 784,30,10; probabilities" };
        assert!(stdout.contains(described), "{stdout}");

        let trace = tmp.path().join(format!("{}.trace", w.file_stem().unwrap().to_string_lossy()));
        let out = common::nnmnist().args(["trace", "--weights", s(w), "--out", s(&trace), "--batch-size", "4", "--data-dir", d]).output().unwrap();
        assert!(out.status.success(), "trace --weights {}: {}", w.display(), String::from_utf8_lossy(&out.stderr));
        let written = Weights::load(&trace).unwrap();
        let last_grad = if w == &convnet { "grad.model.9.bias" } else { "grad.2.bias" };
        assert!(written.entries.contains_key(last_grad) && written.entries.contains_key("loss"), "{:?}", written.entries.keys().collect::<Vec<_>>());
    }
}

/// A file that holds neither network is refused by name, with what it holds; a flag of the
/// other network, with a network told by the file, is refused as with `--model`.
#[test]
fn a_file_of_neither_network_and_flags_of_the_other_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other.safetensors");
    nnmnist::checkpoint::save_to(&other, &[nnmnist::weights::Entry::f32("encoder.weight", vec![2], vec![0.5, 0.25])], None).unwrap();
    for args in [vec!["eval", "--weights", s(&other)], vec!["show", "0", "--weights", s(&other)], vec!["trace", "--weights", s(&other), "--out", "unused"]] {
        let err = format!("{:#}", run_cli(&args, &never()).expect_err("neither network"));
        assert_eq!(err, format!("{}: neither convnet weights (model.0.weight, ...) nor MLP weights (0.weight, ...); the file has: encoder.weight", other.display()), "{args:?}");
    }
    let mlp = fixture("pt/mlp_dict.pt");
    let refused = |args: &[&str], want: &str| {
        let err = format!("{:#}", run_cli(args, &never()).expect_err(want));
        assert_eq!(err, want, "{args:?}");
    };
    refused(&["eval", "--weights", s(&mlp), "--device", "cpu"], "--device and --threads apply to the convnet; the MLP runs on the CPU, on one thread");
    refused(&["trace", "--weights", s(&mlp), "--out", "unused", "--lr", "0.1"], "--lr is the convnet's; the MLP's step takes --eta, --lambda, --cost and --train-size-n");
    let convnet = fixture("pt/convnet_dict.pt");
    refused(&["trace", "--weights", s(&convnet), "--out", "unused", "--eta", "0.1"], "--eta is the MLP's; the convnet's step takes --lr, --weight-decay and --deterministic");
}
