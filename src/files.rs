//! How nnmnist reads and writes the files a user names.
//!
//! Reading ([`check_readable`]): only regular files (after following symbolic links), so a
//! FIFO or a device never makes a run wait forever or read without end.
//!
//! Writing ([`SaveTarget`], for `--save`, the checkpoint of `--resume`, `trace --out`): the
//! way `cp` writes, and atomically.
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
//! - Everything a save will need is tried before any work: the name (a trailing `/` names a
//!   directory; `.NAME.XXXXXX` must fit the file system's name limit), the directory (a
//!   temporary file is created, written, synced and removed there), the lock, and the
//!   rename (in a sticky directory such as /tmp, another user's file cannot be replaced).
//! - One run at a time: an advisory lock (`flock`) on `.NAME.lock` beside the target, held
//!   for as long as the run lives, refuses a second run that would save to the same file.
//!   The lock file is removed when the run ends; one left by a killed run holds no lock and
//!   is reused.
//! - Temporary files an interrupted save left behind are removed by the next run that saves
//!   there, under the lock: `.NAME.tmpPID` (older versions' names), and `.NAME.XXXXXX` when
//!   it is a complete safetensors file nnmnist wrote (a save killed between the link and
//!   the rename); anything else of such a name is a user's and is left alone.
use crate::terminal::Shown;
use anyhow::{anyhow, bail, Context, Result};
use atomic_write_file::AtomicWriteFile;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
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

/// Fails unless `path` is a regular file (symbolic links followed); returns its size.
/// `what` names the file in the message ("weights file", "MNIST file"...).
pub fn check_readable(path: &Path, what: &str) -> Result<u64> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.shown()))?;
    if !meta.is_file() {
        bail!("cannot read {what} {}: it is {}, not a regular file", path.shown(), kind_of(&meta));
    }
    Ok(meta.len())
}

/// A file to be written (see the module comment), checked and locked by [`SaveTarget::open`].
#[derive(Debug)]
pub struct SaveTarget {
    named: PathBuf,
    target: PathBuf,
    lock_path: PathBuf,
    lock: Option<File>,
}

impl SaveTarget {
    /// Checks `path` before any work (everything the save will do, see the module comment),
    /// takes the lock and removes stale temporary files.
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
        let name = file_name.to_string_lossy().into_owned();
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
            OpenOptions::new().append(true).open(&target).map_err(|e| cannot(format!("the file is not writable ({e})")))?;
            if let Some(why) = rename_refused(&dir, meta) {
                return Err(cannot(why));
            }
        }
        let lock_path = dir.join(format!(".{name}.lock"));
        let lock = lock(&lock_path).map_err(|e| match e {
            LockError::Held(pid) => cannot(format!(
                "another nnmnist run{} is saving to it; wait for it to end or choose another file",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            )),
            LockError::Io(e) => cannot(format!("cannot create its lock file {} ({e})", lock_path.shown())),
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
        // Exactly `.NAME.tmpPID`, the names older versions gave: `.NAME.tmp.lock` (another
        // file's lock) or a user's `.NAME.tmpfoo` are not ours.
        let stale = format!(".{name}.tmp");
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let pid = file.strip_prefix(&stale).unwrap_or("");
                if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                    let _ = fs::remove_file(e.path());
                }
                // `.NAME.XXXXXX`: a save killed between the crate's link and its rename. The
                // file was complete before it was linked; removed only when it is a complete
                // safetensors file that nnmnist wrote (a user's file of that name is kept).
                let random = file.strip_prefix(&format!(".{name}.")).unwrap_or("");
                if random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric()) && written_by_nnmnist(&e.path()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(saving)
    }

    /// How the temporary file is opened: created with the old file's mode (or 0666 less the
    /// umask for a new one), its mode and owner then set to the old file's.
    fn options(&self, old: Option<&fs::Metadata>) -> atomic_write_file::OpenOptions {
        use atomic_write_file::unix::OpenOptionsExt as _;
        use std::os::unix::fs::OpenOptionsExt as _;
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
        // Removed while still locked, so a run that opened it meanwhile sees it vanish and
        // retries (see `lock`).
        let _ = fs::remove_file(&self.lock_path);
        self.lock.take();
    }
}

enum LockError {
    Held(Option<u32>),
    Io(std::io::Error),
    /// Something else is at the lock file's path.
    NotOurs(String),
}

/// Takes the advisory lock on `path`, creating it, and writes our pid into it. Retries when
/// the file it locked was removed by its previous holder in the meantime.
fn lock(path: &Path) -> Result<File, LockError> {
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..100 {
        // Never another file's: not through a link, not one that holds anything but a pid.
        if let Ok(meta) = fs::symlink_metadata(path) {
            if !meta.is_file() {
                return Err(LockError::NotOurs(format!("is {}, not nnmnist's lock file", kind_of(&meta))));
            }
            let text = fs::read_to_string(path).unwrap_or_default();
            if !text.trim().bytes().all(|b| b.is_ascii_digit()) {
                return Err(LockError::NotOurs("holds something else than an nnmnist lock (a process id)".into()));
            }
        }
        let mut f = OpenOptions::new().create(true).read(true).write(true).truncate(false).custom_flags(libc::O_NOFOLLOW).open(path).map_err(LockError::Io)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = f.read_to_string(&mut text);
                return Err(LockError::Held(text.trim().parse().ok()));
            }
            Err(TryLockError::Error(e)) => return Err(LockError::Io(e)),
        }
        let same = match (f.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same {
            let _ = f.set_len(0).and_then(|_| write!(f, "{}", std::process::id()));
            return Ok(f);
        }
    }
    Err(LockError::Io(std::io::Error::other("the lock file keeps being replaced")))
}

/// The longest file name the file system of `dir` takes (255 where it does not say).
fn name_max(dir: &Path) -> usize {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return 255 };
    // SAFETY: pathconf reads a NUL-terminated path.
    let n = unsafe { libc::pathconf(c.as_ptr(), libc::_PC_NAME_MAX) };
    if n > 0 {
        n as usize
    } else {
        255
    }
}

/// Why renaming over the existing file `meta` in `dir` would be refused, if it would: in a
/// sticky directory (mode +t, as /tmp) only the file's owner, the directory's owner or root
/// may replace a file.
fn rename_refused(dir: &Path, meta: &fs::Metadata) -> Option<String> {
    let d = fs::metadata(dir).ok()?;
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
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

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fails when `output` (named by `flag`) is one of `inputs`, the MNIST files a command reads
/// ([`crate::data::files_in`]): writing there would destroy the data.
pub fn refuse_to_overwrite(flag: &str, output: &Path, inputs: &[PathBuf]) -> Result<()> {
    if let Some(f) = inputs.iter().find(|f| same_file(f, output)) {
        bail!("{flag} {} is the MNIST file {} that the run reads: writing there would destroy the data", output.shown(), f.shown());
    }
    Ok(())
}

/// Refuses to replace `path` (named by `flag`) when it is the regular file this process's
/// stdout or stderr writes to (`--save run.log > run.log`): the save would replace the file
/// and every console line written to it would be lost.
pub fn refuse_console_file(flag: &str, path: &Path) -> Result<()> {
    let Ok(target) = fs::metadata(path) else { return Ok(()) };
    if !target.is_file() {
        return Ok(());
    }
    for (fd, stream) in [(1, "stdout"), (2, "stderr")] {
        // SAFETY: fstat fills the struct it is given.
        let same = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFREG && st.st_dev as u64 == target.dev() && st.st_ino as u64 == target.ino()
        };
        if same {
            bail!("{flag} {} is the file {stream} is written to: replacing it would lose the console's lines; save elsewhere", path.shown());
        }
    }
    Ok(())
}

/// The safetensors metadata keys nnmnist writes: a checkpoint's run state
/// (`weights::META_KEY`) and a trace's recorded order (`cmd::diff::ORDER_KEY`); spelled out
/// here so that writing files depends on no reader (a test checks they agree).
const NNMNIST_METADATA_KEYS: [&str; 2] = ["nnmnist", "order"];

/// Whether `path` is a complete safetensors file that nnmnist wrote: a regular file whose
/// header parses, whose metadata holds nnmnist's run state or a trace's recorded order, and
/// whose size is exactly what the header describes.
fn written_by_nnmnist(path: &Path) -> bool {
    let check = || -> Option<bool> {
        let mut f = File::open(path).ok()?;
        let meta = f.metadata().ok()?;
        if !meta.is_file() {
            return Some(false);
        }
        let mut len = [0u8; 8];
        f.read_exact(&mut len).ok()?;
        let n = u64::from_le_bytes(len);
        if n > (100 << 20) || 8 + n > meta.len() {
            return Some(false);
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header).ok()?;
        let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
        let ours = json.get("__metadata__").is_some_and(|m| NNMNIST_METADATA_KEYS.iter().any(|k| m.get(k).is_some()));
        let end = json.as_object()?.iter().filter(|(k, _)| *k != "__metadata__").filter_map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64()).max().unwrap_or(0);
        Some(ours && 8 + n + end == meta.len())
    };
    check().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_keys_are_the_writers_own() {
        assert_eq!(NNMNIST_METADATA_KEYS, [crate::tensors::META_KEY, crate::tensors::ORDER_KEY]);
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
