//! Helpers the integration tests share: the committed data, IDX files built by hand, and
//! running the binary to see what it answers.
#![allow(dead_code)] // each test binary uses its own subset
use flate2::write::GzEncoder;
use flate2::Compression;
use nnmnist::data::{Mnist, IMAGE_MAGIC, LABEL_MAGIC, PIXELS};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";

/// The repository: `NNMNIST_ROOT` where set (test binaries run on another machine, e.g. a
/// GPU machine, from a copy of the repository), else the one they were built in.
pub fn root() -> PathBuf {
    std::env::var_os("NNMNIST_ROOT").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The nnmnist binary: `NNMNIST_BIN` where set, else the one cargo built beside the tests.
pub fn bin() -> PathBuf {
    std::env::var_os("NNMNIST_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nnmnist")))
}

/// `program` as a child process that starts with the default action for SIGINT, SIGQUIT,
/// SIGTERM and SIGHUP, whatever this test process inherited. A shell starts background jobs
/// with SIGINT and SIGQUIT ignored (and `nohup` ignores SIGHUP); children inherit that, and
/// nnmnist rightly keeps a signal that was ignored when it started ignored. A test that
/// signals a child must not depend on how the suite was started, so every child starts
/// clean; a test of the inherited ignore sets it itself (`trap '' HUP` in a shell).
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(program);
    // SAFETY: only async-signal-safe calls (signal(2)) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

/// The nnmnist binary as a child process ([`command`]: default signal dispositions), with
/// `RUST_LOG` removed so that its stderr is what a user sees, and `NNMNIST_DATA_DIR` removed
/// so that the data directory is the one a test names.
pub fn nnmnist() -> std::process::Command {
    let mut cmd = command(bin());
    cmd.env_remove("RUST_LOG").env_remove("NNMNIST_DATA_DIR");
    cmd
}

/// The Python with torch: `NNMNIST_PYTHON` where set, else the repository's .venv.
pub fn python() -> PathBuf {
    std::env::var_os("NNMNIST_PYTHON").map(PathBuf::from).unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// The repository's data/ directory.
pub fn repo_data() -> PathBuf {
    root().join("data")
}

/// The committed data/, loaded once per test binary.
pub fn real() -> &'static Mnist {
    static REAL: OnceLock<Mnist> = OnceLock::new();
    REAL.get_or_init(|| Mnist::load(&repo_data()).expect("data/ loads"))
}

/// IDX bytes: big-endian magic, big-endian dims, then `body`.
pub fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut out = magic.to_be_bytes().to_vec();
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// An IDX image file of 28x28 images.
pub fn images_idx(pixels: &[u8]) -> Vec<u8> {
    idx(IMAGE_MAGIC, &[(pixels.len() / PIXELS) as u32, 28, 28], pixels)
}

/// An IDX label file.
pub fn labels_idx(labels: &[u8]) -> Vec<u8> {
    idx(LABEL_MAGIC, &[labels.len() as u32], labels)
}

/// `bytes` gzipped.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A path as &str, for messages and arguments.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `nnmnist ARGS...` run in process, as the binary resolves and runs it, with `stop` asked
/// before every batch of a training run. A run the stop interrupted comes back as the error
/// [`nnmnist::outcome::Interrupted`] (for `unwrap_err` and `downcast_ref`), `diff`'s
/// "different" as an error saying so: Ok is a command that did all it was asked.
pub fn run_cli(args: &[&str], stop: &dyn nnmnist::signal::StopCondition) -> anyhow::Result<()> {
    use clap::Parser;
    use nnmnist::outcome::Outcome;
    let argv: Vec<&str> = std::iter::once("nnmnist").chain(args.iter().copied()).collect();
    let cli = nnmnist::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match nnmnist::config::Job::from_cli(cli)?.run(stop)? {
        Outcome::Done => Ok(()),
        Outcome::Different => Err(anyhow::anyhow!("the files differ")),
        Outcome::Interrupted(i) => Err(anyhow::Error::msg(i)),
    }
}

/// A stop condition that never stops.
pub fn never() -> impl Fn() -> bool {
    || false
}

/// A stop condition that says stop once it has been asked `n` times (before batch `n` of
/// the run, counting from the first batch it trains).
pub fn stop_after(n: usize) -> impl Fn() -> bool {
    let asked = std::cell::Cell::new(0usize);
    move || {
        asked.set(asked.get() + 1);
        asked.get() > n
    }
}

/// A data directory holding `train` and `test` as raw IDX files.
pub fn data_dir_of(train: &nnmnist::data::Split, test: &nnmnist::data::Split) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(TRAIN_IMAGES), images_idx(&train.images)).unwrap();
    std::fs::write(dir.path().join(TRAIN_LABELS), labels_idx(&train.labels)).unwrap();
    std::fs::write(dir.path().join(TEST_IMAGES), images_idx(&test.images)).unwrap();
    std::fs::write(dir.path().join(TEST_LABELS), labels_idx(&test.labels)).unwrap();
    dir
}

/// A data directory with the first `n` training and test images of data/, raw IDX.
pub fn small_data(n: usize) -> tempfile::TempDir {
    data_dir_of(&real().train.take(n), &real().test.take(n))
}

/// How long a test waits for an event of a child (a line, a file) before it fails: minutes,
/// so that a slow or busy machine is never mistaken for a broken program.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// The lines of a child's stdout or stderr, read on a thread of their own, so that a test
/// can wait for a line with a deadline instead of blocking forever or sleeping.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    /// Every line received so far, for messages.
    pub seen: String,
}

impl Lines {
    pub fn new(stream: impl std::io::Read + Send + 'static) -> Lines {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: String::new() }
    }

    /// Waits for a line that starts with `prefix` and returns it; panics, naming what it
    /// saw, when the stream ends first or [`PATIENCE`] runs out.
    pub fn wait_for(&mut self, prefix: &str) -> String {
        self.wait_until(prefix, |line| line.starts_with(prefix))
    }

    fn wait_until(&mut self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if found(&line) {
                        return line;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("no line with {what:?} within {PATIENCE:?}; saw:\n{}", self.seen),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the stream ended before a line with {what:?}; saw:\n{}", self.seen),
            }
        }
    }

    /// Waits for a line that contains `text` (see [`Lines::wait_for`]).
    pub fn wait_for_containing(&mut self, text: &str) -> String {
        self.wait_until(text, |line| line.contains(text))
    }

    /// Every remaining line, until the stream ends (the child exited or closed it).
    pub fn rest(&mut self) -> String {
        while let Ok(line) = self.rx.recv() {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        self.seen.clone()
    }
}

/// Waits for `child` to exit, killing it and failing after [`PATIENCE`]: a hang is a
/// failure with a message, not a stuck suite.
pub fn wait_with_patience(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {PATIENCE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A small xorshift generator, seeded: moments and choices in tests that are random but
/// reproducible.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A fraction in [0, 1).
    pub fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `cmd` to its end and returns its output, as `Command::output` does, but kills it
/// and fails after [`PATIENCE`].
pub fn output_with_patience(cmd: &mut std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped (wait is pending).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{cmd:?} did not exit within {PATIENCE:?}");
        }
    }
}

/// One broken data file: `replaces` (an IDX name) is removed from a data directory of 10
/// training and 10 test images and `bytes` written as `file_name` instead; loading must then
/// fail naming that file (and `also`, another file the message must name) and saying every
/// one of `phrases`.
pub struct BrokenData {
    pub case: &'static str,
    pub replaces: &'static str,
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub phrases: Vec<&'static str>,
    pub also: Option<&'static str>,
}

/// Every kind of broken IDX file, raw and gzipped: one table for the loader's own tests and
/// the command line's.
pub fn broken_data_cases() -> Vec<BrokenData> {
    let (train, test) = (real().train.take(10), real().test.take(10));
    let images = images_idx(&train.images);
    let labels = labels_idx(&test.labels);
    let packed = gz(&images);
    let case = |case, replaces, file_name: String, bytes, phrases: &[&'static str]| BrokenData { case, replaces, file_name, bytes, phrases: phrases.to_vec(), also: None };
    let raw = |name: &'static str| name.to_string();
    let dotgz = |name: &'static str| format!("{name}.gz");
    let mut out_of_range = train.labels.clone();
    out_of_range[7] = 10;
    let mut gz_out_of_range = test.labels.clone();
    gz_out_of_range[0] = 255;
    let mut gzip_magic = labels.clone();
    gzip_magic[..4].copy_from_slice(b"\x1f\x8b\x08\x00");
    let mut flipped = packed.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 16] {
        *b ^= 0x5a;
    }
    let mut trailing = images.clone();
    trailing.extend_from_slice(&[0; 5]);
    vec![
        case("empty raw", TRAIN_LABELS, raw(TRAIN_LABELS), vec![], &["empty file"]),
        case("empty gz", TEST_IMAGES, dotgz(TEST_IMAGES), vec![], &["empty file"]),
        case("cut in the data", TRAIN_IMAGES, raw(TRAIN_IMAGES), images[..images.len() - 100].to_vec(), &["truncated", "promises 7840 data bytes, the file has 7740"]),
        case("cut in the header", TRAIN_IMAGES, raw(TRAIN_IMAGES), images[..10].to_vec(), &["truncated", "header"]),
        case("labels cut in the data", TEST_LABELS, raw(TEST_LABELS), labels[..labels.len() - 3].to_vec(), &["truncated"]),
        case("gz cut in half", TRAIN_IMAGES, dotgz(TRAIN_IMAGES), packed[..packed.len() / 2].to_vec(), &["corrupt or truncated gzip"]),
        case("gz without its trailer", TRAIN_IMAGES, dotgz(TRAIN_IMAGES), packed[..packed.len() - 4].to_vec(), &["corrupt or truncated gzip"]),
        case("gz cut in its header", TRAIN_IMAGES, dotgz(TRAIN_IMAGES), packed[..5].to_vec(), &["corrupt or truncated gzip"]),
        case("gz of a cut IDX", TRAIN_IMAGES, dotgz(TRAIN_IMAGES), gz(&images[..images.len() - 1]), &["truncated"]),
        case("not gzip under .gz", TEST_LABELS, dotgz(TEST_LABELS), labels.clone(), &["corrupt or truncated gzip"]),
        case("gz with flipped deflate data", TRAIN_IMAGES, dotgz(TRAIN_IMAGES), flipped, &["corrupt or truncated gzip"]),
        case("labels where images belong", TRAIN_IMAGES, raw(TRAIN_IMAGES), labels_idx(&[1; 10]), &["wrong magic number 0x00000801, expected 0x00000803"]),
        case("gzip magic in a raw file", TEST_LABELS, raw(TEST_LABELS), gzip_magic, &["wrong magic", "0x1f8b0800"]),
        case("images not 28x28", TRAIN_IMAGES, raw(TRAIN_IMAGES), idx(IMAGE_MAGIC, &[10, 32, 24], &train.images[..10 * 32 * 24]), &["images are 32x24, expected 28x28"]),
        BrokenData { also: Some(TEST_IMAGES), ..case("fewer labels than images", TEST_LABELS, raw(TEST_LABELS), labels_idx(&test.labels[..9]), &["10 images", "9 labels", "counts must match"]) },
        case("label out of range", TRAIN_LABELS, raw(TRAIN_LABELS), labels_idx(&out_of_range), &["label 10 at index 7 is out of range"]),
        case("gz label out of range", TEST_LABELS, dotgz(TEST_LABELS), gz(&labels_idx(&gz_out_of_range)), &["label 255 at index 0 is out of range"]),
        case("trailing bytes", TRAIN_IMAGES, raw(TRAIN_IMAGES), trailing, &["5 unexpected bytes"]),
    ]
}

impl BrokenData {
    /// A data directory of 10 images with this case's broken file; returns it and the
    /// file's path.
    pub fn dir(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = small_data(10);
        std::fs::remove_file(dir.path().join(self.replaces)).unwrap();
        let path = dir.path().join(&self.file_name);
        std::fs::write(&path, &self.bytes).unwrap();
        (dir, path)
    }

    /// Checks `message`, the error for `dir`, against the case; panics naming the case.
    pub fn check(&self, dir: &Path, path: &Path, message: &str) {
        let also = self.also.map(|name| dir.join(name));
        for phrase in std::iter::once(s(path)).chain(also.as_deref().map(s)).chain(self.phrases.iter().copied()) {
            assert!(message.contains(phrase), "{}: the error lacks {phrase:?}: {message}", self.case);
        }
    }
}

/// Runs `cmd` to its end with stdout discarded and returns whether it succeeded, its stderr,
/// and its own peak resident set in KiB (from wait4: this child only, not the largest child
/// so far as getrusage(RUSAGE_CHILDREN) would say).
pub fn run_measured(cmd: &mut std::process::Command) -> (bool, String, i64) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let (mut status, pid) = (0, child.id() as libc::pid_t);
    // SAFETY: wait4 on our own child, not yet reaped, with a status and a rusage to fill.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut u), pid);
        u
    };
    // The child is reaped; `child` only holds its (closed) handles now.
    drop(child);
    (libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, stderr, usage.ru_maxrss)
}

// ---------------------------------------------------------------- the binary's answers

/// Exit codes: 1 for nnmnist's own errors, 2 for clap's usage errors.
pub const ERROR: i32 = 1;
pub const USAGE: i32 = 2;

/// Where a failure may happen.
#[derive(Clone, Copy, PartialEq)]
pub enum When {
    /// Before any data is trained on: stdout must not show an epoch.
    BeforeTraining,
    /// During training (a diverging loss).
    DuringTraining,
}

/// Runs `nnmnist args` to its end (a hang fails the test after [`PATIENCE`]).
pub fn run(args: &[&str]) -> std::process::Output {
    output_with_patience(nnmnist().args(args))
}

pub fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `nnmnist args...` and checks that it fails cleanly: exit code `code`, stderr holding
/// an error line and every one of `phrases`, no panic, no backtrace hint, no training started
/// unless `when` allows it. Returns stderr.
pub fn expect_failure(args: &[&str], code: i32, phrases: &[&str], when: When) -> String {
    let out = output_with_patience(nnmnist().args(args).env_remove("RUST_BACKTRACE").env("NO_COLOR", "1"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("nnmnist {}\n--- exit: {:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}", args.join(" "), out.status);
    // Shown with --nocapture (and for a failing test): what each bad input gets.
    eprintln!("[{:?}] nnmnist {} => {}", out.status.code(), args.join(" "), stderr.trim_end());
    assert_eq!(out.status.code(), Some(code), "wrong exit code (a signal if None)\n{context}");
    for phrase in phrases {
        assert!(stderr.contains(phrase), "stderr lacks {phrase:?}\n{context}");
    }
    assert!(stderr.contains("error:"), "no error line\n{context}");
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!stderr.contains(bad) && !stdout.contains(bad), "{bad:?} in the output\n{context}");
    }
    if when == When::BeforeTraining {
        assert!(!stdout.contains("Epoch 1") && !stdout.contains("Epoch 0"), "training started\n{context}");
    }
    stderr.into_owned()
}

/// A command nnmnist refuses before training: exit code 1, stderr holding every phrase.
pub fn refused(args: &[&str], phrases: &[&str]) -> String {
    expect_failure(args, ERROR, phrases, When::BeforeTraining)
}

/// A command line clap rejects: exit code 2.
pub fn usage_error(args: &[&str], phrases: &[&str]) -> String {
    expect_failure(args, USAGE, phrases, When::BeforeTraining)
}

/// A small data directory (100 images) where `name` is replaced by `bytes` stored as
/// `file_name`.
pub fn broken_data(name: &str, file_name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = small_data(100);
    std::fs::remove_file(dir.path().join(name)).unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

/// Whether `path` is a FIFO (not following a symbolic link).
pub fn is_fifo(path: &Path) -> bool {
    std::os::unix::fs::FileTypeExt::is_fifo(&std::fs::symlink_metadata(path).unwrap().file_type())
}

/// The hidden files in `dir` but locks: a save's temporary files (`.NAME.XXXXXX`,
/// atomic-write-file's names) and any other file a test put beside a target.
pub fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.') && !n.ends_with(".lock")).collect()
}

/// The eight tensors of a fresh convnet (seed 0), F32, with PyTorch's names.
pub fn convnet_entries() -> Vec<nnmnist::weights::Entry> {
    static ENTRIES: OnceLock<Vec<nnmnist::weights::Entry>> = OnceLock::new();
    ENTRIES.get_or_init(|| nnmnist::convnet::Net::new(tch::Device::Cpu, 0).entries()).clone()
}

/// Valid convnet weights ([`convnet_entries`]) in `dir`, as good.safetensors.
pub fn convnet_weights_file(dir: &Path) -> PathBuf {
    let path = dir.join("good.safetensors");
    nnmnist::checkpoint::save_to(&path, &convnet_entries(), None).unwrap();
    path
}

/// A checkpoint of an unfinished run of `model` at `path`: trained in process on `data`
/// and stopped before its fourth batch.
pub fn unfinished_checkpoint(model: &str, path: &Path, data: &Path) {
    let mut args = vec![model, "--train-size", "640", "--test-size", "100", "--epochs", "2", "--save", s(path), "--data-dir", s(data)];
    if model == "convnet" {
        args.extend(["--device", "cpu", "--threads", "1"]);
    }
    let err = run_cli(&args, &stop_after(3)).expect_err("the stop interrupts the run");
    assert!(err.to_string().contains("interrupted in epoch 1"), "{err:#}");
    let state = nnmnist::weights::Weights::load(path).unwrap().state.unwrap();
    assert_eq!((state.epochs_done, state.next_batch), (0, 3));
}
