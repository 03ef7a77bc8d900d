//! MNIST in IDX format: raw or gzipped files, validated before use.
//!
//! IDX: a big-endian u32 magic (0x00000803 for images, 0x00000801 for labels), one big-endian
//! u32 per dimension (images: count, rows, cols; labels: count), then the raw u8 values.
//! Every error names the file and what is wrong with it; the parser never panics, whatever
//! the bytes (see the property test in tests/it/data.rs). Work is bounded by what the header
//! promises: a raw file whose size disagrees with its header is refused before its body is
//! read, and a gzipped one is inflated as a stream that stops at the promised size (one
//! extra byte is looked for, and at most 64 MiB more counted), never inflated whole first.
//! Only regular files are read (a FIFO or a device would block or never end). A file that
//! is there twice (raw and `.gz`, or under both names) is read once, and the other copy must
//! hold the same bytes (compared as a stream): two copies that differ are refused, naming
//! both, rather than one of them guessed.
//!
//! [`take_train`] and [`take_test`] are the one size check of every command: the first N
//! images of a split, with one wording, naming the flag that changes N.
use crate::terminal::Shown;
use crate::files;
use anyhow::{bail, Context, Result};
use flate2::read::MultiGzDecoder;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The data directory in the current directory, tried first without `--data-dir`.
pub const DEFAULT_DIR: &str = "data";
/// The environment variable that names the data directory when `--data-dir` is not given.
pub const DIR_VARIABLE: &str = "NNMNIST_DATA_DIR";
/// The repository's own `data/`, where the binary was built from: tried after `./data`, so
/// that the binary finds MNIST from any directory.
pub const REPOSITORY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
pub const LABEL_MAGIC: u32 = 0x0000_0801;
pub const ROWS: usize = 28;
pub const COLS: usize = 28;
/// Pixels per image, 28 * 28.
pub const PIXELS: usize = ROWS * COLS;
pub const CLASSES: usize = 10;

/// One split of MNIST: `images` holds `len()` images of 784 u8 pixels, row-major, one after
/// the other; `labels[i]` (0-9) is the digit in image i.
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A fingerprint of the images and labels, as 16 hex digits (FNV-1a, 64 bits, over
    /// the labels, then the pixels): checkpoints store their run's, so that a resume on
    /// other data of the same size is refused.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in self.labels.iter().chain(&self.images) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// The 784 pixels of image `i`, row by row (0 = background).
    pub fn image(&self, i: usize) -> &[u8; PIXELS] {
        &self.images.as_chunks::<PIXELS>().0[i]
    }

    /// The first `n` images and labels (all of them if `n` is larger).
    pub fn take(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split { images: self.images[..n * PIXELS].to_vec(), labels: self.labels[..n].to_vec() }
    }
}

/// The training and test splits, as read from a directory of MNIST files.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Split,
    pub test: Split,
}

impl Mnist {
    /// Reads `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
    /// and `t10k-labels-idx1-ubyte` from `dir`, each raw or with `.gz` (the dotted names
    /// `train-images.idx3-ubyte` etc. are accepted too).
    pub fn load(dir: &Path) -> Result<Mnist> {
        check_dir(dir)?;
        let train = load_split(dir, "train")?;
        let test = load_split(dir, "t10k")?;
        Ok(Mnist { train, test })
    }

    /// The test split alone (for `eval` and `show`), with the checks of [`Mnist::load`].
    pub fn load_test(dir: &Path) -> Result<Split> {
        check_dir(dir)?;
        load_split(dir, "t10k")
    }

    /// The two lines nn.py prints after loading.
    pub fn loaded_lines(&self) -> String {
        format!(
            "Loaded {} images of shape ({ROWS}, {COLS}) and {} labels.\n\
             Loaded {} test images of shape ({ROWS}, {COLS}) and {} labels.",
            self.train.len(),
            self.train.len(),
            self.test.len(),
            self.test.len()
        )
    }
}

fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(m) => bail!("data directory {} is {}, not a directory", dir.shown(), files::kind_of(&m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && std::fs::symlink_metadata(dir).is_err() => bail!(
            "data directory {} does not exist (the MNIST files live in data/ of the repository; \
             `scripts/make_data.py` rebuilds them)",
            dir.shown()
        ),
        Err(e) => bail!("data directory {} cannot be read ({e})", dir.shown()),
    }
}

/// The training images a run uses: the first `n` (`--train-size`), or without it the
/// model's `default` (N, why), or all of them. An empty result is an error.
pub fn take_train(split: &Split, n: Option<usize>, default: Option<(usize, &str)>, dir: &Path) -> Result<Split> {
    let len = split.len();
    if len == 0 {
        bail!("the training set in {} has no images: nothing to train on", dir.shown());
    }
    match (n, default) {
        (Some(n), _) if n > len => bail!("--train-size {n} is larger than the {len} training images in {}", dir.shown()),
        (Some(n), _) => Ok(split.take(n)),
        (None, Some((d, why))) if d > len => {
            bail!("{why}; the training set in {} has {len}: use --train-size N (N <= {len})", dir.shown())
        }
        (None, Some((d, _))) => Ok(split.take(d)),
        (None, None) => Ok(split.clone()),
    }
}

/// The test images a run or an evaluation uses: the first `n` (`--test-size`) or all of
/// them. An empty result is an error.
pub fn take_test(split: &Split, n: Option<usize>, dir: &Path) -> Result<Split> {
    let len = split.len();
    if len == 0 {
        bail!("the test set in {} has no images: nothing to evaluate on", dir.shown());
    }
    match n {
        Some(n) if n > len => bail!("--test-size {n} is larger than the {len} test images in {}", dir.shown()),
        Some(n) => Ok(split.take(n)),
        None => Ok(split.clone()),
    }
}

/// " (--train-size N)" when the training set was cut by the flag, for messages.
pub fn train_size_note(n: Option<usize>) -> String {
    n.map(|n| format!(" (--train-size {n})")).unwrap_or_default()
}

/// Both files of a split, headers first: image and label counts are compared before either
/// body is read (a header promising millions of images is refused by its label file's count,
/// not after inflating them). Where a file is there twice (raw and `.gz`, or under both
/// names), every other copy must hold the same bytes as the one read, or the split is
/// refused naming both.
fn load_split(dir: &Path, prefix: &str) -> Result<Split> {
    let image_copies = find_copies(dir, prefix, "images", 3)?;
    let label_copies = find_copies(dir, prefix, "labels", 1)?;
    let (images_path, labels_path) = (&image_copies[0], &label_copies[0]);
    let bad_images = || format!("{}: not a valid MNIST image file", images_path.shown());
    let bad_labels = || format!("{}: not a valid MNIST label file", labels_path.shown());
    let mut images = IdxFile::open(images_path, IMAGE_MAGIC, 3, bad_images)?;
    let mut labels = IdxFile::open(labels_path, LABEL_MAGIC, 1, bad_labels)?;
    if images.dims[0] != labels.dims[0] {
        bail!(
            "{} holds {} images but {} holds {} labels: the counts must match",
            images_path.shown(),
            images.dims[0],
            labels_path.shown(),
            labels.dims[0]
        );
    }
    let image_header = images.header();
    let label_header = labels.header();
    let labels = labels.body().with_context(bad_labels)?;
    let images = images.body().with_context(bad_images)?;
    for (copies, header, body) in [(&label_copies, &label_header, &labels), (&image_copies, &image_header, &images)] {
        for other in &copies[1..] {
            if !same_contents(other, header, body)? {
                bail!(
                    "{} and {} are two copies of one MNIST file with different contents: nnmnist will not guess which one to read; remove the one that is wrong",
                    copies[0].shown(),
                    other.shown()
                );
            }
        }
    }
    Ok(Split { images, labels })
}

/// Whether the file `path` (inflated when its name ends in `.gz`) holds exactly `header`
/// then `body`: streamed, in bounded memory, reading at most one byte more than they hold.
fn same_contents(path: &Path, header: &[u8], body: &[u8]) -> Result<bool> {
    let (file, _) = files::open_readable(path, "MNIST file")?;
    let file = BufReader::new(file);
    let mut r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") { Box::new(GzReader(MultiGzDecoder::new(file))) } else { Box::new(file) };
    let mut buf = vec![0u8; 64 << 10];
    for expected in [header, body] {
        for part in expected.chunks(buf.len()) {
            let got = match read_full(&mut r, &mut buf[..part.len()]) {
                Ok(n) => n,
                // A copy that cannot be inflated is not the same file.
                Err(_) => return Ok(false),
            };
            if buf[..got] != *part {
                return Ok(false);
            }
        }
    }
    Ok(matches!(read_full(&mut r, &mut buf[..1]), Ok(0)))
}

/// The data directory of a command: `given` (from `--data-dir` or [`DIR_VARIABLE`], which
/// clap reads) as it is, else [`DEFAULT_DIR`] if it holds MNIST's four files, else
/// [`REPOSITORY_DIR`] if that does; otherwise an error that names what was tried.
pub fn resolve_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir),
        None => first_holding_mnist(&[PathBuf::from(DEFAULT_DIR), PathBuf::from(REPOSITORY_DIR)], &["in the current directory", "the repository nnmnist was built from"]),
    }
}

/// The first of `tried` that holds MNIST's four files, else an error naming each, with what
/// it is (`what`, in the same order).
fn first_holding_mnist(tried: &[PathBuf], what: &[&str]) -> Result<PathBuf> {
    if let Some(dir) = tried.iter().find(|dir| holds_mnist(dir)) {
        return Ok(dir.clone());
    }
    let named: Vec<String> = tried.iter().zip(what).map(|(dir, what)| format!("{} ({what})", dir.shown())).collect();
    bail!("no --data-dir given and no MNIST data found: neither {} holds the four MNIST files; give --data-dir DIR or set {DIR_VARIABLE}", named.join(" nor "))
}

/// Whether each of MNIST's four files is in `dir` under one of its names (raw or `.gz`);
/// their contents are checked when they are read.
fn holds_mnist(dir: &Path) -> bool {
    names_in(dir).chunks(4).all(|names| names.iter().any(|name| name.symlink_metadata().is_ok()))
}

/// Every path of `dir` that nnmnist reads an MNIST file from, whether it exists or not:
/// the four names of each of the four files (for refusing an output there: it would replace
/// a file of the data, or become a second copy of one).
pub fn names_in(dir: &Path) -> Vec<PathBuf> {
    ["train", "t10k"].into_iter().flat_map(|prefix| [("images", 3), ("labels", 1)].map(|(kind, dims)| names(dir, prefix, kind, dims))).flatten().collect()
}

/// The names of one MNIST file in `dir`, in order of preference: `{prefix}-{kind}-idx{dims}-ubyte`,
/// then `.gz`, then the same with `.idx` for `-idx`.
fn names(dir: &Path, prefix: &str, kind: &str, dims: u32) -> [PathBuf; 4] {
    let (dashed, dotted) = (format!("{prefix}-{kind}-idx{dims}-ubyte"), format!("{prefix}-{kind}.idx{dims}-ubyte"));
    [dir.join(&dashed), dir.join(format!("{dashed}.gz")), dir.join(&dotted), dir.join(format!("{dotted}.gz"))]
}

/// Every copy of `{prefix}-{kind}-idx{dims}-ubyte` (or `{prefix}-{kind}.idx{dims}-ubyte`),
/// raw or `.gz`, that exists, in that order of preference; at least one.
fn find_copies(dir: &Path, prefix: &str, kind: &str, dims: u32) -> Result<Vec<PathBuf>> {
    let candidates = names(dir, prefix, kind, dims);
    let mut found = Vec::new();
    for path in &candidates {
        // Present even as a broken or looping link: reading it then says what is wrong.
        match std::fs::symlink_metadata(path) {
            Ok(_) => found.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Not "missing": the directory cannot be searched (permissions), say so.
            Err(e) => bail!("data directory {}: cannot look for {} in it ({e})", dir.shown(), path.file_name().unwrap_or_default().shown()),
        }
    }
    if found.is_empty() {
        let name = candidates[0].file_name().unwrap_or_default().shown().to_string();
        bail!("{}: missing MNIST file {name} (or {name}.gz)", dir.shown());
    }
    Ok(found)
}

/// Reads and validates an IDX image file: 28x28 images, returned as `count * 784` u8 pixels.
pub fn read_images(path: &Path) -> Result<Vec<u8>> {
    let bad = || format!("{}: not a valid MNIST image file", path.shown());
    IdxFile::open(path, IMAGE_MAGIC, 3, bad)?.body().with_context(bad)
}

/// Reads and validates an IDX label file: one u8 per image, each below 10.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bad = || format!("{}: not a valid MNIST label file", path.shown());
    IdxFile::open(path, LABEL_MAGIC, 1, bad)?.body().with_context(bad)
}

/// Parses IDX image bytes (magic 0x803, dims count x 28 x 28); returns the pixels.
pub fn parse_images(bytes: &[u8]) -> Result<Vec<u8>> {
    IdxFile::new(Box::new(bytes), Some(bytes.len() as u64), IMAGE_MAGIC, 3)?.body()
}

/// Parses IDX label bytes (magic 0x801, one dim); returns the labels, each checked < 10.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>> {
    IdxFile::new(Box::new(bytes), Some(bytes.len() as u64), LABEL_MAGIC, 1)?.body()
}

/// A gzip stream's read error, worded for the user.
#[derive(Debug)]
struct Corrupt(std::io::Error);

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "corrupt or truncated gzip data: {}", self.0)
    }
}

impl std::error::Error for Corrupt {}

/// A gzip decoder (every member of the stream, as zcat reads it) whose errors say
/// "corrupt or truncated gzip data".
struct GzReader<R: Read>(MultiGzDecoder<R>);

impl<R: Read> Read for GzReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| std::io::Error::other(Corrupt(e)))
    }
}

/// Reads up to `buf.len()` bytes; fewer only at the end of the stream.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unwrap_io(e)),
        }
    }
    Ok(n)
}

/// The gzip wording of a [`Corrupt`] error, else the I/O error itself.
fn unwrap_io(e: std::io::Error) -> anyhow::Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Corrupt>()) {
        if let Some(inner) = e.into_inner() {
            if let Ok(c) = inner.downcast::<Corrupt>() {
                return anyhow::Error::new(*c);
            }
        }
        return anyhow::anyhow!("corrupt or truncated gzip data");
    }
    anyhow::Error::new(e).context("cannot read the file")
}

/// An IDX stream whose header has been read and checked: `dims` as the header says; the
/// body is read by [`IdxFile::body`]. Images must be 28x28, labels below 10.
struct IdxFile<'a> {
    r: Box<dyn Read + 'a>,
    /// The whole stream's length when known (a raw file): a size mismatch is settled
    /// before the body is read.
    len: Option<u64>,
    magic: u32,
    dims: Vec<usize>,
}

impl<'a> IdxFile<'a> {
    /// Opens `path` (a regular file; inflated as it is read when its name ends in `.gz`)
    /// and reads its header; `bad` words the header's faults ("F: not a valid MNIST label
    /// file"), while a file that cannot be opened says so by itself.
    fn open(path: &Path, magic: u32, ndims: usize, bad: impl Fn() -> String) -> Result<IdxFile<'static>> {
        let (file, size) = files::open_readable(path, "MNIST file")?;
        let file = BufReader::new(file);
        let idx = if path.extension().is_some_and(|e| e == "gz") {
            if size == 0 {
                return Err(anyhow::anyhow!("empty file")).with_context(bad);
            }
            IdxFile::new(Box::new(GzReader(MultiGzDecoder::new(file))), None, magic, ndims)
        } else {
            IdxFile::new(Box::new(file), Some(size), magic, ndims)
        };
        idx.with_context(bad)
    }

    /// Reads and checks the header of `r`, an IDX stream of `magic` with `ndims` dimensions.
    fn new(mut r: Box<dyn Read + 'a>, len: Option<u64>, magic: u32, ndims: usize) -> Result<IdxFile<'a>> {
        let header_len = 4 + 4 * ndims;
        let mut header = vec![0u8; header_len];
        let got = read_full(&mut r, &mut header)?;
        if got == 0 {
            bail!("empty file");
        }
        if got < header_len {
            bail!("truncated: {got} bytes, shorter than the {header_len}-byte IDX header");
        }
        let word = |i: usize| u32::from_be_bytes([header[4 * i], header[4 * i + 1], header[4 * i + 2], header[4 * i + 3]]);
        let found = word(0);
        if found != magic {
            bail!("wrong magic number 0x{found:08x}, expected 0x{magic:08x}");
        }
        let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
        if magic == IMAGE_MAGIC && (dims[1] != ROWS || dims[2] != COLS) {
            bail!("images are {}x{}, expected {ROWS}x{COLS}", dims[1], dims[2]);
        }
        Ok(IdxFile { r, len, magic, dims })
    }

    /// The header's bytes, as read.
    fn header(&self) -> Vec<u8> {
        let mut out = self.magic.to_be_bytes().to_vec();
        for &d in &self.dims {
            out.extend_from_slice(&(d as u32).to_be_bytes());
        }
        out
    }

    /// Reads exactly the bytes the header promises (memory bounded by that promise), and
    /// checks that nothing follows them.
    fn body(&mut self) -> Result<Vec<u8>> {
        let dims = &self.dims;
        let header_len = 4 + 4 * dims.len();
        let Some(expected) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).filter(|n| n.checked_add(header_len).is_some()) else {
            bail!("dimensions {dims:?} are too large")
        };
        if let Some(len) = self.len {
            let found = len - header_len as u64;
            if found < expected as u64 {
                bail!("truncated: header {dims:?} promises {expected} data bytes, the file has {found}");
            }
            if found > expected as u64 {
                bail!("{} unexpected bytes after the {expected} data bytes that header {dims:?} promises", found - expected as u64);
            }
        }
        let mut body = Vec::new();
        (&mut self.r).take(expected as u64).read_to_end(&mut body).map_err(unwrap_io)?;
        if body.len() < expected {
            bail!("truncated: header {dims:?} promises {expected} data bytes, the file has {}", body.len());
        }
        let mut probe = [0u8; 1];
        if read_full(&mut self.r, &mut probe)? > 0 {
            let more = std::io::copy(&mut (&mut self.r).take(64 << 20), &mut std::io::sink()).map_err(unwrap_io)?;
            let count = if more == 64 << 20 { format!("more than {more}") } else { (more + 1).to_string() };
            bail!("{count} unexpected bytes after the {expected} data bytes that header {dims:?} promises");
        }
        if self.magic == LABEL_MAGIC {
            if let Some(i) = body.iter().position(|&l| l as usize >= CLASSES) {
                bail!("label {} at index {i} is out of range (labels are 0-9)", body[i]);
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_directory_holding_mnist_is_taken_and_the_error_names_each_one_tried() {
        let empty = tempfile::tempdir().unwrap();
        let partial = tempfile::tempdir().unwrap();
        std::fs::write(partial.path().join("t10k-labels-idx1-ubyte"), b"").unwrap();
        let repo = PathBuf::from(REPOSITORY_DIR);
        let tried = [empty.path().to_path_buf(), partial.path().to_path_buf(), repo.clone()];
        assert_eq!(first_holding_mnist(&tried, &["a", "b", "c"]).unwrap(), repo);
        let err = first_holding_mnist(&tried[..2], &["a", "b"]).unwrap_err().to_string();
        let expected = format!(
            "no --data-dir given and no MNIST data found: neither {} (a) nor {} (b) holds the four MNIST files; give --data-dir DIR or set NNMNIST_DATA_DIR",
            empty.path().display(),
            partial.path().display()
        );
        assert_eq!(err, expected);
    }
}
