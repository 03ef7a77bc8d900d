//! Links nnmnist against the libtorch that `scripts/setup` installed (.venv/libtorch, see
//! .cargo/config.toml), so that the binary runs without LD_LIBRARY_PATH and sees CUDA where
//! there is a GPU. When that libtorch carries CUDA and the CUDA headers are present, it also
//! compiles the CUDA-graph shim (src/convnet/cuda_graph.cpp) and sets `cfg(nnmnist_cuda_graph)`.
use std::env;
use std::path::{Path, PathBuf};

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

    if lib.join("libtorch_cuda.so").exists() {
        // No symbol of libtorch_cuda is used directly, so with --as-needed the linker drops it
        // and tch::Cuda::is_available() is false on a GPU machine. Keep it.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        build_cuda_graph_shim(&libtorch);
    }
}

/// Compiles the C++ wrapper around at::cuda::CUDAGraph when the CUDA headers are there
/// (the nvidia-cuda-runtime and nvidia-cuda-crt wheels that scripts/setup installs).
fn build_cuda_graph_shim(libtorch: &Path) {
    // libtorch is <site-packages>/torch; the CUDA 13 headers and libs sit in <site-packages>/nvidia/cu13.
    let Ok(torch_dir) = libtorch.canonicalize() else { return };
    let cu13 = torch_dir.parent().map(|p| p.join("nvidia/cu13"));
    let Some(cu13) = cu13 else { return };
    let include = cu13.join("include");
    if !include.join("cuda_runtime_api.h").exists() || !include.join("crt/host_config.h").exists() {
        println!("cargo:warning=libtorch has CUDA but the CUDA headers are missing under {}: building without the CUDA-graph path (run scripts/setup)", include.display());
        return;
    }
    let cu13_lib = cu13.join("lib");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(torch_dir.join("include"))
        .include(torch_dir.join("include/torch/csrc/api/include"))
        .include(&include)
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/convnet/cuda_graph.cpp")
        .compile("nnmnist_cuda_graph");
    println!("cargo:rustc-link-search=native={}", torch_dir.join("lib").display());
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    println!("cargo:rustc-link-lib=dylib=torch_cuda");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cu13_lib.display());
    println!("cargo:rustc-link-arg={}", cu13_lib.join("libcudart.so.13").display());
    println!("cargo:rustc-cfg=nnmnist_cuda_graph");
}

fn fail(why: &str) -> ! {
    eprintln!("\nerror: {why}.\nnnmnist builds against the libtorch of the torch==2.11.0 wheel in .venv.\nRun `scripts/setup` first (the quick-start commands `scripts/nnmnist` and `scripts/test` run it for you).\n");
    std::process::exit(1);
}
