//! PyTorch's own files (torch.save: a state_dict, a plain dict, training checkpoints that
//! nest it), wherever nnmnist reads weights: `eval`, `--init-from`, `show`. The fixtures in
//! tests/fixtures/pt/ are written by PyTorch itself, with PyTorch's own evaluation of each in
//! expected.json:
//!
//!     .venv/bin/python scripts/reference/make_pt_fixtures.py
//!
//! Tolerance: the correct count exactly; the average loss within 1e-5 absolute, as for the
//! safetensors state_dict in tests/it/convnet_parity.rs (measured: the convnet's losses agree to
//! the last bit; the MLP's within one ulp, the sums run in another order).
use crate::common;
use crate::common::{never, run_cli};
use nnmnist::weights::{Data, Weights};
use serde_json::Value;
use std::path::{Path, PathBuf};

const REBUILD: &str = ".venv/bin/python scripts/reference/make_pt_fixtures.py";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pt")
}

fn expected() -> Vec<(String, Value)> {
    let path = fixtures().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; rebuild with {REBUILD}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("expected.json parses");
    v["files"].as_object().expect("files").iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn every_form_reads_the_state_dict_and_skips_the_rest() {
    let files = expected();
    assert!(files.len() >= 9, "{} fixture files; rebuild with {REBUILD}", files.len());
    for (name, e) in &files {
        let w = Weights::load(&fixtures().join(name)).unwrap_or_else(|err| panic!("{name}: {err:#}"));
        let keys: Vec<&str> = e["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        for key in &keys {
            let entry = w.entries.get(*key).unwrap_or_else(|| panic!("{name}: no {key}; it has {:?}", w.entries.keys().collect::<Vec<_>>()));
            let dtype_ok = match e["dtype"].as_str().unwrap() {
                "float32" => matches!(entry.data, Data::F32(_)),
                _ => matches!(entry.data, Data::F64(_)),
            };
            assert!(dtype_ok, "{name}: {key} read with the wrong dtype");
        }
        // Nothing of an optimizer state (momentum buffers shaped like the weights) or an
        // epoch number is taken for a parameter: only the state_dict and the skipped entries.
        let skipped: Vec<&str> = e["skipped"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        let mut read: Vec<&str> = w.entries.keys().map(|k| k.as_str()).collect();
        read.sort_unstable();
        let mut want: Vec<&str> = keys.iter().chain(&skipped).copied().collect();
        want.sort_unstable();
        assert_eq!(read, want, "{name}: the entries read");
    }
}

/// `nnmnist eval` on each file gives PyTorch's own correct count and average loss.
#[test]
fn eval_of_each_file_matches_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::repo_data();
    for (name, e) in expected() {
        let metrics = tmp.path().join(format!("{name}.jsonl"));
        let path = fixtures().join(&name);
        let model = e["model"].as_str().unwrap();
        let mut argv = vec!["eval", "--model", model, "--weights", common::s(&path), "--data-dir", common::s(&data), "--metrics", common::s(&metrics)];
        if model == "convnet" {
            argv.extend(["--device", "cpu"]);
        }
        run_cli(&argv, &never())
        .unwrap_or_else(|err| panic!("{name}: {err:#}"));
        let r = &nnmnist::metrics::read(&metrics).unwrap()[0];
        let want_loss: f64 = e["test_loss"].as_str().unwrap().parse().unwrap();
        let diff = (r.test_loss - want_loss).abs();
        eprintln!("{name}: {} / {} correct (PyTorch {}), loss {} (PyTorch {want_loss}), |diff| {diff:.1e}", r.test_correct, r.test_total, e["test_correct"], r.test_loss);
        assert_eq!(r.test_total as u64, e["test_total"].as_u64().unwrap(), "{name}");
        assert_eq!(r.test_correct as u64, e["test_correct"].as_u64().unwrap(), "{name}: correct count differs from PyTorch's");
        assert!(diff <= 1e-5, "{name}: loss {} vs PyTorch {want_loss}: |diff| {diff:.3e} > 1e-5", r.test_loss);
        let confusion = r.confusion.as_ref().expect("a confusion matrix");
        assert_eq!((0..10).map(|d| confusion[d][d]).sum::<usize>(), r.test_correct, "{name}: the diagonal is the correct count");
    }
}

/// `--init-from` a PyTorch checkpoint trains from its weights (both models), and `show`
/// classifies with a .pt/.pth file.
#[test]
fn init_from_and_show_take_pytorch_files() {
    let data = common::repo_data();
    let d = common::s(&data);
    let tmp = tempfile::tempdir().unwrap();
    for (model, file, extra) in [
        ("convnet", "convnet_checkpoint.pt", &["--device", "cpu", "--threads", "1", "--batch-size", "64"][..]),
        ("mlp", "mlp_state_dict.pth", &[][..]),
    ] {
        let path = fixtures().join(file);
        let save = tmp.path().join(format!("{model}.safetensors"));
        let mut argv = vec![model, "--init-from", common::s(&path), "--epochs", "1", "--train-size", "640", "--test-size", "200", "--data-dir", d, "--save", common::s(&save)];
        argv.extend_from_slice(extra);
        run_cli(&argv, &never()).unwrap_or_else(|e| panic!("{model} --init-from {file}: {e:#}"));
        assert!(Weights::load(&save).is_ok());
        let out = common::nnmnist().args(["show", "0", "--weights", common::s(&path), "--data-dir", d]).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "show --weights {file}: {stderr}");
        assert!(stdout.contains("Test image 0: label 7") && stdout.contains("Prediction: "), "{stdout}");
    }
}

/// Files torch.save wrote that are not the model's state_dict get the messages safetensors
/// files get, naming the file and the tensor.
#[test]
fn broken_pytorch_files_are_refused_by_name() {
    let cases = [
        ("missing_key.pt", "missing tensor model.0.weight (the file has: model.0.bias)"),
        ("wrong_shape.pt", "tensor model.0.weight has shape [8, 1, 3, 4], expected [8, 1, 3, 3]"),
        ("float16.pt", "tensor model.0.weight has dtype F16; nnmnist reads F32 or F64"),
        ("nan.pt", "tensor model.0.weight holds NaN (at flat index 32)"),
        ("not_a_dict.pt", "holds no state_dict nnmnist can read"),
    ];
    for (file, phrase) in cases {
        let path = fixtures().join("broken").join(file);
        let err = run_cli(&["eval", "--model", "convnet", "--device", "cpu", "--weights", common::s(&path)], &never()).expect_err(file);
        let msg = format!("{err:#}");
        assert!(msg.contains(common::s(&path)) && msg.contains(phrase), "{file}: {msg}");
    }
}

/// torch.save of the whole module (not its state_dict): its parameters read under the
/// state_dict's names, the same values as convnet_state_dict.pt (its attribute `model` is
/// not taken for a nested checkpoint).
#[test]
fn a_whole_pickled_module_reads_as_its_state_dict() {
    let module = Weights::load(&fixtures().join("more/convnet_module.pt")).unwrap();
    let sd = Weights::load(&fixtures().join("convnet_state_dict.pt")).unwrap();
    assert_eq!(module.entries, sd.entries);
}

/// An entry that is no weight or bias is never loaded: a 46000x46000 float32 view of one
/// element (8.5 GB materialised, 243 KB on disk) beside the state_dict costs nothing.
#[test]
fn entries_that_are_not_parameters_are_not_loaded() {
    let path = fixtures().join("more/convnet_expanded_buffer.pt");
    let out = common::nnmnist().args(["eval", "--model", "convnet", "--device", "cpu", "--weights", common::s(&path), "--data-dir", common::s(&common::repo_data())]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ignoring 1 entry that is not a parameter of the convnet: extra.buffer"), "{stderr}");
    // SAFETY: getrusage fills the struct it is given.
    let peak_kib = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    };
    assert!(peak_kib < 2 << 20, "a child of this test peaked at {} MiB", peak_kib / 1024);
}
