//! Command-line arguments (clap derive) and their validation. Each command's values are
//! checked here, before any data is read or any training starts.
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  nnmnist convnet                          # nn_convnet.py: 20 epochs, CUDA when available
  nnmnist convnet --epochs 1 --device cpu --save convnet.safetensors
  nnmnist convnet --resume convnet.safetensors   # continue an interrupted run
  nnmnist mlp                              # nn.py: 784,30,10 sigmoid MLP, 30 epochs
  nnmnist mlp --sizes 784,100,10 --cost cross-entropy --init scaled --lambda 5.0 --eta 0.5
  nnmnist eval --model convnet --weights convnet.safetensors
  nnmnist show 0 --weights convnet.safetensors

Logs go to stderr; set RUST_LOG=debug for more.";

#[derive(Parser, Debug)]
#[command(name = "nnmnist", version, about = "MNIST two ways: Nielsen's from-scratch MLP in plain Rust, and nn_convnet.py's convnet in tch (libtorch)", after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the convnet of nn_convnet.py (tch, CPU or CUDA)
    Convnet(ConvnetArgs),
    /// Train Nielsen's from-scratch MLP (nn.py), plain Rust
    Mlp(MlpArgs),
    /// Evaluate saved weights on the test set
    Eval(EvalArgs),
    /// Draw test image N in the terminal, with the prediction of given weights
    Show(ShowArgs),
}

/// Options every training command shares.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Number of epochs
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of every random source (initialisation and shuffling)
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory holding the four MNIST IDX files (raw or .gz)
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Append one JSON object per epoch to FILE
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Save the weights (a PyTorch-loadable safetensors state_dict) after every epoch
    #[arg(long, value_name = "FILE.safetensors")]
    pub save: Option<PathBuf>,
    /// Start from these weights (ours or PyTorch's, safetensors)
    #[arg(long, value_name = "FILE.safetensors", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (a file written by --save); keeps saving to it
    #[arg(long, value_name = "FILE.safetensors")]
    pub resume: Option<PathBuf>,
    /// Train on the first N training images only
    #[arg(long, value_name = "N")]
    pub train_size: Option<usize>,
    /// Evaluate on the first N test images only
    #[arg(long, value_name = "N")]
    pub test_size: Option<usize>,
    /// Keep the training images in file order (a deterministic batch order for lockstep runs)
    #[arg(long)]
    pub no_shuffle: bool,
}

/// nn_convnet.py's SGD settings.
pub const DEFAULT_LR: f64 = 0.05;
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.001;

#[derive(Args, Debug, Clone)]
pub struct ConvnetArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// SGD learning rate
    #[arg(long, default_value_t = DEFAULT_LR, allow_negative_numbers = true)]
    pub lr: f64,
    /// SGD weight decay (L2)
    #[arg(long, default_value_t = DEFAULT_WEIGHT_DECAY, allow_negative_numbers = true)]
    pub weight_decay: f64,
    /// auto (CUDA when available), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// On CUDA, run every step eagerly instead of replaying one captured CUDA graph
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// CPU threads libtorch may use (default: libtorch's own choice)
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// nn.py: C = 0.5 * ||a - y||^2
    Quadratic,
    /// network2.py: C = -sum(y ln a + (1 - y) ln(1 - a))
    CrossEntropy,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// nn.py: every weight and bias from N(0, 1)
    Normal,
    /// network2.py: weights from N(0, 1/fan_in), biases from N(0, 1)
    Scaled,
}

#[derive(Args, Debug, Clone)]
pub struct MlpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Layer sizes, input first: 784,...,10
    #[arg(long, default_value = "784,30,10", value_delimiter = ',')]
    pub sizes: Vec<usize>,
    /// Learning rate
    #[arg(long, default_value_t = 3.0, allow_negative_numbers = true)]
    pub eta: f64,
    /// Cost function
    #[arg(long, value_enum, default_value_t = Cost::Quadratic)]
    pub cost: Cost,
    /// L2 regularisation parameter (network2.py's lmbda): w *= 1 - eta*lambda/n
    #[arg(long = "lambda", default_value_t = 0.0, allow_negative_numbers = true)]
    pub lambda: f64,
    /// Weight initialisation
    #[arg(long, value_enum, default_value_t = Init::Normal)]
    pub init: Init,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Convnet,
    Mlp,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Which network the weights are for
    #[arg(long, value_enum)]
    pub model: ModelKind,
    /// Weights to evaluate (safetensors, ours or PyTorch's)
    #[arg(long, value_name = "FILE.safetensors")]
    pub weights: PathBuf,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// auto, cpu, cuda or cuda:N (convnet only)
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Append the result as one JSON object to FILE
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Evaluate on the first N test images only
    #[arg(long, value_name = "N")]
    pub test_size: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    /// Index of the test image (0-9999)
    pub index: usize,
    /// Weights to classify it with (convnet or MLP, told apart by their keys)
    #[arg(long, value_name = "FILE.safetensors")]
    pub weights: Option<PathBuf>,
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
}

impl CommonArgs {
    /// Checks the values every training command shares.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == Some(0) {
            bail!("--epochs must be at least 1");
        }
        if self.batch_size == Some(0) {
            bail!("--batch-size must be at least 1");
        }
        if self.train_size == Some(0) {
            bail!("--train-size must be at least 1");
        }
        if self.test_size == Some(0) {
            bail!("--test-size must be at least 1");
        }
        Ok(())
    }
}

/// A learning rate or similar: finite and > 0.
pub fn check_positive(name: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value <= 0.0 {
        bail!("{name} must be a finite number above 0, got {value}");
    }
    Ok(())
}

/// A regularisation strength: finite and >= 0.
pub fn check_non_negative(name: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value < 0.0 {
        bail!("{name} must be a finite number, 0 or above, got {value}");
    }
    Ok(())
}

impl ConvnetArgs {
    /// The settings of a bare `nnmnist convnet`.
    pub fn defaults() -> ConvnetArgs {
        match Cli::parse_from(["nnmnist", "convnet"]).command {
            Command::Convnet(args) => args,
            _ => unreachable!("parsed a convnet command"),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.common.validate()?;
        check_positive("--lr", self.lr)?;
        check_non_negative("--weight-decay", self.weight_decay)?;
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        Ok(())
    }
}

impl MlpArgs {
    /// The settings of a bare `nnmnist mlp`.
    pub fn defaults() -> MlpArgs {
        match Cli::parse_from(["nnmnist", "mlp"]).command {
            Command::Mlp(args) => args,
            _ => unreachable!("parsed an mlp command"),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.common.validate()?;
        check_positive("--eta", self.eta)?;
        check_non_negative("--lambda", self.lambda)?;
        check_sizes(&self.sizes)
    }
}

/// MLP layer sizes: at least two layers, from 784 inputs to 10 outputs, none empty.
pub fn check_sizes(sizes: &[usize]) -> Result<()> {
    if sizes.len() < 2 {
        bail!("--sizes needs at least an input and an output layer, e.g. 784,30,10");
    }
    if sizes[0] != crate::data::PIXELS {
        bail!("--sizes must start at 784 (the 28x28 pixels), got {}", sizes[0]);
    }
    if *sizes.last().unwrap() != crate::data::CLASSES {
        bail!("--sizes must end at 10 (the digits), got {}", sizes.last().unwrap());
    }
    if sizes.contains(&0) {
        bail!("--sizes: every layer needs at least one neuron, got {sizes:?}");
    }
    Ok(())
}
