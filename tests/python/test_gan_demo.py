#!/usr/bin/env python3
"""Checks the committed GAN-dissection demo, models/gan, against its contracts:

1. ``SHA256SUMS`` matches the files, and each .pt file is under 10.5 MB;
2. ``segmenter-labels.csv``: header ``class,name,category``, classes 0..K-1 in order, at most
   one none class (empty name) per category, ``object`` = a none class and the 15 objects,
   ``color`` = 11 colours and no none class;
3. ``segmenter.pt``: forward of a normalised batch (N, 3, H, W) gives (N, K, H/2, W/2) finite
   float32 scores, for 64×64 and for another size;
4. ``generator.pt``: the extra files ``netdissect-intervention.json`` and
   ``netdissect-generator.json`` as specified; forward(z) gives ``image`` (N, 3, 64, 64) in
   [-1, 1] and the named layers as post-ReLU (N, C, h, w) maps; forward_from(layer,
   forward(z)[layer]) is the image bit for bit for every layer; a unit zeroed changes the
   image and an unknown layer is refused; each sample generated alone equals it in the batch
   (1e-5); ``samples.png`` is the grid of z from seed 0 (to a level of rounding);
5. the segmenter finds objects in the 64 samples of samples.png (3 % to 45 % of the pixels;
   the real images have about 14 %) and at least three kinds of object;
6. where the held-out set of the training (``.netdissect/gan-data-seed3``) exists, the
   exported segmenter's pixel accuracies on it are those of ``training.json``.

A few seconds on the CPU. Exits non-zero on the first failure.

    .venv/bin/python tests/python/test_gan_demo.py
"""

import csv
import hashlib
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import train_gan_demo as tg  # noqa: E402

# Another directory (a retraining, scripts/train-gan-demo DIR) with GAN_DEMO_DIR=DIR.
DIR = os.environ.get("GAN_DEMO_DIR") or os.path.join(ROOT, "models", "gan")
HELDOUT = os.path.join(ROOT, ".netdissect", "gan-data-seed3")
STARTED = time.time()


def check(condition, message):
    if not condition:
        print(f"test_gan_demo: FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def checksums():
    with open(os.path.join(DIR, "SHA256SUMS")) as f:
        lines = [line.split() for line in f if line.strip()]
    check({name for _, name in lines} >= {"generator.pt", "segmenter.pt", "segmenter-labels.csv",
                                         "samples.png"}, "SHA256SUMS misses a file")
    for digest, name in lines:
        with open(os.path.join(DIR, name), "rb") as f:
            check(hashlib.sha256(f.read()).hexdigest() == digest, f"{name}: checksum differs")
    for name in ("generator.pt", "segmenter.pt"):
        size = os.path.getsize(os.path.join(DIR, name))
        check(size < 10.5e6, f"{name} is {size} bytes")


def labels():
    with open(os.path.join(DIR, "segmenter-labels.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    check(list(rows[0].keys()) == ["class", "name", "category"], "labels: header")
    check([int(r["class"]) for r in rows] == list(range(len(rows))), "labels: class numbers")
    by = {}
    for r in rows:
        by.setdefault(r["category"], []).append(r["name"])
    for category, names in by.items():
        check(names.count("") <= 1, f"labels: {category} has several none classes")
        check(len(set(names)) == len(names), f"labels: {category} repeats a name")
    check(by["object"][0] == "" and len(by["object"]) == 16, "labels: object = none + 15")
    check("" not in by["color"] and len(by["color"]) == 11, "labels: color = 11, no none")
    # The channels of a category are contiguous (the segmenter reads them as one block).
    for category in by:
        at = [i for i, r in enumerate(rows) if r["category"] == category]
        check(at == list(range(at[0], at[-1] + 1)), f"labels: {category}'s channels are apart")
    return [(r["name"], r["category"]) for r in rows]


def segmenter(names):
    seg = torch.jit.load(os.path.join(DIR, "segmenter.pt")).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, size in ((3, 64), (1, 96)):
            out = seg(torch.randn(n, 3, size, size, generator=g))
            check(out.dtype == torch.float32 and tuple(out.shape) == (n, len(names), size // 2, size // 2),
                  f"segmenter: {tuple(out.shape)} for {n}×3×{size}×{size}")
            check(bool(torch.isfinite(out).all()), "segmenter: scores not finite")
    return seg


def generator(seg, names):
    extra = {tg.INTERVENTION_FILE: "", tg.GENERATOR_FILE: ""}
    gen = torch.jit.load(os.path.join(DIR, "generator.pt"), _extra_files=extra).eval()
    info = json.loads(extra[tg.GENERATOR_FILE])
    layers = info["layers"]
    check(json.loads(extra[tg.INTERVENTION_FILE]) == {"format": 1, "method": "forward_from",
                                                       "output": "image", "layers": layers},
          f"generator: {tg.INTERVENTION_FILE}: {extra[tg.INTERVENTION_FILE]}")
    check(info == {"format": 1, "z_dim": info["z_dim"], "image": "image", "range": [-1, 1],
                   "layers": layers} and len(layers) >= 3,
          f"generator: {tg.GENERATOR_FILE}: {extra[tg.GENERATOR_FILE]}")
    z = tg.sample_z(6, info["z_dim"], 7)
    with torch.no_grad():
        out = gen(z)
        image = out["image"]
        check(set(out) == {"image", *layers}, f"generator: outputs {sorted(out)}")
        check(tuple(image.shape) == (6, 3, 64, 64), f"generator: image {tuple(image.shape)}")
        check(image.min().item() >= -1 and image.max().item() <= 1, "generator: image range")
        sides = []
        for layer in layers:
            a = out[layer]
            check(a.dim() == 4 and a.shape[0] == 6 and a.shape[2] > 1 and a.min().item() >= 0,
                  f"generator: {layer} {tuple(a.shape)} is not a post-ReLU map")
            sides.append(a.shape[2])
            again = gen.forward_from(layer, a)
            check(torch.equal(again, image), f"generator: forward_from({layer}) differs by "
                  f"{(again - image).abs().max().item():.3g}")
            ablated = a.clone()
            ablated[:, : max(1, a.shape[1] // 4)] = 0
            check(not torch.equal(gen.forward_from(layer, ablated), image),
                  f"generator: zeroing units of {layer} leaves the image as it was")
        check(sides == sorted(sides) and sides[0] >= 4, f"generator: layer sides {sides}")
        try:
            gen.forward_from("image", image)
            check(False, "generator: forward_from accepts an unknown layer")
        except (RuntimeError, torch.jit.Error) as e:
            check("layer1" in str(e), f"generator: the refusal names no layer: {e}")
        alone = torch.cat([gen(z[i:i + 1])["image"] for i in range(len(z))])
        gap = (alone - image).abs().max().item()
        check(gap <= 1e-5, f"generator: a sample alone differs from it in a batch by {gap:.3g}")
        grid = tg.generate(gen, tg.sample_z(64, info["z_dim"], tg.SAMPLES_SEED))
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"test_gan_demo-{os.getpid()}.png")
    try:
        tg.grid_png(grid, path)
        fresh = np.asarray(Image.open(path))
    finally:
        if os.path.exists(path):
            os.unlink(path)
    committed = np.asarray(Image.open(os.path.join(DIR, "samples.png")))
    # The same z through the same weights: on another CPU the float sums may round a few
    # pixels one level apart, no more.
    check(fresh.shape == committed.shape, "samples.png is not a grid of 64 samples")
    diff = np.abs(fresh.astype(np.int16) - committed.astype(np.int16))
    check(diff.max() <= 2 and (diff > 0).mean() < 0.01,
          f"samples.png is not the grid of z from seed 0 ({(diff > 0).mean():.2%} of the values "
          f"differ, by up to {diff.max()})")
    # The segmenter finds objects in the samples.
    groups = tg.groups_of(names)
    pred = tg.segment(seg, tg.from_generated(grid), groups)
    objects = pred["object"]
    share = (objects != 0).float().mean().item()
    kinds = len([k for k in objects.unique().tolist() if k != 0
                 and (objects == k).float().mean().item() > 0.002])
    check(0.03 <= share <= 0.45 and kinds >= 3,
          f"the segmenter finds {100 * share:.1f} % object pixels, {kinds} kinds, in 64 samples")
    return share, kinds


def heldout(seg, names):
    if not os.path.isdir(HELDOUT):
        return "skipped (no .netdissect/gan-data-seed3; scripts/train-gan-demo writes it)"
    with open(os.path.join(DIR, "training.json")) as f:
        want = json.load(f)["segmenter"]["heldout"]
    images, targets, _, held_names = tg.load(HELDOUT)
    check(held_names == names, "held-out: the dataset's classes are not the segmenter's")
    got = tg.seg_evaluate(seg, images, targets, names)
    for category, v in want.items():
        check(abs(got[category]["pixel_accuracy"] - v["pixel_accuracy"]) < 1e-3,
              f"held-out: {category} pixel accuracy {got[category]['pixel_accuracy']}, "
              f"training.json says {v['pixel_accuracy']}")
    return "pixel accuracies as in training.json (" + ", ".join(
        f"{k} {v['pixel_accuracy']:.3f}" for k, v in got.items()) + ")"


def main():
    torch.set_num_threads(2)
    checksums()
    names = labels()
    seg = segmenter(names)
    share, kinds = generator(seg, names)
    held = heldout(seg, names)
    print(f"test_gan_demo: ok in {time.time() - STARTED:.1f} s: checksums, labels, segmenter, "
          f"generator contracts; {100 * share:.1f} % object pixels of {kinds} kinds in the "
          f"samples; held-out: {held}")


if __name__ == "__main__":
    main()
