//! Step 3, paper: the paper's level at every pixel, as a smooth surface (a quadratic in x and
//! y), so that a gradient of light across a photo, or grey paper, is taken for paper, not ink.
//!
//! The surface starts flat at the median (the paper is most of the image), then is fitted
//! [`PAPER_ROUNDS`] times by least squares to the pixels within a band around it: the band
//! is [`BAND_SIGMAS`] robust standard deviations of the pixels' distance from it (at least
//! [`BAND_FLOOR`]), so the ink, far outside it, is left out of the fit.
use super::plane::{median, Plane};

/// Rounds of fitting the surface.
pub const PAPER_ROUNDS: usize = 4;
/// The band's half width, in robust standard deviations of the distance from the paper.
pub const BAND_SIGMAS: f64 = 3.0;
/// The band's least half width, for a clean image whose paper has no noise at all.
pub const BAND_FLOOR: f64 = 0.03;
/// The median absolute deviation times this is the standard deviation, for normal noise.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// The band of `r`, the pixels' distances from the paper: [`BAND_SIGMAS`] times their
/// robust standard deviation, at least [`BAND_FLOOR`].
pub fn band(r: &[f64]) -> f64 {
    (BAND_SIGMAS * robust_sigma(r)).max(BAND_FLOOR)
}

/// The robust standard deviation of values centred on 0: 1.4826 times the median of their
/// absolute values.
pub fn robust_sigma(r: &[f64]) -> f64 {
    let mut abs: Vec<f64> = r.iter().map(|v| v.abs()).collect();
    MAD_TO_SIGMA * median(&mut abs)
}

/// The six terms of the surface at column `x`, row `y` of a `w` x `h` plane: 1, u, v, u², uv,
/// v², with u and v the pixel's centre scaled to -1..1.
fn terms(x: usize, y: usize, w: usize, h: usize) -> [f64; 6] {
    let u = (x as f64 + 0.5) / w as f64 * 2.0 - 1.0;
    let v = (y as f64 + 0.5) / h as f64 * 2.0 - 1.0;
    [1.0, u, v, u * u, u * v, v * v]
}

/// The paper's level under every pixel of `g`: a plane of the same shape.
pub fn paper(g: &Plane) -> Plane {
    let (w, h) = (g.width, g.height);
    let mut surface = Plane { width: w, height: h, data: vec![median(&mut g.data.clone()); g.data.len()] };
    for _ in 0..PAPER_ROUNDS {
        let r: Vec<f64> = g.data.iter().zip(&surface.data).map(|(a, b)| a - b).collect();
        let band = band(&r);
        // The normal equations of the least squares over the pixels within the band.
        let (mut ata, mut atb, mut inliers) = ([[0.0; 6]; 6], [0.0; 6], 0usize);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if r[i].abs() > band {
                    continue;
                }
                inliers += 1;
                let t = terms(x, y, w, h);
                for j in 0..6 {
                    atb[j] += t[j] * g.data[i];
                    for k in 0..6 {
                        ata[j][k] += t[j] * t[k];
                    }
                }
            }
        }
        // Fewer than half the pixels within the band: no paper to fit; the surface stays.
        if inliers < 6 || 2 * inliers < g.data.len() {
            break;
        }
        let Some(coef) = solve(ata, atb) else { break };
        for y in 0..h {
            for x in 0..w {
                let t = terms(x, y, w, h);
                surface.data[y * w + x] = (0..6).map(|j| coef[j] * t[j]).sum();
            }
        }
    }
    surface
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky); None when `a` is
/// singular or nearly (the pixels within the band do not determine a quadratic: a line).
fn solve(a: [[f64; 6]; 6], b: [f64; 6]) -> Option<[f64; 6]> {
    let scale = (0..6).map(|i| a[i][i]).fold(0.0, f64::max);
    let mut l = [[0.0; 6]; 6];
    for i in 0..6 {
        for j in 0..=i {
            let s: f64 = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s <= 1e-12 * scale {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut y = [0.0; 6];
    for i in 0..6 {
        y[i] = (b[i] - (0..i).map(|k| l[i][k] * y[k]).sum::<f64>()) / l[i][i];
    }
    let mut x = [0.0; 6];
    for i in (0..6).rev() {
        x[i] = (y[i] - (i + 1..6).map(|k| l[k][i] * x[k]).sum::<f64>()) / l[i][i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gradient_under_ink_is_found_as_paper() {
        // Paper from 0.5 (left) to 0.9 (right), a dark bar of ink across the middle rows.
        let (w, h) = (60, 40);
        let mut g = Plane::zeros(w, h);
        for y in 0..h {
            for x in 0..w {
                let paper = 0.5 + 0.4 * x as f64 / (w - 1) as f64;
                g.data[y * w + x] = if (18..22).contains(&y) { 0.1 } else { paper };
            }
        }
        let p = paper(&g);
        for y in 0..h {
            for x in 0..w {
                let want = 0.5 + 0.4 * x as f64 / (w - 1) as f64;
                assert!((p.at(x, y) - want).abs() < 1e-9, "({x}, {y}): {} for {want}", p.at(x, y));
            }
        }
    }

    #[test]
    fn a_singular_system_has_no_solution() {
        assert!(solve([[0.0; 6]; 6], [0.0; 6]).is_none());
    }
}
