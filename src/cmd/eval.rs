//! `nnmnist eval`: saved weights (ours or PyTorch's) on the test set, with what people look
//! at after an evaluation: the confusion matrix with each digit's accuracy, and the
//! misclassified images, each ready for `nnmnist show INDEX --weights F`.
use crate::data::{self, Mnist, CLASSES};
use crate::device;
use crate::evaluation::Evaluation;
use crate::metrics::{EpochMetrics, MetricsLog};
use crate::networks::{self, ModelKind};
use crate::terminal::{print, shell_word, Shown};
use crate::weights::Weights;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Instant;

/// A resolved `nnmnist eval` command.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    /// `--model`; None: told from the weights.
    pub model: Option<ModelKind>,
    pub weights: PathBuf,
    pub data_dir: PathBuf,
    /// `--device` and `--threads`, for the network that takes them.
    pub device: device::Flags,
    pub metrics: Option<PathBuf>,
    pub test_size: Option<usize>,
    pub confusion: bool,
    pub errors: Option<usize>,
}

/// Runs the evaluation and prints its lines: those of the script the network ports
/// (nn_convnet.py's `Test Error` lines, one summary line for the MLP); then the confusion
/// matrix and the misses if asked.
pub fn run(spec: &EvalSpec) -> Result<()> {
    // The weights and the metrics file first: a bad one is reported without waiting for data.
    let weights = Weights::load(&spec.weights)?;
    let model = networks::tell(&weights, spec.model)?;
    let device = networks::place(model, &spec.device)?;
    let net = model.load(&weights, device)?;
    let mut plan = crate::outputs::Plan::new("the evaluation");
    plan.reads("the weights file --weights reads", &spec.weights).reads_mnist(&spec.data_dir);
    let mut metrics = MetricsLog::open(&mut plan, spec.metrics.as_deref())?;
    let test = data::take_test(&Mnist::load_test(&spec.data_dir)?, spec.test_size, &spec.data_dir)?;
    tracing::info!("evaluating {} test images", test.len());
    let started = Instant::now();
    let ev = net.evaluate(&test)?;
    let eval_seconds = started.elapsed().as_secs_f64();
    ev.check_finite().with_context(|| format!("evaluating {}", spec.weights.shown()))?;
    let mut text = format!("{}\n", net.eval_lines(&ev, &spec.weights));
    if spec.confusion {
        text.push_str(&confusion_table(&ev));
    }
    if let Some(n) = spec.errors.filter(|&n| n > 0) {
        text.push_str(&errors_table(&ev, n, &spec.weights, &spec.data_dir));
    }
    print(text)?;
    let state = weights.state.as_ref();
    let epoch = state.map(|s| s.epochs_done).unwrap_or(0);
    let seed = state.and_then(|s| s.hyper.get("seed")).and_then(|v| v.as_u64()).unwrap_or(0);
    let record = EpochMetrics::new(model.name(), net.device_name(), seed, epoch, &ev);
    metrics.write(&EpochMetrics { eval_seconds, ..record })
}

/// The confusion matrix: one row per true digit, one column per prediction, then the row's
/// total and accuracy; a last line with the overall accuracy.
pub fn confusion_table(ev: &Evaluation) -> String {
    let counts = ev.confusion();
    let mut out = String::from("Confusion matrix (rows: true digit, columns: prediction)\n");
    out.push_str("label |");
    for d in 0..CLASSES {
        out.push_str(&format!("{d:>6}"));
    }
    out.push_str(" |  total  accuracy\n");
    out.push_str(&format!("{}\n", "-".repeat(7 + 6 * CLASSES + 19)));
    for (label, row) in counts.iter().enumerate() {
        out.push_str(&format!("{label:>5} |"));
        for &c in row {
            out.push_str(&format!("{c:>6}"));
        }
        let total: usize = row.iter().sum();
        let acc = if total > 0 { format!("{:>8.2}%", 100.0 * row[label] as f64 / total as f64) } else { format!("{:>9}", "-") };
        out.push_str(&format!(" | {total:>6} {acc}\n"));
    }
    out.push_str(&format!("all: {} / {} correct ({:.2}%)\n", ev.correct(), ev.total(), 100.0 * ev.accuracy()));
    out
}

/// The first `n` misclassified test images, one line each, and the `nnmnist show` command
/// that draws the first (shell-quoted, with the data directory unless it is the default).
pub fn errors_table(ev: &Evaluation, n: usize, weights: &std::path::Path, data_dir: &std::path::Path) -> String {
    let misses: Vec<_> = ev.misses().collect();
    if misses.is_empty() {
        return format!("Misclassified: none of the {} test images\n", ev.total());
    }
    let mut out = format!("Misclassified: {} of {} test images; the first {}:\n", misses.len(), ev.total(), n.min(misses.len()));
    out.push_str(" index  label  prediction  probability\n");
    for m in misses.iter().take(n) {
        out.push_str(&format!("{:>6}  {:>5}  {:>10}  {:>10.1}%\n", m.index, m.label, m.prediction, 100.0 * m.confidence));
    }
    if let Some(m) = misses.first().filter(|_| n > 0) {
        let data = if data_dir == std::path::Path::new(crate::data::DEFAULT_DIR) { String::new() } else { format!(" --data-dir {}", shell_word(data_dir)) };
        out.push_str(&format!("(see one: nnmnist show {} --weights {}{data})\n", m.index, shell_word(weights)));
    }
    out
}
