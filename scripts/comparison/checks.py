"""The set-up checks: what must be in place before anything runs (packages, the binary, the
data directory), each problem with the command that fixes it."""
import os
import subprocess
import sys

from .base import PY, ROOT, rel


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


def setup_ok(problems, warnings):
    """Prints the warnings and the problems (each with its fix); True when there are no problems."""
    for w in warnings:
        print(f"scripts/compare: warning: {w}", file=sys.stderr)
    if problems:
        print("scripts/compare: the set-up is incomplete:", file=sys.stderr)
        for pr in problems:
            print(f"  - {pr}", file=sys.stderr)
    return not problems

