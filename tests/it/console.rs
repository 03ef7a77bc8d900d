//! stdout and the terminal, end to end through the binary: a closed stdout does not stop a
//! training run, but fails a command whose result is stdout; names from a file reach the
//! terminal escaped; the commands nnmnist suggests work when pasted back.
use crate::common;
use crate::common::*;
use nnmnist::mlp::Network;
use nnmnist::weights::{Entry, Weights};
use std::process::Stdio;

/// `nnmnist mlp | head -1`: stdout closes, the run goes on, saves every epoch and exits 0
/// (no panic in a write to stdout, no epoch lost).
#[test]
fn a_closed_stdout_does_not_stop_the_run() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(3200);
    let ck = tmp.path().join("ck.safetensors");
    let mut child = common::nnmnist()
        .args(["mlp", "--train-size", "3200", "--test-size", "100", "--epochs", "3", "--save", s(&ck), "--data-dir", s(data.path())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // The reader is gone: every later write to stdout fails with EPIPE.
    let out = child.wait_with_output().unwrap();
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(Weights::load(&ck).unwrap().state.unwrap().epochs_done, 3, "every epoch saved");
}

/// stdout to a full disk is an error for a command whose product is stdout; metrics on a
/// closed stdout end there like the console lines, without failing the run.
#[test]
fn stdout_failures_are_errors_where_stdout_is_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&w, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
    let out = common::nnmnist().args(["eval", "--model", "mlp", "--weights", s(&w), "--data-dir", s(&common::repo_data())]).stdout(full).output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to stdout: No space left on device"), "{stderr}");
    // --metrics /dev/stdout | head -1: the run goes on and saves every epoch.
    let data = small_data(700);
    let ck = tmp.path().join("ck.safetensors");
    let cmd = format!("'{}' mlp --train-size 600 --test-size 100 --epochs 3 --save '{}' --data-dir '{}' --metrics /dev/stdout | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}", s(&common::bin()), s(&ck), s(data.path()));
    let out = common::command("bash").args(["-c", &cmd]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(Weights::load(&ck).unwrap().state.unwrap().epochs_done, 3);
}

/// `eval >&-` and `show >&-`: the result cannot be written, so the command fails instead of
/// exiting 0 with the result lost (Rust's stdout silently drops writes to a closed one).
#[test]
fn result_commands_fail_on_a_closed_stdout() {
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&w, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    let data = small_data(100);
    for args in [vec!["eval", "--model", "mlp", "--weights", s(&w), "--data-dir", s(data.path())], vec!["show", "3", "--weights", s(&w), "--data-dir", s(data.path())]] {
        let mut cmd = common::nnmnist();
        cmd.args(&args);
        // SAFETY: close(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(1);
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write to stdout: it is closed (>&-)"), "{stderr}");
        // `>/dev/null` is a choice, not a closed stdout.
        let out = common::nnmnist().args(&args).stdout(Stdio::null()).output().unwrap();
        assert!(out.status.success(), "{args:?} >/dev/null: {}", stderr_of(&out));
    }
}

/// A tensor name built to take over a terminal (set the title, clear the screen, fake a line
/// of nnmnist's own) is printed escaped, in a safetensors file and in a `.pt` file.
#[test]
fn tensor_names_with_control_characters_reach_the_terminal_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "\x1b]0;owned\x07\x1b[2J\x1b[Hnnmnist: all good\n.weight";
    let st = tmp.path().join("escapes.safetensors");
    let mut entries = Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries();
    entries.retain(|e| e.name != "2.bias");
    entries.push(Entry::f32(name, vec![1], vec![0.0]));
    nnmnist::checkpoint::save_to(&st, &entries, None).unwrap();
    let pt = tmp.path().join("escapes.pt");
    let script = "import os, torch; torch.save({'0.weight': torch.zeros(30, 784), '0.bias': torch.zeros(30), '2.weight': torch.zeros(10, 30), os.environ['KEY']: torch.zeros(1)}, os.environ['OUT'])";
    let made = common::command(python()).args(["-c", script]).env("KEY", name).env("OUT", &pt).output().unwrap();
    assert!(made.status.success(), "{}", stderr_of(&made));
    for (w, what) in [(&st, "missing tensor 2.bias (the file has: "), (&pt, "missing tensor 2.bias (the file has: ")] {
        let stderr = refused(&["eval", "--model", "mlp", "--weights", s(w), "--data-dir", s(&repo_data())], &[what]);
        assert!(stderr.contains("\\x1b]0;owned\\x07\\x1b[2J\\x1b[Hnnmnist: all good\\n.weight"), "{stderr}");
        assert!(!stderr.contains('\x1b') && !stderr.contains('\x07'), "raw control characters: {stderr:?}");
        assert_eq!(stderr.lines().count(), 1, "one line, no faked second one: {stderr:?}");
    }
}

/// The `nnmnist show` command `eval --errors` prints works when pasted: the weights path
/// shell-quoted (a `;` in it stays part of the name), and the data directory given.
#[test]
fn the_show_hint_of_eval_errors_pastes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w;touch pwned.safetensors");
    nnmnist::checkpoint::save_to(&w, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    let data = small_data(100);
    let out = run(&["eval", "--model", "mlp", "--weights", s(&w), "--errors", "3", "--data-dir", s(data.path())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hint = stdout.lines().find_map(|l| l.strip_prefix("(see one: ")).and_then(|l| l.strip_suffix(')')).unwrap_or_else(|| panic!("{stdout}"));
    assert!(hint.contains("--data-dir"), "{hint}");
    let pasted = hint.replacen("nnmnist", &format!("'{}'", common::bin().display()), 1);
    let shown = common::command("bash").args(["-c", &pasted]).current_dir(tmp.path()).output().unwrap();
    assert!(shown.status.success(), "{pasted}: {}", stderr_of(&shown));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("Prediction:"), "the pasted command shows the image with its prediction");
    assert!(!tmp.path().join("pwned.safetensors").exists(), "the pasted hint ran a second command");
}
