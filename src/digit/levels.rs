//! Step 6, levels: the paper at 0, the ink's core at 1. The ink's level is a high strength
//! of the strokes' core: the core is the pixels at least half the strokes' 99th percentile
//! (a robust maximum), the level its [`LEVEL_QUANTILE`] quantile; every strength is divided by
//! it and clipped to 1, as MNIST's strokes are full ink in their middle and grey at their
//! edges.
use super::plane::{order_statistic, Plane};
use anyhow::{bail, Result};

/// The strokes' robust maximum is this quantile of their strengths.
pub const CORE_QUANTILE: f64 = 0.99;
/// The ink's level is this quantile of the core's strengths.
pub const LEVEL_QUANTILE: f64 = 0.9;
/// The least contrast ink may have (a fraction of the paper's): fainter is no digit.
pub const MIN_INK: f64 = 0.05;

/// `strokes` (strengths, specks erased) stretched to 0..1, and the ink's level. Fails when
/// the ink is fainter than [`MIN_INK`] or than the noise floor `floor` taken off before.
pub fn levels(strokes: &Plane, floor: f64) -> Result<(Plane, f64)> {
    let mut kept: Vec<f64> = strokes.data.iter().copied().filter(|&s| s > 0.0).collect();
    let top = order_statistic(&mut kept, CORE_QUANTILE);
    let mut core: Vec<f64> = kept.into_iter().filter(|&s| s >= top / 2.0).collect();
    let level = order_statistic(&mut core, LEVEL_QUANTILE);
    if level < MIN_INK.max(floor) {
        bail!("the ink stands only {:.3} from the paper, within its noise or fainter than {MIN_INK}: no digit to read", level + floor);
    }
    let data = strokes.data.iter().map(|&s| (s / level).min(1.0)).collect();
    Ok((Plane { width: strokes.width, height: strokes.height, data }, level))
}
