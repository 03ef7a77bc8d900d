"""Runs nnmnist (Rust) and the PyTorch reference side by side, and compares them.

Run it through scripts/compare (which uses .venv/bin/python). Modes:
  (default)     convnet 20 epochs + MLP 30 epochs, one seed
  --quick       convnet 1 epoch + MLP 3 epochs
  --lockstep    both sides start from the same weights file (written by PyTorch) and follow the
                same batch order (the shared shuffle contract; --no-shuffle for data order);
                reports the largest parameter difference after the run (both --save files),
                per-epoch test-loss agreement in significant digits, and whether the two
                stdouts are identical. Default 1 convnet epoch, 3 MLP epochs.
  --seeds N     N seeds per side (seed, seed+1, ...): min/mean/max of the final accuracy and loss
  --layers      where do the two part? From the same weights (--weights F, else drawn: the
                convnet's by nn_convnet.py --epochs 0 --seed S, the MLP's as --lockstep draws
                them) and one batch (training images [--batch-start, +--batch-size) in file
                order), each side runs forward, loss, backward and one SGD step and writes every
                intermediate tensor (`nnmnist trace`, nn_convnet.py / nn_torch.py --trace).
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
Every mode but --layers also times one epoch of nn_convnet.py as written (DataLoader +
per-sample ToTensor) for the speed section (--no-dataloader skips it).
--deterministic: both convnet sides run with deterministic cuDNN/cuBLAS/algorithms and
per-tensor SGD (nn_convnet.py --deterministic, nnmnist convnet/trace --deterministic).

What it writes under --out (default target/compare/): each run's metrics (JSON lines), stdout,
stderr and weights; report.txt (what it prints); compare.png (or --plot-format svg); with
--layers each side's trace (<model>_<side>_seed<S>_trace.safetensors) and report_layers.txt.
Runs go one after the other (never in parallel), so the timings do not disturb each other.
Exit status: 0 when every run succeeded, 1 when one failed (the others are still reported),
2 when the set-up is incomplete (it says which command fixes it).
"""
import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
REF = os.path.join(ROOT, "scripts", "reference")
CONVNET_PY = os.path.join(REF, "nn_convnet.py")
MLP_PY = os.path.join(REF, "nn_torch.py")
DATA_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
SIDES = ("nnmnist", "pytorch")
LABEL = {"nnmnist": "Rust", "pytorch": "PyTorch", "pytorch-dataloader": "PyTorch DataLoader",
         "pytorch-cudagraph": "PyTorch CUDA graph"}


def rel(path):
    r = os.path.relpath(path, os.getcwd())
    return path if r.startswith("..") else r


# ------------------------------------------------------------------------------ set-up

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


# ------------------------------------------------------------------------------ runs

class Run:
    def __init__(self, model, impl, seed, cmd, out, tag=""):
        self.model, self.impl, self.seed, self.cmd = model, impl, seed, cmd
        stem = f"{model}_{impl}_seed{seed}{tag}"
        self.metrics = os.path.join(out, stem + ".jsonl")
        self.stdout = os.path.join(out, stem + ".stdout")
        self.stderr = os.path.join(out, stem + ".stderr")
        self.weights = os.path.join(out, stem + ".safetensors")
        self.records, self.rc, self.wall, self.error, self.others = [], None, None, None, None

    @property
    def ok(self):
        return self.rc == 0 and self.error is None

    def label(self):
        return f"{self.model} {LABEL.get(self.impl, self.impl)} seed {self.seed}"


def system_busy_seconds():
    """CPU seconds all CPUs have spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    busy = sum(v[:8]) - idle  # user nice system idle iowait irq softirq steal (guest is inside user)
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def execute(run):
    for f in (run.metrics, run.weights):
        if os.path.exists(f):
            os.remove(f)
    shown = " ".join(shlex.quote(rel(c) if os.path.isabs(c) else c) for c in run.cmd)
    print(f"[compare] {run.label()}: {shown}", file=sys.stderr, flush=True)
    busy0, child0 = system_busy_seconds(), children_cpu_seconds()
    t0 = time.perf_counter()
    try:
        with open(run.stdout, "w") as so, open(run.stderr, "w") as se:
            run.rc = subprocess.run(run.cmd, stdout=so, stderr=se, cwd=ROOT).returncode
    except OSError as e:
        run.rc, run.error = -1, str(e)
    run.wall = time.perf_counter() - t0
    busy1, child1 = system_busy_seconds(), children_cpu_seconds()
    if busy0 is not None and busy1 is not None and run.wall > 0:
        # CPU time the rest of the machine used while this run ran, as a share of all CPUs
        run.others = max(0.0, (busy1 - busy0) - (child1 - child0)) / (run.wall * (os.cpu_count() or 1))
    if os.path.exists(run.metrics):
        with open(run.metrics) as f:
            for line in f:
                if line.strip():
                    try:
                        run.records.append(json.loads(line))
                    except json.JSONDecodeError:
                        run.error = f"{rel(run.metrics)}: unreadable line"
    if run.rc != 0 and run.error is None:
        with open(run.stderr) as f:
            tail = [l.rstrip() for l in f.read().strip().splitlines()[-3:]]
        run.error = f"exit status {run.rc}: " + " | ".join(tail)
    status = "ok" if run.ok else f"FAILED ({run.error})"
    busy = f", other processes used {100 * run.others:.0f}% of the CPUs meanwhile" if run.others is not None else ""
    records = f", {len(run.records)} epoch record(s)" if os.path.exists(run.metrics) or not run.ok else ""
    print(f"[compare]   {status}, {run.wall:.1f} s{records}{busy}", file=sys.stderr, flush=True)
    return run


def convnet_cmd(a, impl, seed, epochs, run_out, extra=()):
    if impl == "nnmnist":
        cmd = [a.bin, "convnet"]
    else:
        cmd = [PY, CONVNET_PY]
    cmd += ["--epochs", str(epochs), "--seed", str(seed), "--device", a.device, "--data-dir", a.data_dir]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    if a.train_size:
        cmd += ["--train-size", str(a.train_size)]
    if a.test_size:
        cmd += ["--test-size", str(a.test_size)]
    if a.deterministic:
        cmd += ["--deterministic"]
    return cmd + list(extra)


def mlp_cmd(a, impl, seed, epochs, extra=()):
    base = [a.bin, "mlp"] if impl == "nnmnist" else [PY, MLP_PY]
    flags = supported_flags(base)
    cmd = base + ["--epochs", str(epochs), "--seed", str(seed), "--data-dir", a.data_dir]
    if impl == "pytorch" and "--device" in flags:
        cmd += ["--device", a.device]
    if a.train_size and "--train-size" in flags:
        cmd += ["--train-size", str(a.train_size)]
    if a.test_size and "--test-size" in flags:
        cmd += ["--test-size", str(a.test_size)]
    return cmd + list(extra)


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


# ------------------------------------------------------------------------------ shared initial weights

def draw_convnet_init(a, path):
    """PyTorch's default init of seed a.seed (nn_convnet.py --epochs 0 --save): the Run."""
    return execute(Run("convnet", "pytorch", a.seed, [PY, CONVNET_PY, "--epochs", "0", "--seed", str(a.seed),
                                                      "--device", "cpu", "--data-dir", a.data_dir,
                                                      "--test-size", "1", "--save", path], a.out, "_init"))


def draw_mlp_init(path, seed, sizes=(784, 30, 10)):
    """nn.py's init law (every weight and bias N(0, 1)), drawn here with numpy so that neither
    side's random stream is favoured; keys as both sides save them."""
    import numpy as np
    from safetensors.numpy import save_file
    rng = np.random.default_rng(seed)
    tensors = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        tensors[f"{2 * i}.weight"] = rng.standard_normal((n_out, n_in))
        tensors[f"{2 * i}.bias"] = rng.standard_normal(n_out)
    save_file(tensors, path)


# ------------------------------------------------------------------------------ plans

def plan_and_run(a):
    os.makedirs(a.out, exist_ok=True)
    runs, notes, lock = [], [], {}
    seeds = list(range(a.seed, a.seed + a.seeds))
    models = ["convnet", "mlp"] if a.model == "both" else [a.model]

    if "convnet" in models:
        extra_both = ["--no-shuffle"] if a.no_shuffle else []
        init = None
        if a.lockstep:
            init = os.path.join(a.out, f"convnet_init_seed{a.seed}.safetensors")
            r = draw_convnet_init(a, init)
            if not r.ok:
                notes.append(f"convnet lockstep: writing the shared initial weights failed ({r.error})")
                runs.append(r)
                init = None
        for seed in seeds:
            for impl in SIDES:
                run = Run("convnet", impl, seed, None, a.out)
                extra = extra_both + ["--metrics", run.metrics, "--save", run.weights]
                if init:
                    extra += ["--init-from", init]
                if impl == "pytorch":
                    extra += ["--loader", "tensors"]
                run.cmd = convnet_cmd(a, impl, seed, a.epochs, a.out, extra)
                runs.append(execute(run))
        if a.dataloader_epochs > 0:
            run = Run("convnet", "pytorch-dataloader", a.seed, None, a.out)
            run.cmd = convnet_cmd(a, "pytorch", a.seed, a.dataloader_epochs, a.out,
                                  ["--loader", "dataloader", "--metrics", run.metrics])
            runs.append(execute(run))
        on_cuda = any(rec["device"].startswith("cuda") for r in runs if r.model == "convnet" for rec in r.records)
        if on_cuda and a.dataloader_epochs > 0:
            # on CUDA nnmnist replays one captured CUDA graph per step: time PyTorch doing the same
            run = Run("convnet", "pytorch-cudagraph", a.seed, None, a.out)
            run.cmd = convnet_cmd(a, "pytorch", a.seed, a.dataloader_epochs, a.out,
                                  ["--loader", "tensors", "--cuda-graph", "--metrics", run.metrics])
            runs.append(execute(run))
        if a.lockstep and init:
            lock["convnet"] = (init, [r for r in runs if r.model == "convnet" and r.impl in SIDES and r.seed == a.seed])

    if "mlp" in models:
        rust_ok, torch_ok, msgs = mlp_available(a)
        notes += msgs
        init, extra_both = None, (["--no-shuffle"] if (a.no_shuffle or a.lockstep) else [])
        if a.lockstep and rust_ok and torch_ok:
            init = os.path.join(a.out, f"mlp_init_seed{a.seed}.safetensors")
            draw_mlp_init(init, a.seed)
        for seed in seeds:
            for impl, ok in (("nnmnist", rust_ok), ("pytorch", torch_ok)):
                if not ok:
                    continue
                run = Run("mlp", impl, seed, None, a.out)
                extra = extra_both + ["--metrics", run.metrics, "--save", run.weights]
                if init:
                    extra += ["--init-from", init]
                run.cmd = mlp_cmd(a, impl, seed, a.mlp_epochs, extra)
                runs.append(execute(run))
        if a.lockstep:
            lock["mlp"] = (init, [r for r in runs if r.model == "mlp" and r.impl in SIDES and r.seed == a.seed])
    return runs, notes, lock


# ------------------------------------------------------------------------------ report

def fmt(v, spec, missing="-"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        width = "".join(c for c in spec.split(".")[0] if c.isdigit())
        return missing.rjust(int(width) if width else 0)
    return format(v, spec)


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def by_epoch(runs, model, impl):
    """{epoch: [record per seed]} over the successful-or-partial runs of one side."""
    out = {}
    for r in runs:
        if r.model == model and r.impl == impl:
            for rec in r.records:
                out.setdefault(rec["epoch"], []).append(rec)
    return out


def sub(a, b):
    return None if a is None or b is None else a - b


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def epoch_table(runs, model, nseeds):
    rs, pt = by_epoch(runs, model, "nnmnist"), by_epoch(runs, model, "pytorch")
    epochs = sorted(set(rs) | set(pt))
    if not epochs:
        return [f"  (no epoch records for the {model})"]
    head = (f"{'epoch':>5}  {'Rust acc':>9} {'PT acc':>9} {'diff':>7}  {'Rust loss':>10} {'PT loss':>10} {'diff':>9}"
            f"  {'Rust s/ep':>9} {'PT s/ep':>8} {'ratio':>6}")
    lines = [head, "-" * len(head)]
    for e in epochs:
        ra = mean([100 * x["test_accuracy"] for x in rs.get(e, [])])
        pa = mean([100 * x["test_accuracy"] for x in pt.get(e, [])])
        rl = mean([x["test_loss"] for x in rs.get(e, [])])
        pl = mean([x["test_loss"] for x in pt.get(e, [])])
        rsec = mean([x["train_seconds"] for x in rs.get(e, [])])
        psec = mean([x["train_seconds"] for x in pt.get(e, [])])
        lines.append(f"{e:>5}  {fmt(ra, '9.2f')} {fmt(pa, '9.2f')} {fmt(sub(ra, pa), '+7.2f')}  "
                     f"{fmt(rl, '10.6f')} {fmt(pl, '10.6f')} {fmt(sub(rl, pl), '+9.1e')}  "
                     f"{fmt(rsec, '9.2f')} {fmt(psec, '8.2f')} {fmt(ratio(rsec, psec), '6.2f')}")
    if nseeds > 1:
        lines.append(f"(accuracy in %, diff in percentage points; each cell is the mean over {nseeds} seeds)")
    else:
        lines.append("(accuracy in %, diff in percentage points; ratio = Rust s/epoch / PyTorch s/epoch, train loop only)")
    return lines


def final_summary(runs, model):
    lines = []
    for impl in SIDES:
        finals = [r.records[-1] for r in runs if r.model == model and r.impl == impl and r.records]
        if not finals:
            continue
        acc = [100 * f["test_accuracy"] for f in finals]
        loss = [f["test_loss"] for f in finals]
        lines.append(f"  {LABEL[impl]:>8}, {len(finals)} seed(s), after epoch {finals[0]['epoch']}: accuracy "
                     f"min {min(acc):.2f} / mean {statistics.mean(acc):.2f} / max {max(acc):.2f} %, test loss "
                     f"min {min(loss):.6f} / mean {statistics.mean(loss):.6f} / max {max(loss):.6f}")
    pairs = [(r.records[-1], p.records[-1]) for r in runs for p in runs
             if r.model == model == p.model and r.impl == "nnmnist" and p.impl == "pytorch" and r.seed == p.seed
             and r.records and p.records and r.records[-1]["epoch"] == p.records[-1]["epoch"]]
    if pairs and model == "convnet":  # the MLP sides draw from different random streams by design
        same = sum(1 for x, y in pairs if x["test_loss"] == y["test_loss"] and x["test_correct"] == y["test_correct"])
        worst = max(abs(x["test_loss"] - y["test_loss"]) for x, y in pairs)
        lines.append(f"  same seed, same final result on both sides (correct count and test loss to the last bit): "
                     f"{same} of {len(pairs)} seed(s); largest final test-loss difference {worst:.1e}")
    return lines


def median_train_seconds(runs, model, impl):
    xs = [rec["train_seconds"] for r in runs if r.model == model and r.impl == impl for rec in r.records]
    return (statistics.median(xs), len(xs)) if xs else (None, 0)


def speed_section(runs, model):
    rust, n_r = median_train_seconds(runs, model, "nnmnist")
    pt, n_p = median_train_seconds(runs, model, "pytorch")
    lines = []
    if model == "convnet":
        dl, n_d = median_train_seconds(runs, model, "pytorch-dataloader")
        lines.append(f"  train loop, median seconds per epoch: Rust {fmt(rust, '.3f')} ({n_r} epochs), "
                     f"PyTorch eager with tensors {fmt(pt, '.3f')} ({n_p}), "
                     f"nn_convnet.py-style DataLoader {fmt(dl, '.3f')} ({n_d})")
        if rust and pt:
            lines.append(f"  Rust / PyTorch tensors:    {rust / pt:.2f}x the time ({pt / rust:.2f}x as fast)")
        if rust and dl:
            lines.append(f"  Rust / PyTorch DataLoader: {rust / dl:.2f}x the time ({dl / rust:.2f}x as fast)")
        cg, n_c = median_train_seconds(runs, model, "pytorch-cudagraph")
        if cg:
            lines.append(f"  PyTorch with the train step as one CUDA graph: {cg:.3f} s ({n_c} epochs); "
                         f"Rust / that: {fmt(ratio(rust, cg), '.2f')}x the time")
    else:
        lines.append(f"  train loop, median seconds per epoch: Rust {fmt(rust, '.3f')} ({n_r} epochs), "
                     f"PyTorch {fmt(pt, '.3f')} ({n_p})")
        if rust and pt:
            lines.append(f"  Rust / PyTorch: {rust / pt:.2f}x the time ({pt / rust:.2f}x as fast)")
    return lines


def sig_digits(a, b):
    if a == b:
        return "identical"
    if b == 0:
        return "-"
    d = -math.log10(abs(a - b) / abs(b))
    return f"{max(0, math.floor(d))}"


def lockstep_section(model, init, pair):
    lines = []
    rust = next((r for r in pair if r.impl == "nnmnist"), None)
    pt = next((r for r in pair if r.impl == "pytorch"), None)
    lines.append(f"  shared initial weights: {rel(init) if init else '(none: same seed only)'}"
                 + (" (N(0, 1) drawn by scripts/compare with numpy)" if init and model == "mlp" else
                    " (written by nn_convnet.py --epochs 0 --save)" if init else ""))
    if not (rust and pt and rust.ok and pt.ok):
        lines.append("  (one side failed: no lockstep comparison)")
        return lines, False
    from safetensors.numpy import load_file
    try:
        wr, wp = load_file(rust.weights), load_file(pt.weights)
    except Exception as e:  # noqa: BLE001
        lines.append(f"  cannot load the saved weights ({e})")
        return lines, False
    worst, worst_name = 0.0, None
    for k in sorted(set(wr) | set(wp)):
        if k not in wr or k not in wp:
            lines.append(f"  {k}: only in {'Rust' if k in wr else 'PyTorch'}'s file")
            continue
        if wr[k].shape != wp[k].shape:
            lines.append(f"  {k}: shapes differ {wr[k].shape} vs {wp[k].shape}")
            continue
        d = float(abs(wr[k].astype("float64") - wp[k].astype("float64")).max()) if wr[k].size else 0.0
        lines.append(f"  {k:<20} max abs diff {d:.3e}")
        if d >= worst:
            worst, worst_name = d, k
    lines.append(f"  largest parameter difference after {len(rust.records)} epoch(s): {worst:.3e} "
                 f"({'every tensor bit-identical' if worst == 0 else worst_name})")
    lines.append(f"  {'epoch':>5} {'Rust test loss':>18} {'PyTorch test loss':>18} {'|diff|':>9} {'sig. digits':>11}"
                 f" {'correct R/PT':>13}")
    for rr, pp in zip(rust.records, pt.records):
        lines.append(f"  {rr['epoch']:>5} {rr['test_loss']:>18.12f} {pp['test_loss']:>18.12f} "
                     f"{abs(rr['test_loss'] - pp['test_loss']):>9.1e} {sig_digits(rr['test_loss'], pp['test_loss']):>11}"
                     f" {rr['test_correct']:>6}/{pp['test_correct']:<6}")
    with open(rust.stdout) as f1, open(pt.stdout) as f2:
        l1, l2 = f1.read().splitlines(), f2.read().splitlines()
    diff = [(i, x, y) for i, (x, y) in enumerate(zip(l1, l2)) if x != y]
    if not diff and len(l1) == len(l2):
        lines.append(f"  stdout: identical ({len(l1)} lines)")
    else:
        lines.append(f"  stdout: {len(diff)} of {max(len(l1), len(l2))} lines differ"
                     + (f"; first at line {diff[0][0] + 1}: Rust {diff[0][1]!r} vs PyTorch {diff[0][2]!r}" if diff else
                        f"; lengths {len(l1)} vs {len(l2)}"))
    return lines, True


def plot(runs, models, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    models = [m for m in models if any(r.model == m and r.records for r in runs)]
    if not models:
        return None
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 3.6 * len(models)), squeeze=False)
    colors = {"nnmnist": "tab:orange", "pytorch": "tab:blue"}
    for row, model in enumerate(models):
        ax_acc, ax_loss = axes[row]
        for impl in ("pytorch", "nnmnist"):  # Rust drawn on top: hollow markers over PyTorch's
            side = [r for r in runs if r.model == model and r.impl == impl and r.records]
            for i, r in enumerate(side):
                ep = [x["epoch"] for x in r.records]
                kw = dict(color=colors[impl], alpha=0.9 if len(side) == 1 else 0.6, lw=1.6,
                          ls="-" if impl == "pytorch" else "--", marker="o" if len(ep) < 6 else None,
                          ms=4 if impl == "pytorch" else 9, mfc=colors[impl] if impl == "pytorch" else "none",
                          label=f"{LABEL[impl]}" + (f" ({len(side)} seeds)" if len(side) > 1 else "") if i == 0 else None)
                ax_acc.plot(ep, [100 * x["test_accuracy"] for x in r.records], **kw)
                ax_loss.plot(ep, [x["test_loss"] for x in r.records], **kw)
        ax_acc.set_title(f"{model}: test accuracy")
        ax_acc.set_ylabel("%")
        ax_loss.set_title(f"{model}: test loss" + (" (mean batch cross-entropy)" if model == "convnet" else ""))
        for ax in (ax_acc, ax_loss):
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ layers
# The trace-file contract, the same for `nnmnist trace` and the references' --trace (see
# trace_cmd for the options both get). One safetensors file, CPU tensors:
#   batch: training images [--batch-start, --batch-start + --batch-size) in file order, pixels
#          u8/255 (float32 convnet, float64 MLP), labels from the training labels
#   convnet (float32): model.0 ... model.9 each nn.Sequential layer's output (train mode);
#          loss (1) CrossEntropyLoss mean; grad.<key> each state_dict key's gradient after
#          backward; after.<key> each parameter after one SGD step (--lr, --weight-decay,
#          no momentum)
#   MLP (float64): 0, 1, 2, 3, ... each Sequential index's output (0 = z of layer 0, 1 = its
#          clipped sigmoid, ...); loss (1) the mean cost over the batch; grad.<key> the summed
#          cost's gradient / m; after.<key> after nn.py's step w <- (1 - eta*(lambda/n)) w -
#          (eta/m) nabla_w, b <- b - (eta/m) nabla_b, n = --train-size-n
# Both sides write their tensors in causal order and record it in the header ("order"):
# outputs by layer, loss, gradients last layer first (bias before weight), after.* in
# state_dict order. `nnmnist diff` keeps that order, so its first row outside tolerance is
# where the two sides part.


def mlp_sizes(path):
    """"784,30,10" from the shapes of an MLP weights file's 0.weight, 2.weight, ... (None if unreadable)."""
    try:
        from safetensors import safe_open
        with safe_open(path, "np") as f:
            shapes = {k: f.get_slice(k).get_shape() for k in f.keys()}
    except Exception:  # noqa: BLE001 - the sides say what is wrong with the file
        return None
    sizes, i = [], 0
    while len(shapes.get(f"{2 * i}.weight", ())) == 2:
        n_out, n_in = shapes[f"{2 * i}.weight"]
        sizes, i = (sizes or [n_in]) + [n_out], i + 1
    return ",".join(map(str, sizes)) if sizes else None


def trace_cmd(a, impl, weights, out):
    """The command that writes one side's trace of the batch (the --layers tensor-file contract)."""
    both = ["--batch-size", str(a.batch_size), "--batch-start", str(a.batch_start), "--data-dir", a.data_dir]
    if a.model == "convnet":
        both += ["--device", a.device, "--threads", str(a.threads), "--lr", repr(a.lr), "--weight-decay", repr(a.weight_decay)]
        both += ["--deterministic"] if a.deterministic else []
    else:
        # The MLP runs on the CPU on one thread: nnmnist refuses --device/--threads for it.
        both += ["--eta", repr(a.eta), "--lambda", repr(a.lmbda), "--cost", a.cost, "--train-size-n", str(a.train_size_n)]
        both += ["--threads", str(a.threads)] if impl != "nnmnist" else []
    if impl == "nnmnist":
        return [a.bin, "trace", "--model", a.model, "--weights", weights, "--out", out] + both
    sizes = mlp_sizes(weights) if a.model == "mlp" else None
    return ([PY, CONVNET_PY if a.model == "convnet" else MLP_PY, "--trace", out, "--init-from", weights] + both
            + (["--sizes", sizes] if sizes else []))


def diff_table(a, actual, expected):
    """The --layers table: `nnmnist diff ACTUAL EXPECTED` (the one implementation of the
    comparison): (its stdout lines, the first divergence or None). Its trouble (exit status 2,
    an unreadable trace) raises ValueError with its message."""
    r = subprocess.run([a.bin, "diff", actual, expected], capture_output=True, text=True, cwd=ROOT)
    if r.returncode not in (0, 1):
        raise ValueError(f"nnmnist diff: exit status {r.returncode}: {r.stderr.strip()}")
    lines = r.stdout.rstrip("\n").splitlines()
    last = lines[-1] if lines else ""
    if not last.startswith("first divergence: "):
        raise ValueError(f"nnmnist diff: unexpected output (its last line: {last!r})")
    first = last[len("first divergence: "):]
    return lines, (None if first == "none" else first)


def layers_main(a):
    """--layers: both sides trace one step from the same weights; the table; exit 0 or 1."""
    problems, warnings = check_setup(a)
    for flag, f in (("--weights", a.weights), ("--rust-weights", a.rust_weights)):
        if f and not os.path.isfile(f):
            problems.append(f"{flag} {f}: no such file")
    if os.access(a.bin, os.X_OK):
        flags = supported_flags([a.bin, "trace"])
        missing = [f for f in trace_cmd(a, "nnmnist", "W", "T") if f.startswith("--") and f not in flags]
        if not flags:
            problems.append(f"{rel(a.bin)} has no `trace` command in this build (the Rust side of --layers): "
                            "run cargo build --release on a version that has it")
        elif missing:
            problems.append(f"`{rel(a.bin)} trace` has no {', '.join(missing)} option in this build: "
                            "run cargo build --release")
        if not supported_flags([a.bin, "diff"]):
            problems.append(f"{rel(a.bin)} has no `diff` command in this build (it makes the --layers table): "
                            "run cargo build --release")
    if not setup_ok(problems, warnings):
        return 2
    os.makedirs(a.out, exist_ok=True)
    if a.weights:
        weights, origin = a.weights, "--weights"
    elif a.model == "convnet":
        weights, origin = os.path.join(a.out, f"convnet_init_seed{a.seed}.safetensors"), \
            f"nn_convnet.py --epochs 0 --seed {a.seed}: PyTorch's default init"
        r = draw_convnet_init(a, weights)
        if not r.ok:
            print(f"scripts/compare: writing the shared initial weights failed: {r.error} (stderr: {rel(r.stderr)})",
                  file=sys.stderr)
            return 1
    else:
        weights, origin = os.path.join(a.out, f"mlp_init_seed{a.seed}.safetensors"), \
            f"N(0, 1) drawn by scripts/compare with numpy, seed {a.seed}"
        draw_mlp_init(weights, a.seed)
    runs = {}
    for impl in ("pytorch", "nnmnist"):
        run = Run(a.model, impl, a.seed, None, a.out, "_trace")
        run.cmd = trace_cmd(a, impl, a.rust_weights if impl == "nnmnist" and a.rust_weights else weights, run.weights)
        runs[impl] = execute(run)
    settings = (f"lr {a.lr}, weight decay {a.weight_decay}" + (", deterministic" if a.deterministic else "")
                if a.model == "convnet" else
                f"{a.cost} cost, eta {a.eta}, lambda {a.lmbda}, n {a.train_size_n}")
    out = [f"scripts/compare (layers): {a.model} on {a.device}, {a.threads} thread(s), one step on training images "
           f"[{a.batch_start}, {a.batch_start + a.batch_size}), {settings}",
           f"weights: {rel(weights)} ({origin})"
           + (f"; the Rust side: {rel(a.rust_weights)} (--rust-weights)" if a.rust_weights else ""),
           "the table: nnmnist diff A B, A the Rust trace (actual), B the PyTorch trace (expected)",
           ""]
    failed = [r for r in runs.values() if not r.ok]
    first = None
    if failed:
        out += [f"FAILED: {r.label()}: {r.error} (stderr: {rel(r.stderr)})" for r in failed]
    else:
        try:
            lines, first = diff_table(a, runs["nnmnist"].weights, runs["pytorch"].weights)
        except ValueError as e:
            out.append(f"FAILED: {e}")
            failed = [e]
        else:
            out += lines
    text = "\n".join(out)
    print(text)
    with open(os.path.join(a.out, "report_layers.txt"), "w") as f:
        f.write(text + "\n")
    return 1 if failed or first else 0


# ------------------------------------------------------------------------------ main

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="scripts/compare", description=__doc__,
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
    p.add_argument("--threads", type=int, help="CPU threads for both convnet sides (default: libtorch's choice; "
                   "--layers: 1, both sides of either model)")
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


def setup_ok(problems, warnings):
    """Prints the warnings and the problems (each with its fix); True when there are no problems."""
    for w in warnings:
        print(f"scripts/compare: warning: {w}", file=sys.stderr)
    if problems:
        print("scripts/compare: the set-up is incomplete:", file=sys.stderr)
        for pr in problems:
            print(f"  - {pr}", file=sys.stderr)
    return not problems


def main(argv=None):
    a = parse_args(argv)
    if a.layers:
        return layers_main(a)
    problems, warnings = check_setup(a)
    if a.deterministic and a.model != "mlp" and os.access(a.bin, os.X_OK) \
            and "--deterministic" not in supported_flags([a.bin, "convnet"]):
        problems.append(f"`{rel(a.bin)} convnet` has no --deterministic option in this build: run cargo build --release")
    if not setup_ok(problems, warnings):
        return 2
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    runs, notes, lock = plan_and_run(a)
    models = ["convnet", "mlp"] if a.model == "both" else [a.model]
    mode = "lockstep" if a.lockstep else "quick" if a.quick else f"{a.seeds} seeds" if a.seeds > 1 else "default"
    out = [f"scripts/compare ({mode}): device {a.device}, seeds {a.seed}..{a.seed + a.seeds - 1}, "
           f"convnet {a.epochs} epoch(s), MLP {a.mlp_epochs} epoch(s); {time.perf_counter() - t0:.0f} s in all",
           "devices used: " + (", ".join(sorted({f"{r.model} {LABEL.get(r.impl, r.impl)}: {r.records[0]['device']}"
                                                for r in runs if r.records})) or "-"),
           ""]
    for model in models:
        if not any(r.model == model for r in runs):
            continue
        out.append(f"== {model} ==")
        out += epoch_table(runs, model, a.seeds)
        out.append("")
        out.append("final epoch:")
        out += final_summary(runs, model) or ["  (no results)"]
        out.append("speed:")
        out += speed_section(runs, model)
        if model in lock:
            out.append("lockstep:")
            lines, _ = lockstep_section(model, *lock[model])
            out += lines
        out.append("")
    failed = [r for r in runs if not r.ok]
    cpus = os.cpu_count() or 1
    busy_runs = [r for r in runs if r.others is not None and r.others > 0.10]
    if busy_runs:
        worst = max(busy_runs, key=lambda r: r.others)
        notes.append(f"other processes used up to {100 * worst.others:.0f}% of the {cpus} CPUs during the runs "
                     f"({len(busy_runs)} run(s) over 10%, worst: {worst.label()}): the seconds and speed ratios "
                     "are unreliable; rerun on a quiet machine (accuracies and losses are not affected)")
    elif all(r.others is None for r in runs) and load_before > cpus + 0.5:
        notes.append(f"the load average was {load_before:.1f} on {cpus} CPUs before the runs: other processes "
                     "competed for the CPU, so the seconds and speed ratios may be unreliable")
    if notes:
        out.append("notes:")
        out += [f"  - {n}" for n in notes]
    if failed:
        out.append("FAILED runs (their partial records, if any, are in the tables above):")
        for r in failed:
            out.append(f"  - {r.label()}: {r.error} (stderr: {rel(r.stderr)})")
    title = f"nnmnist (Rust) vs PyTorch: {mode}, device {a.device}"
    try:
        png = plot(runs, models, os.path.join(a.out, f"compare.{a.plot_format}"), title)
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


if __name__ == "__main__":
    sys.exit(main())
