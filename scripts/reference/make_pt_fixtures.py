"""Writes tests/fixtures/pt/: PyTorch's own .pt/.pth files (written by torch.save), for nnmnist's
reader of them, and expected.json, PyTorch's evaluation of the weights in each.

Rebuild (from the repository root):  .venv/bin/python -m scripts.reference.make_pt_fixtures

The weights:
  convnet  tests/fixtures/convnet/trained.safetensors (trained by PyTorch, make_convnet_fixtures.py)
           loaded into nn_convnet.NeuralNetwork: keys model.0.weight ... model.9.bias, float32.
  mlp      nn_torch.py's nn.Sequential(Linear, ClippedSigmoid, Linear, ClippedSigmoid), sizes
           784,30,10, float64, keys 0.weight 0.bias 2.weight 2.bias, trained by nn_torch.py
           itself: --seed 5 (N(0, 1) init), 1 epoch on the first 10,000 training images,
           eta 3.0, quadratic cost, batches of 10, one thread.

The files, and what torch.save was given (sd = model.state_dict(), an OrderedDict):
  convnet_state_dict.pt         sd
  convnet_dict.pt               dict(sd)
  convnet_checkpoint.pt         {"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": ...,
                                 "loss": 0.123}, the state of nn_convnet.py's SGD (lr 0.05,
                                 weight_decay 0.001, no momentum) after one step
  convnet_nested_state_dict.pt  {"state_dict": sd, "epoch": 3}
  convnet_extra_int.pt          sd plus "model.0.num_batches_tracked": torch.tensor(0), an int64
                                scalar that is no parameter (a reader skips it with a note)
  mlp_state_dict.pth            sd (.pth: the format is told by the content, not the name)
  mlp_dict.pt                   dict(sd)
  mlp_checkpoint.pt             like convnet_checkpoint.pt, with the state of SGD(lr 0.3,
                                momentum 0.9) after one step: a momentum_buffer tensor per
                                parameter, the same shapes and dtype as the weights
  mlp_nested_model.pt           {"model": sd, "epoch": 3}
Every optimizer state comes from a real step taken on a copy of the model, so the weights
saved are the same in every file of a model.

And tests/fixtures/pt/broken/, tiny files torch.save writes that nnmnist must refuse with the
same messages as safetensors (the state_dict keys come in checking order, so the first one
is the fault): missing_key.pt ({"model.0.bias": zeros(8)}: no model.0.weight),
wrong_shape.pt (model.0.weight of shape (8, 1, 3, 4)), float16.pt (model.0.weight as float16),
nan.pt (a NaN in model.0.weight), not_a_dict.pt (torch.save of a list of tensors); and
tests/fixtures/pt/more/convnet_module.pt, torch.save of the whole nn_convnet.NeuralNetwork
(not its state_dict) with the weights of convnet_state_dict.pt: its parameters must read as
the state_dict's keys, not as a checkpoint nested under the module's attribute `model`; and
more/convnet_expanded_buffer.pt, convnet_state_dict.pt's tensors plus "extra.buffer", a
46000x46000 float32 view of one element (8.5 GB if materialised, 243 KB on disk): a reader
must not load an entry that is no weight or bias.
Only these: `make_pt_fixtures.py --broken-only`.

Cases made at test time, not committed (tests/pytorch_files.rs runs them):
  make_pt_fixtures.py --stems OUT     for every stem length 1..64, a state_dict and a training
      checkpoint (model_state_dict + optimizer_state_dict) of the convnet (trained weights) and
      of two MLPs (sizes 784,30,10 and 784,16,16,10, seeded N(0,1)), saved as OUT/<model>/<form>/
      <stem>.pt; beside them OUT/<model>.safetensors, the same weights as safetensors.
      torch.save names the zip's inner folder after the stem, so the zip's byte layout shifts
      with the file name's length.
  make_pt_fixtures.py --cases OUT     the convnet's trained weights in the forms below, and
      OUT/reference.safetensors, the same weights:
      huge_extras.pt       sd + three entries extra.{a,b,c}.weight = zeros(1).expand(2**19, 2**10)
                           (2 GiB each if materialised)
      huge_param.pt        sd with model.7.weight = zeros(1).expand(2**19, 2**10): a parameter
                           of a huge, wrong shape
      duplicate_entry.pt   convnet_state_dict's zip with a second copy of its first storage entry
                           (zeros) appended under the same name: zipfile writes it, torch.load
                           reads the first copy
      unreadable_extras.pt sd + a complex64, a sparse and a meta-device entry
      unreadable_optimizer.pt  {"model_state_dict": sd, "optimizer_state_dict": {"state": {0:
                           {"sparse": a sparse tensor}}, ...}}
      ddp_compile.pt       every key under "module._orig_mod." (DDP around torch.compile)
      compile_ddp.pt       every key under "_orig_mod.module."
      unknown_prefix.pt    every key under "wrapper."
      module_checkpoint.pt {"model": the whole nn_convnet.NeuralNetwork, "epoch": 3}
      mlp_module_checkpoint.pt {"model": nn_torch's whole nn.Sequential (784,30,10), "epoch": 3},
                           beside mlp_reference.safetensors
      mlp_too_wide.pt      MLP weights 784,2**26,10 (float64) as stride-0 expansions of one value:
                           a few hundred bytes on disk, about 1.7 TB to train or evaluate
      meta_param.pt        sd with model.0.weight on the meta device (a shape, no values)
      views.pt             sd with every parameter a view PyTorch reads as the same values:
                           model.0.weight channels_last, model.4.weight a slice (a storage
                           offset) of a larger channels_last tensor, model.7.weight the
                           transpose of a (576, 100) tensor, model.7.bias/model.9.bias two halves of one
                           storage, model.9.weight float64, model.4.bias expanded from (1,) to
                           (16,) when all its values are equal (stride 0) -- here a copy of
                           model.4.bias[0] repeated, with reference_views.safetensors the
                           same values, contiguous
      deflated.pt          plain.pt's entries rewritten with ZIP_DEFLATED
      big_endian.pt        plain.pt with its byteorder entry saying "big" (what torch.save writes
                           on a big-endian machine)
      legacy.pt            sd in the legacy format (_use_new_zipfile_serialization=False)
      truncated.pt         the first half of convnet_state_dict.pt's bytes
      legacy_truncated.pt  the first half of sd saved in the legacy format
                           (_use_new_zipfile_serialization=False)

expected.json: per file its model, form, the key its state_dict nests under (null at the
top level), the keys a reader must load and those it must skip, and PyTorch's evaluation of the
weights read back from that file with torch.load, on all 10,000 test images, one thread:
convnet: test_correct and test_loss = nn_convnet.py's avg loss (evaluate_tensors: the mean over
test batches of 64 of each batch's mean CrossEntropyLoss); mlp: test_correct and test_loss =
nn_torch.py's `test cost` (evaluate: the quadratic cost 0.5 ||a - y||^2 summed over the test
images, divided by 10,000; no L2 term). Losses are repr() of the double, as a JSON string
(exact with any float parser). Rerunning gives the same numbers; the .pt bytes differ (torch.save
writes a fresh .data/serialization_id each time).
"""
import collections
import copy
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

from . import common, nn_convnet, nn_torch

HERE = os.path.dirname(os.path.abspath(__file__))

ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "pt")
TRAINED = os.path.join(ROOT, "tests", "fixtures", "convnet", "trained.safetensors")
MLP_SIZES, MLP_SEED, MLP_IMAGES = [784, 30, 10], 5, 10000
EPOCH, LOSS = 3, 0.123


def one_step_optimizer(model, loss_of, make):
    """optimizer.state_dict() of `make(params)` after one real step on a copy of the model."""
    twin = copy.deepcopy(model)
    opt = make(twin.parameters())
    opt.zero_grad()
    loss_of(twin).backward()
    opt.step()
    return opt.state_dict()


def convnet(train, test):
    model = nn_convnet.build_model(0, TRAINED, torch.device("cpu"))
    x, y = train[0][:64], train[1][:64]
    opt = one_step_optimizer(model, lambda m: torch.nn.CrossEntropyLoss()(m(x), y),
                             lambda ps: torch.optim.SGD(ps, lr=0.05, weight_decay=0.001))

    def evaluate(sd):
        m = nn_convnet.NeuralNetwork()
        m.load_state_dict(sd)
        correct, _, loss = nn_convnet.evaluate_tensors(m, torch.nn.CrossEntropyLoss(), *test)
        return correct, loss
    return model.state_dict(), opt, evaluate


def mlp(train, test, tmp):
    trained = os.path.join(tmp, "mlp.safetensors")
    cmd = [sys.executable, "-m", "scripts.reference.nn_torch", "--seed", str(MLP_SEED), "--epochs", "1",
           "--train-size", str(MLP_IMAGES), "--threads", "1", "--save", trained, "--data-dir", os.path.join(ROOT, "data")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        common.fail(f"training the MLP failed: {' '.join(cmd)}: {r.stderr.strip()}")
    print(f"nn_torch.py: {r.stdout.strip().splitlines()[-1]}")
    model = nn_torch.build(MLP_SIZES)
    nn_torch.load_init(model, trained, MLP_SIZES)
    x, _, y1 = nn_torch.as_tensors(train[0][:10], train[1][:10], "cpu")
    opt = one_step_optimizer(model, lambda m: nn_torch.cost_sum("quadratic", *nn_torch.logits_and_output(m, x), y1) / 10,
                             lambda ps: torch.optim.SGD(ps, lr=0.3, momentum=0.9))
    xt, lt, yt = nn_torch.as_tensors(*test, "cpu")

    def evaluate(sd):
        m = nn_torch.build(MLP_SIZES)
        m.load_state_dict(sd)
        return nn_torch.evaluate(m, "quadratic", xt, lt, yt)
    return model.state_dict(), opt, evaluate


def write_broken():
    out = os.path.join(OUT, "broken")
    os.makedirs(out, exist_ok=True)
    nan = torch.zeros(8, 1, 3, 3)
    nan[3, 0, 1, 2] = float("nan")
    files = {
        "missing_key.pt": {"model.0.bias": torch.zeros(8)},
        "wrong_shape.pt": {"model.0.weight": torch.zeros(8, 1, 3, 4), "model.0.bias": torch.zeros(8)},
        "float16.pt": {"model.0.weight": torch.zeros(8, 1, 3, 3, dtype=torch.float16), "model.0.bias": torch.zeros(8)},
        "nan.pt": {"model.0.weight": nan, "model.0.bias": torch.zeros(8)},
        "not_a_dict.pt": [torch.zeros(2), torch.ones(3)],
    }
    for name, obj in files.items():
        path = os.path.join(out, name)
        torch.save(obj, path)
        print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")
    more = os.path.join(OUT, "more")
    os.makedirs(more, exist_ok=True)
    from safetensors.torch import load_file
    model = nn_convnet.NeuralNetwork()
    model.load_state_dict(load_file(TRAINED))
    path = os.path.join(more, "convnet_module.pt")
    torch.save(model, path)
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes): torch.save(model), the whole module")
    expanded = dict(model.state_dict())
    expanded["extra.buffer"] = torch.zeros(1).expand(46000, 46000)
    path = os.path.join(more, "convnet_expanded_buffer.pt")
    torch.save(expanded, path)
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes): a 46000x46000 expanded extra entry")


def trained_convnet():
    from safetensors.torch import load_file
    model = nn_convnet.NeuralNetwork()
    model.load_state_dict(load_file(TRAINED))
    return model


def seeded_mlp(sizes, seed):
    torch.manual_seed(seed)
    model = nn_torch.build(sizes)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64))
    return model


def write_stems(out):
    from safetensors.torch import save_file
    models = {"convnet": trained_convnet(), "mlp_784_30_10": seeded_mlp([784, 30, 10], 1),
              "mlp_784_16_16_10": seeded_mlp([784, 16, 16, 10], 2)}
    for name, model in models.items():
        sd = model.state_dict()
        save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, f"{name}.safetensors"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        forms = {"state_dict": sd, "checkpoint": {"epoch": 1, "model_state_dict": sd, "optimizer_state_dict": opt.state_dict()}}
        for form, obj in forms.items():
            d = os.path.join(out, name, form)
            os.makedirs(d, exist_ok=True)
            for n in range(1, 65):
                torch.save(obj, os.path.join(d, "s" * n + ".pt"))


def write_cases(out):
    import zipfile
    from safetensors.torch import save_file
    model = trained_convnet()
    sd = model.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "reference.safetensors"))
    big = lambda: torch.zeros(1).expand(2**19, 2**10)  # noqa: E731
    cases = {
        "huge_extras.pt": {**sd, "extra.a.weight": big(), "extra.b.weight": big(), "extra.c.weight": big()},
        "huge_param.pt": {**sd, "model.7.weight": big()},
        "unreadable_extras.pt": {**sd, "extra.complex": torch.zeros(3, dtype=torch.complex64),
                                 "extra.sparse.weight": torch.eye(3).to_sparse(),
                                 "extra.meta.weight": torch.empty(4, 5, device="meta")},
        "unreadable_optimizer.pt": {"model_state_dict": sd, "optimizer_state_dict": {
            "state": {0: {"sparse": torch.eye(3).to_sparse()}}, "param_groups": [{"lr": 0.1, "params": [0]}]}},
        "ddp_compile.pt": {"module._orig_mod." + k: v for k, v in sd.items()},
        "compile_ddp.pt": {"_orig_mod.module." + k: v for k, v in sd.items()},
        "unknown_prefix.pt": {"wrapper." + k: v for k, v in sd.items()},
        "module_checkpoint.pt": {"model": model, "epoch": 3},
        "meta_param.pt": {**sd, "model.0.weight": torch.empty(8, 1, 3, 3, device="meta")},
    }
    for name, obj in cases.items():
        torch.save(obj, os.path.join(out, name))
    views = dict(sd)
    views["model.0.weight"] = sd["model.0.weight"].contiguous(memory_format=torch.channels_last)
    bigger = torch.zeros(20, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    bigger[3:19] = sd["model.4.weight"]
    views["model.4.weight"] = bigger[3:19]
    views["model.7.weight"] = sd["model.7.weight"].t().contiguous().t()
    halves = torch.cat([sd["model.7.bias"], sd["model.9.bias"]])
    views["model.7.bias"], views["model.9.bias"] = halves[:100], halves[100:]
    views["model.9.weight"] = sd["model.9.weight"].double()
    views["model.4.bias"] = sd["model.4.bias"][:1].expand(16)
    torch.save(views, os.path.join(out, "views.pt"))
    assert views["model.7.weight"].stride() == (1, 100) and views["model.4.weight"].storage_offset() == 3 * 72
    assert views["model.4.weight"].stride() == (72, 1, 24, 8)
    save_file({k: v.contiguous() for k, v in views.items()}, os.path.join(out, "reference_views.safetensors"))
    wide, f64 = 2**26, torch.float64
    torch.save({"0.weight": torch.zeros(1, dtype=f64).expand(wide, 784), "0.bias": torch.zeros(1, dtype=f64).expand(wide),
                "2.weight": torch.zeros(1, dtype=f64).expand(10, wide), "2.bias": torch.zeros(10, dtype=f64)},
               os.path.join(out, "mlp_too_wide.pt"))
    mlp = seeded_mlp([784, 30, 10], 3)
    save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, os.path.join(out, "mlp_reference.safetensors"))
    torch.save({"model": mlp, "epoch": 3}, os.path.join(out, "mlp_module_checkpoint.pt"))
    plain = os.path.join(out, "plain.pt")
    torch.save(sd, plain)
    with zipfile.ZipFile(plain) as z:
        infos = z.infolist()
        first = next(i for i in infos if "/data/" in i.filename)
        with zipfile.ZipFile(os.path.join(out, "duplicate_entry.pt"), "w", zipfile.ZIP_STORED) as dup:
            for i in infos:
                dup.writestr(i, z.read(i))
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dup.writestr(first.filename, bytes(first.file_size))
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(os.path.join(out, "deflated.pt"), "w", zipfile.ZIP_DEFLATED) as d:
        for i in z.infolist():
            d.writestr(i.filename, z.read(i))
    with zipfile.ZipFile(plain) as z, zipfile.ZipFile(os.path.join(out, "big_endian.pt"), "w") as d:
        for i in z.infolist():
            d.writestr(i, b"big" if i.filename.endswith("/byteorder") else z.read(i))
    with open(plain, "rb") as f:
        whole = f.read()
    with open(os.path.join(out, "truncated.pt"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    legacy = os.path.join(out, "legacy.pt")
    torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    with open(legacy, "rb") as f:
        whole = f.read()
    with open(os.path.join(out, "legacy_truncated.pt"), "wb") as f:
        f.write(whole[: len(whole) // 2])


def main():
    if len(sys.argv) == 3 and sys.argv[1] in ("--stems", "--cases"):
        os.makedirs(sys.argv[2], exist_ok=True)
        (write_stems if sys.argv[1] == "--stems" else write_cases)(sys.argv[2])
        return
    write_broken()
    if sys.argv[1:] == ["--broken-only"]:
        return
    torch.set_num_threads(1)
    (tr_img, tr_lab), (te_img, te_lab) = common.load_mnist(os.path.join(ROOT, "data"))
    labels = lambda lab: torch.from_numpy(lab.astype(np.int64))  # noqa: E731
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "convnet": convnet((nn_convnet.to_tensor(tr_img), labels(tr_lab)),
                               (nn_convnet.to_tensor(te_img), labels(te_lab))),
            "mlp": mlp((tr_img, tr_lab), (te_img, te_lab), tmp),
        }
    files = []  # (name, model, form, nested_under, object to save)
    for name, (sd, opt, _) in models.items():
        ext = ".pth" if name == "mlp" else ".pt"
        files += [(f"{name}_state_dict{ext}", name, "state_dict (OrderedDict)", None, sd),
                  (f"{name}_dict.pt", name, "dict(state_dict)", None, dict(sd)),
                  (f"{name}_checkpoint.pt", name, "training checkpoint", "model_state_dict",
                   {"epoch": EPOCH, "model_state_dict": sd, "optimizer_state_dict": opt, "loss": LOSS})]
    files += [("convnet_nested_state_dict.pt", "convnet", "checkpoint", "state_dict",
               {"state_dict": models["convnet"][0], "epoch": EPOCH}),
              ("mlp_nested_model.pt", "mlp", "checkpoint", "model", {"model": models["mlp"][0], "epoch": EPOCH})]
    extra = collections.OrderedDict(models["convnet"][0])
    extra["model.0.num_batches_tracked"] = torch.tensor(0)
    files.append(("convnet_extra_int.pt", "convnet", "state_dict (OrderedDict) with an int64 scalar entry", None, extra))

    expected = {"made_by": "scripts/reference/make_pt_fixtures.py", "torch": torch.__version__, "files": {}}
    for name, model, form, key, obj in files:
        path = os.path.join(OUT, name)
        torch.save(obj, path)
        back = torch.load(path, weights_only=True)
        sd = back[key] if key else back
        params = list(models[model][0])
        correct, loss = models[model][2]({k: sd[k] for k in params})
        expected["files"][name] = {
            "model": model, "form": form, "nested_under": key,
            "dtype": "float32" if model == "convnet" else "float64",
            "keys": params, "skipped": [k for k in sd if k not in params],
            "test_total": len(te_lab), "test_correct": correct, "test_loss": repr(loss),
            "test_loss_is": ("nn_convnet.py avg loss: mean over test batches of 64 of the batch mean CrossEntropyLoss"
                             if model == "convnet" else "nn_torch.py test cost: quadratic cost summed over the test "
                             "images / 10000"),
        }
        print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes): {model}, {form}"
              f"{f' under {key!r}' if key else ''}: PyTorch's test result {correct}/{len(te_lab)}, loss {loss!r}")
    from safetensors import safe_open
    meta = safe_open(TRAINED, "np").metadata()
    mine = expected["files"]["convnet_state_dict.pt"]
    same = (str(mine["test_correct"]), mine["test_loss"]) == (meta["test_correct"], meta["test_loss"])
    print(f"convnet: {'the same result as' if same else 'WARNING: not the result'} {os.path.relpath(TRAINED, ROOT)}'s "
          f"metadata records ({meta['test_correct']}, {meta['test_loss']})")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(OUT) for n in names)
    print(f"wrote {os.path.relpath(os.path.join(OUT, 'expected.json'), ROOT)}; {total} bytes in tests/fixtures/pt/")


if __name__ == "__main__":
    main()
