"""nnmnist's MLP (nn.py, Nielsen's network.py) in PyTorch: the reference for lockstep runs.

torch.float64, nn.Sequential(Linear, Sigmoid, Linear, Sigmoid, ...) (the sigmoid with z
clipped to [-100, 100], as nn.py), so the state_dict keys are 0.weight, 0.bias, 2.weight, ...
exactly as `nnmnist mlp --save` writes them. Gradients by autograd of the cost summed over
the mini-batch; the step is nn.py's rule (network2.py's L2 with --lambda), NielsenSGD:
    w <- (1 - eta*lambda/n) w - (eta/m) dC/dw,   b <- b - (eta/m) dC/db
taken as the gradient of the batch's mean cost C/m (MeanCost), so each step is
optimizer.zero_grad(), loss = MeanCost(model(x), y), loss.backward(), optimizer.step(), as
any PyTorch training step.
Costs: quadratic 0.5 ||a - y||^2; cross-entropy y softplus(-z) + (1-y) softplus(z)
(binary_cross_entropy_with_logits), which is -y ln a - (1-y) ln(1-a) without overflow (the
same definition as nnmnist). Init: every bias
and weight N(0, 1), or weights N(0, 1/fan_in) with --init scaled, from torch.Generator
seeded with --seed: torch.randn in float64 for each layer's bias, then for each layer's
weight. Shuffle: epoch e's order is torch.randperm(n) with the generator seeded from
common.epoch_seed(seed, e). `nnmnist mlp --seed S` makes the same draws from libtorch's
generator, so both sides start from the same weights and see the same batches.

Prints what `nnmnist mlp` prints: the two `Loaded ...` lines, then per epoch
`Epoch {i}: {correct} / {total}  test cost {cost:.6f}`. --metrics: nnmnist's JSON-lines
schema, implementation "pytorch".

--trace OUT.safetensors (instead of training; the PyTorch side of scripts/compare --layers):
that step on training images [--batch-start, --batch-start + --batch-size) in file order,
written by dump_tensors.dump_step: every layer's output by Sequential index (0 = z of layer
0, 1 = its activation, 2, ...), `loss` (1) the mean cost over the batch, `grad.<key>` its
gradient (dC/dp / m, C summed over the batch) and `after.<key>` the parameters after the
step, with n = --train-size-n; the batch and the settings in the header's metadata.

From the repository root:
    .venv/bin/python -m scripts.reference.nn_torch --epochs 1 --init-from w.safetensors --no-shuffle --save out.safetensors
    .venv/bin/python -m scripts.reference.nn_torch --trace t.safetensors --init-from w.safetensors --threads 1
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

from . import common
from .dump_tensors import dump_step


class ClippedSigmoid(torch.nn.Module):
    """nn.py's sigmoid: 1 / (1 + exp(-clip(z, -100, 100)))."""

    def forward(self, z):
        return torch.sigmoid(z.clamp(-100, 100))


def build(sizes):
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [torch.nn.Linear(n_in, n_out, dtype=torch.float64), ClippedSigmoid()]
    return torch.nn.Sequential(*layers)


def init_normal(model, sizes, gen, scaled):
    """nn.py: biases then weights, N(0, 1); network2.py's scaled init divides weights by sqrt(fan_in)."""
    with torch.no_grad():
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        for lin in linears:
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen, dtype=torch.float64))
        for lin, n_in in zip(linears, sizes[:-1]):
            w = torch.randn(lin.weight.shape, generator=gen, dtype=torch.float64)
            lin.weight.copy_(w / np.sqrt(n_in) if scaled else w)


def epoch_order(seed, epoch, n):
    """The order of the n training images in epoch `epoch` (0-based)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(common.epoch_seed(seed, epoch)))


def logits_and_output(model, x):
    """(z of the last layer, its activation a)."""
    z = model[:-1](x)
    return z, model[-1](z)


def cost_sum(cost, z, a, y):
    if cost == "quadratic":
        return 0.5 * ((a - y) ** 2).sum()
    # y softplus(-z) + (1-y) softplus(z), whose gradient is sigmoid(z) - y (network2.py's
    # delta). Not through F.softplus: above its threshold (20) it returns z itself, off by
    # up to e^-20 = 2e-9 per output, and its gradient 1 instead of sigmoid(z).
    return torch.nn.functional.binary_cross_entropy_with_logits(z.clamp(-100, 100), y, reduction="sum")


def as_tensors(images, labels, device):
    """(x (N, 784) = u8/255, labels int64 (N,), y one-hot (N, 10)), float64, on the device."""
    x = torch.tensor(images.reshape(-1, 784), dtype=torch.float64, device=device) / 255.0
    labels = torch.tensor(labels, dtype=torch.int64, device=device)
    return x, labels, torch.nn.functional.one_hot(labels, 10).to(torch.float64)


class MeanCost:
    """The loss of a step: the cost of the mini-batch averaged over it, C/m (C = cost_sum),
    from the last layer's z, the input of the model's last module (its sigmoid) kept by a
    forward pre-hook, and the output a. Its gradient is nabla / m."""

    def __init__(self, model, cost):
        self.cost, self.z = cost, None
        model[-1].register_forward_pre_hook(self._keep_z)

    def _keep_z(self, _module, inputs):
        self.z = inputs[0]

    def __call__(self, a, y):
        return cost_sum(self.cost, self.z, a, y) / len(a)


class NielsenSGD:
    """nn.py's step, network2.py's L2 included, from the gradient of the mean cost (MeanCost):
    w <- (1 - eta*lambda/n) w - eta dC/dw (= (eta/m) nabla_w), b <- b - eta dC/db. An
    optimizer as the training step and dump_step use one (zero_grad, step), without
    torch.optim.Optimizer's per-step bookkeeping, which nn.py's 5,000 small steps an epoch
    would feel."""

    def __init__(self, model, eta, lmbda, n):
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        self.eta, self.decay = eta, 1 - eta * (lmbda / n)
        self.weights, self.biases = [lin.weight for lin in linears], [lin.bias for lin in linears]

    def zero_grad(self):
        for prm in self.weights + self.biases:
            prm.grad = None

    @torch.no_grad()
    def step(self):
        for w in self.weights:
            if self.decay != 1.0:
                w.mul_(self.decay)
            w.sub_(self.eta * w.grad)
        for b in self.biases:
            b.sub_(self.eta * b.grad)


def train_step(model, loss_fn, optimizer, x, y):
    """One step on the batch (x, one-hot y), in dump_step's order: returns the mean cost."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()


def evaluate(model, cost, x, labels, y):
    """(correct, test cost): the cost summed over the images divided by their number."""
    with torch.no_grad():
        z, a = logits_and_output(model, x)
        return int((a.argmax(dim=1) == labels).sum()), cost_sum(cost, z, a, y).item() / len(x)


def trace(model, args, images, labels, device):
    """--trace: one step of nn.py's rule on training images [start, start + m), every
    intermediate tensor written to args.trace by dump_tensors.dump_step (the tensor-file
    contract of scripts/compare --layers)."""
    start, m = args.batch_start, args.batch_size
    if start + m > len(images):
        common.fail(f"--batch-start {start} + --batch-size {m} runs past the {len(images)} training images")
    x, _, y = as_tensors(images[start:start + m], labels[start:start + m], device)
    settings = {"batch_start": start, "batch_size": m, "model": "mlp", "cost": args.cost, "eta": args.eta,
                "n": args.train_size_n, "lambda": args.lmbda, "device": device, "threads": torch.get_num_threads()}
    names = dump_step(model, x, y, MeanCost(model, args.cost), NielsenSGD(model, args.eta, args.lmbda, args.train_size_n),
                      args.trace, metadata={k: str(v) for k, v in settings.items()})
    common.say_traced(names, args.trace, start, m)


def load_init(model, path, sizes):
    from safetensors.torch import load_file
    try:
        tensors = load_file(path)
    except Exception as e:  # noqa: BLE001 (any unreadable file)
        common.fail(f"{path}: not a safetensors weights file ({e})")
    state = model.state_dict()
    for k, v in state.items():
        if k not in tensors:
            common.fail(f"{path}: missing tensor {k} (the file has: {', '.join(sorted(tensors))})")
        if tuple(tensors[k].shape) != tuple(v.shape):
            common.fail(f"{path}: tensor {k} has shape {list(tensors[k].shape)}, expected {list(v.shape)} "
                        f"for --sizes {','.join(map(str, sizes))}")
    extra = f"{2 * (len(sizes) - 1)}.weight"
    if extra in tensors:
        common.fail(f"{path}: has more layers than --sizes {','.join(map(str, sizes))}")
    model.load_state_dict({k: tensors[k].to(torch.float64) for k in state})


def save(model, path):
    from safetensors.torch import save_file
    tmp = path + ".tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(prog="nn_torch", description=__doc__.split("\n")[0])
    common.add_mlp_args(p)
    p.add_argument("--init-from", default=None)
    p.add_argument("--save", default=None)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    p.add_argument("--trace", metavar="OUT.safetensors", default=None,
                   help="instead of training: one step on training images [--batch-start, +--batch-size), "
                        "every intermediate tensor written to OUT (scripts/compare --layers)")
    p.add_argument("--batch-start", type=int, default=0, help="--trace: index of the batch's first training image")
    p.add_argument("--train-size-n", type=int, default=50000,
                   help="--trace: n of the L2 factor 1 - eta*lambda/n (training uses --train-size)")
    args, sizes = common.parse_mlp_args(p)
    if args.batch_start < 0:
        common.fail(f"--batch-start must be 0 or more, got {args.batch_start}")
    for name in ("train_size_n", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            common.fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    common.check_writable(args.metrics, "metrics file")
    common.check_writable(args.save, "--save")
    common.check_writable(args.trace, "--trace")

    (tr_x, tr_y), (te_x, te_y) = common.load_mnist(args.data_dir)
    model = build(sizes)
    if args.init_from:
        load_init(model, args.init_from, sizes)
    else:
        init_normal(model, sizes, torch.Generator().manual_seed(args.seed), args.init == "scaled")
    model.to(device)
    if args.trace:
        return trace(model, args, tr_x, tr_y, device)

    print(f"Loaded {len(tr_x)} images of shape (28, 28) and {len(tr_y)} labels.")
    print(f"Loaded {len(te_x)} test images of shape (28, 28) and {len(te_y)} labels.")
    n = args.train_size
    if n > len(tr_x):
        common.fail(f"--train-size {n} is larger than the {len(tr_x)} training images")
    test_size = args.test_size or len(te_x)
    if test_size > len(te_x):
        common.fail(f"--test-size {test_size} is larger than the {len(te_x)} test images")
    if args.batch_size > n:
        common.fail(f"--batch-size {args.batch_size} is larger than the training set (--train-size {n})")

    X, _, Y = as_tensors(tr_x[:n], tr_y[:n], device)
    Xt, Lt, Yt = as_tensors(te_x[:test_size], te_y[:test_size], device)
    metrics = common.Metrics(args.metrics)
    print(f"nn_torch.py: seed {args.seed}", file=sys.stderr)
    loss_fn, optimizer = MeanCost(model, args.cost), NielsenSGD(model, args.eta, args.lmbda, n)

    for epoch in range(args.epochs):
        if args.no_shuffle:
            order = torch.arange(n)
        else:
            order = epoch_order(args.seed, epoch, n)
        order = order.to(device)
        losses = []
        t0 = time.perf_counter()
        for k in range(0, n, args.batch_size):
            idx = order[k:k + args.batch_size]
            losses.append(train_step(model, loss_fn, optimizer, X[idx], Y[idx]).item())
            if not np.isfinite(losses[-1]):
                common.fail(f"the training loss became {losses[-1]} in epoch {epoch}, batch {k // args.batch_size}: "
                            "training diverged; try a smaller learning rate (--eta)")
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        correct, test_cost = evaluate(model, args.cost, Xt, Lt, Yt)
        eval_seconds = time.perf_counter() - t0
        print(f"Epoch {epoch}: {correct} / {test_size}  test cost {test_cost:.6f}", flush=True)
        metrics.write(model="mlp", implementation="pytorch", epoch=epoch + 1, test_correct=correct,
                      test_total=test_size, test_accuracy=correct / test_size, test_loss=test_cost,
                      train_loss=float(np.mean(losses)), train_seconds=train_seconds, eval_seconds=eval_seconds,
                      device=str(device), seed=args.seed)
        if args.save:
            save(model, args.save)


if __name__ == "__main__":
    main()
