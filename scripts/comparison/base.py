"""What every part of scripts/compare shares: where things are, the sides' names, and the
reference scripts' shared helpers (scripts/reference/common.py)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
REF = os.path.join(ROOT, "scripts", "reference")
CONVNET_PY = os.path.join(REF, "nn_convnet.py")
MLP_PY = os.path.join(REF, "nn_torch.py")
SIDES = ("nnmnist", "pytorch")
LABEL = {"nnmnist": "Rust", "pytorch": "PyTorch", "pytorch-dataloader": "PyTorch DataLoader",
         "pytorch-cudagraph": "PyTorch CUDA graph"}


def rel(path):
    r = os.path.relpath(path, os.getcwd())
    return path if r.startswith("..") else r


def models(a):
    """The models a run compares, in report order."""
    return ["convnet", "mlp"] if a.model == "both" else [a.model]


def reference_common():
    """scripts/reference/common.py, imported on first use rather than at start-up: it needs
    numpy, whose absence the set-up check reports with its fix instead of a traceback."""
    if REF not in sys.path:
        sys.path.insert(0, REF)
    import common
    return common
