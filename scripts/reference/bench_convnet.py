"""The speed anchors of docs/reference.md section 3 that are not nn_convnet.py's contract run:
each trains nn_convnet.py's model with its loss and optimizer, prints its console lines and
writes --metrics (`train_seconds` is the figure scripts/compare and scripts/gpu_check.py
compare; `loader` says which anchor).

--mode dataloader   nn_convnet.py as written: a Dataset returning one sample at a time through a
                    ToTensor-equivalent transform (uint8 HxW -> PIL image -> float /255, 1xHxW),
                    and DataLoader(batch_size, shuffle=True, drop_last=True). Same model, loss
                    and optimizer as nn_convnet.py's contract run, but the batch order comes from
                    DataLoader's sampler. `loader`: "dataloader".
--mode cuda-graph   (CUDA) the whole training step (forward, backward, SGD step) captured as one
                    CUDA graph, as PyTorch's CUDA-graphs documentation shows ("whole network
                    capture"): warm-up on a side stream, capture, then per batch copy the batch
                    into the static inputs and replay. The warm-up steps' weight changes are
                    undone before capture, and the batches follow the contract's order, so the
                    run follows nn_convnet.py's recipe. `loader`: "tensors+cuda-graph".

Options as nn_convnet.py's (the same names as `nnmnist convnet`). From the repository root:
  .venv/bin/python -m scripts.reference.bench_convnet --mode dataloader --epochs 1 --metrics target/dl.jsonl
  .venv/bin/python -m scripts.reference.bench_convnet --mode cuda-graph --device cuda --epochs 3
"""
import argparse
import sys

import numpy as np
import torch
from torch import nn

from . import common
from .nn_convnet import (TEST_BATCH, PRINT_EVERY, add_options, build_model, check_options, evaluate_tensors,
                         held, make_optimizer, prepare, print_loss, train, train_epoch_with)


class GraphedStep:
    """The whole train step as one CUDA graph (PyTorch docs, "whole network capture")."""

    def __init__(self, model, loss_fn, optimizer, train_x, train_y, bs):
        self.static_x = train_x[:bs].clone()
        self.static_y = train_y[:bs].clone()
        params = list(model.parameters())
        saved = [p.detach().clone() for p in params]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(self.static_x), self.static_y).backward()
                optimizer.step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():  # undo the warm-up steps: the run starts from the given weights
            for p, s in zip(params, saved):
                p.copy_(s)
        self.graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.static_loss = loss_fn(model(self.static_x), self.static_y)
            self.static_loss.backward()
            optimizer.step()
        # The loss the caller sums and prints, without autograd history: summing the static
        # loss itself would chain one autograd node per batch through the whole epoch.
        self.loss_out = self.static_loss.detach()

    def __call__(self, X, y):
        self.static_x.copy_(X)
        self.static_y.copy_(y)
        self.graph.replay()
        return self.loss_out


class MnistDataset(torch.utils.data.Dataset):
    """torchvision.datasets.MNIST(transform=ToTensor()) without torchvision: uint8 tensors,
    one PIL image per sample, ToTensor's conversion (view HxWx1, permute, float, /255)."""

    def __init__(self, images, labels):
        self.data = torch.from_numpy(np.ascontiguousarray(images))
        self.targets = torch.from_numpy(labels.astype(np.int64))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = self.data[index], int(self.targets[index])
        img = to_tensor_transform(img.numpy())
        return img, target


def to_tensor_transform(pic_u8):
    """torchvision.transforms.ToTensor on a grayscale image (through PIL as torchvision does)."""
    try:
        from PIL import Image
        pic = Image.fromarray(pic_u8)
        arr = np.array(pic, np.uint8, copy=True)
        h, w = pic.size[1], pic.size[0]
    except ImportError:
        arr = np.array(pic_u8, np.uint8, copy=True)
        h, w = arr.shape
    img = torch.from_numpy(arr).view(h, w, 1).permute((2, 0, 1)).contiguous()
    return img.to(dtype=torch.get_default_dtype()).div(255)


def train_epoch_loader(model, loss_fn, optimizer, loader, dev):
    model.train()
    size = len(loader.dataset)
    loss_sum, batches = 0.0, 0
    for batch, (X, y) in enumerate(loader):
        X, y = X.to(dev), y.to(dev)
        pred = model(X)
        loss = loss_fn(pred, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = loss.item()
        loss_sum += value
        batches += 1
        if batch % PRINT_EVERY == 0:
            print_loss(value, batch, len(X), size)
    return loss_sum / batches if batches else float("nan")


def evaluate_loader(model, loss_fn, loader, dev):
    model.eval()
    size = len(loader.dataset)
    num_batches = len(loader)
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for X, y in loader:
            X, y = X.to(dev), y.to(dev)
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return int(correct), size, test_loss / num_batches if num_batches else float("nan")



def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bench_convnet", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["dataloader", "cuda-graph"], required=True)
    add_options(p)
    a = p.parse_args(argv)
    check_options(p, a)
    return a


def main(argv=None):
    a = parse_args(argv)
    dev = prepare(a)
    if a.mode == "cuda-graph" and dev.type != "cuda":
        common.fail("--mode cuda-graph needs a CUDA device (--device cuda)")
    (tr_img, tr_lab), (te_img, te_lab) = common.load_mnist(a.data_dir, a.train_size, a.test_size)
    print(f"bench_convnet.py: {a.mode}, seed {a.seed}, {torch.get_num_threads()} threads"
          f"{', deterministic' if a.deterministic else ''}", file=sys.stderr)
    model = build_model(a.seed, a.init_from, dev)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, a)
    if a.mode == "dataloader":
        train_loader = torch.utils.data.DataLoader(MnistDataset(tr_img, tr_lab), batch_size=a.batch_size,
                                                   shuffle=True, drop_last=True)
        test_loader = torch.utils.data.DataLoader(MnistDataset(te_img, te_lab), batch_size=TEST_BATCH)
        train(a, dev, model, lambda _t: train_epoch_loader(model, loss_fn, optimizer, train_loader, dev),
              lambda: evaluate_loader(model, loss_fn, test_loader, dev), "dataloader")
        return
    (train_x, train_y), (test_x, test_y) = held(tr_img, tr_lab, dev), held(te_img, te_lab, dev)
    if len(train_y) < a.batch_size:
        common.fail(f"--batch-size {a.batch_size} is larger than the {len(train_y)} training images: "
                    "no step to capture")
    step = GraphedStep(model, loss_fn, optimizer, train_x, train_y, a.batch_size) if a.epochs > 0 else None
    train(a, dev, model, lambda t: train_epoch_with(step, train_x, train_y, a.batch_size, a.seed, t, True, dev),
          lambda: evaluate_tensors(model, loss_fn, test_x, test_y), "tensors+cuda-graph")


if __name__ == "__main__":
    main()
