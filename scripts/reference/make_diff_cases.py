#!/usr/bin/env python3
"""Writes, into OUT, the tensor files tests/it/tensor_files.rs holds nnmnist against: pairs of
.pt/.safetensors files with PyTorch's own verdict on each pair, crafted files that must be
read or refused in bounded memory, and seeded mutants of a real torch.save pickle and of a
safetensors header.

    .venv/bin/python -m scripts.reference.make_diff_cases OUT [--mutants N] [--seed S]

OUT/cases.json: {"pairs": {NAME: {"a", "b", "torch_equal", "exit", "phrase", "flags"}},
                 "crafted": {NAME: {"file", "phrase"}}, "mutants": [FILE...], "seed": S}
  torch_equal  PyTorch's verdict: every tensor equal (torch.equal, same dtype and shape) under
               the same keys, modules compared by their state_dict
  exit         what nnmnist diff must answer: 0 same, 1 different, 2 trouble (a file it
               cannot account for), and phrase, a part of what it says then
"""
import argparse
import collections
import io
import json
import os
import pickle
import random
import struct
import tarfile
import zipfile

import torch
from safetensors.torch import save_file

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--mutants", type=int, default=300)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
out = a.out
os.makedirs(f"{out}/fuzz", exist_ok=True)
t = torch.tensor
pairs, crafted = {}, {}


def deep_equal(x, y):
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)
    if isinstance(x, torch.nn.Module):
        return isinstance(y, torch.nn.Module) and deep_equal(x.state_dict(), y.state_dict())
    if isinstance(x, dict):
        return isinstance(y, dict) and list(x) == list(y) and all(deep_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(deep_equal(u, v) for u, v in zip(x, y))
    return x == y


def pair(name, x, y, exit, phrase="", legacy=False, flags=(), equal=None):
    for side, obj in (("a", x), ("b", y)):
        torch.save(obj, f"{out}/{name}_{side}.pt", _use_new_zipfile_serialization=not legacy)
    pairs[name] = dict(a=f"{name}_a.pt", b=f"{name}_b.pt", torch_equal=deep_equal(x, y) if equal is None else equal,
                       exit=exit, phrase=phrase, flags=list(flags))


# Names that would collide once flattened: refused, naming both places.
pair("collide_dot", {"a.b": t([1.]), "a": {"b": t([5.])}}, {"a.b": t([2.]), "a": {"b": t([5.])}}, 2,
     'two tensors would both be named "a.b"')
pair("collide_int", {1: t([1.]), "1": t([3.])}, {1: t([2.]), "1": t([3.])}, 2, 'two tensors would both be named "1"')
pair("collide_legacy", {"a.b": t([1.]), "a": {"b": t([5.])}}, {"a.b": t([2.]), "a": {"b": t([5.])}}, 2,
     'two tensors would both be named "a.b"', legacy=True)
# A key nnmnist has no name for, and an object it cannot name: refused, naming the place.
pair("tuple_key", {"w": t([1.]), (1, 2): t([1.])}, {"w": t([1.]), (1, 2): t([2.])}, 2, "[(1, 2)] is under a key of type tuple")
pair("tensor_key", {t([1.]): 1, "w": t([1.])}, {t([2.]): 1, "w": t([1.])}, 2, "a tensor is a dictionary key at the top", equal=False)
P = collections.namedtuple("P", "x y")
pair("namedtuple", {"p": P(t([1.]), t([2.]))}, {"p": P(t([1.]), t([3.]))}, 2, 'at ["p"] are inside a __main__.P object')


# Deep nesting: compared, however deep.
def nest(v, n):
    for _ in range(n):
        v = {"a": v}
    return v


pair("deep", nest(t([1.]), 100), nest(t([2.]), 100), 1, "first divergence: " + ".".join(["a"] * 100))
pair("deep_same", nest(t([1.]), 100), nest(t([1.]), 100), 0)
# A module under any key reads as its state_dict under that key.
torch.manual_seed(0)
m1, m2 = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
pair("module_key", {"net": m1}, {"net": m2}, 1, "first divergence: net.weight")
pair("module_key_same", {"net": m1}, {"net": m1}, 0)
pair("module_key_legacy", {"net": m1}, {"net": m2}, 1, "first divergence: net.weight", legacy=True)
# Integers compare by value, whatever the tolerance.
pair("bigint", {"i": t([2 ** 53 + 1])}, {"i": t([2 ** 53])}, 1, "A 9007199254740993 B 9007199254740992", flags=["--rtol", "0", "--atol", "0"])
# Stride-0 views of one element: 2**40 elements, 4 bytes stored.
pair("expanded", {"w": torch.zeros(1).expand(2 ** 40)}, {"w": torch.ones(1).expand(2 ** 40)}, 1,
     "1099511627776 of 1099511627776", equal=False)
pair("expanded_same", {"w": torch.zeros(1).expand(2 ** 40)}, {"w": torch.zeros(1).expand(2 ** 40)}, 0, equal=True)


# A whole module reads as its state_dict(): its non-persistent buffer left out.
class WithBuffers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.register_buffer("kept", torch.arange(3.))
        self.register_buffer("scratch", torch.ones(4), persistent=False)


torch.manual_seed(1)
whole = WithBuffers()
sd = whole.state_dict()
save_file({k: v.contiguous() for k, v in sd.items()}, f"{out}/whole_sd.safetensors")
for name, legacy in (("whole_module", False), ("whole_module_legacy", True)):
    torch.save(whole, f"{out}/{name}.pt", _use_new_zipfile_serialization=not legacy)
    pairs[name] = dict(a=f"{name}.pt", b="whole_sd.safetensors", torch_equal=True, exit=0, phrase="tensors: 3 in all, 3 within", flags=[])


# A value that is there twice is pickled once and read again through the memo: a
# dictionary, a list, a submodule (tied weights); each place counts, as in the state_dict.
shared = {"w": t([1.])}
pair("shared_dict", {"a": shared, "b": shared}, {"a": {"w": t([1.])}, "b": {"w": t([1.])}}, 0)
pair("shared_dict_legacy", {"a": shared, "b": shared}, {"a": {"w": t([1.])}, "b": {"w": t([1.])}}, 0, legacy=True)
shared_list = [t([1.]), t([2.])]
pair("shared_list", {"a": shared_list, "b": shared_list}, {"a": [t([1.]), t([2.])], "b": [t([1.]), t([3.])]}, 1,
     "first divergence: b.1")


# A defaultdict is a dictionary; a subclass of dict holding no tensor is passed over, as any
# value that is no tensor.
pair("defaultdict", {"d": collections.defaultdict(list, {"t": t([1.])})}, {"d": {"t": t([2.])}}, 1, "first divergence: d.t")


class Config(dict):
    pass


pair("dict_subclass", {"cfg": Config(lr=0.1), "w": t([1.])}, {"cfg": Config(lr=0.1), "w": t([1.])}, 0)


class Loaded:
    """A value that unpickles as torch.load(path): a tensor the file does not describe."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return torch.load, (self.path,)


# Instances of torch's own classes that are no tensors (made by NEWOBJ, not called), and its
# value types: passed over (every tensor of the pair is equal; the objects are not ==).
objs = lambda: {"scaler": torch.amp.GradScaler("cpu"), "loss": torch.nn.CrossEntropyLoss(), "dev": torch.device("cpu"),
                "size": torch.Size([2]), "w": t([1.])}
pair("torch_objects", objs(), objs(), 0, "tensors: 1 in all, 1 within", equal=True)
torch.save(t([1.]), f"{out}/loaded_1.pt")
torch.save(t([2.]), f"{out}/loaded_2.pt")
cwd = os.getcwd()
os.chdir(out)
pair("call_of_torch", {"w": t([1.]), "x": Loaded("loaded_1.pt")}, {"w": t([1.]), "x": Loaded("loaded_2.pt")}, 2,
     "is built by calling torch.serialization.load", equal=False)
pairs["call_of_torch"]["torch_equal"] = deep_equal(torch.load("call_of_torch_a.pt", weights_only=False),
                                                   torch.load("call_of_torch_b.pt", weights_only=False))
os.chdir(cwd)


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(2, 2)
        self.b = self.a


torch.manual_seed(3)
tied = Tied()
torch.save(tied, f"{out}/tied_module.pt")
save_file({k: v.clone().contiguous() for k, v in tied.state_dict().items()}, f"{out}/tied_sd.safetensors")
pairs["tied_module"] = dict(a="tied_module.pt", b="tied_sd.safetensors", torch_equal=True, exit=0,
                            phrase="tensors: 4 in all, 4 within", flags=[])


def zip_entries(obj):
    """The entries of torch.save's zip of `obj`: (name, bytes), in its order."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        return [(n, z.read(n)) for n in z.namelist()]


# A zip whose entries are in two folders: torch.load reads the first entry's folder and
# refuses entries outside it (it has no verdict); nnmnist refuses it too, rather than read
# the other folder's data.pkl.
with zipfile.ZipFile(f"{out}/two_roots_a.pt", "w") as z:
    for n, d in zip_entries({"w": t([1.])}):
        z.writestr("first/" + n.split("/", 1)[1], d)
    for n, d in zip_entries({"w": t([2.])}):
        z.writestr(n.split("/", 1)[1], d)
torch.save({"w": t([2.])}, f"{out}/two_roots_b.pt")
pairs["two_roots"] = dict(a="two_roots_a.pt", b="two_roots_b.pt", torch_equal=False, exit=2,
                          phrase="is outside the folder first/ of its first entry", flags=[])


def safetensors_bytes(header, data):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def library_rejects(path):
    from safetensors import safe_open
    try:
        with safe_open(path, "pt") as f:
            for k in f.keys():
                f.get_tensor(k)
        return False
    except Exception:
        return True


good = safetensors_bytes({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, struct.pack("<f", 1.0))
with open(f"{out}/st_good.safetensors", "wb") as f:
    f.write(good)
bad_headers = {
    "st_duplicate": ('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                     '"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', 8, 'names "a" twice'),
    "st_overlap": ('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                   '"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}', 12, "overlaps"),
    "st_gap": ('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
               '"b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}', 12, "gap"),
}
for name, (header, n, phrase) in bad_headers.items():
    h = header.encode()
    path = f"{out}/{name}.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + bytes(n))
    pairs[name] = dict(a=f"{name}.safetensors", b="st_good.safetensors", torch_equal=False, exit=2, phrase=phrase, flags=[],
                       library_rejects=library_rejects(path))


def st_pair(name, a, b, exit, phrase=""):
    """A pair of safetensors files (header, data) each, with the verdict of torch.equal on
    what the safetensors library reads from them."""
    from safetensors.torch import load_file
    for side, (header, data) in (("a", a), ("b", b)):
        with open(f"{out}/{name}_{side}.safetensors", "wb") as f:
            f.write(safetensors_bytes(header, data))
    ta, tb = (load_file(f"{out}/{name}_{side}.safetensors") for side in "ab")
    pairs[name] = dict(a=f"{name}_a.safetensors", b=f"{name}_b.safetensors", torch_equal=deep_equal(ta, tb), exit=exit,
                       phrase=phrase, flags=[])


# A bool stored as a byte other than 0 or 1 is true, as torch reads it.
bools = {"m": {"dtype": "BOOL", "shape": [2], "data_offsets": [0, 2]}}
st_pair("bool_bytes", (bools, b"\x01\x02"), (bools, b"\x01\x01"), 0)
# A field of an entry that the format does not name is ignored, as the library ignores it.
st_pair("st_extra_field", ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "note": "x"}}, struct.pack("<f", 1.0)),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, struct.pack("<f", 1.0)), 0)
# One 40 GB tensor claimed by a few bytes.
with open(f"{out}/st_40gb.safetensors", "wb") as f:
    f.write(safetensors_bytes({"w": {"dtype": "F32", "shape": [10 ** 10], "data_offsets": [0, 4 * 10 ** 10]}}, b""))
crafted["st_40gb"] = dict(file="st_40gb.safetensors", phrase="runs past the end of the file")
# (eval_phrase, where given, is what eval says instead: it checks the shape before reading.)
# A header length beyond the format's bound (100,000,000 bytes), in a 9-byte file.
with open(f"{out}/st_big_header.safetensors", "wb") as f:
    f.write(struct.pack("<Q", 200_000_000) + b"{")
crafted["st_big_header"] = dict(file="st_big_header.safetensors", phrase="is beyond the 100000000 the safetensors format allows")
# A zip that is not torch.save's, and a tar (the format of PyTorch 0.1 to 0.3).
with zipfile.ZipFile(f"{out}/not_torch.zip", "w") as z:
    z.writestr("hello.txt", "hello")
crafted["not_torch_zip"] = dict(file="not_torch.zip", phrase="it has no data.pkl, so it is not torch.save's format")
with tarfile.open(f"{out}/old.tar", "w") as tf:
    for name in ("sys_info", "pickle", "tensors", "storages"):
        info = tarfile.TarInfo(name)
        info.size = 1
        tf.addfile(info, io.BytesIO(b"."))
crafted["tar"] = dict(file="old.tar", phrase="in the tar format of PyTorch 0.1 to 0.3")


def torch_zip(path, pkl, storages=(), compress=zipfile.ZIP_STORED):
    """A zip laid out as torch.save lays it out, with the pickle `pkl`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl, compress_type=compress)
        z.writestr("archive/byteorder", "little")
        for key, data in storages:
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")


# Memo puts of a 3000-element list, 3000 of them (6.6 KB): no GET reads them, so nothing
# is copied; a list of Nones, no tensors.
torch_zip(f"{out}/memo_puts.pt", b"\x80\x02](" + b"N" * 3000 + b"e" + b"\x94" * 3000 + b".")
crafted["memo_puts"] = dict(file="memo_puts.pt", phrase="hold no tensors to compare", eval_phrase="missing tensor model.0.weight")
# Memo gets that copy a 3000-element list 3000 times (12 KB).
torch_zip(f"{out}/memo_gets.pt", b"\x80\x02](" + b"N" * 3000 + b"eq\x00(" + b"h\x00" * 3000 + b"l.")
crafted["memo_gets"] = dict(file="memo_gets.pt", phrase="more values than the")
# 16M stack slots from a deflated pickle of 16 KB.
torch_zip(f"{out}/stack.pt", b"\x80\x02" + b"N" * 16_000_000 + b".", compress=zipfile.ZIP_DEFLATED)
crafted["stack"] = dict(file="stack.pt", phrase="more values than the")


class Storage:
    pass


class Rebuild:
    """A tensor of any claimed shape over a one-element storage."""

    def __init__(self, size, stride):
        self.size, self.stride = size, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (Storage(), 0, self.size, self.stride, False, collections.OrderedDict())


def claimed(size, stride):
    buf = io.BytesIO()
    pk = pickle.Pickler(buf, protocol=2)
    pk.persistent_id = lambda o: ("storage", torch.FloatStorage, "0", "cpu", 1) if isinstance(o, Storage) else None
    pk.dump({"model.0.weight": Rebuild(size, stride)})
    return buf.getvalue()


# A shape whose byte count wraps 64 bits, over a storage of one element.
torch_zip(f"{out}/wraps.pt", claimed((2 ** 61,), (1,)), [("0", struct.pack("<f", 1.0))])
crafted["wraps"] = dict(file="wraps.pt", phrase="reaches element", eval_phrase="has shape [2305843009213693952]")


class Described:
    """A tensor over storage `key` of class `cls` that the persistent id says holds `numel`
    elements."""

    def __init__(self, cls, key, numel, size):
        self.cls, self.key, self.numel, self.size = cls, key, numel, size

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self, 0, self.size, (1,), False, collections.OrderedDict())


def described(obj, legacy=False):
    """The pickle of `obj`, whose Described tensors' storages are persistent ids (with the
    legacy format's sixth field, its view, when `legacy`)."""
    buf = io.BytesIO()
    pk = pickle.Pickler(buf, protocol=2)
    seen = set()

    def pid(o):
        # The tensor itself is pickled by __reduce__; its first argument (itself again) is
        # the storage.
        if isinstance(o, Described) and id(o) in seen:
            return ("storage", o.cls, o.key, "cpu", o.numel) + ((None,) if legacy else ())
        if isinstance(o, Described):
            seen.add(id(o))
        return None

    pk.persistent_id = pid
    pk.dump(obj)
    return buf.getvalue()


def legacy_file(path, pkl, storages):
    """PyTorch's legacy format around the object pickle `pkl`: storages (key, count, bytes)."""
    with open(path, "wb") as f:
        for v in (0x1950a86a20f9469cfc6c, 1001, dict(protocol_version=1001, little_endian=True,
                                                     type_sizes=dict(short=2, int=4, long=4))):
            pickle.dump(v, f, protocol=2)
        f.write(pkl)
        pickle.dump([k for k, _, _ in storages], f, protocol=2)
        for _, count, data in storages:
            f.write(struct.pack("<q", count) + data)


four = struct.pack("<4f", 1, 2, 3, 4)
# One storage read as float32 by one tensor and as int32 by another (torch.save refuses to
# write that; torch.load reads both as float32): not compared, never "the same" as the
# int32 reading of those bytes.
both = {"a": Described(torch.FloatStorage, "0", 4, (4,)), "b": Described(torch.IntStorage, "0", 4, (4,))}
torch_zip(f"{out}/two_dtypes_a.pt", described(both), [("0", four)])
torch.save({"a": t([1., 2., 3., 4.]), "b": torch.frombuffer(bytearray(four), dtype=torch.int32)}, f"{out}/two_dtypes_b.pt")
pairs["two_dtypes"] = dict(a="two_dtypes_a.pt", b="two_dtypes_b.pt", torch_equal=deep_equal(torch.load(f"{out}/two_dtypes_a.pt"), torch.load(f"{out}/two_dtypes_b.pt")),
                           exit=2, phrase='its storage "0" is read as float32 and int32', flags=[])
# The same in the legacy format, where the storage's size in the file depends on its dtype.
legacy_file(f"{out}/two_dtypes_legacy.pt", described(both, legacy=True), [("0", 4, four)])
pairs["two_dtypes_legacy"] = dict(a="two_dtypes_legacy.pt", b="two_dtypes_b.pt", torch_equal=False, exit=2,
                                  phrase='storage "0" is named both as float32 and as int32', flags=[])
# A storage that holds other than its persistent id says (torch.load refuses the file).
torch_zip(f"{out}/numel_a.pt", described({"w": Described(torch.FloatStorage, "0", 2, (2,))}), [("0", four)])
torch.save({"w": t([1., 2.])}, f"{out}/numel_b.pt")
pairs["numel"] = dict(a="numel_a.pt", b="numel_b.pt", torch_equal=False, exit=2,
                      phrase="holds 16 bytes, but the file describes it as 2 elements of float32", flags=[])
legacy_file(f"{out}/numel_legacy_a.pt", described({"w": Described(torch.FloatStorage, "0", 2, (2,))}, legacy=True), [("0", 4, four)])
pairs["numel_legacy"] = dict(a="numel_legacy_a.pt", b="numel_b.pt", torch_equal=False, exit=2,
                             phrase="holds 16 bytes, but the file describes it as 2 elements of float32", flags=[])
# A real torch.save of a 2**40-element expansion (1.6 KB), against itself: the same.
torch.save({"w": torch.zeros(1).expand(2 ** 40)}, f"{out}/expand40.pt")

# Mutants of a real torch.save pickle and of a safetensors header.
rng = random.Random(a.seed)
torch.manual_seed(2)
net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
buf = io.BytesIO()
torch.save({"model_state_dict": net.state_dict(), "epoch": 3, "opt": {"state": {0: {"m": torch.ones(3, 4)}}}}, buf)
with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
    names = z.namelist()
    pkl_name = next(n for n in names if n.endswith("data.pkl"))
    base_pkl = z.read(pkl_name)
    entries = {n: z.read(n) for n in names if n != pkl_name}
opcodes = b"()]}NKJMqr\x94hjtulsedabR\x81Q\x85\x86\x87X\x8c\x8a\x8b.0"
st_header = json.dumps({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                        "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
                        "__metadata__": {"order": '["b", "a"]'}}).encode()


def mutate(b):
    b = bytearray(b)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        i = rng.randrange(len(b)) if b else 0
        if kind == 0 and b:
            b[i] = rng.randrange(256)
        elif kind == 1:
            b[i:i] = bytes(rng.choice(opcodes) for _ in range(rng.randint(1, 8)))
        elif kind == 2 and b:
            j = min(len(b), i + rng.randint(1, 16))
            b[i:i] = b[i:j] * rng.randint(2, 3000)
        elif kind == 3:
            del b[i:i + rng.randint(1, 32)]
        else:
            digits = b"0123456789"
            b[i:i] = bytes(rng.choice(digits) for _ in range(rng.randint(1, 20)))
    return bytes(b)


mutants = []
for k in range(a.mutants):
    if k % 3 == 2:
        h = mutate(st_header)
        data = bytes(rng.randrange(256) for _ in range(40))
        name = f"fuzz/st_{k}.safetensors"
        with open(f"{out}/{name}", "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + data)
    else:
        name = f"fuzz/pt_{k}.pt"
        with zipfile.ZipFile(f"{out}/{name}", "w") as z:
            z.writestr(pkl_name, mutate(base_pkl), compress_type=rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            for n, d in entries.items():
                z.writestr(n, d)
    mutants.append(name)

with open(f"{out}/cases.json", "w") as f:
    json.dump({"pairs": pairs, "crafted": crafted, "mutants": mutants, "seed": a.seed}, f, indent=1)
print(f"make_diff_cases.py: {len(pairs)} pairs, {len(crafted)} crafted files, {len(mutants)} mutants (seed {a.seed}) in {out}")
