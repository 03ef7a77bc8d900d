//! Step 7, MNIST's own normalisation (LeCun, Cortes, Burges): the digit's bounding box is
//! scaled to fit a 20x20 box keeping its aspect ratio, with anti-aliasing, then placed in
//! the 28x28 field so that its centre of mass (of the pixel intensities) is at the centre.
//!
//! - The bounding box: every pixel with ink (h x w).
//! - The scale: 20 / max(h, w), so the longer side becomes 20 pixels and the shorter
//!   round(side x scale); the resampling is image's `Triangle` filter, widened by the
//!   reduction when shrinking (each output pixel a weighted mean of all the input pixels it
//!   covers: anti-aliased), bilinear when enlarging. The same as PIL's `BILINEAR`.
//! - The centre: MNIST's digits have their centre of mass within half a pixel of pixel
//!   (14, 14) (row and column indices, pixel centres at whole numbers): the box (nh x nw) is
//!   shifted by whole pixels so that its centre of mass rounds to (14, 14). A digit already in
//!   MNIST's form is left where it is.
use super::plane::Plane;
use crate::data::{COLS, PIXELS, ROWS};
use image::imageops::{resize, FilterType};
use image::{ImageBuffer, Luma};
use serde::Serialize;

/// The box the digit is scaled to fit.
pub const BOX: usize = 20;
/// The pixel (row and column) the centre of mass is placed on.
pub const CENTRE: f64 = 14.0;

/// Where the digit went: its bounding box in the plane it was found in, its size in the
/// 20x20 box and its place in the 28x28 field.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Geometry {
    /// The bounding box of the ink: column, row, width, height (in the reduced plane).
    pub bbox: [usize; 4],
    /// The digit's size after scaling: width, height (the longer 20).
    pub size: [usize; 2],
    /// The column and row of the scaled digit's top left corner in the field (negative or
    /// past 8 when the centre of mass is far from the box's centre; what falls outside the
    /// field is cut).
    pub shift: [i64; 2],
}

/// The 28x28 field of `ink` (0..1, 0 paper, non-empty): 784 values u8, row-major, 0 the
/// background, 255 full ink.
pub fn mnist(ink: &Plane) -> ([u8; PIXELS], Geometry) {
    // The bounding box.
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..ink.height {
        for x in 0..ink.width {
            if ink.at(x, y) > 0.0 {
                (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
            }
        }
    }
    assert!(x0 <= x1, "mnist: an image with ink");
    let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
    // Scaled into the 20x20 box, keeping the aspect ratio: shape (nh, nw).
    let crop = ImageBuffer::from_fn(w as u32, h as u32, |x, y| Luma([ink.at(x0 + x as usize, y0 + y as usize) as f32]));
    let scale = BOX as f64 / w.max(h) as f64;
    let side = |n: usize| ((n as f64 * scale + 0.5).floor() as usize).max(1);
    let (nw, nh) = (side(w), side(h));
    let small = resize(&crop, nw as u32, nh as u32, FilterType::Triangle);
    let value = |x: usize, y: usize| (small.get_pixel(x as u32, y as u32)[0] as f64).clamp(0.0, 1.0);
    // The centre of mass of the intensities, in the box's pixel indices.
    let (mut total, mut sy, mut sx) = (0.0, 0.0, 0.0);
    for y in 0..nh {
        for x in 0..nw {
            let v = value(x, y);
            total += v;
            sy += v * y as f64;
            sx += v * x as f64;
        }
    }
    let (cy, cx) = if total > 0.0 { (sy / total, sx / total) } else { ((nh - 1) as f64 / 2.0, (nw - 1) as f64 / 2.0) };
    let (oy, ox) = ((CENTRE - cy + 0.5).floor() as i64, (CENTRE - cx + 0.5).floor() as i64);
    // Placed in the field, whole pixels; u8 = round(255 v).
    let mut pixels = [0u8; PIXELS];
    for y in 0..nh {
        for x in 0..nw {
            let (fy, fx) = (oy + y as i64, ox + x as i64);
            if (0..ROWS as i64).contains(&fy) && (0..COLS as i64).contains(&fx) {
                pixels[fy as usize * COLS + fx as usize] = (value(x, y) * 255.0 + 0.5).floor() as u8;
            }
        }
    }
    (pixels, Geometry { bbox: [x0, y0, w, h], size: [nw, nh], shift: [ox, oy] })
}
