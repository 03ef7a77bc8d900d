//! Step 4, ink: which side of the paper the ink is on, and each pixel's strength.
//!
//! The ink is the side with more mass beyond the paper's band (the sum of the distances past
//! it): dark ink on light paper, or light on dark (chalk, a negative, MNIST itself). A pixel's
//! strength is its distance from the paper's level relative to the paper's contrast
//! (`(paper - grey) / paper` for dark ink, `(grey - paper) / (1 - paper)` for light), so that
//! the ink counts the same in the shade as in the light; then the noise floor,
//! [`NOISE_SIGMAS`] robust standard deviations of the strengths, is taken off, so that the
//! paper's grain and a JPEG's noise are 0.
use super::paper::{band, robust_sigma};
use super::plane::Plane;
use anyhow::{bail, Result};
use serde::Serialize;

/// The noise floor, in robust standard deviations of the strength.
pub const NOISE_SIGMAS: f64 = 4.0;
/// The least contrast the paper is taken to have: a paper level this close to the ink's end
/// of the scale (0 for dark ink, 1 for light) is taken as this far from it.
pub const MIN_PAPER_CONTRAST: f64 = 0.05;

/// Which way round the image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Polarity {
    /// Dark ink on light paper (a scan, a photo of paper): inverted into MNIST's form.
    DarkOnLight,
    /// Light ink on a dark ground (MNIST's own form, chalk on a board).
    LightOnDark,
}

impl Polarity {
    pub fn name(self) -> &'static str {
        match self {
            Polarity::DarkOnLight => "dark-on-light",
            Polarity::LightOnDark => "light-on-dark",
        }
    }
}

/// A band of the paper's noise wider than this (half the range from black to white) leaves
/// no room for ink: the image is noise, not a blank page.
const NOISE_ALL_OVER: f64 = 0.5;

/// The ink found in `g` over the paper `paper`: the strengths (0 where the paper is), the
/// polarity, and the noise's robust standard deviation (in strength units). Fails when no
/// pixel stands out of the paper's band on either side: a blank image.
pub fn ink(g: &Plane, paper: &Plane) -> Result<(Plane, Polarity, f64)> {
    let r: Vec<f64> = g.data.iter().zip(&paper.data).map(|(a, b)| a - b).collect();
    let band = band(&r);
    let dark: f64 = r.iter().map(|d| (-d - band).max(0.0)).sum();
    let light: f64 = r.iter().map(|d| (d - band).max(0.0)).sum();
    if dark == 0.0 && light == 0.0 && band > NOISE_ALL_OVER {
        bail!("its pixels scatter by {band:.3} around the paper's level (0 black, 1 white), more than a digit's ink could stand out: noise all over, no digit to read");
    }
    if dark == 0.0 && light == 0.0 {
        bail!("no pixel differs from the paper's level by more than {band:.3} (0 black, 1 white): a blank image");
    }
    let polarity = if dark > light { Polarity::DarkOnLight } else { Polarity::LightOnDark };
    let n: Vec<f64> = g
        .data
        .iter()
        .zip(&paper.data)
        .map(|(&g, &b)| match polarity {
            Polarity::DarkOnLight => (b - g) / b.max(MIN_PAPER_CONTRAST),
            Polarity::LightOnDark => (g - b) / (1.0 - b).max(MIN_PAPER_CONTRAST),
        })
        .collect();
    let sigma = robust_sigma(&n);
    let floor = NOISE_SIGMAS * sigma;
    let strength = Plane { width: g.width, height: g.height, data: n.iter().map(|v| (v - floor).max(0.0)).collect() };
    Ok((strength, polarity, sigma))
}
