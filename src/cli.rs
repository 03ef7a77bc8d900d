//! The command line as typed (clap derive): raw flags only. `crate::config` resolves them
//! once into typed configuration, where the defaults live as named constants and every
//! value is checked. A flag that is a hyperparameter is an `Option` here, so that the
//! configuration knows which ones were given (a resumed run warns about those it ignores).
use crate::mlp::{Cost, Init};
use crate::networks::{ModelKind, StepFlags};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  nnmnist convnet                          # nn_convnet.py: 20 epochs, CUDA when available
  nnmnist convnet --epochs 1 --device cpu --save convnet.safetensors
  nnmnist convnet --resume convnet.safetensors   # continue an interrupted run
  nnmnist mlp                              # nn.py: 784,30,10 sigmoid MLP, 30 epochs
  nnmnist mlp --sizes 784,100,10 --cost cross-entropy --init scaled --lambda 5.0 --eta 0.5
  nnmnist eval --weights convnet.safetensors --confusion --errors 10
  nnmnist eval --weights model.pth         # PyTorch's torch.save files too
  nnmnist show 0 --weights convnet.safetensors
  nnmnist predict my_seven.jpg --weights convnet.safetensors --weights mlp.safetensors --show

Logs go to stderr; set RUST_LOG=debug for more.";

#[derive(Parser, Debug)]
#[command(name = "nnmnist", version, disable_version_flag = true, arg_required_else_help = true, about = "MNIST two ways: Nielsen's from-scratch MLP in plain Rust, and nn_convnet.py's convnet in tch (libtorch)", after_help = EXAMPLES)]
pub struct Cli {
    /// Print the version, libtorch's version and CUDA build, the CUDA devices seen, cuDNN and
    /// the MLP's SIMD kernels (for a bug report)
    #[arg(short = 'V', long)]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Read your own digit: each image (PNG, JPEG, PGM/PPM; a photo or a scan) through
    /// MNIST's own preprocessing, then the digit and the ten probabilities of each network
    #[command(after_help = PREDICT_HELP)]
    Predict(PredictArgs),
    /// One training step on one batch, writing every layer's output, the loss, each
    /// gradient and the weights after the step to a safetensors file (for scripts/compare --layers)
    Trace(TraceArgs),
    /// Compare two files of named tensors (safetensors, torch.save's .pt/.pth) tensor by
    /// tensor, in the files' order, and name the first that differs. Exit status 0: all
    /// within tolerance; 1: a difference; 2: trouble (an unreadable file, a bad flag)
    #[command(after_help = DIFF_HELP)]
    Diff(DiffArgs),
    /// A local page to draw a digit on and watch both networks read it as you draw
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
}

const DIFF_HELP: &str = "\
An element is within tolerance when |a - b| <= atol + rtol*|b| (B is the expected side),
with torch.testing.assert_close's defaults per dtype: float32 rtol 1.3e-6 atol 1e-5, float64
rtol 1e-7 atol 1e-7, float16 rtol 1e-3 atol 1e-5, bfloat16 rtol 1.6e-2 atol 1e-5, integers
and bool exact. NaN equals NaN only at the same place. A name only in one file, a shape or a
dtype that differs, counts as a difference. See docs/diff.md.

Examples:
  nnmnist diff port.safetensors reference.pth
  nnmnist diff rust_trace.safetensors torch_trace.safetensors --only 'grad.*'
  nnmnist diff a.safetensors b.safetensors --exact --sort name";

const PREDICT_HELP: &str = "\
The preprocessing, as MNIST was made, after what a photo or a scan needs: colour over white
by its alpha, grey; the paper's level found (a gradient of light, grey paper) and dark ink
on light paper told from light on dark (inverted to MNIST's white on black); the paper's
level and the ink's stretched to 0 and 1, below the noise 0; specks that are not strokes
erased; the digit's bounding box scaled to fit 20x20 keeping its aspect ratio (anti-aliased);
placed in 28x28 with its centre of mass at the centre. Images of at most 40 megapixels. See
docs/usage.md.

Examples:
  nnmnist predict seven.jpg --weights convnet.safetensors
  nnmnist predict scans/*.png --weights convnet.safetensors --weights model.pth --format json
  nnmnist predict seven.jpg --weights mlp.safetensors --show --save-input inputs/";

const SERVE_HELP: &str = "\
Prints `Listening on http://HOST:PORT/` once it accepts connections; open that address in a
browser. The JSON API the page uses (POST /api/predict, GET /api/models, GET /api/mnist/N)
is in docs/usage.md.

Examples:
  nnmnist serve                                   # trains both networks for 1 epoch first
  nnmnist serve --weights convnet.safetensors --weights mlp.safetensors --pytorch
  nnmnist serve --port 0                          # any free port";

/// `--data-dir`'s help, the same for every command.
const DATA_DIR_HELP: &str = "Directory holding the four MNIST IDX files (raw or .gz) [default: ./data if it holds them, else the data/ of the repository nnmnist was built from]";

/// Options every training command shares.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Number of epochs [default: convnet 20, mlp 30]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Mini-batch size [default: convnet 64, mlp 10]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of every random source (initialisation and shuffling) [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, env = "NNMNIST_DATA_DIR", value_name = "DIR", help = DATA_DIR_HELP)]
    pub data_dir: Option<PathBuf>,
    /// Append one JSON object per epoch to FILE
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Save the weights (a PyTorch-loadable safetensors state_dict) after every epoch
    #[arg(long, value_name = "FILE.safetensors")]
    pub save: Option<PathBuf>,
    /// Start from these weights (ours or PyTorch's: safetensors or torch.save's .pt/.pth)
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub init_from: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (a file written by --save); keeps saving to it
    #[arg(long, value_name = "FILE.safetensors")]
    pub resume: Option<PathBuf>,
    /// Train on the first N training images only [default: convnet all, mlp 50000]
    #[arg(long, value_name = "N")]
    pub train_size: Option<usize>,
    /// Evaluate on the first N test images only [default: all]
    #[arg(long, value_name = "N")]
    pub test_size: Option<usize>,
    /// Keep the training images in file order (a deterministic batch order for lockstep runs)
    #[arg(long)]
    pub no_shuffle: bool,
}

/// The device and threads of the commands that run the convnet.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// auto (CUDA when available), cpu, cuda or cuda:N [default: auto]
    #[arg(long)]
    pub device: Option<String>,
    /// CPU threads libtorch may use [default: libtorch's own choice]
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct ConvnetArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// SGD learning rate [default: 0.05]
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// SGD weight decay (L2) [default: 0.001]
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// On CUDA, run every step eagerly instead of replaying one captured CUDA graph
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// Deterministic kernels on CUDA (cuDNN and ATen), so a run repeats bit for bit (slower
    /// on CUDA; on the CPU it changes nothing)
    #[arg(long)]
    pub deterministic: bool,
}

#[derive(Args, Debug, Clone)]
pub struct MlpArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Layer sizes, input first: 784,...,10 [default: 784,30,10]
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    /// Learning rate [default: 3.0]
    #[arg(long, allow_negative_numbers = true)]
    pub eta: Option<f64>,
    /// Cost function [default: quadratic]
    #[arg(long, value_enum)]
    pub cost: Option<Cost>,
    /// L2 regularisation parameter (network2.py's lmbda): w *= 1 - eta*lambda/n [default: 0]
    #[arg(long = "lambda", allow_negative_numbers = true)]
    pub lambda: Option<f64>,
    /// Weight initialisation [default: normal]
    #[arg(long, value_enum)]
    pub init: Option<Init>,
    /// Train with the textbook Network (src/mlp/network.rs) instead of the fast kernels: the
    /// same numbers bit for bit, many times slower
    #[arg(long)]
    pub reference: bool,
}

#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Which network the weights are for [default: told from the tensor names]
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// Weights to evaluate (ours or PyTorch's: safetensors, or torch.save's .pt/.pth)
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    #[arg(long, env = "NNMNIST_DATA_DIR", value_name = "DIR", help = DATA_DIR_HELP)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Append the result as one JSON object to FILE
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Evaluate on the first N test images only
    #[arg(long, value_name = "N")]
    pub test_size: Option<usize>,
    /// Print the confusion matrix (rows the true digit, columns the prediction) with each
    /// digit's accuracy
    #[arg(long)]
    pub confusion: bool,
    /// List the first N misclassified test images (index, label, prediction, probability)
    #[arg(long, value_name = "N")]
    pub errors: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct ShowArgs {
    /// Index of the test image (0-9999)
    pub index: usize,
    /// Weights to classify it with (ours or PyTorch's)
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Which network the weights are for [default: told from the tensor names]
    #[arg(long, value_enum, requires = "weights")]
    pub model: Option<ModelKind>,
    #[arg(long, env = "NNMNIST_DATA_DIR", value_name = "DIR", help = DATA_DIR_HELP)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// Images of one handwritten digit each: PNG, JPEG, PGM or PPM, any size, grey or colour
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Weights to read them with, convnet or MLP (told by their tensor names; ours or
    /// PyTorch's: safetensors, or torch.save's .pt/.pth); repeatable
    #[arg(long, value_name = "FILE")]
    pub weights: Vec<PathBuf>,
    /// Output: text (a table per image) or json (one object per line for each image and
    /// network: image, model, weights, digit, probabilities)
    #[arg(long, value_enum, default_value = "text")]
    pub format: crate::cmd::predict::PredictFormat,
    /// Draw each 28x28 input as the networks see it (as `nnmnist show` does), with a bar
    /// chart per network
    #[arg(long)]
    pub show: bool,
    /// Write each 28x28 input as a PNG into DIR (an existing directory), as NAME.28x28.png
    #[arg(long, value_name = "DIR")]
    pub save_input: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Which network [default: told from the tensor names of --weights]
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    /// The weights to start from (ours or PyTorch's)
    #[arg(long, value_name = "FILE")]
    pub weights: PathBuf,
    /// Where to write the tensors (safetensors)
    #[arg(long, value_name = "FILE.safetensors")]
    pub out: PathBuf,
    /// The batch: this many training images [default: convnet 64, mlp 10]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// ... starting at this index of the training set, in file order
    #[arg(long, default_value_t = 0)]
    pub batch_start: usize,
    #[arg(long, env = "NNMNIST_DATA_DIR", value_name = "DIR", help = DATA_DIR_HELP)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Each network's step: the flags of the one traced apply
    #[command(flatten)]
    pub step: StepFlags,
}

#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// The file checked (safetensors, or torch.save's .pt/.pth)
    pub a: PathBuf,
    /// The reference, the expected values (the tolerance scales with them)
    pub b: PathBuf,
    /// Relative tolerance for every dtype [default: torch.testing's for the dtype]
    #[arg(long, allow_negative_numbers = true)]
    pub rtol: Option<f64>,
    /// Absolute tolerance for every dtype [default: torch.testing's for the dtype]
    #[arg(long, allow_negative_numbers = true)]
    pub atol: Option<f64>,
    /// Bit for bit: every element's bytes equal
    #[arg(long)]
    pub exact: bool,
    /// Row order: file (the order a file records, e.g. a trace's causal order, else A's)
    /// or name
    #[arg(long, value_enum, default_value = "file")]
    pub sort: crate::cmd::diff::SortOrder,
    /// Compare only the tensors whose name matches PATTERN (`*`, `?`, `[...]`; repeatable)
    #[arg(long, value_name = "PATTERN")]
    pub only: Vec<String>,
    /// Output: table (for people) or json (one object per row, then a summary, for scripts)
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::cmd::diff::OutputFormat,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The address to listen on; another than 127.0.0.1 makes the page reachable from other
    /// machines
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port; 0 picks a free one
    #[arg(long, default_value_t = 8028)]
    pub port: u16,
    /// Weights to serve (repeatable; convnet or MLP, told by their tensor names; ours or
    /// PyTorch's) [default: both networks trained for one epoch first]
    #[arg(long, value_name = "FILE")]
    pub weights: Vec<PathBuf>,
    /// The seed of that training [default: 0]
    #[arg(long, conflicts_with = "weights")]
    pub seed: Option<u64>,
    /// Also run the same weights in PyTorch (the reference models, in .venv) and show, for
    /// each network, PyTorch's digit and the largest difference of the two sides' logits
    #[arg(long)]
    pub pytorch: bool,
    #[arg(long, env = "NNMNIST_DATA_DIR", value_name = "DIR", help = DATA_DIR_HELP)]
    pub data_dir: Option<PathBuf>,
}
