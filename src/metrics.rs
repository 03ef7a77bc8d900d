//! Per-epoch metrics as JSON lines (`--metrics FILE`), one schema for both models and for
//! the PyTorch reference scripts (scripts/reference/), so runs can be compared directly.
//!
//! The file is appended to, never truncated: by every training run (one record per epoch,
//! written after that epoch's checkpoint) and by `nnmnist eval`. It may also be a character
//! device (`/dev/stdout` on a terminal, `/dev/null`) or a FIFO with a reader; a FIFO without
//! one is refused instead of waiting forever, and anything else that is not a regular file
//! (a directory, a socket, a block device) is refused before any work starts. The file is
//! opened through [`outputs::Plan::append`], the rule every output of a command follows.
use crate::terminal::Shown;
use crate::evaluation::Evaluation;
use crate::files;
use crate::outputs;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
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
    file: Option<(files::Appended, PathBuf)>,
    /// Epochs this run has already recorded (a resumed run redoing them writes no duplicates).
    recorded: Vec<usize>,
    /// The file did not end with a newline: the first record starts a new line.
    needs_newline: bool,
    /// The log is stdout or stderr (`/dev/stdout`): a reader that went away (`| head`)
    /// ends the records there, as it ends the console lines, instead of failing the run.
    on_std_stream: bool,
}

impl MetricsLog {
    /// Opens `path` (`--metrics`) for appending before any work starts, through `plan`,
    /// the rule of every output ([`outputs::Plan::append`]), so that a bad path fails at once.
    pub fn open(plan: &mut outputs::Plan, path: Option<&Path>) -> Result<MetricsLog> {
        let Some(p) = path else { return Ok(MetricsLog { file: None, recorded: Vec::new(), needs_newline: false, on_std_stream: false }) };
        let appended = plan.append("--metrics", p)?;
        let needs_newline = last_byte(p).is_some_and(|b| b != b'\n');
        let on_std_stream = appended.on_std_stream;
        Ok(MetricsLog { file: Some((appended, p.to_path_buf())), recorded: Vec::new(), needs_newline, on_std_stream })
    }

    /// For a resumed run: the records this file already holds of the same run (its `run`
    /// id, which the checkpoint carries) for epochs after `epochs_done` are kept, and those
    /// epochs are not recorded again. Returns them (a note for the user).
    pub fn keep_recorded(&mut self, run: &str, epochs_done: usize) -> Vec<usize> {
        let Some((_, path)) = &self.file else { return Vec::new() };
        // Only a regular file is read back (not a FIFO, a terminal or /dev/null).
        let Ok((mut f, _)) = files::open_readable(path, "metrics file") else { return Vec::new() };
        // Bytes, line by line: a line that is not UTF-8 (or not a record) is skipped, never a
        // reason to read the rest of the file as empty.
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
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
        if let Some((appended, path)) = &mut self.file {
            let f = &mut appended.file;
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

/// The last byte of a regular file, if it has one.
fn last_byte(path: &Path) -> Option<u8> {
    use std::io::{Seek, SeekFrom};
    let (mut f, len) = files::open_readable(path, "metrics file").ok().filter(|(_, len)| *len > 0)?;
    f.seek(SeekFrom::Start(len - 1)).ok()?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}

/// Reads a metrics file back (used by tests and tools). Read as bytes: a line that is not
/// UTF-8 is named as not a record, like any other line that is not one.
pub fn read(path: &Path) -> Result<Vec<EpochMetrics>> {
    let (mut f, _) = files::open_readable(path, "metrics file")?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.shown()))?;
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_slice(l).with_context(|| format!("{}: line {} is not an epoch record", path.shown(), i + 1)))
        .collect()
}
