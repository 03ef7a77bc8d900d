"""PyTorch reference for `nnmnist convnet`: nn_convnet.py (docs/reference.md section 2), run by us.

Its stdout is line for line the format of `nnmnist convnet`, so the two can be diffed. The
data set is held as float32 tensors on the device, batches taken by index, following
nnmnist's determinism contract exactly, so on CPU a run here and `nnmnist convnet` with the
same seed (or the same --init-from file and --no-shuffle) are the same computation:
  init:   torch.manual_seed(seed), then the model built on CPU, then moved;
  epoch e (0-based): torch.manual_seed((seed*100003 + e + 1) % 2**63),
          perm = torch.randperm(n) on CPU (or arange with --no-shuffle), batches
          perm[i*bs:(i+1)*bs] for i < n // bs (last partial batch dropped);
  step:   CrossEntropyLoss (mean), SGD(lr, weight_decay), no momentum;
  eval:   the test set in order, batches of 64 (last partial one included).
nn_convnet.py as written feeds a DataLoader one sample at a time; that run, and the training
step captured as one CUDA graph, are the speed anchors of bench_convnet.py beside this module.

--deterministic: torch.backends.cudnn.benchmark = False, cudnn.deterministic = True,
torch.use_deterministic_algorithms(True), CUBLAS_WORKSPACE_CONFIG=:4096:8 (if unset, before
CUDA starts) and SGD(foreach=False), the per-tensor update libtorch's C++ SGD does: on CUDA a
run is then repeatable and can follow `nnmnist convnet --deterministic` step for step.

--trace OUT.safetensors (instead of training; the PyTorch side of scripts/compare --layers):
one training step (model.train(), CrossEntropyLoss, SGD(--lr, --weight-decay)) on training
images [--batch-start, --batch-start + --batch-size) in file order, from --init-from's weights
(else seed --seed's PyTorch init), written by dump_tensors.dump_step (float32, CPU):
model.0 ... model.9 each layer's output, `loss` (1), `grad.<key>` each gradient in the order
backward computes them, `after.<key>` each parameter after optimizer.step(); the batch and
the settings in the header's metadata.

Examples (from the repository root):
  .venv/bin/python -m scripts.reference.nn_convnet --epochs 1 --metrics target/pt.jsonl
  .venv/bin/python -m scripts.reference.nn_convnet --epochs 0 --seed 3 --save init.safetensors
  .venv/bin/python -m scripts.reference.nn_convnet --trace t.safetensors --init-from init.safetensors --threads 1
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn

from . import common
from .dump_tensors import dump_step

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


def held(images_u8, labels_u8, dev):
    """A split held on the device: (float32 (N, 1, 28, 28) images, int64 (N,) labels)."""
    return to_tensor(images_u8).to(dev), torch.from_numpy(labels_u8.astype(np.int64)).to(dev)


def trace(a, dev, tr_img, tr_lab):
    """--trace: one train step on training images [batch_start, batch_start + batch_size), every
    layer output, the loss, the gradients and the stepped weights written to a.trace by
    dump_tensors.dump_step."""
    end = a.batch_start + a.batch_size
    if end > len(tr_lab):
        common.fail(f"--batch-start {a.batch_start} + --batch-size {a.batch_size} runs past the "
                    f"{len(tr_lab)} training images")
    model = build_model(a.seed, a.init_from, dev)
    model.train()
    X, y = held(tr_img[a.batch_start:end], tr_lab[a.batch_start:end], dev)
    settings = dict(batch_start=a.batch_start, batch_size=a.batch_size, model="convnet", lr=a.lr,
                    weight_decay=a.weight_decay, device=device_label(dev), threads=torch.get_num_threads(),
                    deterministic=a.deterministic)
    names = dump_step(model, X, y, nn.CrossEntropyLoss(), make_optimizer(model, a), a.trace,
                      metadata={k: str(v) for k, v in settings.items()})
    common.say_traced(names, a.trace, a.batch_start, a.batch_size)


# ---------------------------------------------------------------- the run

def add_options(p):
    """The options of a training run, as `nnmnist convnet` names them (bench_convnet.py
    shares them)."""
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
    p.add_argument("--threads", type=int, help="torch.set_num_threads(N)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic cuDNN/cuBLAS/algorithms and per-tensor SGD (see above)")


def check_options(p, a):
    """The checks of add_options' values (p.error on the first that fails)."""
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
    for name in ("train_size", "test_size", "threads"):
        v = getattr(a, name)
        if v is not None and v < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")


def prepare(a):
    """The process-wide settings the options ask for (deterministic kernels, threads), the
    device, and the output files checked before any work: returns the device."""
    if a.deterministic:
        make_deterministic()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    common.check_writable(a.save, "--save")
    common.check_writable(a.metrics, "--metrics")
    return dev


def train(a, dev, model, train_epoch, evaluate, loader):
    """nn_convnet.py's loop and console: `Using {device} device`, then per epoch its header,
    train_epoch(t) (prints the loss lines, returns the mean batch loss), evaluate() ->
    (correct, total, avg loss) and the Test Error lines, one --metrics record (`loader` names
    how the batches were fed); `Done!`, then --save."""
    metrics = common.Metrics(a.metrics)
    print(f"Using {dev.type} device")
    for t in range(a.epochs):
        print(f"Epoch {t + 1}\n-------------------------------")
        sync(dev)
        t0 = time.perf_counter()
        train_loss = train_epoch(t)
        sync(dev)
        t1 = time.perf_counter()
        correct, total, test_loss = evaluate()
        sync(dev)
        t2 = time.perf_counter()
        acc = correct / total
        print(f"Test Error: \n Accuracy: {(100 * acc):>0.1f}%, Avg loss: {test_loss:>8f} \n")
        sys.stdout.flush()
        metrics.write(model="convnet", implementation="pytorch", epoch=t + 1, test_correct=correct,
                      test_total=total, test_accuracy=acc, test_loss=test_loss, train_loss=train_loss,
                      train_seconds=t1 - t0, eval_seconds=t2 - t1, device=device_label(dev), seed=a.seed,
                      loader=loader)
    print("Done!")
    if a.save:
        save_model(model, a.save)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="nn_convnet", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p)
    p.add_argument("--no-shuffle", action="store_true", help="batches in data order")
    p.add_argument("--trace", metavar="OUT.safetensors",
                   help="instead of training: one step on one batch, every intermediate tensor written to OUT")
    p.add_argument("--batch-start", type=int, default=0, help="--trace: index of the batch's first training image")
    a = p.parse_args(argv)
    check_options(p, a)
    if a.batch_start < 0:
        p.error("--batch-start must be >= 0")
    return a


def main(argv=None):
    a = parse_args(argv)
    dev = prepare(a)
    if a.trace:
        common.check_writable(a.trace, "--trace")
        return trace(a, dev, *common.load_mnist(a.data_dir)[0])
    (tr_img, tr_lab), (te_img, te_lab) = common.load_mnist(a.data_dir, a.train_size, a.test_size)
    print(f"nn_convnet.py: seed {a.seed}, {torch.get_num_threads()} threads"
          f"{', deterministic' if a.deterministic else ''}", file=sys.stderr)
    model = build_model(a.seed, a.init_from, dev)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = make_optimizer(model, a)
    (train_x, train_y), (test_x, test_y) = held(tr_img, tr_lab, dev), held(te_img, te_lab, dev)
    train(a, dev, model,
          lambda t: train_epoch_tensors(model, loss_fn, optimizer, train_x, train_y, a.batch_size, a.seed, t,
                                        not a.no_shuffle, dev),
          lambda: evaluate_tensors(model, loss_fn, test_x, test_y), "tensors")


if __name__ == "__main__":
    main()
