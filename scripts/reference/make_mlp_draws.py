"""Writes the random draws of nn_torch.py for some seeds into one safetensors file, for
tests/it/mlp_parity.rs to check that `nnmnist mlp --seed S` draws the same (made at test time,
not committed):

    .venv/bin/python -m scripts.reference.make_mlp_draws --out D.safetensors \\
        --seeds 0,3,11 --sizes 784,30,10 --sizes 784,16,12,10 --epochs 2 --n 1000

For each --sizes Z (written with '-' for ',' in the names), seed S and init I in (normal,
scaled): the initial parameters that `nn_torch.py --sizes Z --seed S --init I` trains from,
under `Z.S.I.<key>` (keys 0.weight, 0.bias, 2.weight, ... as nn_torch.py's state_dict),
float64; and for each seed S and epoch e < --epochs the order of the --n training images in
epoch e, `order.S.e`, int64 (n). It calls nn_torch.py's
own functions (build, init_normal, epoch_order), so it draws what a training run draws.
"""
import argparse

import torch
from safetensors.torch import save_file

from . import nn_torch


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", default="0,3,11", help="comma-separated seeds")
    p.add_argument("--sizes", action="append", help="layer sizes, e.g. 784,30,10 (repeatable)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=1000, help="training images the orders are over")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    out = {}
    for spec in args.sizes or ["784,30,10"]:
        sizes = [int(s) for s in spec.split(",")]
        for seed in seeds:
            for init in ("normal", "scaled"):
                model = nn_torch.build(sizes)
                nn_torch.init_normal(model, sizes, torch.Generator().manual_seed(seed), init == "scaled")
                for k, v in model.state_dict().items():
                    out[f"{spec.replace(',', '-')}.{seed}.{init}.{k}"] = v.detach().contiguous()
    for seed in seeds:
        for epoch in range(args.epochs):
            out[f"order.{seed}.{epoch}"] = nn_torch.epoch_order(seed, epoch, args.n)
    save_file(out, args.out)


if __name__ == "__main__":
    main()
