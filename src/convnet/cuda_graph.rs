//! The convnet's whole training step (forward, loss, backward, SGD step, and the epoch's
//! loss sum) captured once as a CUDA graph and replayed for every batch.
//!
//! Eager libtorch launches some 30 small kernels per step, and on a fast GPU the launches,
//! not the arithmetic, set the pace (about 1.3 s per epoch on an H200). A graph replays all
//! of them with one launch (about 0.19 s per epoch). The recipe, as PyTorch's "whole network
//! capture" (`torch.cuda.graph`) does it:
//! 1. warm-up: on a side stream, run 3 eager steps (libtorch allocates its workspaces and
//!    picks its kernels), then wait for the whole device;
//! 2. capture: drop the gradients (set to none), then capture forward + loss + backward +
//!    SGD step + `loss_sum += loss` on static input tensors; the captured backward writes
//!    fresh gradients on every replay;
//! 3. restore: put back the parameters as they were before warm-up, so warm-up changes
//!    nothing;
//! 4. per batch, copy the batch into the static inputs and replay.
//!
//! Every batch has the same shape because the last partial batch is dropped.
//!
//! The graph API lives in libtorch's C++ (at::cuda::CUDAGraph), which tch does not bind: a
//! small C shim (src/convnet/cuda_graph.cpp) wraps it. build.rs compiles it only when libtorch has
//! CUDA and the CUDA headers are there, setting `cfg(nnmnist_cuda_graph)`. Without it, or if
//! capture fails for any reason, training warns (naming the phase that failed and libtorch's
//! message) and runs eagerly: same numbers, slower.
//!
//! Capture uses CUDA's global capture mode, as PyTorch does by default: while a graph is
//! being captured, no other thread of the process may synchronise with the device or
//! allocate CUDA memory. nnmnist trains on one thread; tests that capture take a lock.
use super::net::Net;
use super::step::{EagerStep, Step};
use anyhow::Result;
use std::any::Any;
use std::cell::Cell;
use std::sync::Once;
use tch::nn;

/// Why a capture failed, and what it gives back: the optimizer, with the parameters as they
/// were before warm-up, or None when they could not be restored (then no step may follow).
pub type CaptureError = (anyhow::Error, Option<nn::Optimizer>);

/// A graph-replaying step where capture works; else, with a warning saying why, the eager
/// step. `batch_size` is the static batch shape; `loss_sum` is the () float tensor, on the
/// network's device, into which every step adds its loss. An error only when capture failed
/// and the parameters could not be put back.
pub fn graph_step_or_eager(opt: nn::Optimizer, net: &Net, batch_size: usize, loss_sum: &tch::Tensor) -> Result<Box<dyn Step>> {
    match GraphStep::capture(opt, net, batch_size, loss_sum) {
        Ok(step) => {
            tracing::info!("training step captured as one CUDA graph");
            Ok(Box::new(step))
        }
        Err((why, Some(opt))) => {
            crate::terminal::warning(format_args!("CUDA-graph capture failed ({why:#}); training eagerly (the same results, slower)"));
            Ok(Box::new(EagerStep::summing(opt, loss_sum)))
        }
        Err((why, None)) => Err(why.context("CUDA-graph capture failed and left the network's parameters changed; nothing was trained")),
    }
}

thread_local! {
    /// How many [`catch_phase`] calls this thread is inside.
    static QUIET: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` as phase `phase` of capture ("warm-up", "capture", "restore"). tch reports
/// libtorch's errors by panicking: a panic becomes an error that keeps its message,
/// "during {phase}: {message}". Such a panic is not printed (the error says it once): a
/// panic hook, installed once for the process, stays silent for panics of a thread inside
/// `catch_phase` and hands every other panic to the hook that was there before.
pub fn catch_phase<T>(phase: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    caught(f).map_err(|e| e.context(format!("during {phase}")))
}

/// Runs `f`, turning a panic into an error that keeps the panic's message (see
/// [`catch_phase`]).
fn caught<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) == 0 {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(q.get() + 1));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(q.get() - 1));
    outcome.unwrap_or_else(|payload| Err(anyhow::anyhow!("{}", panic_message(payload.as_ref()))))
}

/// The text of a panic payload, with tch's wrapping removed: libtorch's message, without the
/// C++ stack trace that follows it.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let text = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    let text = text.strip_prefix("called `Result::unwrap()` on an `Err` value: ").unwrap_or(text);
    // tch's Debug form: Torch("message\nException raised from ...") with escaped newlines.
    let text = text.strip_prefix("Torch(\"").unwrap_or(text);
    let end = [text.find("\\n"), text.find('\n')].into_iter().flatten().min().unwrap_or(text.len());
    let text = text[..end].trim_end_matches("\")").trim();
    if text.is_empty() { "a panic without a message".to_string() } else { text.to_string() }
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
        pub fn capture(opt: nn::Optimizer, _net: &Net, _batch_size: usize, _loss_sum: &tch::Tensor) -> Result<GraphStep, CaptureError> {
            Err((anyhow::anyhow!("this build has no CUDA-graph support (libtorch without CUDA, or CUDA headers missing at build time)"), Some(opt)))
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
        fn nnm_graph_free(g: *mut c_void) -> c_int;
        fn nnm_graph_capture_begin(g: *mut c_void) -> c_int;
        fn nnm_graph_capture_end(g: *mut c_void) -> c_int;
        fn nnm_graph_replay(g: *mut c_void) -> c_int;
        fn nnm_side_stream_enter(device: c_int) -> *mut c_void;
        fn nnm_side_stream_exit(s: *mut c_void) -> c_int;
        fn nnm_device_synchronize() -> c_int;
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
            if unsafe { nnm_graph_free(self.0) } != 0 {
                crate::terminal::warning(format_args!("{:#}", last_error("freeing the CUDA graph")));
            }
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
        /// The loss sum the graph adds into: held, so its memory lives as long as the graph.
        _loss_sum: Tensor,
        _opt: nn::Optimizer,
    }

    impl GraphStep {
        /// Warms up, captures, restores the parameters, and returns the step. Each replay
        /// adds the batch loss into `loss_sum` ((), float, on the network's device; the step
        /// keeps a handle on it); the caller zeroes it in place. On failure gives
        /// the optimizer back with no gradients and the parameters as they were before
        /// (None if they could not be put back).
        pub fn capture(mut opt: nn::Optimizer, net: &Net, batch_size: usize, loss_sum: &Tensor) -> Result<GraphStep, CaptureError> {
            let params = net.parameters();
            let snapshot = match catch_phase("warm-up", || {
                let _no_grad = tch::no_grad_guard();
                Ok(params.iter().map(|(_, p)| p.copy()).collect::<Vec<Tensor>>())
            }) {
                Ok(s) => s,
                Err(e) => return Err((e, Some(opt))),
            };
            let result = capture_inner(&mut opt, net, batch_size, loss_sum);
            // Warm-up trained a few steps: put the parameters back, drop the gradients.
            let restored = catch_phase("restore", || {
                let _no_grad = tch::no_grad_guard();
                for ((_, p), s) in params.iter().zip(&snapshot) {
                    p.shallow_clone().copy_(s);
                }
                Ok(())
            });
            match (result, restored) {
                (Ok((graph, static_x, static_y, static_loss)), Ok(())) => Ok(GraphStep { graph, static_x, static_y, static_loss, _loss_sum: loss_sum.shallow_clone(), _opt: opt }),
                (Err(e), Ok(())) => {
                    match catch_phase("restore", || {
                        opt.zero_grad();
                        Ok(())
                    }) {
                        Ok(()) => Err((e, Some(opt))),
                        Err(z) => Err((e.context(format!("{z:#}")), None)),
                    }
                }
                (Ok(_), Err(r)) => Err((r, None)),
                (Err(e), Err(r)) => Err((e.context(format!("{r:#}")), None)),
            }
        }
    }

    type Captured = (Graph, Tensor, Tensor, Tensor);

    fn capture_inner(opt: &mut nn::Optimizer, net: &Net, batch_size: usize, loss_sum: &Tensor) -> Result<Captured> {
        let device = net.device();
        let bs = batch_size as i64;
        let (static_x, static_y, side) = catch_phase("warm-up", || {
            let static_x = Tensor::zeros([bs, 1, 28, 28], (Kind::Float, device));
            let static_y = Tensor::zeros([bs], (Kind::Int64, device));
            let side = SideStream::enter(device)?;
            for _ in 0..3 {
                let l = loss(&net.forward(&static_x), &static_y);
                l.backward();
                opt.step();
                opt.zero_grad();
            }
            // As torch.cuda.graph: nothing of warm-up may still run when capture begins.
            // SAFETY: plain call into the shim.
            check(unsafe { nnm_device_synchronize() }, "synchronize after warm-up")?;
            Ok((static_x, static_y, side))
        })?;
        let (graph, static_loss) = catch_phase("capture", || {
            // SAFETY: plain constructor call; null means failure.
            let graph = Graph(unsafe { nnm_graph_new() });
            if graph.0.is_null() {
                return Err(last_error("cannot create a CUDA graph"));
            }
            opt.zero_grad(); // gradients set to none: the captured backward allocates them
            // SAFETY: the graph is alive; the current stream is the side stream.
            check(unsafe { nnm_graph_capture_begin(graph.0) }, "capture_begin")?;
            // capture_end must follow capture_begin whatever happens in between.
            let captured = caught(|| {
                let l = loss(&net.forward(&static_x), &static_y);
                l.backward();
                opt.step();
                let l = l.detach();
                let _no_grad = tch::no_grad_guard();
                let _ = loss_sum.shallow_clone().g_add_(&l);
                Ok(l)
            });
            // SAFETY: as capture_begin.
            let ended = check(unsafe { nnm_graph_capture_end(graph.0) }, "capture_end");
            let static_loss = captured?;
            ended?;
            Ok((graph, static_loss))
        })?;
        catch_phase("capture", || side.exit())?;
        Ok((graph, static_x, static_y, static_loss))
    }

    impl Step for GraphStep {
        /// Copies the batch into the static inputs and replays the graph. The returned loss
        /// is the graph's static output: use it before the next step overwrites it.
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
