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
use crate::driver::{Model, RunSpec, Transcript};
use crate::evaluation::{argmax, Evaluation};
use crate::weights::{Entry, Weights};
use anyhow::Result;

/// Which implementation trains.
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

/// An MLP run in progress.
pub struct Mlp {
    hyper: Hyper,
    seed: u64,
    shuffle: bool,
    batch_size: usize,
    net: Net,
    train: Images,
    test: Images,
    /// This epoch's order of the training images.
    order: Vec<u32>,
    loss_sum: f64,
    trained: usize,
}

enum Net {
    Fast(Box<FastNet>),
    Reference(Network),
}

/// A split as the engine reads it.
enum Images {
    Sparse(Box<SparseImages>),
    Dense(Split),
}

impl Images {
    fn new(engine: Engine, split: Split) -> Images {
        match engine {
            Engine::Fast => Images::Sparse(Box::new(SparseImages::from_split(&split, split.len()))),
            Engine::Reference => Images::Dense(split),
        }
    }

    fn len(&self) -> usize {
        match self {
            Images::Sparse(s) => s.len(),
            Images::Dense(s) => s.len(),
        }
    }
}

/// [`Network`] on every image of `split`, 256 at a time: predictions, their probabilities
/// (the output divided by the sum of the outputs) and the mean cost, as [`FastNet::evaluate`].
fn evaluate_reference(net: &Network, split: &Split, cost: Cost) -> Evaluation {
    let (mut predictions, mut confidence, mut total) = (Vec::new(), Vec::new(), 0.0);
    let all: Vec<u32> = (0..split.len() as u32).collect();
    let k = net.sizes[net.sizes.len() - 1];
    for chunk in all.chunks(256) {
        let (x, y) = mini_batch(split, chunk);
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
    Evaluation { labels: split.labels.clone(), predictions, confidence, loss: total / split.len().max(1) as f64 }
}

impl Mlp {
    fn network(&self) -> Network {
        match &self.net {
            Net::Fast(f) => f.to_network(),
            Net::Reference(n) => n.clone(),
        }
    }
}

impl Model for Mlp {
    const NAME: &'static str = super::network::NAME;
    fn diverged_hint(hyper: &Hyper) -> String {
        if hyper.lambda > 0.0 {
            // L2 multiplies the weights by 1 - eta*lambda/n each step: far from (0, 1], it is
            // the cause, not the cure.
            format!("a smaller learning rate (--eta) or a smaller --lambda (now {:?}: each step multiplies the weights by 1 - eta*lambda/n)", hyper.lambda)
        } else {
            "a smaller learning rate (--eta) or L2 regularisation (--lambda)".to_string()
        }
    }
    const DEFAULT_TRAIN: Option<(usize, &'static str)> = Some((DEFAULT_TRAIN_SIZE, "nn.py trains on the first 50000 training images"));
    type Hyper = Hyper;
    type Options = Options;

    fn check_hyper(hyper: &Hyper) -> Result<()> {
        hyper.check()
    }

    /// Also says which `--sizes` the file's shapes are, when they are not the run's.
    fn check_weights(hyper: &Hyper, weights: &Weights) -> Result<()> {
        Network::from_weights(weights, &hyper.sizes).map(|_| ()).map_err(|e| match super::io::infer_sizes(weights) {
            Ok(sizes) if sizes != hyper.sizes => {
                let s = super::hyper::join_sizes(&sizes);
                // The hint is offered only where --sizes would then be accepted.
                match super::hyper::check_sizes(&sizes) {
                    Ok(()) => anyhow::anyhow!("{e:#} (its layers are {s}: pass --sizes {s})"),
                    Err(why) => anyhow::anyhow!("{e:#} (its layers are {s}, which no MNIST MLP has: {why:#})"),
                }
            }
            Ok(_) => e,
            // What makes the file unreadable as an MLP (a gap in its layers) says more.
            Err(why) => anyhow::anyhow!("{e:#} ({why:#})"),
        })
    }

    /// nn.py keeps the last, smaller batch.
    fn batches(train: usize, batch_size: usize) -> usize {
        train.div_ceil(batch_size)
    }

    fn build(spec: &RunSpec<Hyper, Options>, weights: Option<&Weights>, train: Split, test: Split) -> Result<Mlp> {
        let h = &spec.hyper;
        let network = match weights {
            Some(w) => Network::from_weights(w, &h.sizes)?,
            None => Network::seeded(&h.sizes, h.init, spec.schedule.seed),
        };
        let engine = spec.options.engine;
        let net = match engine {
            Engine::Fast => {
                let fast = FastNet::from_network(&network, spec.schedule.batch_size.max(256));
                tracing::debug!("mlp kernels: {:?}", fast.simd());
                Net::Fast(Box::new(fast))
            }
            Engine::Reference => Net::Reference(network),
        };
        Ok(Mlp {
            hyper: h.clone(),
            seed: spec.schedule.seed,
            shuffle: spec.schedule.shuffle,
            batch_size: spec.schedule.batch_size,
            net,
            train: Images::new(engine, train),
            test: Images::new(engine, test),
            order: Vec::new(),
            loss_sum: 0.0,
            trained: 0,
        })
    }

    fn transcript(&self) -> Box<dyn Transcript> {
        Box::new(MlpTranscript)
    }

    fn start_epoch(&mut self, epoch: usize) {
        self.order = epoch_order(self.train.len(), self.seed, epoch, self.shuffle);
        (self.loss_sum, self.trained) = (0.0, 0);
    }

    /// `update_mini_batch` on the images order[batch*bs..(batch+1)*bs]; returns the batch's
    /// mean cost before the step.
    fn train_batch(&mut self, batch: usize) -> Result<Option<f64>> {
        let (bs, n) = (self.batch_size, self.train.len());
        let idx = &self.order[batch * bs..((batch + 1) * bs).min(n)];
        let h = &self.hyper;
        let rule = Sgd { eta: h.eta, cost: h.cost, lambda: h.lambda, n };
        let cost = match (&mut self.net, &self.train) {
            (Net::Fast(fast), Images::Sparse(train)) => {
                if let Some(next) = self.order.get((batch + 1) * bs..((batch + 2) * bs).min(n)) {
                    train.prefetch(next);
                }
                fast.train_batch(train, idx, &rule)
            }
            (Net::Reference(net), Images::Dense(train)) => {
                let (x, y) = mini_batch(train, idx);
                net.update_mini_batch(&x, &y, idx.len(), &rule)
            }
            _ => unreachable!("the engine and its images are built together"),
        };
        self.loss_sum += cost;
        self.trained += 1;
        Ok(Some(cost))
    }

    fn epoch_train_loss(&mut self) -> f64 {
        self.loss_sum / self.trained.max(1) as f64
    }

    fn evaluate(&mut self) -> Result<Evaluation> {
        Ok(match (&mut self.net, &self.test) {
            (Net::Fast(fast), Images::Sparse(test)) => fast.evaluate(test, self.hyper.cost),
            (Net::Reference(net), Images::Dense(test)) => evaluate_reference(net, test, self.hyper.cost),
            _ => unreachable!("the engine and its images are built together"),
        })
    }

    fn entries(&self) -> Vec<Entry> {
        self.network().entries()
    }

    fn device_name(&self) -> String {
        "cpu".into()
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
