"""Writes tests/fixtures/mlp/*.safetensors, the references tests/it/mlp_parity.rs checks nnmnist's MLP against.

    .venv/bin/python -m scripts.reference.make_mlp_fixtures

Network sizes 784,16,12,10 (two hidden layers, so backprop through a hidden layer is
covered), weights N(0, 1/fan_in) and biases N(0, 1) from numpy's default_rng(1234) (scaled
so that no output saturates and every float64 quantity is well conditioned), float64.

- net.safetensors: the weights under PyTorch nn.Sequential keys (0.weight (16,784), 0.bias,
  2.weight, 2.bias, 4.weight, 4.bias), a batch `x` of 8 MNIST training images as U8 (8,784)
  (the network sees x / 255) and their `labels` U8 (8).
- quadratic.safetensors, cross_entropy.safetensors: from PyTorch autograd, for that batch:
  `z.{i}` and `a.{i}` (8, out) per layer i, `cost` (1) the cost summed over the batch, and
  `nabla_w.{i}` (out, in), `nabla_b.{i}` (out) its gradients (the sums over the batch that
  nn.py's backprop returns).
- sgd.safetensors: 40 training images `x` U8 (40,784), `labels` U8 (40), a fixed batch
  `order` (40, I64), and, after K=5 steps of nn.py's update rule with batches of 8 taken in
  that order, computed by scripts/reference/nn_numpy.py's Network.update_mini_batch, the
  weights `{run}.{key}` for run `quadratic` (eta 3.0, lambda 0) and `cross_entropy_l2`
  (eta 0.5, lambda 5.0, n 50000).
"""
import os

import numpy as np
import torch
from safetensors.numpy import save_file

from . import common, nn_numpy

HERE = os.path.dirname(os.path.abspath(__file__))

ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "mlp")
SIZES = [784, 16, 12, 10]


def keys(i):
    return f"{2 * i}.weight", f"{2 * i}.bias"


def autograd(net, x_u8, labels, cost):
    """Forward and backward in PyTorch (float64) on the batch: tensors as numpy."""
    x = torch.tensor(x_u8, dtype=torch.float64) / 255.0
    y = torch.nn.functional.one_hot(torch.tensor(labels, dtype=torch.int64), 10).to(torch.float64)
    ws = [torch.tensor(w, requires_grad=True) for w in net.weights]
    bs = [torch.tensor(b[:, 0], requires_grad=True) for b in net.biases]
    out = {}
    a = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        z = torch.nn.functional.linear(a, w, b)
        a = torch.sigmoid(z.clamp(-100, 100))
        out[f"z.{i}"], out[f"a.{i}"] = z, a
    if cost == "quadratic":
        c = 0.5 * ((a - y) ** 2).sum()
    else:
        c = -(y * torch.log(a) + (1 - y) * torch.log(1 - a)).sum()
    c.backward()
    res = {k: v.detach().numpy().copy() for k, v in out.items()}
    res["cost"] = np.array([c.item()])
    for i, (w, b) in enumerate(zip(ws, bs)):
        res[f"nabla_w.{i}"] = w.grad.numpy().copy()
        res[f"nabla_b.{i}"] = b.grad.numpy().copy()
    return res


def net_tensors(net, prefix=""):
    out = {}
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        kw, kb = keys(i)
        out[prefix + kw] = np.ascontiguousarray(w)
        out[prefix + kb] = np.ascontiguousarray(b[:, 0])
    return out


def main():
    torch.set_default_dtype(torch.float64)
    os.makedirs(OUT, exist_ok=True)
    (tr_x, tr_y), _ = common.load_mnist(os.path.join(ROOT, "data"), train_size=100)
    rng = np.random.default_rng(1234)
    net = nn_numpy.Network(SIZES, rng, init="scaled")

    x8, l8 = tr_x[:8].reshape(8, 784), tr_y[:8]
    save_file({**net_tensors(net), "x": x8, "labels": l8}, os.path.join(OUT, "net.safetensors"))

    for cost, name in (("quadratic", "quadratic"), ("cross-entropy", "cross_entropy")):
        res = autograd(net, x8, l8, cost)
        # The numpy reference agrees with autograd (a check of this script itself).
        X = x8.T / 255.0
        nb, nw, total = net.backprop(X, nn_numpy.one_hot(l8.astype(np.int64)), cost)
        for i in range(len(nw)):
            assert np.allclose(nw[i], res[f"nabla_w.{i}"], rtol=1e-10, atol=1e-12), (cost, i)
            assert np.allclose(nb[i][:, 0], res[f"nabla_b.{i}"], rtol=1e-10, atol=1e-12), (cost, i)
        assert abs(total - res["cost"][0]) <= 1e-10 * abs(total), (cost, total, res["cost"])
        save_file(res, os.path.join(OUT, f"{name}.safetensors"))

    x40, l40 = tr_x[8:48].reshape(40, 784), tr_y[8:48]
    order = np.random.default_rng(99).permutation(40).astype(np.int64)
    X = x40.T / 255.0
    Y = nn_numpy.one_hot(l40.astype(np.int64))
    sgd = {"x": x40, "labels": l40, "order": order}
    for run, cost, eta, lmbda in (("quadratic", "quadratic", 3.0, 0.0), ("cross_entropy_l2", "cross-entropy", 0.5, 5.0)):
        n2 = nn_numpy.Network(SIZES, np.random.default_rng(1234), init="scaled")
        for k in range(5):
            idx = order[8 * k:8 * (k + 1)]
            n2.update_mini_batch(X[:, idx], Y[:, idx], eta, cost, lmbda, 50000)
        sgd.update(net_tensors(n2, prefix=run + "."))
    save_file(sgd, os.path.join(OUT, "sgd.safetensors"))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {OUT}: {total} bytes")


if __name__ == "__main__":
    main()
