//! The convnet in the run driver ([`crate::driver::Model`]): nn_convnet.py's `train()` and
//! `test()` loops with its console lines, on the CPU or CUDA (there, by default, the step
//! replays one captured CUDA graph).
use super::cuda_graph::graph_step_or_eager;
use super::eval::{evaluate, lines};
use super::hyper::{Hyper, Options};
use super::net::{images_tensor, labels_tensor, Net};
use super::step::{batch_count, batch_tensors, epoch_order, sgd, EagerStep, Step};
use crate::data::{Mnist, Split};
use crate::device;
use crate::driver::{Batching, EpochEnd, Model, Placement, RunSpec, Transcript};
use crate::evaluation::Evaluation;
use crate::weights::{Entry, Weights};
use anyhow::Result;
use tch::{Device, Kind, Tensor};

/// nn_convnet.py prints the loss every 20 batches.
pub const PRINT_EVERY: usize = 20;

/// A convnet run in progress: the network, its step, and the data on the device.
pub struct Convnet {
    net: Net,
    step: Box<dyn Step>,
    device: Device,
    seed: u64,
    shuffle: bool,
    batch_size: usize,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    /// This epoch's order of the training images, on the device.
    order: Tensor,
    /// The sum of this epoch's batch losses, on the device (read once per epoch). The step
    /// adds into it (on CUDA inside the captured graph); it is zeroed in place.
    loss_sum: Tensor,
    trained: usize,
    /// On CUDA, every 20th batch loss of this epoch, copied on the device (slot k: the k-th
    /// printed batch) and read after the epoch, so that nothing waits for the GPU mid-epoch.
    printed: Tensor,
    /// The batches whose loss `printed` holds, in order.
    printed_batches: Vec<usize>,
}

impl Model for Convnet {
    const NAME: &'static str = super::net::NAME;
    /// The last partial batch is dropped, as nn_convnet.py's DataLoader(drop_last=True): every
    /// batch has the same shape, which a captured CUDA graph needs.
    const BATCHING: Batching = Batching { default_train: None, drop_last: true };
    type Hyper = Hyper;
    type Options = Options;

    fn build(spec: &RunSpec<Hyper, Options>, weights: Option<&Weights>, train: Split, test: Split) -> Result<Convnet> {
        let o = &spec.options;
        o.apply()?;
        let device = o.device;
        let net = Net::new(device, spec.schedule.seed);
        if let Some(w) = weights {
            net.copy_from(w)?;
        }
        let opt = sgd(&net, spec.hyper.lr, spec.hyper.weight_decay)?;
        let loss_sum = Tensor::zeros([], (Kind::Float, device));
        let step: Box<dyn Step> = if device.is_cuda() && o.cuda_graph {
            graph_step_or_eager(opt, &net, spec.schedule.batch_size, &loss_sum)?
        } else {
            Box::new(EagerStep::summing(opt, &loss_sum))
        };
        let slots = batch_count(train.len(), spec.schedule.batch_size).div_ceil(PRINT_EVERY);
        Ok(Convnet {
            net,
            step,
            device,
            seed: spec.schedule.seed,
            shuffle: spec.schedule.shuffle,
            batch_size: spec.schedule.batch_size,
            train_x: images_tensor(&train.images, device),
            train_y: labels_tensor(&train.labels, device),
            test_x: images_tensor(&test.images, device),
            test_y: labels_tensor(&test.labels, device),
            order: Tensor::zeros([0], (Kind::Int64, device)),
            loss_sum,
            trained: 0,
            printed: Tensor::zeros([slots as i64], (Kind::Float, device)),
            printed_batches: Vec::new(),
        })
    }

    fn transcript(&self) -> Box<dyn Transcript> {
        Box::new(ConvnetTranscript { device: self.device, batch_size: self.batch_size, train: self.train_y.size()[0] as usize })
    }

    fn start_epoch(&mut self, epoch: usize) {
        let n = self.train_y.size()[0] as usize;
        self.order = epoch_order(n, self.seed, epoch, self.shuffle).to_device(self.device);
        let _ = self.loss_sum.zero_();
        self.trained = 0;
        self.printed_batches.clear();
    }

    /// On the CPU the loss is read every batch. On CUDA a read waits for the GPU, so none
    /// happens mid-epoch: every 20th loss is copied into `printed`, read by `end_epoch`.
    fn train_batch(&mut self, batch: usize) -> Result<Option<f64>> {
        let (x, y) = batch_tensors(&self.order, &self.train_x, &self.train_y, batch, self.batch_size);
        let loss = self.step.step(&self.net, &x, &y)?;
        self.trained += 1;
        if !self.device.is_cuda() {
            return Ok(Some(loss.double_value(&[])));
        }
        if batch.is_multiple_of(PRINT_EVERY) {
            self.printed.get((batch / PRINT_EVERY) as i64).copy_(&loss);
            self.printed_batches.push(batch);
        }
        Ok(None)
    }

    /// The epoch's mean loss (one read of the sum on the device) and, on CUDA, its
    /// every-20th batch losses (one read), in batch order.
    fn end_epoch(&mut self) -> Result<EpochEnd> {
        let train_loss = self.loss_sum.double_value(&[]) / self.trained.max(1) as f64;
        let batches = std::mem::take(&mut self.printed_batches);
        if batches.is_empty() {
            return Ok(EpochEnd { losses: Vec::new(), train_loss });
        }
        let values = Vec::<f64>::try_from(self.printed.to_kind(Kind::Double).to_device(Device::Cpu))?;
        Ok(EpochEnd { losses: batches.into_iter().map(|b| (b, values[b / PRINT_EVERY])).collect(), train_loss })
    }

    fn evaluate(&mut self) -> Result<Evaluation> {
        evaluate(&self.net, &self.test_x, &self.test_y)
    }

    fn entries(&self) -> Vec<Entry> {
        self.net.entries()
    }

    /// The device, and libtorch's CPU threads on the CPU (on CUDA the count does not change
    /// the sums).
    fn placement(&self) -> Placement {
        Placement { device: device::metrics_name(self.device), threads: (!self.device.is_cuda()).then(|| tch::get_num_threads().max(1) as usize) }
    }
}

/// nn_convnet.py's console: `Using {device} device`; per epoch `Epoch {t+1}` and 31 dashes;
/// every 20th batch `loss: {loss:>7f}  [{current:>5d}/{size:>5d}]`; the `Test Error` lines;
/// `Done!`.
struct ConvnetTranscript {
    device: Device,
    batch_size: usize,
    /// The training images (nn_convnet.py's `size`).
    train: usize,
}

impl Transcript for ConvnetTranscript {
    fn intro(&self, _mnist: &Mnist) -> String {
        format!("Using {} device", device::console_name(self.device))
    }

    fn epoch_header(&self, epoch: usize) -> Option<String> {
        Some(format!("Epoch {}\n-------------------------------", epoch + 1))
    }

    fn batch_line(&self, batch: usize, loss: f64) -> Option<String> {
        let n = self.train;
        (batch.is_multiple_of(PRINT_EVERY)).then(|| format!("loss: {loss:>7.6}  [{:>5}/{n:>5}]", (batch + 1) * self.batch_size))
    }

    fn eval_lines(&self, _epoch: usize, ev: &Evaluation) -> String {
        lines(ev)
    }

    fn done_line(&self) -> Option<&'static str> {
        Some("Done!")
    }
}
