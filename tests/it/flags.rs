//! Flag values, end to end through the binary (and, where each run of the binary would cost
//! a libtorch start, through the same parser and checks in process): each bad value refused
//! before any work with one message naming the flag, the value and what is allowed; a
//! default that does not fit names its flag; `--device` says what is there; a diverging run
//! stops, naming the rate.
use crate::common;
use crate::common::*;
use nnmnist::mlp::Network;

// ---------------------------------------------------------------- devices

#[test]
fn cuda_that_is_not_there() {
    let gpus = tch::Cuda::device_count();
    if gpus > 0 {
        // On a GPU machine: a device index past the last one.
        let spec = format!("cuda:{gpus}");
        refused(&["convnet", "--device", &spec, "--epochs", "1"], &[&format!("--device cuda:{gpus}: only {gpus} CUDA device(s) here")]);
        return;
    }
    refused(&["convnet", "--device", "cuda", "--epochs", "1"], &["--device cuda", "no CUDA device is available"]);
    refused(&["convnet", "--device", "cuda:1", "--epochs", "1"], &["no CUDA device is available"]);
    let tmp = tempfile::tempdir().unwrap();
    refused(&["eval", "--model", "convnet", "--device", "cuda", "--weights", s(&convnet_weights_file(tmp.path()))], &[
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
    refused(&["convnet", "--device", "tpu"], &["--device tpu", "expected auto, cpu, cuda or cuda:N"]);
}

// ---------------------------------------------------------------- the convnet

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
        refused(&convnet_argv(extra), &[phrase]);
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
    refused(&["convnet", "--device", "cpu", "--train-size", "999999", "--data-dir", dir], &["--train-size 999999 is larger than the 100 training images in", dir]);
    refused(&["convnet", "--device", "cpu", "--test-size", "101", "--data-dir", dir], &["--test-size 101 is larger than the 100 test images in", dir]);
    refused(&["convnet", "--device", "cpu", "--batch-size", "101", "--data-dir", dir], &["--batch-size 101", "larger than the 100 training images"]);
}

#[test]
fn rates_beyond_float32_are_refused_for_the_convnet() {
    refused(&["convnet", "--lr", "1e39"], &["--lr must be at most 3.4028235e38 (the convnet computes in float32), got 1e39"]);
    refused(&["trace", "--model", "convnet", "--weights", "x", "--out", "y", "--weight-decay", "1e308"], &["--weight-decay must be at most"]);
}

#[test]
fn float32_edges_of_the_convnet_rates() {
    let data = small_data(700);
    // f32::MAX itself is a float32: accepted (the run diverges, which says so).
    let out = run(&["convnet", "--device", "cpu", "--threads", "1", "--train-size", "640", "--test-size", "100", "--epochs", "1", "--lr", "3.4028235e38", "--data-dir", s(data.path())]);
    assert!(!stderr_of(&out).contains("must be at most"), "{}", stderr_of(&out));
    refused(&["convnet", "--lr", "1e-46"], &["--lr 1e-46 is 0 in float32"]);
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

// ---------------------------------------------------------------- the MLP

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
        refused(&args, &[phrase]);
    }
    refused(&["mlp", "--train-size", "999999"], &["--train-size 999999", "60000"]);
}

#[test]
fn layer_sizes_that_cannot_fit_in_memory_are_refused_with_the_size() {
    refused(&["mlp", "--sizes", "784,100000000,10"], &["--sizes 784,100000000,10", "need about", "GiB", "available"]);
}

/// Divergence names the rate, and the regularisation given as its likely cause.
#[test]
fn divergence_names_the_rate_and_the_regularisation() {
    let data = small_data(700);
    let out = run(&["mlp", "--train-size", "600", "--test-size", "100", "--lambda", "1e308", "--data-dir", s(data.path())]);
    assert!(stderr_of(&out).contains("try a smaller learning rate (--eta) or a smaller --lambda (now 1e308: each step multiplies the weights by 1 - eta*lambda/n)"), "{}", stderr_of(&out));
}

// ---------------------------------------------------------------- defaults that do not fit

#[test]
fn a_default_that_does_not_fit_the_data_names_its_flag() {
    let data = small_data(2000);
    refused(&["mlp", "--data-dir", s(data.path())], &[
        "nn.py trains on the first 50000 training images; the training set in",
        "has 2000: use --train-size N (N <= 2000)",
    ]);
}

#[test]
fn a_default_batch_size_that_does_not_fit_names_its_flag() {
    let data = small_data(700);
    refused(&["convnet", "--device", "cpu", "--train-size", "63", "--data-dir", s(data.path())], &["the default batch size 64 is larger than the 63 training images (--train-size 63): use --batch-size N (N <= 63)"]);
}

#[test]
fn trace_names_its_defaults_as_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&w, &nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries(), None).unwrap();
    let data = small_data(63);
    refused(&["trace", "--model", "convnet", "--device", "cpu", "--weights", s(&w), "--out", s(&tmp.path().join("t")), "--data-dir", s(data.path())], &[
        "the batch, training images [0, 64) (--batch-start, --batch-size), runs past the 63 training images",
    ]);
}

// ---------------------------------------------------------------- every command

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
fn flags_that_would_be_ignored_are_refused() {
    refused(&["trace", "--model", "mlp", "--weights", "w", "--out", "o", "--lr", "5"], &["--lr is the convnet's"]);
    refused(&["trace", "--model", "convnet", "--weights", "w", "--out", "o", "--eta", "5"], &["--eta is the MLP's"]);
    refused(&["eval", "--model", "mlp", "--weights", "w", "--device", "cuda"], &["--device and --threads apply to the convnet"]);
    refused(&["eval", "--model", "mlp", "--weights", "w", "--threads", "0"], &["--device and --threads apply to the convnet"]);
}

#[test]
fn a_zero_test_size_and_an_absurd_thread_count() {
    refused(&["eval", "--model", "mlp", "--weights", "x", "--test-size", "0"], &["--test-size must be at least 1"]);
    // 2^31 threads: capped to the machine's CPUs, with a warning.
    let data = small_data(700);
    let out = run(&["convnet", "--device", "cpu", "--threads", "2147483648", "--epochs", "1", "--train-size", "640", "--test-size", "100", "--data-dir", s(data.path())]);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("--threads 2147483648 is more than the") && stderr.contains("CPUs here; using"), "{stderr}");
}

/// Seeds past 2^63 and a batch start past the data are refused by name.
#[test]
fn a_seed_past_2_63_and_a_batch_start_past_the_data_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    refused(&["mlp", "--seed", "9223372036854775808", "--data-dir", d], &["--seed must be below 2^63"]);
    let w = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&w, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    refused(&["trace", "--model", "mlp", "--weights", s(&w), "--out", s(&tmp.path().join("t.st")), "--batch-start", "18446744073709551615", "--data-dir", d], &[
        "--batch-start 18446744073709551615 is past the 700 training images",
    ]);
}

/// --errors 0 asks for no table: none, not "the first 0:" and an empty one.
#[test]
fn errors_0_prints_no_table() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let w0 = tmp.path().join("w0.safetensors");
    nnmnist::checkpoint::save_to(&w0, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    let out = run(&["eval", "--model", "mlp", "--weights", s(&w0), "--errors", "0", "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Misclassified"), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn show_index_out_of_range() {
    refused(&["show", "10000", "--data-dir", s(&repo_data())], &["test image 10000 does not exist", "10000 images (0 to 9999)"]);
    let data = small_data(100);
    refused(&["show", "100", "--data-dir", s(data.path())], &["test image 100 does not exist", "100 images (0 to 99)"]);
}
