//! Tensor files against PyTorch's own verdict: pairs of files written by PyTorch at test
//! time (scripts.reference.make_diff_cases), each answered by `nnmnist diff` as
//! `torch.equal` answers it, or refused (exit 2) naming the place inside the file it cannot
//! account for; crafted files (a few KB that claim gigabytes) read or refused with a peak
//! memory within 100 MB of the binary's own; and seeded mutants of a real torch.save pickle
//! and of a safetensors header, read by the library under a data limit, never panicking, in
//! bounded memory.
use crate::common::{self, s};
use nnmnist::tensors::TensorFile;
use nnmnist::weights::Weights;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What the peak memory of a command may exceed the binary's own by (its run on a tiny
/// file), in KiB.
const HEADROOM_KIB: i64 = 100 * 1024;

/// The cases, written once per test run into `target/tmp/tensor_files` (the tests' own
/// folder, made anew by each run).
fn cases() -> &'static (PathBuf, Value) {
    static CASES: std::sync::OnceLock<(PathBuf, Value)> = std::sync::OnceLock::new();
    CASES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tensor_files");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = common::command(common::python())
            .args(["-m", "scripts.reference.make_diff_cases"])
            .arg(&dir)
            .current_dir(common::root())
            .output()
            .unwrap();
        assert!(out.status.success(), "make_diff_cases: {}", String::from_utf8_lossy(&out.stderr));
        let cases = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
        (dir, cases)
    })
}

/// `nnmnist ARGS` run in `dir`: its exit code, stdout, stderr, and its own peak RSS in KiB.
fn measured(dir: &Path, args: &[&str]) -> (Option<i32>, String, String, i64) {
    let out_dir = tempfile::tempdir().unwrap();
    let (o, e) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut cmd = common::nnmnist();
    cmd.args(args).current_dir(dir).stdout(std::fs::File::create(&o).unwrap()).stderr(std::fs::File::create(&e).unwrap());
    let (code, rss) = wait_measured(&mut cmd);
    (code, std::fs::read_to_string(o).unwrap(), std::fs::read_to_string(e).unwrap(), rss)
}

/// Runs `cmd` to its end: its exit code (None when a signal ended it) and peak RSS in KiB.
fn wait_measured(cmd: &mut std::process::Command) -> (Option<i32>, i64) {
    let child = cmd.spawn().unwrap();
    let (mut status, pid) = (0, child.id() as libc::pid_t);
    // SAFETY: wait4 on our own child, not yet reaped, with a status and a rusage to fill.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut u), pid);
        u
    };
    drop(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, usage.ru_maxrss)
}

/// The peak RSS of `nnmnist diff` on a tiny safetensors file against itself.
fn baseline(dir: &Path) -> i64 {
    let (code, _, err, rss) = measured(dir, &["diff", "st_good.safetensors", "st_good.safetensors"]);
    assert_eq!(code, Some(0), "{err}");
    rss
}

#[test]
fn every_pair_gets_pytorchs_verdict_or_the_place_it_cannot_account_for() {
    let (dir, cases) = cases();
    let base = baseline(dir);
    let pairs = cases["pairs"].as_object().unwrap();
    assert!(pairs.len() >= 18, "{pairs:?}");
    for (name, c) in pairs {
        let flags: Vec<&str> = c["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        let args = [&["diff", c["a"].as_str().unwrap(), c["b"].as_str().unwrap()][..], &flags].concat();
        let (code, out, err, rss) = measured(dir, &args);
        let (exit, equal) = (c["exit"].as_i64().unwrap() as i32, c["torch_equal"].as_bool().unwrap());
        assert_eq!(code, Some(exit), "{name}: {out}{err}");
        // The verdict is torch's: "same" exactly when torch.equal says so; trouble only
        // where torch has no verdict nnmnist could give (a name it cannot make).
        assert_eq!(code == Some(0), equal, "{name}: torch.equal says {equal}: {out}{err}");
        // The verdict's words on stdout (the table), trouble's on stderr (the message).
        let (phrase, said) = (c["phrase"].as_str().unwrap(), if exit == 2 { &err } else { &out });
        assert!(said.contains(phrase), "{name}: {phrase:?} not in {}: {out}{err}", if exit == 2 { "stderr" } else { "stdout" });
        if exit == 2 {
            // In the error of a file refused, or in the table's header over a row that says
            // why it was not compared.
            assert!(format!("{out}{err}").contains(c["a"].as_str().unwrap()), "{name}: the file is named: {out}{err}");
        }
        if let Some(rejects) = c.get("library_rejects") {
            assert_eq!(rejects, true, "{name}: the safetensors library rejects it too");
        }
        assert!(rss - base < HEADROOM_KIB, "{name}: peak {rss} KiB against {base} KiB for a tiny file");
    }
}

/// A few KB that claim gigabytes (memo copies, a stack of 16M values inflated from 16 KB, a
/// shape whose byte count wraps, a 40 GB tensor): refused by diff and by eval, naming the
/// file, within the headroom; and a real torch.save of a 2^40-element expansion compares
/// with itself as the same, reading its one stored element.
#[test]
fn crafted_files_are_refused_in_bounded_memory() {
    let (dir, cases) = cases();
    let base = baseline(dir);
    let data = common::repo_data();
    for (name, c) in cases["crafted"].as_object().unwrap() {
        let file = c["file"].as_str().unwrap();
        let (phrase, eval_phrase) = (c["phrase"].as_str().unwrap(), c.get("eval_phrase").and_then(Value::as_str));
        for (args, want) in [(vec!["diff", file, file], 2), (vec!["eval", "--model", "convnet", "--device", "cpu", "--weights", file, "--data-dir", s(&data)], 1)] {
            let phrase = if args[0] == "eval" { eval_phrase.unwrap_or(phrase) } else { phrase };
            let (code, out, err, rss) = measured(dir, &args);
            assert_eq!(code, Some(want), "{name} {}: {out}{err}", args[0]);
            // Refused at once (stderr), or, for diff, the tensor's row says why (stdout).
            let said = format!("{out}{err}");
            assert!(said.contains(file) && said.contains(phrase), "{name} {}: {phrase:?} not in {said}", args[0]);
            assert!(!err.contains("panicked"), "{err}");
            assert!(rss - base < HEADROOM_KIB, "{name} {}: peak {rss} KiB against {base} KiB for a tiny file", args[0]);
        }
    }
    let (code, out, err, rss) = measured(dir, &["diff", "expand40.pt", "expand40.pt"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 of 1099511627776"), "{out}");
    assert!(rss - base < HEADROOM_KIB, "expand40.pt: peak {rss} KiB against {base} KiB");
}

/// `diff --format json`: one object per row with the table's columns and the first element
/// outside tolerance (both values, exactly), then the summary with the verdict.
#[test]
fn json_rows_carry_the_table_and_the_verdict() {
    let (dir, _) = cases();
    let (code, out, err, _) = measured(dir, &["diff", "--format", "json", "bigint_a.pt", "bigint_b.pt", "--rtol", "0", "--atol", "0"]);
    assert_eq!(code, Some(1), "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{out}");
    let row = &lines[0];
    assert_eq!((row["tensor"].as_str(), row["verdict"].as_str(), row["dtype"].as_str()), (Some("i"), Some("outside"), Some("int64")));
    assert_eq!((row["first"]["a"].as_i64(), row["first"]["b"].as_i64()), (Some((1 << 53) + 1), Some(1 << 53)), "{row}");
    assert_eq!((row["outside"].as_u64(), row["numel"].as_u64()), (Some(1), Some(1)));
    let summary = &lines[1]["summary"];
    assert_eq!((summary["verdict"].as_str(), summary["first_divergence"].as_str(), summary["outside"].as_u64()), (Some("different"), Some("i"), Some(1)), "{summary}");
    let (code, out, _, _) = measured(dir, &["diff", "--format", "json", "tuple_key_a.pt", "tuple_key_b.pt"]);
    assert_eq!((code, out.as_str()), (Some(2), ""), "a file refused whole gives no rows");
}

/// The body of the fuzz, run in a child process of its own under a data limit (see
/// `mutants_never_panic_and_stay_bounded`): every mutant opened, each tensor read and laid
/// out, and read as weights, each answer an error or a value, never a panic.
#[test]
#[ignore = "run as a child by mutants_never_panic_and_stay_bounded"]
fn mutants_child() {
    let Some(dir) = std::env::var_os("NNMNIST_MUTANTS") else { return };
    let dir = Path::new(&dir);
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let (mut opened, mut refused) = (0, 0);
    for m in cases["mutants"].as_array().unwrap() {
        let path = dir.join(m.as_str().unwrap());
        match TensorFile::open(&path, "tensor file") {
            Ok(f) => {
                opened += 1;
                for t in &f.tensors {
                    if let Ok(view) = f.read(t) {
                        let _ = view.into_contiguous(64 << 20);
                    }
                }
            }
            Err(e) => {
                refused += 1;
                assert!(format!("{e:#}").contains(s(&path)), "{e:#}");
            }
        }
        if let Ok(w) = Weights::load(&path) {
            let _ = w.read_all();
        }
    }
    println!("mutants: {opened} opened, {refused} refused");
}

#[test]
fn mutants_never_panic_and_stay_bounded() {
    let (dir, cases) = cases();
    let seed = &cases["seed"];
    let exe = std::env::current_exe().unwrap();
    let run = |mutants: &Path| {
        let mut cmd = common::command(&exe);
        cmd.args(["--exact", "tensor_files::mutants_child", "--include-ignored", "--test-threads", "1", "--nocapture"]).env("NNMNIST_MUTANTS", mutants);
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        // SAFETY: setrlimit only, between fork and exec. A data limit of 8 GiB: an
        // allocation of what a mutant claims (terabytes) fails there rather than succeed
        // on overcommit.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                let limit = libc::rlimit { rlim_cur: 8 << 30, rlim_max: 8 << 30 };
                if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        wait_measured(&mut cmd)
    };
    // The child's own peak on no mutants at all.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("cases.json"), r#"{"mutants": []}"#).unwrap();
    let (code, base) = run(empty.path());
    assert_eq!(code, Some(0));
    let (code, rss) = run(dir);
    assert_eq!(code, Some(0), "a mutant made the reader panic or abort (seed {seed}); run the child with NNMNIST_MUTANTS={} to see which", dir.display());
    assert!(rss - base < HEADROOM_KIB, "mutants (seed {seed}): peak {rss} KiB against {base} KiB without them");
}

/// A message that lists a file's tensors lists the first 30 and counts the rest: a file of
/// 100,000 tensors gave a line of megabytes.
#[test]
fn a_message_lists_a_few_names_and_counts_the_rest() {
    let n = 100_000;
    let header: serde_json::Map<String, Value> = (0..n).map(|i| (format!("t{i:06}"), serde_json::json!({"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}))).collect();
    let json = serde_json::to_vec(&header).unwrap();
    let bytes = [&(json.len() as u64).to_le_bytes()[..], &json].concat();
    let w = Weights::from_bytes(Path::new("many.safetensors"), &bytes).unwrap();
    let err = format!("{:#}", w.get("model.0.weight", &[8, 1, 3, 3]).unwrap_err());
    assert!(err.contains("t000000, t000001") && err.ends_with(&format!("and {} more)", n - 30)), "{}", &err[..err.len().min(500)]);
    assert!(err.len() < 1000, "{} bytes", err.len());
}
