//! Checkpoints and `--resume`, for both models: hand-edited checkpoints through the one run
//! driver, where every stored value goes through the checks its flag gets, so both models
//! refuse the same faults with the same message (a `batch_size` of 0 is no division by zero,
//! a position past the end of an epoch no loss of 0.0); a property test shows the checkpoint
//! reader never panics, whatever the bytes or the run-state JSON. End to end through the
//! binary: a resume keeps to the images and the data of its run and says when it will not
//! repeat bit for bit; the resume hints paste back as shell words.
use crate::common;
use crate::common::*;
use nnmnist::checkpoint;
use nnmnist::weights::{RunState, Weights};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A one-epoch checkpoint of `model` on 640 training images (10 batches of 64; the MLP in
/// batches of 64 too, so both have 10 batches an epoch).
fn checkpoint_of(model: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{model}.safetensors"));
    let data = common::repo_data();
    let mut argv = vec![model, "--epochs", "1", "--train-size", "640", "--test-size", "100", "--batch-size", "64", "--data-dir", common::s(&data), "--save", common::s(&path)];
    if model == "convnet" {
        argv.extend(["--device", "cpu", "--threads", "1"]);
    }
    run_cli(&argv, &never()).unwrap();
    path
}

/// `path` rewritten with its run state changed by `edit` (its JSON value).
fn edited(path: &Path, name: &str, edit: impl Fn(&mut Value)) -> PathBuf {
    let w = Weights::load(path).unwrap();
    let mut state = serde_json::to_value(w.state.clone().unwrap()).unwrap();
    edit(&mut state);
    let state: RunState = serde_json::from_value(state).unwrap();
    let out = path.with_file_name(format!("{name}-{}", path.file_name().unwrap().to_string_lossy()));
    checkpoint::save_to(&out, &w.read_all().unwrap(), Some(&state)).unwrap();
    out
}

fn resume_err(model: &str, ck: &Path) -> String {
    let data = common::repo_data();
    format!("{:#}", run_cli(&[model, "--resume", common::s(ck), "--data-dir", common::s(&data)], &never()).expect_err("must be refused"))
}

#[test]
fn both_models_refuse_the_same_bad_run_states_with_the_same_words() {
    let tmp = tempfile::tempdir().unwrap();
    for model in ["convnet", "mlp"] {
        let good = checkpoint_of(model, tmp.path());
        type Edit = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Edit, String)> = vec![
            ("bs0", Box::new(|s| s["hyper"]["batch_size"] = json!(0)), "its run state is not valid: --batch-size must be at least 1".into()),
            ("ep0", Box::new(|s| s["hyper"]["epochs"] = json!(0)), "its run state is not valid: --epochs must be at least 1".into()),
            ("ts0", Box::new(|s| s["hyper"]["train_size"] = json!(0)), "its run state is not valid: --train-size must be at least 1".into()),
            (
                "past",
                Box::new(|s| {
                    s["hyper"]["epochs"] = json!(3);
                    s["next_batch"] = json!(12);
                }),
                "its run state says batch 12 of epoch 2, but an epoch of its run has 10 batches: the checkpoint does not fit its own hyperparameters".into(),
            ),
            (
                "end",
                Box::new(|s| {
                    s["epochs_done"] = json!(1);
                    s["next_batch"] = json!(3);
                }),
                "its run state says batch 3 of epoch 2, past the end of its 1-epoch run".into(),
            ),
            ("model", Box::new(|s| s["model"] = json!(if s["model"] == "mlp" { "convnet" } else { "mlp" })), "a checkpoint of the".into()),
            ("junk", Box::new(|s| s["hyper"]["seed"] = json!("zero")), "its run state is not valid".into()),
            ("gone", Box::new(|s| s["hyper"].as_object_mut().unwrap().remove("shuffle").map(|_| ()).unwrap()), "its run state is not valid".into()),
            ("threads0", Box::new(|s| s["threads"] = json!(0)), "its run state is not valid: a thread count of 0".into()),
            ("extra", Box::new(|s| s["hyper"]["momentum"] = json!(0.9)), "its run state is not valid: unknown field(s) [\"momentum\"] among its hyperparameters".into()),
        ];
        for (name, edit, phrase) in cases {
            let ck = edited(&good, name, edit);
            let err = resume_err(model, &ck);
            assert!(err.contains(common::s(&ck)) && err.contains(&phrase), "{model} {name}: {err}");
        }
        // Each model's own rates are checked as their flags are.
        let (field, flag) = if model == "convnet" { ("lr", "--lr") } else { ("eta", "--eta") };
        let ck = edited(&good, "rate", |s| s["hyper"][field] = json!(-1.0));
        let err = resume_err(model, &ck);
        assert!(err.contains(&format!("its run state is not valid: {flag} must be a finite number above 0, got -1")), "{model}: {err}");
    }
}

#[test]
fn mlp_checkpoint_with_sizes_that_do_not_fit_mnist_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let good = checkpoint_of("mlp", tmp.path());
    let ck = edited(&good, "sizes", |s| s["hyper"]["sizes"] = json!([784, 30, 9]));
    assert!(resume_err("mlp", &ck).contains("its run state is not valid: --sizes must end at 10"));
}

/// The binary refuses a convnet checkpoint with batch_size 0 with a message and exit 1, not
/// a panic (a division by zero).
#[test]
fn binary_refuses_a_zero_batch_checkpoint_without_panicking() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = edited(&checkpoint_of("convnet", tmp.path()), "bs0", |s| s["hyper"]["batch_size"] = json!(0));
    let out = common::nnmnist().args(["convnet", "--resume", common::s(&ck)]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--batch-size must be at least 1") && !stderr.contains("panicked"), "{stderr}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Arbitrary bytes: an error or a weights file, never a panic.
    #[test]
    fn reader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Weights::from_bytes(Path::new("x"), &bytes);
    }

    /// A safetensors header of arbitrary JSON text (the length prefix right): never a panic.
    #[test]
    fn reader_never_panics_on_arbitrary_headers(header in "\\PC{0,200}", tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&tail);
        let _ = Weights::from_bytes(Path::new("x"), &bytes);
    }

    /// Valid tensors with arbitrary run-state JSON in the metadata: an error or a state,
    /// never a panic; and RunState::parse of arbitrary text likewise.
    #[test]
    fn run_state_of_arbitrary_json_never_panics(state in "\\PC{0,120}", epochs in any::<i64>(), batch in any::<i64>()) {
        let _ = RunState::parse(&state);
        let json = format!("{{\"model\":\"mlp\",\"epochs_done\":{epochs},\"next_batch\":{batch},\"hyper\":{state}}}");
        let _ = RunState::parse(&json);
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 1], &[0, 0, 0, 63]).unwrap();
        let meta = std::collections::HashMap::from([("nnmnist".to_string(), json)]);
        let bytes = safetensors::tensor::serialize(vec![("0.weight".to_string(), view)], Some(meta)).unwrap();
        let _ = Weights::from_bytes(Path::new("x"), &bytes);
    }
}

/// Checkpoints say their format. One of another format (1: no `format` at all; a newer
/// one) is refused for both models, naming the file, its format, which nnmnist wrote it and
/// the `--init-from` that starts a new run from its weights, which it then does.
#[test]
fn checkpoints_of_other_formats_are_refused_with_a_clear_word() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::repo_data();
    for model in ["mlp", "convnet"] {
        let good = checkpoint_of(model, tmp.path());
        assert_eq!(Weights::load(&good).unwrap().state.unwrap().format, Some(nnmnist::weights::CHECKPOINT_FORMAT));
        let old = edited(&good, "old", |s| {
            s.as_object_mut().unwrap().remove("format").unwrap();
        });
        let newer = edited(&good, "newer", |s| s["format"] = json!(3));
        for (ck, wrote) in [(&old, "a checkpoint of format 1, written by an earlier nnmnist"), (&newer, "a checkpoint of format 3, written by a newer nnmnist")] {
            let err = resume_err(model, ck);
            let want = format!("{}: {wrote}", ck.display());
            assert!(err.starts_with(&want), "{model}: {err}");
            assert!(err.ends_with(&format!("this one resumes format 2 only; --init-from {} starts a new run from its weights", ck.display())), "{model}: {err}");
        }
        let save = tmp.path().join(format!("{model}-from-old.safetensors"));
        let mut argv = vec![model, "--init-from", common::s(&old), "--epochs", "1", "--train-size", "640", "--test-size", "100", "--batch-size", "64", "--data-dir", common::s(&data), "--save", common::s(&save)];
        if model == "convnet" {
            argv.extend(["--device", "cpu", "--threads", "1"]);
        }
        run_cli(&argv, &never()).unwrap();
        assert_eq!(Weights::load(&save).unwrap().state.unwrap().format, Some(nnmnist::weights::CHECKPOINT_FORMAT));
    }
}

// ---------------------------------------------------------------- resumed through the binary

#[test]
fn resume_from_a_file_that_is_no_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = convnet_weights_file(tmp.path());
    refused(&["convnet", "--device", "cpu", "--resume", s(&plain), "--data-dir", s(&repo_data())], &[
        s(&plain),
        "cannot be resumed",
    ]);
    let mlp = tmp.path().join("mlp.safetensors");
    let state = RunState { model: "mlp".into(), epochs_done: 1, next_batch: 0, hyper: serde_json::json!({}), run: None, threads: None, format: None, data: None };
    checkpoint::save_to(&mlp, &convnet_entries(), Some(&state)).unwrap();
    refused(&["convnet", "--device", "cpu", "--resume", s(&mlp), "--data-dir", s(&repo_data())], &[
        s(&mlp),
        "a checkpoint of the mlp model",
    ]);
    let missing = tmp.path().join("gone.safetensors");
    refused(&["convnet", "--device", "cpu", "--resume", s(&missing)], &[s(&missing), "cannot read"]);
}

/// A resumed convnet run that trained on all of a data set keeps to those images: on
/// another, smaller data set it is refused by name; on a larger one it takes the same first
/// images (the checkpoint stores the sizes, not "all").
#[test]
fn a_resume_keeps_to_the_images_of_its_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (small, tiny) = (small_data(700), small_data(300));
    let ck = tmp.path().join("c.safetensors");
    let base = ["convnet", "--device", "cpu", "--threads", "1"];
    assert!(run(&[&base[..], &["--epochs", "1", "--save", s(&ck), "--data-dir", s(small.path())]].concat()).status.success());
    let hyper = Weights::load(&ck).unwrap().state.unwrap().hyper;
    assert_eq!((&hyper["train_size"], &hyper["test_size"]), (&serde_json::json!(700), &serde_json::json!(700)));
    refused(&["convnet", "--resume", s(&ck), "--epochs", "2", "--data-dir", s(tiny.path())], &["its run uses the first 700 training images", "has 300"]);
    let m = tmp.path().join("m.jsonl");
    assert!(run(&["convnet", "--resume", s(&ck), "--epochs", "2", "--threads", "1", "--metrics", s(&m), "--data-dir", s(&common::repo_data())]).status.success());
    assert_eq!(nnmnist::metrics::read(&m).unwrap()[0].test_total, 700, "the same 700 test images, not the 10,000 of the larger set");
}

/// A checkpoint's sizes on smaller data: the checkpoint is named, not a flag it ignores.
#[test]
fn a_resume_on_smaller_data_names_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("m.safetensors");
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())]).status.success());
    let tiny = small_data(300);
    refused(&["mlp", "--resume", s(&ck), "--epochs", "2", "--data-dir", s(tiny.path())], &[
        s(&ck),
        "its run uses the first 600 training images, and",
        "has 300: resume it with the data it was trained on (--data-dir)",
    ]);
}

/// A checkpoint stores fingerprints of its data: resuming it on other images of the same
/// size is refused, naming the checkpoint and the data directory.
#[test]
fn a_resume_on_other_data_of_the_same_size_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("ck.safetensors");
    let out = run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "2", "--save", s(&ck), "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // The same number of images, other ones: images 700..1400 of data/.
    let r = real();
    let other = |split: &nnmnist::data::Split| nnmnist::data::Split { images: split.images[700 * 784..1400 * 784].to_vec(), labels: split.labels[700..1400].to_vec() };
    let elsewhere = data_dir_of(&other(&r.train), &other(&r.test));
    refused(&["mlp", "--resume", s(&ck), "--epochs", "3", "--data-dir", s(elsewhere.path())], &[s(&ck), "its run trained on other images than the 600 training and 100 test images", "resume it with the data it was trained on (--data-dir)"]);
    let out = run(&["mlp", "--resume", s(&ck), "--epochs", "3", "--data-dir", s(data.path())]);
    assert!(out.status.success(), "the same data resumes: {}", stderr_of(&out));
}

#[test]
fn a_resume_with_another_thread_count_says_it_will_not_repeat_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("c.safetensors");
    let base = ["convnet", "--device", "cpu", "--threads", "1", "--train-size", "640", "--test-size", "100", "--data-dir", s(data.path())];
    assert!(run(&[&base[..], &["--epochs", "1", "--save", s(&ck)]].concat()).status.success());
    let w = Weights::load(&ck).unwrap();
    let mut state = w.state.clone().unwrap();
    assert_eq!(state.threads, Some(1), "the checkpoint records its thread count");
    state.threads = Some(7);
    nnmnist::checkpoint::save_to(&ck, &w.read_all().unwrap(), Some(&state)).unwrap();
    let out = run(&["convnet", "--resume", s(&ck), "--epochs", "2", "--threads", "1", "--data-dir", s(data.path())]);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trained with 7 libtorch thread(s) and this run has 1") && stderr.contains("pass --threads 7"), "{stderr}");
}

/// The resume hint is a shell word even for a path with a space.
#[test]
fn the_resume_hint_quotes_what_needs_quoting() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("a b.safetensors");
    let data = common::repo_data();
    let err = run_cli(&["mlp", "--train-size", "600", "--test-size", "100", "--save", s(&ck), "--data-dir", s(&data)], &stop_after(5)).unwrap_err();
    assert!(err.to_string().ends_with(&format!("continue with --resume '{}'", ck.display())), "{err}");
}

/// The resume hints (of a refused save onto an unfinished run, and of an interrupted run)
/// name the file when pasted into bash, whatever its name holds: a newline, an escape, a
/// tab, a single quote, an invisible character, bytes that are not UTF-8.
#[test]
fn resume_hints_paste_back_for_every_name() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let source = tmp.path().join("source.safetensors");
    unfinished_checkpoint("mlp", &source, data.path());
    // What bash makes of `word`: the bytes of the one argument it stands for.
    let pasted = |word: &str| -> Vec<u8> {
        let out = common::command("bash").args(["-c", &format!("printf %s {word}")]).output().unwrap();
        assert!(out.status.success(), "{word}: {}", stderr_of(&out));
        out.stdout
    };
    let names: [&[u8]; 7] = [b"we ird\nname.st", b"esc\x1b[2J.st", b"tab\there.st", b"it's.st", "bidi\u{202e}ts.st".as_bytes(), b"caf\xe9.st", b"back\\slash n\\n.st"];
    for name in names {
        let ck = tmp.path().join(OsStr::from_bytes(name));
        std::fs::copy(&source, &ck).unwrap();
        let out = output_with_patience(common::nnmnist().args(["mlp", "--train-size", "600", "--test-size", "100", "--data-dir", d, "--save"]).arg(&ck));
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let word = stderr.split_once("continue it with --resume ").and_then(|(_, rest)| rest.split_once(", or ")).map(|(w, _)| w).unwrap_or_else(|| panic!("no hint: {stderr}"));
        assert_eq!(pasted(word), ck.as_os_str().as_bytes(), "{word} names another file");
        assert!(!stderr.contains('\x1b') && stderr.lines().count() == 1, "the hint prints safely: {stderr:?}");
        // The interrupted run's hint, for the names a flag can carry in process (UTF-8).
        if let Some(utf8) = ck.to_str() {
            std::fs::remove_file(&ck).unwrap();
            let err = run_cli(&["mlp", "--train-size", "600", "--test-size", "100", "--save", utf8, "--data-dir", d], &stop_after(2)).unwrap_err().to_string();
            let word = err.rsplit_once("continue with --resume ").map(|(_, w)| w).unwrap_or_else(|| panic!("no hint: {err}"));
            assert_eq!(pasted(word), ck.as_os_str().as_bytes(), "{word} names another file");
        }
    }
}
