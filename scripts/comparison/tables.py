"""The report's tables: per-epoch accuracy, loss and seconds of both sides, the final epoch
and how far the two agree, speed, and the lockstep comparison; then the whole report text."""
import math
import statistics

from .base import LABEL, SIDES, models, rel


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
    if pairs and model == "convnet":
        same = sum(1 for x, y in pairs if x["test_loss"] == y["test_loss"] and x["test_correct"] == y["test_correct"])
        worst = max(abs(x["test_loss"] - y["test_loss"]) for x, y in pairs)
        lines.append(f"  same seed, same final result on both sides (correct count and test loss to the last bit): "
                     f"{same} of {len(pairs)} seed(s); largest final test-loss difference {worst:.1e}")
    if model == "mlp":
        lines += mlp_agreement(runs)
    return lines


MLP_MARKS = (1, 2, 5, 10, 20, 30)


def mlp_agreement(runs):
    """Per seed, the two MLP sides: from the same seed they start from the same weights and
    see the same batches (nnmnist draws nn_torch.py's numbers), so they differ by float64
    rounding only (other summation orders), which SGD amplifies epoch by epoch. Epochs with
    the same correct count, the first that differs, and |Rust - PyTorch| / PyTorch of the
    test cost at a few epochs."""
    lines = []
    for r in runs:
        if not (r.model == "mlp" and r.impl == "nnmnist" and r.records):
            continue
        p = next((q for q in runs if q.model == "mlp" and q.impl == "pytorch" and q.seed == r.seed and q.records), None)
        if p is None:
            continue
        pe = {x["epoch"]: x for x in p.records}
        both = [(x, pe[x["epoch"]]) for x in r.records if x["epoch"] in pe]
        if not both:
            continue
        if not lines:
            lines.append("  same seed on both sides (same initial weights and batches; float64 rounding drifts):")
        same = sum(1 for x, y in both if x["test_correct"] == y["test_correct"])
        first = next((x["epoch"] for x, y in both if x["test_correct"] != y["test_correct"]), None)
        rel = {x["epoch"]: abs(x["test_loss"] - y["test_loss"]) / abs(y["test_loss"]) for x, y in both}
        marks = [e for e in MLP_MARKS if e in rel] + ([max(rel)] if max(rel) not in MLP_MARKS else [])
        lines.append(f"    seed {r.seed}: same correct count in {same} of {len(both)} epochs (first difference: "
                     f"{'epoch ' + str(first) if first else 'none'}); test-cost difference, relative: "
                     + ", ".join(f"epoch {e} {rel[e]:.1e}" for e in marks))
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



def report(a, mode, runs, lock, notes, seconds):
    """The report's lines from its header to the failed runs (the plot's line and the files'
    follow): per model the epoch table, the final epoch, speed and (--lockstep) the lockstep
    comparison; then the notes."""
    out = [f"scripts/compare ({mode}): device {a.device}, seeds {a.seed}..{a.seed + a.seeds - 1}, "
           f"convnet {a.epochs} epoch(s), MLP {a.mlp_epochs} epoch(s); {seconds:.0f} s in all",
           "devices used: " + (", ".join(sorted({f"{r.model} {LABEL.get(r.impl, r.impl)}: {r.records[0]['device']}"
                                                for r in runs if r.records})) or "-"),
           ""]
    for model in models(a):
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
    if notes:
        out.append("notes:")
        out += [f"  - {n}" for n in notes]
    failed = [r for r in runs if not r.ok]
    if failed:
        out.append("FAILED runs (their partial records, if any, are in the tables above):")
        for r in failed:
            out.append(f"  - {r.label()}: {r.error} (stderr: {rel(r.stderr)})")
    return out
