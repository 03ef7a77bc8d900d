"""Shared helpers for nnmnist's PyTorch reference scripts (scripts/reference/*.py).

- MNIST IDX reading (raw or .gz), with the same file names and checks as the Rust loader
  (src/data.rs), so both sides read the same bytes from the same --data-dir.
- The JSON-lines metrics schema of `nnmnist --metrics` (src/metrics.rs): writing it, and
  reading it back (scripts/compare).
- The per-epoch shuffle seed of the determinism contract, shared with the Rust side.
- The --trace file writer (scripts/compare --layers).

Only numpy and the standard library here: torch is imported by the scripts that need it.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np

IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
ROWS = COLS = 28


def fail(msg):
    """One clear message on stderr and exit status 1 (no traceback)."""
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(1)


def _find(data_dir, prefix, kind, dims):
    stems = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
    for stem in stems:
        for name in (stem, stem + ".gz"):
            path = os.path.join(data_dir, name)
            if os.path.exists(path):
                return path
    fail(f"{data_dir}: missing MNIST file {stems[0]} (or {stems[0]}.gz); "
         "scripts/make_data.py rebuilds data/")


def _read_bytes(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        fail(f"{path}: cannot read ({e})")


def read_idx(path, magic, ndims):
    """The body of an IDX file as a numpy uint8 array of the header's shape."""
    data = _read_bytes(path)
    header = 4 + 4 * ndims
    if len(data) < header:
        fail(f"{path}: truncated: {len(data)} bytes, shorter than the {header}-byte IDX header")
    found, *dims = struct.unpack(">" + "I" * (1 + ndims), data[:header])
    if found != magic:
        fail(f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}")
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        fail(f"{path}: header {dims} promises {expected} data bytes, the file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def load_split(data_dir, prefix):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of one split: prefix 'train' or 't10k'."""
    img_path = _find(data_dir, prefix, "images", 3)
    lab_path = _find(data_dir, prefix, "labels", 1)
    images = read_idx(img_path, IMAGE_MAGIC, 3)
    labels = read_idx(lab_path, LABEL_MAGIC, 1)
    if images.shape[1:] != (ROWS, COLS):
        fail(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected {ROWS}x{COLS}")
    if len(images) != len(labels):
        fail(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels")
    if len(labels) and labels.max() >= 10:
        fail(f"{lab_path}: label {labels.max()} is out of range (labels are 0-9)")
    return images, labels


def load_mnist(data_dir, train_size=None, test_size=None):
    """((train_images, train_labels), (test_images, test_labels)), the first N of each if given."""
    if not os.path.isdir(data_dir):
        fail(f"data directory {data_dir} does not exist (scripts/make_data.py rebuilds data/)")
    train = load_split(data_dir, "train")
    test = load_split(data_dir, "t10k")
    if train_size is not None:
        train = (train[0][:train_size], train[1][:train_size])
    if test_size is not None:
        test = (test[0][:test_size], test[1][:test_size])
    return train, test


def epoch_seed(seed, epoch):
    """The seed of epoch `epoch` (0-based) 's shuffle: torch.manual_seed(this); torch.randperm(n).
    Same formula on the Rust side (the determinism contract)."""
    return (seed * 100003 + epoch + 1) % (1 << 63)


class Metrics:
    """JSON lines, one object per epoch, in the schema of src/metrics.rs (EpochMetrics)."""

    FIELDS = ("model", "implementation", "epoch", "test_correct", "test_total", "test_accuracy",
              "test_loss", "train_loss", "train_seconds", "eval_seconds", "device", "seed")

    def __init__(self, path):
        self.f = None
        if path:
            try:
                self.f = open(path, "w")
            except OSError as e:
                fail(f"cannot open metrics file {path} for writing ({e.strerror})")

    def write(self, **record):
        if self.f is None:
            return
        missing = [k for k in self.FIELDS if k not in record]
        assert not missing, f"metrics record lacks {missing}"
        self.f.write(json.dumps(record) + "\n")
        self.f.flush()


def read_metrics(path):
    """(records, unreadable): the records of a metrics file (a list of dicts, in file order)
    and the 1-based numbers of the lines that are not JSON. A run cut short can leave a
    partial last line; the records it did write are still returned."""
    records, unreadable = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    unreadable.append(number)
    return records, unreadable


def check_writable(path, what):
    """Fail before training if `path` cannot be written (its directory is missing, say)."""
    if not path:
        return
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        fail(f"{what} {path}: directory {d} does not exist")
    if not os.access(d, os.W_OK):
        fail(f"{what} {path}: directory {d} is not writable")


def write_trace(arrays, path, start, size, **settings):
    """The --trace file of the reference scripts (the tensor-file contract of scripts/compare
    --layers): `arrays` (name -> numpy array) as safetensors at `path`, the batch and `settings`
    in its metadata, with the arrays' order (the dict's, their causal order) under "order" as a
    JSON list (the data's order in the file is by dtype, then name; `nnmnist diff` reads it);
    then one line on stdout saying so."""
    from safetensors.numpy import save_file
    meta = {"batch_start": str(start), "batch_size": str(size), **{k: str(v) for k, v in settings.items()},
            "order": json.dumps(list(arrays))}
    tmp = path + ".tmp"
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp, metadata=meta)
    os.replace(tmp, path)
    print(f"trace: {len(arrays)} tensors of training images [{start}, {start + size}) written to {path}")


def add_mlp_args(p):
    """The options the MLP references (nn_numpy.py, nn_torch.py) share with `nnmnist mlp`,
    with the same names and defaults."""
    p.add_argument("--sizes", default="784,30,10")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--cost", choices=["quadratic", "cross-entropy"], default="quadratic")
    p.add_argument("--lambda", dest="lmbda", type=float, default=0.0)
    p.add_argument("--init", choices=["normal", "scaled"], default="normal")
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--test-size", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="data")
    p.add_argument("--metrics", default=None)
    p.add_argument("--no-shuffle", action="store_true")


def parse_mlp_args(p):
    """Parses the arguments and checks the MLP options as `nnmnist mlp` does; returns
    (args, sizes)."""
    args = p.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        fail(f"--sizes must be integers separated by commas, got {args.sizes}")
    if len(sizes) < 2 or sizes[0] != 784 or sizes[-1] != 10 or min(sizes) < 1:
        fail(f"--sizes must run from 784 to 10 with no empty layer, got {args.sizes}")
    for name in ("epochs", "batch_size", "train_size"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be at least 1")
    if not np.isfinite(args.eta) or args.eta <= 0:
        fail(f"--eta must be a finite number above 0, got {args.eta}")
    if not np.isfinite(args.lmbda) or args.lmbda < 0:
        fail(f"--lambda must be a finite number, 0 or above, got {args.lmbda}")
    return args, sizes
