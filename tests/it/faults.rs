//! Faults and hostile files, end to end through the binary: nothing trained is
//! lost, files are written the way users expect, nothing panics, hostile data costs bounded
//! work, and messages speak of what the user did.
use crate::common;
use crate::common::*;
use nnmnist::mlp::Network;
use nnmnist::weights::{Entry, Weights};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};


/// Runs `nnmnist args` to its end (a hang fails the test after [`PATIENCE`]).
fn run(args: &[&str]) -> Output {
    output_with_patience(common::nnmnist().args(args))
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `args` fails with exit 1, its stderr holding every phrase, no panic, no epoch trained.
fn refused(args: &[&str], phrases: &[&str]) -> String {
    let out = run(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), stderr_of(&out));
    eprintln!("[{:?}] nnmnist {} => {}", out.status.code(), args.join(" "), stderr.trim_end());
    assert_eq!(out.status.code(), Some(1), "nnmnist {args:?}\n{stdout}\n{stderr}");
    for p in phrases {
        assert!(stderr.contains(p), "stderr lacks {p:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked") && !stdout.contains("Epoch 1") && !stdout.contains("Epoch 0"), "{stdout}\n{stderr}");
    stderr
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

/// The hidden files in `dir` but locks: a save's temporary files (`.NAME.XXXXXX`,
/// atomic-write-file's names) and any other file a test put beside a target.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.') && !n.ends_with(".lock")).collect()
}

// ---------------------------------------------------------------- nothing trained is lost

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

// ---------------------------------------------------------------- files as users expect

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

#[test]
fn save_writes_through_symlinks_and_keeps_permissions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let real = tmp.path().join("real.safetensors");
    let link = tmp.path().join("link.safetensors");
    std::fs::write(&real, b"old").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    symlink(&real, &link).unwrap();
    let out = run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&link), "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
    assert_eq!(Weights::load(&real).unwrap().state.unwrap().epochs_done, 1, "its target holds the checkpoint");
    assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o640, "the file keeps its mode");
    // A dangling link: the file it names is created.
    let dangling = tmp.path().join("dangling.safetensors");
    let target = tmp.path().join("made.safetensors");
    symlink(&target, &dangling).unwrap();
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&dangling), "--data-dir", s(data.path())]).status.success());
    assert!(Weights::load(&target).is_ok() && std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    assert!(temporaries(tmp.path()).is_empty(), "{:?}", temporaries(tmp.path()));
    assert!(!tmp.path().join(".real.safetensors.lock").exists(), "the lock file is removed at the end");
}

#[test]
fn save_refuses_what_is_not_a_regular_file_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("fifo.safetensors");
    mkfifo(&fifo);
    refused(&["mlp", "--save", s(&fifo)], &[s(&fifo), "it is a FIFO; nnmnist only replaces regular files"]);
    refused(&["mlp", "--save", "/dev/null"], &["/dev/null", "it is a character device"]);
    let link = tmp.path().join("to-null");
    symlink("/dev/null", &link).unwrap();
    refused(&["mlp", "--save", s(&link)], &[s(&link), "it is a character device"]);
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo_like(), "the FIFO is left alone");
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn a_file_of_a_temporary_name_is_kept_and_a_second_run_on_the_same_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(3200);
    let ck = tmp.path().join("ck.safetensors");
    // A name a temporary file could have, here a user's file: it is not nnmnist's.
    let kept = tmp.path().join(".ck.safetensors.tmp4242");
    std::fs::write(&kept, vec![0u8; 4096]).unwrap();
    // A long run holding the file...
    let mut first = common::nnmnist()
        .args(["mlp", "--train-size", "3200", "--test-size", "100", "--epochs", "100000", "--save", s(&ck), "--data-dir", s(data.path())])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(first.stdout.take().unwrap()));
    assert!(lines.any(|l| l.unwrap().starts_with("Epoch 0:")), "the first run trains");
    assert_eq!(std::fs::read(&kept).unwrap(), vec![0u8; 4096], "a file beside the target is left as it was");
    // ...refuses a second one.
    let err = refused(&["mlp", "--save", s(&ck), "--data-dir", s(data.path())], &[s(&ck), &format!("another nnmnist run (pid {}) is saving to it", first.id())]);
    assert!(err.contains("choose another file"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
    // Killed: its lock file stays and holds no lock. Its checkpoint holds an unfinished run,
    // which a new run does not replace: it is pointed to --resume...
    let lock = tmp.path().join(".ck.safetensors.lock");
    assert!(lock.exists(), "a killed run leaves its lock file");
    refused(&["mlp", "--train-size", "600", "--save", s(&ck), "--data-dir", s(data.path())], &[s(&ck), "holds an unfinished mlp run", "continue it with --resume"]);
    // ...which takes the stale lock.
    let state = Weights::load(&ck).unwrap().state.unwrap();
    let more = (state.epochs_done + 1).to_string();
    assert!(run(&["mlp", "--resume", s(&ck), "--epochs", &more, "--data-dir", s(data.path())]).status.success());
    assert!(!lock.exists(), "the lock file is removed when the run ends");
    assert_eq!(std::fs::read(&kept).unwrap(), vec![0u8; 4096], "every run leaves the file beside the target alone");
}

// ---------------------------------------------------------------- no panic on any input

#[test]
fn empty_sets_zero_sizes_and_absurd_thread_counts() {
    let empty_test = data_dir_of(&real().train.take(700), &real().test.take(0));
    for model in ["mlp", "convnet"] {
        refused(&[model, "--train-size", "640", "--data-dir", s(empty_test.path())], &["the test set in", "has no images: nothing to evaluate on"]);
    }
    let empty_train = data_dir_of(&real().train.take(0), &real().test.take(10));
    refused(&["convnet", "--data-dir", s(empty_train.path())], &["the training set in", "has no images"]);
    refused(&["eval", "--model", "mlp", "--weights", "x", "--test-size", "0"], &["--test-size must be at least 1"]);
    // 2^31 threads: capped to the machine's CPUs with a warning (it used to panic).
    let data = small_data(700);
    let out = run(&["convnet", "--device", "cpu", "--threads", "2147483648", "--epochs", "1", "--train-size", "640", "--test-size", "100", "--data-dir", s(data.path())]);
    let stderr = stderr_of(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("--threads 2147483648 is more than the") && stderr.contains("CPUs here; using"), "{stderr}");
}

#[test]
fn layer_sizes_that_cannot_fit_in_memory_are_refused_with_the_size() {
    refused(&["mlp", "--sizes", "784,100000000,10"], &["--sizes 784,100000000,10", "need about", "GiB", "available"]);
}

#[test]
fn non_finite_weights_are_refused_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("inf.safetensors");
    let entries: Vec<Entry> = nnmnist::convnet::Net::new(tch::Device::Cpu, 0)
        .entries()
        .into_iter()
        .map(|mut e| {
            if let (true, nnmnist::weights::Data::F32(v)) = (e.name == "model.7.bias", &mut e.data) {
                v[5] = f32::INFINITY;
            }
            e
        })
        .collect();
    nnmnist::checkpoint::save_to(&path, &entries, None).unwrap();
    let phrase = "tensor model.7.bias holds inf (at flat index 5): weights must be finite numbers";
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&path)], &[s(&path), phrase]);
    refused(&["convnet", "--device", "cpu", "--init-from", s(&path)], &[s(&path), phrase]);
}

/// Finite weights whose outputs overflow: no "Avg loss: NaN" printed and recorded as a result.
#[test]
fn an_evaluation_that_overflows_is_an_error_not_a_result() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.safetensors");
    let entries: Vec<Entry> = nnmnist::convnet::Net::new(tch::Device::Cpu, 0)
        .entries()
        .into_iter()
        .map(|e| if e.name == "model.9.weight" { Entry::f32(e.name, e.shape, vec![3e38; 1000]) } else { e })
        .collect();
    nnmnist::checkpoint::save_to(&path, &entries, None).unwrap();
    let m = tmp.path().join("m.jsonl");
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&path), "--metrics", s(&m)], &[s(&path), "the test loss is", "outputs overflow"]);
    assert_eq!(std::fs::read_to_string(&m).unwrap_or_default(), "", "nothing recorded");
}

#[test]
fn metrics_and_save_naming_one_file_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("run.out");
    let link = tmp.path().join("link.out");
    symlink(&f, &link).unwrap();
    refused(&["mlp", "--save", s(&f), "--metrics", s(&link)], &["are the same file"]);
}

// ---------------------------------------------------------------- bounded work on hostile data

#[test]
fn fifos_are_refused_instead_of_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(100);
    let labels = data.path().join(TEST_LABELS);
    std::fs::remove_file(&labels).unwrap();
    mkfifo(&labels);
    refused(&["show", "0", "--data-dir", s(data.path())], &[s(&labels), "it is a FIFO, not a regular file"]);
    let weights = tmp.path().join("w.safetensors");
    mkfifo(&weights);
    refused(&["eval", "--model", "mlp", "--weights", s(&weights)], &[s(&weights), "it is a FIFO, not a regular file"]);
    let metrics = tmp.path().join("m.fifo");
    mkfifo(&metrics);
    refused(&["mlp", "--metrics", s(&metrics)], &[s(&metrics), "is a FIFO with no reader"]);
}

/// A .gz of 1.3 MB that inflates to 1 GiB behind a header promising 100 labels: refused
/// after reading what the header promises and counting at most 64 MiB more, in bounded
/// memory (the whole file used to be inflated first: 1.49 GB peak).
#[test]
fn a_gzip_bomb_is_refused_in_bounded_memory() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let data = small_data(100);
    let path = data.path().join(format!("{TEST_LABELS}.gz"));
    std::fs::remove_file(data.path().join(TEST_LABELS)).unwrap();
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&labels_idx(&real().test.take(100).labels)).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&zeros).unwrap();
    }
    std::fs::write(&path, enc.finish().unwrap()).unwrap();
    let started = Instant::now();
    let child = common::nnmnist().args(["show", "0", "--data-dir", s(data.path())]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    // SAFETY: getrusage fills the struct it is given.
    let peak_kib = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u.ru_maxrss
    };
    let stderr = stderr_of(&out);
    eprintln!("gzip bomb: {took:?}, peak RSS of the largest child so far {} MiB: {stderr}", peak_kib / 1024);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(s(&path)) && stderr.contains("more than 67108864 unexpected bytes after the 100 data bytes"), "{stderr}");
    assert!(peak_kib < 900 * 1024, "peak RSS {} MiB: the stream was inflated whole", peak_kib / 1024);
}

// ---------------------------------------------------------------- messages about what the user did

#[test]
fn a_default_that_does_not_fit_the_data_names_its_flag() {
    let data = small_data(2000);
    refused(&["mlp", "--data-dir", s(data.path())], &[
        "nn.py trains on the first 50000 training images; the training set in",
        "has 2000: use --train-size N (N <= 2000)",
    ]);
}

// ---------------------------------------------------------------- fault injection

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

// ---------------------------------------------------------------- found by a hostile user

/// `nnmnist mlp | head -1`: stdout closes, the run goes on, saves every epoch and exits 0
/// (it used to panic in println! and lose the epoch).
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
fn other_files_beside_the_target_are_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("x");
    let (lock_of_other, user_file, stale) = (tmp.path().join(".x.tmp.lock"), tmp.path().join(".x.tmpfoo"), tmp.path().join(".x.tmp77"));
    for f in [&lock_of_other, &user_file, &stale] {
        std::fs::write(f, b"...").unwrap();
    }
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())]).status.success());
    for f in [&lock_of_other, &user_file, &stale] {
        assert_eq!(std::fs::read(f).unwrap(), b"...", "{} is left as it was", f.display());
    }
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

/// SIGTERM while libtorch works outside a training loop (building the network and the data
/// tensors, evaluating): exit 143 at once, never a corrupted heap, an abort or a panic (the
/// handler used to run exit() under a busy libtorch). The signal goes at a random moment
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

#[test]
fn values_beyond_float32_are_refused_for_the_convnet() {
    refused(&["convnet", "--lr", "1e39"], &["--lr must be at most 3.4028235e38 (the convnet computes in float32), got 1e39"]);
    refused(&["trace", "--model", "convnet", "--weights", "x", "--out", "y", "--weight-decay", "1e308"], &["--weight-decay must be at most"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f64.safetensors");
    let entries: Vec<Entry> = nnmnist::convnet::Net::new(tch::Device::Cpu, 0)
        .entries()
        .into_iter()
        .map(|e| {
            let mut v = e.to_f64();
            if e.name == "model.9.bias" {
                v[0] = 1e300;
            }
            Entry::f64(e.name, e.shape, v)
        })
        .collect();
    nnmnist::checkpoint::save_to(&path, &entries, None).unwrap();
    refused(&["eval", "--model", "convnet", "--device", "cpu", "--weights", s(&path)], &["tensor model.9.bias holds 1e300 (at flat index 0), beyond float32's range"]);
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

#[test]
fn gzip_with_several_members_reads_as_zcat_does_and_counts_are_compared_first() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let data = small_data(100);
    let bytes = labels_idx(&real().test.take(100).labels);
    let member = |b: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let mut two = member(&bytes[..50]);
    two.extend(member(&bytes[50..]));
    std::fs::remove_file(data.path().join(TEST_LABELS)).unwrap();
    std::fs::write(data.path().join(format!("{TEST_LABELS}.gz")), two).unwrap();
    let out = run(&["show", "3", "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // An image file whose header promises 5,000,000 images beside 100 labels: refused by the
    // count, before a byte of the images is read.
    let images = data.path().join(TEST_IMAGES);
    std::fs::write(&images, common::idx(nnmnist::data::IMAGE_MAGIC, &[5_000_000, 28, 28], &[0; 784])).unwrap();
    refused(&["show", "0", "--data-dir", s(data.path())], &["holds 5000000 images but", "holds 100 labels"]);
}

#[test]
fn save_keeps_the_owner_of_the_file_it_replaces() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: only root can give a file to another owner, so there is no other owner to keep");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("owned.safetensors");
    std::fs::write(&ck, b"old").unwrap();
    std::os::unix::fs::chown(&ck, Some(65534), Some(65534)).unwrap();
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())]).status.success());
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&ck).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
}

#[test]
fn flags_that_would_be_ignored_are_refused() {
    refused(&["trace", "--model", "mlp", "--weights", "w", "--out", "o", "--lr", "5"], &["--lr is the convnet's"]);
    refused(&["trace", "--model", "convnet", "--weights", "w", "--out", "o", "--eta", "5"], &["--eta is the MLP's"]);
    refused(&["eval", "--model", "mlp", "--weights", "w", "--device", "cuda"], &["--device and --threads apply to the convnet"]);
    refused(&["eval", "--model", "mlp", "--weights", "w", "--threads", "0"], &["--device and --threads apply to the convnet"]);
}

#[test]
fn messages_name_what_the_user_did() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    // A default that does not fit: the default is named, and the flag that changes it.
    refused(&["convnet", "--device", "cpu", "--train-size", "63", "--data-dir", d], &["the default batch size 64 is larger than the 63 training images (--train-size 63): use --batch-size N (N <= 63)"]);
    // A checkpoint's sizes on smaller data: the checkpoint is named, not a flag it ignores.
    let ck = tmp.path().join("m.safetensors");
    assert!(run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", d]).status.success());
    let tiny = small_data(300);
    refused(&["mlp", "--resume", s(&ck), "--epochs", "2", "--data-dir", s(tiny.path())], &[
        s(&ck),
        "its run uses the first 600 training images, and",
        "has 300: resume it with the data it was trained on (--data-dir)",
    ]);
    // Divergence names the rate, and the regularisation given as its likely cause.
    let out = run(&["mlp", "--train-size", "600", "--test-size", "100", "--lambda", "1e308", "--data-dir", d]);
    assert!(stderr_of(&out).contains("try a smaller learning rate (--eta) or a smaller --lambda (now 1e308: each step multiplies the weights by 1 - eta*lambda/n)"), "{}", stderr_of(&out));
    // A data directory that is a file.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    refused(&["show", "0", "--data-dir", s(&file)], &[s(&file), "is a regular file, not a directory"]);
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

// ---------------------------------------------------------------- found by a second hostile pass

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

/// The lock is only ever nnmnist's own file: a link or somebody's file at its name is
/// refused, untouched.
#[test]
fn the_lock_never_takes_over_another_file() {
    let tmp = tempfile::tempdir().unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let ck = tmp.path().join("q.st");
    symlink(&victim, tmp.path().join(".q.st.lock")).unwrap();
    refused(&["mlp", "--save", s(&ck)], &[".q.st.lock is a symbolic link, not nnmnist's lock file"]);
    std::fs::remove_file(tmp.path().join(".q.st.lock")).unwrap();
    std::fs::write(tmp.path().join(".q.st.lock"), "notes of mine").unwrap();
    refused(&["mlp", "--save", s(&ck)], &["holds something else than an nnmnist lock"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert_eq!(std::fs::read_to_string(tmp.path().join(".q.st.lock")).unwrap(), "notes of mine");
    // A pid file of the user's (digits), and a hard link to one: neither is written.
    std::fs::write(tmp.path().join(".q.st.lock"), "4242\n").unwrap();
    refused(&["mlp", "--save", s(&ck)], &["holds something else than an nnmnist lock"]);
    assert_eq!(std::fs::read_to_string(tmp.path().join(".q.st.lock")).unwrap(), "4242\n");
    std::fs::remove_file(tmp.path().join(".q.st.lock")).unwrap();
    let pid_file = tmp.path().join("my.pid");
    std::fs::write(&pid_file, "").unwrap();
    std::fs::hard_link(&pid_file, tmp.path().join(".q.st.lock")).unwrap();
    refused(&["mlp", "--save", s(&ck)], &[".q.st.lock has 2 hard links, so it is not nnmnist's lock file"]);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "", "the linked file is not written");
    assert!(tmp.path().join(".q.st.lock").exists(), "nor removed");
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

#[test]
fn float32_edges_of_the_convnet_rates() {
    let data = small_data(700);
    // f32::MAX itself is a float32: accepted (the run diverges, which says so).
    let out = run(&["convnet", "--device", "cpu", "--threads", "1", "--train-size", "640", "--test-size", "100", "--epochs", "1", "--lr", "3.4028235e38", "--data-dir", s(data.path())]);
    assert!(!stderr_of(&out).contains("must be at most"), "{}", stderr_of(&out));
    refused(&["convnet", "--lr", "1e-46"], &["--lr 1e-46 is 0 in float32"]);
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

#[test]
fn trace_names_its_defaults_as_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&w, &nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries(), None).unwrap();
    let data = small_data(63);
    refused(&["trace", "--model", "convnet", "--device", "cpu", "--weights", s(&w), "--out", s(&tmp.path().join("t")), "--data-dir", s(data.path())], &[
        "the batch, training images [0, 64) (--batch-start, --batch-size), runs past the 63 training images",
    ]);
}

// ---------------------------------------------------------------- saves that would fail, private files, hostile names

/// `--save` paths that would train and then fail to save are refused before any training,
/// and before the metrics file is created: a trailing slash, and a name whose temporary
/// name beside it (`.NAME.XXXXXX`, 8 bytes longer) would pass the file system's limit.
#[test]
fn saves_that_would_fail_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    let m = tmp.path().join("m.jsonl");
    let slash = format!("{}/out.st/", s(tmp.path()));
    refused(&["mlp", "--train-size", "600", "--save", &slash, "--metrics", s(&m), "--data-dir", d], &["cannot save to", "out.st/: the path names a directory (it ends with /"]);
    assert!(!m.exists(), "no metrics file is left behind");
    let limit = 255; // NAME_MAX of the file systems tests run on (ext4, tmpfs, xfs, btrfs)
    let long = tmp.path().join(format!("{}.st", "n".repeat(limit - 8 - 3 + 1)));
    refused(&["mlp", "--train-size", "600", "--save", s(&long), "--data-dir", d], &["its name is 248 bytes long", "limit of 255: choose a name of at most 247 bytes"]);
    // At the limit, it trains and saves.
    let longest = tmp.path().join(format!("{}.st", "n".repeat(limit - 8 - 3)));
    let out = run(&["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&longest), "--data-dir", d]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(Weights::load(&longest).unwrap().state.unwrap().epochs_done, 1);
    assert!(temporaries(tmp.path()).is_empty(), "{:?}", temporaries(tmp.path()));
}

/// The temporary file of a save has the final mode from its creation: a 0600 checkpoint is
/// never, even for a moment, readable by others. Watched through /proc/self/fd while large
/// saves run in this process.
#[test]
fn a_private_checkpoint_is_never_readable_by_others_while_it_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("private.safetensors");
    std::fs::write(&ck, b"old").unwrap();
    std::fs::set_permissions(&ck, std::fs::Permissions::from_mode(0o600)).unwrap();
    let target = nnmnist::files::SaveTarget::open(&ck).unwrap();
    let entries = vec![Entry::f64("w", vec![16 << 20], vec![0.5; 16 << 20])]; // 128 MiB
    let bytes = nnmnist::checkpoint::serialize(&entries, None).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let dir = tmp.path().canonicalize().unwrap();
    let seen = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut modes = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
                    let Ok(to) = std::fs::read_link(fd.path()) else { continue };
                    // The directory itself is open too (the crate syncs it): files only.
                    if to.starts_with(&dir) && to != dir && !to.to_string_lossy().ends_with(".lock") {
                        if let Ok(m) = std::fs::metadata(fd.path()) {
                            modes.push(m.permissions().mode() & 0o777);
                        }
                    }
                }
            }
            modes
        });
        let started = Instant::now();
        // Until the watcher has seen the temporary file open a few times.
        while started.elapsed() < Duration::from_secs(60) {
            target.write(&bytes).unwrap();
            if started.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        watcher.join().unwrap()
    });
    assert!(!seen.is_empty(), "the watcher never saw the temporary file open");
    let wrong: std::collections::BTreeSet<u32> = seen.iter().copied().filter(|&m| m != 0o600).collect();
    assert!(wrong.is_empty(), "modes seen while writing: {wrong:?} (decimal)");
    assert_eq!(std::fs::metadata(&ck).unwrap().permissions().mode() & 0o777, 0o600);
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
fn hostile_tensor_names_reach_the_terminal_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let hostile = "\x1b]0;owned\x07\x1b[2J\x1b[Hnnmnist: all good\n.weight";
    let st = tmp.path().join("hostile.safetensors");
    let mut entries = Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries();
    entries.retain(|e| e.name != "2.bias");
    entries.push(Entry::f32(hostile, vec![1], vec![0.0]));
    nnmnist::checkpoint::save_to(&st, &entries, None).unwrap();
    let pt = tmp.path().join("hostile.pt");
    let script = "import os, torch; torch.save({'0.weight': torch.zeros(30, 784), '0.bias': torch.zeros(30), '2.weight': torch.zeros(10, 30), os.environ['KEY']: torch.zeros(1)}, os.environ['OUT'])";
    let made = common::command(python()).args(["-c", script]).env("KEY", hostile).env("OUT", &pt).output().unwrap();
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

/// Messages that said something untrue: a directory that cannot be reached is not "missing";
/// a layer gap is not a wrong output size; a fix hint is offered only where it is accepted;
/// seeds past 2^63 and a batch start past the data are refused by name.
#[test]
fn messages_say_what_is_true() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let d = s(data.path());
    // --save in a directory behind a symbolic-link loop, or past PATH_MAX.
    let looping = tmp.path().join("loop");
    symlink(&looping, &looping).unwrap();
    refused(&["mlp", "--save", s(&looping.join("x.st")), "--data-dir", d], &["cannot reach directory", "Too many levels of symbolic links"]);
    let deep = format!("{}/{}/x.st", s(tmp.path()), ["d"; 2100].join("/"));
    let stderr = refused(&["mlp", "--save", &deep, "--data-dir", d], &["cannot save to"]);
    assert!(!stderr.contains("does not exist"), "{stderr}");
    // Weights with layers 0, 2 and 6: layer 4 is missing.
    let gap = tmp.path().join("gap.safetensors");
    let mut entries = Network::seeded(&[784, 30, 30, 30, 10], nnmnist::mlp::Init::Normal, 0).entries();
    entries.retain(|e| !e.name.starts_with("4."));
    nnmnist::checkpoint::save_to(&gap, &entries, None).unwrap();
    refused(&["eval", "--model", "mlp", "--weights", s(&gap), "--data-dir", d], &["tensor 4.weight is missing, but the file has 6.weight"]);
    // 784,30,5 would be refused as --sizes: not offered as the fix.
    let five = tmp.path().join("five.safetensors");
    nnmnist::checkpoint::save_to(&five, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries().into_iter().map(|e| match e.name.as_str() {
        "2.weight" => Entry::f64("2.weight", vec![5, 30], vec![0.0; 150]),
        "2.bias" => Entry::f64("2.bias", vec![5], vec![0.0; 5]),
        _ => e,
    }).collect::<Vec<_>>(), None).unwrap();
    let stderr = refused(&["mlp", "--init-from", s(&five), "--data-dir", d], &["its layers are 784,30,5, which no MNIST MLP has"]);
    assert!(!stderr.contains("pass --sizes"), "{stderr}");
    // A layer of a shape that does not follow: no literal placeholder.
    let bad = tmp.path().join("bad.safetensors");
    nnmnist::checkpoint::save_to(&bad, &[Entry::f64("0.weight", vec![30, 784], vec![0.0; 30 * 784]), Entry::f64("2.weight", vec![10, 29], vec![0.0; 290])], None).unwrap();
    let stderr = refused(&["eval", "--model", "mlp", "--weights", s(&bad), "--data-dir", d], &["expected (N, 30) for some N"]);
    assert!(!stderr.contains("{out}"), "{stderr}");
    refused(&["mlp", "--seed", "9223372036854775808", "--data-dir", d], &["--seed must be below 2^63"]);
    // --errors 0 asks for no table: none, not "the first 0:" and an empty one.
    let w0 = tmp.path().join("w0.safetensors");
    nnmnist::checkpoint::save_to(&w0, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    let out = run(&["eval", "--model", "mlp", "--weights", s(&w0), "--errors", "0", "--data-dir", d]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Misclassified"), "{}", String::from_utf8_lossy(&out.stdout));
    let w = tmp.path().join("w.safetensors");
    nnmnist::checkpoint::save_to(&w, &Network::seeded(&[784, 30, 10], nnmnist::mlp::Init::Normal, 0).entries(), None).unwrap();
    refused(&["trace", "--model", "mlp", "--weights", s(&w), "--out", s(&tmp.path().join("t.st")), "--batch-start", "18446744073709551615", "--data-dir", d], &[
        "--batch-start 18446744073709551615 is past the 700 training images",
    ]);
}

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

/// A save killed between the link of its finished temporary file and the rename leaves
/// `.NAME.XXXXXX`, a complete checkpoint; a user may keep files of such names too (copies of
/// the checkpoint, notes), and a name cannot tell them apart: no run removes any of them,
/// and the next save works beside them.
#[test]
fn files_of_temporary_names_beside_a_save_are_never_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("ck.safetensors");
    let args = ["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())];
    assert!(run(&args).status.success());
    let (linked, users) = (tmp.path().join(".ck.safetensors.Ab12Cd"), tmp.path().join(".ck.safetensors.zz99zz"));
    std::fs::copy(&ck, &linked).unwrap();
    std::fs::write(&users, b"notes of mine").unwrap();
    let before = std::fs::read(&linked).unwrap();
    std::fs::remove_file(&ck).unwrap();
    assert!(run(&args).status.success());
    assert_eq!(Weights::load(&ck).unwrap().state.unwrap().epochs_done, 1, "the next save works");
    assert_eq!(std::fs::read(&linked).unwrap(), before, "a complete checkpoint of a temporary name is kept");
    assert_eq!(std::fs::read(&users).unwrap(), b"notes of mine", "a user's file is left alone");
}

// ---------------------------------------------------------------- nothing the user keeps is touched

/// A checkpoint of an unfinished run of `model` at `path`: trained in process on `data`
/// and stopped before its fourth batch.
fn unfinished_checkpoint(model: &str, path: &Path, data: &Path) {
    let mut args = vec![model, "--train-size", "640", "--test-size", "100", "--epochs", "2", "--save", s(path), "--data-dir", s(data)];
    if model == "convnet" {
        args.extend(["--device", "cpu", "--threads", "1"]);
    }
    let err = run_cli(&args, &stop_after(3)).expect_err("the stop interrupts the run");
    assert!(err.to_string().contains("interrupted in epoch 1"), "{err:#}");
    let state = Weights::load(path).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch), (0, 3));
}

/// Copies of the checkpoint and a text file beside it, under names a save's temporary file
/// could have (`.NAME.XXXXXX`, `.NAME.tmpDIGITS`): a save there keeps every one.
#[test]
fn a_save_keeps_the_users_files_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("run.safetensors");
    let args = ["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())];
    assert!(run(&args).status.success());
    let checkpoint = std::fs::read(&ck).unwrap();
    let (backup, epoch1, notes) = (tmp.path().join(".run.safetensors.backup"), tmp.path().join(".run.safetensors.epoch1"), tmp.path().join(".run.safetensors.tmp2024"));
    std::fs::write(&backup, &checkpoint).unwrap();
    std::fs::write(&epoch1, &checkpoint).unwrap();
    std::fs::write(&notes, "what I tried in 2024\n").unwrap();
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(std::fs::read(&backup).unwrap(), checkpoint, "the backup survives");
    assert_eq!(std::fs::read(&epoch1).unwrap(), checkpoint, "the epoch-1 copy survives");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "what I tried in 2024\n", "the text file survives");
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

/// A FIFO beside the save target, under a temporary file's name, does not make a save wait
/// (no file is opened before its type is known): the run saves and ends, the FIFO stays. A
/// FIFO at the lock file's name is refused at once, untouched.
#[test]
fn a_fifo_beside_the_target_never_hangs_a_save() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_data(700);
    let ck = tmp.path().join("run.safetensors");
    let args = ["mlp", "--train-size", "600", "--test-size", "100", "--epochs", "1", "--save", s(&ck), "--data-dir", s(data.path())];
    assert!(run(&args).status.success());
    let fifo = tmp.path().join(".run.safetensors.abcdef");
    mkfifo(&fifo);
    let started = Instant::now();
    let out = run(&args);
    eprintln!("a save beside a FIFO ended in {:?}", started.elapsed());
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(Weights::load(&ck).unwrap().state.unwrap().epochs_done, 1);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo_like(), "the FIFO is left alone");
    let lock = tmp.path().join(".run.safetensors.lock");
    mkfifo(&lock);
    refused(&args, &[s(&lock), "is a FIFO, not nnmnist's lock file"]);
    assert!(std::fs::symlink_metadata(&lock).unwrap().file_type().is_fifo_like(), "the FIFO at the lock's name is left alone");
}

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
