"""The command line: the options and their defaults per mode, then each mode from set-up
check to report."""
import argparse
import os
import sys
import time

from . import layers
from .base import ROOT, models, rel
from .checks import check_setup, setup_ok
from .plot import plot
from .runs import busy_notes, plan_and_run
from .tables import report


def parse_args(description, argv=None):
    """The options, checked and resolved per mode; `description` is scripts/compare.py's
    docstring (the --help text)."""
    p = argparse.ArgumentParser(prog="scripts/compare", description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="convnet 1 epoch, MLP 3 epochs")
    mode.add_argument("--lockstep", action="store_true", help="same initial weights and batch order on both sides")
    mode.add_argument("--layers", action="store_true",
                      help="one step from the same weights on one batch: where do the two part? (see above)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds per side (distribution mode when > 1)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--model", choices=["convnet", "mlp", "both"], help="default both; --layers: convnet")
    p.add_argument("--epochs", type=int, help="convnet epochs (default 20; --quick and --lockstep 1)")
    p.add_argument("--mlp-epochs", type=int, help="MLP epochs (default 30; --quick and --lockstep 3)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N, for the convnet on both sides (default auto; "
                   "--layers: cpu, for either model)")
    p.add_argument("--threads", type=int, help="CPU threads for both convnet sides and the MLP's PyTorch side (default: "
                   "libtorch's choice; --layers: 1, both sides of either model)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN/cuBLAS/algorithms and per-tensor SGD on both convnet sides")
    p.add_argument("--no-shuffle", action="store_true", help="batches in data order on both sides")
    p.add_argument("--dataloader-epochs", type=int, default=1,
                   help="epochs of nn_convnet.py as written (DataLoader) for the speed section; 0 skips it")
    p.add_argument("--no-dataloader", action="store_true", help="same as --dataloader-epochs 0")
    p.add_argument("--train-size", type=int, help="first N training images (both sides)")
    p.add_argument("--test-size", type=int, help="first N test images (both sides)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "nnmnist"), help="the nnmnist binary")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "compare"), help="output directory")
    p.add_argument("--plot-format", choices=["png", "svg"], default="png")
    lay = p.add_argument_group("--layers options")
    lay.add_argument("--weights", metavar="F", help="the weights both sides start from (default: drawn, see above)")
    lay.add_argument("--rust-weights", metavar="F2",
                     help="give the Rust side other weights than the PyTorch side, to see the report catch a difference")
    lay.add_argument("--batch-size", type=int, help="images in the batch (default 64 convnet, 10 MLP)")
    lay.add_argument("--batch-start", type=int, help="index of the batch's first training image (default 0)")
    lay.add_argument("--lr", type=float, help="convnet: SGD learning rate (default 0.05)")
    lay.add_argument("--weight-decay", type=float, help="convnet: SGD weight decay (default 0.001)")
    lay.add_argument("--eta", type=float, help="MLP: learning rate (default 3.0)")
    lay.add_argument("--lambda", dest="lmbda", metavar="LAMBDA", type=float, help="MLP: L2 regularization (default 0.0)")
    lay.add_argument("--cost", choices=["quadratic", "cross-entropy"], help="MLP: cost (default quadratic)")
    lay.add_argument("--train-size-n", type=int, help="MLP: n of the L2 factor 1 - eta*lambda/n (default 50000)")
    a = p.parse_args(argv)
    layer_opts = {"weights": None, "rust_weights": None, "batch_size": None, "batch_start": 0, "lr": 0.05,
                  "weight_decay": 0.001, "eta": 3.0, "lmbda": 0.0, "cost": "quadratic", "train_size_n": 50000}
    flag = lambda k: "--" + ("lambda" if k == "lmbda" else k.replace("_", "-"))  # noqa: E731
    if a.layers:
        if a.model == "both":
            p.error("--layers compares one model: --model convnet or --model mlp")
        a.model = a.model or "convnet"
        other = ["eta", "lmbda", "cost", "train_size_n"] if a.model == "convnet" else ["lr", "weight_decay"]
        given = [flag(k) for k in other if getattr(a, k) is not None] + \
            (["--deterministic"] if a.deterministic and a.model == "mlp" else [])
        if given:
            p.error(f"{', '.join(given)}: not an option of --layers --model {a.model}")
        for k, v in layer_opts.items():
            setattr(a, k, v if getattr(a, k) is None else getattr(a, k))
        a.device = a.device or "cpu"
        a.threads = 1 if a.threads is None else a.threads
        a.batch_size = (64 if a.model == "convnet" else 10) if a.batch_size is None else a.batch_size
        for k in ("batch_size", "threads", "train_size_n"):
            if getattr(a, k) < 1:
                p.error(f"{flag(k)} must be >= 1")
        if a.batch_start < 0:
            p.error("--batch-start must be >= 0")
    else:
        used = [flag(k) for k in layer_opts if getattr(a, k) is not None]
        if used:
            p.error(f"{', '.join(used)}: only with --layers")
        a.model = a.model or "both"
        a.device = a.device or "auto"
    if a.seeds < 1:
        p.error("--seeds must be >= 1")
    if a.layers and (a.seeds > 1 or a.epochs is not None or a.mlp_epochs is not None):
        p.error("--layers traces one step of one seed; leave out --seeds, --epochs and --mlp-epochs")
    if a.lockstep and a.seeds > 1:
        p.error("--lockstep compares one seed; leave out --seeds")
    short = a.quick or a.lockstep
    a.epochs = a.epochs if a.epochs is not None else (1 if short else 20)
    a.mlp_epochs = a.mlp_epochs if a.mlp_epochs is not None else (3 if short else 30)
    if a.epochs < 1 or a.mlp_epochs < 1:
        p.error("--epochs and --mlp-epochs must be >= 1")
    if a.no_dataloader or a.model == "mlp":
        a.dataloader_epochs = 0
    a.bin = os.path.abspath(a.bin)
    a.out = os.path.abspath(a.out)
    a.weights, a.rust_weights = (os.path.abspath(f) if f else f for f in (a.weights, a.rust_weights))
    a.data_dir = os.path.abspath(a.data_dir) if not os.path.isabs(a.data_dir) else a.data_dir
    return a


def main(description, argv=None):
    a = parse_args(description, argv)
    if a.layers:
        return layers.main(a)
    problems, warnings = check_setup(a)
    if not setup_ok(problems, warnings):
        return 2
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    runs, notes, lock = plan_and_run(a)
    seconds = time.perf_counter() - t0
    notes += busy_notes(runs, load_before)
    mode = "lockstep" if a.lockstep else "quick" if a.quick else f"{a.seeds} seeds" if a.seeds > 1 else "default"
    out = report(a, mode, runs, lock, notes, seconds)
    failed = [r for r in runs if not r.ok]
    title = f"nnmnist (Rust) vs PyTorch: {mode}, device {a.device}"
    try:
        png = plot(runs, models(a), os.path.join(a.out, f"compare.{a.plot_format}"), title)
        out.append(f"plot: {rel(png)}" if png else "plot: nothing to draw")
    except Exception as e:  # noqa: BLE001 - a failed plot must not hide the numbers
        out.append(f"plot: failed ({e})")
        failed.append(None)
    out.append(f"files: {rel(a.out)}/ (metrics *.jsonl, *.stdout, *.stderr, weights *.safetensors, report.txt)")
    text = "\n".join(out)
    print(text)
    with open(os.path.join(a.out, "report.txt"), "w") as f:
        f.write(text + "\n")
    if not any(r.records for r in runs):
        print("scripts/compare: nothing was compared", file=sys.stderr)
        return 1
    return 1 if failed else 0
