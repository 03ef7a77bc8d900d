"""Shared helpers of the PyTorch reference scripts (the package scripts.reference).

- MNIST IDX reading (raw or .gz), by the file names nnmnist looks for in --data-dir.
- The JSON-lines metrics schema of `nnmnist --metrics` (src/metrics.rs): writing it, and
  reading it back (scripts/compare).
- The per-epoch shuffle seed of the determinism contract, shared with the Rust side.
- The MLP references' options.

The data are validated once, by nnmnist (src/data.rs: names, header, sizes, labels, copies);
the references read the directory nnmnist reads (scripts/compare runs nnmnist on it, the
tests and fixture writers read data/, which scripts/make_data.py rebuilds and checks against
MNIST's SHA-256) and take the files as they are. A file they cannot take apart stops them
with one line that names it and points at nnmnist for what is wrong.

Only numpy and the standard library here: torch is imported by the scripts that need it.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np


def fail(msg):
    """One clear message on stderr and exit status 1 (no traceback)."""
    print(f"{os.path.basename(sys.argv[0])}: {msg}", file=sys.stderr)
    sys.exit(1)


def _find(data_dir, prefix, kind, dims):
    """The first of the names nnmnist reads (src/data.rs) that is there."""
    stems = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
    for stem in stems:
        for name in (stem, stem + ".gz"):
            path = os.path.join(data_dir, name)
            if os.path.exists(path):
                return path
    fail(f"{data_dir}: missing MNIST file {stems[0]} (or {stems[0]}.gz); "
         "scripts/make_data.py rebuilds data/")


def read_idx(path, ndims):
    """The body of an IDX file (a u32 magic, `ndims` big-endian u32 dimensions, then u8
    values) as a numpy uint8 array of the header's shape."""
    header = 4 + 4 * ndims
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
        dims = struct.unpack(f">{ndims}I", data[4:header])
        return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()
    except (OSError, EOFError, struct.error, ValueError) as e:
        fail(f"{path}: cannot read it as an IDX file of {ndims} dimension(s) ({e}); "
             "nnmnist, which validates the data, says what is wrong with it")


def load_split(data_dir, prefix):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of one split: prefix 'train' or 't10k'."""
    return (read_idx(_find(data_dir, prefix, "images", 3), 3),
            read_idx(_find(data_dir, prefix, "labels", 1), 1))


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


def say_traced(names, path, start, size):
    """The line a reference's --trace prints when its file is written."""
    print(f"trace: {len(names)} tensors of training images [{start}, {start + size}) written to {path}")


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
