//! `nnmnist --version`: what a parity bug report needs to say about this build and this
//! machine, in a few lines. It asks libtorch only what it knows without starting any work.
use crate::mlp::fast::Simd;

/// The version report, one fact per line:
///
/// ```text
/// nnmnist 0.1.0
/// libtorch 2.11.0+cu130 (CUDA 13.0 build)
/// CUDA devices: none (no NVIDIA driver is loaded)
/// cuDNN: 9.19.0
/// MLP kernels: AVX2
/// ```
pub fn report() -> String {
    let torch = env!("NNMNIST_TORCH_VERSION");
    let torch_cuda = env!("NNMNIST_TORCH_CUDA");
    let build = if torch_cuda.is_empty() { "CPU-only build".to_string() } else { format!("CUDA {torch_cuda} build") };
    let torch = if torch.is_empty() { "libtorch of unknown version (torch/version.py was unreadable at build time)".to_string() } else { format!("libtorch {torch} ({build})") };
    let simd = Simd::detect();
    let forced = if std::env::var_os("NNMNIST_SIMD").is_some() { " (NNMNIST_SIMD is set)" } else { "" };
    format!(
        "nnmnist {}\n{torch}\nCUDA devices: {}\ncuDNN: {}\nMLP kernels: {simd}{forced}\n",
        env!("CARGO_PKG_VERSION"),
        cuda_devices(torch_cuda),
        cudnn()
    )
}

/// How many CUDA devices libtorch sees, with the kernel driver's version; or why none.
fn cuda_devices(torch_cuda: &str) -> String {
    if torch_cuda.is_empty() {
        return "none (this libtorch is a CPU-only build)".to_string();
    }
    let driver_file = std::path::Path::new("/proc/driver/nvidia/version");
    let driver = crate::nvidia::driver_version(driver_file);
    match tch::Cuda::device_count() {
        0 => match crate::nvidia::diagnose() {
            Some(why) => format!("none ({why})"),
            None => "none (no NVIDIA driver is loaded)".to_string(),
        },
        n => match driver {
            Some(driver) => format!("{n} (NVIDIA driver {driver})"),
            None => n.to_string(),
        },
    }
}

/// cuDNN's version as libtorch reports it (cuDNN 9 encodes major * 10000 + minor * 100 +
/// patch, cuDNN 8 major * 1000 + minor * 100 + patch), or why there is none.
fn cudnn() -> String {
    if env!("NNMNIST_TORCH_CUDA").is_empty() {
        return "none (this libtorch is a CPU-only build)".to_string();
    }
    // libtorch raises an error (which tch turns into a panic) where it cannot tell.
    match std::panic::catch_unwind(tch::utils::version_cudnn) {
        Ok(v) if v >= 90000 => format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100),
        Ok(v) if v > 0 => format!("{}.{}.{}", v / 1000, v / 100 % 10, v % 100),
        _ => "unknown (libtorch does not say)".to_string(),
    }
}
