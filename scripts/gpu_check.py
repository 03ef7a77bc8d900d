#!/usr/bin/env python3
"""GPU checks and benchmark of the convnet's CUDA path (issues 5 and 12), one run, PASS or FAIL.

Runs on a machine with a CUDA GPU and PyTorch 2.11 (for example the lent H100/H200, with
the binary built elsewhere and carried over). In one run it measures:
  nnmnist --device cuda (graph)     train seconds per epoch, 20-epoch wall time, accuracy
  nnmnist --device cuda --no-cuda-graph (eager)
  PyTorch eager, data held as tensors          (scripts/reference/nn_convnet.py)
  PyTorch, whole step as one CUDA graph        (nn_convnet.py --cuda-graph)
  nn_convnet.py as written (DataLoader + per-sample transform)
and checks: CUDA is seen; graph and eager agree on the first batch's loss (same weights,
same batch) and after one epoch; train part of an epoch <= 0.2 s; a 20-epoch run end to end
(start-up included) <= 6 s with final accuracy in 98.7-99.0%; and reports the speed ratio
against PyTorch's own CUDA graph, eager PyTorch and nn_convnet.py as written (2 epochs).

    python3 scripts/gpu_check.py [--binary target/release/nnmnist] [--quick]

Exit status 0 when every check passes. Epoch 1 includes warm-up and capture, so train
speed is the median of epochs 2..N.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lib_env():
    """LD_LIBRARY_PATH with torch/lib and nvidia/cu13/lib, for a binary built on another machine."""
    import torch

    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    site = os.path.dirname(os.path.dirname(torch.__file__))
    # The CUDA runtime the shim links: nvidia/cu13/lib (CUDA 13 wheels) or
    # nvidia/cuda_runtime/lib (CUDA 12 wheels), whichever this torch has.
    dirs = [torch_lib] + [d for d in (os.path.join(site, "nvidia", "cu13", "lib"),
                                      os.path.join(site, "nvidia", "cuda_runtime", "lib")) if os.path.isdir(d)]
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(d for d in dirs + [env.get("LD_LIBRARY_PATH", "")] if d)
    return env


def run(cmd, env=None):
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc, wall


def metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def first_loss(stdout):
    for line in stdout.splitlines():
        if line.startswith("loss:"):
            return float(line.split()[1])
    return None


def speed(records):
    tail = [r["train_seconds"] for r in records[1:]] or [records[0]["train_seconds"]]
    return statistics.median(tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "nnmnist"))
    ap.add_argument("--quick", action="store_true", help="5 epochs instead of 20 for the full run")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    epochs = 5 if args.quick else 20
    env = lib_env()
    import torch
    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(f"gpu_check: {time.strftime('%Y-%m-%d')}, {card}, torch {torch.__version__}, binary {args.binary}")
    tmp = tempfile.mkdtemp(prefix="nnmnist-gpu-")
    checks, rows, failed_runs = [], [], 0

    def nnmnist(name, extra, n_epochs):
        m = os.path.join(tmp, name + ".jsonl")
        proc, wall = run([args.binary, "convnet", "--device", "cuda", "--epochs", str(n_epochs),
                          "--seed", str(args.seed), "--metrics", m] + extra, env)
        return proc, wall, (metrics(m) if proc.returncode == 0 else None)

    def reference(name, extra, n_epochs):
        m = os.path.join(tmp, name + ".jsonl")
        proc, wall = run([sys.executable, "scripts/reference/nn_convnet.py", "--device", "cuda",
                          "--epochs", str(n_epochs), "--seed", str(args.seed), "--metrics", m] + extra)
        return proc, wall, (metrics(m) if proc.returncode == 0 else None)

    graph = nnmnist("graph", [], epochs)
    eager = nnmnist("eager", ["--no-cuda-graph"], 3)
    torch_eager = reference("torch_eager", [], 3)
    torch_graph = reference("torch_graph", ["--cuda-graph"], 3)
    torch_loader = reference("torch_dataloader", ["--loader", "dataloader"], 2)

    for name, (proc, wall, recs) in [("nnmnist graph", graph), ("nnmnist eager", eager),
                                     ("PyTorch eager, tensors", torch_eager),
                                     ("PyTorch CUDA graph", torch_graph),
                                     ("nn_convnet.py as written", torch_loader)]:
        if recs is None:
            failed_runs += 1
            rows.append((name, None, wall, None))
        else:
            rows.append((name, speed(recs), wall, recs[-1]["test_accuracy"]))

    print(f"{'implementation':28} {'train s/epoch':>14} {'wall s':>8} {'final acc':>10}")
    for name, s, wall, acc in rows:
        s_txt = f"{s:.3f}" if s is not None else "failed"
        a_txt = f"{100 * acc:.2f}%" if acc is not None else "-"
        print(f"{name:28} {s_txt:>14} {wall:8.1f} {a_txt:>10}")

    def check(name, ok, detail):
        checks.append(ok)
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")

    gp, gwall, grec = graph
    ep, _, erec = eager
    check("CUDA seen by nnmnist", gp.returncode == 0 and "Using cuda device" in gp.stdout,
          (gp.stdout.splitlines() or ["no output"])[0])
    check("graph captured (no fallback warning)", "capture failed" not in gp.stderr,
          next((l for l in gp.stderr.splitlines() if "capture" in l), "no warning"))
    if grec and erec:
        l1, l2 = first_loss(gp.stdout), first_loss(ep.stdout)
        check("first batch loss, graph vs eager", l1 is not None and l2 is not None and abs(l1 - l2) <= 1e-5,
              f"{l1} vs {l2}")
        a1, a2 = grec[0]["test_accuracy"], erec[0]["test_accuracy"]
        t1, t2 = grec[0]["test_loss"], erec[0]["test_loss"]
        check("epoch 1, graph vs eager", abs(a1 - a2) <= 0.005 and abs(t1 - t2) <= 0.05 * t2,
              f"accuracy {a1:.4f} vs {a2:.4f}, loss {t1:.6f} vs {t2:.6f}")
        s = speed(grec)
        check("train part of an epoch <= 0.2 s", s <= 0.2, f"{s:.3f} s")
        if not args.quick:
            acc = grec[-1]["test_accuracy"]
            check(f"{epochs}-epoch run end to end <= 6 s", gwall <= 6.0, f"{gwall:.2f} s")
            check("final accuracy in 98.7-99.0%", 0.987 <= acc <= 0.990, f"{100 * acc:.2f}%")
        ratios = {name: other / s for name, other, _, _ in rows[1:] if other}
        for name, r in ratios.items():
            print(f"      speed-up of nnmnist graph over {name}: {r:.1f}x")
        loader = ratios.get("nn_convnet.py as written")
        check(">= 20x faster than nn_convnet.py as written", loader is not None and loader >= 20,
              f"{loader:.1f}x" if loader else "not measured")
    print(f"\n{sum(checks)} passed, {len(checks) - sum(checks)} failed")
    sys.exit(0 if all(checks) and failed_runs == 0 else 1)


if __name__ == "__main__":
    main()
