//! A grey image as the recipe's steps pass it on: `height` rows of `width` f64 values,
//! row-major, and the order statistics they take of it.

/// A grey image, row-major: `data[y * width + x]`, shape (height, width).
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    /// A plane of `width` x `height` zeros.
    pub fn zeros(width: usize, height: usize) -> Plane {
        Plane { width, height, data: vec![0.0; width * height] }
    }

    /// The value at column `x`, row `y`.
    pub fn at(&self, x: usize, y: usize) -> f64 {
        self.data[y * self.width + x]
    }
}

/// The value at sorted index floor(q (n - 1)) of `values` (no interpolation between two
/// values, so that the reference's `np.partition` finds the very same one). `values` is
/// reordered. Needs at least one value.
pub fn order_statistic(values: &mut [f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "an order statistic of no values");
    let i = (q * (values.len() - 1) as f64).floor() as usize;
    *values.select_nth_unstable_by(i, f64::total_cmp).1
}

/// The median as the recipe takes it: the lower of the two middle values for an even count.
pub fn median(values: &mut [f64]) -> f64 {
    order_statistic(values, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics_are_values_of_the_set() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.0, "the lower middle value");
        assert_eq!(order_statistic(&mut [5.0, 1.0, 4.0, 2.0, 3.0], 0.99), 4.0);
        assert_eq!(order_statistic(&mut [5.0, 1.0, 4.0, 2.0, 3.0], 1.0), 5.0);
        assert_eq!(order_statistic(&mut [7.0], 0.3), 7.0);
    }
}
