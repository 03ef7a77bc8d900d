//! Signals end to end, through the built binary: SIGINT (Ctrl-C), SIGTERM (`timeout`,
//! `docker stop`, a scheduler's time limit) and SIGHUP stop a training run at the next batch
//! boundary; it saves where it is, says how to continue, exits 128 + the signal's number,
//! and `--resume` carries on from there. Outside a training loop (loading, evaluating) a
//! signal exits at once, non-zero; a signal ignored when nnmnist starts stays ignored; a
//! SIGKILL at any moment leaves a checkpoint that loads. (That a resumed run ends
//! bit-identical to an uninterrupted one is tested through the library in
//! tests/it/convnet.rs and tests/it/mlp.rs.)
use crate::common;
use crate::common::{output_with_patience, run, s, small_data, stderr_of, temporaries, wait_with_patience, Lines, XorShift};
use nnmnist::weights::Weights;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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

// ---------------------------------------------------------------- outside the loop, ignored, and SIGKILL

/// SIGTERM while libtorch works outside a training loop (building the network and the data
/// tensors, evaluating): exit 143 at once, never a corrupted heap, an abort or a panic (no
/// exit() runs under a busy libtorch). The signal goes at a random moment
/// after the child logs that it has reached that work: "evaluating" (`eval`) or "building
/// the convnet model" (a training run, which then builds its tensors and network).
#[test]
fn signals_outside_the_loop_exit_cleanly() {
    use std::os::unix::process::ExitStatusExt;
    let data = common::repo_data();
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&weights, &nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries(), None).unwrap();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut stopped = 0;
    for attempt in 0..12 {
        let delay = Duration::from_millis(rng.next() % 50);
        let eval = attempt % 2 == 0;
        let args: Vec<&str> = if eval {
            vec!["eval", "--model", "convnet", "--device", "cpu", "--threads", "1", "--weights", s(&weights), "--data-dir", s(&data)]
        } else {
            vec!["convnet", "--device", "cpu", "--threads", "1", "--epochs", "1", "--data-dir", s(&data)]
        };
        let mut child = common::nnmnist().args(&args).env("RUST_LOG", "nnmnist=info").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (mut stdout, mut stderr) = (Lines::new(child.stdout.take().unwrap()), Lines::new(child.stderr.take().unwrap()));
        stderr.wait_for_containing(if eval { "evaluating" } else { "building the convnet model" });
        std::thread::sleep(delay);
        // SAFETY: kill(2) on our child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = wait_with_patience(&mut child, args[0]);
        let (_, stderr) = (stdout.rest(), stderr.rest());
        let ok = matches!(status.code(), Some(0) | Some(143)) || status.signal() == Some(libc::SIGTERM);
        assert!(ok && !stderr.contains("panicked") && !stderr.contains("corrupted"), "{} {delay:?} after it began: {status:?}\n{stderr}", args[0]);
        if status.code() == Some(143) {
            stopped += 1;
        }
    }
    eprintln!("12 SIGTERMs outside the training loop: {stopped} stopped the command with 143, the rest came after it had finished its work");
    assert!(stopped >= 6, "only {stopped} of 12 signals landed before the command's end: the training runs (one epoch on 60,000 images) cannot have finished first");
}

/// Under `nohup` (SIGHUP ignored when nnmnist starts) a hang-up does not stop the run; the
/// signals it does catch still do. The hang-up goes after "Epoch 0:"; the run must then go
/// on to finish two more epochs and, stopped by SIGTERM, exit with SIGTERM's status (had it
/// caught the SIGHUP, it would have stopped with 129 inside epoch 1).
#[test]
fn a_signal_ignored_at_start_stays_ignored() {
    let data = small_data(3200);
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck.safetensors");
    let cmd = format!("trap '' HUP; exec '{}' mlp --train-size 3200 --test-size 100 --epochs 100000 --save '{}' --data-dir '{}'", s(&common::bin()), s(&ck), s(data.path()));
    let mut child = common::command("sh").args(["-c", &cmd]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = Lines::new(child.stdout.take().unwrap());
    lines.wait_for("Epoch 0:");
    // SAFETY: kill(2) on our child (sh exec'd into nnmnist), not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    lines.wait_for("Epoch 2:");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_with_patience(&mut child, "nnmnist under trap '' HUP");
    let out = child.wait_with_output().unwrap();
    lines.rest();
    let stderr = stderr_of(&out);
    assert!(!stderr.contains("SIGHUP"), "the ignored SIGHUP was acted on: {stderr}");
    assert_eq!(out.status.code(), Some(143), "{stderr}");
}

/// SIGKILL at 16 random moments of runs that save after every epoch: each leaves a
/// checkpoint that loads and resumes. A kill between the crate's link of the finished
/// temporary file and its rename may leave it as `.NAME.XXXXXX`: a complete checkpoint,
/// which nnmnist never removes (a name cannot tell it from a user's file); a save that
/// completes leaves nothing.
///
/// The moments are chosen once the first checkpoint exists, whatever the machine's speed:
/// the run prints "Epoch 0:" after saving epoch 1 (a checkpoint comes before the evaluation),
/// the time to "Epoch 1:" is one epoch's period (training, save, evaluation), and the kill
/// lands at a random fraction of one more period, so over the kills every phase of an epoch
/// is hit, the save included.
#[test]
fn sigkill_at_random_moments_never_leaves_a_broken_checkpoint() {
    const KILLS: usize = 16;
    let data = small_data(2000);
    let d = s(data.path());
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck.safetensors");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut inside_a_save = 0;
    let mut left: Vec<String> = Vec::new();
    for kill in 0..KILLS {
        let _ = std::fs::remove_file(&ck);
        // 784,300,10: a 1.9 MB checkpoint written every epoch.
        let mut child = common::nnmnist()
            .args(["mlp", "--sizes", "784,300,10", "--train-size", "2000", "--test-size", "50", "--epochs", "100000", "--save", s(&ck), "--data-dir", d])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = Lines::new(child.stdout.take().unwrap());
        lines.wait_for("Epoch 0:");
        assert!(ck.exists(), "kill {kill}: \"Epoch 0:\" printed before its checkpoint was saved");
        let epoch0 = Instant::now();
        lines.wait_for("Epoch 1:");
        let delay = epoch0.elapsed().mul_f64(rng.fraction());
        std::thread::sleep(delay);
        child.kill().unwrap();
        child.wait().unwrap();
        let now = temporaries(tmp.path());
        let new: Vec<&String> = now.iter().filter(|n| !left.contains(n)).collect();
        assert!(new.len() <= 1, "kill {kill}: one kill, one save at most: {new:?}");
        for name in &new {
            let random = name.strip_prefix(".ck.safetensors.").unwrap_or_else(|| panic!("kill {kill}: {name} is not the crate's temporary name"));
            assert!(random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric()), "kill {kill}: {name}");
            let w = Weights::load(&tmp.path().join(name)).unwrap_or_else(|e| panic!("kill {kill}: {name} is not a complete checkpoint: {e:#}"));
            assert!(w.state.is_some(), "kill {kill}: {name} has no run state");
            inside_a_save += 1;
        }
        left = now;
        let w = Weights::load(&ck).unwrap_or_else(|e| panic!("kill {kill} {delay:?} after epoch 1: a broken checkpoint: {e:#}"));
        let state = w.state.unwrap_or_else(|| panic!("kill {kill}: a checkpoint without its run state"));
        assert!(state.epochs_done >= 2 && state.next_batch == 0, "kill {kill}: {state:?}");
        let out = run(&["mlp", "--resume", s(&ck), "--epochs", &(state.epochs_done + 1).to_string(), "--data-dir", d]);
        assert!(out.status.success(), "kill {kill}: resume failed: {}", stderr_of(&out));
        assert_eq!(Weights::load(&ck).unwrap().state.unwrap().epochs_done, state.epochs_done + 1);
        assert_eq!(temporaries(tmp.path()), left, "kill {kill}: the resumed run, whose saves complete, removes nothing and leaves nothing");
    }
    eprintln!("{KILLS} kills after the first checkpoint, each resumed; {inside_a_save} of them left a linked temporary file (killed between link and rename), kept");
}
