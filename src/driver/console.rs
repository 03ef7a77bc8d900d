//! Console output of a run: lines go to stdout; on a terminal a progress bar on stderr shows
//! the batches of the current epoch.
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

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

    /// Starts the bar for one epoch of `batches` steps (no-op when stderr is not a terminal).
    pub fn start_epoch(&mut self, label: &str, batches: usize) {
        self.finish();
        if wants_bar(std::io::stderr().is_terminal(), std::env::var_os("TERM").as_deref()) {
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

/// A progress bar only on a terminal that can move its cursor: not on `TERM=dumb` (Emacs
/// shells, some CI logs), which would show its escape sequences (`ESC[2K`) raw.
fn wants_bar(stderr_is_terminal: bool, term: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && term.is_none_or(|t| t != "dumb")
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::wants_bar;
    use std::ffi::OsStr;

    #[test]
    fn no_bar_on_a_dumb_terminal_or_off_a_terminal() {
        assert!(wants_bar(true, Some(OsStr::new("xterm-256color"))));
        assert!(wants_bar(true, None));
        assert!(!wants_bar(true, Some(OsStr::new("dumb"))));
        assert!(!wants_bar(false, Some(OsStr::new("xterm"))));
    }
}
