//! `--device auto|cpu|cuda|cuda:N`: which device the convnet trains on.
use anyhow::{bail, Result};
use tch::{Cuda, Device};

/// Resolves a `--device` value. `auto` is CUDA (GPU 0) when available, else the CPU; asking
/// for CUDA where there is none is an error, not a silent fall back to the CPU. Where
/// libtorch sees no GPU but an NVIDIA driver is present ([`crate::nvidia::diagnose`]), `auto`
/// says so in one warning line, and the error of `cuda` says the same.
pub fn resolve(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let gpus = if spec == "cpu" { 0 } else { Cuda::device_count() as usize };
    match spec.as_str() {
        "auto" => {
            if gpus > 0 {
                return Ok(Device::Cuda(0));
            }
            if let Some(why) = crate::nvidia::diagnose() {
                crate::terminal::warning(format_args!("--device auto runs on the CPU: {why}"));
            }
            Ok(Device::Cpu)
        }
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda(&spec, 0, gpus),
        s => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(&spec, n, gpus),
            _ => bail!("--device {spec}: expected auto, cpu, cuda or cuda:N"),
        },
    }
}

fn cuda(spec: &str, n: usize, gpus: usize) -> Result<Device> {
    if gpus == 0 {
        match crate::nvidia::diagnose() {
            Some(why) => bail!("--device {spec}: no CUDA device is available to libtorch: {why}"),
            None => bail!("--device {spec}: no CUDA device is available here (libtorch sees none, and no NVIDIA driver is loaded); use --device cpu or auto"),
        }
    }
    if n >= gpus {
        bail!("--device cuda:{n}: only {gpus} CUDA device(s) here (cuda:0 to cuda:{})", gpus - 1);
    }
    Ok(Device::Cuda(n))
}

/// The name nn_convnet.py prints in `Using {name} device`: `cpu` or `cuda`.
pub fn console_name(device: Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else {
        "cpu"
    }
}

/// The name recorded in metrics: `cpu` or `cuda:N`.
pub fn metrics_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".to_string(),
    }
}

/// `--device` and `--threads` as a command that may run either network was given them:
/// the network that runs on a device resolves them ([`device_and_threads`]) once it is
/// known, the other refuses them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// auto, cpu, cuda or cuda:N; None: auto.
    pub device: Option<String>,
    pub threads: Option<usize>,
}

impl Flags {
    /// Whether either flag was given.
    pub fn given(&self) -> bool {
        self.device.is_some() || self.threads.is_some()
    }
}

/// `--device`, resolved once, and `--threads`, at least 1 and at most the machine's CPUs
/// (more would only slow libtorch down: capped, with a warning).
pub fn device_and_threads(device: &str, threads: Option<usize>) -> Result<(tch::Device, Option<usize>)> {
    let threads = match threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(n) => {
            let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            if n > cpus {
                crate::terminal::warning(format_args!("--threads {n} is more than the {cpus} CPUs here; using {cpus}"));
            }
            Some(n.min(cpus))
        }
        None => None,
    };
    Ok((resolve(device)?, threads))
}
