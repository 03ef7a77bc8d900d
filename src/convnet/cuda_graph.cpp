// C ABI around at::cuda::CUDAGraph and a side-stream guard, for src/convnet/cuda_graph.rs.
// Compiled by build.rs only when libtorch carries CUDA. No C++ exception crosses the
// boundary: each call returns 0 on success, else -1 with the message in nnm_last_error().
#include <ATen/Context.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <exception>
#include <stdexcept>
#include <optional>
#include <string>

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

// A non-default stream for warm-up and capture (capture on the legacy default stream is
// not allowed), made current for as long as the guard lives.
struct SideStream {
  c10::cuda::CUDAStream stream;
  std::optional<c10::cuda::CUDAStreamGuard> guard;
  explicit SideStream(int device)
      : stream(c10::cuda::getStreamFromPool(false, static_cast<c10::DeviceIndex>(device))) {}
};
}  // namespace

extern "C" {

const char* nnm_last_error() { return last_error.c_str(); }

void* nnm_graph_new() {
  at::cuda::CUDAGraph* g = nullptr;
  guarded([&] { g = new at::cuda::CUDAGraph(); });
  return g;
}

int nnm_graph_free(void* g) {
  return guarded([&] { delete static_cast<at::cuda::CUDAGraph*>(g); });
}

// Global capture mode (PyTorch's default): during capture, no thread of the process may
// synchronise with the device or allocate CUDA memory (see cuda_graph.rs).
int nnm_graph_capture_begin(void* g) {
  return guarded([&] { static_cast<at::cuda::CUDAGraph*>(g)->capture_begin(); });
}

int nnm_graph_capture_end(void* g) {
  return guarded([&] { static_cast<at::cuda::CUDAGraph*>(g)->capture_end(); });
}

int nnm_graph_replay(void* g) {
  return guarded([&] { static_cast<at::cuda::CUDAGraph*>(g)->replay(); });
}

// Creates a side stream on `device`, makes it current and waits for the work already queued
// on the stream that was current before. Returns null on failure.
void* nnm_side_stream_enter(int device) {
  SideStream* s = nullptr;
  int rc = guarded([&] {
    auto previous = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device));
    s = new SideStream(device);
    s->stream.synchronize();
    previous.synchronize();
    s->guard.emplace(s->stream);
  });
  if (rc != 0) {
    delete s;
    return nullptr;
  }
  return s;
}

// Waits for the side stream's work, restores the previous current stream and frees it.
int nnm_side_stream_exit(void* p) {
  auto* s = static_cast<SideStream*>(p);
  int rc = guarded([&] { s->stream.synchronize(); });
  delete s;
  return rc;
}

// --deterministic's three settings of at::globalContext(), in `values`: cuDNN benchmark,
// cuDNN deterministic, ATen deterministic algorithms (an error, not a warning, for an op that
// has none). With set != 0 applies `values` first; then writes the settings as they are.
int nnm_determinism(int set, int* values) {
  return guarded([&] {
    auto& ctx = at::globalContext();
    if (set) {
      ctx.setBenchmarkCuDNN(values[0] != 0);
      ctx.setDeterministicCuDNN(values[1] != 0);
      ctx.setDeterministicAlgorithms(values[2] != 0, false);
    }
    values[0] = ctx.benchmarkCuDNN();
    values[1] = ctx.deterministicCuDNN();
    values[2] = ctx.deterministicAlgorithms();
  });
}

// Waits for all work on the device (between warm-up and capture, as torch.cuda.graph does).
int nnm_device_synchronize() {
  return guarded([&] {
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) throw std::runtime_error(cudaGetErrorString(err));
  });
}

}  // extern "C"
