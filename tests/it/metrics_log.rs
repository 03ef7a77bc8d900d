//! `--metrics`, end to end through the binary: one JSON line per epoch appended to the log
//! (by training and by `eval`), each epoch once even when a run is resumed or the log holds
//! other runs and stray bytes, on a redirected stdout too; a failed write keeps the epoch's
//! checkpoint, and a refused command leaves no log it made.
use crate::common;
use crate::common::*;
use nnmnist::weights::Weights;

/// A metrics write that fails after an epoch (a full disk: /dev/full) still leaves that
/// epoch's checkpoint, for both models.
#[test]
fn a_failed_metrics_write_keeps_the_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    for (model, extra) in [("mlp", &["--batch-size", "10"][..]), ("convnet", &["--device", "cpu", "--threads", "1"][..])] {
        let ck = tmp.path().join(format!("{model}.safetensors"));
        let mut args = vec![model, "--train-size", "640", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--metrics", "/dev/full", "--data-dir", s(data.path())];
        args.extend_from_slice(extra);
        let out = run(&args);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot write metrics to /dev/full"), "{stderr}");
        let state = Weights::load(&ck).unwrap_or_else(|e| panic!("{model}: the epoch's checkpoint is gone: {e:#}")).state.unwrap();
        assert_eq!((state.epochs_done, state.next_batch), (1, 0), "{model}");
    }
}

#[test]
fn metrics_are_appended_by_training_and_eval_and_a_redone_epoch_is_not_recorded_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let m = tmp.path().join("m.jsonl");
    std::fs::write(&m, "{\"an earlier record\": true}\n").unwrap();
    let ck = tmp.path().join("ck.safetensors");
    let base = ["mlp", "--train-size", "600", "--test-size", "100", "--data-dir", d];
    assert!(run(&[&base[..], &["--epochs", "1", "--save", s(&ck), "--metrics", s(&m)]].concat()).status.success());
    let epoch1 = tmp.path().join("epoch1.safetensors");
    std::fs::copy(&ck, &epoch1).unwrap();
    assert!(run(&["mlp", "--resume", s(&ck), "--epochs", "2", "--metrics", s(&m), "--data-dir", d]).status.success());
    assert!(run(&["eval", "--model", "mlp", "--weights", s(&ck), "--metrics", s(&m), "--data-dir", d]).status.success());
    // The epoch-1 checkpoint resumed again redoes epoch 2, which the file already records.
    let out = run(&["mlp", "--resume", s(&epoch1), "--epochs", "2", "--metrics", s(&m), "--data-dir", d]);
    assert!(out.status.success());
    assert!(stderr_of(&out).contains("already holds this run's records of epochs [2]"), "{}", stderr_of(&out));
    let text = std::fs::read_to_string(&m).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "{\"an earlier record\": true}", "the earlier content is kept");
    let records: Vec<nnmnist::metrics::EpochMetrics> = lines[1..].iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let epochs: Vec<(usize, bool)> = records.iter().map(|r| (r.epoch, r.train_loss.is_some())).collect();
    assert_eq!(epochs, [(1, true), (2, true), (2, false)], "training epochs 1 and 2 once each, then the eval record");
}

/// Records of another run with the same seed in the same log are not taken for this run's.
#[test]
fn a_resumed_run_records_its_epochs_beside_another_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let log = tmp.path().join("log.jsonl");
    let b = tmp.path().join("b.safetensors");
    let common = ["mlp", "--train-size", "600", "--test-size", "100", "--data-dir", d, "--metrics", s(&log)];
    assert!(run(&[&common[..], &["--epochs", "3"]].concat()).status.success());
    assert!(run(&[&common[..], &["--eta", "0.5", "--epochs", "1", "--save", s(&b)]].concat()).status.success());
    let out = run(&["mlp", "--resume", s(&b), "--epochs", "3", "--data-dir", d, "--metrics", s(&log)]);
    assert!(out.status.success() && !stderr_of(&out).contains("already holds"), "{}", stderr_of(&out));
    let records = nnmnist::metrics::read(&log).unwrap();
    let runs: Vec<(Option<String>, usize)> = records.iter().map(|r| (r.run.clone(), r.epoch)).collect();
    assert_eq!(runs.len(), 6, "3 epochs of each run: {runs:?}");
    let second = &runs[3].0;
    assert_eq!(runs[3..].iter().map(|(r, e)| (r == second, *e)).collect::<Vec<_>>(), [(true, 1), (true, 2), (true, 3)]);
    assert_ne!(&runs[0].0, second, "two runs, two ids");
}

/// A metrics log with a line that is not UTF-8 (a stray byte, another tool's output) still
/// lets a resumed run see the epochs it recorded: none is recorded twice.
#[test]
fn a_non_utf8_byte_in_the_metrics_log_does_not_break_duplicate_suppression() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let m = tmp.path().join("m.jsonl");
    std::fs::write(&m, b"caf\xe9 \xff not UTF-8\n").unwrap();
    let ck = tmp.path().join("ck.safetensors");
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--metrics", s(&m), "--data-dir", d]).status.success());
    let epoch1 = tmp.path().join("epoch1.safetensors");
    std::fs::copy(&ck, &epoch1).unwrap();
    assert!(run(&["mlp", "--resume", s(&ck), "--epochs", "2", "--metrics", s(&m), "--data-dir", d]).status.success());
    let out = run(&["mlp", "--resume", s(&epoch1), "--epochs", "2", "--metrics", s(&m), "--data-dir", d]);
    assert!(stderr_of(&out).contains("already holds this run's records of epochs [2]"), "{}", stderr_of(&out));
    let bytes = std::fs::read(&m).unwrap();
    let records: Vec<nnmnist::metrics::EpochMetrics> = bytes.split(|&b| b == b'\n').skip(1).filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(records.iter().map(|r| r.epoch).collect::<Vec<_>>(), [1, 2], "each epoch once");
}

/// `--metrics /dev/stdout > file`: the records and the console lines share stdout's offset
/// instead of overwriting each other; a log without a final newline gets one first.
#[test]
fn metrics_to_redirected_stdout_and_to_a_log_without_a_final_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let out = tmp.path().join("out.txt");
    let cmd = format!("'{}' mlp --train-size 600 --test-size 100 --epochs 2 --data-dir '{}' --metrics /dev/stdout > '{}'", s(&common::bin()), s(data.path()), s(&out));
    assert!(common::command("sh").args(["-c", &cmd]).status().unwrap().success());
    let text = std::fs::read_to_string(&out).unwrap();
    let records: Vec<&str> = text.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(records.len(), 2, "{text}");
    for r in &records {
        serde_json::from_str::<nnmnist::metrics::EpochMetrics>(r).unwrap_or_else(|e| panic!("{e}: {r}"));
    }
    assert!(text.lines().any(|l| l.starts_with("Epoch 1: ")), "{text}");
    let log = tmp.path().join("log.jsonl");
    std::fs::write(&log, "abc").unwrap();
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--data-dir", s(data.path()), "--metrics", s(&log)]).status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.starts_with("abc\n{") && text.ends_with("}\n"), "{text:?}");
}

/// A command refused after its outputs were checked (its data missing, too small) leaves no
/// metrics file it made; a log that was there is kept as it was.
#[test]
fn a_refused_command_leaves_no_metrics_file_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let m = tmp.path().join("new.jsonl");
    let missing = tmp.path().join("nowhere");
    refused(&["mlp", "--epochs", "1", "--metrics", s(&m), "--data-dir", s(&missing)], &["does not exist"]);
    assert!(!m.exists(), "no file is left by the refusal");
    refused(&["mlp", "--epochs", "1", "--train-size", "99999", "--metrics", s(&m), "--data-dir", s(data.path())], &["--train-size 99999"]);
    assert!(!m.exists(), "no file is left by the refusal");
    std::fs::write(&m, "").unwrap();
    refused(&["mlp", "--epochs", "1", "--metrics", s(&m), "--data-dir", s(&missing)], &["does not exist"]);
    assert!(m.exists(), "an empty log the user made stays");
}

#[test]
fn metrics_into_a_missing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("no/m.jsonl");
    let data = small_data(100);
    refused(&["convnet", "--device", "cpu", "--epochs", "1", "--metrics", s(&target), "--data-dir", s(data.path())], &[
        s(&target),
        "cannot open metrics file",
    ]);
}

#[test]
fn a_fifo_as_the_log_is_refused_instead_of_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("m.fifo");
    mkfifo(&metrics);
    refused(&["mlp", "--metrics", s(&metrics)], &[s(&metrics), "is a FIFO with no reader"]);
}
