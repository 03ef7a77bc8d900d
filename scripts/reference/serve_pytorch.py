#!/usr/bin/env python3
"""The PyTorch side of `nnmnist serve --pytorch`: one long-lived process that runs the
weights the server serves through the reference models (nn_convnet.py's NeuralNetwork,
nn_torch.py's float64 MLP) on every input the server computes, so the page can show both
sides agreeing as you draw.

The server starts it with .venv/bin/python and speaks a binary protocol on its stdin and
stdout (all integers little-endian):

  server -> here, once:  u32 n, then n bytes of JSON:
                           {"threads": T, "models": [{"model": "convnet"|"mlp",
                                                      "sizes": [784, ..., 10] (MLP only)}]}
                         then for each model: u64 n, then n bytes of a safetensors file
                         holding its state_dict (the values the server itself computes with).
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
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import torch  # noqa: E402
from safetensors.torch import load as load_safetensors  # noqa: E402

import nn_convnet  # noqa: E402
import nn_torch  # noqa: E402

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


def build(spec, state):
    """The reference model of spec["model"], holding state (a state_dict), in eval mode."""
    if spec["model"] == "convnet":
        model = nn_convnet.NeuralNetwork()
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    elif spec["model"] == "mlp":
        model = nn_torch.build(spec["sizes"])
        model.load_state_dict({k: v.to(torch.float64) for k, v in state.items()})
    else:
        common.fail(f"unknown model {spec['model']!r}")
    return model.eval()


def logits(spec, model, pixels):
    """The model's logits for one u8 input, as 10 float64."""
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8)
    if spec["model"] == "convnet":
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
    specs = header["models"]
    models = []
    for spec in specs:
        (n,) = struct.unpack("<Q", need(stdin, 8, f"the {spec['model']}'s weights"))
        models.append(build(spec, load_safetensors(need(stdin, n, f"the {spec['model']}'s weights"))))
    stdout.write(b"ready\n")
    stdout.flush()
    with torch.no_grad():
        while True:
            pixels = read_exact(stdin, PIXELS)
            if pixels is None:
                return
            out = b"".join(struct.pack("<10d", *logits(s, m, pixels)) for s, m in zip(specs, models))
            stdout.write(out)
            stdout.flush()


if __name__ == "__main__":
    main()
