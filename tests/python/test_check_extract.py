#!/usr/bin/env python3
"""Shows that check_extract.py's tolerance lets float32 rounding through and catches errors.

    test_check_extract.py --dataset DIR

On the dataset's images, ResNet-18 seeded as `activations_match_pytorch` seeds it, in both
published settings, `compare` must accept what another summation order gives and reject
each preprocessing error the check guards against:

- pass: the network in float64, rounded to float32 (any float32 computation differs from
  it by its own rounding alone), and one image per batch (libtorch takes another kernel);
- fail: the mean one grey level off, the std 1 % off, the channels in BGR order, and the
  images resized one pixel smaller (which gives maps of the same shapes).

It also runs `compare` on arrays built by hand (the scale of the tolerance, NaN, shapes).
Prints each case's largest difference as a multiple of the tolerance, and exits 1 naming
every case that went the wrong way.
"""

import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
from check_extract import RTOL, build_model, compare, extractor, normalise  # noqa: E402

LAYERS = ["layer1", "layer3"]


def forward(model, inputs, batch=None):
    """The model's layers on `inputs`, in batches of `batch` images (all at once if None)."""
    batch = batch or len(inputs)
    with torch.no_grad():
        outs = [model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]
    return {layer: torch.cat([o[layer] for o in outs]).float().numpy() for layer in LAYERS}


def swap_channels(image):
    return Image.fromarray(np.asarray(image)[:, :, ::-1])


def one_pixel_smaller(image):
    return image.resize((image.width - 1, image.height - 1), Image.BILINEAR)


def cases(images, preprocess, model):
    """(name, activations of the first images, whether compare must accept them against the
    reference's)."""
    inputs = torch.stack([normalise(i, preprocess) for i in images])
    # One grey level in normalised units, per channel, whatever the setting's scale and std.
    black, grey = (Image.new("RGB", (1, 1), (v, v, v)) for v in (0, 1))
    level = normalise(grey, preprocess) - normalise(black, preprocess)
    double = forward(model.double(), inputs.double())
    model.float()
    yield "float64, rounded", double, True
    # On the first two images only: libtorch's kernel for a batch of one is slow.
    yield "one image a batch", forward(model, inputs[:2], batch=1), True
    yield "mean one grey level off", forward(model, inputs + level[None]), False
    yield "std 1 % off", forward(model, inputs / 1.01), False
    swapped = torch.stack([normalise(swap_channels(i), preprocess) for i in images])
    yield "BGR for RGB", forward(model, swapped), False
    smaller = torch.stack([normalise(one_pixel_smaller(i), preprocess) for i in images])
    yield "resized one pixel off", forward(model, smaller), False


def by_hand():
    """(name, ours, theirs, whether compare must accept them) on arrays built in code."""
    rng = np.random.default_rng(1)
    big = rng.normal(scale=300.0, size=(2, 3, 4, 4)).astype(np.float32)
    # Rounding of a large layer: 2 ulps of its largest value on every element, far above
    # the former absolute 1e-5, far below the tolerance.
    ulps = 2 * np.spacing(np.abs(big).max())
    yield "a large layer off by rounding", big + ulps * rng.choice([-1, 1], big.shape), big, True
    # A small layer off by 1e-3 of its largest value: within the former absolute 1e-5.
    small = big * 1e-5
    off = small.copy()
    off[1, 2, 3, 0] += 1e-3 * np.abs(small).max()
    yield "a small layer with one value off", off, small, False
    at = np.unravel_index(np.abs(big).argmax(), big.shape)
    for factor, ok in [(0.5, True), (2.0, False)]:
        off = big.astype(np.float64)
        off[at] += factor * RTOL * np.abs(big).max()
        yield f"the largest value off by {factor} tolerance", off, big, ok
    nan = big.copy()
    nan[0, 0, 0, 0] = np.nan
    yield "a NaN", nan, big, False
    yield "NaN for NaN", nan, nan, False
    yield "a unit missing", big[:, :2], big, False
    yield "maps transposed", big.transpose(0, 1, 3, 2).copy(), big, False
    yield "a dead layer", np.zeros_like(big), np.zeros_like(big), True
    dead = np.zeros_like(big)
    dead[0, 0, 0, 0] = 1e-30
    yield "a dead layer that is not", dead, np.zeros_like(big), False


def in_tolerances(result):
    """A layer's largest difference as a multiple of its tolerance, for the printout."""
    if "tolerance" not in result:
        return "shapes differ"
    diff, tolerance = result["max_abs_diff"], result["tolerance"]
    if np.isnan(diff):
        return "NaN"
    if tolerance == 0:
        return 0.0 if diff == 0 else "inf"
    return float(f"{diff / tolerance:.3g}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True)
    args = parser.parse_args()
    with open(os.path.join(args.dataset, "index.csv")) as f:
        rows = list(csv.DictReader(f))
    images = [Image.open(os.path.join(args.dataset, "images", r["image"])).convert("RGB") for r in rows]
    model = extractor(build_model("resnet18", seed=3), LAYERS)

    wrong, report = [], {}

    def record(name, results, ok):
        passed = all(r["ok"] for r in results.values())
        report[name] = {layer: in_tolerances(r) for layer, r in results.items()}
        if passed != ok:
            wrong.append(f"{name}: compare {'accepted' if passed else 'rejected'} it ({results})")

    for name, ours, theirs, ok in by_hand():
        record(f"by hand: {name}", {"layer": compare(ours, theirs)}, ok)
    for preprocess in ["torchvision", "lite-caffe"]:
        reference = forward(model, torch.stack([normalise(i, preprocess) for i in images]))
        for name, ours, ok in cases(images, preprocess, model):
            if name == "resized one pixel off":
                # Otherwise the shapes alone would reject it.
                assert all(ours[layer].shape == reference[layer].shape for layer in LAYERS), name
            results = {layer: compare(ours[layer], reference[layer][: len(ours[layer])]) for layer in LAYERS}
            record(f"{preprocess}: {name}", results, ok)
    print(json.dumps(report, indent=1))
    if wrong:
        sys.exit("\n".join(wrong))


if __name__ == "__main__":
    main()
