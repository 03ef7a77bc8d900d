//! Step 2, grey: each pixel's colour over white paper by its alpha, then its luma, in 0..1
//! (0 black, 1 white); an image larger than [`WORK_SIDE`] is reduced by the whole factor k
//! that brings its longer side within it, each k x k block averaged (the blocks of the last
//! row and column hold what is left). The steps after it work on at most 512 x 512 values.
use super::plane::Plane;
use anyhow::{bail, Result};
use image::DynamicImage;

/// The longest side the steps after this one work on.
pub const WORK_SIDE: usize = 512;

/// Luma's weights for red, green and blue (ITU-R BT.601, as PIL's `convert("L")` and JPEG's
/// YCbCr take them).
const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

/// The grey plane of `image` (height/k, width/k rounded up) and the factor k.
pub fn grey(image: &DynamicImage) -> Result<(Plane, usize)> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let k = w.max(h).div_ceil(WORK_SIDE).max(1);
    let plane = match image {
        DynamicImage::ImageLuma8(b) => reduce(b.as_raw(), w, h, k, 1, 255.0),
        DynamicImage::ImageLumaA8(b) => reduce(b.as_raw(), w, h, k, 2, 255.0),
        DynamicImage::ImageRgb8(b) => reduce(b.as_raw(), w, h, k, 3, 255.0),
        DynamicImage::ImageRgba8(b) => reduce(b.as_raw(), w, h, k, 4, 255.0),
        DynamicImage::ImageLuma16(b) => reduce(b.as_raw(), w, h, k, 1, 65535.0),
        DynamicImage::ImageLumaA16(b) => reduce(b.as_raw(), w, h, k, 2, 65535.0),
        DynamicImage::ImageRgb16(b) => reduce(b.as_raw(), w, h, k, 3, 65535.0),
        DynamicImage::ImageRgba16(b) => reduce(b.as_raw(), w, h, k, 4, 65535.0),
        DynamicImage::ImageRgb32F(b) => reduce(b.as_raw(), w, h, k, 3, 1.0),
        DynamicImage::ImageRgba32F(b) => reduce(b.as_raw(), w, h, k, 4, 1.0),
        other => bail!("its pixels are of a kind nnmnist does not read ({:?})", other.color()),
    };
    Ok((plane, k))
}

/// The luma of one pixel over white: `px` holds grey or red, green, blue, then alpha when
/// `channels` is 2 or 4, each in 0..1.
fn luma_over_white(px: [f64; 4], channels: usize) -> f64 {
    let (rgb, alpha) = match channels {
        1 => ([px[0]; 3], 1.0),
        2 => ([px[0]; 3], px[1]),
        3 => ([px[0], px[1], px[2]], 1.0),
        _ => ([px[0], px[1], px[2]], px[3]),
    };
    let over = |c: f64| c * alpha + (1.0 - alpha);
    LUMA[0] * over(rgb[0]) + LUMA[1] * over(rgb[1]) + LUMA[2] * over(rgb[2])
}

/// `samples` (h rows of w pixels of `channels` samples, `max` the full value) as grey over
/// white, each k x k block averaged: shape (ceil(h/k), ceil(w/k)).
fn reduce<S: Copy + Into<f64>>(samples: &[S], w: usize, h: usize, k: usize, channels: usize, max: f64) -> Plane {
    let mut out = Plane::zeros(w.div_ceil(k), h.div_ceil(k));
    let mut count = vec![0u32; out.data.len()];
    for (y, row) in samples.chunks_exact(w * channels).enumerate().take(h) {
        let out_row = (y / k) * out.width;
        for (x, p) in row.chunks_exact(channels).enumerate() {
            let mut px = [0.0; 4];
            for (c, s) in p.iter().enumerate() {
                px[c] = (*s).into() / max;
            }
            out.data[out_row + x / k] += luma_over_white(px, channels);
            count[out_row + x / k] += 1;
        }
    }
    for (v, n) in out.data.iter_mut().zip(count) {
        *v /= n as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_is_white_and_grey_is_its_own_luma() {
        assert!((luma_over_white([0.0, 0.0, 0.0, 0.0], 4) - 1.0).abs() < 1e-15);
        assert!((luma_over_white([0.2, 0.0, 0.0, 0.0], 1) - 0.2).abs() < 1e-15);
        assert!((luma_over_white([0.0, 0.5, 0.0, 0.0], 2) - 0.5).abs() < 1e-15, "black at half alpha");
    }

    #[test]
    fn a_large_image_is_reduced_by_whole_blocks() {
        // 1030 x 1: k = 3, 344 values, the last of one pixel.
        let samples: Vec<u8> = (0..1030).map(|i| if i == 1029 { 0 } else { 255 }).collect();
        let p = reduce(&samples, 1030, 1, 3, 1, 255.0);
        assert_eq!((p.width, p.height), (344, 1));
        assert!((p.data[0] - 1.0).abs() < 1e-12);
        assert!(p.data[343].abs() < 1e-12, "the last block holds only pixel 1029");
    }
}
