//! Writing to the terminal without ever panicking: `println!` and `eprintln!` panic when the
//! stream is closed (`nnmnist ... | head`, a terminal that went away), which would abort a
//! run before it saves. Output here is best effort; the files hold what matters.
use std::fmt::Display;
use std::io::Write;

/// A line on stderr, prefixed `nnmnist: ` (lost, not fatal, if stderr is closed).
pub fn note(msg: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "nnmnist: {}", terminal_safe(&msg.to_string()));
}

/// A `nnmnist: warning: ...` line on stderr: the one format of every warning.
pub fn warning(msg: impl Display) {
    note(format_args!("warning: {msg}"));
}

/// An `error: ...` line on stderr.
pub fn error(msg: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "error: {}", terminal_safe(&msg.to_string()));
}

/// A message with every control character but newline and tab escaped as [`Escaped`]
/// does: a second line of defence for names quoted inside another library's error text
/// (names nnmnist prints itself go through [`Shown`]).
fn terminal_safe(msg: &str) -> String {
    msg.split('\n').map(|line| line.split('\t').map(|p| Controls(p).to_string()).collect::<Vec<_>>().join("\t")).collect::<Vec<_>>().join("\n")
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
    if stdout_was_closed() {
        anyhow::bail!("cannot write to stdout: it is closed (>&-); the result would be lost");
    }
    match out(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::anyhow!("cannot write to stdout: {e}")),
        _ => Ok(()),
    }
}

/// Whether nnmnist was started with stdout closed (`>&-`). Rust's runtime opens /dev/null
/// read-write on a closed standard descriptor before `main`, so every write "succeeds";
/// a shell's `>/dev/null` opens it write-only. So: stdout is /dev/null, opened read-write.
fn stdout_was_closed() -> bool {
    use rustix::fs::{FileType, OFlags};
    use std::os::unix::fs::MetadataExt;
    let Ok(null) = std::fs::metadata("/dev/null") else { return false };
    let stdout = std::io::stdout();
    let Ok(st) = rustix::fs::fstat(&stdout) else { return false };
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice
        && st.st_rdev == null.rdev()
        && rustix::fs::fcntl_getfl(&stdout).is_ok_and(|flags| flags & OFlags::RWMODE == OFlags::RDWR)
}

/// A name or path that came from a file or a flag, ready to print: every control character
/// (C0, DEL, C1) and every invisible format or bidirectional-override character is written
/// as an escape (`\n`, `\t`, `\r`, `\x1b`, `\u{202e}`), so that a tensor name or a file name
/// can never move the cursor, clear the screen, set a terminal's title or fake a line of
/// nnmnist's own. A byte that is not UTF-8 is written `\xHH` and a backslash `\\`, so that
/// two different names never print alike (`a\nb` the name with a newline, `a\\nb` the one
/// with a backslash).
pub struct Escaped<'a>(&'a [u8]);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_escaped(f, self.0, true)
    }
}

/// `bytes` as [`Escaped`] shows them; a backslash escaped too where `backslash`.
fn write_escaped(f: &mut std::fmt::Formatter<'_>, bytes: &[u8], backslash: bool) -> std::fmt::Result {
    use std::fmt::Write as _;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                '\\' if backslash => f.write_str("\\\\")?,
                c if (c as u32) < 0x80 && c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if c.is_control() || invisible(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// A whole message's text with its control and invisible characters escaped as [`Escaped`]
/// escapes them, its backslashes left as they are (the names in it went through
/// [`Shown`] already, which escaped theirs).
struct Controls<'a>(&'a str);

impl Display for Controls<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write_escaped(f, self.0.as_bytes(), false)
    }
}

/// Characters that do not show as themselves: those `char::escape_debug` escapes (format
/// characters, line and paragraph separators, tag characters, unassigned ones, and marks
/// that combine with the character before them, variation selectors among them), and the
/// blank fillers it prints (Hangul fillers). Zero-width characters, bidirectional marks and
/// the byte-order mark are among the first.
fn invisible(c: char) -> bool {
    let escaped = !c.is_ascii() && c.escape_debug().nth(1).is_some();
    escaped || matches!(c as u32, 0x00AD | 0x061C | 0x115F | 0x1160 | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFEFF | 0xFFA0 | 0xFFF9..=0xFFFB)
}

/// Whether `stream` gets colour and other escape codes, the one rule for every stream
/// nnmnist writes: never with NO_COLOR set (not empty); always with CLICOLOR_FORCE set (not
/// empty); never with CLICOLOR=0; else only on a terminal whose TERM is set and is not
/// `dumb`. These are anstream's tests (through anstyle-query), except that a `CI` variable
/// does not turn colour on for a terminal that says it takes none.
pub fn colour(stream: &impl std::io::IsTerminal) -> bool {
    if anstyle_query::no_color() {
        false
    } else if anstyle_query::clicolor_force() {
        true
    } else if anstyle_query::clicolor() == Some(false) {
        false
    } else {
        stream.is_terminal() && anstyle_query::term_supports_color()
    }
}

/// `.shown()`: a name or path as [`Escaped`] text, for every message that prints one.
pub trait Shown {
    fn shown(&self) -> Escaped<'_>;
}

impl Shown for str {
    fn shown(&self) -> Escaped<'_> {
        Escaped(self.as_bytes())
    }
}

impl Shown for std::ffi::OsStr {
    fn shown(&self) -> Escaped<'_> {
        use std::os::unix::ffi::OsStrExt;
        Escaped(self.as_bytes())
    }
}

impl Shown for std::path::Path {
    fn shown(&self) -> Escaped<'_> {
        self.as_os_str().shown()
    }
}

/// A path as one word to paste into a shell (bash, zsh, ksh; the hints nnmnist prints), that
/// names the same file byte for byte, and prints safely: as it is where it is made of safe
/// characters; in single quotes (a `'` inside written `'\''`) where it holds no control
/// character, no invisible one ([`Escaped`] shows those as escapes) and no byte that is not
/// UTF-8; else in `$'...'`, each such byte written `\xHH`, `\` and `'` escaped. One starting
/// with `-` gets `./` so that it is not taken for a flag.
pub fn shell_word(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    if bytes.first() == Some(&b'-') {
        bytes.splice(0..0, *b"./");
    }
    // A leading `=` is a command lookup in zsh (`=ls`): quoted.
    if !bytes.is_empty() && bytes[0] != b'=' && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(b)) {
        return String::from_utf8(bytes).unwrap_or_default();
    }
    let plain = std::str::from_utf8(&bytes).ok().filter(|t| !t.chars().any(|c| c.is_control() || invisible(c)));
    if let Some(text) = plain {
        return format!("'{}'", text.replace('\'', "'\\''"));
    }
    let mut out = String::from("$'");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if c.is_control() || invisible(c) => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_with_control_and_invisible_characters_escaped() {
        let crafted = "\x1b]0;owned\x07\x1b[2J\x1b[Hnnmnist: all good\n.weight";
        assert_eq!(crafted.shown().to_string(), "\\x1b]0;owned\\x07\\x1b[2J\\x1b[Hnnmnist: all good\\n.weight");
        assert_eq!("a\u{202e}b\u{9b}c\td\x7f".shown().to_string(), "a\\u{202e}b\\u{9b}c\\td\\x7f");
        // Separators, tag characters, variation selectors, fillers; printable letters stay.
        assert_eq!("a\u{2028}b\u{e0041}c\u{fe0f}d\u{3164}é€".shown().to_string(), "a\\u{2028}b\\u{e0041}c\\u{fe0f}d\\u{3164}é€");
        assert_eq!("model.0.weight".shown().to_string(), "model.0.weight");
        assert_eq!(std::path::Path::new("dir/ünï cödé.st").shown().to_string(), "dir/ünï cödé.st");
        // Two names never print alike: a backslash is escaped, a byte that is not UTF-8 too.
        assert_eq!("new\nline".shown().to_string(), "new\\nline");
        assert_eq!("new\\nline".shown().to_string(), "new\\\\nline");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(std::ffi::OsStr::from_bytes(b"bad\xff.png").shown().to_string(), "bad\\xff.png");
        assert_eq!("bad\u{fffd}.png".shown().to_string(), "bad\u{fffd}.png");
    }

    #[test]
    fn shell_words_paste_back_as_one_argument() {
        use std::path::Path;
        assert_eq!(shell_word(Path::new("runs/a.st")), "runs/a.st");
        assert_eq!(shell_word(Path::new("-x.st")), "./-x.st");
        assert_eq!(shell_word(Path::new("a;rm -rf x")), "'a;rm -rf x'");
        assert_eq!(shell_word(Path::new("it's")), "'it'\\''s'");
        assert_eq!(shell_word(Path::new("$(id)`id`")), "'$(id)`id`'");
        assert_eq!(shell_word(Path::new("we ird\n\x1b[2J\t'\\.st")), "$'we ird\\x0a\\x1b[2J\\x09\\'\\\\.st'");
        assert_eq!(shell_word(Path::new("a\u{202e}b")), "$'a\\xe2\\x80\\xaeb'");
        assert_eq!(shell_word(Path::new("a\u{2028}b")), "$'a\\xe2\\x80\\xa8b'");
        assert_eq!(shell_word(Path::new("=eq.st")), "'=eq.st'");
        assert_eq!(shell_word(Path::new("a=b.st")), "a=b.st");
        assert_eq!(shell_word(Path::new("ünï cödé")), "'ünï cödé'");
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(shell_word(Path::new(std::ffi::OsStr::from_bytes(b"caf\xe9"))), "$'caf\\xe9'");
    }
}
