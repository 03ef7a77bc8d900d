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
    assert_eq!(status.code(), Some(130), "{status:?}: {rest}");
    assert!(!out.contains("Accuracy"), "eval printed its result after Ctrl-C: {out}");
    assert!(rest.contains("nothing is being trained, so there is nothing to save"), "{rest}");
}

/// GNU `timeout` (without `--foreground`) signals the child and then the child's process
/// group, so every time-out delivers its signal twice. Runs under the real `timeout`, with
/// SIGINT and SIGTERM, each stopped in its training loop, must all save and say how to
/// continue, never "exiting at once, without saving". The time-out starts at 1.5 s and grows
/// while runs end before their loop started (a slow machine), until 8 runs were stopped in
/// the loop.
#[test]
fn runs_under_gnu_timeout_always_save() {
    let data = common::small_data(500);
    let dir = tempfile::tempdir().unwrap();
    let mut seconds = 1.5f64;
    let (mut in_loop, mut tried) = (0, 0);
    let started = std::time::Instant::now();
    while in_loop < 8 {
        assert!(started.elapsed() < std::time::Duration::from_secs(300), "only {in_loop} of {tried} runs reached their training loop before the time-out");
        let runs: Vec<_> = (0..4)
            .map(|i| {
                let sig = if i % 2 == 0 { "INT" } else { "TERM" };
                let ck = dir.path().join(format!("run{tried}-{i}.safetensors"));
                // common::command: default dispositions, which `timeout` hands down.
                let mut cmd = common::command("timeout");
                cmd.args(["--preserve-status", "-s", sig, &format!("{seconds}")])
                    .arg(common::bin())
                    .args(["mlp", "--epochs", "100000", "--train-size", "500", "--test-size", "100", "--data-dir", common::s(data.path()), "--save", common::s(&ck)])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                let child = cmd.spawn().expect("GNU timeout runs (coreutils)");
                (sig, ck, child)
            })
            .collect();
        let mut early = false;
        for (sig, ck, mut child) in runs {
            tried += 1;
            let mut err = Lines::new(child.stderr.take().unwrap());
            let status = wait_with_patience(&mut child, "timeout nnmnist");
            let stderr = err.rest();
            assert!(!stderr.contains("without saving"), "a time-out's copy to the process group was taken for a second request: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
            if !stderr.contains("stopping at the next batch boundary") {
                early = true; // the signal came before the loop: nothing to save, exits at once
                continue;
            }
            in_loop += 1;
            let signum = if sig == "INT" { libc::SIGINT } else { libc::SIGTERM };
            assert_eq!(status.code(), Some(128 + signum), "{stderr}");
            assert!(stderr.contains("saved to") && stderr.contains("continue with --resume"), "{stderr}");
            nnmnist::weights::Weights::load(&ck).expect("the checkpoint loads").run_state("mlp").expect("it is a checkpoint");
        }
        if early {
            seconds += 0.5;
        }
    }
    eprintln!("under timeout: {in_loop} of {tried} runs stopped in their training loop, all saved; last time-out {seconds} s, {:?} in all", started.elapsed());
}

/// A different signal after the first is a real second request: the run quits at once,
/// without saving, with the status of the second signal.
#[test]
fn another_signal_after_the_first_quits_at_once() {
    let data = common::small_data(500);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("mlp.safetensors");
    let mut cmd = common::nnmnist();
    cmd.args(["mlp", "--epochs", "100000", "--train-size", "500", "--test-size", "100", "--data-dir", common::s(data.path()), "--save", common::s(&ck)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut lines = Lines::new(child.stdout.take().unwrap());
    lines.wait_for("Epoch 0:");
    // SIGSTOP holds the process, so both signals are pending when it continues: the first
    // is acted on, and the second, a different one, must quit at once.
    kill(child.id(), libc::SIGSTOP);
    kill(child.id(), libc::SIGINT);
    kill(child.id(), libc::SIGTERM);
    kill(child.id(), libc::SIGCONT);
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    let status = wait_with_patience(&mut child, "nnmnist after two signals");
    let (stderr, code) = (stderr.rest(), status.code());
    assert!(stderr.contains("without saving"), "{stderr}");
    assert!(matches!(code, Some(130) | Some(143)), "{status:?}: {stderr}");
}
