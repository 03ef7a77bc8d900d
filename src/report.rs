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

/// Text on stdout, flushed.
pub fn out(text: impl Display) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{text}").and_then(|_| stdout.flush())
}

/// The output of a command whose product is its stdout (`eval`, `show`): a reader that went
/// away (`| head`) ends it quietly, as for any Unix tool; any other failure (a full disk) is
/// an error, not a silent success.
pub fn print(text: impl Display) -> anyhow::Result<()> {
    match out(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!("cannot write to stdout: {e}")),
        _ => Ok(()),
    }
}
