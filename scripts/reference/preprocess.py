"""The reference of `nnmnist predict`'s preprocessing (src/digit/), in PIL + numpy + scipy:
any photo or scan of one handwritten digit to the 28x28 input of MNIST's own form.

    .venv/bin/python -m scripts.reference.preprocess IMAGE...            # one JSON line each
    .venv/bin/python -m scripts.reference.preprocess IMAGE... --convnet W.safetensors --mlp W.pth

Each line: {"image": PATH, "pixels": [784 ints 0-255, row-major, 0 = background],
"polarity": ..., ...} or {"image": PATH, "error": MESSAGE}; with --convnet / --mlp, the
PyTorch model's ten probabilities on those pixels too (softmax of the convnet's logits; the
MLP's sigmoid outputs divided by their sum, as `nnmnist predict` and `show` give them).

The steps, the same as src/digit/ (docs/usage.md states them), each a function below:
 1. decode: PIL, the size checked from the header before any pixel is decoded; EXIF
    orientation applied (a phone's photo stands as it was taken).
 2. grey: colour over white by its alpha, then luma 0.299 R + 0.587 G + 0.114 B, in 0..1; an
    image wider or taller than WORK_SIDE is reduced by the whole factor k that brings it
    within WORK_SIDE, each k x k block averaged.
 3. paper: the paper's level as a smooth surface (a quadratic in x and y, fitted by least
    squares to the pixels within a band around it, the band and the fit refined together),
    so that a gradient of light or grey paper is the paper and not ink.
 4. ink: the ink is the side of the paper with more mass beyond the band: dark on light, or
    light on dark; each pixel's strength is its distance from the paper's level, relative to
    the paper's contrast, less the noise floor (NOISE_SIGMAS times the noise's robust
    standard deviation).
 5. specks: the 8-connected components of the ink; a component is a stroke when its mass
    (the sum of its strengths) reaches SPECK_FRACTION of the largest one's; the others are
    specks, and are erased.
 6. levels: the ink's level is the median strength of the strokes' core (the pixels at least
    half the 99th percentile); strengths are divided by it and clipped to 1: the paper is 0,
    the ink's core 1.
 7. mnist (LeCun, Cortes, Burges): the bounding box of the ink, scaled to fit 20x20 keeping
    its aspect ratio (the longer side 20), anti-aliased (a triangle filter as wide as the
    scale: PIL's BILINEAR, image's Triangle); then placed in the 28x28 field with its centre of
    mass (of the intensities) at pixel (14, 14), by a whole-pixel shift, as MNIST's own digits
    are; u8 = round(255 v).
"""
import argparse
import json
import math

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

# The limits and constants of src/digit/ (the same names there).
MAX_PIXELS = 40_000_000
WORK_SIDE = 512
BAND_SIGMAS = 3.0
BAND_FLOOR = 0.03
PAPER_ROUNDS = 4
MAD_TO_SIGMA = 1.4826
MIN_PAPER_CONTRAST = 0.05
NOISE_SIGMAS = 4.0
SPECK_FRACTION = 0.05
CORE_QUANTILE = 0.99
LEVEL_QUANTILE = 0.9
MIN_INK = 0.05
BOX = 20
FIELD = 28
CENTRE = 14.0


class NotADigit(Exception):
    """An image that holds no digit (blank, unreadable, too large)."""


def order_statistic(values, q):
    """The value at sorted index floor(q * (n - 1)): no interpolation, as src/digit/ takes it."""
    values = np.asarray(values).ravel()
    i = int(math.floor(q * (len(values) - 1)))
    return float(np.partition(values, i)[i])


def median(values):
    return order_statistic(values, 0.5)


def decode(path):
    """The image as a float64 (h, w, 4) RGBA array in 0..1; its size checked first."""
    try:
        im = Image.open(path)
    except Exception as e:  # PIL raises many kinds for a file that is no image
        raise NotADigit(f"not an image PIL reads ({e})")
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise NotADigit(f"{w}x{h} pixels, over the limit of {MAX_PIXELS}")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
    except Exception as e:
        raise NotADigit(f"cannot decode ({e})")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64) / 65535.0
        return np.dstack([a, a, a, np.ones_like(a)])
    return np.asarray(im.convert("RGBA"), dtype=np.float64) / 255.0


def grey(rgba):
    """(h', w') float64 in 0..1: over white, luma, reduced by k when larger than WORK_SIDE."""
    r, g, b, a = (rgba[..., i] for i in range(4))
    over = lambda c: c * a + (1.0 - a)  # noqa: E731
    y = 0.299 * over(r) + 0.587 * over(g) + 0.114 * over(b)
    h, w = y.shape
    k = max(1, math.ceil(max(h, w) / WORK_SIDE))
    if k == 1:
        return y, k
    hh, ww = math.ceil(h / k), math.ceil(w / k)
    padded = np.full((hh * k, ww * k), np.nan)
    padded[:h, :w] = y
    blocks = padded.reshape(hh, k, ww, k)
    return np.nanmean(blocks, axis=(1, 3)), k


def quadratic_terms(h, w):
    """The fit's six terms at every pixel, x and y scaled to -1..1: (h*w, 6)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u = (xx + 0.5) / w * 2.0 - 1.0
    v = (yy + 0.5) / h * 2.0 - 1.0
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1).reshape(-1, 6)


def band_of(r):
    sigma = MAD_TO_SIGMA * median(np.abs(r))
    return max(BAND_SIGMAS * sigma, BAND_FLOOR)


def paper(g):
    """The paper's level as a surface the size of g."""
    h, w = g.shape
    terms = quadratic_terms(h, w)
    flat = g.ravel()
    surface = np.full(flat.shape, median(flat))
    for _ in range(PAPER_ROUNDS):
        r = flat - surface
        inliers = np.abs(r) <= band_of(r)
        if inliers.sum() < max(6, len(flat) / 2):
            break
        a = terms[inliers]
        if np.linalg.matrix_rank(a) < 6:
            break
        coef, *_ = np.linalg.lstsq(a, flat[inliers], rcond=None)
        surface = terms @ coef
    return surface.reshape(h, w)


def ink(g, b):
    """(strength, polarity, noise sigma): strength in paper-contrast units less the noise floor."""
    r = g - b
    band = band_of(r)
    dark = np.maximum(-r - band, 0.0).sum()
    light = np.maximum(r - band, 0.0).sum()
    if dark == 0.0 and light == 0.0:
        raise NotADigit(f"blank: no pixel differs from the paper's level by more than {band:.3f}")
    if dark > light:
        polarity = "dark-on-light"
        n = (b - g) / np.maximum(b, MIN_PAPER_CONTRAST)
    else:
        polarity = "light-on-dark"
        n = (g - b) / np.maximum(1.0 - b, MIN_PAPER_CONTRAST)
    sigma = MAD_TO_SIGMA * median(np.abs(n))
    return np.maximum(n - NOISE_SIGMAS * sigma, 0.0), polarity, sigma


def specks(s):
    """(strokes' mask, number of specks erased)."""
    labels, count = ndimage.label(s > 0, structure=np.ones((3, 3)))
    if count == 0:
        raise NotADigit("blank: no ink above the paper's noise")
    mass = np.asarray(ndimage.sum(s, labels, range(1, count + 1)))
    keep = mass >= SPECK_FRACTION * mass.max()
    mask = np.isin(labels, np.nonzero(keep)[0] + 1)
    return mask, int(count - keep.sum())


def levels(s, mask, sigma):
    """The ink's level, and the image stretched: 0 paper, 1 the ink's core."""
    kept = s[mask]
    top = order_statistic(kept, CORE_QUANTILE)
    level = order_statistic(kept[kept >= top / 2.0], LEVEL_QUANTILE)
    floor = NOISE_SIGMAS * sigma
    if level < max(MIN_INK, floor):
        raise NotADigit(f"blank: the faintest ink stands {level + floor:.3f} from the paper, within its noise")
    return np.where(mask, np.minimum(s / level, 1.0), 0.0), level


def mnist(v):
    """The 28x28 field: the ink's box fitted into 20x20, its centre of mass at (14, 14)."""
    ys, xs = np.nonzero(v > 0)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    crop = v[y0:y1 + 1, x0:x1 + 1].astype(np.float32)
    h, w = crop.shape
    scale = BOX / max(h, w)
    nh = max(1, math.floor(h * scale + 0.5))
    nw = max(1, math.floor(w * scale + 0.5))
    small = np.asarray(Image.fromarray(crop, mode="F").resize((nw, nh), Image.BILINEAR), dtype=np.float64)
    small = np.clip(small, 0.0, 1.0)
    total = small.sum()
    yy, xx = np.mgrid[0:nh, 0:nw]
    if total > 0:
        cy, cx = (small * yy).sum() / total, (small * xx).sum() / total
    else:
        cy, cx = (nh - 1) / 2, (nw - 1) / 2
    oy, ox = math.floor(CENTRE - cy + 0.5), math.floor(CENTRE - cx + 0.5)
    field = np.zeros((FIELD, FIELD))
    for y in range(nh):
        for x in range(nw):
            fy, fx = oy + y, ox + x
            if 0 <= fy < FIELD and 0 <= fx < FIELD:
                field[fy, fx] = small[y, x]
    pixels = np.clip(np.floor(field * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return pixels, dict(box=[int(x0), int(y0), int(w), int(h)], size=[nw, nh], shift=[ox, oy])


def preprocess(path):
    rgba = decode(path)
    g, k = grey(rgba)
    b = paper(g)
    s, polarity, sigma = ink(g, b)
    mask, dropped = specks(s)
    v, level = levels(s, mask, sigma)
    pixels, geometry = mnist(v)
    return pixels, dict(width=rgba.shape[1], height=rgba.shape[0], polarity=polarity, reduce=k, paper=float(median(b)), ink=level,
                        noise=sigma, specks=dropped, **geometry)


def convnet_probabilities(path):
    import torch
    from . import nn_convnet
    model = nn_convnet.NeuralNetwork()
    model.load_state_dict(load_state_dict(path))
    model.eval()
    return lambda p: torch.softmax(model(torch.tensor(p, dtype=torch.float32).reshape(1, 1, 28, 28) / 255.0), -1)[0].double().tolist()


def mlp_probabilities(path):
    import torch
    from . import nn_torch
    sd = load_state_dict(path)
    sizes = [sd["0.weight"].shape[1]] + [sd[f"{2 * i}.weight"].shape[0] for i in range(len(sd) // 2)]
    model = nn_torch.build(sizes)
    model.load_state_dict({k: v.double() for k, v in sd.items()})

    def probs(p):
        a = model(torch.tensor(p, dtype=torch.float64).reshape(1, 784) / 255.0)[0]
        return (a / a.sum()).tolist()
    return probs


def load_state_dict(path):
    import torch
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+")
    p.add_argument("--convnet", help="convnet weights (safetensors or torch.save's state_dict)")
    p.add_argument("--mlp", help="MLP weights (safetensors or torch.save's state_dict)")
    a = p.parse_args()
    models = []
    if a.convnet or a.mlp:
        import torch
        torch.set_num_threads(1)  # the tests run beside others
    if a.convnet:
        models.append(("convnet", convnet_probabilities(a.convnet)))
    if a.mlp:
        models.append(("mlp", mlp_probabilities(a.mlp)))
    for path in a.images:
        try:
            pixels, info = preprocess(path)
        except NotADigit as e:
            print(json.dumps({"image": path, "error": str(e)}), flush=True)
            continue
        record = {"image": path, "pixels": pixels.ravel().tolist(), **info}
        for name, probs in models:
            record[name] = probs(pixels)
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
