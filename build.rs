//! Links nnmnist against the libtorch that `scripts/setup` installed (.venv/libtorch, see
//! .cargo/config.toml), so that the binary runs without LD_LIBRARY_PATH and sees CUDA where
//! there is a GPU. It works with each torch build setup offers (NNMNIST_TORCH): cpu (no CUDA
//! linked), CUDA 13 and CUDA 12. When libtorch carries CUDA and the CUDA headers are complete,
//! it also compiles the CUDA-graph shim (src/convnet/cuda_graph.cpp) and sets `cfg(nnmnist_cuda_graph)`.
//! The crate gets torch's version and CUDA version (from torch/version.py) as the compile-time
//! env vars NNMNIST_TORCH_VERSION ("2.11.0+cu130") and NNMNIST_TORCH_CUDA ("13.0", "" for cpu).
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

// Reading version.py and finding the CUDA runtime: in tests/ so that cargo test runs its unit tests.
#[path = "tests/it/torch_layout.rs"]
mod torch_layout;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=src/convnet/cuda_graph.cpp");
    println!("cargo::rustc-check-cfg=cfg(nnmnist_cuda_graph)");

    let libtorch = match env::var("LIBTORCH") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => fail("LIBTORCH is not set (it comes from .cargo/config.toml)"),
    };
    let lib = libtorch.join("lib");
    if !lib.join("libtorch_cpu.so").exists() {
        fail(&format!("no libtorch at {}", libtorch.display()));
    }

    // rpath: the binary, its tests and benches find libtorch without LD_LIBRARY_PATH.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());

    // version.py changes with every (re)install of torch, also a switch of variant.
    let version_py = libtorch.join("version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    let build = fs::read_to_string(&version_py).ok().and_then(|text| torch_layout::parse_version_py(&text));
    match &build {
        None => println!("cargo:warning=cannot read torch's version from {}: NNMNIST_TORCH_VERSION and NNMNIST_TORCH_CUDA are empty", version_py.display()),
        Some(b) => {
            if let Some(why) = torch_layout::version_mismatch(&b.version) {
                fail(&format!("{why} (in {})", libtorch.display()));
            }
        }
    }
    let version = build.as_ref().map_or("", |b| b.version.as_str());
    let cuda = build.as_ref().and_then(|b| b.cuda.as_deref()).unwrap_or("");
    println!("cargo:rustc-env=NNMNIST_TORCH_VERSION={version}");
    println!("cargo:rustc-env=NNMNIST_TORCH_CUDA={cuda}");

    if lib.join("libtorch_cuda.so").exists() {
        // No symbol of libtorch_cuda is used directly, so with --as-needed the linker drops it
        // and tch::Cuda::is_available() is false on a GPU machine. Keep it.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        build_cuda_graph_shim(&libtorch, cuda);
    }
}

/// Compiles the C++ wrapper around at::cuda::CUDAGraph when the CUDA headers of torch's CUDA
/// build are complete; otherwise warns why and how to fix it, and eager CUDA still works.
fn build_cuda_graph_shim(libtorch: &Path, cuda: &str) {
    let Ok(torch_dir) = libtorch.canonicalize() else { return };
    let Some(site_packages) = torch_dir.parent() else { return };
    let runtime = if cuda.is_empty() {
        Err("libtorch has libtorch_cuda.so but torch/version.py names no CUDA version".to_string())
    } else {
        torch_layout::find_cuda_runtime(site_packages, cuda)
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(why) => {
            println!("cargo:warning=building without the CUDA-graph path (eager CUDA still works): {why}");
            // Rebuild on its own once the missing package is installed.
            let nvidia = site_packages.join("nvidia");
            if nvidia.is_dir() {
                println!("cargo:rerun-if-changed={}", nvidia.display());
            }
            return;
        }
    };
    let mut shim = cc::Build::new();
    shim.cpp(true)
        .pic(true)
        .warnings(false)
        .include(torch_dir.join("include"))
        .include(torch_dir.join("include/torch/csrc/api/include"))
        .includes(&runtime.include)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/convnet/cuda_graph.cpp")
        .compile("nnmnist_cuda_graph");
    println!("cargo:rustc-link-search=native={}", torch_dir.join("lib").display());
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    println!("cargo:rustc-link-lib=dylib=torch_cuda");
    if let Some(cudart_dir) = runtime.cudart.parent() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cudart_dir.display());
    }
    println!("cargo:rustc-link-arg={}", runtime.cudart.display());
    println!("cargo:rustc-cfg=nnmnist_cuda_graph");
}

fn fail(why: &str) -> ! {
    eprintln!("\nerror: {why}.\nnnmnist builds against the libtorch of the torch==2.11.0 wheel in .venv.\nRun `scripts/setup` first (the quick-start commands `scripts/nnmnist` and `scripts/test` run it for you).\n");
    std::process::exit(1);
}
