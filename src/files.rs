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
//!   file system), which is fsynced, given the old file's permissions, and renamed over the
//!   target; the directory is fsynced. A crash leaves the old file or the new one, never a
//!   mix. (The target becomes a new inode: hard links to the old one keep the old contents.)
//! - One run at a time: an advisory lock (`flock`) on `.NAME.lock` beside the target, held
//!   for as long as the run lives, refuses a second run that would save to the same file.
//!   The lock file is removed when the run ends; one left by a killed run holds no lock and
//!   is reused.
//! - Temporary files an interrupted save left behind (`.NAME.tmpPID`) are removed by the
//!   next run that saves there, under the lock.
use anyhow::{anyhow, bail, Context, Result};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

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
    let meta = fs::metadata(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    if !meta.is_file() {
        bail!("cannot read {what} {}: it is {}, not a regular file", path.display(), kind_of(&meta));
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
    /// Checks `path` before any work, takes the lock and removes stale temporary files.
    pub fn open(path: &Path) -> Result<SaveTarget> {
        let target = follow_links(path)?;
        let cannot = |why: String| anyhow!("cannot save to {}: {why}", path.display());
        if fs::metadata(&target).is_ok_and(|m| m.is_dir()) {
            return Err(cannot("it is a directory".into()));
        }
        let dir = parent_dir(&target);
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => return Err(cannot(format!("{} is {}, not a directory", dir.display(), kind_of(&m)))),
            Err(_) => return Err(cannot(format!("directory {} does not exist", dir.display()))),
        }
        let name = target.file_name().ok_or_else(|| cannot("not a file name".into()))?.to_string_lossy().into_owned();
        if let Ok(meta) = fs::metadata(&target) {
            if meta.is_dir() {
                return Err(cannot("it is a directory".into()));
            }
            if !meta.is_file() {
                return Err(cannot(format!("it is {}; nnmnist only replaces regular files", kind_of(&meta))));
            }
            OpenOptions::new().append(true).open(&target).map_err(|e| cannot(format!("the file is not writable ({e})")))?;
        }
        let lock_path = dir.join(format!(".{name}.lock"));
        let lock = lock(&lock_path).map_err(|e| match e {
            LockError::Held(pid) => cannot(format!(
                "another nnmnist run{} is saving to it; wait for it to end or choose another file",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            )),
            LockError::Io(e) => cannot(format!("cannot create its lock file {} ({e})", lock_path.display())),
            LockError::NotOurs(why) => cannot(format!("{} {why}; remove it if no nnmnist run uses it", lock_path.display())),
        })?;
        // Exactly `.NAME.tmpPID`, the names `write` gives: `.NAME.tmp.lock` (another file's
        // lock) or a user's `.NAME.tmpfoo` are not ours.
        let stale = format!(".{name}.tmp");
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let file = e.file_name().to_string_lossy().into_owned();
                let pid = file.strip_prefix(&stale).unwrap_or("");
                if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(SaveTarget { named: path.to_path_buf(), target, lock_path, lock: Some(lock) })
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
        let dir = parent_dir(&self.target);
        let name = self.target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let old = fs::metadata(&self.target).ok().filter(|m| m.is_file());
        let result = (|| -> Result<()> {
            let mut f = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
            f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
            if let Some(old) = &old {
                f.set_permissions(old.permissions()).with_context(|| format!("cannot set the permissions of {}", tmp.display()))?;
                // The owner too, as `cp` onto an existing file keeps it (root only can give a
                // file away: for anyone else this is the owner already, or refused and left).
                let _ = std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()));
            }
            fs::rename(&tmp, &self.target).with_context(|| format!("cannot rename {} to {}", tmp.display(), self.target.display()))?;
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.with_context(|| format!("saving {} failed", self.named.display()))
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
                let to = fs::read_link(&p).with_context(|| format!("cannot read the link {}", p.display()))?;
                p = if to.is_absolute() { to } else { parent_dir(&p).join(to) };
            }
            _ => return Ok(p),
        }
    }
    bail!("cannot save to {}: too many levels of symbolic links", path.display())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
