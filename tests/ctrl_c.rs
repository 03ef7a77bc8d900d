//! Ctrl-C end to end: a real SIGINT to the running binary stops it at a batch boundary,
//! saves a checkpoint, says how to continue, exits 130, and `--resume` carries on from there.
//! (That a resumed run ends bit-identical to an uninterrupted one is tested through the
//! library in tests/convnet.rs and tests/mlp.rs.)
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_nnmnist");

/// Starts `nnmnist args`, sends SIGINT once stdout shows a line starting with `trigger`,
/// and returns (exit code, stdout so far, stderr).
fn interrupt(args: &[&str], trigger: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nnmnist starts");
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with(trigger) {
            let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
            assert!(status.success(), "kill -INT failed");
            break;
        }
    }
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), seen, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn resume(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_interrupted(code: Option<i32>, stderr: &str, checkpoint: &str) {
    assert_eq!(code, Some(130), "Ctrl-C exits 130; stderr: {stderr}");
    assert!(stderr.contains("interrupted in epoch"), "says where it stopped: {stderr}");
    assert!(stderr.contains(&format!("--resume {checkpoint}")), "says how to continue: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    assert!(std::path::Path::new(checkpoint).exists(), "checkpoint written");
}

#[test]
fn convnet_ctrl_c_saves_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("convnet.safetensors");
    let ck = ck.to_str().unwrap();
    let common = ["--train-size", "3200", "--test-size", "200", "--device", "cpu", "--threads", "1"];
    let mut args = vec!["convnet", "--epochs", "40", "--save", ck];
    args.extend(common);
    let (code, stdout, stderr) = interrupt(&args, "Epoch 2");
    check_interrupted(code, &stderr, ck);
    assert!(!stdout.contains("Done!"), "stopped before the end");
    let out = resume(&["convnet", "--resume", ck, "--epochs", "3"]);
    assert!(out.contains("Epoch 3") && out.contains("Done!"), "resumed to the end: {out}");
}

#[test]
fn mlp_ctrl_c_saves_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("mlp.safetensors");
    let ck = ck.to_str().unwrap();
    let (code, stdout, stderr) = interrupt(&["mlp", "--epochs", "1000", "--train-size", "5000", "--test-size", "100", "--save", ck], "Epoch 1:");
    check_interrupted(code, &stderr, ck);
    let done = stdout.lines().filter(|l| l.starts_with("Epoch ")).count();
    assert!(done < 1000, "stopped early");
    let out = resume(&["mlp", "--resume", ck, "--epochs", &(done + 1).to_string()]);
    assert!(out.contains(&format!("Epoch {done}:")), "resumed and finished epoch {done}: {out}");
}
