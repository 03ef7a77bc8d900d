"""Runs nnmnist (Rust) and the PyTorch reference side by side, and compares them.

Run it through scripts/compare (which runs .venv/bin/python -m scripts.compare, from any
directory). Modes:
  (default)     convnet 20 epochs + MLP 30 epochs, one seed
  --quick       convnet 1 epoch + MLP 3 epochs
  --lockstep    both sides start from the same weights file (written by PyTorch) and follow the
                same batch order (the shared shuffle contract; --no-shuffle for data order);
                reports the largest parameter difference after the run (both --save files),
                per-epoch test-loss agreement in significant digits, and whether the two
                stdouts are identical. Default 1 convnet epoch, 3 MLP epochs.
  --seeds N     N seeds per side (seed, seed+1, ...): min/mean/max of the final accuracy and loss
Every mode but --layers reports, per seed, how far the two sides agree: the convnet's final
result to the last bit; the MLP's epochs with the same correct count and the relative test-cost
difference as it grows (both sides draw the same initial weights and batches from the seed,
then differ by float64 rounding).
  --layers      where do the two part? From the same weights (--weights F, else drawn: the
                convnet's by nn_convnet --epochs 0 --seed S, the MLP's as --lockstep draws
                them) and one batch (training images [--batch-start, +--batch-size) in file
                order), each side runs forward, loss, backward and one SGD step and writes every
                intermediate tensor (`nnmnist trace`, nn_convnet / nn_torch --trace).
                The table is `nnmnist diff RUST_TRACE PYTORCH_TRACE` (docs/diff.md): one row
                per tensor, max absolute and relative difference, mean and median absolute
                difference, and the number of elements outside torch.testing.assert_close's
                default tolerance (|rust - pytorch| > atol + rtol*|pytorch|; float32 rtol
                1.3e-6 atol 1e-5, float64 rtol 1e-7 atol 1e-7; NaN equals NaN only at the same
                place; a tensor only one side wrote, or of another shape, is a difference).
                Rows in causal order: layer outputs, loss, gradients from the last layer back,
                parameters after the step; the last line is `first divergence: none` or
                `first divergence: <first row that differs>`. Exit 0 when every row is within
                tolerance, else 1. Defaults: --model convnet, --device cpu,
                --threads 1 on both sides (libtorch's reductions depend on the thread count).
                --rust-weights F2 gives the Rust side other weights than the PyTorch side, to
                see the report catch a difference (a perturbed model.7.weight: model.7).
The reference scripts are the modules of scripts.reference: nn_convnet (the convnet),
nn_torch (the MLP), bench_convnet (the speed anchors).
Every mode but --layers also times one epoch of nn_convnet.py as written (DataLoader +
per-sample ToTensor: bench_convnet --mode dataloader) for the speed section, and on CUDA
PyTorch's whole step as one CUDA graph (--mode cuda-graph); --no-dataloader skips both.
--deterministic: both convnet sides run with deterministic cuDNN/cuBLAS/algorithms and
per-tensor SGD (nn_convnet --deterministic, nnmnist convnet/trace --deterministic).

What it writes under --out (default target/compare/): each run's metrics (JSON lines), stdout,
stderr and weights; report.txt (what it prints); compare.png (or --plot-format svg); with
--layers each side's trace (<model>_<side>_seed<S>_trace.safetensors) and report_layers.txt.
Runs go one after the other (never in parallel), so the timings do not disturb each other.
Exit status: 0 when every run succeeded, 1 when one failed (the others are still reported),
2 when the set-up is incomplete (it says which command fixes it).
"""
import sys

if __name__ == "__main__" and not __package__:
    sys.exit("scripts/compare.py is a module of the package scripts: run scripts/compare, or "
             ".venv/bin/python -m scripts.compare from the repository root")

from .comparison.cli import main  # noqa: E402

# The work is done by the package scripts.comparison, one module per job (its __init__.py lists them).
if __name__ == "__main__":
    sys.exit(main(__doc__))
