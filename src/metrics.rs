//! Per-epoch metrics as JSON lines (`--metrics FILE`), one schema for both models and for
//! the PyTorch reference scripts (scripts/reference/), so runs can be compared directly.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One epoch's results. `epoch` counts completed epochs from 1 for both models (the MLP's
/// console line `Epoch 0: ...` is `epoch: 1` here). `test_loss` is the model's own test
/// loss: for the convnet nn_convnet.py's mean over test batches of each batch's mean
/// cross-entropy; for the MLP the mean over test images of the training cost.
/// `train_loss` is the mean over the epoch's training batches of each batch's loss.
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
}

impl EpochMetrics {
    /// The record of an evaluation: `correct` of `total` test images right (the accuracy is
    /// derived from them), with `test_loss`; `train_loss` and the timings start empty, for
    /// the caller to fill in.
    pub fn new(model: &str, device: String, seed: u64, epoch: usize, correct: usize, total: usize, test_loss: f64) -> EpochMetrics {
        EpochMetrics {
            model: model.into(),
            implementation: "nnmnist".into(),
            epoch,
            test_correct: correct,
            test_total: total,
            test_accuracy: correct as f64 / total as f64,
            test_loss,
            train_loss: None,
            train_seconds: 0.0,
            eval_seconds: 0.0,
            device,
            seed,
        }
    }
}

/// Writes [`EpochMetrics`] lines to a file, flushed after each, or does nothing without one.
pub struct MetricsWriter {
    file: Option<(File, PathBuf)>,
}

impl MetricsWriter {
    /// Opens `path` before training starts, so that a bad path fails at once. A new run
    /// truncates the file; a resumed run (`append`) adds to it.
    pub fn open(path: Option<&Path>, append: bool) -> Result<MetricsWriter> {
        let file = match path {
            None => None,
            Some(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(p)
                    .with_context(|| format!("cannot open metrics file {} for writing", p.display()))?;
                Some((f, p.to_path_buf()))
            }
        };
        Ok(MetricsWriter { file })
    }

    pub fn write(&mut self, m: &EpochMetrics) -> Result<()> {
        if let Some((f, path)) = &mut self.file {
            let line = serde_json::to_string(m)?;
            writeln!(f, "{line}").and_then(|_| f.flush()).with_context(|| format!("cannot write metrics to {}", path.display()))?;
        }
        Ok(())
    }
}

/// Reads a metrics file back (used by tests and tools).
pub fn read(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}: line {} is not an epoch record", path.display(), i + 1)))
        .collect()
}
