//! Per-epoch metrics as JSON lines (`--metrics FILE`), one schema for both models and for
//! the PyTorch reference scripts (scripts/reference/), so runs can be compared directly.
//!
//! The file is appended to, never truncated: by every training run (one record per epoch,
//! written after that epoch's checkpoint) and by `nnmnist eval`. It may also be a character
//! device (`/dev/stdout` on a terminal, `/dev/null`) or a FIFO with a reader; a FIFO without
//! one is refused instead of waiting forever, and anything else that is not a regular file
//! (a directory, a socket, a block device) is refused before any work starts.
use crate::terminal::Shown;
use crate::evaluation::Evaluation;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// One evaluation's results. `epoch` counts completed epochs from 1 for both models (the
/// MLP's console line `Epoch 0: ...` is `epoch: 1` here; `nnmnist eval` records the epochs
/// its checkpoint holds, 0 for plain weights). `test_loss` is the model's own test loss (see
/// [`Evaluation::loss`]); `train_loss` the mean over the epoch's training batches of each
/// batch's loss; `confusion[label][prediction]` counts the test images.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub model: String,
    pub implementation: String,
    pub epoch: usize,
    pub test_correct: usize,
    pub test_total: usize,
    pub test_accuracy: f64,
    pub test_loss: f64,
    /// None where nothing was trained (`nnmnist eval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub device: String,
    pub seed: u64,
    /// The training run the record belongs to (kept through resumes; absent for `eval` and
    /// the PyTorch scripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// 10x10, rows the true label, columns the prediction (absent in older records and in
    /// the PyTorch scripts' records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Vec<Vec<usize>>>,
}

impl EpochMetrics {
    /// The record of an evaluation; `train_loss` and the timings start empty, for the caller
    /// to fill in.
    pub fn new(model: &str, device: String, seed: u64, epoch: usize, ev: &Evaluation) -> EpochMetrics {
        EpochMetrics {
            model: model.into(),
            implementation: "nnmnist".into(),
            epoch,
            test_correct: ev.correct(),
            test_total: ev.total(),
            test_accuracy: ev.accuracy(),
            test_loss: ev.loss,
            train_loss: None,
            train_seconds: 0.0,
            eval_seconds: 0.0,
            device,
            seed,
            run: None,
            confusion: Some(ev.confusion()),
        }
    }
}

/// The metrics file of a run, or nothing without `--metrics`.
pub struct MetricsLog {
    file: Option<(File, PathBuf)>,
    /// Epochs this run has already recorded (a resumed run redoing them writes no duplicates).
    recorded: Vec<usize>,
    /// The file did not end with a newline: the first record starts a new line.
    needs_newline: bool,
    /// The log is stdout or stderr (`/dev/stdout`): a reader that went away (`| head`)
    /// ends the records there, as it ends the console lines, instead of failing the run.
    on_std_stream: bool,
}

impl MetricsLog {
    /// Opens `path` for appending before any work starts, so that a bad path fails at once.
    pub fn open(path: Option<&Path>) -> Result<MetricsLog> {
        let file = match path {
            None => None,
            Some(p) => Some((open_append(p)?, p.to_path_buf())),
        };
        let needs_newline = path.is_some_and(|p| last_byte(p).is_some_and(|b| b != b'\n'));
        let on_std_stream = path.and_then(|p| std::fs::metadata(p).ok()).is_some_and(|m| std_stream(&m).is_some());
        Ok(MetricsLog { file, recorded: Vec::new(), needs_newline, on_std_stream })
    }

    /// For a resumed run: the records this file already holds of the same run (its `run`
    /// id, which the checkpoint carries) for epochs after `epochs_done` are kept, and those
    /// epochs are not recorded again. Returns them (a note for the user).
    pub fn keep_recorded(&mut self, run: &str, epochs_done: usize) -> Vec<usize> {
        let Some((_, path)) = &self.file else { return Vec::new() };
        if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return Vec::new();
        }
        // Bytes, line by line: a line that is not UTF-8 (or not a record) is skipped, never a
        // reason to read the rest of the file as empty.
        let bytes = std::fs::read(path).unwrap_or_default();
        let mut epochs: Vec<usize> = bytes
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice::<EpochMetrics>(l).ok())
            .filter(|r| r.implementation == "nnmnist" && r.run.as_deref() == Some(run) && r.epoch > epochs_done)
            .map(|r| r.epoch)
            .collect();
        epochs.sort_unstable();
        epochs.dedup();
        self.recorded = epochs.clone();
        epochs
    }

    /// Appends `m` as one line and flushes, unless its epoch is already recorded (see
    /// [`MetricsLog::keep_recorded`]).
    pub fn write(&mut self, m: &EpochMetrics) -> Result<()> {
        if let Some((f, path)) = &mut self.file {
            if self.recorded.contains(&m.epoch) {
                return Ok(());
            }
            // One write of the whole line: appenders to the same log cannot interleave inside it.
            let mut line = if self.needs_newline { "\n".to_string() } else { String::new() };
            line.push_str(&serde_json::to_string(m)?);
            line.push('\n');
            match f.write_all(line.as_bytes()).and_then(|_| f.flush()) {
                Err(e) if self.on_std_stream && e.kind() == std::io::ErrorKind::BrokenPipe => {
                    crate::terminal::note(format_args!("{} is closed: no more metrics records there (its checkpoints keep the run's results)", path.shown()));
                    self.file = None;
                }
                written => written.with_context(|| format!("cannot write metrics to {}", path.shown()))?,
            }
            self.needs_newline = false;
        }
        Ok(())
    }
}

/// Opens a metrics target for appending (see the module comment for what is accepted).
fn open_append(path: &Path) -> Result<File> {
    let what = |e: std::io::Error| anyhow::Error::new(e).context(format!("cannot open metrics file {} for appending", path.shown()));
    let meta = std::fs::metadata(path);
    if let Ok(m) = &meta {
        // /dev/stdout onto a file (`> out.txt`): write through stdout's own descriptor and
        // offset, or the two would overwrite each other.
        if let Some(fd) = std_stream(m) {
            // SAFETY: dup of a descriptor the process holds; the File owns the copy.
            let copy = unsafe { libc::dup(fd) };
            if copy >= 0 {
                return Ok(unsafe { <File as std::os::unix::io::FromRawFd>::from_raw_fd(copy) });
            }
        }
        if m.is_file() && !is_text(path) {
            bail!("cannot append metrics to {}: it holds binary data, not a JSON-lines log (a weights file?)", path.shown());
        }
    }
    let kind = meta.as_ref().map(|m| m.file_type()).ok();
    match kind {
        Some(t) if t.is_dir() => bail!("cannot open metrics file {}: it is a directory", path.shown()),
        Some(t) if t.is_fifo() => {
            let f = OpenOptions::new().append(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENXIO) {
                    anyhow::anyhow!("metrics file {} is a FIFO with no reader: nnmnist would wait forever; start its reader first", path.shown())
                } else {
                    what(e)
                }
            })?;
            // Blocking again: a slow reader must not make a write fail.
            // SAFETY: fcntl on a descriptor this function owns.
            unsafe {
                let fd = f.as_raw_fd();
                libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) & !libc::O_NONBLOCK);
            }
            Ok(f)
        }
        Some(t) if !(t.is_file() || t.is_char_device()) => {
            bail!("cannot write metrics to {}: not a regular file (nor a terminal, /dev/null or a FIFO)", path.shown())
        }
        _ => OpenOptions::new().create(true).append(true).open(path).map_err(what),
    }
}

/// Stdout's or stderr's descriptor, if `meta` is the file it writes to.
fn std_stream(meta: &std::fs::Metadata) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    [1, 2].into_iter().find(|&fd| {
        // SAFETY: fstat fills the struct it is given.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        unsafe { libc::fstat(fd, &mut st) == 0 && st.st_dev as u64 == meta.dev() && st.st_ino as u64 == meta.ino() }
    })
}

/// Whether the start of a regular file reads as text (no NUL byte in its first 64 KiB, in
/// any encoding): a log, not weights (safetensors' length prefix and zip headers hold NULs).
fn is_text(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::new();
    if File::open(path).and_then(|f| f.take(64 << 10).read_to_end(&mut head)).is_err() {
        return true; // unreadable: opening it for appending says why
    }
    !head.contains(&0)
}

/// The last byte of a regular file, if it has one.
fn last_byte(path: &Path) -> Option<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file() && m.len() > 0)?;
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::Start(meta.len() - 1)).ok()?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}

/// Reads a metrics file back (used by tests and tools). Read as bytes: a line that is not
/// UTF-8 is named as not a record, like any other line that is not one.
pub fn read(path: &Path) -> Result<Vec<EpochMetrics>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.shown()))?;
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_slice(l).with_context(|| format!("{}: line {} is not an epoch record", path.shown(), i + 1)))
        .collect()
}
