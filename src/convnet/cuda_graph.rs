//! The convnet's whole training step (forward, loss, backward, SGD step) captured once as
//! a CUDA graph and replayed for every batch.
//!
//! Eager libtorch launches some 30 small kernels per step, and on a fast GPU the launches,
//! not the arithmetic, set the pace (about 1.3 s per epoch on an H200). A graph replays all
//! of them with one launch (about 0.19 s per epoch). The recipe, as PyTorch's "whole network
//! capture" does it:
//! 1. on a side stream, run 3 eager warm-up steps (libtorch allocates its workspaces and
//!    picks its kernels), then restore the parameters so warm-up changes nothing;
//! 2. drop the gradients (set to none), then capture forward + loss + backward + SGD step on
//!    static input tensors; the captured backward writes fresh gradients on every replay;
//! 3. per batch, copy the batch into the static inputs and replay.
//!
//! Every batch has the same shape because the last partial batch is dropped.
//!
//! The graph API lives in libtorch's C++ (at::cuda::CUDAGraph), which tch does not bind: a
//! small C shim (src/convnet/cuda_graph.cpp) wraps it. build.rs compiles it only when libtorch has
//! CUDA and the CUDA headers are there, setting `cfg(nnmnist_cuda_graph)`. Without it, or if
//! capture fails for any reason, training warns and runs eagerly: same numbers, slower.
use super::net::Net;
use super::step::{EagerStep, Step};
use anyhow::Result;
use tch::nn;

/// A graph-replaying step where capture works; else, with a warning saying why, the eager
/// step. `batch_size` is the static batch shape.
pub fn graph_step_or_eager(opt: nn::Optimizer, net: &Net, batch_size: usize) -> Box<dyn Step> {
    match GraphStep::capture(opt, net, batch_size) {
        Ok(step) => {
            tracing::info!("training step captured as one CUDA graph");
            Box::new(step)
        }
        Err((why, opt)) => {
            tracing::warn!("CUDA-graph capture failed ({why:#}); training eagerly (same results, slower)");
            crate::report::note(format_args!("warning: CUDA-graph capture failed ({why:#}); training eagerly"));
            Box::new(EagerStep { opt })
        }
    }
}

#[cfg(not(nnmnist_cuda_graph))]
pub use disabled::GraphStep;

#[cfg(not(nnmnist_cuda_graph))]
mod disabled {
    use super::*;

    /// Stands in where the shim is not built: capture always fails, with the reason.
    pub struct GraphStep {
        _never: std::convert::Infallible,
    }

    impl GraphStep {
        pub fn capture(opt: nn::Optimizer, _net: &Net, _batch_size: usize) -> Result<GraphStep, (anyhow::Error, nn::Optimizer)> {
            Err((anyhow::anyhow!("this build has no CUDA-graph support (libtorch without CUDA, or CUDA headers missing at build time)"), opt))
        }
    }

    impl Step for GraphStep {
        fn step(&mut self, _net: &Net, _x: &tch::Tensor, _y: &tch::Tensor) -> Result<tch::Tensor> {
            match self._never {}
        }
    }
}

#[cfg(nnmnist_cuda_graph)]
pub use enabled::GraphStep;

#[cfg(nnmnist_cuda_graph)]
mod enabled {
    use super::*;
    use crate::convnet::step::loss;
    use anyhow::{anyhow, bail};
    use std::ffi::{c_char, c_int, c_void, CStr};
    use tch::{Device, Kind, Tensor};

    extern "C" {
        fn nnm_last_error() -> *const c_char;
        fn nnm_graph_new() -> *mut c_void;
        fn nnm_graph_free(g: *mut c_void);
        fn nnm_graph_capture_begin(g: *mut c_void) -> c_int;
        fn nnm_graph_capture_end(g: *mut c_void) -> c_int;
        fn nnm_graph_replay(g: *mut c_void) -> c_int;
        fn nnm_side_stream_enter(device: c_int) -> *mut c_void;
        fn nnm_side_stream_exit(s: *mut c_void) -> c_int;
    }

    fn last_error(what: &str) -> anyhow::Error {
        // SAFETY: the shim returns a NUL-terminated thread-local string, valid until the next call.
        let msg = unsafe { CStr::from_ptr(nnm_last_error()) }.to_string_lossy().into_owned();
        anyhow!("{what}: {}", msg.lines().next().unwrap_or("unknown error"))
    }

    fn check(rc: c_int, what: &str) -> Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(last_error(what))
        }
    }

    /// An at::cuda::CUDAGraph, freed on drop.
    struct Graph(*mut c_void);

    impl Drop for Graph {
        fn drop(&mut self) {
            // SAFETY: created by nnm_graph_new, freed once.
            unsafe { nnm_graph_free(self.0) }
        }
    }

    /// A side stream made current for as long as it lives.
    struct SideStream(*mut c_void);

    impl SideStream {
        fn enter(device: Device) -> Result<SideStream> {
            let Device::Cuda(index) = device else { bail!("not a CUDA device: {device:?}") };
            // SAFETY: plain call into the shim; null means failure.
            let s = unsafe { nnm_side_stream_enter(index as c_int) };
            if s.is_null() {
                return Err(last_error("cannot create a side CUDA stream"));
            }
            Ok(SideStream(s))
        }

        fn exit(mut self) -> Result<()> {
            let s = std::mem::replace(&mut self.0, std::ptr::null_mut());
            // SAFETY: s came from nnm_side_stream_enter and is released once.
            check(unsafe { nnm_side_stream_exit(s) }, "side stream")
        }
    }

    impl Drop for SideStream {
        fn drop(&mut self) {
            if !self.0.is_null() {
                // SAFETY: as in exit; only reached on an error path.
                unsafe { nnm_side_stream_exit(self.0) };
            }
        }
    }

    /// The captured step: static inputs, the graph, and its static loss output.
    pub struct GraphStep {
        graph: Graph,
        static_x: Tensor,
        static_y: Tensor,
        static_loss: Tensor,
        _opt: nn::Optimizer,
    }

    impl GraphStep {
        /// Warms up, captures, and returns the step; on failure gives the optimizer back,
        /// with the parameters as they were before.
        pub fn capture(mut opt: nn::Optimizer, net: &Net, batch_size: usize) -> Result<GraphStep, (anyhow::Error, nn::Optimizer)> {
            let params = net.parameters();
            let snapshot: Vec<Tensor> = tch::no_grad(|| params.iter().map(|(_, p)| p.copy()).collect());
            let result = capture_inner(&mut opt, net, batch_size);
            // Warm-up trained a few steps: put the parameters back, drop the gradients.
            let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tch::no_grad(|| {
                    for ((_, p), s) in params.iter().zip(&snapshot) {
                        p.shallow_clone().copy_(s);
                    }
                })
            }));
            match (result, restored) {
                (Ok((graph, static_x, static_y, static_loss)), Ok(())) => {
                    Ok(GraphStep { graph, static_x, static_y, static_loss, _opt: opt })
                }
                (Err(e), _) => {
                    opt.zero_grad();
                    Err((e, opt))
                }
                (Ok(_), Err(_)) => Err((anyhow!("cannot restore the parameters after warm-up"), opt)),
            }
        }
    }

    type Captured = (Graph, Tensor, Tensor, Tensor);

    fn capture_inner(opt: &mut nn::Optimizer, net: &Net, batch_size: usize) -> Result<Captured> {
        let device = net.device();
        let bs = batch_size as i64;
        let static_x = Tensor::zeros([bs, 1, 28, 28], (Kind::Float, device));
        let static_y = Tensor::zeros([bs], (Kind::Int64, device));
        // tch reports libtorch errors by panicking; catch them so capture can fail softly,
        // with the default hook silenced meanwhile so no panic message reaches the user.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<Captured> {
            let side = SideStream::enter(device)?;
            for _ in 0..3 {
                let l = loss(&net.forward_t(&static_x, true), &static_y);
                l.backward();
                opt.step();
                opt.zero_grad();
            }
            // SAFETY: plain constructor call; null means failure.
            let graph = Graph(unsafe { nnm_graph_new() });
            if graph.0.is_null() {
                return Err(last_error("cannot create a CUDA graph"));
            }
            opt.zero_grad(); // gradients set to none: the captured backward allocates them
            check(unsafe { nnm_graph_capture_begin(graph.0) }, "capture_begin")?;
            let captured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let l = loss(&net.forward_t(&static_x, true), &static_y);
                l.backward();
                opt.step();
                l.detach()
            }));
            let ended = check(unsafe { nnm_graph_capture_end(graph.0) }, "capture_end");
            let static_loss = captured.map_err(|_| anyhow!("an operation failed during capture"))?;
            ended?;
            side.exit()?;
            Ok((graph, static_x.shallow_clone(), static_y.shallow_clone(), static_loss))
        }));
        std::panic::set_hook(hook);
        match outcome {
            Ok(r) => r,
            Err(_) => Err(anyhow!("libtorch raised an error while warming up or capturing")),
        }
    }

    impl Step for GraphStep {
        /// Copies the batch into the static inputs and replays the graph. The returned loss
        /// is the graph's static output: read it before the next step overwrites it.
        fn step(&mut self, _net: &Net, x: &Tensor, y: &Tensor) -> Result<Tensor> {
            if x.size() != self.static_x.size() {
                bail!("CUDA graph captured for batches of {:?}, got {:?}", self.static_x.size(), x.size());
            }
            tch::no_grad(|| {
                self.static_x.copy_(x);
                self.static_y.copy_(y);
            });
            // SAFETY: the graph was captured and is alive.
            check(unsafe { nnm_graph_replay(self.graph.0) }, "replay")?;
            Ok(self.static_loss.shallow_clone())
        }
    }
}
