//! `scripts/compare --layers`: nnmnist (`nnmnist trace`) and PyTorch
//! (scripts.reference.nn_convnet --trace) take one step from the same weights on the same
//! batch, and the report names the first tensor where they part. On the CPU, with one thread
//! on both sides, every convnet row is exactly 0; weights perturbed in one layer for the Rust
//! side make that layer's output the first divergence, and the exit status 1.
use crate::common::root;
use nnmnist::checkpoint;
use nnmnist::convnet::Net;
use nnmnist::weights::{Data, Entry};
use std::path::Path;
use std::process::Command;

/// Runs scripts.compare --layers for the convnet with `extra`; returns (exit code, stdout).
fn compare(out: &Path, extra: &[&str]) -> (Option<i32>, String) {
    compare_model("convnet", out, extra)
}

fn compare_model(model: &str, out: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let python = root().join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/setup (scripts/test does)", python.display());
    let result = Command::new(python)
        .args(["-m", "scripts.compare"])
        .args(["--layers", "--model", model, "--device", "cpu", "--bin", env!("CARGO_BIN_EXE_nnmnist")])
        .args(["--out", out.to_str().unwrap(), "--data-dir", root().join("data").to_str().unwrap()])
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    (result.status.code(), stdout)
}

/// The rows `nnmnist diff --format json` gave the report (OUT/layers.jsonl, the summary
/// line last): (tensor, max abs diff, elements outside tolerance).
fn rows(out: &Path) -> Vec<(String, f64, u64)> {
    let text = std::fs::read_to_string(out.join("layers.jsonl")).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (summary, rows) = records.split_last().expect("a summary line");
    assert!(summary.get("summary").is_some(), "{summary}");
    rows.iter().map(|r| (r["tensor"].as_str().unwrap().to_string(), r["max_abs"].as_f64().unwrap(), r["outside"].as_u64().unwrap())).collect()
}

#[test]
fn convnet_layers_are_identical_on_the_cpu_and_a_perturbed_layer_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("w.safetensors");
    let entries = Net::new(tch::Device::Cpu, 3).entries();
    checkpoint::save_to(&weights, &entries, None).unwrap();

    let (code, stdout) = compare(&tmp.path().join("same"), &["--weights", weights.to_str().unwrap()]);
    assert_eq!(code, Some(0), "identical weights must compare clean");
    let table = rows(&tmp.path().join("same"));
    assert_eq!(table.len(), 10 + 1 + 8 + 8, "10 layer outputs, the loss, 8 gradients, 8 parameters after the step");
    for (name, diff, outside) in &table {
        assert_eq!((*diff, *outside), (0.0, 0), "{name}: not bit-identical on the CPU");
    }
    assert!(stdout.trim_end().ends_with("first divergence: none"), "{stdout}");

    // One element of model.7.weight moved by 1e-3 on the Rust side only.
    let perturbed = tmp.path().join("w7.safetensors");
    let moved: Vec<Entry> = entries
        .into_iter()
        .map(|mut e| {
            if let (true, Data::F32(v)) = (e.name == "model.7.weight", &mut e.data) {
                v[123] += 1e-3;
            }
            e
        })
        .collect();
    checkpoint::save_to(&perturbed, &moved, None).unwrap();
    let (code, stdout) = compare(&tmp.path().join("moved"), &["--weights", weights.to_str().unwrap(), "--rust-weights", perturbed.to_str().unwrap()]);
    assert_eq!(code, Some(1), "a divergence exits 1");
    let table = rows(&tmp.path().join("moved"));
    let first = table.iter().position(|(_, _, outside)| *outside > 0).expect("a diverging row");
    assert_eq!(table[first].0, "model.7", "the perturbed layer's output parts first");
    assert!(table[..first].iter().all(|(_, d, _)| *d == 0.0), "the layers before it stay identical");
    assert!(stdout.trim_end().ends_with("first divergence: model.7"), "{stdout}");
}

/// The MLP (float64, the from-scratch backprop against autograd): within float64's
/// assert_close tolerance in every row, both costs, with L2.
#[test]
fn mlp_layers_agree_within_float64_tolerance() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, extra) in [&["--cost", "quadratic"][..], &["--cost", "cross-entropy", "--lambda", "5"][..]].into_iter().enumerate() {
        let (code, stdout) = compare_model("mlp", &tmp.path().join(i.to_string()), extra);
        assert_eq!(code, Some(0), "{extra:?}");
        let table = rows(&tmp.path().join(i.to_string()));
        // 784,30,10: z and a of 2 layers, the loss, 4 gradients, 4 parameters after the step.
        assert_eq!(table.len(), 4 + 1 + 4 + 4, "{stdout}");
        assert!(table.iter().all(|(_, _, outside)| *outside == 0), "{stdout}");
        assert!(stdout.trim_end().ends_with("first divergence: none"), "{stdout}");
    }
}
