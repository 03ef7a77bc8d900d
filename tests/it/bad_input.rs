//! Every bad input of issues 2 and 6, end to end through the built binary: a non-zero exit
//! code, one clear message on stderr naming the file (where there is one) and the problem,
//! never a panic or a backtrace, and (except for a diverging run) no training started.
//!
//! All cases go through one function, [`expect_failure`]; the data cases are small IDX files
//! (100 images) cut from the committed data/ and broken one way each.
use crate::common;
use crate::common::*;
use nnmnist::checkpoint;
use nnmnist::weights::RunState;
use nnmnist::weights::Entry;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tempfile::TempDir;


/// Where a failure may happen.
#[derive(Clone, Copy, PartialEq)]
enum When {
    /// Before any data is trained on: stdout must not show an epoch.
    BeforeTraining,
    /// During training (a diverging loss).
    DuringTraining,
}

/// Exit codes: 1 for nnmnist's own errors, 2 for clap's usage errors.
const ERROR: i32 = 1;
const USAGE: i32 = 2;

/// Runs `nnmnist args...` and checks that it fails cleanly: exit code `code`, stderr holding
/// every one of `phrases`, no panic, no backtrace hint, no training started unless `when`
/// allows it. Returns stderr.
fn expect_failure(args: &[&str], code: i32, phrases: &[&str], when: When) -> String {
    let out = output_with_patience(common::nnmnist().args(args).env_remove("RUST_BACKTRACE").env("NO_COLOR", "1"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("nnmnist {}\n--- exit: {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}", args.join(" "), out.status);
    // Shown with --nocapture (and for a failing test): what each bad input gets.
    eprintln!("[{:?}] nnmnist {} => {}", out.status.code(), args.join(" "), stderr.trim_end());
    assert_eq!(out.status.code(), Some(code), "wrong exit code (a signal if None)\n{context}");
    for phrase in phrases {
        assert!(stderr.contains(phrase), "stderr lacks {phrase:?}\n{context}");
    }
    assert!(stderr.contains("error:"), "no error line\n{context}");
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(bad) && !stdout.contains(bad), "{bad:?} in the output\n{context}");
    }
    if when == When::BeforeTraining {
        assert!(!stdout.contains("Epoch 1") && !stdout.contains("Epoch 0"), "training started\n{context}");
    }
    stderr.into_owned()
}

/// A bad input that nnmnist rejects before training: exit code 1.
fn fails(args: &[&str], phrases: &[&str]) -> String {
    expect_failure(args, ERROR, phrases, When::BeforeTraining)
}

/// A command line clap rejects: exit code 2.
fn usage_error(args: &[&str], phrases: &[&str]) -> String {
    expect_failure(args, USAGE, phrases, When::BeforeTraining)
}

/// A small data directory where `name` is replaced by `bytes` stored as `file_name`.
fn broken_data(name: &str, file_name: &str, bytes: &[u8]) -> (TempDir, PathBuf) {
    let dir = small_data(100);
    std::fs::remove_file(dir.path().join(name)).unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

// ---------------------------------------------------------------- data files

#[test]
fn small_data_dir_trains() {
    // The baseline the broken directories differ from: it works.
    let dir = small_data(100);
    let out = common::nnmnist()
        .args(["convnet", "--device", "cpu", "--epochs", "1", "--batch-size", "10", "--data-dir", s(dir.path())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Done!"));
}

#[test]
fn missing_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nowhere");
    fails(&["convnet", "--device", "cpu", "--data-dir", s(&dir)], &[s(&dir), "data directory", "does not exist"]);
    fails(&["show", "0", "--data-dir", s(&dir)], &[s(&dir), "does not exist"]);
    fails(&["eval", "--model", "convnet", "--weights", s(&weights_file(tmp.path())), "--device", "cpu", "--data-dir", s(&dir)], &[
        s(&dir),
        "does not exist",
    ]);
}

#[test]
fn missing_data_file() {
    for name in [TRAIN_IMAGES, TEST_LABELS] {
        let dir = small_data(100);
        std::fs::remove_file(dir.path().join(name)).unwrap();
        fails(&["convnet", "--device", "cpu", "--data-dir", s(dir.path())], &[s(dir.path()), name, "missing MNIST file"]);
    }
}

/// Every broken file of the shared table (tests/common): `nnmnist convnet` fails before
/// training, naming the file and what is wrong with it.
#[test]
fn every_broken_data_file_is_named() {
    for case in broken_data_cases() {
        let (dir, path) = case.dir();
        let stderr = fails(&["convnet", "--device", "cpu", "--epochs", "1", "--data-dir", s(dir.path())], &[]);
        case.check(dir.path(), &path, &stderr);
    }
}

#[test]
fn every_command_reports_bad_data() {
    let mut labels = real().test.take(100).labels;
    labels[3] = 200;
    let (dir, file) = broken_data(TEST_LABELS, TEST_LABELS, &labels_idx(&labels));
    let tmp = tempfile::tempdir().unwrap();
    let weights = weights_file(tmp.path());
    let phrases = [s(&file), "label 200 at index 3 is out of range"];
    fails(&["show", "0", "--data-dir", s(dir.path())], &phrases);
    fails(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&weights), "--data-dir", s(dir.path())], &phrases);
}

// ---------------------------------------------------------------- weights files

/// Valid convnet weights (random, PyTorch's init) in `dir`.
fn weights_file(dir: &Path) -> PathBuf {
    let path = dir.join("good.safetensors");
    write_entries(&path, convnet_entries());
    path
}

/// The eight tensors of a fresh convnet, F32, with PyTorch's names.
fn convnet_entries() -> Vec<Entry> {
    static ENTRIES: OnceLock<Vec<Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries()).clone()
}

fn write_entries(path: &Path, entries: Vec<Entry>) {
    checkpoint::save_to(path, &entries, None).unwrap();
}

/// Checks one bad weights file with `eval`, and with `convnet --init-from` and `show
/// --weights` too when `every_command` (each run of the binary costs a libtorch start, so
/// the cases that share a code path check it once).
fn weights_fail_in(file: &Path, phrases: &[&str], every_command: bool) {
    let all: Vec<&str> = std::iter::once(s(file)).chain(phrases.iter().copied()).collect();
    let data = repo_data();
    fails(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(file), "--data-dir", s(&data)], &all);
    if every_command {
        fails(&["convnet", "--device", "cpu", "--epochs", "1", "--init-from", s(file), "--data-dir", s(&data)], &all);
        fails(&["show", "0", "--weights", s(file), "--data-dir", s(&data)], &all);
    }
}

fn weights_fail(file: &Path, phrases: &[&str]) {
    weights_fail_in(file, phrases, false)
}

#[test]
fn weights_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    weights_fail_in(&tmp.path().join("absent.safetensors"), &["cannot read weights file"], true);
}

#[test]
fn weights_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("empty.safetensors");
    std::fs::write(&path, b"").unwrap();
    weights_fail(&path, &["empty file, not a weights file"]);
}

#[test]
fn weights_not_safetensors() {
    let tmp = tempfile::tempdir().unwrap();
    // The start of a zip cut short (no directory), and plain text: neither is safetensors.
    let path = tmp.path().join("model.pt");
    std::fs::write(&path, b"PK\x03\x04\x14\x00\x00\x00\x08\x00 not a safetensors header at all").unwrap();
    weights_fail(&path, &["a truncated or damaged zip file, unreadable as torch.save's format"]);
    let path = tmp.path().join("notes.safetensors");
    std::fs::write(&path, "weights: see the README\n".repeat(10)).unwrap();
    weights_fail_in(&path, &["neither a safetensors nor a PyTorch file"], true);
    // A safetensors file cut short.
    let good = std::fs::read(weights_file(tmp.path())).unwrap();
    let path = tmp.path().join("cut.safetensors");
    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    weights_fail(&path, &["not a safetensors file (tensor", "runs past the end of the file (the data section has"]);
}

#[test]
fn weights_missing_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nobias.safetensors");
    write_entries(&path, convnet_entries().into_iter().filter(|e| e.name != "model.9.bias").collect());
    weights_fail_in(&path, &["missing tensor model.9.bias"], true);
}

#[test]
fn weights_wrong_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("shape.safetensors");
    let entries = convnet_entries()
        .into_iter()
        .map(|e| if e.name == "model.7.weight" { Entry::f32(e.name, vec![100, 575], vec![0.0; 100 * 575]) } else { e })
        .collect();
    write_entries(&path, entries);
    weights_fail_in(&path, &["tensor model.7.weight has shape [100, 575], expected [100, 576]"], true);
}

/// Writes the convnet's tensors with `model.0.weight` stored as `dtype` (raw bytes of the
/// right size), using the safetensors crate directly since nnmnist writes F32/F64 only.
fn write_with_dtype(path: &Path, dtype: safetensors::Dtype, bytes_per_value: usize) {
    let entries = convnet_entries();
    let raw: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = entries
        .iter()
        .map(|e| {
            if e.name == "model.0.weight" {
                (e.name.clone(), e.shape.clone(), dtype, vec![0u8; 72 * bytes_per_value])
            } else {
                (e.name.clone(), e.shape.clone(), safetensors::Dtype::F32, e.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect())
            }
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = raw
        .iter()
        .map(|(n, shape, dt, b)| (n.clone(), safetensors::tensor::TensorView::new(*dt, shape.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn weights_unsupported_dtype() {
    let tmp = tempfile::tempdir().unwrap();
    for (dtype, size, name) in [(safetensors::Dtype::I64, 8, "I64"), (safetensors::Dtype::F16, 2, "F16")] {
        let path = tmp.path().join(format!("{name}.safetensors"));
        write_with_dtype(&path, dtype, size);
        weights_fail_in(&path, &[&format!("tensor model.0.weight has dtype {name}"), "F32 or F64"], name == "I64");
    }
}

#[test]
fn weights_of_neither_network_for_show() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("other.safetensors");
    write_entries(&path, vec![Entry::f32("encoder.weight", vec![2, 2], vec![0.0; 4])]);
    fails(&["show", "0", "--weights", s(&path), "--data-dir", s(&repo_data())], &[
        s(&path),
        "neither convnet weights",
        "encoder.weight",
    ]);
}

#[test]
fn resume_from_a_file_that_is_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = weights_file(tmp.path());
    fails(&["convnet", "--device", "cpu", "--resume", s(&plain), "--data-dir", s(&repo_data())], &[
        s(&plain),
        "cannot be resumed",
    ]);
    let mlp = tmp.path().join("mlp.safetensors");
    let state = RunState { model: "mlp".into(), epochs_done: 1, next_batch: 0, hyper: serde_json::json!({}), run: None, threads: None, format: None, data: None };
    checkpoint::save_to(&mlp, &convnet_entries(), Some(&state)).unwrap();
    fails(&["convnet", "--device", "cpu", "--resume", s(&mlp), "--data-dir", s(&repo_data())], &[
        s(&mlp),
        "a checkpoint of the mlp model",
    ]);
    let missing = tmp.path().join("gone.safetensors");
    fails(&["convnet", "--device", "cpu", "--resume", s(&missing)], &[s(&missing), "cannot read"]);
}

// ---------------------------------------------------------------- output files

#[test]
fn save_into_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("no/such/dir/convnet.safetensors");
    let err = fails(&["convnet", "--device", "cpu", "--epochs", "1", "--save", s(&target), "--data-dir", s(&repo_data())], &[
        s(&target),
        "does not exist",
    ]);
    assert!(!err.contains("Using"), "{err}");
    assert!(!target.exists());
}

#[test]
fn save_into_an_unwritable_place() {
    // /proc takes no new files, even for root (chmod would not stop root).
    fails(&["convnet", "--device", "cpu", "--epochs", "1", "--save", "/proc/nnmnist.safetensors"], &[
        "/proc/nnmnist.safetensors",
        "cannot create its lock file /proc/.nnmnist.safetensors.lock",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    fails(&["convnet", "--device", "cpu", "--epochs", "1", "--save", s(tmp.path())], &[s(tmp.path()), "it is a directory"]);
}

#[test]
fn metrics_into_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("no/m.jsonl");
    let data = small_data(100);
    fails(&["convnet", "--device", "cpu", "--epochs", "1", "--metrics", s(&target), "--data-dir", s(data.path())], &[
        s(&target),
        "cannot open metrics file",
    ]);
}

// ---------------------------------------------------------------- devices and values

#[test]
fn cuda_that_is_not_there() {
    let gpus = tch::Cuda::device_count();
    if gpus > 0 {
        // On a GPU machine: a device index past the last one.
        let spec = format!("cuda:{gpus}");
        fails(&["convnet", "--device", &spec, "--epochs", "1"], &[&format!("--device cuda:{gpus}: only {gpus} CUDA device(s) here")]);
        return;
    }
    fails(&["convnet", "--device", "cuda", "--epochs", "1"], &["--device cuda", "no CUDA device is available"]);
    fails(&["convnet", "--device", "cuda:1", "--epochs", "1"], &["no CUDA device is available"]);
    let tmp = tempfile::tempdir().unwrap();
    fails(&["eval", "--model", "convnet", "--device", "cuda", "--weights", s(&weights_file(tmp.path()))], &[
        "no CUDA device is available",
    ]);
}

/// An NVIDIA driver libtorch cannot use (a fake /proc/driver/nvidia/version, 550, older than
/// what the CUDA 13.0 torch needs): `--device auto` says so in one line before running on
/// the CPU, and `--device cuda` fails saying the same. Never a silent CPU run. (On a GPU
/// machine CUDA_VISIBLE_DEVICES="" hides the GPU from libtorch, so the test runs there too.)
#[test]
fn an_unusable_nvidia_driver_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let version = tmp.path().join("version");
    std::fs::write(&version, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n").unwrap();
    let data = small_data(100);
    let run = |device: &str| {
        common::nnmnist()
            .args(["convnet", "--device", device, "--epochs", "1", "--batch-size", "10", "--data-dir", s(data.path())])
            .env("NNMNIST_NVIDIA_VERSION_FILE", &version)
            .env("CUDA_VISIBLE_DEVICES", "")
            .output()
            .unwrap()
    };
    let torch = env!("NNMNIST_TORCH_VERSION");
    let cuda = env!("NNMNIST_TORCH_CUDA");
    let found = format!("NVIDIA driver 550.54.14 found ({})", version.display());
    let auto = run("auto");
    let stderr = String::from_utf8_lossy(&auto.stderr);
    assert!(auto.status.success(), "{stderr}");
    let line = stderr.lines().find(|l| l.contains("--device auto runs on the CPU")).unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(line.contains(&found) && line.contains(torch), "{line}");
    if !cuda.is_empty() {
        assert!(line.contains("scripts/setup"), "names the command that fixes it: {line}");
    }
    let err = String::from_utf8_lossy(&run("cuda").stderr).into_owned();
    assert!(err.contains("--device cuda: no CUDA device is available to libtorch") && err.contains(&found), "{err}");
}

#[test]
fn unknown_device() {
    fails(&["convnet", "--device", "tpu"], &["--device tpu", "expected auto, cpu, cuda or cuda:N"]);
}

/// (extra arguments of `nnmnist convnet`, the phrase its error must hold); the first six are
/// the values a user is most likely to mistype, checked end to end, the others through the library.
const CONVNET_BAD_VALUES: &[(&[&str], &str)] = &[
    (&["--batch-size", "0"], "--batch-size must be at least 1"),
    (&["--epochs", "0"], "--epochs must be at least 1"),
    (&["--lr", "nan"], "--lr must be a finite number above 0, got NaN"),
    (&["--lr", "-1"], "--lr must be a finite number above 0, got -1"),
    (&["--weight-decay", "inf"], "--weight-decay must be a finite number, 0 or above, got inf"),
    (&["--threads", "0"], "--threads must be at least 1"),
    (&["--train-size", "0"], "--train-size must be at least 1"),
    (&["--test-size", "0"], "--test-size must be at least 1"),
    (&["--lr", "0"], "--lr must be a finite number above 0, got 0"),
    (&["--lr", "inf"], "--lr must be a finite number above 0, got inf"),
    (&["--weight-decay", "-0.1"], "--weight-decay must be a finite number, 0 or above, got -0.1"),
    (&["--lr=-1"], "--lr must be a finite number above 0, got -1"),
];

fn convnet_argv<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    ["convnet", "--device", "cpu"].iter().copied().chain(extra.iter().copied()).collect()
}

#[test]
fn convnet_bad_values() {
    for (extra, phrase) in &CONVNET_BAD_VALUES[..6] {
        fails(&convnet_argv(extra), &[phrase]);
    }
}

#[test]
fn convnet_bad_values_in_process() {
    // The same resolution and checks as the binary, in process (each run of the binary costs
    // a libtorch start); every value is refused before any data is read.
    for (extra, phrase) in CONVNET_BAD_VALUES {
        let argv = convnet_argv(extra);
        let err = format!("{:#}", run_cli(&argv, &never()).expect_err(phrase));
        assert!(err.contains(phrase), "{argv:?}: {err}");
    }
}

#[test]
fn convnet_sizes_beyond_the_data() {
    let data = small_data(100);
    let dir = s(data.path());
    fails(&["convnet", "--device", "cpu", "--train-size", "999999", "--data-dir", dir], &["--train-size 999999 is larger than the 100 training images in", dir]);
    fails(&["convnet", "--device", "cpu", "--test-size", "101", "--data-dir", dir], &["--test-size 101 is larger than the 100 test images in", dir]);
    fails(&["convnet", "--device", "cpu", "--batch-size", "101", "--data-dir", dir], &["--batch-size 101", "larger than the 100 training images"]);
}

#[test]
fn unparsable_values() {
    // End to end: clap's usage errors exit with 2.
    usage_error(&["convnet", "--lr", "fast"], &["invalid value 'fast'", "--lr"]);
    // The rest through clap in process (the same parser).
    use clap::Parser;
    let cases: &[(&[&str], &str)] = &[
        (&["convnet", "--batch-size", "-1"], "'-1'"),
        (&["convnet", "--epochs", "1.5"], "invalid value '1.5'"),
        (&["show", "minus-one"], "invalid value 'minus-one'"),
        (&["show", "-1"], "'-1'"),
        (&["convnet", "--no-such-flag"], "--no-such-flag"),
        (&["eval", "--model", "resnet", "--weights", "x"], "invalid value 'resnet'"),
        (&["eval", "--model", "convnet"], "--weights"),
        (&["convnet", "--resume", "a", "--init-from", "b"], "cannot be used with"),
    ];
    for (args, phrase) in cases {
        let argv: Vec<&str> = std::iter::once("nnmnist").chain(args.iter().copied()).collect();
        let err = nnmnist::cli::Cli::try_parse_from(&argv).expect_err(phrase);
        assert_eq!(err.exit_code(), USAGE, "{argv:?}");
        assert!(err.to_string().contains(phrase), "{argv:?}: {err}");
    }
}

#[test]
fn diverging_loss_stops_the_run() {
    let data = small_data(100);
    expect_failure(
        &["convnet", "--device", "cpu", "--epochs", "1", "--batch-size", "10", "--lr", "1e12", "--data-dir", s(data.path())],
        ERROR,
        &["in epoch 1, batch", "diverged", "smaller learning rate (--lr)"],
        When::DuringTraining,
    );
}

#[test]
fn show_index_out_of_range() {
    fails(&["show", "10000", "--data-dir", s(&repo_data())], &["test image 10000 does not exist", "10000 images (0 to 9999)"]);
    let data = small_data(100);
    fails(&["show", "100", "--data-dir", s(data.path())], &["test image 100 does not exist", "100 images (0 to 99)"]);
}

// ---------------------------------------------------------------- the MLP's values

#[test]
fn mlp_bad_values() {
    let cases: &[(&[&str], &str)] = &[
        (&["--sizes", "100,30,10"], "--sizes must start at 784"),
        (&["--sizes", "784,30,9"], "--sizes must end at 10"),
        (&["--sizes", "784"], "--sizes needs at least an input and an output layer"),
        (&["--sizes", "784,0,10"], "every layer needs at least one neuron"),
        (&["--eta", "nan"], "--eta must be a finite number above 0, got NaN"),
        (&["--eta", "-3"], "--eta must be a finite number above 0, got -3"),
        (&["--lambda", "-1"], "--lambda must be a finite number, 0 or above, got -1"),
        (&["--lambda", "inf"], "--lambda must be a finite number, 0 or above"),
        (&["--epochs", "0"], "--epochs must be at least 1"),
        (&["--batch-size", "0"], "--batch-size must be at least 1"),
    ];
    for (extra, phrase) in cases {
        let args: Vec<&str> = ["mlp"].iter().copied().chain(extra.iter().copied()).collect();
        fails(&args, &[phrase]);
    }
    fails(&["mlp", "--train-size", "999999"], &["--train-size 999999", "60000"]);
}

#[test]
fn mlp_bad_data_and_weights() {
    let (dir, file) = broken_data(TRAIN_LABELS, TRAIN_LABELS, &[]);
    fails(&["mlp", "--epochs", "1", "--data-dir", s(dir.path())], &[s(&file), "empty file"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nobias.safetensors");
    // An nn.Sequential(Linear(784, 30), Sigmoid(), Linear(30, 10)) state_dict without 2.bias.
    write_entries(&path, vec![
        Entry::f64("0.weight", vec![30, 784], vec![0.0; 30 * 784]),
        Entry::f64("0.bias", vec![30], vec![0.0; 30]),
        Entry::f64("2.weight", vec![10, 30], vec![0.0; 300]),
    ]);
    fails(&["eval", "--model", "mlp", "--weights", s(&path), "--data-dir", s(&repo_data())], &[s(&path), "missing tensor 2.bias"]);
    fails(&["mlp", "--init-from", s(&path), "--data-dir", s(&repo_data())], &[s(&path), "missing tensor 2.bias"]);
}
