"""Writes tests/fixtures/convnet/parity.safetensors, the PyTorch side of tests/it/convnet_parity.rs.

Rebuild (from the repository root):  .venv/bin/python -m scripts.reference.make_convnet_fixtures

Everything on the CPU, float32, with the model of scripts/reference/nn_convnet.py:
  model.*            initial weights: torch.manual_seed(1234); NeuralNetwork()   (PyTorch default init)
  x_idx (16)         int64 indices into the TEST set; x_labels (16) their labels (a data check)
  logits (16, 10)    model(x) in train mode, x = test images u8/255, shape (16, 1, 28, 28)
  loss (1)           nn.CrossEntropyLoss()(logits, labels)
  grad.model.*       each parameter's gradient after loss.backward()
  steps_idx (3, 64)  int64 indices into the TRAIN set; steps_labels (3, 64) their labels
  steps_loss (3)     the loss of each of the K=3 SGD steps (lr 0.05, weight_decay 0.001),
                     taken from the initial weights (the gradient above is discarded first)
  after.model.*      the weights after the 3 steps

and tests/fixtures/convnet/trained.safetensors, for `nnmnist eval` parity: a state_dict that
PyTorch trained (seed 99, one epoch of the batch-order contract on the first 12,800 training
images), with PyTorch's own test result on all 10,000 test images in the metadata:
`test_correct` and `test_loss` (nn_convnet.py's avg loss, as repr of the double).
"""
import contextlib
import os

import torch
from safetensors.torch import save_file

from . import common, nn_convnet

SEED = 1234
LR, WD, K, BS, NX = 0.05, 0.001, 3, 64, 16
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "convnet", "parity.safetensors")
TRAINED = os.path.join(ROOT, "tests", "fixtures", "convnet", "trained.safetensors")
TRAINED_SEED, TRAINED_IMAGES = 99, 12800


def main():
    torch.set_num_threads(1)  # the test runs with libtorch's default; either way results are exact here
    (tr_img, tr_lab), (te_img, te_lab) = common.load_mnist(os.path.join(ROOT, "data"))
    g = torch.Generator().manual_seed(20240601)
    x_idx = torch.randperm(len(te_lab), generator=g)[:NX].to(torch.int64)
    steps_idx = torch.randperm(len(tr_lab), generator=g)[:K * BS].view(K, BS).to(torch.int64)

    train_x, train_y = nn_convnet.to_tensor(tr_img), torch.from_numpy(tr_lab.astype("int64"))
    test_x, test_y = nn_convnet.to_tensor(te_img), torch.from_numpy(te_lab.astype("int64"))

    model = nn_convnet.build_model(SEED, None, torch.device("cpu"))
    out = {k: v.detach().clone() for k, v in model.state_dict().items()}
    loss_fn = torch.nn.CrossEntropyLoss()

    model.train()
    logits = model(test_x[x_idx])
    loss = loss_fn(logits, test_y[x_idx])
    loss.backward()
    out["x_idx"] = x_idx
    out["x_labels"] = test_y[x_idx]
    out["logits"] = logits.detach().clone()
    out["loss"] = loss.detach().reshape(1).clone()
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.detach().clone()

    optimizer = torch.optim.SGD(model.parameters(), lr=LR, weight_decay=WD)
    optimizer.zero_grad()
    losses = []
    for k in range(K):
        idx = steps_idx[k]
        loss = loss_fn(model(train_x[idx]), train_y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    out["steps_idx"] = steps_idx
    out["steps_labels"] = train_y[steps_idx]
    out["steps_loss"] = torch.tensor(losses, dtype=torch.float32)
    for name, p in model.named_parameters():
        out["after." + name] = p.detach().clone()

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT,
              metadata={"made_by": "scripts/reference/make_convnet_fixtures.py",
                        "torch": torch.__version__, "seed": str(SEED),
                        "lr": str(LR), "weight_decay": str(WD)})
    print(f"wrote {os.path.relpath(OUT, ROOT)} ({os.path.getsize(OUT)} bytes, torch {torch.__version__}): "
          f"loss {out['loss'].item():.6f}, steps_loss {', '.join(f'{v:.6f}' for v in losses)}")

    write_trained(train_x, train_y, test_x, test_y)


def write_trained(train_x, train_y, test_x, test_y):
    """A PyTorch-trained state_dict and PyTorch's evaluation of it."""
    model = nn_convnet.build_model(TRAINED_SEED, None, torch.device("cpu"))
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, weight_decay=WD)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        nn_convnet.train_epoch_tensors(model, loss_fn, optimizer, train_x[:TRAINED_IMAGES], train_y[:TRAINED_IMAGES],
                                       BS, TRAINED_SEED, 0, True, torch.device("cpu"))
    correct, total, avg_loss = nn_convnet.evaluate_tensors(model, loss_fn, test_x, test_y)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, TRAINED,
              metadata={"made_by": "scripts/reference/make_convnet_fixtures.py", "torch": torch.__version__,
                        "test_correct": str(correct), "test_total": str(total), "test_loss": repr(avg_loss)})
    print(f"wrote {os.path.relpath(TRAINED, ROOT)}: PyTorch's test result {correct}/{total}, avg loss {avg_loss!r}")


if __name__ == "__main__":
    main()
