//! Step 5, specks: what is a stroke and what is a speck of dust or noise. The ink's
//! 8-connected components are found (imageproc); a component is a stroke when its mass (the
//! sum of its strengths) reaches [`SPECK_FRACTION`] of the largest one's; the others are
//! specks, and are erased, so that they are in neither the bounding box nor the centre of
//! mass. A digit written in two strokes (a 4, a 5's flag) keeps both.
use super::plane::Plane;
use anyhow::{bail, Result};
use image::{GrayImage, Luma};
use imageproc::region_labelling::{connected_components, Connectivity};

/// A component lighter than this fraction of the largest one is a speck.
pub const SPECK_FRACTION: f64 = 0.05;

/// `strength` with the specks erased, and how many there were. Fails when there is no ink.
pub fn specks(strength: &Plane) -> Result<(Plane, usize)> {
    let (w, h) = (strength.width, strength.height);
    let mask = GrayImage::from_fn(w as u32, h as u32, |x, y| Luma([u8::from(strength.at(x as usize, y as usize) > 0.0) * 255]));
    let labels = connected_components(&mask, Connectivity::Eight, Luma([0u8]));
    // Each component's mass (label l at index l - 1; 0 is the paper).
    let mut mass = Vec::new();
    for (x, y, l) in labels.enumerate_pixels() {
        let Some(c) = (l[0] as usize).checked_sub(1) else { continue };
        if c >= mass.len() {
            mass.resize(c + 1, 0.0);
        }
        mass[c] += strength.at(x as usize, y as usize);
    }
    if mass.is_empty() {
        bail!("no ink stands out of the paper's noise: a blank image");
    }
    let largest = mass.iter().copied().fold(0.0, f64::max);
    let stroke: Vec<bool> = mass.iter().map(|&m| m >= SPECK_FRACTION * largest).collect();
    let mut out = strength.clone();
    for (x, y, l) in labels.enumerate_pixels() {
        if let Some(c) = (l[0] as usize).checked_sub(1) {
            if !stroke[c] {
                out.data[y as usize * w + x as usize] = 0.0;
            }
        }
    }
    Ok((out, stroke.iter().filter(|s| !**s).count()))
}
