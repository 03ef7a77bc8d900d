//! SIGINT, SIGTERM and SIGHUP: the only process-wide state of nnmnist, installed by the entry
//! point (`main`) alone and handed to the run driver as a [`Stop`].
//!
//! - While a training loop runs ([`Stop::training`]), the first signal asks it to stop at the
//!   next batch boundary; the loop saves where it is, says how to continue and returns
//!   [`crate::driver::Interrupted`]; `main` exits with 128 + the signal number (130 for
//!   Ctrl-C, 143 for SIGTERM as `timeout`, `docker stop` and batch schedulers send it, 129
//!   for SIGHUP).
//! - Outside a training loop (loading data, evaluating, `show`) there is nothing to save:
//!   the first signal exits at once, with the same status.
//! - A second signal always exits at once.
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

pub use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};

/// What a training loop asks before every batch, and tells when it starts and ends. Closures
/// `Fn() -> bool` are stop conditions too (tests stop a run after a given number of batches).
pub trait StopCondition {
    /// True when the run should save and stop now.
    fn should_stop(&self) -> bool;
    /// Called with true when the loop starts (a signal now means "stop at the next batch")
    /// and false when it ends (a signal now means "exit at once").
    fn training(&self, _in_loop: bool) {}
}

impl<F: Fn() -> bool> StopCondition for F {
    fn should_stop(&self) -> bool {
        self()
    }
}

/// The stop request of a process: the number of the first signal received, or 0.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    signal: Arc<AtomicI32>,
    in_loop: Arc<AtomicBool>,
}

impl StopCondition for Stop {
    fn should_stop(&self) -> bool {
        self.signal().is_some()
    }

    fn training(&self, in_loop: bool) {
        self.in_loop.store(in_loop, Ordering::SeqCst);
    }
}

impl Stop {
    /// A stop request no signal is connected to (the library's callers and tests).
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Connects SIGINT, SIGTERM and SIGHUP to a new [`Stop`] (see the module comment). Call
    /// once, from `main`. If the handlers cannot be installed, a warning says so and the
    /// signals keep their default action.
    pub fn install() -> Stop {
        let stop = Stop::new();
        // A signal ignored when nnmnist starts stays ignored: `nohup` (SIGHUP) and `trap ''`
        // detach a run on purpose.
        let wanted: Vec<i32> = [SIGINT, SIGTERM, SIGHUP].into_iter().filter(|&s| !ignored(s)).collect();
        match signal_hook::iterator::Signals::new(&wanted) {
            Ok(mut signals) => {
                let s = stop.clone();
                std::thread::spawn(move || {
                    for sig in signals.forever() {
                        s.receive(sig);
                    }
                });
            }
            Err(e) => crate::report::note(format_args!("warning: cannot install the signal handlers ({e}); Ctrl-C will not save")),
        }
        stop
    }

    /// Records `sig` as a signal would (tests and the signal thread).
    pub fn request(&self, sig: i32) {
        let _ = self.signal.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The first signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    fn receive(&self, sig: i32) {
        let first = self.signal.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst).is_ok();
        let name = name(sig);
        if first && self.in_loop.load(Ordering::SeqCst) {
            crate::report::note(format_args!("{name}: stopping at the next batch boundary to save (send it again to quit at once)"));
            return;
        }
        if first {
            crate::report::note(format_args!("{name}: stopping (nothing is being trained, so there is nothing to save)"));
        } else {
            crate::report::note(format_args!("second signal ({name}): exiting at once, without saving"));
        }
        // _exit, not exit: the main thread may be inside libtorch, and running its static
        // destructors under it corrupts the heap.
        // SAFETY: _exit ends the process at once; nothing runs after it.
        unsafe { libc::_exit(exit_code(sig)) }
    }
}

/// Whether `sig` is ignored (SIG_IGN) in this process.
fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// The exit status of a process stopped by `sig`: 128 + its number, as a shell reports it.
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}

/// "SIGINT (Ctrl-C)", "SIGTERM", "SIGHUP".
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT (Ctrl-C)",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
