"""The set-up checks: what must be in place before anything runs (packages, the binary and
its options, the data, the reference scripts), each problem with the command that fixes it."""
import os
import subprocess
import sys

from .base import CONVNET_PY, MLP_PY, PY, ROOT, rel

DATA_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def check_setup(a):
    """Problems that stop everything, each with the command that fixes it; and warnings."""
    problems, warnings = [], []
    try:
        import matplotlib  # noqa: F401
        import numpy  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError as e:
        problems.append(f"{PY} lacks a package ({e.name}): run scripts/setup")
    r = subprocess.run([PY, "-c", "import torch"], capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"torch does not import in .venv: run scripts/setup ({r.stderr.strip().splitlines()[-1:]})")
    if not os.access(a.bin, os.X_OK):
        problems.append(f"{rel(a.bin)} is missing: run cargo build --release")
    else:
        newest = newest_source()
        if newest and os.path.getmtime(newest[1]) > os.path.getmtime(a.bin):
            warnings.append(f"{rel(a.bin)} is older than {rel(newest[1])}: run cargo build --release to compare the current code")
    if not os.path.isdir(a.data_dir):
        problems.append(f"data directory {a.data_dir} does not exist: run .venv/bin/python scripts/make_data.py "
                        "(it rebuilds data/), or pass --data-dir")
    for name in DATA_FILES if os.path.isdir(a.data_dir) else []:
        if not any(os.path.exists(os.path.join(a.data_dir, name + ext)) for ext in ("", ".gz")):
            problems.append(f"{os.path.join(a.data_dir, name)}(.gz) is missing: run .venv/bin/python scripts/make_data.py")
    if not os.path.exists(CONVNET_PY):
        problems.append(f"{rel(CONVNET_PY)} is missing (it belongs to the repository: git checkout it)")
    return problems, warnings


def newest_source():
    files = [os.path.join(ROOT, f) for f in ("Cargo.toml", "build.rs")]
    src = os.path.join(ROOT, "src")
    for d, _, names in os.walk(src):
        files += [os.path.join(d, n) for n in names]
    files = [f for f in files if os.path.exists(f)]
    if not files:
        return None
    f = max(files, key=os.path.getmtime)
    return os.path.getmtime(f), f


_help_cache = {}


def supported_flags(cmd):
    """The --flags a command's --help mentions (so options are passed only where they exist)."""
    key = tuple(cmd)
    if key not in _help_cache:
        r = subprocess.run(cmd + ["--help"], capture_output=True, text=True, cwd=ROOT)
        text = r.stdout + r.stderr if r.returncode == 0 else ""
        _help_cache[key] = {w.strip(",.[]=") .split("=")[0] for w in text.split() if w.startswith("--")}
    return _help_cache[key]


def setup_ok(problems, warnings):
    """Prints the warnings and the problems (each with its fix); True when there are no problems."""
    for w in warnings:
        print(f"scripts/compare: warning: {w}", file=sys.stderr)
    if problems:
        print("scripts/compare: the set-up is incomplete:", file=sys.stderr)
        for pr in problems:
            print(f"  - {pr}", file=sys.stderr)
    return not problems


def mlp_available(a):
    """(rust_ok, pytorch_ok, messages) for the MLP sides."""
    msgs = []
    rust = os.access(a.bin, os.X_OK) and "--metrics" in supported_flags([a.bin, "mlp"])
    if rust:
        r = subprocess.run([a.bin, "mlp", "--epochs", "1", "--train-size", "1", "--test-size", "1",
                            "--data-dir", a.data_dir], capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0 and "not wired" in (r.stderr + r.stdout):
            rust = False
    if not rust:
        msgs.append("the Rust MLP side is skipped: `nnmnist mlp` does not run yet in this build")
    torch_side = os.path.exists(MLP_PY)
    if not torch_side:
        msgs.append(f"the PyTorch MLP side is skipped: {rel(MLP_PY)} does not exist yet")
    return rust, torch_side, msgs
