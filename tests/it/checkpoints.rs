//! Hand-edited checkpoints, for both models, through the one run driver: every stored value
//! goes through the checks its flag gets, so both models refuse the same faults with the same
//! message (a `batch_size` of 0 is no division by zero, a position past the end of an epoch
//! no loss of 0.0). Plus a property test: the checkpoint reader never panics, whatever the
//! bytes or the run-state JSON.
use crate::common;
use crate::common::{never, run_cli};
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
