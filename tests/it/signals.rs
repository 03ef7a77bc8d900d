//! Signals end to end, through the built binary: SIGINT (Ctrl-C), SIGTERM (`timeout`,
//! `docker stop`, a scheduler's time limit) and SIGHUP stop a training run at the next batch
//! boundary; it saves where it is, says how to continue, exits 128 + the signal's number,
//! and `--resume` carries on from there. Outside a training loop (loading, evaluating) a
//! signal exits at once, non-zero. (That a resumed run ends bit-identical to an
//! uninterrupted one is tested through the library in tests/it/convnet.rs and tests/it/mlp.rs.)
use crate::common;
use crate::common::{output_with_patience, wait_with_patience, Lines};
use std::process::{Child, Stdio};

fn spawn(args: &[&str]) -> Child {
    common::nnmnist().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("nnmnist starts")
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill -{sig} failed");
}

/// Starts `nnmnist args`, sends `sig` once stdout shows a line starting with `trigger`, and
/// returns (exit code, stdout, stderr).
fn interrupt(args: &[&str], trigger: &str, sig: i32) -> (Option<i32>, String, String) {
    let mut child = spawn(args);
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    stdout.wait_for(trigger);
    kill(child.id(), sig);
    let status = wait_with_patience(&mut child, "nnmnist after a signal");
    (status.code(), stdout.rest(), stderr.rest())
}

fn resume(args: &[&str]) -> String {
    let out = output_with_patience(common::nnmnist().args(args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_interrupted(code: Option<i32>, sig: i32, stderr: &str, checkpoint: &str) {
    assert_eq!(code, Some(128 + sig), "signal {sig} exits {}; stderr: {stderr}", 128 + sig);
    assert!(stderr.contains("stopping at the next batch boundary"), "says what it does: {stderr}");
    assert!(stderr.contains("interrupted in epoch"), "says where it stopped: {stderr}");
    assert!(stderr.contains(&format!("--resume {checkpoint}")), "says how to continue: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    nnmnist::weights::Weights::load(std::path::Path::new(checkpoint)).expect("the checkpoint loads");
}

#[test]
fn convnet_stops_saves_and_resumes_on_sigint_and_sigterm() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("convnet.safetensors");
        let ck = ck.to_str().unwrap();
        let mut args = vec!["convnet", "--epochs", "40", "--save", ck];
        args.extend(["--train-size", "3200", "--test-size", "200", "--device", "cpu", "--threads", "1"]);
        let (code, stdout, stderr) = interrupt(&args, "Epoch 2", sig);
        check_interrupted(code, sig, &stderr, ck);
        assert!(!stdout.contains("Done!"), "stopped before the end");
        let out = resume(&["convnet", "--resume", ck, "--epochs", "3"]);
        assert!(out.contains("Epoch 3") && out.contains("Done!"), "resumed to the end: {out}");
    }
}

#[test]
fn mlp_stops_saves_and_resumes_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("mlp.safetensors");
    let ck = ck.to_str().unwrap();
    let (code, stdout, stderr) = interrupt(&["mlp", "--epochs", "1000", "--train-size", "5000", "--test-size", "100", "--save", ck], "Epoch 1:", libc::SIGHUP);
    check_interrupted(code, libc::SIGHUP, &stderr, ck);
    let done = stdout.lines().filter(|l| l.starts_with("Epoch ")).count();
    assert!(done < 1000, "stopped early");
    let out = resume(&["mlp", "--resume", ck, "--epochs", &(done + 1).to_string()]);
    assert!(out.contains(&format!("Epoch {done}:")), "resumed and finished epoch {done}: {out}");
}

/// Outside a training loop there is nothing to save: `eval` stopped by Ctrl-C while it
/// evaluates exits with 130 (or, if the signal beat the handler, is killed by it), never 0
/// after finishing as if nothing happened.
#[test]
fn ctrl_c_during_eval_stops_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&weights, &nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries(), None).unwrap();
    let data = common::repo_data();
    let mut child = common::nnmnist()
        .args(["eval", "--model", "convnet", "--device", "cpu", "--threads", "1", "--weights", common::s(&weights), "--data-dir", common::s(&data)])
        .env("RUST_LOG", "nnmnist=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Lines::new(child.stdout.take().unwrap());
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    stderr.wait_for_containing("evaluating");
    kill(child.id(), libc::SIGINT);
    let status = wait_with_patience(&mut child, "eval after Ctrl-C");
    let (out, rest) = (stdout.rest(), stderr.rest());
    assert!(!status.success(), "eval went on to exit 0 after Ctrl-C: {rest}");
    assert!(status.code() == Some(130) || status.code().is_none(), "{status:?}: {rest}");
    assert!(!out.contains("Accuracy"), "eval printed its result after Ctrl-C: {out}");
    if status.code() == Some(130) {
        assert!(rest.contains("nothing is being trained, so there is nothing to save"), "{rest}");
    }
}
