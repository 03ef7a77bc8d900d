"""The worked example of docs/diff.md: a 2-layer MLP defined here (not one of nnmnist's
models), one training step dumped from PyTorch with scripts/reference/dump_tensors.py, and a
port of it (NumPy, standing in for a Rust port) that dumps the same names, with GELU written
either as PyTorch's nn.GELU() computes it (erf) or with the tanh approximation, a classic
porting slip. Writes into OUTDIR:

  mlp.pth                 the model's initial state_dict (torch.save)
  port_weights.safetensors   the weights as the port holds them
  torch_step.safetensors  PyTorch's step (dump_tensors.dump_step)
  port_step.safetensors   the port's step, GELU as erf
  port_tanh_step.safetensors the port's step, GELU as the tanh approximation

Run, from the repository root (on PYTHONPATH, for the package scripts):
PYTHONPATH=. .venv/bin/python docs/diff_example.py OUTDIR, then the nnmnist diff lines of docs/diff.md.
"""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

from scripts.reference.dump_tensors import dump_step


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(16, 32)
        self.act = torch.nn.GELU()
        self.out = torch.nn.Linear(32, 4)

    def forward(self, x):
        return self.out(self.act(self.hidden(x)))


LR = 0.1


def port_step(w, x, y, tanh_gelu):
    """The port: forward, cross-entropy, backward by hand, SGD; float32 throughout."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    h = x @ w["hidden.weight"].T + w["hidden.bias"]
    if tanh_gelu:
        c = np.float32(math.sqrt(2 / math.pi))
        t = np.tanh(c * (h + np.float32(0.044715) * h ** 3))
        a = 0.5 * h * (1 + t)
        da_dh = 0.5 * (1 + t) + 0.5 * h * (1 - t ** 2) * c * (1 + 3 * np.float32(0.044715) * h ** 2)
    else:
        cdf = (0.5 * (1 + erf(h / math.sqrt(2)))).astype(np.float32)
        a = h * cdf
        da_dh = cdf + h * (np.exp(-0.5 * h.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)).astype(np.float32)
    o = a @ w["out.weight"].T + w["out.bias"]
    z = o - o.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    m = len(y)
    loss = -np.log(p[np.arange(m), y]).mean()
    do = p.copy()
    do[np.arange(m), y] -= 1
    do /= m
    grads = {"out.bias": do.sum(0), "out.weight": do.T @ a}
    dh = (do @ w["out.weight"]) * da_dh
    grads.update({"hidden.bias": dh.sum(0), "hidden.weight": dh.T @ x})
    out = {"hidden": h, "act": a, "out": o, "loss": np.array([loss], np.float32)}
    out.update({"grad." + k: g for k, g in grads.items()})
    out.update({"after." + k: w[k] - np.float32(LR) * grads[k] for k in w})
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    f = lambda name: os.path.join(outdir, name)  # noqa: E731
    torch.manual_seed(0)
    model = MLP()
    torch.save(model.state_dict(), f("mlp.pth"))
    x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))

    # The port's side: the weights as it holds them, then its step.
    w = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    save_file(w, f("port_weights.safetensors"))
    for name, tanh_gelu in (("port_step", False), ("port_tanh_step", True)):
        t = port_step(w, x.numpy(), y.numpy(), tanh_gelu)
        save_file(t, f(name + ".safetensors"), metadata={"order": json.dumps(list(t))})

    # PyTorch's side (last: the step changes the model's weights).
    dump_step(model, x, y, torch.nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=LR),
              f("torch_step.safetensors"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: docs/diff_example.py OUTDIR")
    main(sys.argv[1])
