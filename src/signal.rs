//! SIGINT, SIGTERM and SIGHUP: the only process-wide state of nnmnist, installed by the entry
//! point (`main`) alone and handed to the run driver as a [`Stop`].
//!
//! - While a training loop runs ([`Stop::training`]), the first signal asks it to stop at the
//!   next batch boundary; the loop saves where it is, says how to continue and ends as
//!   [`crate::outcome::Outcome::Interrupted`]; `main` exits with 128 + the signal number (130 for
//!   Ctrl-C, 143 for SIGTERM as `timeout`, `docker stop` and batch schedulers send it, 129
//!   for SIGHUP).
//! - Outside a training loop (loading data, evaluating, `show`) there is nothing to save:
//!   the first signal exits at once, with the same status.
//! - A second request exits at once, without saving: a different signal, or the same one
//!   [`COPY_WINDOW`] or more after the first. The same signal again within that window is a
//!   copy of the first, not a second request, and is ignored: GNU `timeout` (without
//!   `--foreground`) sends its signal to the child and then to the child's whole process
//!   group, so one time-out delivers it twice a few microseconds apart; `docker stop`, Slurm
//!   and systemd may also signal a process and its group.
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long after a signal the same signal counts as a copy of it (see the module comment).
pub const COPY_WINDOW: Duration = Duration::from_secs(1);

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
                    let mut first: Option<(i32, Instant)> = None;
                    for sig in signals.forever() {
                        s.receive(sig, &mut first);
                    }
                });
            }
            Err(e) => crate::terminal::warning(format_args!("cannot install the signal handlers ({e}); Ctrl-C will not save")),
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

    /// Acts on `sig` (see the module comment); `first` is the first signal and when it came,
    /// kept by the signal thread.
    fn receive(&self, sig: i32, first: &mut Option<(i32, Instant)>) {
        let name = name(sig);
        match classify(*first, sig, Instant::now()) {
            Received::Copy => return, // already being acted on
            Received::Second => crate::terminal::note(format_args!("second signal ({name}): exiting at once, without saving")),
            Received::First => {
                *first = Some((sig, Instant::now()));
                let _ = self.signal.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
                if self.in_loop.load(Ordering::SeqCst) {
                    crate::terminal::note(format_args!(
                        "{name}: stopping at the next batch boundary to save (another signal, or this one again after {} s, quits at once)",
                        COPY_WINDOW.as_secs()
                    ));
                    return;
                }
                crate::terminal::note(format_args!("{name}: stopping (nothing is being trained, so there is nothing to save)"));
            }
        }
        // _exit (signal-hook's safe wrapper), not exit: the main thread may be inside
        // libtorch, and running its static destructors under it corrupts the heap.
        signal_hook::low_level::exit(exit_code(sig))
    }
}

/// What a signal is, given the first one (its number and arrival) if any.
#[derive(Debug, PartialEq)]
enum Received {
    /// The first stop request.
    First,
    /// The same signal within [`COPY_WINDOW`] of the first: a supervisor's copy to the group.
    Copy,
    /// A real second request: another signal, or the same one later.
    Second,
}

fn classify(first: Option<(i32, Instant)>, sig: i32, now: Instant) -> Received {
    match first {
        None => Received::First,
        Some((was, at)) if was == sig && now.saturating_duration_since(at) < COPY_WINDOW => Received::Copy,
        Some(_) => Received::Second,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_the_same_signal_within_the_window_and_anything_else_is_a_second_request() {
        let t0 = Instant::now();
        assert_eq!(classify(None, SIGTERM, t0), Received::First);
        // `timeout`: kill(pid, SIG), then kill(0, SIG) microseconds later.
        assert_eq!(classify(Some((SIGTERM, t0)), SIGTERM, t0 + Duration::from_micros(50)), Received::Copy);
        assert_eq!(classify(Some((SIGINT, t0)), SIGINT, t0 + COPY_WINDOW - Duration::from_millis(1)), Received::Copy);
        assert_eq!(classify(Some((SIGINT, t0)), SIGINT, t0 + COPY_WINDOW), Received::Second);
        assert_eq!(classify(Some((SIGINT, t0)), SIGTERM, t0 + Duration::from_micros(50)), Received::Second);
        assert_eq!(classify(Some((SIGTERM, t0)), SIGHUP, t0), Received::Second);
    }
}
