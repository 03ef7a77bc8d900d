#!/usr/bin/env python3
"""PyTorch reference for `nnmnist convnet`: nn_convnet.py (docs/reference.md section 2), run by us.

Its stdout is line for line the format of `nnmnist convnet`, so the two can be diffed.

Two ways to feed the data (--loader):
  tensors     (default) the whole data set held as float32 tensors on the device, batches
              taken by index. This follows nnmnist's determinism contract exactly, so on CPU
              a run here and `nnmnist convnet` with the same seed (or the same --init-from file
              and --no-shuffle) are the same computation:
                init:   torch.manual_seed(seed), then the model built on CPU, then moved;
                epoch e (0-based): torch.manual_seed((seed*100003 + e + 1) % 2**63),
                        perm = torch.randperm(n) on CPU (or arange with --no-shuffle), batches
                        perm[i*bs:(i+1)*bs] for i < n // bs (last partial batch dropped);
                step:   CrossEntropyLoss (mean), SGD(lr, weight_decay), no momentum;
                eval:   the test set in order, batches of 64 (last partial one included).
  dataloader  nn_convnet.py as written: a Dataset returning one sample at a time through a
              ToTensor-equivalent transform (uint8 HxW -> PIL image -> float /255, 1xHxW), and
              DataLoader(batch_size, shuffle=True, drop_last=True). Same model, loss and
              optimizer, but its batch order comes from DataLoader's sampler, not the contract.
              This is the speed anchor "nn_convnet.py as written" of docs/reference.md section 3.

--cuda-graph (CUDA only, tensors loader): the whole training step (forward, backward, SGD step)
captured as one CUDA graph, as PyTorch's CUDA-graphs documentation shows ("whole network
capture"): warm-up on a side stream, capture, then per batch copy the batch into the static
inputs and replay. The warm-up steps' weight changes are undone before capture, so the run
follows the same recipe as eager.

--deterministic: torch.backends.cudnn.benchmark = False, cudnn.deterministic = True,
torch.use_deterministic_algorithms(True), CUBLAS_WORKSPACE_CONFIG=:4096:8 (if unset, before
CUDA starts) and SGD(foreach=False), the per-tensor update libtorch's C++ SGD does: on CUDA a
run is then repeatable and can follow `nnmnist convnet --deterministic` step for step.

--trace OUT.safetensors (instead of training; the PyTorch side of scripts/compare --layers):
one training step (model.train(), CrossEntropyLoss, SGD(--lr, --weight-decay)) on training
images [--batch-start, --batch-start + --batch-size) in file order, from --init-from's weights
(else seed --seed's PyTorch init), and in OUT (float32, CPU): model.0 ... model.9 each layer's
output, `loss` (1), `grad.<key>` each gradient after loss.backward(), `after.<key>` each
parameter after optimizer.step().

Examples (from the repository root):
  .venv/bin/python scripts/reference/nn_convnet.py --epochs 1 --metrics target/pt.jsonl
  .venv/bin/python scripts/reference/nn_convnet.py --epochs 0 --seed 3 --save init.safetensors
  .venv/bin/python scripts/reference/nn_convnet.py --trace t.safetensors --init-from init.safetensors --threads 1
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

TEST_BATCH = 64
PRINT_EVERY = 20
STATE_KEYS = ["model.0.weight", "model.0.bias", "model.4.weight", "model.4.bias",
              "model.7.weight", "model.7.bias", "model.9.weight", "model.9.bias"]


class NeuralNetwork(nn.Module):
    """nn_convnet.py's model, layer for layer (the second ReLU at index 3 included)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),   # 0
            nn.ReLU(),                       # 1
            nn.MaxPool2d(2),                 # 2
            nn.ReLU(),                       # 3
            nn.Conv2d(8, 16, 3),             # 4
            nn.MaxPool2d(2),                 # 5
            nn.Flatten(),                    # 6
            nn.Linear(576, 100),             # 7
            nn.ReLU(),                       # 8
            nn.Linear(100, 10),              # 9
        )

    def forward(self, x):
        return self.model(x)


def make_deterministic():
    """The deterministic settings of --deterministic (before CUDA starts: cuBLAS reads the
    workspace setting when it first starts)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


def make_optimizer(model, a):
    """nn_convnet.py's SGD; per tensor (foreach=False), as libtorch's, with --deterministic."""
    return torch.optim.SGD(model.parameters(), lr=a.lr, weight_decay=a.weight_decay,
                           foreach=False if a.deterministic else None)


def build_model(seed, init_from, device):
    """torch.manual_seed(seed), the model on CPU (PyTorch default init), weights from
    init_from if given, then moved to the device."""
    torch.manual_seed(seed)
    model = NeuralNetwork()
    if init_from:
        from safetensors.torch import load_file
        try:
            state = load_file(init_from)
        except Exception as e:  # noqa: BLE001 - any failure to read is one message
            common.fail(f"{init_from}: cannot read as safetensors ({e})")
        missing = [k for k in STATE_KEYS if k not in state]
        if missing:
            common.fail(f"{init_from}: missing key(s) {', '.join(missing)}")
        ref = model.state_dict()
        for k in STATE_KEYS:
            if tuple(state[k].shape) != tuple(ref[k].shape):
                common.fail(f"{init_from}: {k} has shape {tuple(state[k].shape)}, "
                            f"expected {tuple(ref[k].shape)}")
        model.load_state_dict({k: state[k].to(torch.float32) for k in STATE_KEYS})
    return model.to(device)


def save_model(model, path):
    from safetensors.torch import save_file
    save_file({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}, path)


def resolve_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        common.fail(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if dev.type not in ("cpu", "cuda"):
        common.fail(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            common.fail(f"--device {name}: CUDA is not available here (torch {torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            common.fail(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def device_label(dev):
    if dev.type == "cuda":
        return f"cuda:{dev.index if dev.index is not None else torch.cuda.current_device()}"
    return "cpu"


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def to_tensor(images_u8):
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) / 255, as the contract says."""
    return torch.from_numpy(np.ascontiguousarray(images_u8)).to(torch.float32).div(255).unsqueeze(1)


def print_loss(loss, batch, bs, size):
    print(f"loss: {loss:>7f}  [{(batch + 1) * bs:>5d}/{size:>5d}]")


# ---------------------------------------------------------------- loaders: tensors

def epoch_perm(seed, epoch, n, shuffle):
    if not shuffle:
        return torch.arange(n)
    torch.manual_seed(common.epoch_seed(seed, epoch))
    return torch.randperm(n)


def train_step(model, loss_fn, optimizer, X, y):
    """nn_convnet.py's train() step: returns the batch loss, leaves the gradients in p.grad."""
    pred = model(X)
    loss = loss_fn(pred, y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def train_epoch_tensors(model, loss_fn, optimizer, train_x, train_y, bs, seed, epoch, shuffle, dev):
    """One eager epoch: nn_convnet.py's train() step on batches of the held tensors."""
    model.train()
    return train_epoch_with(lambda X, y: train_step(model, loss_fn, optimizer, X, y),
                            train_x, train_y, bs, seed, epoch, shuffle, dev)


def trace(a, dev, tr_img, tr_lab):
    """--trace: one train step on training images [batch_start, batch_start + batch_size), every
    layer output, the loss, the gradients and the stepped weights written to a.trace."""
    end = a.batch_start + a.batch_size
    if end > len(tr_lab):
        common.fail(f"--batch-start {a.batch_start} + --batch-size {a.batch_size} runs past the "
                    f"{len(tr_lab)} training images")
    model = build_model(a.seed, a.init_from, dev)
    model.train()
    out = {}
    hooks = [layer.register_forward_hook(lambda _m, _i, o, k=f"model.{i}": out.__setitem__(k, o.detach().clone()))
             for i, layer in enumerate(model.model)]
    X = to_tensor(tr_img[a.batch_start:end]).to(dev)
    y = torch.from_numpy(tr_lab[a.batch_start:end].astype(np.int64)).to(dev)
    out["loss"] = train_step(model, nn.CrossEntropyLoss(), make_optimizer(model, a), X, y).reshape(1)
    for h in hooks:
        h.remove()
    params = list(model.named_parameters())
    for k, p in reversed(params):  # the order backward computes them: last layer first, bias before weight
        out["grad." + k] = p.grad
    for k, p in params:
        out["after." + k] = p.detach()
    common.write_trace({k: v.cpu().numpy() for k, v in out.items()}, a.trace, a.batch_start, a.batch_size,
                       model="convnet", lr=a.lr, weight_decay=a.weight_decay, device=device_label(dev),
                       threads=torch.get_num_threads(), deterministic=a.deterministic)


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


def train_epoch_with(step, train_x, train_y, bs, seed, epoch, shuffle, dev):
    """One epoch in the batch order of the contract, `step(X, y)` returning the batch loss
    (the eager step or a GraphedStep); returns the mean batch loss."""
    n = len(train_y)
    perm = epoch_perm(seed, epoch, n, shuffle).to(dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    batches = n // bs
    for batch in range(batches):
        idx = perm[batch * bs:(batch + 1) * bs]
        loss = step(train_x[idx], train_y[idx])
        loss_sum += loss
        if batch % PRINT_EVERY == 0:
            print_loss(loss.item(), batch, bs, n)
    return loss_sum.item() / batches if batches else float("nan")


def evaluate_tensors(model, loss_fn, test_x, test_y):
    model.eval()
    n = len(test_y)
    num_batches = (n + TEST_BATCH - 1) // TEST_BATCH
    test_loss, correct = 0.0, 0.0
    with torch.no_grad():
        for i in range(num_batches):
            X, y = test_x[i * TEST_BATCH:(i + 1) * TEST_BATCH], test_y[i * TEST_BATCH:(i + 1) * TEST_BATCH]
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    return int(correct), n, test_loss / num_batches if num_batches else float("nan")


# ---------------------------------------------------------------- loaders: dataloader

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


# ---------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=0.001)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto: CUDA if available)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--metrics", help="JSON lines, one record per epoch (src/metrics.rs schema)")
    p.add_argument("--save", help="state_dict as safetensors (keys model.0.weight ... model.9.bias)")
    p.add_argument("--init-from", help="start from this safetensors state_dict")
    p.add_argument("--train-size", type=int, help="train on the first N training images")
    p.add_argument("--test-size", type=int, help="evaluate on the first N test images")
    p.add_argument("--no-shuffle", action="store_true", help="batches in data order (tensors loader)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N)")
    p.add_argument("--loader", choices=["tensors", "dataloader"], default="tensors")
    p.add_argument("--cuda-graph", action="store_true",
                   help="capture the train step as one CUDA graph (CUDA, tensors loader only)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN/cuBLAS/algorithms and per-tensor SGD (see above)")
    p.add_argument("--trace", metavar="OUT.safetensors",
                   help="instead of training: one step on one batch, every intermediate tensor written to OUT")
    p.add_argument("--batch-start", type=int, default=0, help="--trace: index of the batch's first training image")
    a = p.parse_args(argv)
    if a.epochs < 0:
        p.error("--epochs must be >= 0")
    if a.batch_size < 1:
        p.error("--batch-size must be >= 1")
    if not a.lr > 0:
        p.error("--lr must be > 0")
    if a.weight_decay < 0:
        p.error("--weight-decay must be >= 0")
    if a.seed < 0:
        p.error("--seed must be >= 0")
    if a.batch_start < 0:
        p.error("--batch-start must be >= 0")
    for name in ("train_size", "test_size", "threads"):
        v = getattr(a, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if a.loader == "dataloader" and a.no_shuffle:
        p.error("--no-shuffle needs --loader tensors (the DataLoader mode shuffles as nn_convnet.py does)")
    if a.cuda_graph and a.loader != "tensors":
        p.error("--cuda-graph needs --loader tensors")
    return a


def main(argv=None):
    a = parse_args(argv)
    if a.deterministic:
        make_deterministic()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    if a.cuda_graph and dev.type != "cuda":
        common.fail("--cuda-graph needs a CUDA device (--device cuda)")
    common.check_writable(a.save, "--save")
    common.check_writable(a.metrics, "--metrics")
    common.check_writable(a.trace, "--trace")
    if a.trace:
        return trace(a, dev, *common.load_mnist(a.data_dir)[0])
    metrics = common.Metrics(a.metrics)
    (tr_img, tr_lab), (te_img, te_lab) = common.load_mnist(a.data_dir, a.train_size, a.test_size)
    print(f"nn_convnet.py: seed {a.seed}, loader {a.loader}, {torch.get_num_threads()} threads"
          f"{', CUDA graph' if a.cuda_graph else ''}{', deterministic' if a.deterministic else ''}", file=sys.stderr)

    model = build_model(a.seed, a.init_from, dev)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, a)
    print(f"Using {dev.type} device")
    step = None

    if a.loader == "tensors":
        train_x, train_y = to_tensor(tr_img).to(dev), torch.from_numpy(tr_lab.astype(np.int64)).to(dev)
        test_x, test_y = to_tensor(te_img).to(dev), torch.from_numpy(te_lab.astype(np.int64)).to(dev)
        if a.cuda_graph and a.epochs > 0 and len(train_y) >= a.batch_size:
            step = GraphedStep(model, loss_fn, optimizer, train_x, train_y, a.batch_size)
    else:
        train_loader = torch.utils.data.DataLoader(MnistDataset(tr_img, tr_lab), batch_size=a.batch_size,
                                                   shuffle=True, drop_last=True)
        test_loader = torch.utils.data.DataLoader(MnistDataset(te_img, te_lab), batch_size=TEST_BATCH)

    for t in range(a.epochs):
        print(f"Epoch {t + 1}\n-------------------------------")
        sync(dev)
        t0 = time.perf_counter()
        if a.loader == "dataloader":
            train_loss = train_epoch_loader(model, loss_fn, optimizer, train_loader, dev)
        elif step is not None:
            train_loss = train_epoch_with(step, train_x, train_y, a.batch_size, a.seed, t, not a.no_shuffle, dev)
        else:
            train_loss = train_epoch_tensors(model, loss_fn, optimizer, train_x, train_y, a.batch_size,
                                             a.seed, t, not a.no_shuffle, dev)
        sync(dev)
        t1 = time.perf_counter()
        if a.loader == "dataloader":
            correct, total, test_loss = evaluate_loader(model, loss_fn, test_loader, dev)
        else:
            correct, total, test_loss = evaluate_tensors(model, loss_fn, test_x, test_y)
        sync(dev)
        t2 = time.perf_counter()
        acc = correct / total
        print(f"Test Error: \n Accuracy: {(100 * acc):>0.1f}%, Avg loss: {test_loss:>8f} \n")
        sys.stdout.flush()
        metrics.write(model="convnet", implementation="pytorch", epoch=t + 1, test_correct=correct,
                      test_total=total, test_accuracy=acc, test_loss=test_loss, train_loss=train_loss,
                      train_seconds=t1 - t0, eval_seconds=t2 - t1, device=device_label(dev), seed=a.seed,
                      loader=a.loader + ("+cuda-graph" if step is not None else ""))
    print("Done!")
    if a.save:
        save_model(model, a.save)


if __name__ == "__main__":
    main()
