//! Which files a command may write, end to end through the binary: never a file it reads
//! (weights, data, the checkpoint it resumes), the console log, another of its outputs, or
//! the checkpoint of an unfinished run; each refused by name before any work, everything
//! left as it was. And the size `trace` checks up front is the size it writes.
use crate::common;
use crate::common::*;
use nnmnist::mlp::Network;
use nnmnist::weights::Weights;
use std::os::unix::fs::symlink;
use std::process::Stdio;

// ---------------------------------------------------------------- inputs and outputs

#[test]
fn metrics_and_save_naming_one_file_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("run.out");
    let link = tmp.path().join("link.out");
    symlink(&f, &link).unwrap();
    refused(&["mlp", "--save", s(&f), "--metrics", s(&link)], &["are the same file"]);
}

#[test]
fn a_file_named_as_input_and_output_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.safetensors");
    let net = Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0);
    nnmnist::checkpoint::save_to(&w, &net.entries(), None).unwrap();
    let before = std::fs::read(&w).unwrap();
    refused(&["eval", "--model", "mlp", "--weights", s(&w), "--metrics", s(&w)], &["--metrics", "is the weights file"]);
    refused(&["trace", "--model", "mlp", "--weights", s(&w), "--out", s(&w)], &["is the weights file --weights reads"]);
    refused(&["mlp", "--init-from", s(&w), "--metrics", s(&w)], &["is the weights file --init-from reads"]);
    // Some other weights file as a training log: binary, not a log.
    let other = tmp.path().join("other.safetensors");
    std::fs::copy(&w, &other).unwrap();
    refused(&["mlp", "--metrics", s(&other)], &[s(&other), "holds binary data, not a JSON-lines log"]);
    assert_eq!(std::fs::read(&w).unwrap(), before, "the weights are untouched");
}

#[test]
fn outputs_onto_the_data_files_are_refused() {
    let data = small_data(700);
    let labels = data.path().join(TEST_LABELS);
    let before = std::fs::read(&labels).unwrap();
    let d = s(data.path());
    refused(&["mlp", "--train-size", "600", "--save", s(&labels), "--data-dir", d], &["--save", "is the MNIST file", "that the run reads"]);
    refused(&["mlp", "--train-size", "600", "--metrics", s(&labels), "--data-dir", d], &["--metrics", "is the MNIST file"]);
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&w, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    refused(&["trace", "--model", "mlp", "--weights", s(&w), "--out", s(&labels), "--data-dir", d], &["--out", "is the MNIST file"]);
    refused(&["eval", "--model", "mlp", "--weights", s(&w), "--metrics", s(&labels), "--data-dir", d], &["--metrics", "is the MNIST file"]);
    assert_eq!(std::fs::read(&labels).unwrap(), before, "the data is untouched");
    // The names of copies that are not there: a file there would be read as one.
    for free in [format!("{TEST_LABELS}.gz"), TEST_LABELS.replace("-idx", ".idx"), "train-images.idx3-ubyte.gz".to_string()] {
        let p = data.path().join(&free);
        let phrase = "is a name under which the run reads an MNIST file: a file written there would be taken for MNIST data";
        refused(&["mlp", "--train-size", "600", "--save", s(&p), "--data-dir", d], &[&format!("--save {}", s(&p)), phrase]);
        refused(&["mlp", "--train-size", "600", "--metrics", s(&p), "--data-dir", d], &[phrase]);
        refused(&["trace", "--model", "mlp", "--weights", s(&w), "--out", s(&p), "--data-dir", d], &["is a name under which the trace reads an MNIST file"]);
        assert!(!p.exists(), "{free}: nothing is written there");
    }
}

/// `--save run.log > run.log`: the checkpoint would replace the file the console lines go
/// to. Refused before any work, the log left as it was.
#[test]
fn a_save_onto_the_console_log_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let log = tmp.path().join("run.log");
    std::fs::write(&log, "earlier lines\n").unwrap();
    let console = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let out = common::nnmnist()
        .args(["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&log), "--data-dir", s(data.path())])
        .stdout(console)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("--save {} is the file stdout is written to", s(&log))), "{stderr}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "earlier lines\n", "the log is left as it was");
}

// ---------------------------------------------------------------- unfinished runs

/// `trace --out` onto the checkpoint of an unfinished run is refused as `--save` is, and so
/// is a log appended to it (also by the run that continues it); the run stays intact.
#[test]
fn outputs_onto_an_unfinished_run_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let weights = tmp.path().join("a.safetensors");
    nnmnist::checkpoint::save_to(&weights, &nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries(), None).unwrap();
    let ck = tmp.path().join("e.safetensors");
    unfinished_checkpoint("convnet", &ck, data.path());
    let before = std::fs::read(&ck).unwrap();
    refused(&["trace", "--model", "convnet", "--device", "cpu", "--weights", s(&weights), "--out", s(&ck), "--data-dir", s(data.path())], &[
        s(&ck),
        "holds an unfinished convnet run",
        "which --out would replace",
        "continue it with --resume",
    ]);
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&weights), "--metrics", s(&ck), "--data-dir", s(data.path())], &[
        s(&ck),
        "holds an unfinished convnet run",
        "which --metrics would append to",
    ]);
    refused(&["convnet", "--resume", s(&ck), "--metrics", s(&ck), "--data-dir", s(data.path())], &[&format!("--metrics {} is the checkpoint --resume reads: appending records would break it", s(&ck))]);
    assert_eq!(std::fs::read(&ck).unwrap(), before, "the run is intact");
    // A file that holds no unfinished run is replaced, as `cp` would.
    let out = tmp.path().join("t.safetensors");
    std::fs::write(&out, b"old").unwrap();
    let done = run(&["trace", "--model", "convnet", "--device", "cpu", "--weights", s(&weights), "--out", s(&out), "--data-dir", s(data.path())]);
    assert!(done.status.success(), "{}", stderr_of(&done));
    assert!(nnmnist::weights::Weights::load(&out).is_ok());
}

/// A save refused because its file holds an unfinished run has touched nothing: the run's
/// checkpoint and the backup beside it are as they were.
#[test]
fn a_refused_save_touches_nothing_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("unfinished.safetensors");
    unfinished_checkpoint("convnet", &ck, data.path());
    let checkpoint = std::fs::read(&ck).unwrap();
    let backup = tmp.path().join(".unfinished.safetensors.backup");
    std::fs::write(&backup, &checkpoint).unwrap();
    refused(&["convnet", "--device", "cpu", "--threads", "1", "--train-size", "640", "--save", s(&ck), "--data-dir", s(data.path())], &[
        s(&ck),
        "holds an unfinished convnet run (0 of 2 epochs and 3 batches done)",
        &format!("continue it with --resume {} --threads 1, or", s(&ck)),
    ]);
    assert_eq!(std::fs::read(&backup).unwrap(), checkpoint, "the backup survives the refusal");
    assert_eq!(std::fs::read(&ck).unwrap(), checkpoint, "the unfinished run is intact");
}

/// A resumed run replaces its own run's checkpoint (the one it resumes, or another file of
/// the same run) and no other run's unfinished checkpoint.
#[test]
fn a_resumed_run_replaces_only_its_own_unfinished_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let (a, b) = (tmp.path().join("a.safetensors"), tmp.path().join("b.safetensors"));
    unfinished_checkpoint("mlp", &a, data.path());
    unfinished_checkpoint("mlp", &b, data.path());
    let b_before = std::fs::read(&b).unwrap();
    let err = format!("{:#}", run_cli(&["mlp", "--resume", s(&a), "--save", s(&b), "--data-dir", d], &never()).unwrap_err());
    assert!(err.contains(&format!("{} holds an unfinished mlp run", s(&b))) && err.contains("which --save would replace"), "{err}");
    assert_eq!(std::fs::read(&b).unwrap(), b_before, "the other run is intact");
    // A copy of a, resumed onto a: the same run.
    let copy = tmp.path().join("a-copy.safetensors");
    std::fs::copy(&a, &copy).unwrap();
    run_cli(&["mlp", "--resume", s(&copy), "--save", s(&a), "--data-dir", d], &never()).unwrap();
    assert_eq!(Weights::load(&a).unwrap().state.unwrap().epochs_done, 2, "the run finished in its own file");
}

// ---------------------------------------------------------------- sizes checked up front

/// The size `trace` checks against memory and free space before it works is the size of
/// the file it writes (plus the safetensors header), for both models.
#[test]
fn the_trace_size_checked_up_front_is_the_size_written() {
    use clap::Parser;
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(200);
    let conv = tmp.path().join("c.safetensors");
    nnmnist::checkpoint::save_to(&conv, &nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries(), None).unwrap();
    let mlp = tmp.path().join("m.safetensors");
    nnmnist::checkpoint::save_to(&mlp, &Network::seeded(&[784, 30, 20, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    for (model, w) in [("convnet", &conv), ("mlp", &mlp)] {
        let out = tmp.path().join(format!("{model}.trace"));
        let argv = ["nnmnist", "trace", "--model", model, "--weights", s(w), "--out", s(&out), "--batch-size", "37", "--data-dir", s(data.path())];
        let Ok(nnmnist::config::Job::Trace(spec)) = nnmnist::config::Job::from_cli(nnmnist::cli::Cli::try_parse_from(argv).unwrap()) else { panic!("a trace command") };
        let expected = nnmnist::cmd::trace::trace_bytes(&spec, &Weights::load(w).unwrap()).unwrap();
        let done = run(&argv[1..]);
        assert!(done.status.success(), "{}", stderr_of(&done));
        let written = std::fs::metadata(&out).unwrap().len() as u128;
        assert!(written >= expected && written - expected < 8192, "{model}: {written} bytes written, {expected} estimated");
    }
}
