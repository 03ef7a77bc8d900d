"""What every part of scripts/compare shares: where things are, the sides' names, the
commands of the reference scripts and their shared helpers (scripts.reference.common)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SIDES = ("nnmnist", "pytorch")
LABEL = {"nnmnist": "Rust", "pytorch": "PyTorch", "pytorch-dataloader": "PyTorch DataLoader",
         "pytorch-cudagraph": "PyTorch CUDA graph"}


def reference(name):
    """The command of the reference script scripts.reference.NAME (every run starts in ROOT,
    where `python -m` finds the package)."""
    return [PY, "-m", f"scripts.reference.{name}"]


def rel(path):
    r = os.path.relpath(path, os.getcwd())
    return path if r.startswith("..") else r


def models(a):
    """The models a run compares, in report order."""
    return ["convnet", "mlp"] if a.model == "both" else [a.model]


def reference_common():
    """scripts.reference.common, imported on first use rather than at start-up: it needs
    numpy, whose absence the set-up check reports with its fix instead of a traceback."""
    from ..reference import common
    return common
