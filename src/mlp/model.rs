//! The MLP in the run driver ([`crate::driver::Model`]): nn.py's epoch (shuffle, batches of
//! `batch_size`, the last one possibly smaller, `update_mini_batch` on each, evaluate) with
//! either the textbook [`Network`] or the fast [`FastNet`]; the same numbers, bit for bit.
use super::cost::Cost;
use super::fast::FastNet;
use super::hyper::{Hyper, DEFAULT_TRAIN_SIZE};
use super::network::{mini_batch, Network};
use super::rule::Sgd;
use super::shuffle::epoch_order;
use super::sparse::SparseImages;
use crate::data::{Mnist, Split};
use crate::driver::{Batching, EpochEnd, Model, Placement, RunSpec, Transcript};
use crate::evaluation::{argmax, Evaluation};
use crate::weights::{Entry, Weights};
use anyhow::Result;

/// Which implementation of nn.py's arithmetic trains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// [`FastNet`] (the default).
    #[default]
    Fast,
    /// The textbook [`Network`] (`--reference`): slower, the same results bit for bit.
    Reference,
}

/// The MLP's options that a checkpoint does not store.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub engine: Engine,
}

/// A network with the training and test images laid out as it reads them.
trait Trainer {
    /// The number of training images.
    fn train_len(&self) -> usize;
    /// `update_mini_batch` on the training images `batch`; `next` is the batch after it, if
    /// any (to read ahead). Returns the batch's mean cost before the step.
    fn train_batch(&mut self, batch: &[u32], next: Option<&[u32]>, rule: &Sgd) -> f64;
    /// Every test image: predictions, their probabilities and the mean cost.
    fn evaluate(&mut self, cost: Cost) -> Evaluation;
    /// The network as Nielsen writes it.
    fn network(&self) -> Network;
}

/// [`FastNet`], with the images sparse.
struct Fast {
    net: FastNet,
    train: SparseImages,
    test: SparseImages,
}

impl Trainer for Fast {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn train_batch(&mut self, batch: &[u32], next: Option<&[u32]>, rule: &Sgd) -> f64 {
        if let Some(next) = next {
            self.train.prefetch(next);
        }
        self.net.train_batch(&self.train, batch, rule)
    }

    fn evaluate(&mut self, cost: Cost) -> Evaluation {
        self.net.evaluate(&self.test, cost)
    }

    fn network(&self) -> Network {
        self.net.to_network()
    }
}

/// The textbook [`Network`], with the images as they are.
struct Reference {
    net: Network,
    train: Split,
    test: Split,
}

impl Trainer for Reference {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn train_batch(&mut self, batch: &[u32], _next: Option<&[u32]>, rule: &Sgd) -> f64 {
        let (x, y) = mini_batch(&self.train, batch);
        self.net.update_mini_batch(&x, &y, batch.len(), rule)
    }

    /// [`Network`] on every test image, 256 at a time, as [`FastNet::evaluate`]: the
    /// prediction's probability is its output divided by the sum of the outputs.
    fn evaluate(&mut self, cost: Cost) -> Evaluation {
        let (net, test) = (&self.net, &self.test);
        let (mut predictions, mut confidence, mut total) = (Vec::new(), Vec::new(), 0.0);
        let all: Vec<u32> = (0..test.len() as u32).collect();
        let k = net.sizes[net.sizes.len() - 1];
        for chunk in all.chunks(256) {
            let (x, y) = mini_batch(test, chunk);
            let fwd = net.forward(&x, chunk.len());
            let (z, a) = (&fwd.zs[fwd.zs.len() - 1], &fwd.activations[fwd.activations.len() - 1]);
            for j in 0..chunk.len() {
                let out = &a[j * k..(j + 1) * k];
                let p = argmax(out);
                predictions.push(p as u8);
                confidence.push(out[p] / out.iter().sum::<f64>());
                total += cost.cost(&z[j * k..(j + 1) * k], out, &y[j * k..(j + 1) * k]);
            }
        }
        Evaluation { labels: test.labels.clone(), predictions, confidence, loss: total / test.len().max(1) as f64 }
    }

    fn network(&self) -> Network {
        self.net.clone()
    }
}

/// An MLP run in progress.
pub struct Mlp {
    hyper: Hyper,
    seed: u64,
    shuffle: bool,
    batch_size: usize,
    trainer: Box<dyn Trainer>,
    /// This epoch's order of the training images.
    order: Vec<u32>,
    loss_sum: f64,
    trained: usize,
}

impl Model for Mlp {
    const NAME: &'static str = super::network::NAME;
    /// nn.py keeps the last, smaller batch.
    const BATCHING: Batching = Batching { default_train: Some((DEFAULT_TRAIN_SIZE, "nn.py trains on the first 50000 training images")), drop_last: false };
    type Hyper = Hyper;
    type Options = Options;

    fn build(spec: &RunSpec<Hyper, Options>, weights: Option<&Weights>, train: Split, test: Split) -> Result<Mlp> {
        let h = &spec.hyper;
        let network = match weights {
            Some(w) => Network::from_weights(w, &h.sizes)?,
            None => Network::seeded(&h.sizes, h.init, spec.schedule.seed),
        };
        let trainer: Box<dyn Trainer> = match spec.options.engine {
            Engine::Fast => {
                let net = FastNet::from_network(&network, spec.schedule.batch_size.max(256));
                tracing::debug!("mlp kernels: {:?}", net.simd());
                let (train, test) = (SparseImages::from_split(&train, train.len()), SparseImages::from_split(&test, test.len()));
                Box::new(Fast { net, train, test })
            }
            Engine::Reference => Box::new(Reference { net: network, train, test }),
        };
        Ok(Mlp { hyper: h.clone(), seed: spec.schedule.seed, shuffle: spec.schedule.shuffle, batch_size: spec.schedule.batch_size, trainer, order: Vec::new(), loss_sum: 0.0, trained: 0 })
    }

    fn transcript(&self) -> Box<dyn Transcript> {
        Box::new(MlpTranscript)
    }

    fn start_epoch(&mut self, epoch: usize) {
        self.order = epoch_order(self.trainer.train_len(), self.seed, epoch, self.shuffle);
        (self.loss_sum, self.trained) = (0.0, 0);
    }

    /// `update_mini_batch` on the images order[batch*bs..(batch+1)*bs]; returns the batch's
    /// mean cost before the step.
    fn train_batch(&mut self, batch: usize) -> Result<Option<f64>> {
        let (bs, n) = (self.batch_size, self.order.len());
        let idx = &self.order[batch * bs..((batch + 1) * bs).min(n)];
        let next = self.order.get((batch + 1) * bs..((batch + 2) * bs).min(n));
        let h = &self.hyper;
        let cost = self.trainer.train_batch(idx, next, &Sgd { eta: h.eta, cost: h.cost, lambda: h.lambda, n });
        self.loss_sum += cost;
        self.trained += 1;
        Ok(Some(cost))
    }

    fn end_epoch(&mut self) -> Result<EpochEnd> {
        Ok(EpochEnd { losses: Vec::new(), train_loss: self.loss_sum / self.trained.max(1) as f64 })
    }

    fn evaluate(&mut self) -> Result<Evaluation> {
        Ok(self.trainer.evaluate(self.hyper.cost))
    }

    fn entries(&self) -> Vec<Entry> {
        self.trainer.network().entries()
    }

    /// Plain Rust on one CPU thread: no libtorch sums.
    fn placement(&self) -> Placement {
        Placement { device: "cpu".into(), threads: None }
    }
}

/// nn.py's console: the two `Loaded ...` lines, then per epoch `Epoch {i}: {correct} /
/// {total}` (i from 0), with the test cost after it.
struct MlpTranscript;

impl Transcript for MlpTranscript {
    fn intro(&self, mnist: &Mnist) -> String {
        mnist.loaded_lines()
    }

    fn eval_lines(&self, epoch: usize, ev: &Evaluation) -> String {
        format!("Epoch {epoch}: {} / {}  test cost {:.6}", ev.correct(), ev.total(), ev.loss)
    }
}
