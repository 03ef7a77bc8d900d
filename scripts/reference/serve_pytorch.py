#!/usr/bin/env python3
"""The PyTorch side of `nnmnist serve --pytorch`: one long-lived process that runs the
weights the server serves through the reference models (nn_convnet.py's NeuralNetwork,
nn_torch.py's float64 MLP) on every input the server computes, so the page can show both
sides agreeing as you draw.

The server starts it from the repository root as `.venv/bin/python -m
scripts.reference.serve_pytorch` and speaks a binary protocol on its stdin and stdout (all
integers little-endian):

  server -> here, once:  u32 n, then n bytes of JSON: {"threads": T, "models": ["convnet" or
                         "mlp", ...]}, then for each model: u64 n, then n bytes of a
                         safetensors file holding the tensors of its weights file (its
                         state_dict among them; the MLP's layer sizes are read from their
                         shapes).
  here -> server, once:  the line "ready\\n" when every model is built.
  server -> here:        784 bytes: one 28x28 input, row-major, u8 (the networks read u8/255).
  here -> server:        for each model, in order, 10 float64: its logits for that input
                         (the convnet's model.9 output, float32 widened exactly; the MLP's
                         output layer z, before the sigmoid, float64).

torch.set_num_threads(T) takes the server's libtorch thread count: on the CPU, libtorch's
sums can depend on it. The process ends when stdin closes (the server stopped). An error is
one line on stderr and exit status 1; the server reports it.
"""
import json
import struct
import sys

import torch
from safetensors.torch import load as load_safetensors

from . import common, nn_convnet, nn_torch

PIXELS = 28 * 28


def read_exact(stream, n):
    """n bytes from stream, or None at a clean end of input before the first byte."""
    data = stream.read(n)
    if not data:
        return None
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            common.fail(f"input ended inside a message ({len(data)} of {n} bytes)")
        data += more
    return data


def need(stream, n, what):
    data = read_exact(stream, n)
    if data is None:
        common.fail(f"input ended before {what}")
    return data


def mlp_sizes(tensors):
    """An MLP's layer sizes from its state_dict's shapes: 0.weight (n1, n0), 2.weight (n2, n1), ..."""
    sizes, i = [], 0
    while f"{i}.weight" in tensors:
        out, inp = tensors[f"{i}.weight"].shape
        sizes += [inp] if not sizes else []
        sizes.append(out)
        i += 2
    return sizes


def build(name, tensors):
    """The reference model `name` holding its tensors among `tensors`, in eval mode."""
    if name == "convnet":
        model, kind = nn_convnet.NeuralNetwork(), torch.float32
    elif name == "mlp":
        model, kind = nn_torch.build(mlp_sizes(tensors)), torch.float64
    else:
        common.fail(f"unknown model {name!r}")
    keys = model.state_dict().keys()
    missing = [k for k in keys if k not in tensors]
    if missing:
        common.fail(f"the {name}'s weights lack {', '.join(missing)}")
    model.load_state_dict({k: tensors[k].to(kind) for k in keys})
    return model.eval()


def logits(name, model, pixels):
    """The model's logits for one u8 input, as 10 float64."""
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8)
    if name == "convnet":
        # nn_convnet.to_tensor: float32 / 255, (1, 1, 28, 28)
        out = model(x.to(torch.float32).div(255).view(1, 1, 28, 28))
    else:
        # nn_torch: float64 / 255, (1, 784); the output layer's z, before its sigmoid
        out, _ = nn_torch.logits_and_output(model, x.to(torch.float64).div(255).view(1, PIXELS))
    return out.view(-1).to(torch.float64).tolist()


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    (n,) = struct.unpack("<I", need(stdin, 4, "the header"))
    header = json.loads(need(stdin, n, "the header"))
    torch.set_num_threads(int(header["threads"]))
    names = header["models"]
    models = []
    for name in names:
        (n,) = struct.unpack("<Q", need(stdin, 8, f"the {name}'s weights"))
        models.append(build(name, load_safetensors(need(stdin, n, f"the {name}'s weights"))))
    stdout.write(b"ready\n")
    stdout.flush()
    with torch.no_grad():
        while True:
            pixels = read_exact(stdin, PIXELS)
            if pixels is None:
                return
            out = b"".join(struct.pack("<10d", *logits(n, m, pixels)) for n, m in zip(names, models))
            stdout.write(out)
            stdout.flush()


if __name__ == "__main__":
    main()
