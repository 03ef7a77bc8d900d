//! Step 1, decode: the bytes of a PNG, JPEG or PNM (PGM, PPM) file to an image. The size is
//! read from the header and checked before any pixel is decoded, so a huge image is refused
//! in bounded memory; a photo's EXIF orientation is applied (it stands as it was taken).
use anyhow::{anyhow, bail, Result};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
use std::io::{BufRead, Seek};

/// The most pixels an image may have (width x height): 40 megapixels, a phone's photo of
/// 7,296 x 5,472. A larger one is refused from its header, before any pixel is decoded.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The most the decoder may hold: the largest image at 8 bytes a pixel (16-bit RGBA).
pub const MAX_DECODED_BYTES: u64 = MAX_PIXELS * 8;

/// Decodes the image `reader` holds; its format is told by its first bytes. The error says
/// what is wrong with the bytes, not which file they are (the caller adds that).
pub fn decode<R: BufRead + Seek>(reader: R) -> Result<DynamicImage> {
    let mut reader = ImageReader::new(reader).with_guessed_format().map_err(|e| anyhow!("cannot read it ({e})"))?;
    let Some(format) = reader.format() else {
        bail!("not a PNG, JPEG or PNM (PGM, PPM) image: its first bytes are none of their signatures");
    };
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Pnm) {
        bail!("a {} image; nnmnist reads PNG, JPEG and PNM (PGM, PPM)", format.extensions_str().first().unwrap_or(&"?").to_uppercase());
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    reader.limits(limits);
    let name = format.extensions_str().first().unwrap_or(&"?").to_uppercase();
    let damaged = |e: ImageError| anyhow!("{name} data that cannot be decoded ({e})");
    let mut decoder = reader.into_decoder().map_err(damaged)?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > MAX_PIXELS {
        bail!("{width}x{height} pixels, over the limit of {MAX_PIXELS} ({} megapixels): scale it down first", MAX_PIXELS / 1_000_000);
    }
    if pixels == 0 {
        bail!("{width}x{height} pixels: no pixel at all");
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(damaged)?;
    image.apply_orientation(orientation);
    Ok(image)
}
