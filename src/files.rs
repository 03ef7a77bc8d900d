//! How nnmnist reads and writes the files a user names (docs/files.md states the rule).
//!
//! Nothing is opened before its type is known, and every open is checked again on the
//! opened descriptor: a FIFO, a socket or a device at or beside any path nnmnist reads or
//! writes never makes it wait, and never takes the place of a regular file between a check
//! and an open.
//!
//! Reading ([`open_readable`], [`check_readable`]): only regular files (after following
//! symbolic links), opened without blocking and checked with `fstat`.
//!
//! Writing: every output of a command is opened through [`crate::outputs::Plan`], which
//! checks it against everything the command reads and writes first.
//!
//! A replaced output (a [`SaveTarget`]: `--save`, the checkpoint of `--resume`,
//! `trace --out`) is written the way `cp` writes, and atomically:
//! - A symbolic link is followed: the link stays, the file it names is replaced.
//! - The file must be a regular file or not exist yet, in an existing directory; a
//!   directory, FIFO, device or socket is refused before any work starts.
//! - The new contents go to a temporary file beside the target (same directory, so the same
//!   file system), through the `atomic-write-file` crate: on Linux an unnamed file
//!   (`O_TMPFILE`), given the old file's mode and owner before anything is written to it,
//!   fsynced, then linked in as `.NAME.XXXXXX` (6 random characters) and renamed over the
//!   target; the directory is fsynced. A crash leaves the old file or the new one, never a
//!   mix. (The target becomes a new inode: hard links to the old one keep the old contents.)
//!   Where the file system has no `O_TMPFILE`, the crate creates `.NAME.XXXXXX` itself, with
//!   the old file's mode from the start.
//! - A save killed in the moment between that link and the rename leaves the complete new
//!   file as `.NAME.XXXXXX`. nnmnist never removes it, nor any other file beside the target:
//!   a name alone cannot tell nnmnist's file from a user's.
//! - Everything a save will need is tried before any work: the name (a trailing `/` names a
//!   directory; `.NAME.XXXXXX` must fit the file system's name limit), the directory (an
//!   unnamed temporary file is created, written, synced and dropped there), the lock, and
//!   the rename (in a sticky directory such as /tmp, another user's file cannot be replaced).
//! - One run at a time: an advisory lock (`flock`) on `.NAME.lock` beside the target, held
//!   for as long as the run lives, refuses a second run that would save to the same file.
//!   The lock file is nnmnist's own: a regular file of one name holding `nnmnist pid N`,
//!   written whole under a temporary name (`.NAME.XXXXXX`, made by this process) and
//!   moved to its name only where that name is free, so it is never seen empty or half
//!   written; anything else at its name (an empty file, a hard link, a file of other text)
//!   is refused, untouched. It is removed when the run ends; one left by a killed run holds
//!   no lock and is reused. A run killed while it makes its lock can leave that temporary
//!   `.NAME.XXXXXX` behind, as a killed save can, which nnmnist never removes.
//!
//! An appended output (an [`Appended`]: `--metrics`) is opened for
//! appending, never truncated; it may be a regular file holding text, a character device
//! (`/dev/stdout`, `/dev/null`) or a FIFO with a reader.
use crate::terminal::Shown;
use anyhow::{anyhow, bail, Context, Result};
use atomic_write_file::AtomicWriteFile;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The bytes the temporary name `.NAME.XXXXXX` adds to NAME.
const TEMP_NAME_EXTRA: usize = 8;

/// What kind of file `meta` describes, for messages: "a directory", "a FIFO"...
pub fn kind_of(meta: &fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Clears `O_NONBLOCK` on a descriptor opened with it, once its type is known.
fn set_blocking(f: &File) -> std::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(f)?;
    Ok(rustix::fs::fcntl_setfl(f, flags - rustix::fs::OFlags::NONBLOCK)?)
}

/// Opens `path` for reading when it is a regular file (symbolic links followed), and
/// returns it with its size. The type is checked before the open (nothing else is opened)
/// and again on the opened descriptor (nothing can take the file's place in between); the
/// open never blocks (`O_NONBLOCK`, cleared once the file is known to be regular).
/// `what` names the file in the message ("weights file", "MNIST file"...).
pub fn open_readable(path: &Path, what: &str) -> Result<(File, u64)> {
    let cannot = || format!("cannot read {what} {}", path.shown());
    let not_regular = |meta: &fs::Metadata| anyhow!("cannot read {what} {}: it is {}, not a regular file", path.shown(), kind_of(meta));
    let meta = fs::metadata(path).with_context(cannot)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let f = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC).open(path).with_context(cannot)?;
    let meta = f.metadata().with_context(cannot)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    set_blocking(&f).with_context(cannot)?;
    Ok((f, meta.len()))
}

/// Fails unless `path` is a regular file (symbolic links followed) that can be opened for
/// reading; returns its size. See [`open_readable`], which also returns the opened file.
pub fn check_readable(path: &Path, what: &str) -> Result<u64> {
    open_readable(path, what).map(|(_, size)| size)
}

/// A file to be replaced (see the module comment), checked and locked by [`SaveTarget::open`].
#[derive(Debug)]
pub struct SaveTarget {
    named: PathBuf,
    target: PathBuf,
    lock_path: PathBuf,
    lock: Option<File>,
}

impl SaveTarget {
    /// The file that is replaced: the path named, its symbolic links followed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Checks `path` before any work (everything the save will do, see the module comment)
    /// and takes the lock. Removes nothing. A command's outputs are opened through
    /// [`crate::outputs::Plan::replace`], which checks them against the rule first; this
    /// alone is for writing a file the caller names (tests, tools).
    pub fn open(path: &Path) -> Result<SaveTarget> {
        let cannot = |why: String| anyhow!("cannot save to {}: {why}", path.shown());
        let raw = path.as_os_str().as_bytes();
        if raw.ends_with(b"/") || raw.ends_with(b"/.") || raw.ends_with(b"/..") || raw == b"." || raw == b".." {
            return Err(cannot("the path names a directory (it ends with /, . or ..); give a file name".into()));
        }
        let target = follow_links(path)?;
        if fs::metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(cannot("it is a directory".into()));
        }
        let dir = parent_dir(&target);
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => return Err(cannot(format!("{} is {}, not a directory", dir.shown(), kind_of(&m)))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(cannot(format!("directory {} does not exist", dir.shown()))),
            Err(e) => return Err(cannot(format!("cannot reach directory {} ({e})", dir.shown()))),
        }
        let file_name = target.file_name().ok_or_else(|| cannot("not a file name".into()))?;
        let limit = name_max(&dir);
        if file_name.len() + TEMP_NAME_EXTRA > limit {
            return Err(cannot(format!(
                "its name is {} bytes long, and saving needs a temporary name {TEMP_NAME_EXTRA} bytes longer beside it, over this file system's limit of {limit}: choose a name of at most {} bytes",
                file_name.len(),
                limit.saturating_sub(TEMP_NAME_EXTRA)
            )));
        }
        let existing = fs::metadata(&target).ok();
        if let Some(meta) = &existing {
            if !meta.is_file() {
                return Err(cannot(format!("it is {}; nnmnist only replaces regular files", kind_of(meta))));
            }
            // Writable? Opened without blocking and checked on the descriptor: nothing but
            // the regular file just seen is ever opened.
            let f = OpenOptions::new()
                .append(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&target)
                .map_err(|e| cannot(format!("the file is not writable ({e})")))?;
            if let Ok(m) = f.metadata().map(|m| m.file_type()) {
                if !m.is_file() {
                    return Err(cannot("it is no longer a regular file; nnmnist only replaces regular files".into()));
                }
            }
            if let Some(why) = rename_refused(&dir, meta) {
                return Err(cannot(why));
            }
        }
        let mut lock_name = std::ffi::OsString::from(".");
        lock_name.push(file_name);
        lock_name.push(".lock");
        let lock_path = dir.join(lock_name);
        let mut temp_prefix = std::ffi::OsString::from(".");
        temp_prefix.push(file_name);
        temp_prefix.push(".");
        let lock = lock(&lock_path, &temp_prefix).map_err(|e| match e {
            LockError::Held(pid) => cannot(format!(
                "another nnmnist run{} is saving to it; wait for it to end or choose another file",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            )),
            LockError::Io(e) => {
                match e.kind() {
                    // Said by its kind alone ("permission denied"): the error tempfile gives
                    // names the lock's temporary file, which the user never sees.
                    kind if refused_writing(kind) => {
                        cannot(format!("directory {} is not writable: its lock file {} cannot be made there ({})", dir.shown(), lock_path.shown(), std::io::Error::from(kind)))
                    }
                    _ => cannot(format!("cannot create its lock file {} ({e})", lock_path.shown())),
                }
            }
            LockError::NotOurs(why) => cannot(format!("{} {why}; remove it if no nnmnist run uses it", lock_path.shown())),
        })?;
        let saving = SaveTarget { named: path.to_path_buf(), target, lock_path, lock: Some(lock) };
        // A trial temporary file: creatable, writable and syncable in that directory (not a
        // read-only file system, not a full disk at once). Dropped, never committed.
        let trial = (|| -> std::io::Result<()> {
            let mut f = saving.options(existing.as_ref()).open(&saving.target)?;
            f.write_all(b"nnmnist")?;
            f.sync_all()?;
            f.discard()
        })();
        trial.map_err(|e| cannot(format!("cannot write a temporary file in {} ({e})", dir.shown())))?;
        Ok(saving)
    }

    /// How the temporary file is opened: created with the old file's mode (or 0666 less the
    /// umask for a new one), its mode and owner then set to the old file's.
    fn options(&self, old: Option<&fs::Metadata>) -> atomic_write_file::OpenOptions {
        use atomic_write_file::unix::OpenOptionsExt as _;
        let mut opts = AtomicWriteFile::options();
        opts.mode(old.map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o666));
        // The owner too, as `cp` onto an existing file keeps it (root only can give a file
        // away: for anyone else this is the owner already, or refused and left).
        opts.preserve_mode(true).try_preserve_owner(true);
        opts
    }

    /// The path as the user named it.
    pub fn path(&self) -> &Path {
        &self.named
    }

    /// Whether `other` names the file this target writes (symbolic links followed).
    pub fn is_same_file(&self, other: &Path) -> bool {
        same_file(&self.target, other)
    }

    /// Replaces the target's contents with `bytes`, atomically (see the module comment).
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let old = fs::metadata(&self.target).ok().filter(|m| m.is_file());
        let result = (|| -> std::io::Result<()> {
            let mut f = self.options(old.as_ref()).open(&self.target)?;
            f.write_all(bytes)?;
            f.commit()
        })();
        result.with_context(|| format!("saving {} failed", self.named.shown()))
    }
}

impl Drop for SaveTarget {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else { return };
        // Removed while still locked, so a run that opened it meanwhile sees it vanish and
        // retries (see `lock`); and only while the name is still this lock's: a file put
        // there since (another command's output) is not nnmnist's lock.
        let ours = match (lock.metadata(), fs::symlink_metadata(&self.lock_path)) {
            (Ok(mine), Ok(there)) => mine.dev() == there.dev() && mine.ino() == there.ino(),
            _ => false,
        };
        if ours {
            let _ = fs::remove_file(&self.lock_path);
        }
        drop(lock);
    }
}

enum LockError {
    Held(Option<u32>),
    Io(std::io::Error),
    /// Something else is at the lock file's path.
    NotOurs(String),
}

/// Refuses what cannot be nnmnist's lock file: anything but a regular file, and a file
/// with other names (a hard link: writing the pid would change the file under them).
fn not_a_lock(meta: &fs::Metadata) -> Result<(), LockError> {
    if !meta.is_file() {
        return Err(LockError::NotOurs(format!("is {}, not nnmnist's lock file", kind_of(meta))));
    }
    if meta.nlink() > 1 {
        return Err(LockError::NotOurs(format!("has {} hard links, so it is not nnmnist's lock file", meta.nlink())));
    }
    Ok(())
}

/// What a lock file holds: `nnmnist pid N`.
const LOCK_TEXT: &str = "nnmnist pid ";

/// The process id a lock file's `text` names; None for anything that is not nnmnist's lock
/// (an empty file too: a lock file is never seen before its text is in it).
fn lock_holder(text: &[u8]) -> Option<u32> {
    let pid = std::str::from_utf8(text).ok()?.strip_suffix('\n')?.strip_prefix(LOCK_TEXT)?;
    pid.parse().ok()
}

/// The process id in `path` when it is an nnmnist lock file (a regular file, symbolic
/// links followed, holding `nnmnist pid N`), whether a run holds it or it was left behind.
pub fn lock_file_pid(path: &Path) -> Option<u32> {
    let (f, len) = open_readable(path, "file").ok()?;
    let mut text = Vec::new();
    (len <= 64 && (&f).take(64).read_to_end(&mut text).is_ok()).then_some(())?;
    lock_holder(&text)
}

/// Takes the advisory lock on `path`, creating it, and writes `nnmnist pid N` into it.
/// Retries when the file it locked was removed by its previous holder in the meantime. Never
/// another file's: not through a link (`O_NOFOLLOW`), nothing but a regular file of one name
/// (checked before the open and on the opened descriptor, the open never blocking), nothing
/// that holds anything but nnmnist's lock text (read from that descriptor).
fn lock(path: &Path, temp_prefix: &std::ffi::OsStr) -> Result<File, LockError> {
    let text = format!("{LOCK_TEXT}{}\n", std::process::id());
    for _ in 0..100 {
        match fs::symlink_metadata(path) {
            Ok(meta) => not_a_lock(&meta)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match new_lock(path, temp_prefix, &text) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => continue, // another run made it first: that one is looked at
                Err(e) => return Err(e),
            },
            Err(e) => return Err(LockError::Io(e)),
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| if e.raw_os_error() == Some(libc::ELOOP) { LockError::NotOurs("is a symbolic link, not nnmnist's lock file".into()) } else { LockError::Io(e) })?;
        let meta = f.metadata().map_err(LockError::Io)?;
        not_a_lock(&meta)?;
        set_blocking(&f).map_err(LockError::Io)?;
        let mut held = Vec::new();
        (&f).take(64).read_to_end(&mut held).map_err(LockError::Io)?;
        let Some(holder) = lock_holder(&held) else {
            return Err(LockError::NotOurs("holds something else than an nnmnist lock (\"nnmnist pid N\")".into()));
        };
        match f.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(LockError::Held(Some(holder))),
            Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        let same = match fs::symlink_metadata(path) {
            Ok(b) => meta.dev() == b.dev() && meta.ino() == b.ino(),
            _ => false,
        };
        if same {
            use std::os::unix::fs::FileExt;
            // The same length, so the file never holds less than a lock's text.
            let _ = f.write_all_at(format!("{LOCK_TEXT}{:0width$}\n", std::process::id(), width = held.len().saturating_sub(LOCK_TEXT.len() + 1)).as_bytes(), 0);
            return Ok(f);
        }
    }
    Err(LockError::Io(std::io::Error::other("the lock file keeps being replaced")))
}

/// A new lock file at `path`, holding `text` and locked: written whole under a temporary
/// name beside it (`temp_prefix` and six random characters), then moved to `path` only if nothing is there (renameat2's
/// RENAME_NOREPLACE, or a hard link where the file system lacks it). None when something
/// took the name first. The temporary is removed only when it is still the one this call
/// made (the move failed).
fn new_lock(path: &Path, temp_prefix: &std::ffi::OsStr, text: &str) -> Result<Option<File>, LockError> {
    let mut temp = tempfile::Builder::new().prefix(temp_prefix).rand_bytes(6).tempfile_in(parent_dir(path)).map_err(LockError::Io)?;
    temp.write_all(text.as_bytes()).map_err(LockError::Io)?;
    let f = match temp.persist_noclobber(path) {
        Ok(f) => f,
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(LockError::Io(e.error)),
    };
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        // Another run opened it between the move and this lock, and holds it.
        Err(TryLockError::WouldBlock) => Err(LockError::Held(None)),
        Err(TryLockError::Error(e)) => Err(LockError::Io(e)),
    }
}

/// A log opened for appending (by [`crate::outputs::Plan::append`]).
#[derive(Debug)]
pub struct Appended {
    pub file: File,
    /// The log is the file stdout or stderr writes to (`/dev/stdout`, or `--metrics F > F`):
    /// it is written through that stream's own descriptor, so that the two share one offset.
    pub on_std_stream: bool,
    /// The file did not exist and this open made it: removed again when it is dropped still
    /// empty (a command refused after its outputs were checked leaves no file behind).
    created: Option<PathBuf>,
}

impl Drop for Appended {
    fn drop(&mut self) {
        let Some(path) = &self.created else { return };
        if let (Ok(mine), Ok(there)) = (self.file.metadata(), fs::symlink_metadata(path)) {
            if mine.len() == 0 && mine.dev() == there.dev() && mine.ino() == there.ino() {
                let _ = fs::remove_file(path);
            }
        }
    }
}

impl Appended {
    /// Opens `path` for appending: a regular file holding text (created if missing), a
    /// character device, or a FIFO with a reader; anything else is refused before it is
    /// opened, and the opened descriptor is checked again. No open ever blocks.
    pub fn open(path: &Path) -> Result<Appended> {
        let what = |e: std::io::Error| anyhow::Error::new(e).context(format!("cannot open metrics file {} for appending", path.shown()));
        let meta = fs::metadata(path);
        if let Ok(m) = &meta {
            if let Some(stream) = std_stream(m) {
                if let Ok(file) = stream.duplicate() {
                    return Ok(Appended { file, on_std_stream: true, created: None });
                }
            }
            if m.is_file() && !is_text(path) {
                bail!("cannot append metrics to {}: it holds binary data, not a JSON-lines log (a weights file?)", path.shown());
            }
        }
        let allowed = |t: fs::FileType| t.is_file() || t.is_fifo() || t.is_char_device();
        match meta.as_ref().map(|m| m.file_type()) {
            Ok(t) if t.is_dir() => bail!("cannot open metrics file {}: it is a directory", path.shown()),
            Ok(t) if !allowed(t) => bail!("cannot write metrics to {}: not a regular file (nor a terminal, /dev/null or a FIFO)", path.shown()),
            _ => {}
        }
        // Made here (O_EXCL, at the end of any symbolic links, as `>>` would make it), or
        // opened as it is: only a file this open made is ever removed.
        let real = follow_links(path)?;
        let open = |create: bool| {
            let mut o = OpenOptions::new();
            o.append(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC);
            if create {
                o.create_new(true);
            }
            o.open(&real)
        };
        let (opened, created) = match open(meta.is_err()) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (open(false), false),
            other => (other, meta.is_err()),
        };
        let f = opened.map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                anyhow!("metrics file {} is a FIFO with no reader: nnmnist would wait forever; start its reader first", path.shown())
            } else if created && refused_writing(e.kind()) {
                anyhow!("cannot open metrics file {} for appending: directory {} is not writable ({})", path.shown(), parent_dir(&real).shown(), std::io::Error::from(e.kind()))
            } else {
                what(e)
            }
        })?;
        let opened = f.metadata().map_err(what)?;
        if !allowed(opened.file_type()) {
            bail!("cannot write metrics to {}: it is {}, not a regular file (nor a terminal, /dev/null or a FIFO)", path.shown(), kind_of(&opened));
        }
        // Blocking again: a slow reader must not make a write fail.
        set_blocking(&f).map_err(what)?;
        Ok(Appended { file: f, on_std_stream: false, created: created.then_some(real) })
    }
}

/// One of the process's standard output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdStream {
    Stdout,
    Stderr,
}

impl StdStream {
    pub fn name(self) -> &'static str {
        match self {
            StdStream::Stdout => "stdout",
            StdStream::Stderr => "stderr",
        }
    }

    /// `fstat` of the stream's descriptor.
    fn stat(self) -> std::io::Result<rustix::fs::Stat> {
        Ok(match self {
            StdStream::Stdout => rustix::fs::fstat(std::io::stdout())?,
            StdStream::Stderr => rustix::fs::fstat(std::io::stderr())?,
        })
    }

    /// A copy of the stream's descriptor (close-on-exec, never 0-2), owned by the caller.
    fn duplicate(self) -> std::io::Result<File> {
        let copy = match self {
            StdStream::Stdout => rustix::io::fcntl_dupfd_cloexec(std::io::stdout(), 3)?,
            StdStream::Stderr => rustix::io::fcntl_dupfd_cloexec(std::io::stderr(), 3)?,
        };
        Ok(File::from(copy))
    }
}

/// The standard stream that writes to the file `meta`, if one does.
pub fn std_stream(meta: &fs::Metadata) -> Option<StdStream> {
    [StdStream::Stdout, StdStream::Stderr].into_iter().find(|s| s.stat().is_ok_and(|st| st.st_dev == meta.dev() && st.st_ino == meta.ino()))
}

/// Whether the start of a regular file reads as text (no NUL byte in its first 64 KiB, in
/// any encoding): a log, not weights (safetensors' length prefix and zip headers hold NULs).
fn is_text(path: &Path) -> bool {
    let mut head = Vec::new();
    match open_readable(path, "metrics file") {
        Ok((f, _)) if (&f).take(64 << 10).read_to_end(&mut head).is_ok() => !head.contains(&0),
        _ => true, // unreadable: opening it for appending says why
    }
}

/// The longest file name the file system of `dir` takes (255 where it does not say).
fn name_max(dir: &Path) -> usize {
    match rustix::fs::statvfs(dir) {
        Ok(st) if st.f_namemax > 0 => usize::try_from(st.f_namemax).unwrap_or(usize::MAX),
        _ => 255,
    }
}

/// Why renaming over the existing file `meta` in `dir` would be refused, if it would: in a
/// sticky directory (mode +t, as /tmp) only the file's owner, the directory's owner or root
/// may replace a file.
fn rename_refused(dir: &Path, meta: &fs::Metadata) -> Option<String> {
    let d = fs::metadata(dir).ok()?;
    let me = rustix::process::geteuid().as_raw();
    sticky_refuses(d.permissions().mode(), d.uid(), meta.uid(), me).then(|| {
        format!(
            "it belongs to another user (uid {}) in the sticky directory {}, where only its owner may replace it; choose another name",
            meta.uid(),
            dir.shown()
        )
    })
}

/// Whether a directory of mode `dir_mode` owned by `dir_uid` refuses user `me` to rename
/// over (or remove) a file owned by `file_uid` in it: the sticky bit's rule (rename(2), EPERM).
fn sticky_refuses(dir_mode: u32, dir_uid: u32, file_uid: u32, me: u32) -> bool {
    dir_mode & 0o1000 != 0 && me != 0 && file_uid != me && dir_uid != me
}

/// Whether `a` and `b` name one file (symbolic links followed): the same inode when both
/// exist, else the same place.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b)) {
        return x.dev() == y.dev() && x.ino() == y.ino();
    }
    let place = |p: &Path| {
        let p = follow_links(p).ok()?;
        Some(parent_dir(&p).canonicalize().ok()?.join(p.file_name()?))
    };
    place(a).is_some_and(|x| place(b) == Some(x))
}

/// `path` with every symbolic link along its last component followed (the file a write
/// through it reaches; it may not exist yet).
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p).with_context(|| format!("cannot read the link {}", p.shown()))?;
                p = if to.is_absolute() { to } else { parent_dir(&p).join(to) };
            }
            _ => return Ok(p),
        }
    }
    bail!("cannot save to {}: too many levels of symbolic links", path.shown())
}

/// Whether a file could not be made for want of the right to write where it goes: the
/// directory's permissions, or a read-only file system.
fn refused_writing(kind: std::io::ErrorKind) -> bool {
    matches!(kind, std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nnmnists_lock_text_is_a_lock() {
        assert_eq!(lock_holder(b"nnmnist pid 4242\n"), Some(4242));
        assert_eq!(lock_holder(b"nnmnist pid 0004242\n"), Some(4242));
        for other in [&b""[..], b"4242", b"4242\n", b"nnmnist pid 4242", b"nnmnist pid x\n", b"notes of mine", b" "] {
            assert_eq!(lock_holder(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn the_sticky_bit_lets_only_the_owners_and_root_replace_a_file() {
        let (root, alice, bob) = (0, 1000, 1001);
        // /tmp: 1777, owned by root; bob's file.
        assert!(sticky_refuses(0o41777, root, bob, alice));
        assert!(!sticky_refuses(0o41777, root, bob, bob), "the file's owner");
        assert!(!sticky_refuses(0o41777, alice, bob, alice), "the directory's owner");
        assert!(!sticky_refuses(0o41777, root, bob, root), "root");
        assert!(!sticky_refuses(0o40777, root, bob, alice), "no sticky bit");
    }
}
