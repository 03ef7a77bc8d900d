//! What build.rs reads from the installed torch wheel: its `version.py`, and where the CUDA
//! runtime of its build lies in site-packages. build.rs includes this file as a module
//! (`#[path = "tests/it/torch_layout.rs"]`: src/ holds only the crate); as an integration test,
//! `cargo test` runs its unit tests against fake site-packages layouts. Std only, since build
//! scripts have no dev-dependencies (the tests may use them).

use std::path::{Path, PathBuf};

/// `__version__` and `cuda` from torch/version.py.
#[derive(Debug, PartialEq, Eq)]
pub struct TorchBuild {
    /// e.g. "2.11.0+cu130"
    pub version: String,
    /// e.g. "13.0"; None for a CPU-only build.
    pub cuda: Option<String>,
}

/// The libtorch release tch 0.24.0 is written against: torch 2.11.x.
pub const TORCH_SERIES: &str = "2.11";

/// Why a torch build of version `version` ("2.11.0+cu130") cannot be built against, if it
/// cannot: tch's C++ bindings match one libtorch release, and another one fails to compile
/// (or links and misbehaves).
pub fn version_mismatch(version: &str) -> Option<String> {
    let release = version.split('+').next().unwrap_or(version);
    let series: Vec<&str> = release.split('.').take(2).collect();
    if series.join(".") == TORCH_SERIES {
        return None;
    }
    Some(format!("this nnmnist (tch 0.24.0) needs libtorch {TORCH_SERIES}.x, and the torch it found is {version}"))
}

/// Parses torch/version.py (`__version__ = '2.11.0+cu130'`, `cuda: Optional[str] = '13.0'`).
/// Returns None when the text has no `__version__` line.
pub fn parse_version_py(text: &str) -> Option<TorchBuild> {
    let value = |name: &str| {
        text.lines().find_map(|line| {
            let (left, right) = line.split_once('=')?;
            // `cuda: Optional[str]`: the name is what comes before the annotation.
            let key = left.split(':').next()?.trim();
            (key == name).then(|| {
                right
                    .trim()
                    .trim_matches(|c| c == '\'' || c == '"')
                    .to_string()
            })
        })
    };
    let version = value("__version__")?;
    let cuda = value("cuda").filter(|c| !c.is_empty() && c != "None");
    Some(TorchBuild { version, cuda })
}

/// The CUDA runtime that a CUDA build of torch brought into site-packages.
#[derive(Debug, PartialEq, Eq)]
pub struct CudaRuntime {
    /// -I directories: the runtime headers (cuda_runtime_api.h), then the one with crt/host_config.h if another.
    pub include: Vec<PathBuf>,
    /// libcudart.so.<major>, linked by its path.
    pub cudart: PathBuf,
}

/// Finds the CUDA headers and libcudart for a torch built with CUDA `cuda` ("13.0", "12.6")
/// whose package sits in `site_packages`. The layout goes by torch's CUDA version, not by what
/// directories exist: a variant switch leaves the other build's nvidia packages behind.
/// - CUDA 13: `nvidia/cu13/{include,lib}`, libcudart.so.13; crt/ from nvidia-cuda-crt, in the same include.
/// - CUDA 12: `nvidia/cuda_runtime/{include,lib}` (nvidia-cuda-runtime-cu12), libcudart.so.12;
///   crt/ from nvidia-cuda-nvcc-cu12, in `nvidia/cuda_nvcc/include`.
///
/// Returns Err with what is missing and how to get it when the layout is incomplete.
pub fn find_cuda_runtime(site_packages: &Path, cuda: &str) -> Result<CudaRuntime, String> {
    let nvidia = site_packages.join("nvidia");
    let major = cuda.split('.').next().unwrap_or_default();
    let (runtime, crt_candidates, crt_package) = match major {
        "13" => (nvidia.join("cu13"), vec![nvidia.join("cu13/include")], "nvidia-cuda-crt==13.0.*".to_string()),
        "12" => (
            nvidia.join("cuda_runtime"),
            vec![nvidia.join("cuda_runtime/include"), nvidia.join("cuda_nvcc/include")],
            format!("nvidia-cuda-nvcc-cu12=={cuda}.*"),
        ),
        _ => return Err(format!("torch was built with CUDA {cuda}; this build script knows the wheel layouts of CUDA 12 and 13")),
    };
    let include = runtime.join("include");
    let cudart = runtime.join(format!("lib/libcudart.so.{major}"));
    if !include.join("cuda_runtime_api.h").exists() || !cudart.exists() {
        return Err(format!(
            "torch was built with CUDA {cuda} but {} lacks include/cuda_runtime_api.h or lib/libcudart.so.{major}: reinstall torch (scripts/setup)",
            runtime.display()
        ));
    }
    let Some(crt) = crt_candidates
        .into_iter()
        .find(|dir| dir.join("crt/host_config.h").exists())
    else {
        return Err(format!(
            "crt/host_config.h is missing next to the CUDA {cuda} headers in {}: install it with `.venv/bin/python -m pip install '{crt_package}'` (scripts/setup does)",
            include.display()
        ));
    };
    let mut dirs = vec![include];
    if crt != dirs[0] {
        dirs.push(crt);
    }
    Ok(CudaRuntime {
        include: dirs,
        cudart,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(root: &Path, files: &[&str]) {
        for file in files {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
    }

    const CU13: &[&str] = &[
        "nvidia/cu13/include/cuda_runtime_api.h",
        "nvidia/cu13/lib/libcudart.so.13",
    ];
    const CU12: &[&str] = &[
        "nvidia/cuda_runtime/include/cuda_runtime_api.h",
        "nvidia/cuda_runtime/lib/libcudart.so.12",
    ];

    #[test]
    fn only_torch_2_11_is_built_against() {
        for ok in ["2.11.0", "2.11.0+cu130", "2.11.1+cpu", "2.11.0+cu126"] {
            assert_eq!(version_mismatch(ok), None, "{ok}");
        }
        for other in ["2.12.0+cu130", "2.1.1", "2.10.0+cpu", "3.11.0", "2.110.0", ""] {
            let why = version_mismatch(other).unwrap_or_else(|| panic!("{other} passed"));
            assert!(why.contains("needs libtorch 2.11.x") && why.contains(&format!("found is {other}")), "{why}");
        }
    }

    #[test]
    fn version_py_of_a_cuda_and_a_cpu_build() {
        let cu130 = "from typing import Optional\n\n__all__ = ['__version__', 'debug', 'cuda']\n__version__ = '2.11.0+cu130'\ndebug = False\ncuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n";
        assert_eq!(
            parse_version_py(cu130),
            Some(TorchBuild {
                version: "2.11.0+cu130".into(),
                cuda: Some("13.0".into())
            })
        );
        let cpu = "__version__ = '2.11.0+cpu'\ncuda: Optional[str] = None\n";
        assert_eq!(
            parse_version_py(cpu),
            Some(TorchBuild {
                version: "2.11.0+cpu".into(),
                cuda: None
            })
        );
        assert_eq!(parse_version_py("garbage\n= =\n::\n"), None);
    }

    #[test]
    fn cu13_layout_with_crt() {
        let sp = tempfile::tempdir().unwrap();
        touch(sp.path(), CU13);
        touch(sp.path(), &["nvidia/cu13/include/crt/host_config.h"]);
        let rt = find_cuda_runtime(sp.path(), "13.0").unwrap();
        assert_eq!(rt.include, vec![sp.path().join("nvidia/cu13/include")]);
        assert_eq!(rt.cudart, sp.path().join("nvidia/cu13/lib/libcudart.so.13"));
    }

    #[test]
    fn cu13_layout_without_crt_names_the_package() {
        let sp = tempfile::tempdir().unwrap();
        touch(sp.path(), CU13);
        let err = find_cuda_runtime(sp.path(), "13.0").unwrap_err();
        assert!(
            err.contains("crt/host_config.h") && err.contains("nvidia-cuda-crt==13.0.*"),
            "{err}"
        );
    }

    #[test]
    fn cu12_layout_takes_crt_from_nvcc() {
        let sp = tempfile::tempdir().unwrap();
        touch(sp.path(), CU12);
        touch(sp.path(), &["nvidia/cuda_nvcc/include/crt/host_config.h"]);
        // Left behind by a cu130 install: must not be picked for a CUDA 12 torch.
        touch(sp.path(), CU13);
        let rt = find_cuda_runtime(sp.path(), "12.6").unwrap();
        assert_eq!(
            rt.include,
            vec![
                sp.path().join("nvidia/cuda_runtime/include"),
                sp.path().join("nvidia/cuda_nvcc/include")
            ]
        );
        assert_eq!(
            rt.cudart,
            sp.path().join("nvidia/cuda_runtime/lib/libcudart.so.12")
        );
    }

    #[test]
    fn cu12_layout_without_crt_names_nvcc_for_that_cuda() {
        let sp = tempfile::tempdir().unwrap();
        touch(sp.path(), CU12);
        let err = find_cuda_runtime(sp.path(), "12.8").unwrap_err();
        assert!(err.contains("nvidia-cuda-nvcc-cu12==12.8.*"), "{err}");
    }

    #[test]
    fn missing_runtime_or_unknown_cuda() {
        let sp = tempfile::tempdir().unwrap();
        touch(sp.path(), CU12); // a CUDA 13 torch does not use the CUDA 12 runtime
        let err = find_cuda_runtime(sp.path(), "13.0").unwrap_err();
        assert!(err.contains("libcudart.so.13"), "{err}");
        let err = find_cuda_runtime(sp.path(), "11.8").unwrap_err();
        assert!(err.contains("CUDA 11.8"), "{err}");
    }
}
