"""--layers: both sides trace one step from the same weights on one batch; the table is
`nnmnist diff --format json RUST_TRACE PYTORCH_TRACE`, its rows kept in OUT/layers.jsonl."""
import json
import os
import subprocess
import sys

from .base import ROOT, reference, rel
from .checks import check_setup, setup_ok
from .runs import Run, draw_convnet_init, draw_mlp_init, execute

# The trace-file contract, the same for `nnmnist trace` and the references' --trace (see
# trace_cmd for the options both get). One safetensors file, CPU tensors:
#   batch: training images [--batch-start, --batch-start + --batch-size) in file order, pixels
#          u8/255 (float32 convnet, float64 MLP), labels from the training labels
#   convnet (float32): model.0 ... model.9 each nn.Sequential layer's output (train mode);
#          loss (1) CrossEntropyLoss mean; grad.<key> each state_dict key's gradient after
#          backward; after.<key> each parameter after one SGD step (--lr, --weight-decay,
#          no momentum)
#   MLP (float64): 0, 1, 2, 3, ... each Sequential index's output (0 = z of layer 0, 1 = its
#          clipped sigmoid, ...); loss (1) the mean cost over the batch; grad.<key> its
#          gradient (the summed cost's gradient / m); after.<key> after nn.py's step w <- (1 - eta*(lambda/n)) w -
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
    return (reference("nn_convnet" if a.model == "convnet" else "nn_torch") + ["--trace", out, "--init-from", weights] + both
            + (["--sizes", sizes] if sizes else []))


def num(x):
    """A difference as nnmnist diff's table prints it."""
    if isinstance(x, str):
        return x
    return "0" if x == 0 else f"{x:.3e}"


def diff_table(a, actual, expected):
    """The --layers table: `nnmnist diff --format json ACTUAL EXPECTED` (the one
    implementation of the comparison), its rows kept in OUT/layers.jsonl: (the table's
    lines, the first divergence or None). Its trouble (exit status 2, an unreadable trace)
    raises ValueError with its message."""
    r = subprocess.run([a.bin, "diff", "--format", "json", actual, expected], capture_output=True, text=True, cwd=ROOT)
    if r.returncode not in (0, 1):
        raise ValueError(f"nnmnist diff: exit status {r.returncode}: {r.stderr.strip()}")
    try:
        records = [json.loads(line) for line in r.stdout.splitlines()]
    except json.JSONDecodeError as e:
        raise ValueError(f"nnmnist diff --format json: a line that is no JSON ({e})")
    if not records or "summary" not in records[-1]:
        raise ValueError("nnmnist diff --format json: no summary line at the end")
    *rows, summary = records
    summary = summary["summary"]
    with open(os.path.join(a.out, "layers.jsonl"), "w") as f:
        f.write(r.stdout)
    w = max([len("tensor")] + [len(row["tensor"]) for row in rows])
    lines = [f"{'tensor':<{w}}  {'shape':<14}  {'dtype':<8}  {'max abs':>10}  {'max rel':>10}  {'outside':>18}  note"]
    lines.append("-" * len(lines[0]))
    for row in rows:
        shape = "x".join(map(str, row["shape"])) or "scalar"
        stats = row["numel"] is not None
        cells = (f"{num(row['max_abs']):>10}  {num(row['max_rel']):>10}  {str(row['outside']) + ' of ' + str(row['numel']):>18}"
                 if stats else f"{'-':>10}  {'-':>10}  {'-':>18}")
        lines.append(f"{row['tensor']:<{w}}  {shape:<14}  {row['dtype'] or '?':<8}  {cells}  {row['note']}".rstrip())
    first = summary["first_divergence"]
    lines += ["", f"tensors: {summary['tensors']} in all, {summary['within']} within tolerance "
                  f"(rows in {rel(os.path.join(a.out, 'layers.jsonl'))})",
              f"first divergence: {first or 'none'}"]
    return lines, first


def main(a):
    """--layers: both sides trace one step from the same weights; the table; exit 0 or 1."""
    problems, warnings = check_setup(a)
    for flag, f in (("--weights", a.weights), ("--rust-weights", a.rust_weights)):
        if f and not os.path.isfile(f):
            problems.append(f"{flag} {f}: no such file")
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
