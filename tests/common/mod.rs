//! Helpers the integration tests share: the committed data and IDX files built by hand.
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
/// before every batch of a training run.
pub fn run_cli(args: &[&str], stop: &dyn nnmnist::signal::StopCondition) -> anyhow::Result<()> {
    use clap::Parser;
    let argv: Vec<&str> = std::iter::once("nnmnist").chain(args.iter().copied()).collect();
    let cli = nnmnist::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    nnmnist::config::Job::from_cli(cli)?.run(stop)
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
