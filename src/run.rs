//! What every training loop shares: Ctrl-C handling, the non-finite-loss guard, and the
//! console (a progress bar on a terminal, plain lines otherwise).
use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::Value;
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

/// A run's hyperparameters as a JSON object with its seed added, for
/// [`warn_ignored_on_resume`].
pub fn with_seed<T: Serialize>(hyper: &T, seed: u64) -> Result<Value> {
    let mut value = serde_json::to_value(hyper)?;
    if let Value::Object(map) = &mut value {
        map.insert("seed".into(), seed.into());
    }
    Ok(value)
}

/// On `--resume` the checkpoint's settings win. Warns about each flag that asked for
/// something else: a field of `asked` (the command line's settings) that differs from its
/// default and from `stored` (the checkpoint's). `epochs` is exempt: it extends the run.
pub fn warn_ignored_on_resume(asked: &Value, defaults: &Value, stored: &Value) {
    let ignored = ignored_on_resume(asked, defaults, stored);
    if !ignored.is_empty() {
        eprintln!("nnmnist: warning: --resume continues with the checkpoint's settings; ignoring {}", ignored.join(", "));
    }
}

/// The flags [`warn_ignored_on_resume`] warns about, as `--batch-size`, `--no-shuffle`...
pub fn ignored_on_resume(asked: &Value, defaults: &Value, stored: &Value) -> Vec<String> {
    let Value::Object(asked) = asked else { return Vec::new() };
    asked
        .iter()
        .filter(|(key, value)| {
            key.as_str() != "epochs" && defaults.get(key.as_str()) != Some(value) && stored.get(key.as_str()) != Some(value)
        })
        .map(|(key, _)| format!("--{}", key.replace('_', "-")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resume_warns_only_about_flags_that_asked_for_something_else() {
        let defaults = json!({"epochs": 20, "lr": 0.05, "batch_size": 64, "no_shuffle": false, "seed": 0});
        let stored = json!({"epochs": 20, "lr": 0.1, "batch_size": 32, "no_shuffle": false, "seed": 7});
        // Nothing given but --epochs: nothing to warn about, though the defaults differ from the checkpoint.
        let asked = json!({"epochs": 30, "lr": 0.05, "batch_size": 64, "no_shuffle": false, "seed": 0});
        assert!(ignored_on_resume(&asked, &defaults, &stored).is_empty());
        // Flags that repeat the checkpoint's values are not ignored either.
        let asked = json!({"epochs": 20, "lr": 0.1, "batch_size": 32, "no_shuffle": false, "seed": 7});
        assert!(ignored_on_resume(&asked, &defaults, &stored).is_empty());
        let asked = json!({"epochs": 20, "lr": 0.2, "batch_size": 16, "no_shuffle": true, "seed": 3});
        assert_eq!(ignored_on_resume(&asked, &defaults, &stored), ["--batch-size", "--lr", "--no-shuffle", "--seed"]);
    }
}
