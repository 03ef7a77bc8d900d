"""Writes a set of real-world-like images of handwritten digits, for the comparison of
nnmnist's preprocessing (src/digit/) with its reference (preprocess.py): tests/it/digit.rs
makes them at test time.

    .venv/bin/python -m scripts.reference.make_digit_images OUT_DIR [--data-dir data]

Scans and photos, synthesised from MNIST test digits (each drawn large as a pen's stroke:
the 28x28 digit enlarged, its edge sharpened) and from digits drawn as pen strokes (lines,
anti-aliased): dark ink on white paper, grey paper under a gradient of light, a vignette,
noise, JPEG, off centre, small and large digits, colour ink on colour paper, a transparent
background, light chalk on a dark board, specks of dust, a photo whose EXIF says to rotate
it, 16-bit grey, PGM and PPM, and MNIST's own 28x28 digits as PNG. Everything is seeded
(numpy's default_rng(SEED)): the same bytes every time.

OUT_DIR/manifest.json lists them: [{"file": NAME, "label": DIGIT, "kind": KIND}, ...].
"""
import argparse
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from . import common

SEED = 27
# MNIST test images used (their labels: 7 2 1 0 4 1 4 9 5 9 0 6 9 0 1 5 9 7 3 4).
MNIST_INDICES = list(range(20))

# Digits as pen strokes: polylines in a 0..1 box (x right, y down).
STROKES = {
    1: [[(0.35, 0.2), (0.55, 0.05), (0.55, 0.95)]],
    4: [[(0.6, 0.05), (0.1, 0.65), (0.85, 0.65)], [(0.65, 0.3), (0.65, 0.97)]],
    7: [[(0.1, 0.08), (0.85, 0.08), (0.4, 0.95)], [(0.3, 0.5), (0.7, 0.5)]],
    2: [[(0.15, 0.25), (0.3, 0.08), (0.6, 0.05), (0.8, 0.2), (0.75, 0.45), (0.15, 0.92), (0.88, 0.92)]],
    0: [[(0.5, 0.05), (0.2, 0.2), (0.12, 0.5), (0.2, 0.82), (0.5, 0.95), (0.8, 0.82), (0.88, 0.5), (0.8, 0.2), (0.5, 0.05)]],
}


def mnist_mask(digit, height):
    """A 28x28 MNIST digit as ink coverage 0..1, `height` pixels per 28: enlarged, edge sharpened."""
    size = max(2, round(height))
    up = Image.fromarray(digit.astype(np.float32) / 255.0, mode="F").resize((size, size), Image.BICUBIC)
    return np.clip((np.asarray(up, dtype=np.float64) - 0.3) / 0.35, 0.0, 1.0)


def stroke_mask(label, height, width_frac=0.07):
    """A digit drawn as pen strokes, `height` pixels tall, anti-aliased (drawn 4x, then averaged)."""
    s = 4
    size = max(2, round(height))
    big = Image.new("L", (size * s, size * s), 0)
    d = ImageDraw.Draw(big)
    for line in STROKES[label]:
        pts = [(x * size * s, y * size * s) for x, y in line]
        d.line(pts, fill=255, width=max(1, round(width_frac * size * s)), joint="curve")
    a = np.asarray(big, dtype=np.float64) / 255.0
    return a.reshape(size, s, size, s).mean(axis=(1, 3))


def place(mask, w, h, top, left):
    """The mask in a (h, w) field at (top, left)."""
    out = np.zeros((h, w))
    mh, mw = mask.shape
    out[top:top + mh, left:left + mw] = mask
    return out


def lighting(w, h, kind):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        return 0.55 + 0.45 * xx / (w - 1)
    if kind == "diagonal":
        return 0.6 + 0.4 * (xx / (w - 1) + yy / (h - 1)) / 2
    if kind == "vignette":
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        return 1.0 - 0.35 * r2
    return np.ones((h, w))


def compose(mask, paper, ink, light=None, noise=0.0, rng=None):
    """RGB float image: paper and ink colours (3-tuples 0..1) by the mask, times the light, plus noise."""
    m = mask[..., None]
    img = np.asarray(paper)[None, None, :] * (1 - m) + np.asarray(ink)[None, None, :] * m
    if light is not None:
        img = img * light[..., None]
    if noise:
        img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0.0, 1.0)


def u8(img):
    return np.clip(np.floor(img * 255.0 + 0.5), 0, 255).astype(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "data"))
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    images, labels = common.load_split(a.data_dir, "t10k")
    rng = np.random.default_rng(SEED)
    manifest = []

    def save(name, kind, label, array, **kw):
        path = os.path.join(a.out_dir, name)
        Image.fromarray(array).save(path, **kw)
        manifest.append({"file": name, "label": int(label), "kind": kind})

    white, black = (0.94, 0.94, 0.93), (0.08, 0.08, 0.1)
    for n, i in enumerate(MNIST_INDICES[:4]):
        save(f"mnist_{i}.png", "MNIST's own 28x28", labels[i], images[i])
    for n, i in enumerate(MNIST_INDICES[4:7]):
        m = place(mnist_mask(images[i], 180), 256, 256, 30, 40)
        save(f"scan_{i}.png", "scan, dark on white", labels[i], u8(compose(m, white, black)[..., 0]))
    for n, i in enumerate(MNIST_INDICES[7:9]):
        m = place(mnist_mask(images[i], 200), 300, 260, 20, 60)
        img = compose(m, (0.7,) * 3, (0.15,) * 3, lighting(300, 260, "gradient"))
        save(f"grey_gradient_{i}.png", "grey paper, gradient of light", labels[i], u8(img[..., 0]))
    for n, i in enumerate(MNIST_INDICES[9:11]):
        m = place(mnist_mask(images[i], 220), 320, 320, 40, 50)
        img = compose(m, white, black, lighting(320, 320, "vignette"), noise=0.01, rng=rng)
        save(f"vignette_{i}.png", "vignette and noise", labels[i], u8(img[..., 0]))
    for n, i in enumerate(MNIST_INDICES[11:13]):
        m = place(mnist_mask(images[i], 200), 260, 260, 30, 30)
        img = compose(m, (0.8,) * 3, (0.2,) * 3, noise=0.04, rng=rng)
        save(f"noise_{i}.png", "grey paper, strong noise", labels[i], u8(img[..., 0]))
    for n, i in enumerate(MNIST_INDICES[13:15]):
        m = place(mnist_mask(images[i], 300), 640, 480, 90, 170)
        img = compose(m, (0.9, 0.87, 0.8), (0.12, 0.12, 0.2), lighting(640, 480, "diagonal"), noise=0.02, rng=rng)
        save(f"photo_{i}.jpg", "photo: colour, light, noise, JPEG", labels[i], u8(img), quality=80)
    for n, i in enumerate(MNIST_INDICES[15:17]):
        m = place(mnist_mask(images[i], 90), 400, 300, 10, 15)
        save(f"off_centre_{i}.png", "off centre", labels[i], u8(compose(m, white, black)[..., 0]))
    for n, i in enumerate(MNIST_INDICES[17:19]):
        m = place(mnist_mask(images[i], 28), 300, 300, 150, 120)
        save(f"small_{i}.png", "small digit", labels[i], u8(compose(m, white, black)[..., 0]))
    i = MNIST_INDICES[19]
    m = place(mnist_mask(images[i], 840), 1200, 900, 30, 200)
    img = compose(m, (0.92, 0.92, 0.9), (0.1, 0.1, 0.12), lighting(1200, 900, "gradient"), noise=0.015, rng=rng)
    save(f"large_{i}.jpg", "large photo, JPEG", labels[i], u8(img), quality=85)
    for n, i in enumerate([0, 2]):
        m = place(mnist_mask(images[i], 150), 220, 200, 25, 35)
        img = compose(m, (0.98, 0.95, 0.7), (0.1, 0.2, 0.6))
        save(f"colour_{i}.ppm", "blue ink on yellow paper, PPM", labels[i], u8(img))
    for n, i in enumerate([1, 3]):
        m = place(mnist_mask(images[i], 160), 200, 200, 20, 20)
        rgba = np.zeros((200, 200, 4), np.uint8)
        rgba[..., 3] = u8(m)
        save(f"alpha_{i}.png", "black ink on a transparent background", labels[i], rgba)
    for n, i in enumerate([4, 5]):
        m = place(mnist_mask(images[i], 200), 300, 260, 30, 50)
        img = compose(m, (0.15, 0.3, 0.2), (0.9, 0.92, 0.88), noise=0.02, rng=rng)
        save(f"chalk_{i}.png", "chalk on a board, light on dark", labels[i], u8(img))
    for n, i in enumerate([6, 7]):
        m = place(mnist_mask(images[i], 160), 320, 320, 80, 80)
        dots = Image.new("L", (320, 320), 0)
        d = ImageDraw.Draw(dots)
        for _ in range(12):
            x, y = rng.integers(5, 315, size=2)
            if 60 <= x <= 260 and 60 <= y <= 260:
                continue
            r = int(rng.integers(1, 4))
            d.ellipse([x - r, y - r, x + r, y + r], fill=255)
        m = np.maximum(m, np.asarray(dots, dtype=np.float64) / 255.0)
        save(f"specks_{i}.png", "specks of dust around the digit", labels[i], u8(compose(m, white, black)[..., 0]))
    i = 8
    m = place(mnist_mask(images[i], 200), 240, 320, 60, 20)
    img = compose(m, (0.9, 0.9, 0.88), (0.1, 0.1, 0.1), lighting(240, 320, "gradient"), noise=0.01, rng=rng)
    # Stored turned a quarter to the left, with EXIF orientation 6 ("rotate 90 clockwise to view").
    turned = Image.fromarray(u8(img)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned.save(os.path.join(a.out_dir, f"exif_{i}.jpg"), quality=90, exif=exif)
    manifest.append({"file": f"exif_{i}.jpg", "label": int(labels[i]), "kind": "JPEG with EXIF orientation 6"})
    i = 9
    m = place(mnist_mask(images[i], 100), 140, 130, 15, 20)
    img16 = np.floor(compose(m, (0.85,) * 3, (0.1,) * 3)[..., 0] * 65535 + 0.5).astype(np.uint16)
    save(f"grey16_{i}.png", "16-bit grey PNG", labels[i], img16)
    i = 10
    m = place(mnist_mask(images[i], 120), 160, 150, 10, 25)
    save(f"pgm_{i}.pgm", "PGM", labels[i], u8(compose(m, white, black)[..., 0]))
    for label in sorted(STROKES):
        m = place(stroke_mask(label, 200), 280, 280, 40, 40)
        save(f"drawn_{label}.png", "pen strokes on a white canvas", label, u8(compose(m, (1.0,) * 3, (0.0,) * 3)[..., 0]))
    with open(os.path.join(a.out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest)} images written to {a.out_dir}")


if __name__ == "__main__":
    main()
