//! The MLP's random streams, drawn from libtorch's CPU generator ([`crate::torch_rng`]) as
//! scripts/reference/nn_torch.py draws them, so that `nnmnist mlp --seed S` and
//! `nn_torch.py --seed S` start from the same weights and see the same batches, bit for bit.
//! Only the draws come from libtorch; the MLP's arithmetic stays plain Rust.
use crate::torch_rng;

/// nn.py's initial draws for `sizes` after `manual_seed(seed)`, in nn_torch.py's order: first
/// every bias vector, layer by layer (`torch.randn(out)` in float64), then every weight
/// matrix (`torch.randn(out, in)`, row-major). Returns (biases[i]: (sizes[i+1]),
/// weights[i]: (sizes[i+1], sizes[i])), all N(0, 1), unscaled.
pub fn initial_draws(sizes: &[usize], seed: u64) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let layers = sizes.len().saturating_sub(1);
    let biases = sizes[1..].iter().map(|&out| vec![out as i64]);
    let weights = sizes.windows(2).map(|w| vec![w[1] as i64, w[0] as i64]);
    let mut draws = torch_rng::randn_f64(seed, &biases.chain(weights).collect::<Vec<_>>());
    let weights = draws.split_off(layers);
    (draws, weights)
}

/// The training order of epoch `epoch` (0-based) over `n` images, as indices:
/// [`torch_rng::epoch_order`], the convnet's order too.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<u32> {
    let order = Vec::<i64>::try_from(torch_rng::epoch_order(n, seed, epoch, shuffle)).expect("an (n) i64 tensor");
    order.into_iter().map(|i| i as u32).collect()
}
