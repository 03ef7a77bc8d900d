//! Writing to the terminal without ever panicking: `println!` and `eprintln!` panic when the
//! stream is closed (`nnmnist ... | head`, a terminal that went away), which would abort a
//! run before it saves. Output here is best effort; the files hold what matters.
use std::fmt::Display;
use std::io::Write;

/// A line on stderr, prefixed `nnmnist: ` (lost, not fatal, if stderr is closed).
pub fn note(msg: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "nnmnist: {msg}");
}

/// An `error: ...` line on stderr.
pub fn error(msg: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "error: {msg}");
}

/// Text on stdout; false once stdout is closed.
pub fn out(text: impl Display) -> bool {
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}").and_then(|_| stdout.flush()).is_ok()
}
