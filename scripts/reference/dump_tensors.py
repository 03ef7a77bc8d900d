"""One training step of any torch.nn.Module, every intermediate tensor written to safetensors,
for `nnmnist diff` (docs/diff.md): the PyTorch side of "where does my port part from PyTorch?".

    from scripts.reference.dump_tensors import dump_step   # the repository root on PYTHONPATH
    dump_step(model, x, y, loss_fn, optimizer, "torch_step.safetensors")

(It imports only torch and safetensors: a copy of this one file serves as well.)

The step: optimizer.zero_grad(); out = model(x); loss = loss_fn(out, y); loss.backward();
optimizer.step(), in whatever mode (train/eval) the model is in. The file holds, in causal
order, with the same naming scheme as `nnmnist trace`:

- NAME: the output of each submodule, NAME its name in model.named_modules() (the prefix of
  its state_dict keys: "encoder.0", "head"). By default only the leaves (modules without
  children), as `nnmnist trace` writes them; modules="all" adds the containers. A tuple or
  list output becomes NAME.0, NAME.1, ... (non-tensors are skipped); a module called twice in
  one step writes NAME, then NAME@1, NAME@2, ...
- loss: the loss, shape [1].
- grad_output.NAME (only with output_grads=True): the gradient of the loss with respect to
  each submodule's output (full backward hooks), in the order backward reaches them (for a
  module called more than once, the first gradient backward reaches, its last call's).
- grad.KEY: each parameter's gradient, in the order backward computes them (parameter hooks).
- after.KEY: each parameter after optimizer.step(), in state_dict order.

Tensors are written detached, on the CPU, in their own dtype. The order is recorded in the
header's metadata under "order" (a JSON list of names), which `nnmnist diff` follows, so its
"first divergence" is the first tensor computed that differs; `metadata` adds entries of
your own beside it (the reference scripts' --trace records its batch and settings there). A port writes the same names
(and may record its own order the same way) for `nnmnist diff port.safetensors
torch_step.safetensors` to line the two up.
"""
import json
import os

import torch


def _tensors(name, value):
    """(name, tensor) pairs of a module's output: a tensor, or a tuple/list of them."""
    if isinstance(value, torch.Tensor):
        return [(name, value)]
    if isinstance(value, (tuple, list)):
        return [p for i, v in enumerate(value) for p in _tensors(f"{name}.{i}", v)]
    return []


def dump_step(model, x, y, loss_fn, optimizer, path, modules="leaves", output_grads=False, metadata=None):
    """Runs one step of `model` on the batch (x, y) and writes its tensors to `path` (see the
    module comment), with `metadata` (str -> str) in the header beside "order". Returns the
    names written, in order."""
    if modules not in ("leaves", "all"):
        raise ValueError(f"modules={modules!r}: 'leaves' or 'all'")
    if metadata and "order" in metadata:
        raise ValueError("metadata: 'order' is the one key dump_step writes itself")
    out, calls, handles = {}, {}, []

    def put(name, t):
        # A copy, taken now: an output may be a view of another (Flatten) or be changed in
        # place later (ReLU(inplace=True)).
        out[name] = t.detach().to("cpu").clone().contiguous()

    def call_name(name):
        n = calls.get(name, 0)
        calls[name] = n + 1
        return name if n == 0 else f"{name}@{n}"

    for name, mod in model.named_modules():
        if name == "" or (modules == "leaves" and any(True for _ in mod.children())):
            continue

        def forward_hook(_m, _inp, output, name=name):
            for k, t in _tensors(call_name(name), output):
                put(k, t)
        handles.append(mod.register_forward_hook(forward_hook))
        if output_grads:
            def backward_hook(_m, _gin, gout, name=name):
                grads = gout[0] if len(gout) == 1 else tuple(gout)
                for k, t in _tensors("grad_output." + name, grads):
                    if k not in out:
                        put(k, t)
            handles.append(mod.register_full_backward_hook(backward_hook))

    params = dict(model.named_parameters())
    grad_order = []
    for key, p in params.items():
        if p.requires_grad:
            handles.append(p.register_post_accumulate_grad_hook(lambda _p, key=key: grad_order.append(key)))
    try:
        optimizer.zero_grad()
        output = model(x)
        loss = loss_fn(output, y)
        put("loss", loss.reshape(1))
        loss.backward()
    finally:
        for h in handles:
            h.remove()
    for key in grad_order:
        if params[key].grad is not None:
            put("grad." + key, params[key].grad)
    optimizer.step()
    for key, p in params.items():
        put("after." + key, p)

    from safetensors.torch import save_file
    names = list(out)
    tmp = path + ".tmp"
    save_file(out, tmp, metadata={**(metadata or {}), "order": json.dumps(names)})
    os.replace(tmp, path)
    return names
