//! Console output of a run: lines go to stdout; on a terminal a progress bar on stderr shows
//! the batches of the current epoch. indicatif draws the bar only where stderr is a terminal
//! that can move its cursor (not a file, a pipe, `TERM=dumb` or an unset TERM, whose logs
//! would show its escape sequences raw); elsewhere the bar is hidden and costs nothing.
use indicatif::{ProgressBar, ProgressStyle};

/// Stdout lines, with a progress bar on stderr when stderr is a terminal. Once stdout is
/// closed (`| head`), the run goes on and prints nothing more there: the checkpoint and the
/// metrics hold its results.
#[derive(Default)]
pub struct Console {
    bar: Option<ProgressBar>,
    stdout_closed: bool,
}

impl Console {
    pub fn new() -> Console {
        Console::default()
    }

    /// Starts the bar for one epoch of `batches` steps (hidden where stderr is no terminal).
    pub fn start_epoch(&mut self, label: &str, batches: usize) {
        self.finish();
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches {elapsed_precise} (eta {eta}) {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        self.bar = Some(bar);
    }

    /// Advances the bar to `pos` batches done.
    pub fn set_position(&self, pos: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(pos as u64);
        }
    }

    /// Prints a line to stdout (above the bar, if any).
    pub fn line(&mut self, text: &str) {
        if self.stdout_closed {
            return;
        }
        let written = match &self.bar {
            Some(bar) => bar.suspend(|| crate::terminal::out(format_args!("{text}\n"))),
            None => crate::terminal::out(format_args!("{text}\n")),
        };
        if let Err(e) = written {
            self.stdout_closed = true;
            let what = if e.kind() == std::io::ErrorKind::BrokenPipe { "stdout is closed".to_string() } else { format!("cannot write to stdout ({e})") };
            crate::terminal::note(format_args!("{what}: training goes on without printing there (its checkpoints keep its results)"));
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}
