//! libtorch's CPU generator (mt19937, seeded by `manual_seed`), the one random source of both
//! models, so that a seed means the same draws here as in the PyTorch references
//! (scripts/reference/nn_convnet.py and nn_torch.py):
//!
//! - the initial weights are drawn right after `manual_seed(seed)`;
//! - epoch `e` (0-based) trains in the order `randperm(n)` drawn right after
//!   `manual_seed(epoch_seed(seed, e))`, so any epoch's order can be rebuilt from
//!   (seed, epoch) (a resumed run follows the same batches) and does not depend on what
//!   was drawn before.
//!
//! `torch.Generator().manual_seed(s)` and `torch.manual_seed(s)` give the same stream, so the
//! references may use either. The generator is global to the process: every draw holds
//! [`lock`].
use tch::{Device, Kind, Tensor};

/// Whoever seeds the generator and draws from it holds this lock, so that two runs or
/// networks built at once (tests run in threads) do not interleave their draws.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The seed of epoch `epoch`'s batch order: `(seed * 100003 + epoch + 1) mod 2^63`.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    (seed.wrapping_mul(100_003).wrapping_add(epoch as u64 + 1) & (i64::MAX as u64)) as i64
}

/// `manual_seed(seed)` as torch takes it: a u64, whose bits libtorch reads through tch's i64.
pub fn manual_seed(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// The order of the `n` training images in epoch `epoch` (0-based), for both models:
/// `torch.randperm(n)` after `manual_seed(epoch_seed(seed, epoch))`, as the reference scripts
/// draw it; file order without `shuffle`. (n) i64 on the CPU.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Tensor {
    if shuffle {
        epoch_permutation(seed, epoch, n)
    } else {
        Tensor::arange(n as i64, (Kind::Int64, Device::Cpu))
    }
}

/// The order of `n` training images in epoch `epoch` (0-based): `randperm(n)` after
/// `manual_seed(epoch_seed(seed, epoch))`, an (n) i64 tensor on the CPU.
pub fn epoch_permutation(seed: u64, epoch: usize, n: usize) -> Tensor {
    let _rng = lock();
    tch::manual_seed(epoch_seed(seed, epoch));
    Tensor::randperm(n as i64, (Kind::Int64, Device::Cpu))
}

/// `torch.randn(shape, dtype=torch.float64)` for each shape in turn, right after
/// `manual_seed(seed)`: the values of each, row-major.
pub fn randn_f64(seed: u64, shapes: &[Vec<i64>]) -> Vec<Vec<f64>> {
    let _rng = lock();
    manual_seed(seed);
    shapes
        .iter()
        .map(|shape| {
            let t = Tensor::randn(shape.as_slice(), (Kind::Double, Device::Cpu));
            Vec::<f64>::try_from(t.reshape([-1])).expect("a float64 CPU tensor reads as f64")
        })
        .collect()
}
