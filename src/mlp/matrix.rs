//! The few matrix operations Nielsen's network needs, on row-major (rows, cols) slices of
//! f64, each named for the numpy expression of network.py it stands for. Images are rows
//! here (network.py's (784, m) batch matrix, transposed in memory), so each product is
//! network.py's with its operands' roles swapped; the numbers are the same.
//!
//! Every sum runs over its index in ascending order, starting from 0: the fast path
//! ([`super::fast`]) reproduces exactly these orders, so the two agree bit for bit.

/// `a · bᵀ`: a (m, k), b (n, k) -> (m, n). network.py's `np.dot(w, a)`, with `a` the
/// batch (m, k) and `b` the weights (n, k).
pub fn dot_bt(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    debug_assert!(a.len() == m * k && b.len() == n * k);
    let mut out = Vec::with_capacity(m * n);
    for row in a.chunks_exact(k) {
        for col in b.chunks_exact(k) {
            out.push(col.iter().zip(row).map(|(b, a)| b * a).sum::<f64>());
        }
    }
    out
}

/// `a · b`: a (m, k), b (k, n) -> (m, n). network.py's `np.dot(w.T, delta)`, with `a` the
/// error (m, k) and `b` the weights (k, n).
pub fn dot(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    debug_assert!(a.len() == m * k && b.len() == k * n);
    let mut out = Vec::with_capacity(m * n);
    for row in a.chunks_exact(k) {
        for c in 0..n {
            out.push((0..k).map(|o| b[o * n + c] * row[o]).sum::<f64>());
        }
    }
    out
}

/// `aᵀ · b`, summed over the m rows in order: a (m, n), b (m, k) -> (n, k). network.py's
/// `np.dot(delta, activation.T)`, with `a` the error and `b` the previous activations.
pub fn dot_at(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    debug_assert!(a.len() == m * n && b.len() == m * k);
    let mut out = vec![0.0; n * k];
    for (arow, brow) in a.chunks_exact(n).zip(b.chunks_exact(k)) {
        for (o, &d) in arow.iter().enumerate() {
            for (acc, x) in out[o * k..(o + 1) * k].iter_mut().zip(brow) {
                *acc += d * x;
            }
        }
    }
    out
}

/// The sum of the m rows: a (m, n) -> (n). network.py's `np.sum(delta, axis=1)`.
pub fn sum_rows(a: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n];
    for row in a.chunks_exact(n) {
        for (acc, x) in out.iter_mut().zip(row) {
            *acc += x;
        }
    }
    out
}

/// `a + b` with `b` (n) added to every row of a (m, n): network.py's `z + b` (b broadcast).
pub fn add_row(mut a: Vec<f64>, b: &[f64]) -> Vec<f64> {
    for row in a.chunks_exact_mut(b.len()) {
        for (x, b) in row.iter_mut().zip(b) {
            *x += b;
        }
    }
    a
}
