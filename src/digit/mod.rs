//! Your own digit: any photo or scan of one handwritten digit (PNG, JPEG, PGM/PPM, any size,
//! grey or colour, alpha over white) to the 28x28 input of MNIST's own form, as `nnmnist
//! predict` gives it to the networks. One step a file, in the recipe's order:
//!
//! 1. [`decode`]: the file's bytes to an image, its size checked from the header first
//!    (at most [`MAX_PIXELS`]); EXIF orientation applied.
//! 2. [`grey`]: colour over white by its alpha, luma; reduced by whole blocks to at most
//!    512 x 512. Shape (h, w), 0 black, 1 white.
//! 3. [`paper`]: the paper's level under every pixel, a quadratic surface fitted to the
//!    pixels near it (uneven light, grey paper). Shape (h, w).
//! 4. [`ink`]: dark on light or light on dark; each pixel's strength of ink over the paper,
//!    the noise floor taken off. Shape (h, w), 0 paper.
//! 5. [`specks`]: the connected components of the ink that are not strokes, erased.
//! 6. [`levels`]: the strengths over the ink's level, clipped: 0 paper, 1 the strokes' core.
//! 7. [`mnist`]: MNIST's normalisation: the bounding box scaled to fit 20x20 (aspect kept,
//!    anti-aliased), placed in 28x28 with its centre of mass at the centre. Shape (28, 28).
//!
//! `scripts/reference/preprocess.py` is the same recipe in PIL, numpy and scipy; the tests
//! hold the two together. docs/usage.md states the recipe for users.
pub mod decode;
pub mod grey;
pub mod ink;
pub mod levels;
pub mod mnist;
pub mod paper;
pub mod plane;
pub mod specks;

use crate::data::PIXELS;
use crate::files::open_readable;
use crate::terminal::Shown;
use anyhow::{Context, Result};
use image::DynamicImage;
use std::io::{BufReader, Cursor};
use std::path::Path;

pub use decode::MAX_PIXELS;
pub use ink::Polarity;
pub use mnist::Geometry;

/// One digit in MNIST's form, and what the recipe found on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// The 784 pixels as MNIST stores them: row-major 28x28, u8, 0 the background, 255 full
    /// ink (white ink on black); the networks read `u8 / 255`.
    pub pixels: [u8; PIXELS],
    /// Which way round the image was (dark on light is inverted).
    pub polarity: Polarity,
    /// The image's width and height, as decoded (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    /// The whole factor the image was reduced by (1: not reduced).
    pub reduce: usize,
    /// The paper's median level (0 black, 1 white).
    pub paper: f64,
    /// The ink's level: the contrast of the strokes' core over the paper, as a fraction of
    /// the paper's own (1 for black ink on white paper), above the noise floor.
    pub ink: f64,
    /// The noise's robust standard deviation, in the same units.
    pub noise: f64,
    /// How many specks were erased.
    pub specks: usize,
    /// Where the digit was found and where it went.
    pub geometry: Geometry,
}

/// The digit in the image file `path`. Errors name the file and say what is wrong: not an
/// image, damaged, too large, no digit in it.
pub fn read(path: &Path) -> Result<Input> {
    let source = format!("image {}", path.shown());
    let (file, _) = open_readable(path, "image")?;
    let image = decode::decode(BufReader::new(file)).with_context(|| format!("cannot read {source}"))?;
    preprocess(&image).with_context(|| format!("no digit found in {source}"))
}

/// The digit in an image file's bytes (PNG, JPEG, PNM); `source` names them in errors
/// ("image scan.png", "the image posted").
pub fn decode(bytes: &[u8], source: &str) -> Result<Input> {
    let image = decode::decode(Cursor::new(bytes)).with_context(|| format!("cannot read {source}"))?;
    preprocess(&image).with_context(|| format!("no digit found in {source}"))
}

/// The digit in a decoded image: steps 2 to 7. The error says why there is none (a blank
/// image); the caller names the image.
pub fn preprocess(image: &DynamicImage) -> Result<Input> {
    let (g, reduce) = grey::grey(image)?;
    let paper = paper::paper(&g);
    let (strength, polarity, noise) = ink::ink(&g, &paper)?;
    let (strokes, specks) = specks::specks(&strength)?;
    let (stretched, ink) = levels::levels(&strokes, ink::NOISE_SIGMAS * noise)?;
    let (pixels, geometry) = mnist::mnist(&stretched);
    Ok(Input {
        pixels,
        polarity,
        width: image.width(),
        height: image.height(),
        reduce,
        paper: plane::median(&mut paper.data.clone()),
        ink,
        noise,
        specks,
        geometry,
    })
}
