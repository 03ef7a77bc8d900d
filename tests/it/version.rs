//! `nnmnist --version` and `-V`: the lines a bug report needs, and nothing started.
use crate::common;

fn version(flag: &str, simd: Option<&str>) -> String {
    let mut cmd = common::nnmnist();
    cmd.arg(flag).env_remove("NNMNIST_SIMD");
    if let Some(simd) = simd {
        cmd.env("NNMNIST_SIMD", simd);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_build_libtorch_cuda_cudnn_and_the_simd_kernels() {
    let text = version("--version", None);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(lines[0], format!("nnmnist {}", env!("CARGO_PKG_VERSION")));
    assert!(lines[1].starts_with("libtorch 2.11.0") && (lines[1].ends_with(" build)")), "{text}");
    let torch_cuda = env!("NNMNIST_TORCH_CUDA");
    if torch_cuda.is_empty() {
        assert!(lines[1].ends_with("(CPU-only build)"), "{text}");
    } else {
        assert!(lines[1].ends_with(&format!("(CUDA {torch_cuda} build)")), "{text}");
    }
    let gpus = tch::Cuda::device_count();
    let devices = lines[2].strip_prefix("CUDA devices: ").unwrap_or_else(|| panic!("{text}"));
    if gpus == 0 {
        assert!(devices.starts_with("none ("), "{text}");
    } else {
        assert!(devices.starts_with(&gpus.to_string()), "{text}");
    }
    assert!(lines[3].starts_with("cuDNN: "), "{text}");
    if !torch_cuda.is_empty() {
        // The cuDNN wheel torch installed says its version in its name: nvidia_cudnn_cu13-9.19.0.56.dist-info.
        let site_packages = common::root().join(".venv/libtorch").canonicalize().unwrap().parent().unwrap().to_path_buf();
        let wheel = std::fs::read_dir(&site_packages).unwrap().filter_map(|e| e.ok()?.file_name().into_string().ok()).find(|n| n.starts_with("nvidia_cudnn_cu") && n.ends_with(".dist-info"));
        let wheel = wheel.unwrap_or_else(|| panic!("a CUDA build of torch comes with a cuDNN wheel in {}", site_packages.display()));
        let numbers: Vec<&str> = wheel.split_once('-').unwrap().1.trim_end_matches(".dist-info").split('.').collect();
        assert_eq!(lines[3], format!("cuDNN: {}", numbers[..3].join(".")), "{text}");
    }
    assert_eq!(lines[4], format!("MLP kernels: {}", nnmnist::mlp::fast::Simd::detect()));
    assert_eq!(version("-V", None), text);
    assert!(version("-V", Some("baseline")).ends_with("MLP kernels: baseline (no AVX2) (NNMNIST_SIMD is set)\n"));
}
