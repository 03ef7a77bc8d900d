//! The checks of single values that every flag and every stored hyperparameter goes
//! through, so that a value from the command line and the same value from a checkpoint are
//! refused with the same words (the flag's name).
use anyhow::{bail, Result};

/// A count: 1 or more.
pub fn at_least_one(flag: &str, value: usize) -> Result<()> {
    if value == 0 {
        bail!("{flag} must be at least 1");
    }
    Ok(())
}

/// A learning rate or similar: finite and above 0.
pub fn check_positive(flag: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value <= 0.0 {
        bail!("{flag} must be a finite number above 0, got {value}");
    }
    Ok(())
}

/// A regularisation strength: finite, 0 or above.
pub fn check_non_negative(flag: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value < 0.0 {
        bail!("{flag} must be a finite number, 0 or above, got {value}");
    }
    Ok(())
}
