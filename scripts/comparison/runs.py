"""The runs: the command line of each side, which runs a mode makes (one after the other,
never in parallel, so the timings do not disturb each other), and how each is started, timed
and its metrics read."""
import os
import shlex
import subprocess
import sys
import time

from .base import LABEL, ROOT, SIDES, models, reference, reference_common, rel


class Run:
    """One run of one side: its command and the files it writes under --out (metrics, stdout,
    stderr, weights); execute fills in its records, exit status, seconds and `others`."""

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
    """Runs `run` to its end, its stdout and stderr into files, timed; reads back its metrics
    and, on trouble, sets run.error. Says on stderr what it starts and how it went."""
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
        run.records, unreadable = reference_common().read_metrics(run.metrics)
        if unreadable:
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


CONVNET = {"nnmnist": None, "pytorch": ["nn_convnet"], "pytorch-dataloader": ["bench_convnet", "--mode", "dataloader"],
           "pytorch-cudagraph": ["bench_convnet", "--mode", "cuda-graph"]}


def convnet_cmd(a, impl, seed, epochs, extra=()):
    """A convnet run of `impl`: nnmnist, nn_convnet.py's contract run, or one of
    bench_convnet's speed anchors; the same options on every side."""
    if impl == "nnmnist":
        cmd = [a.bin, "convnet"]
    else:
        cmd = reference(CONVNET[impl][0]) + CONVNET[impl][1:]
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
    """An MLP run of `impl`: `nnmnist mlp` (the CPU, one thread: it has no --device or
    --threads) or nn_torch.py (--device and --threads as given)."""
    cmd = [a.bin, "mlp"] if impl == "nnmnist" else reference("nn_torch")
    cmd += ["--epochs", str(epochs), "--seed", str(seed), "--data-dir", a.data_dir]
    if impl == "pytorch":
        cmd += ["--device", a.device] + (["--threads", str(a.threads)] if a.threads else [])
    if a.train_size:
        cmd += ["--train-size", str(a.train_size)]
    if a.test_size:
        cmd += ["--test-size", str(a.test_size)]
    return cmd + list(extra)


def draw_convnet_init(a, path):
    """PyTorch's default init of seed a.seed (nn_convnet.py --epochs 0 --save): the Run."""
    return execute(Run("convnet", "pytorch", a.seed, reference("nn_convnet") + [
        "--epochs", "0", "--seed", str(a.seed), "--device", "cpu", "--data-dir", a.data_dir, "--test-size", "1",
        "--save", path], a.out, "_init"))


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


def plan_and_run(a):
    os.makedirs(a.out, exist_ok=True)
    runs, notes, lock = [], [], {}
    seeds = list(range(a.seed, a.seed + a.seeds))

    if "convnet" in models(a):
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
                run.cmd = convnet_cmd(a, impl, seed, a.epochs, extra)
                runs.append(execute(run))
        if a.dataloader_epochs > 0:
            run = Run("convnet", "pytorch-dataloader", a.seed, None, a.out)
            run.cmd = convnet_cmd(a, run.impl, a.seed, a.dataloader_epochs, ["--metrics", run.metrics])
            runs.append(execute(run))
        on_cuda = any(rec["device"].startswith("cuda") for r in runs if r.model == "convnet" for rec in r.records)
        if on_cuda and a.dataloader_epochs > 0:
            # on CUDA nnmnist replays one captured CUDA graph per step: time PyTorch doing the same
            run = Run("convnet", "pytorch-cudagraph", a.seed, None, a.out)
            run.cmd = convnet_cmd(a, run.impl, a.seed, a.dataloader_epochs, ["--metrics", run.metrics])
            runs.append(execute(run))
        if a.lockstep and init:
            lock["convnet"] = (init, [r for r in runs if r.model == "convnet" and r.impl in SIDES and r.seed == a.seed])

    if "mlp" in models(a):
        init, extra_both = None, (["--no-shuffle"] if (a.no_shuffle or a.lockstep) else [])
        if a.lockstep:
            init = os.path.join(a.out, f"mlp_init_seed{a.seed}.safetensors")
            draw_mlp_init(init, a.seed)
        for seed in seeds:
            for impl in SIDES:
                run = Run("mlp", impl, seed, None, a.out)
                extra = extra_both + ["--metrics", run.metrics, "--save", run.weights]
                if init:
                    extra += ["--init-from", init]
                run.cmd = mlp_cmd(a, impl, seed, a.mlp_epochs, extra)
                runs.append(execute(run))
        if a.lockstep:
            lock["mlp"] = (init, [r for r in runs if r.model == "mlp" and r.impl in SIDES and r.seed == a.seed])
    return runs, notes, lock



def busy_notes(runs, load_before):
    """A note when other processes competed for the CPUs during the runs (so the seconds are
    unreliable): from each run's share measured by execute, else the load average before."""
    cpus = os.cpu_count() or 1
    busy_runs = [r for r in runs if r.others is not None and r.others > 0.10]
    if busy_runs:
        worst = max(busy_runs, key=lambda r: r.others)
        return [f"other processes used up to {100 * worst.others:.0f}% of the {cpus} CPUs during the runs "
                f"({len(busy_runs)} run(s) over 10%, worst: {worst.label()}): the seconds and speed ratios "
                "are unreliable; rerun on a quiet machine (accuracies and losses are not affected)"]
    if all(r.others is None for r in runs) and load_before > cpus + 0.5:
        return [f"the load average was {load_before:.1f} on {cpus} CPUs before the runs: other processes "
                "competed for the CPU, so the seconds and speed ratios may be unreliable"]
    return []
