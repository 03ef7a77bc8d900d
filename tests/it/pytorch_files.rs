//! PyTorch's own files (torch.save: a state_dict, a plain dict, training checkpoints that
//! nest it), wherever nnmnist reads weights: `eval`, `--init-from`, `show`. The fixtures in
//! tests/fixtures/pt/ are written by PyTorch itself, with PyTorch's own evaluation of each in
//! expected.json:
//!
//!     .venv/bin/python -m scripts.reference.make_pt_fixtures
//!
//! Tolerance: the correct count exactly; the average loss within 1e-5 absolute, as for the
//! safetensors state_dict in tests/it/convnet_parity.rs (measured: the convnet's losses agree to
//! the last bit; the MLP's within one ulp, the sums run in another order).
use crate::common;
use crate::common::{never, run_cli};
use nnmnist::weights::{Data, Weights};
use serde_json::Value;
use std::path::{Path, PathBuf};

const REBUILD: &str = ".venv/bin/python -m scripts.reference.make_pt_fixtures";

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
            let shape = w.entries.get(*key).unwrap_or_else(|| panic!("{name}: no {key}; it has {:?}", w.entries.keys().collect::<Vec<_>>())).shape.clone();
            let entry = w.get(key, &shape).unwrap_or_else(|err| panic!("{name}: {err:#}"));
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
        ("not_a_dict.pt", "missing tensor model.0.weight (the file has: 0, 1)"),
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
    assert_same_values(&module, &sd);
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

/// Every float tensor of `b` is in `a` with the same shape and values.
fn assert_same_values(a: &Weights, b: &Weights) {
    assert!(!b.entries.is_empty());
    for (name, e) in &b.entries {
        let want = b.get(name, &e.shape).unwrap_or_else(|err| panic!("{err:#}"));
        let got = a.get(name, &e.shape).unwrap_or_else(|err| panic!("{err:#}"));
        assert_eq!(got.to_f64(), want.to_f64(), "{}: {name} differs from {}", a.path.display(), b.path.display());
    }
}

/// Runs `scripts.reference.make_pt_fixtures FLAG DIR` (torch.save writes every file) into a fresh directory.
fn made_by_torch(flag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = common::command(common::python())
        .args(["-m", "scripts.reference.make_pt_fixtures", flag, common::s(dir.path())])
        .current_dir(common::root())
        .output()
        .unwrap();
    assert!(out.status.success(), "make_pt_fixtures {flag}: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// The files of `make_pt_fixtures.py --cases`, made once per test binary.
fn cases() -> &'static Path {
    static CASES: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CASES.get_or_init(|| made_by_torch("--cases")).path()
}

/// torch.save names the zip's inner folder after the file's stem, so the zip's layout shifts
/// with the name's length (a zip reader that mishandles one layout fails on one length: with
/// pytorch-reader, 21 characters, "Invalid Central Directory header"). Every length 1..64, a state_dict and a training checkpoint,
/// three models: each reads, with the values of the same weights saved as safetensors.
#[test]
fn every_stem_length_reads_for_every_form_and_model() {
    let dir = made_by_torch("--stems");
    for model in ["convnet", "mlp_784_30_10", "mlp_784_16_16_10"] {
        let reference = Weights::load(&dir.path().join(format!("{model}.safetensors"))).unwrap();
        for form in ["state_dict", "checkpoint"] {
            for n in 1..=64 {
                let path = dir.path().join(model).join(form).join(format!("{}.pt", "s".repeat(n)));
                let w = Weights::load(&path).unwrap_or_else(|e| panic!("stem of {n} characters: {e:#}"));
                assert_same_values(&w, &reference);
                assert_eq!(w.entries.len(), reference.entries.len(), "{}", path.display());
                if n == 21 {
                    // nnmnist diff reads the same zips.
                    let safetensors = dir.path().join(format!("{model}.safetensors"));
                    // The checkpoint's optimizer state is compared too: its tensors are only in A.
                    let out = common::nnmnist().args(["diff", common::s(&path), common::s(&safetensors), "--format", "json"]).output().unwrap();
                    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                    let (summary, rows) = rows.split_last().unwrap();
                    let only_a = rows.iter().filter(|r| r["verdict"] == "only_a").count();
                    assert_eq!(summary["summary"]["within"], reference.entries.len(), "diff of {}: {summary}", path.display());
                    if form == "state_dict" {
                        assert!(out.status.success() && only_a == 0, "diff of {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
                    } else {
                        assert_eq!((out.status.code(), summary["summary"]["verdict"].as_str()), (Some(1), Some("different")), "{summary}");
                        assert!(only_a > 0 && rows.iter().all(|r| r["verdict"] == "within" || r["tensor"].as_str().unwrap().starts_with("optimizer_state_dict.")), "{rows:?}");
                    }
                }
            }
        }
    }
}

/// Runs `nnmnist ARGS`: whether it succeeded, its stderr, and its own peak RSS in KiB.
fn run_measured(args: &[&str]) -> (bool, String, i64) {
    common::run_measured(common::nnmnist().args(args))
}

fn eval_args(path: &Path) -> Vec<String> {
    ["eval", "--model", "convnet", "--device", "cpu", "--weights", common::s(path), "--data-dir", common::s(&common::repo_data())].iter().map(|s| s.to_string()).collect()
}

/// Entries that are not parameters are never materialised, whatever their size: three
/// expanded 2**19 x 2**10 entries named like weights (2 GiB each as values) cost no more
/// memory than the plain state_dict (within 100 MiB); a parameter of a huge, wrong shape is
/// refused by its shape before any of it is read.
#[test]
fn huge_entries_are_checked_before_any_value_is_read() {
    let dir = cases();
    let args = |f: &str| eval_args(&dir.join(f));
    let plain = args("plain.pt");
    let (ok, stderr, plain_kib) = run_measured(&plain.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    let extras = args("huge_extras.pt");
    let (ok, stderr, extras_kib) = run_measured(&extras.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("ignoring 3 entries that are not parameters of the convnet: extra.a.weight, extra.b.weight, extra.c.weight"), "{stderr}");
    eprintln!("peak RSS: plain {} MiB, with huge extras {} MiB", plain_kib / 1024, extras_kib / 1024);
    assert!(extras_kib < plain_kib + 100 * 1024, "with huge extras {extras_kib} KiB against plain {plain_kib} KiB");
    let param = args("huge_param.pt");
    let (ok, stderr, param_kib) = run_measured(&param.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && stderr.contains("tensor model.7.weight has shape [524288, 1024], expected [100, 576]"), "{stderr}");
    assert!(param_kib < plain_kib + 100 * 1024, "a huge wrong parameter peaked at {param_kib} KiB");
}

/// A zip naming one storage twice is refused, naming the entry: torch.load reads the first
/// copy, a zip reader may take the last, and the two must never disagree silently.
#[test]
fn a_duplicate_zip_entry_is_refused_by_name() {
    let path = cases().join("duplicate_entry.pt");
    let err = format!("{:#}", Weights::load(&path).unwrap_err());
    assert!(err.contains(common::s(&path)) && err.contains("a zip that holds two entries named plain/data/0"), "{err}");
}

/// Entries that cannot be read (complex, sparse, meta-device), beside the state_dict or in
/// the optimizer state of a checkpoint, are skipped with a note; the parameters read.
#[test]
fn unreadable_entries_that_are_not_parameters_are_skipped() {
    let reference = Weights::load(&cases().join("reference.safetensors")).unwrap();
    for f in ["unreadable_extras.pt", "unreadable_optimizer.pt"] {
        let w = Weights::load(&cases().join(f)).unwrap_or_else(|e| panic!("{f}: {e:#}"));
        assert_same_values(&w, &reference);
    }
    let args = eval_args(&cases().join("unreadable_extras.pt"));
    let (ok, stderr, _) = run_measured(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    assert!(stderr.contains("ignoring 3 entries that are not parameters of the convnet: extra.complex, extra.meta.weight, extra.sparse.weight"), "{stderr}");
}

/// Keys under `module.` and `_orig_mod.` in either order (DDP around torch.compile, and the
/// reverse) read with a note naming the prefix removed; an unknown prefix gets a hint.
#[test]
fn wrapper_prefixes_are_removed_with_a_note_and_unknown_ones_named() {
    let reference = Weights::load(&cases().join("reference.safetensors")).unwrap();
    for (f, prefix) in [("ddp_compile.pt", "module._orig_mod."), ("compile_ddp.pt", "_orig_mod.module.")] {
        let path = cases().join(f);
        assert_same_values(&Weights::load(&path).unwrap_or_else(|e| panic!("{f}: {e:#}")), &reference);
        let (ok, stderr, _) = run_measured(&eval_args(&path).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(ok && stderr.contains(&format!("every key of its state_dict starts with \"{prefix}\"")), "{f}: {stderr}");
    }
    let path = cases().join("unknown_prefix.pt");
    let (ok, stderr, _) = run_measured(&eval_args(&path).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && stderr.contains("missing tensor model.0.weight") && stderr.contains("every key starts with \"wrapper.\""), "{stderr}");
}

/// `{"model": module, "epoch": 3}`: the whole module's parameters, under its own state_dict
/// names, for both models.
#[test]
fn a_checkpoint_holding_a_whole_module_reads_its_parameters() {
    for (f, reference) in [("module_checkpoint.pt", "reference.safetensors"), ("mlp_module_checkpoint.pt", "mlp_reference.safetensors")] {
        let w = Weights::load(&cases().join(f)).unwrap_or_else(|e| panic!("{f}: {e:#}"));
        let reference = Weights::load(&cases().join(reference)).unwrap();
        assert_same_values(&w, &reference);
        assert_eq!(w.entries.len(), reference.entries.len(), "{f}");
    }
}

/// Broken files are named for what they are.
#[test]
fn broken_files_are_named_for_what_they_are() {
    for (f, phrase) in [
        ("meta_param.pt", "tensor model.0.weight cannot be read: a meta-device tensor"),
        ("truncated.pt", "a truncated or damaged zip file"),
        ("legacy_truncated.pt", "a PyTorch file in the legacy format"),
        ("big_endian.pt", "a PyTorch file saved on a big-endian machine (its byteorder entry says so): nnmnist reads little-endian files only"),
    ] {
        let path = cases().join(f);
        let (ok, stderr, _) = run_measured(&eval_args(&path).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!ok && stderr.contains(common::s(&path)) && stderr.contains(phrase), "{f}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The model-independent API: every entry described in file order without reading values,
/// then one tensor read on demand.
#[test]
fn tensor_index_describes_entries_in_file_order_and_reads_one() {
    use nnmnist::tensors::{DType, TensorFile};
    let path = cases().join("unreadable_extras.pt");
    let file = TensorFile::open(&path, "tensor file").unwrap();
    let index = &file.tensors;
    let names: Vec<&str> = index.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[..8], ["model.0.weight", "model.0.bias", "model.4.weight", "model.4.bias", "model.7.weight", "model.7.bias", "model.9.weight", "model.9.bias"]);
    assert_eq!(names[8..], ["extra.complex", "extra.sparse.weight", "extra.meta.weight"]);
    assert_eq!((index[0].shape.as_slice(), index[0].dtype), (&[8, 1, 3, 3][..], Some(DType::F32)));
    assert_eq!(index[8].dtype, Some(DType::C64));
    assert_eq!(index[10].unreadable(), Some("a meta-device tensor: the file holds its shape but no values"), "{:?}", index[10]);
    let reference = Weights::load(&cases().join("reference.safetensors")).unwrap();
    let view = file.read(&index[4]).unwrap();
    let values: Vec<f32> = view.into_contiguous(u64::MAX).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values, reference.get("model.7.weight", &[100, 576]).unwrap().to_f32());
    let err = format!("{:#}", file.read(&index[10]).unwrap_err());
    assert_eq!(err, format!("{}: cannot read tensor extra.meta.weight: a meta-device tensor: the file holds its shape but no values", path.display()));
}

/// Views read as PyTorch shows them (channels_last, a slice at a storage offset of a
/// channels_last tensor, a transpose, two tensors sharing one storage, float64, a stride-0
/// expansion), and so do a deflated zip and the legacy format.
#[test]
fn views_deflated_zips_and_the_legacy_format_read_as_pytorch_shows_them() {
    let views = Weights::load(&cases().join("views.pt")).unwrap();
    assert_same_values(&views, &Weights::load(&cases().join("reference_views.safetensors")).unwrap());
    let reference = Weights::load(&cases().join("reference.safetensors")).unwrap();
    for f in ["deflated.pt", "legacy.pt"] {
        assert_same_values(&Weights::load(&cases().join(f)).unwrap_or_else(|e| panic!("{f}: {e:#}")), &reference);
    }
}

/// MLP weights whose layers are too wide for this machine get the memory estimate and
/// refusal of `--sizes`, from their shapes alone, before any value is read or buffer
/// allocated (784,2**26,10: about 1.7 TB, a few hundred bytes on disk).
#[test]
fn mlp_weights_too_large_to_evaluate_are_refused_before_allocation() {
    let path = cases().join("mlp_too_wide.pt");
    let data = common::repo_data();
    let args = ["eval", "--model", "mlp", "--weights", common::s(&path), "--data-dir", common::s(&data)];
    let (ok, stderr, kib) = run_measured(&args);
    assert!(!ok && stderr.contains("layer sizes 784,67108864,10") && stderr.contains("need about") && stderr.contains("GiB available"), "{stderr}");
    assert!(kib < 2 << 20, "peaked at {} MiB", kib / 1024);
}

/// Damaged torch.save files (bytes changed anywhere, or cut short) are refused or read,
/// never a panic: 400 seeded mutations of a real state_dict, each loaded and its parameters
/// read.
#[test]
fn damaged_pytorch_files_never_panic() {
    use rand::{Rng, SeedableRng};
    let original = std::fs::read(fixtures().join("convnet_state_dict.pt")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(16);
    for i in 0..400 {
        let mut bytes = original.clone();
        if i % 4 == 0 {
            bytes.truncate(rng.gen_range(0..bytes.len()));
        } else {
            // The pickle and the zip's directory are near the start and the end.
            for _ in 0..rng.gen_range(1..8) {
                let at = if rng.gen_bool(0.5) { rng.gen_range(0..2048.min(bytes.len())) } else { rng.gen_range(bytes.len() - 2048..bytes.len()) };
                bytes[at] = rng.gen();
            }
        }
        let path = tmp.path().join(format!("m{i}.pt"));
        std::fs::write(&path, &bytes).unwrap();
        let Ok(w) = Weights::load(&path) else { continue };
        for (name, shape) in [("model.0.weight", &[8, 1, 3, 3][..]), ("model.7.weight", &[100, 576][..]), ("model.9.bias", &[10][..])] {
            let _ = w.get(name, shape);
        }
    }
}
