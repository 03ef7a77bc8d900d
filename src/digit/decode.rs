//! Step 1, decode: the bytes of a PNG, JPEG or PNM (PGM, PPM) file to an image. The size is
//! read from the header and checked before any pixel is decoded, against the limit and
//! against the file's own length, so a huge image, or a small file claiming one, is refused
//! in bounded memory; data that ends early or is damaged is refused, never filled in; a
//! photo's EXIF orientation is applied (it stands as it was taken).
use anyhow::{anyhow, bail, Result};
use image::metadata::Orientation;
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage, RgbaImage};
use std::io::{BufRead, Read, Seek, SeekFrom};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// The most pixels an image may have (width x height): 40 megapixels, a phone's photo of
/// 7,296 x 5,472. A larger one is refused from its header, before any pixel is decoded.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The most the decoder may hold: the largest image at 8 bytes a pixel (16-bit RGBA).
pub const MAX_DECODED_BYTES: u64 = MAX_PIXELS * 8;

/// Decodes the image `reader` holds; its format is told by its first bytes. The error says
/// what is wrong with the bytes, not which file they are (the caller adds that).
pub fn decode<R: BufRead + Seek>(mut reader: R) -> Result<DynamicImage> {
    let unreadable = |e: std::io::Error| anyhow!("cannot read it ({e})");
    let length = reader.seek(SeekFrom::End(0)).map_err(unreadable)?;
    reader.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    // The first two bytes tell a PNM's kind (P1 to P7); a shorter file is no image anyway.
    let mut magic = [0u8; 2];
    let _ = (&mut reader).take(2).read(&mut magic).map_err(unreadable)?;
    reader.seek(SeekFrom::Start(0)).map_err(unreadable)?;
    let mut image_reader = ImageReader::new(&mut reader).with_guessed_format().map_err(unreadable)?;
    let Some(format) = image_reader.format() else {
        bail!("not a PNG, JPEG or PNM (PGM, PPM) image: its first bytes are none of their signatures");
    };
    let name = match format {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Pnm => "PNM",
        other => bail!("a {} image; nnmnist reads PNG, JPEG and PNM (PGM, PPM)", other.extensions_str().first().unwrap_or(&"?").to_uppercase()),
    };
    let damaged = |e: &dyn std::fmt::Display| anyhow!("{name} data that cannot be decoded ({})", e.to_string().trim_end());
    if format == ImageFormat::Jpeg {
        // Read once, and decoded by zune-jpeg alone (see [`jpeg`]).
        reader.seek(SeekFrom::Start(0)).map_err(unreadable)?;
        let mut bytes = Vec::with_capacity(length as usize);
        reader.read_to_end(&mut bytes).map_err(unreadable)?;
        return jpeg(&bytes, &damaged);
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    image_reader.limits(limits);
    let mut decoder = image_reader.into_decoder().map_err(|e| damaged(&e))?;
    let (width, height) = decoder.dimensions();
    check_size(name, least_bytes(format, magic, width as u64, height as u64, decoder.color_type().channel_count() as u64), width, height, length)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| damaged(&e))?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Refuses a `width` x `height` image from its header alone: over [`MAX_PIXELS`], no pixel
/// at all, or more than a file of `length` bytes can hold (`least`, from [`least_bytes`]).
fn check_size(name: &str, least: (u64, &str), width: u32, height: u32, length: u64) -> Result<()> {
    let pixels = width as u64 * height as u64;
    if pixels > MAX_PIXELS {
        bail!("{width}x{height} pixels, over the limit of {MAX_PIXELS} ({} megapixels): scale it down first", MAX_PIXELS / 1_000_000);
    }
    if pixels == 0 {
        bail!("{width}x{height} pixels: no pixel at all");
    }
    let (least, why) = least;
    if length < least {
        bail!("{name} data that ends early: {width}x{height} pixels need at least {least} bytes ({why}), the file has {length}");
    }
    Ok(())
}

/// The fewest bytes a file of `format` can hold a `width` x `height` image in, and why. A
/// file shorter than that ends early, whatever its header claims: a JPEG codes each 8x8
/// block of its fullest component in at least one bit; deflate, a PNG's compression, packs
/// at most 1032 bytes into one, and a PNG row holds at least its filter byte and one bit a
/// pixel; a binary PNM (`P4` to `P7`) stores every sample whole (a bit a pixel for `P4`), a
/// plain one (`P1` to `P3`) at least a character for each.
fn least_bytes(format: ImageFormat, magic: [u8; 2], width: u64, height: u64, channels: u64) -> (u64, &'static str) {
    match format {
        ImageFormat::Jpeg => (width.div_ceil(8) * height.div_ceil(8) / 8, "a bit for each 8x8 block"),
        ImageFormat::Png => (height * (1 + width.div_ceil(8)) / 1032, "deflate packs at most 1032 bytes into one"),
        _ if &magic == b"P4" => (width.div_ceil(8) * height, "a bit a pixel"),
        _ => (width * height * channels, "a byte for each sample"),
    }
}

/// A JPEG, decoded by zune-jpeg (the decoder the `image` crate uses) in its strict mode:
/// data that ends before the last block, or a damaged stream, is an error where the lenient
/// mode (`image`'s) fills the rest with grey. Its size is checked from the header as every
/// format's is, its EXIF orientation read as `image` reads it, and its colours given as
/// `image` gives them: grey stays grey, YCbCr and CMYK become RGB.
fn jpeg(bytes: &[u8], damaged: &dyn Fn(&dyn std::fmt::Display) -> anyhow::Error) -> Result<DynamicImage> {
    let options = DecoderOptions::default().set_strict_mode(true).set_max_width(usize::MAX).set_max_height(usize::MAX);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| damaged(&e))?;
    let (width, height) = decoder.dimensions().ok_or_else(|| damaged(&"no frame header"))?;
    // JPEG writes each dimension in 16 bits.
    let (width, height) = (width as u32, height as u32);
    check_size("JPEG", least_bytes(ImageFormat::Jpeg, [0; 2], width as u64, height as u64, 1), width, height, bytes.len() as u64)?;
    let orientation = decoder.exif().and_then(|exif| Orientation::from_exif_chunk(exif)).unwrap_or(Orientation::NoTransforms);
    let out = match decoder.input_colorspace() {
        Some(space @ (ColorSpace::RGB | ColorSpace::RGBA | ColorSpace::Luma | ColorSpace::LumaA)) => space,
        _ => ColorSpace::RGB,
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(out));
    let pixels = decoder.decode().map_err(|e| damaged(&e))?;
    let got = pixels.len();
    let image = match out {
        ColorSpace::Luma => GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8),
        ColorSpace::LumaA => GrayAlphaImage::from_raw(width, height, pixels).map(DynamicImage::ImageLumaA8),
        ColorSpace::RGBA => RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8),
        _ => RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8),
    };
    let mut image = image.ok_or_else(|| damaged(&format!("the decoder gave {got} bytes for {width}x{height} pixels")))?;
    image.apply_orientation(orientation);
    Ok(image)
}
