//! `--deterministic`: the same bits from the same inputs on CUDA, as PyTorch gets with
//! `torch.backends.cudnn.benchmark = False`, `torch.backends.cudnn.deterministic = True` and
//! `torch.use_deterministic_algorithms(True)` (scripts/reference/nn_convnet.py
//! --deterministic does exactly that, and steps SGD tensor by tensor as libtorch's C++
//! optimizer does).
//!
//! cuDNN picks convolution algorithms by benchmarking, and some of its backward algorithms
//! add with atomics, in an order that changes from run to run. These settings pin
//! deterministic algorithms; they cost some speed on CUDA (the README gives the measured
//! figure). tch exposes only the benchmark switch, so all three go through the C++ shim
//! (cuda_graph.cpp, `nnm_set_deterministic`). cuBLAS also needs `CUBLAS_WORKSPACE_CONFIG`
//! (`:4096:8`) before its first use for deterministic matrix products; it is set here when
//! unset. On the CPU every kernel nnmnist uses is deterministic already: the flag is
//! accepted and changes nothing.
use anyhow::Result;
use tch::Device;

/// The value of `CUBLAS_WORKSPACE_CONFIG` that makes cuBLAS deterministic.
pub const CUBLAS_WORKSPACE: &str = ":4096:8";

/// libtorch's three switches for deterministic kernels (process-wide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub cudnn_benchmark: bool,
    pub cudnn_deterministic: bool,
    pub deterministic_algorithms: bool,
}

/// What `--deterministic` sets.
pub const DETERMINISTIC: Settings = Settings { cudnn_benchmark: false, cudnn_deterministic: true, deterministic_algorithms: true };

/// Turns deterministic kernels on for `device` (a no-op on the CPU).
pub fn enable(device: Device) -> Result<()> {
    if !device.is_cuda() {
        return Ok(());
    }
    if std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE);
    }
    let now = apply(DETERMINISTIC).map_err(|e| e.context("--deterministic: libtorch refused the settings"))?;
    anyhow::ensure!(now == DETERMINISTIC, "--deterministic: libtorch reports {now:?}, expected {DETERMINISTIC:?}");
    tracing::info!("deterministic kernels: cudnn benchmark off, cudnn deterministic on, deterministic algorithms on");
    Ok(())
}

/// The settings as they are now.
pub fn current() -> Result<Settings> {
    shim(None)
}

/// Sets `want`; returns the settings as libtorch reports them afterwards.
pub fn apply(want: Settings) -> Result<Settings> {
    shim(Some(want))
}

#[cfg(nnmnist_cuda_graph)]
fn shim(want: Option<Settings>) -> Result<Settings> {
    use std::ffi::{c_char, c_int, CStr};
    extern "C" {
        fn nnm_last_error() -> *const c_char;
        fn nnm_determinism(set: c_int, values: *mut c_int) -> c_int;
    }
    let mut v = want.map_or([0; 3], |w| [w.cudnn_benchmark as c_int, w.cudnn_deterministic as c_int, w.deterministic_algorithms as c_int]);
    // SAFETY: `v` has room for the three values the shim reads and writes.
    if unsafe { nnm_determinism(want.is_some() as c_int, v.as_mut_ptr()) } != 0 {
        // SAFETY: a NUL-terminated thread-local string, valid until the next shim call.
        let msg = unsafe { CStr::from_ptr(nnm_last_error()) }.to_string_lossy().into_owned();
        anyhow::bail!("{msg}");
    }
    Ok(Settings { cudnn_benchmark: v[0] != 0, cudnn_deterministic: v[1] != 0, deterministic_algorithms: v[2] != 0 })
}

#[cfg(not(nnmnist_cuda_graph))]
fn shim(_want: Option<Settings>) -> Result<Settings> {
    anyhow::bail!(
        "--deterministic on CUDA needs the C++ shim, which this build lacks (libtorch's CUDA headers were missing at build time: run scripts/setup, then rebuild)"
    )
}
