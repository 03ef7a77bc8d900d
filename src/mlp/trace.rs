//! The MLP's step of `nnmnist trace` ([`crate::classifier::TraceStep`]): one
//! `update_mini_batch` on one batch, writing each layer's z and sigmoid activation (`0`,
//! `1`, `2`, ... as nn.Sequential(Linear, Sigmoid, ...) numbers its modules), the batch's
//! mean cost, each gradient divided by the batch size (`grad.KEY`) and the parameters after
//! the step (`after.KEY`), all float64.
use super::cost::{one_hot, pixels_f64, Cost};
use super::hyper::{DEFAULT_BATCH_SIZE, DEFAULT_ETA, DEFAULT_LAMBDA, DEFAULT_TRAIN_SIZE};
use super::io::{infer_sizes, network_of};
use super::kind::MlpKind;
use super::rule::Sgd;
use crate::checks::{at_least_one, check_non_negative, check_positive};
use crate::classifier::{Kind, TraceStep};
use crate::data::Split;
use crate::weights::{Entry, Weights};
use anyhow::Result;
use clap::Args;
use tch::Device;

/// The MLP's flags of `nnmnist trace`.
#[derive(Args, Clone, Debug, Default)]
pub struct StepFlags {
    /// mlp: learning rate [default: 3.0]
    #[arg(long, allow_negative_numbers = true)]
    pub eta: Option<f64>,
    /// mlp: L2 regularisation [default: 0]
    #[arg(long = "lambda", allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// mlp: cost function [default: quadratic]
    #[arg(long, value_enum)]
    pub cost: Option<Cost>,
    /// mlp: the training-set size n of the L2 term (1 - eta*lambda/n) [default: 50000]
    #[arg(long, value_name = "N")]
    pub train_size_n: Option<usize>,
}

impl StepFlags {
    /// The step these flags ask for, with nn.py's defaults, checked as `nnmnist mlp` checks
    /// them.
    pub fn resolve(&self) -> Result<Step> {
        let rule = Sgd {
            eta: self.eta.unwrap_or(DEFAULT_ETA),
            cost: self.cost.unwrap_or(Cost::Quadratic),
            lambda: self.lambda.unwrap_or(DEFAULT_LAMBDA),
            n: self.train_size_n.unwrap_or(DEFAULT_TRAIN_SIZE),
        };
        at_least_one("--train-size-n", rule.n)?;
        check_positive("--eta", rule.eta)?;
        check_non_negative("--lambda", rule.lambda)?;
        let given = [("--eta", self.eta.is_some()), ("--lambda", self.lambda.is_some()), ("--cost", self.cost.is_some()), ("--train-size-n", self.train_size_n.is_some())];
        Ok(Step { rule, given: given.iter().find(|(_, g)| *g).map(|(f, _)| *f) })
    }
}

/// The MLP's step, resolved: nn.py's rule with eta, lambda and n.
#[derive(Clone, Debug)]
pub struct Step {
    rule: Sgd,
    given: Option<&'static str>,
}

impl TraceStep for Step {
    fn kind(&self) -> &'static dyn Kind {
        &MlpKind
    }

    fn given(&self) -> Option<&'static str> {
        self.given
    }

    fn flags(&self) -> &'static str {
        "--eta, --lambda, --cost and --train-size-n"
    }

    fn default_batch_size(&self) -> usize {
        DEFAULT_BATCH_SIZE
    }

    /// Float64: z and a per layer, the loss, then the parameters twice.
    fn bytes(&self, weights: &Weights, batch_size: usize) -> Result<u128> {
        let sizes = infer_sizes(weights)?;
        let neurons: u128 = sizes[1..].iter().map(|&n| n as u128).sum();
        let params: u128 = sizes.windows(2).map(|w| (w[0] as u128 + 1) * w[1] as u128).sum();
        Ok(8 * (2 * batch_size as u128 * neurons + 1 + 2 * params))
    }

    /// On the CPU, whatever `device` says.
    fn trace(&self, weights: &Weights, batch: &Split, _device: Device) -> Result<Vec<Entry>> {
        let mut net = network_of(weights)?;
        let m = batch.len();
        let (x, y) = (pixels_f64(&batch.images), one_hot(&batch.labels));
        let cost = self.rule.cost;
        let fwd = net.forward(&x, m);
        let mut out = Vec::new();
        for (i, (z, a)) in fwd.zs.iter().zip(&fwd.activations[1..]).enumerate() {
            let width = net.sizes[i + 1];
            out.push(Entry::f64(format!("{}", 2 * i), vec![m, width], z.clone()));
            out.push(Entry::f64(format!("{}", 2 * i + 1), vec![m, width], a.clone()));
        }
        out.push(Entry::f64("loss", vec![1], vec![net.total_cost(&x, &y, m, cost) / m as f64]));
        let (nabla_b, nabla_w) = net.backprop(&x, &y, m, cost);
        // In the order backprop computes them: the last layer first, its bias before its weight.
        for (i, (nw, nb)) in nabla_w.iter().zip(&nabla_b).enumerate().rev() {
            let shape = vec![net.sizes[i + 1], net.sizes[i]];
            out.push(Entry::f64(format!("grad.{}.bias", 2 * i), vec![net.sizes[i + 1]], nb.iter().map(|g| g / m as f64).collect()));
            out.push(Entry::f64(format!("grad.{}.weight", 2 * i), shape, nw.iter().map(|g| g / m as f64).collect()));
        }
        net.update_mini_batch(&x, &y, m, &self.rule);
        out.extend(net.entries().into_iter().map(|e| Entry { name: format!("after.{}", e.name), ..e }));
        Ok(out)
    }
}
