#!/usr/bin/env python3
"""An independent reference implementation of Network Dissection in its lite mode.

    oracle.py --dataset DIR --activations PATH/activations.zarr [--top 0.005]
              [--iou-threshold 0.04] [--categories color,object,...] [--rows START END]
              [--layers conv1,conv2] [--batch 100] --out out.json

Written from the method's specification (METHOD.md §2 and §3) alone, with PIL, NumPy and
zarr-python, to serve as a test oracle for the Rust stages: it shares no code with them.

- Dataset (§2): `index.csv` rows in file order; a category cell holds items joined by `;`
  (empty items dropped); an all-digit item is an image-level label number (0 included), any
  other item is a label PNG under `images/` whose pixel label is R + 256·G. A label's primary
  category is the loaded category where its coverage in `c_<category>.csv` is largest, the
  later category on a tie; a label in no loaded category, and label 0, fall to the last one.
- Thresholds (§3.2): per unit, `numpy.quantile(values, 1 - top)` with NumPy's default
  "linear" method over every position of every image, computed in float64.
- Masks (§3.3, lite): bilinear upsampling with half-pixel centres and edge clamping, the
  geometry of torch's `interpolate(mode="bilinear", align_corners=False)`, in float64; a
  mask keeps the pixels strictly above the unit's threshold.
- Counts (§3.4, lite denominator): truth, intersection and activation summed over the
  dataset. An image-level label counts sh·sw pixels and intersects every mask pixel of its
  image; a pixel label counts once per label map it appears in; pixel label 0 is ignored
  everywhere. An image's mask pixels count towards category `cat` when the mask covers at
  least one pixel whose label has `cat` as its primary category, or the image carries an
  image-level label whose primary category is `cat` (label 0 included: it marks the last
  category).
- IoU = inter / (act[primary(c)] + truth − inter), exactly: no 1e-10 is added to the
  denominator (the references add it), and an empty denominator gives an IoU of 0.
- Labels (§3.5, by NetDissect-Lite's rules, see label_units): labels are ranked by Lite's
  own float64 value inter / (act + truth − inter + 1e-10); per category, the label of that
  category with the highest value, the lowest label number on ties (label 0 is a candidate
  of the last category); none where the unit overlaps no label of the category; per unit,
  the best of those, the later category in category order on ties, none when the unit
  overlaps nothing; a detector when it has a label whose IoU is at least the IoU threshold.
- tally.csv (§3.6): NetDissect-Lite's rows, label 0 where a unit overlaps nothing.

The output JSON holds, per layer, every unit's threshold, its best label, category and IoU,
and per category its best label with truth, activation, intersect and IoU (nulls where it
overlaps nothing); the rows of tally.csv in order; and counts of the cases the run covers
(units that overlap nothing, in some categories only, ties). Units are 0-based but in the
tally rows.
The wall time of each step goes to stderr as `oracle: <step> <seconds>s`.
"""

import argparse
import csv
import json
import os
import re
import sys
import time
from collections import defaultdict

import numpy as np
import zarr
from PIL import Image

DIGITS = re.compile(r"[0-9]+")
# Upsampled pixels held at once (float64): about 128 MB.
PAIR_PIXELS = 1 << 24


class Timer:
    """Wall time per named step, summed over the calls that make it up."""

    def __init__(self):
        self.seconds = defaultdict(float)
        self.order = []

    def add(self, step, seconds):
        if step not in self.seconds:
            self.order.append(step)
        self.seconds[step] += seconds

    def report(self):
        for step in self.order:
            print(f"oracle: {step} {self.seconds[step]:.3f}s", file=sys.stderr)
        total = sum(self.seconds.values())
        print(f"oracle: total {total:.3f}s", file=sys.stderr)


def fail(message):
    sys.exit(f"oracle: error: {message}")


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- The dataset (METHOD §2) ---------------------------------------------------------------


class Dataset:
    """What the oracle needs of a Broden-format directory.

    categories: loaded category names, in category.csv order.
    names: label names indexed by label number (label 0 is the empty name).
    primary: the primary category index of every label number.
    rows: per index.csv row, (sh, sw, label PNG paths, image-level label numbers).
    """

    def __init__(self, root, categories=None, rows=None):
        self.root = root
        all_categories = [r["name"] for r in read_csv(os.path.join(root, "category.csv"))]
        if categories is None:
            categories = all_categories
        for c in categories:
            if c not in all_categories:
                fail(f"category `{c}` is not in category.csv ({', '.join(all_categories)})")
        # Loaded categories keep category.csv's order whatever order they were asked in.
        self.categories = [c for c in all_categories if c in categories]

        labels = read_csv(os.path.join(root, "label.csv"))
        n_labels = max([int(r["number"]) for r in labels], default=0) + 1
        index = read_csv(os.path.join(root, "index.csv"))
        # Rows are numbered as in index.csv (0 is the first line after the header).
        self.first_row = 0
        if rows is not None:
            index = index[rows[0]:rows[1]]
            self.first_row = rows[0]
        self.rows = []
        for i, r in enumerate(index):
            maps, scalars = [], []
            for c in self.categories:
                if c not in r:
                    fail(f"index.csv has no column `{c}`")
                for item in (r[c] or "").split(";"):
                    if item == "":
                        continue
                    if DIGITS.fullmatch(item):
                        scalars.append(int(item))
                    else:
                        maps.append(os.path.join(root, "images", item))
            self.rows.append((int(r["sh"]), int(r["sw"]), maps, scalars))
            n_labels = max([n_labels] + [s + 1 for s in scalars])
        self.n_labels = n_labels

        self.names = [""] * n_labels
        for r in labels:
            self.names[int(r["number"])] = r["name"]

        # Primary category: largest coverage among the loaded categories that list the label,
        # the later category on a tie (`>=` while walking in category order); otherwise the
        # last category, which is also where label 0 goes.
        last = len(self.categories) - 1
        self.primary = np.full(n_labels, last, dtype=np.int64)
        best = np.full(n_labels, -np.inf)
        for ci, c in enumerate(self.categories):
            path = os.path.join(root, f"c_{c}.csv")
            for r in read_csv(path):
                number = int(r["number"])
                if number == 0 or number >= n_labels:
                    continue
                coverage = float(r["coverage"])
                if coverage >= best[number]:
                    best[number] = coverage
                    self.primary[number] = ci

    def __len__(self):
        return len(self.rows)

    def label_maps(self, row):
        """The row's label maps as an int32 array (maps, sh·sw), label = R + 256·G."""
        sh, sw, paths, _ = self.rows[row]
        number = self.first_row + row
        out = np.zeros((len(paths), sh * sw), dtype=np.int32)
        for m, path in enumerate(paths):
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB"))
            if rgb.shape[:2] != (sh, sw):
                fail(f"index.csv row {number}: label map {path} is {rgb.shape[1]}×{rgb.shape[0]}, expected {sw}×{sh}")
            labels = rgb[:, :, 0].astype(np.int32) + 256 * rgb[:, :, 1].astype(np.int32)
            if labels.max(initial=0) >= self.n_labels:
                fail(f"index.csv row {number}: label map {path} has label {labels.max()}, beyond label.csv")
            out[m] = labels.reshape(-1)
        return out


# --- Thresholds (METHOD §3.2) ---------------------------------------------------------------


def thresholds(array, top, block=16):
    """Per unit, the linear-interpolated quantile at level 1 − top of all its values."""
    data = np.asarray(array[:])  # (images, units, h, w) float32
    n_units = data.shape[1]
    out = np.empty(n_units, dtype=np.float64)
    for u0 in range(0, n_units, block):
        u1 = min(u0 + block, n_units)
        values = data[:, u0:u1].transpose(1, 0, 2, 3).reshape(u1 - u0, -1).astype(np.float64)
        out[u0:u1] = np.quantile(values, 1.0 - top, axis=1, method="linear")
    return out


# --- Masks (METHOD §3.3, lite) --------------------------------------------------------------


def bilinear_weights(n_in, n_out):
    """Source cells and weights of each output pixel along one axis.

    Output pixel i samples the input at (i + 0.5)·n_in/n_out − 0.5, clamped at 0 below; it
    blends cells i0 = floor of that and i0 + 1 (clamped to the last cell) with weights
    1 − λ and λ. Where both cells are the same (the far edge) the pixel is that cell's value.
    """
    i = np.arange(n_out, dtype=np.float64)
    src = np.maximum((i + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    w1[i1 == i0] = 0.0
    w0 = 1.0 - w1
    return i0, i1, w0, w1


def upsample(maps, sh, sw):
    """(K, h, w) float64 → (K, sh, sw), separable: along x, then along y."""
    _, h, w = maps.shape
    x0, x1, wx0, wx1 = bilinear_weights(w, sw)
    y0, y1, wy0, wy1 = bilinear_weights(h, sh)
    # In place where possible: the same arithmetic as the plain expression, fewer temporaries.
    rows = maps[:, :, x0]
    rows *= wx0
    rows += maps[:, :, x1] * wx1  # (K, h, sw)
    out = rows[:, y0, :]
    out *= wy0[:, None]
    below = rows[:, y1, :]
    below *= wy1[:, None]
    out += below
    return out


# --- Counting (METHOD §3.4, lite) -----------------------------------------------------------


class Counts:
    """inter[unit, label] and act[unit, category] of one layer."""

    def __init__(self, n_units, n_labels, n_categories):
        self.inter = np.zeros((n_units, n_labels), dtype=np.int64)
        self.act = np.zeros((n_units, n_categories), dtype=np.int64)


def score_batch(counts, dataset, acts, thresholds_, label_maps, scalars, sh, sw, timer):
    """Adds one batch of same-size images to a layer's counts.

    acts: (B, units, h, w) float32; label_maps: (B, M, sh·sw) int32, padded with label 0
    (which counts for nothing); scalars: (B, S) image-level labels, padded with −1.
    """
    t = time.perf_counter()
    # A map whose maximum does not exceed the threshold has an empty mask (bilinear output
    # never exceeds its input's maximum), so only the other (image, unit) pairs are upsampled.
    peaks = acts.max(axis=(2, 3)).astype(np.float64)
    image, unit = np.nonzero(peaks > thresholds_[None, :])
    timer.add("segment", time.perf_counter() - t)
    # Pairs in slices of about PAIR_PIXELS upsampled pixels, to bound the memory.
    step = max(1, PAIR_PIXELS // (sh * sw))
    for p0 in range(0, len(image), step):
        score_pairs(counts, dataset, acts, thresholds_, label_maps, scalars, sh, sw,
                    image[p0:p0 + step], unit[p0:p0 + step], timer)


def score_pairs(counts, dataset, acts, thresholds_, label_maps, scalars, sh, sw, image, unit, timer):
    """Adds the masks of some (image, unit) pairs of a batch to a layer's counts."""
    t0 = time.perf_counter()
    n_labels = dataset.n_labels
    n_categories = len(dataset.categories)
    masks = upsample(acts[image, unit].astype(np.float64), sh, sw).reshape(len(image), -1)
    masks = masks > thresholds_[unit][:, None]
    t1 = time.perf_counter()
    timer.add("segment", t1 - t0)

    pixels = masks.sum(axis=1).astype(np.int64)
    pair, pos = np.nonzero(masks)
    labels = label_maps[image[pair], :, pos]  # (mask pixels, M): every map's label there
    lab_pair = np.broadcast_to(pair[:, None], labels.shape)
    keep = labels > 0
    labels, lab_pair = labels[keep], lab_pair[keep]
    # Intersections with pixel labels: one count per map a label appears in.
    counts.inter += np.bincount(
        unit[lab_pair] * n_labels + labels, minlength=counts.inter.size
    ).reshape(counts.inter.shape)
    # Which categories each pair's mask overlaps, through its labels' primary categories.
    overlap = np.bincount(
        lab_pair * n_categories + dataset.primary[labels], minlength=len(image) * n_categories
    ).reshape(len(image), n_categories) > 0
    # Image-level labels intersect all of the mask and mark their primary category.
    for s in scalars.T:
        s = s[image]
        ok = s >= 0
        np.add.at(counts.inter, (unit[ok], s[ok]), pixels[ok])
        overlap[np.nonzero(ok)[0], dataset.primary[s[ok]]] = True
    np.add.at(counts.act, unit, overlap * pixels[:, None])
    timer.add("score", time.perf_counter() - t1)


# --- IoU and labels (METHOD §3.4, §3.5) -----------------------------------------------------


def iou(counts, truth, primary):
    act = counts.act[:, primary]  # act[unit, primary(label)]
    denominator = act + truth[None, :] - counts.inter
    out = np.zeros(denominator.shape, dtype=np.float64)
    np.divide(counts.inter, denominator, out=out, where=denominator > 0)
    return out


def lite_iou(counts, truth, primary):
    """NetDissect-Lite's own float64 value of the IoU, with 1e-10 added to the denominator:
    what it ranks labels by (it orders some equal IoUs, 1/2 below 2/4, where 1e-10 is above
    the denominator's rounding)."""
    act = counts.act[:, primary].astype(np.float64)
    inter = counts.inter.astype(np.float64)
    return inter / (act + truth[None, :].astype(np.float64) - inter + 1e-10)


def label_units(dataset, counts, truth, thresholds_, iou_threshold):
    """Every unit's labels by the lite rules, and the rows of NetDissect-Lite's tally.csv.

    Per category c, every label number is scored with Lite's value of its IoU if c is its
    primary category and 0 otherwise, and the category's label is the first label number of
    the largest score: the smallest on ties, and label 0 when the unit overlaps no label of
    c (every score 0). A unit's category is the one whose best score is largest, the later
    one in category order on ties (a stable ascending sort of the categories' scores,
    reversed; so the last category for a unit that overlaps nothing). Rows go by descending
    best score, ties by descending unit (a stable sort, reversed).

    In the tables a category (or unit) the unit does not overlap has no label (None); in
    the tally rows it has label 0's name, truth, activation (its primary category's, the
    last) and intersection, and the IoU of label 0 masked to the category (0). IoUs written
    are exact; Lite's 1e-10 only ranks.
    """
    ious = iou(counts, truth, dataset.primary)
    lite = lite_iou(counts, truth, dataset.primary)
    act = counts.act[:, dataset.primary]
    n_units = ious.shape[0]
    n_categories = len(dataset.categories)
    in_category = [dataset.primary == ci for ci in range(n_categories)]
    # best[ci, u]: the label; score[ci, u]: its Lite value; exact[ci, u]: its exact IoU,
    # both masked to the category.
    best = np.zeros((n_categories, n_units), dtype=np.int64)
    score = np.zeros((n_categories, n_units))
    exact = np.zeros((n_categories, n_units))
    rows = np.arange(n_units)
    for ci in range(n_categories):
        masked = np.where(in_category[ci][None, :], lite, 0.0)
        best[ci] = np.argmax(masked, axis=1)  # the first maximum
        score[ci] = masked[rows, best[ci]]
        exact[ci] = np.where(in_category[ci][best[ci]], ious[rows, best[ci]], 0.0)
    top = np.array([np.argsort(score[:, u], kind="stable")[-1] for u in range(n_units)], dtype=np.int64)
    order = np.argsort(score.max(axis=0), kind="stable")[::-1]

    def counts_of(u, label):
        return {
            "truth": int(truth[label]),
            "activation": int(act[u, label]),
            "intersect": int(counts.inter[u, label]),
        }

    units = []
    for u in range(n_units):
        per_category = {}
        for ci, cat in enumerate(dataset.categories):
            label = int(best[ci, u])
            if score[ci, u] > 0:
                per_category[cat] = {"label": label, "name": dataset.names[label], **counts_of(u, label),
                                     "iou": float(exact[ci, u])}
            else:
                per_category[cat] = {"label": None, "name": None, "truth": None,
                                     "activation": int(counts.act[u, ci]), "intersect": 0, "iou": 0.0}
        ci = int(top[u])
        alive = bool(score[ci, u] > 0)
        cat = dataset.categories[ci]
        units.append({
            "unit": u,
            "threshold": float(thresholds_[u]),
            "label": per_category[cat]["label"] if alive else None,
            "name": per_category[cat]["name"] if alive else None,
            "category": cat if alive else None,
            "iou": float(exact[ci, u]) if alive else 0.0,
            "detector": alive and bool(exact[ci, u] >= iou_threshold),
            "categories": per_category,
        })

    tally = []
    for u in order:
        u = int(u)
        ci = int(top[u])
        row = {"unit": u + 1, "category": dataset.categories[ci], "label": dataset.names[best[ci, u]],
               "score": float(exact[ci, u]), "categories": {}}
        for cj, cat in enumerate(dataset.categories):
            label = int(best[cj, u])
            row["categories"][cat] = {"label": dataset.names[label], **counts_of(u, label),
                                      "iou": float(exact[cj, u])}
        tally.append(row)

    # What the fixtures exercise: units that overlap nothing, units that overlap no label of
    # some categories only, units whose best score ties across categories, and units whose
    # label in some category is decided by Lite's 1e-10 (equal exact IoUs, unequal scores).
    alive = score > 0
    best_score = score.max(axis=0)
    exact_first = np.zeros((n_categories, n_units), dtype=np.int64)
    for ci in range(n_categories):
        exact_first[ci] = np.argmax(np.where(in_category[ci][None, :], ious, 0.0), axis=1)
    coverage = {
        "dead_units": int((~alive.any(axis=0)).sum()),
        "partly_dead_units": int((alive.any(axis=0) & ~alive.all(axis=0)).sum()),
        "category_ties": int(((score == best_score[None, :]).sum(axis=0)[best_score > 0] > 1).sum()),
        "lite_ties": int(((exact_first != best) & alive).any(axis=0).sum()),
    }
    return units, tally, coverage


# --- The run ----------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--activations", required=True, help="an extract artifact's activations.zarr")
    parser.add_argument("--top", type=float, default=0.005)
    parser.add_argument("--iou-threshold", type=float, default=0.04)
    parser.add_argument("--categories", help="comma-separated; default: all of category.csv")
    parser.add_argument("--rows", type=int, nargs=2, metavar=("START", "END"),
                        help="the index.csv rows the activations hold (default: all)")
    parser.add_argument("--layers", help="comma-separated; default: all of the group")
    parser.add_argument("--batch", type=int, default=100, help="images per batch")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not 0.0 < args.top < 1.0:
        fail(f"--top must be between 0 and 1 (exclusive), got {args.top}")
    timer = Timer()

    t = time.perf_counter()
    categories = args.categories.split(",") if args.categories else None
    dataset = Dataset(args.dataset, categories, args.rows)
    timer.add("tables", time.perf_counter() - t)

    t = time.perf_counter()
    group = zarr.open_group(args.activations, mode="r")
    if args.layers:
        layers = args.layers.split(",")
    else:
        layers = list(group.attrs.get("layers") or sorted(name for name, _ in group.groups()))
    arrays = {layer: group[f"{layer}/activations"] for layer in layers}
    for layer, array in arrays.items():
        if array.ndim != 4 or array.shape[0] != len(dataset):
            fail(f"layer {layer}: activations of shape {array.shape}, expected ({len(dataset)}, units, h, w)")
    timer.add("open", time.perf_counter() - t)

    t = time.perf_counter()
    layer_thresholds = {layer: thresholds(array, args.top) for layer, array in arrays.items()}
    timer.add("quantile", time.perf_counter() - t)  # reading each whole layer included

    n_categories = len(dataset.categories)
    truth = np.zeros(dataset.n_labels, dtype=np.int64)
    counts = {layer: Counts(a.shape[1], dataset.n_labels, n_categories) for layer, a in arrays.items()}
    # Batches are whole multiples of the arrays' image chunks (when the layers share one chunk
    # size), so each chunk is decompressed once.
    chunk = max(a.chunks[0] for a in arrays.values()) if arrays else 1
    batch = -(-max(args.batch, 1) // chunk) * chunk
    for start in range(0, len(dataset), batch):
        stop = min(start + batch, len(dataset))
        t = time.perf_counter()
        by_size = defaultdict(list)
        for row in range(start, stop):
            by_size[dataset.rows[row][:2]].append(row)
        decoded = {}
        for (sh, sw), rows in by_size.items():
            maps = [dataset.label_maps(row) for row in rows]
            n_maps = max([1] + [len(m) for m in maps])
            padded = np.zeros((len(rows), n_maps, sh * sw), dtype=np.int32)
            n_scalars = max([1] + [len(dataset.rows[row][3]) for row in rows])
            scalars = np.full((len(rows), n_scalars), -1, dtype=np.int64)
            for b, (row, m) in enumerate(zip(rows, maps)):
                padded[b, : len(m)] = m
                s = dataset.rows[row][3]
                scalars[b, : len(s)] = s
                for labels in m:
                    pixels = np.bincount(labels, minlength=dataset.n_labels)
                    pixels[0] = 0  # pixel label 0 is unlabelled, not the concept 0
                    truth += pixels
                for label in s:
                    truth[label] += sh * sw
            decoded[(sh, sw)] = (np.asarray(rows) - start, padded, scalars)
        timer.add("labels", time.perf_counter() - t)

        for layer, array in arrays.items():
            t = time.perf_counter()
            acts = np.asarray(array[start:stop])
            timer.add("read", time.perf_counter() - t)
            for (sh, sw), (rows, padded, scalars) in decoded.items():
                score_batch(counts[layer], dataset, acts[rows], layer_thresholds[layer],
                            padded, scalars, sh, sw, timer)

    t = time.perf_counter()
    out = {
        "top": args.top,
        "iou_threshold": args.iou_threshold,
        "categories": dataset.categories,
        "images": len(dataset),
        "layers": {},
    }
    for layer in layers:
        units, tally, coverage = label_units(dataset, counts[layer], truth, layer_thresholds[layer],
                                             args.iou_threshold)
        out["layers"][layer] = {
            "units": len(units),
            "detectors": sum(u["detector"] for u in units),
            "thresholds": [u["threshold"] for u in units],
            "unit": units,
            "tally": tally,
            "coverage": coverage,
        }
    timer.add("iou", time.perf_counter() - t)

    t = time.perf_counter()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    timer.add("write", time.perf_counter() - t)
    timer.report()


if __name__ == "__main__":
    main()
