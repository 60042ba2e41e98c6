#!/usr/bin/env python3
"""Checks an extract artifact against PyTorch run directly (eager, not TorchScript).

Rebuilds the torchvision model from its seed, decodes every image with PIL, normalises as
the published settings do (torchvision: ToTensor + Normalize; lite-caffe: NetDissect-Lite's
float32 mean subtraction and division by 255 * 0.224), reads our Zarr with zarr-python,
and fails if any activation or spatial maximum differs by more than float32 rounding: a
tolerance of RTOL times the layer's largest absolute activation (see `compare`).
"""

import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
import torchvision.transforms.functional as TF
import zarr
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from export_torchvision import build_model, extractor  # noqa: E402

# Two float32 computations of one network agree only to rounding, and the rounding error of
# an activation scales with the magnitude of the values summed into it, which is the layer's
# scale, not with the activation itself (a value near zero is a sum of large terms that
# cancel). libtorch sums a convolution's products in an order that depends on the processor,
# the batch (a batch of one image takes another kernel) and the thread count; and in the
# lite-caffe setting NetDissect-Lite's normalisation (the mean subtracted in float64, then a
# division by 255 * 0.224 in float64) rounds 301 of the 768 possible inputs an ulp away from
# ours (float32 throughout, as nd-extract's `Preprocess` is specified). With u = 2^-23
# (1.2e-7, the float32 ulp of 1), a sum of n products in any order is off by about
# sqrt(n) * u of its terms' scale (a random walk; n * u at worst): 2,304 products in
# ResNet-18's layer3 (256 channels x 3 x 3), ~50 u per convolution, compounding over the 13
# convolutions below layer3 to a few hundred u of the layer's scale. Measured on a 2-core
# AMD EPYC, layer1 and layer3 differ by at most 1.4e-6 of the layer's largest |activation|
# (12 u; test_check_extract.py: PyTorch in float64, one image a batch), and nd-extract from
# PyTorch by 0 in the torchvision setting and by 1.216e-5 at activations reaching 12.4 in
# lite-caffe's (9.8e-7 of it: what failed the former absolute tolerance of 1e-5).
# RTOL = 2^-13 (1.2e-4, 1,024 u) is a hundred times that, and a hundred times below the
# smallest preprocessing error this check guards against: a mean one grey level off or a
# std 1 % off moves layer1 and layer3 by 1e-2 to 2e-2 of their largest value; swapped
# channels or a resize one pixel off by 1e-1 and more. test_check_extract.py shows both.
RTOL = 2.0**-13


def normalise(image, preprocess):
    """A PIL RGB image as the (3, H, W) float32 input of a published setting."""
    if preprocess == "torchvision":
        t = TF.to_tensor(image)
        return TF.normalize(t, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    if preprocess != "lite-caffe":
        raise ValueError(f"unknown preprocessing {preprocess!r}")
    # NetDissect-Lite: BGR float32 minus the BGR mean, back to RGB, divided by 255 * 0.224.
    img = np.array(image, dtype=np.float32)[:, :, ::-1]
    img -= np.array([109.5388, 118.6897, 124.6901])
    img = img.transpose((2, 0, 1))[::-1].copy()
    return torch.from_numpy(img).div_(255.0 * 0.224)


def load_input(path, preprocess):
    return normalise(Image.open(path).convert("RGB"), preprocess)


def compare(ours, theirs, rtol=RTOL):
    """How one layer's activations (images, units, h, w) agree with PyTorch's (`theirs`).

    Returns the largest absolute difference of the maps and of their spatial maxima, the
    layer's largest absolute activation (PyTorch's), the tolerance (`rtol` times that) and
    `ok`: whether the shapes are equal and every difference is within the tolerance. A NaN
    anywhere fails, and a layer that is zero everywhere must be matched exactly.
    """
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape or ours.ndim != 4 or ours.size == 0:
        return {"shape": list(ours.shape), "expected_shape": list(theirs.shape), "ok": False}
    scale = float(np.abs(theirs).max())
    diff = float(np.abs(ours - theirs).max())
    # Never more than `diff` (so not tested apart); reported as the maxima rank top images.
    diff_of_maxima = float(np.abs(ours.max(axis=(2, 3)) - theirs.max(axis=(2, 3))).max())
    tolerance = rtol * scale
    return {
        "max_abs_diff": diff,
        "max_abs_activation": scale,
        "max_diff_of_maxima": diff_of_maxima,
        "tolerance": tolerance,
        # Written so that a NaN (of either side, or of the scale) fails.
        "ok": bool(diff <= tolerance),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--layers", required=True)
    parser.add_argument("--preprocess", default="torchvision")
    args = parser.parse_args()

    layers = args.layers.split(",")
    with open(os.path.join(args.dataset, "index.csv")) as f:
        rows = list(csv.DictReader(f))
    inputs = torch.stack([load_input(os.path.join(args.dataset, "images", r["image"]), args.preprocess) for r in rows])
    model = extractor(build_model(args.arch, seed=args.seed), layers)
    with torch.no_grad():
        expected = model(inputs)

    group = zarr.open_group(os.path.join(args.artifact, "activations.zarr"), mode="r")
    report = {}
    for layer in layers:
        ours = np.asarray(group[f"{layer}/activations"][:])
        theirs = expected[layer].numpy()
        if ours.shape != theirs.shape:
            sys.exit(f"{layer}: shape {ours.shape}, PyTorch gives {theirs.shape}")
        # The stored maxima are computed from the stored values in one process: exact.
        ours_max = np.asarray(group[f"{layer}/max"][:])
        if not np.array_equal(ours_max, ours.max(axis=(2, 3))):
            sys.exit(f"{layer}: the stored maxima are not the maxima of the stored maps")
        report[layer] = compare(ours, theirs)
    print(json.dumps(report))
    bad = [layer for layer, r in report.items() if not r["ok"]]
    if bad:
        sys.exit(f"activations differ from PyTorch by more than {RTOL:g} of the layer's largest value in {', '.join(bad)}")


if __name__ == "__main__":
    main()
