//! The typed configuration of one training run, as the command line resolves it and as a
//! checkpoint stores it: what every model shares ([`Schedule`]), the model's own
//! hyperparameters, the files, and where the run starts.
use crate::checks::at_least_one;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The hyperparameters every model's run has. Stored in checkpoints, so a resumed run
/// continues with exactly these.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub epochs: usize,
    pub batch_size: usize,
    /// The first N training images; None: the model's default (see `Model::DEFAULT_TRAIN`).
    pub train_size: Option<usize>,
    /// The first N test images; None: all of them.
    pub test_size: Option<usize>,
    /// Shuffle the training images every epoch (false: file order, for lockstep runs).
    pub shuffle: bool,
    /// The seed of every random source: the initial weights and each epoch's order.
    pub seed: u64,
}

impl Schedule {
    /// The checks every value gets, from a flag or from a checkpoint: the messages name the
    /// flag that sets the value.
    pub fn check(&self) -> Result<()> {
        at_least_one("--epochs", self.epochs)?;
        if self.seed > i64::MAX as u64 {
            // libtorch's generator takes a signed 64-bit seed, and the convnet's batch order
            // seeds are taken mod 2^63: a larger seed would repeat a smaller one's run.
            bail!("--seed must be below 2^63 (at most {}), got {}", i64::MAX, self.seed);
        }
        at_least_one("--batch-size", self.batch_size)?;
        if let Some(n) = self.train_size {
            at_least_one("--train-size", n)?;
        }
        if let Some(n) = self.test_size {
            at_least_one("--test-size", n)?;
        }
        Ok(())
    }
}

/// Where a run starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// Weights drawn from the seed.
    Fresh,
    /// Weights from a file (ours or PyTorch's); the run is new.
    InitFrom(PathBuf),
    /// A checkpoint written by `--save`: its weights, hyperparameters and position.
    Resume(PathBuf),
}

/// The files of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Files {
    pub data_dir: PathBuf,
    /// Checkpoint after every epoch (and on a stop); with `--resume`, defaults to that file.
    pub save: Option<PathBuf>,
    /// One JSON record per epoch, appended.
    pub metrics: Option<PathBuf>,
}

/// One training run, fully resolved: `H` is the model's stored hyperparameters, `O` its
/// options that are not stored (device, threads...).
#[derive(Clone, Debug)]
pub struct RunSpec<H, O> {
    pub schedule: Schedule,
    pub hyper: H,
    pub options: O,
    pub files: Files,
    pub start: Start,
    /// The hyperparameters given on the command line, by field name (`lr`, `batch_size`,
    /// `seed`, `shuffle`...): on `--resume` the checkpoint's values win, and each of these
    /// that asks for something else is named in a warning.
    pub given: Map<String, Value>,
}

/// The flag that sets the stored field `field`.
pub fn flag_of(field: &str) -> String {
    match field {
        "shuffle" => "--no-shuffle".to_string(),
        f => format!("--{}", f.replace('_', "-")),
    }
}

/// The flags of `given` whose value differs from the stored one (`stored`: the checkpoint's
/// hyperparameters as one JSON object). `epochs` is exempt: it extends the run.
pub fn ignored_on_resume(given: &Map<String, Value>, stored: &Value) -> Vec<String> {
    given
        .iter()
        .filter(|(field, value)| field.as_str() != "epochs" && stored.get(field.as_str()) != Some(value))
        .map(|(field, _)| flag_of(field))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resume_warns_only_about_flags_that_ask_for_something_else() {
        let stored = json!({"epochs": 20, "lr": 0.1, "batch_size": 32, "shuffle": true, "seed": 7});
        let given = |v: Value| v.as_object().unwrap().clone();
        // --epochs alone extends the run: nothing to warn about.
        assert!(ignored_on_resume(&given(json!({"epochs": 30})), &stored).is_empty());
        // Flags that repeat the checkpoint's values are not ignored either.
        assert!(ignored_on_resume(&given(json!({"lr": 0.1, "seed": 7})), &stored).is_empty());
        let asked = given(json!({"lr": 0.2, "batch_size": 16, "shuffle": false, "seed": 3}));
        assert_eq!(ignored_on_resume(&asked, &stored), ["--batch-size", "--lr", "--seed", "--no-shuffle"]);
    }
}
