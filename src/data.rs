//! MNIST in IDX format: raw or gzipped files, validated before use.
//!
//! IDX: a big-endian u32 magic (0x00000803 for images, 0x00000801 for labels), one big-endian
//! u32 per dimension (images: count, rows, cols; labels: count), then the raw u8 values.
//! Every error names the file and what is wrong with it; the parser never panics, whatever
//! the bytes (see the property test in tests/data.rs).
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

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

    /// The 784 pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
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
        if !dir.is_dir() {
            bail!(
                "data directory {} does not exist (the MNIST files live in data/ of the repository; \
                 `scripts/make_data.py` rebuilds them)",
                dir.display()
            );
        }
        let train = load_split(dir, "train")?;
        let test = load_split(dir, "t10k")?;
        Ok(Mnist { train, test })
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

fn load_split(dir: &Path, prefix: &str) -> Result<Split> {
    let images_path = find_file(dir, prefix, "images", 3)?;
    let labels_path = find_file(dir, prefix, "labels", 1)?;
    let images = read_images(&images_path)?;
    let labels = read_labels(&labels_path)?;
    if images.len() / PIXELS != labels.len() {
        bail!(
            "{} holds {} images but {} holds {} labels: the counts must match",
            images_path.display(),
            images.len() / PIXELS,
            labels_path.display(),
            labels.len()
        );
    }
    Ok(Split { images, labels })
}

/// Finds `{prefix}-{kind}-idx{dims}-ubyte` (or `{prefix}-{kind}.idx{dims}-ubyte`), raw or `.gz`.
fn find_file(dir: &Path, prefix: &str, kind: &str, dims: u32) -> Result<PathBuf> {
    let stems = [format!("{prefix}-{kind}-idx{dims}-ubyte"), format!("{prefix}-{kind}.idx{dims}-ubyte")];
    for stem in &stems {
        for name in [stem.clone(), format!("{stem}.gz")] {
            let path = dir.join(name);
            if path.exists() {
                return Ok(path);
            }
        }
    }
    bail!("{}: missing MNIST file {} (or {}.gz)", dir.display(), stems[0], stems[0])
}

/// Reads a whole file, decompressing it when its name ends in `.gz`.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut raw = Vec::new();
        file.read_to_end(&mut raw).with_context(|| format!("cannot read {}", path.display()))?;
        if raw.is_empty() {
            bail!("{}: empty file", path.display());
        }
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: corrupt or truncated gzip data", path.display()))?;
    } else {
        file.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(bytes)
}

/// Reads and validates an IDX image file: 28x28 images, returned as `count * 784` u8 pixels.
pub fn read_images(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    parse_images(&bytes).with_context(|| format!("{}: not a valid MNIST image file", path.display()))
}

/// Reads and validates an IDX label file: one u8 per image, each below 10.
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let bytes = read_maybe_gz(path)?;
    parse_labels(&bytes).with_context(|| format!("{}: not a valid MNIST label file", path.display()))
}

/// Parses IDX image bytes (magic 0x803, dims count x 28 x 28); returns the pixels.
pub fn parse_images(bytes: &[u8]) -> Result<Vec<u8>> {
    let dims = parse_header(bytes, IMAGE_MAGIC, 3)?;
    if dims[1] != ROWS || dims[2] != COLS {
        bail!("images are {}x{}, expected {ROWS}x{COLS}", dims[1], dims[2]);
    }
    Ok(body(bytes, &dims)?.to_vec())
}

/// Parses IDX label bytes (magic 0x801, one dim); returns the labels, each checked < 10.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>> {
    let dims = parse_header(bytes, LABEL_MAGIC, 1)?;
    let labels = body(bytes, &dims)?;
    if let Some(i) = labels.iter().position(|&l| l as usize >= CLASSES) {
        bail!("label {} at index {i} is out of range (labels are 0-9)", labels[i]);
    }
    Ok(labels.to_vec())
}

fn parse_header(bytes: &[u8], magic: u32, ndims: usize) -> Result<Vec<usize>> {
    if bytes.is_empty() {
        bail!("empty file");
    }
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        bail!("truncated: {} bytes, shorter than the {header_len}-byte IDX header", bytes.len());
    }
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let found = word(0);
    if found != magic {
        bail!("wrong magic number 0x{found:08x}, expected 0x{magic:08x}");
    }
    Ok((1..=ndims).map(|i| word(i) as usize).collect())
}

fn body<'a>(bytes: &'a [u8], dims: &[usize]) -> Result<&'a [u8]> {
    let header_len = 4 + 4 * dims.len();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|n| n.checked_add(header_len).is_some());
    let Some(expected) = expected else { bail!("dimensions {dims:?} are too large") };
    let found = bytes.len() - header_len;
    if found < expected {
        bail!("truncated: header {dims:?} promises {expected} data bytes, the file has {found}");
    }
    if found > expected {
        bail!("{} unexpected bytes after the {expected} data bytes that header {dims:?} promises", found - expected);
    }
    Ok(&bytes[header_len..])
}
