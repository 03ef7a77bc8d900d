//! The MLP's random streams: the initial weights and each epoch's training order, both
//! from ChaCha8 seeded with the run's seed, so any epoch's order can be rebuilt (a resumed
//! run follows the same batches).
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The RNG of the initial weights: ChaCha8 seeded from `seed`, stream 0.
pub fn init_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// The training order of epoch `epoch` (0-based) over `n` images: a shuffle by ChaCha8
/// seeded from `seed` on stream `epoch + 1`; file order without `shuffle`.
pub fn epoch_order(seed: u64, epoch: usize, n: usize, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    if shuffle {
        let mut rng = init_rng(seed);
        rng.set_stream(epoch as u64 + 1);
        order.shuffle(&mut rng);
    }
    order
}
