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

/// Turns deterministic kernels on for `device` (a no-op on the CPU).
pub fn enable(device: Device) -> Result<()> {
    if !device.is_cuda() {
        return Ok(());
    }
    if std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE);
    }
    set(true)
}

#[cfg(nnmnist_cuda_graph)]
fn set(on: bool) -> Result<()> {
    use std::ffi::{c_char, c_int, CStr};
    extern "C" {
        fn nnm_last_error() -> *const c_char;
        fn nnm_set_deterministic(on: c_int, state: *mut c_int) -> c_int;
    }
    let mut state = [0 as c_int; 3];
    // SAFETY: `state` has room for the three values the shim writes.
    if unsafe { nnm_set_deterministic(on as c_int, state.as_mut_ptr()) } != 0 {
        // SAFETY: a NUL-terminated thread-local string, valid until the next shim call.
        let msg = unsafe { CStr::from_ptr(nnm_last_error()) }.to_string_lossy().into_owned();
        anyhow::bail!("--deterministic: libtorch refused the settings: {msg}");
    }
    let want = [!on as c_int, on as c_int, on as c_int];
    anyhow::ensure!(state == want, "--deterministic: libtorch reports benchmark/cudnn-deterministic/algorithms = {state:?}, expected {want:?}");
    tracing::info!("deterministic kernels: cudnn benchmark off, cudnn deterministic on, deterministic algorithms on");
    Ok(())
}

#[cfg(not(nnmnist_cuda_graph))]
fn set(_on: bool) -> Result<()> {
    anyhow::bail!(
        "--deterministic on CUDA needs the C++ shim, which this build lacks (libtorch's CUDA headers were missing at build time: run scripts/setup, then rebuild)"
    )
}
