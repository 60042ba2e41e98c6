#!/usr/bin/env python3
"""Checks an extract artifact against PyTorch run directly (eager, not TorchScript).

Rebuilds the torchvision model from its seed, decodes every image with PIL, normalises as
the published settings do (torchvision: ToTensor + Normalize; lite-caffe: NetDissect-Lite's
float32 mean subtraction and division by 255 * 0.224), reads our Zarr with zarr-python,
and fails if any activation or spatial maximum differs by more than 1e-5.
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

TOLERANCE = 1e-5


def load_input(path, preprocess):
    image = Image.open(path).convert("RGB")
    if preprocess == "torchvision":
        t = TF.to_tensor(image)
        return TF.normalize(t, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    # NetDissect-Lite: BGR float32 minus the BGR mean, back to RGB, divided by 255 * 0.224.
    img = np.array(image, dtype=np.float32)[:, :, ::-1]
    img -= np.array([109.5388, 118.6897, 124.6901])
    img = img.transpose((2, 0, 1))[::-1].copy()
    return torch.from_numpy(img).div_(255.0 * 0.224)


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
        ours_max = np.asarray(group[f"{layer}/max"][:])
        if not np.array_equal(ours_max, ours.max(axis=(2, 3))):
            sys.exit(f"{layer}: the stored maxima are not the maxima of the stored maps")
        report[layer] = {
            "max_abs_diff": float(np.abs(ours - theirs).max()),
            "max_abs_activation": float(np.abs(theirs).max()),
            "max_diff_of_maxima": float(np.abs(ours_max - theirs.max(axis=(2, 3))).max()),
        }
    print(json.dumps(report))
    bad = [layer for layer, r in report.items() if r["max_abs_diff"] > TOLERANCE or r["max_diff_of_maxima"] > TOLERANCE]
    if bad:
        sys.exit(f"activations differ from PyTorch by more than {TOLERANCE} in {', '.join(bad)}")


if __name__ == "__main__":
    main()
