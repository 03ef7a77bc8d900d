//! nn_convnet.py's `test()`: accuracy and the average loss over test batches of 64, plus
//! each image's prediction and its probability.
use super::net::Net;
use super::step::loss;
use crate::evaluation::Evaluation;
use anyhow::{Context, Result};
use tch::{Device, Kind, Reduction, Tensor};

/// The batch size nn_convnet.py evaluates with; its avg loss is a mean of these batches' means.
pub const TEST_BATCH: i64 = 64;

/// Evaluates on `x` (N, 1, 28, 28), `y` (N). The loss is defined over batches of 64 as in
/// nn_convnet.py: the mean over batches (in order, the last partial one included) of each
/// batch's mean cross-entropy, summed as doubles. On the CPU each forward pass takes one such
/// batch (the very computation PyTorch does); on CUDA forward passes take 32 batches at once
/// and the per-image losses are then grouped into the same batches of 64, with one host
/// sync at the end.
pub fn evaluate(net: &Net, x: &Tensor, y: &Tensor) -> Result<Evaluation> {
    tch::no_grad(|| {
        let n = x.size()[0];
        let chunk = if x.device().is_cuda() { 32 * TEST_BATCH } else { TEST_BATCH };
        let (mut batch_means, mut predictions, mut confidence) = (Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let logits = net.forward(&x.narrow(0, start, len));
            let labels = y.narrow(0, start, len);
            // argmax of the logits, as nn_convnet.py counts correct images (a softmax could
            // round two close logits to a tie).
            let predicted = logits.argmax(-1, false);
            confidence.push(logits.softmax(-1, Kind::Float).gather(1, &predicted.unsqueeze(1), false).squeeze_dim(1));
            predictions.push(predicted);
            if chunk == TEST_BATCH {
                batch_means.push(loss(&logits, &labels).view([1]));
            } else {
                let per_image = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::None, -100, 0.0);
                let full = len / TEST_BATCH;
                if full > 0 {
                    batch_means.push(per_image.narrow(0, 0, full * TEST_BATCH).view([full, TEST_BATCH]).mean_dim(1, false, Kind::Float));
                }
                if len % TEST_BATCH != 0 {
                    batch_means.push(per_image.narrow(0, full * TEST_BATCH, len % TEST_BATCH).mean(Kind::Float).view([1]));
                }
            }
            start += len;
        }
        let cpu = |parts: &[Tensor], kind: Kind| Tensor::cat(parts, 0).to_kind(kind).to_device(Device::Cpu);
        let means = Vec::<f64>::try_from(cpu(&batch_means, Kind::Double)).context("reading the test losses")?;
        // Python sums the batch losses as doubles, in order, then divides.
        let avg_loss = means.iter().sum::<f64>() / means.len() as f64;
        let predictions = Vec::<u8>::try_from(cpu(&predictions, Kind::Uint8)).context("reading the predictions")?;
        let confidence = Vec::<f64>::try_from(cpu(&confidence, Kind::Double)).context("reading the probabilities")?;
        let labels = Vec::<u8>::try_from(y.to_kind(Kind::Uint8).to_device(Device::Cpu)).context("reading the labels")?;
        Ok(Evaluation { labels, predictions, confidence, loss: avg_loss })
    })
}

/// nn_convnet.py's lines after an evaluation: `Test Error: ` and ` Accuracy: ..%, Avg loss: .. `
/// and a blank line.
pub fn lines(ev: &Evaluation) -> String {
    format!("Test Error: \n Accuracy: {:.1}%, Avg loss: {:>8.6} \n", 100.0 * ev.accuracy(), ev.loss)
}
