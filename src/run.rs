//! What every training loop shares: Ctrl-C handling, the non-finite-loss guard, and the
//! console (a progress bar on a terminal, plain lines otherwise).
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The error a training loop returns after Ctrl-C, once it has saved what it could.
/// `main` turns it into exit code 130 and its message.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// First Ctrl-C: ask the training loop to stop at the next batch boundary (it saves and
/// exits). Second Ctrl-C: exit at once.
pub fn install_ctrlc_handler() {
    let result = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nnnmnist: second Ctrl-C, exiting without saving");
            std::process::exit(130);
        }
        eprintln!("\nnnmnist: Ctrl-C, stopping at the next batch boundary (Ctrl-C again to quit at once)");
    });
    if let Err(e) = result {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
}

/// True once Ctrl-C was pressed (or [`request_stop`] called).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Asks the running loop to stop as Ctrl-C does (tests use it).
pub fn request_stop() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Clears a stop request (tests that run several trainings in one process use it).
pub fn clear_stop() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}

/// Stops the run on a NaN or infinite loss, naming where it happened.
pub fn check_finite(loss: f64, epoch: usize, batch: usize, rate_flag: &str) -> Result<()> {
    if !loss.is_finite() {
        bail!(
            "the training loss became {loss} in epoch {epoch}, batch {batch}: training diverged; \
             try a smaller learning rate ({rate_flag})"
        );
    }
    Ok(())
}

/// Console output of a training run: lines go to stdout; on a terminal a progress bar on
/// stderr shows the batches of the current epoch.
pub struct Console {
    bar: Option<ProgressBar>,
}

impl Console {
    /// A progress bar over `batches` steps if stderr is a terminal, else plain output.
    pub fn new() -> Console {
        Console { bar: None }
    }

    /// Starts the bar for one epoch (no-op when stderr is not a terminal).
    pub fn start_epoch(&mut self, label: &str, batches: usize) {
        self.finish();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches {elapsed_precise} (eta {eta}) {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            self.bar = Some(bar);
        }
    }

    /// Advances the bar to `pos` batches done.
    pub fn set_position(&self, pos: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos as u64);
        }
    }

    /// Prints a line to stdout (above the bar, if any).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}
