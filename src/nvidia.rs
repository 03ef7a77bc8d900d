//! Why libtorch sees no usable CUDA device on a machine that may have an NVIDIA GPU: compares
//! the kernel driver's version (/proc/driver/nvidia/version) with what the installed torch
//! build needs (NNMNIST_TORCH_VERSION and NNMNIST_TORCH_CUDA, set by build.rs from
//! torch/version.py) and names the command that fixes it.
use std::fmt;
use std::path::{Path, PathBuf};

/// torch 2.11.0's CUDA builds, newest first: NNMNIST_TORCH value, CUDA version, the driver that
/// CUDA version asks for, and the oldest driver it runs on through CUDA's minor-version
/// compatibility (CUDA 12.x: 525.60.13; CUDA 13.x has none below 580).
const BUILDS: [(&str, &str, &str, &str); 3] = [
    ("cu130", "13.0", "580.65.06", "580.65.06"),
    ("cu128", "12.8", "570.26", "525.60.13"),
    ("cu126", "12.6", "560.28", "525.60.13"),
];

/// A driver version such as 550.54.14 or 570.26, ordered by its numbers (570.26 = 570.26.0;
/// the text, compared only when the numbers are equal, is kept for display).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DriverVersion {
    key: [u32; 3],
    text: String,
}

impl DriverVersion {
    /// Parses "550.54.14" or "570.26"; returns None for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.split('.').collect();
        let mut key = [0; 3];
        if !(2..=3).contains(&parts.len()) {
            return None;
        }
        for (slot, part) in key.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            *slot = part.parse().ok()?;
        }
        Some(Self {
            key,
            text: text.to_string(),
        })
    }
}

impl fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The driver version in the `NVRM version:` line of a /proc/driver/nvidia/version file
/// (proprietary or open kernel module); None when the file is missing or has no such line.
pub fn driver_version(path: &Path) -> Option<DriverVersion> {
    let bytes = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let line = text
        .lines()
        .find(|line| line.starts_with("NVRM version:"))?;
    line.split_whitespace().find_map(DriverVersion::parse)
}

/// The driver that CUDA `torch_cuda` ("13.0", "12.8") asks for: CUDA 13.x 580.65.06, 12.8
/// 570.26, 12.6 560.28; None for a CUDA version not in the table (or empty: a CPU build).
pub fn required_driver(torch_cuda: &str) -> Option<DriverVersion> {
    DriverVersion::parse(build_of(torch_cuda)?.2)
}

/// The row of BUILDS for CUDA `torch_cuda`; every 13.x has the needs of 13.0.
fn build_of(torch_cuda: &str) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    let cuda = if torch_cuda.starts_with("13.") { "13.0" } else { torch_cuda };
    BUILDS.iter().find(|build| build.1 == cuda)
}

/// One line for a user whose libtorch sees no CUDA device: None without an NVIDIA driver
/// (no version file), else what was found, what the installed torch build needs, and the fix.
/// The file is `NNMNIST_NVIDIA_VERSION_FILE` if set, else /proc/driver/nvidia/version.
pub fn diagnose() -> Option<String> {
    let path = std::env::var_os("NNMNIST_NVIDIA_VERSION_FILE").map(PathBuf::from);
    let path = path.unwrap_or_else(|| PathBuf::from("/proc/driver/nvidia/version"));
    diagnose_at(&path, env!("NNMNIST_TORCH_VERSION"), env!("NNMNIST_TORCH_CUDA"))
}

/// [`diagnose`] for the version file `path` and torch `torch_version` built with CUDA
/// `torch_cuda` (empty: a CPU-only build).
pub fn diagnose_at(path: &Path, torch_version: &str, torch_cuda: &str) -> Option<String> {
    if !path.exists() {
        return None;
    }
    let check = "check `nvidia-smi`, the permissions on /dev/nvidia*, and CUDA_VISIBLE_DEVICES";
    let Some(driver) = driver_version(path) else {
        let path = path.display();
        return Some(format!("an NVIDIA driver is loaded ({path} exists) but its version cannot be read there; libtorch sees no CUDA device: {check}"));
    };
    let runs = |min: &str| DriverVersion::parse(min).is_some_and(|min| driver >= min);
    // The newest build this driver fully supports, else the newest it runs through compatibility.
    let fitting = (BUILDS.iter().find(|b| runs(b.2)).map(|b| (b.0, "")))
        .or_else(|| BUILDS.iter().find(|b| runs(b.3)).map(|b| (b.0, " (through CUDA's minor-version compatibility)")));
    let install = fitting.map(|(variant, how)| format!("install a build for your driver{how} with `NNMNIST_TORCH={variant} scripts/setup` (then rebuild)"));
    let no_build = format!("update the driver (no CUDA build of torch 2.11.0 runs on one older than {})", BUILDS[2].3);
    let found = format!("NVIDIA driver {driver} found ({})", path.display());
    if torch_cuda.is_empty() {
        let fix = install.unwrap_or(no_build);
        return Some(format!("{found}, but torch {torch_version} was installed without CUDA: {fix}"));
    }
    let torch = format!("torch {torch_version} (CUDA {torch_cuda})");
    Some(match build_of(torch_cuda) {
        None => format!("{found}; which driver {torch} needs is not known here, and libtorch sees no CUDA device: {check}"),
        Some(b) if runs(b.2) => format!("{found}, new enough for {torch}, yet libtorch sees no CUDA device: {check}"),
        Some(b) if runs(b.3) => format!("{found}, older than the {} that {torch} asks for but enough through CUDA's minor-version compatibility (>= {}), yet libtorch sees no CUDA device: update the driver, or {check}", b.2, b.3),
        Some(b) => match install {
            Some(install) => format!("{found}, but {torch} needs driver >= {}: update the driver, or {install}", b.2),
            None => format!("{found}, but {torch} needs driver >= {}: {no_build}", b.2),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";
    const OPEN: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.82.07  Release Build  (dvs-builder@U16-I3-B03-4-3)  Fri Aug 29 00:41:40 UTC 2025\nGCC version:  gcc version 13.3.0\n";
    const CHECK: &str = "check `nvidia-smi`, the permissions on /dev/nvidia*, and CUDA_VISIBLE_DEVICES";

    /// driver_version and diagnose_at of a version file holding `text`, the file's path shown as F.
    fn read(text: &[u8], torch_version: &str, torch_cuda: &str) -> (Option<String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("version");
        std::fs::write(&path, text).unwrap();
        let line = diagnose_at(&path, torch_version, torch_cuda).expect("a driver file gives a line");
        (driver_version(&path).map(|v| v.to_string()), line.replace(&path.display().to_string(), "F"))
    }

    fn module(version: &str) -> Vec<u8> {
        format!("NVRM version: NVIDIA UNIX x86_64 Kernel Module  {version}  Tue Jan  7 2025\n").into_bytes()
    }

    #[test]
    fn old_driver_and_cu130_points_to_the_newest_build_it_runs() {
        let (version, line) = read(OLD.as_bytes(), "2.11.0+cu130", "13.0");
        assert_eq!(version.as_deref(), Some("550.54.14"));
        assert_eq!(line, "NVIDIA driver 550.54.14 found (F), but torch 2.11.0+cu130 (CUDA 13.0) needs driver >= 580.65.06: update the driver, or install a build for your driver (through CUDA's minor-version compatibility) with `NNMNIST_TORCH=cu128 scripts/setup` (then rebuild)");
        let (_, line) = read(&module("575.51.03"), "2.11.0+cu130", "13.0");
        assert!(line.ends_with("update the driver, or install a build for your driver with `NNMNIST_TORCH=cu128 scripts/setup` (then rebuild)"), "{line}");
        let (_, line) = read(&module("470.256.02"), "2.11.0+cu126", "12.6");
        assert!(line.ends_with("needs driver >= 560.28: update the driver (no CUDA build of torch 2.11.0 runs on one older than 525.60.13)"), "{line}");
    }

    #[test]
    fn new_enough_or_compatible_driver_is_called_so_and_open_module_parses() {
        let (version, line) = read(OPEN.as_bytes(), "2.11.0+cu130", "13.0");
        assert_eq!(version.as_deref(), Some("580.82.07"));
        assert_eq!(line, format!("NVIDIA driver 580.82.07 found (F), new enough for torch 2.11.0+cu130 (CUDA 13.0), yet libtorch sees no CUDA device: {CHECK}"));
        let (_, line) = read(OLD.as_bytes(), "2.11.0+cu126", "12.6");
        assert_eq!(line, format!("NVIDIA driver 550.54.14 found (F), older than the 560.28 that torch 2.11.0+cu126 (CUDA 12.6) asks for but enough through CUDA's minor-version compatibility (>= 525.60.13), yet libtorch sees no CUDA device: update the driver, or {CHECK}"));
    }

    #[test]
    fn cpu_build_with_a_driver_names_the_setup_command() {
        let (_, line) = read(OPEN.as_bytes(), "2.11.0+cpu", "");
        assert_eq!(line, "NVIDIA driver 580.82.07 found (F), but torch 2.11.0+cpu was installed without CUDA: install a build for your driver with `NNMNIST_TORCH=cu130 scripts/setup` (then rebuild)");
        let (_, line) = read(&module("470.256.02"), "2.11.0+cpu", "");
        assert!(line.ends_with("without CUDA: update the driver (no CUDA build of torch 2.11.0 runs on one older than 525.60.13)"), "{line}");
    }

    #[test]
    fn garbage_and_missing_files_never_panic() {
        for text in ["", "NVRM version:", "NVRM version: Kernel Module 2024 x.y 1..2 .5 99999999999.1 1.2.3.4\n", "GCC version: 12.2.0\n"] {
            let (version, line) = read(text.as_bytes(), "2.11.0+cu130", "13.0");
            assert_eq!(version, None, "{text:?}");
            assert!(line.contains("its version cannot be read"), "{text:?}");
        }
        assert_eq!(read(&[0xff, 0xfe, 0, b'\n'], "2.11.0+cu130", "13.0").0, None);
        assert_eq!(diagnose_at(Path::new("/nonexistent/nvidia/version"), "2.11.0+cu130", "13.0"), None);
    }

    #[test]
    fn versions_compare_by_number_and_required_drivers() {
        assert!(DriverVersion::parse("570.26").unwrap() < DriverVersion::parse("570.86.10").unwrap());
        assert!(DriverVersion::parse("535.104.05").unwrap() < DriverVersion::parse("560.28").unwrap());
        assert_eq!(required_driver("12.8").unwrap().to_string(), "570.26");
        assert_eq!(required_driver("13.2").unwrap().to_string(), "580.65.06");
        assert_eq!((required_driver(""), required_driver("11.8")), (None, None));
        let (_, line) = read(OPEN.as_bytes(), "2.11.0+cu118", "11.8");
        assert!(line.contains("which driver torch 2.11.0+cu118 (CUDA 11.8) needs is not known here"), "{line}");
    }
}
