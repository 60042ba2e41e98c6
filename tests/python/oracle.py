#!/usr/bin/env python3
"""An independent reference implementation of Network Dissection, in its lite and original modes.

    oracle.py --dataset DIR --activations PATH/activations.zarr [--top 0.005]
              [--iou-threshold 0.04] [--categories color,object,...] [--rows START END]
              [--layers conv1,conv2] [--batch 100] [--mode lite|original]
              [--tally-depth D] --out out.json

Written from the method's specification (METHOD.md §2 and §3) and the rules the README
documents for the original mode alone, with PIL, NumPy and zarr-python, to serve as a test
oracle for the Rust stages: it shares no code with them.

- Dataset (§2): `index.csv` rows in file order; a category cell holds items joined by `;`
  (empty items dropped); an all-digit item is an image-level label number (0 included), any
  other item is a label PNG under `images/` whose pixel label is R + 256·G. A label's primary
  category is the loaded category where its coverage in `c_<category>.csv` is largest (0
  where a category does not list it), the later category on a tie (so a label of coverage 0
  everywhere, and label 0, fall to the last one).
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

`--mode original` (`[segment] upsample = "receptive-field"` with `[score] denominator =
"original"`) changes the masks, the counts, the IoU of label 0 and the ranking:

- Masks (§3.3, original): each layer's receptive field comes from the extract artifact's
  manifest (the `manifest.json` next to `activations.zarr`): `outputs.fields[layer]` =
  {offset: [oy, ox], size: [sy, sx], stride: [ty, tx]} in input pixels, and
  `outputs.input_size` = [H, W], the model's input. Per axis, with `input` pixels of input
  and `label` pixels of label map: r = round(input / label) (Python's round, half to even),
  at least 1; cell 0's centre in input pixels c = offset + size // 2; in label pixels
  first = c // r and step = stride // r (floor division), or, where that step is 0,
  first = c / (input / label) and step = stride / (input / label) exactly. Cell j is
  centred at label pixel first + step·j; the map is interpolated piecewise-linearly through
  those centres, separably, constant beyond the outermost ones (numpy.interp's rule), in
  float64, and the mask keeps the pixels strictly above the threshold.
- Counts (§3.4, original denominator): per image, its image-level items, a label given twice
  among them counting once (in truth and in intersections); pixel labels as in lite. An
  image's mask pixels count towards category `cat` whenever the image carries any label
  whose primary category is `cat` anywhere (in a label map or as an image-level item),
  whatever the mask covers, except that label 0 never marks a category present.
- IoU: as in lite, except label 0, which has no activation term: inter / (truth − inter)
  (0 when that is 0), and an activation of 0 in the tables and tally.csv.
- Labels: ranked by the exact IoU (no 1e-10), otherwise the lite rules above (the smallest
  label on ties in a category, the later category on ties across categories; no label
  where the unit overlaps no label of the category, that is every intersection is 0).
- `--tally-depth D` (the original's truncated tally): per image and layer, its entries
  other than intersections are E = ((1 + S1)(1 + S2) − 1) + (1 + S1)·P + (1 + S2)·U, for S1
  units whose mask fills the whole label map, S2 image-level items as index.csv lists them
  (repeats included), P distinct non-zero pixel labels over the image's label maps and U
  other units with a non-empty mask. Those U units' intersections with pixel labels (one
  entry per unit and label with a non-zero count) get D − E slots (none if negative): the
  largest counts are kept, on equal counts the smaller unit, then the smaller label, and
  the others are not added. Full-mask units' intersections, intersections with image-level
  labels, truths and activations are never dropped. Per layer the oracle reports what was
  dropped: images (with a dropped entry), entries, pixels (their counts) and overflows
  (images where E ≥ D, which the Rust score stage refuses).

The output JSON holds, per layer, every unit's threshold, its best label, category and IoU,
and per category its best label with truth, activation, intersect and IoU (nulls where it
overlaps nothing); the rows of tally.csv in order; and counts of the cases the run covers
(units that overlap nothing, in some categories only, ties). Units are 0-based but in the
tally rows. In original mode it also holds, per layer, what the tally depth dropped. At the
top, `repeated` counts images that repeat a label among their image-level items and the
repeated appearances of a pixel's label in several of its maps.
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

        # Primary category: the largest coverage among the loaded categories, a category that
        # does not list the label counting 0 (as NetDissect's primary_categories_per_index),
        # the later category on a tie (`>=` while walking in category order): a label listed
        # nowhere, or with coverage 0 wherever listed, goes to the last category, as label 0.
        last = len(self.categories) - 1
        coverage = np.zeros((len(self.categories), n_labels))
        for ci, c in enumerate(self.categories):
            path = os.path.join(root, f"c_{c}.csv")
            for r in read_csv(path):
                number = int(r["number"])
                if number == 0 or number >= n_labels:
                    continue
                coverage[ci, number] = float(r["coverage"])
        self.primary = np.full(n_labels, last, dtype=np.int64)
        best = np.zeros(n_labels)
        for ci in range(len(self.categories)):
            later = coverage[ci] >= best
            best[later] = coverage[ci][later]
            self.primary[later] = ci
        self.primary[0] = last

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


def upsample(maps, sh, sw, weights=None):
    """(K, h, w) float64 → (K, sh, sw), separable: along x, then along y.

    weights: the (y, x) pair of per-axis (i0, i1, w0, w1) to use; lite's bilinear by default.
    """
    _, h, w = maps.shape
    if weights is None:
        weights = (bilinear_weights(h, sh), bilinear_weights(w, sw))
    (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = weights
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


# --- Masks (METHOD §3.3, original) ----------------------------------------------------------


def field_centres(offset, size, stride, n_in, n_label, n_cells):
    """Label-space centres of one axis's n_cells cells, by the original's arithmetic.

    offset, size, stride: the layer's receptive field along the axis, in input pixels;
    n_in: the model's input pixels along it; n_label: the label map's.
    """
    r = max(1, round(n_in / n_label))
    c = offset + size // 2
    first, step = c // r, stride // r
    if step == 0:
        scale = n_in / n_label
        first, step = c / scale, stride / scale
    return first + step * np.arange(n_cells, dtype=np.float64)


def field_weights(centres, n_out):
    """Source cells and weights of each output pixel along one axis, for piecewise-linear
    interpolation through the cells' centres, constant beyond the outermost ones.

    numpy.interp maps each output pixel to its fractional cell coordinate (clamped to
    [0, cells − 1] outside the centres); the pixel blends cells i0 = floor of that and
    i0 + 1 (clamped) with weights 1 − λ and λ.
    """
    n_cells = len(centres)
    frac = np.interp(np.arange(n_out, dtype=np.float64), centres, np.arange(n_cells, dtype=np.float64))
    i0 = np.minimum(np.floor(frac).astype(np.int64), n_cells - 1)
    i1 = np.minimum(i0 + 1, n_cells - 1)
    w1 = frac - i0
    w1[i1 == i0] = 0.0
    w0 = 1.0 - w1
    return i0, i1, w0, w1


def receptive_field_weights(field, input_size, h, w, sh, sw):
    """The (y, x) weights of `upsample` for a layer of (h, w) maps with this field."""
    axes = []
    for axis, (n_cells, n_out) in enumerate(((h, sh), (w, sw))):
        centres = field_centres(field["offset"][axis], field["size"][axis], field["stride"][axis],
                                input_size[axis], n_out, n_cells)
        axes.append(field_weights(centres, n_out))
    return tuple(axes)


# --- Counting (METHOD §3.4, lite) -----------------------------------------------------------


class Counts:
    """inter[unit, label] and act[unit, category] of one layer."""

    def __init__(self, n_units, n_labels, n_categories):
        self.inter = np.zeros((n_units, n_labels), dtype=np.int64)
        self.act = np.zeros((n_units, n_categories), dtype=np.int64)
        # What the original's tally depth dropped (original mode with --tally-depth only).
        self.dropped = {"images": 0, "entries": 0, "pixels": 0, "overflows": 0}
        # Original mode: (image, unit) masks that fill the label map, and images whose depth
        # cut falls between equal counts (where the tie rule decides what is kept).
        self.full_masks = 0
        self.cut_ties = 0
        self.full_mask_cuts = 0  # images with a dropped entry and a full mask


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


def pair_masks(acts, thresholds_, label_maps, sh, sw, weights, image, unit, timer):
    """The masks of some (image, unit) pairs (upsampled with `weights`, bilinear when None),
    flat, and the nonzero pixel labels under them: (time the masks were done, masks, mask
    pixels of each pair, the labels, the pair of each label)."""
    t0 = time.perf_counter()
    masks = upsample(acts[image, unit].astype(np.float64), sh, sw, weights).reshape(len(image), -1)
    masks = masks > thresholds_[unit][:, None]
    t1 = time.perf_counter()
    timer.add("segment", t1 - t0)

    pixels = masks.sum(axis=1).astype(np.int64)
    pair, pos = np.nonzero(masks)
    labels = label_maps[image[pair], :, pos]  # (mask pixels, M): every map's label there
    lab_pair = np.broadcast_to(pair[:, None], labels.shape)
    keep = labels > 0
    return t1, masks, pixels, labels[keep], lab_pair[keep]


def score_pairs(counts, dataset, acts, thresholds_, label_maps, scalars, sh, sw, image, unit, timer):
    """Adds the masks of some (image, unit) pairs of a batch to a layer's counts."""
    n_labels = dataset.n_labels
    n_categories = len(dataset.categories)
    t1, masks, pixels, labels, lab_pair = pair_masks(
        acts, thresholds_, label_maps, sh, sw, None, image, unit, timer)
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


# --- Counting (METHOD §3.4, original) -------------------------------------------------------


class Images:
    """What the original's counts need of a batch's images, beside their label maps.

    present: (B, categories) bool, the categories of the labels the image carries anywhere
    (label 0 excepted); items: (B,) its image-level items as index.csv lists them (repeats
    included); pixel_labels: (B,) its distinct non-zero pixel labels over all its maps.
    """

    def __init__(self, present, items, pixel_labels):
        self.present = present
        self.items = items
        self.pixel_labels = pixel_labels


def score_batch_original(counts, dataset, acts, thresholds_, label_maps, scalars, images, sh, sw,
                         weights, tally_depth, timer):
    """Adds one batch of same-size images to a layer's counts by the original's rules.

    As score_batch, with `weights` the layer's receptive-field interpolation, `scalars` the
    images' distinct image-level labels and `images` their Images. With a tally depth the
    intersections of each image with pixel labels are first gathered, then cut to the depth.
    """
    t = time.perf_counter()
    peaks = acts.max(axis=(2, 3)).astype(np.float64)
    image, unit = np.nonzero(peaks > thresholds_[None, :])
    timer.add("segment", time.perf_counter() - t)
    step = max(1, PAIR_PIXELS // (sh * sw))
    entries, pairs = [], []
    for p0 in range(0, len(image), step):
        e, p = score_pairs_original(counts, dataset, acts, thresholds_, label_maps, scalars, images,
                                    sh, sw, weights, image[p0:p0 + step], unit[p0:p0 + step], timer)
        entries.append(e)
        pairs.append(p)
    t = time.perf_counter()
    e_image, e_unit, e_label, e_count, e_full = (np.concatenate(x) for x in zip(*entries)) if entries \
        else (np.zeros(0, dtype=np.int64),) * 4 + (np.zeros(0, dtype=bool),)
    keep = np.ones(len(e_count), dtype=bool)
    p_image, p_pixels = (np.concatenate(x) for x in zip(*pairs)) if pairs \
        else (np.zeros(0, dtype=np.int64),) * 2
    full = p_pixels == sh * sw
    counts.full_masks += int(full.sum())
    if tally_depth is not None:
        s1 = np.bincount(p_image[full], minlength=len(acts))
        u = np.bincount(p_image[~full & (p_pixels > 0)], minlength=len(acts))
        s2 = images.items
        p = images.pixel_labels
        others = ((1 + s1) * (1 + s2) - 1) + (1 + s1) * p + (1 + s2) * u
        counts.dropped["overflows"] += int((others >= tally_depth).sum())
        for b in range(len(acts)):
            # The non-full units' intersections with pixel labels: the largest fill the room
            # left; on equal counts the smaller unit, then the smaller label.
            candidates = np.nonzero((e_image == b) & ~e_full)[0]
            room = max(tally_depth - int(others[b]), 0)
            if len(candidates) <= room:
                continue
            order = np.lexsort((e_label[candidates], e_unit[candidates], -e_count[candidates]))
            dropped = candidates[order[room:]]
            if room > 0 and e_count[candidates[order[room - 1]]] == e_count[dropped[0]]:
                counts.cut_ties += 1
            counts.full_mask_cuts += int(s1[b] > 0)
            keep[dropped] = False
            counts.dropped["images"] += 1
            counts.dropped["entries"] += len(dropped)
            counts.dropped["pixels"] += int(e_count[dropped].sum())
    np.add.at(counts.inter, (e_unit[keep], e_label[keep]), e_count[keep])
    timer.add("score", time.perf_counter() - t)


def score_pairs_original(counts, dataset, acts, thresholds_, label_maps, scalars, images, sh, sw,
                         weights, image, unit, timer):
    """Adds the activation counts and image-level intersections of some (image, unit) pairs,
    and returns their intersections with pixel labels as entries (image, unit, label, count,
    whether the unit's mask fills the image) and the pairs' (image, mask pixels)."""
    n_labels = dataset.n_labels
    t1, masks, pixels, labels, lab_pair = pair_masks(
        acts, thresholds_, label_maps, sh, sw, weights, image, unit, timer)
    # One entry per pair and pixel label, counting the label once per map it appears in.
    code, n = np.unique(lab_pair.astype(np.int64) * n_labels + labels, return_counts=True)
    e_pair, e_label = code // n_labels, code % n_labels
    entries = (image[e_pair], unit[e_pair], e_label, n.astype(np.int64), pixels[e_pair] == sh * sw)
    # Image-level labels (each once an image) intersect all of the mask.
    for s in scalars.T:
        s = s[image]
        ok = s >= 0
        np.add.at(counts.inter, (unit[ok], s[ok]), pixels[ok])
    # The mask counts for every category the image carries, whatever it covers.
    np.add.at(counts.act, unit, images.present[image] * pixels[:, None])
    timer.add("score", time.perf_counter() - t1)
    return entries, (image, pixels)


# --- IoU and labels (METHOD §3.4, §3.5) -----------------------------------------------------


def label_activation(counts, primary, original=False):
    """act[unit, primary(label)]; with the original's rules, 0 for label 0 (no activation
    term in its IoU)."""
    act = counts.act[:, primary]
    if original:
        act[:, 0] = 0
    return act


def iou(counts, truth, primary, original=False):
    act = label_activation(counts, primary, original)
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


def label_units(dataset, counts, truth, thresholds_, iou_threshold, mode="lite"):
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

    With mode "original" labels are scored by their exact IoU, label 0's without an
    activation term (and with an activation of 0 in the tables and rows), and a category is
    the unit's where it overlaps a label of it (a non-zero intersection): the same as a
    non-zero score but where label 0's truth − inter is 0, and there argmax gives label 0 too.
    """
    original = mode == "original"
    ious = iou(counts, truth, dataset.primary, original)
    lite = ious if original else lite_iou(counts, truth, dataset.primary)
    act = label_activation(counts, dataset.primary, original)
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
    if original:
        alive = np.stack([(counts.inter[:, in_category[ci]] > 0).any(axis=1) for ci in range(n_categories)])
    else:
        alive = score > 0
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
            if alive[ci, u]:
                per_category[cat] = {"label": label, "name": dataset.names[label], **counts_of(u, label),
                                     "iou": float(exact[ci, u])}
            else:
                per_category[cat] = {"label": None, "name": None, "truth": None,
                                     "activation": int(counts.act[u, ci]), "intersect": 0, "iou": 0.0}
        ci = int(top[u])
        labelled = bool(alive[ci, u])
        cat = dataset.categories[ci]
        units.append({
            "unit": u,
            "threshold": float(thresholds_[u]),
            "label": per_category[cat]["label"] if labelled else None,
            "name": per_category[cat]["name"] if labelled else None,
            "category": cat if labelled else None,
            "iou": float(exact[ci, u]) if labelled else 0.0,
            "detector": labelled and bool(exact[ci, u] >= iou_threshold),
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

    if original:
        coverage = original_coverage(dataset, counts, ious, alive, best, score, top)
        coverage.update(full_masks=counts.full_masks, cut_ties=counts.cut_ties,
                        full_mask_cuts=counts.full_mask_cuts)
        return units, tally, coverage

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


def original_coverage(dataset, counts, ious, alive, best, score, top):
    """What an original-mode run exercises: units that overlap nothing, units that overlap no
    label of some categories only, units whose best IoU ties across categories, units whose
    label in some category is the smallest of several with its IoU, units labelled 0 in its
    category and overall, and units whose only overlap in a category is label 0 with an IoU
    of 0 (truth = inter, where the rules give label 0 and an IoU of 0). The caller adds the
    full masks and depth cuts between equal counts the counting met."""
    n_categories, n_units = score.shape
    best_score = score.max(axis=0)
    label_ties = np.zeros(n_units, dtype=bool)
    for ci in range(n_categories):
        in_category = dataset.primary == ci
        equal = (ious == score[ci][:, None]) & in_category[None, :]
        label_ties |= alive[ci] & (score[ci] > 0) & (equal.sum(axis=1) > 1)
    last = n_categories - 1
    units = np.arange(n_units)
    zero = alive[last] & (best[last] == 0)
    return {
        "dead_units": int((~alive.any(axis=0)).sum()),
        "partly_dead_units": int((alive.any(axis=0) & ~alive.all(axis=0)).sum()),
        "category_ties": int(((score == best_score[None, :]).sum(axis=0)[best_score > 0] > 1).sum()),
        "label_ties": int(label_ties.sum()),
        "label0_in_category": int(zero.sum()),
        "label0_units": int((zero & (top == last) & alive[top, units]).sum()),
        "label0_zero_iou": int((alive & (score == 0)).any(axis=0).sum()),
    }


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
    parser.add_argument("--mode", choices=("lite", "original"), default="lite",
                        help="lite: bilinear masks, lite denominator; original: receptive-field "
                             "masks, original denominator")
    parser.add_argument("--tally-depth", type=int,
                        help="the original's tally depth (original mode; default: exact counts)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if not 0.0 < args.top < 1.0:
        fail(f"--top must be between 0 and 1 (exclusive), got {args.top}")
    original = args.mode == "original"
    if args.tally_depth is not None and (not original or args.tally_depth < 1):
        fail("--tally-depth needs --mode original and a depth of at least 1")
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
    if original:
        # The receptive fields and the model's input size, from the extract artifact's manifest.
        path = os.path.join(os.path.dirname(os.path.normpath(args.activations)), "manifest.json")
        with open(path) as f:
            outputs = json.load(f)["outputs"]
        fields, input_size = outputs.get("fields") or {}, outputs.get("input_size")
        if input_size is None:
            fail(f"{path} gives no outputs.input_size")
        for layer in layers:
            if layer not in fields:
                fail(f"{path} gives no receptive field for layer {layer}")
        field_weights_ = {}  # (layer, sh, sw) → the layer's upsample weights at that label size
    timer.add("open", time.perf_counter() - t)

    t = time.perf_counter()
    layer_thresholds = {layer: thresholds(array, args.top) for layer, array in arrays.items()}
    timer.add("quantile", time.perf_counter() - t)  # reading each whole layer included

    n_categories = len(dataset.categories)
    truth = np.zeros(dataset.n_labels, dtype=np.int64)
    # What the dataset exercises: images that repeat a label among their image-level items,
    # pixels whose label is in two of their maps (each counts twice).
    repeated = {"items": 0, "pixel_labels": 0}
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
            # The original counts a label repeated among an image's image-level items once.
            items = [dataset.rows[row][3] for row in rows]
            if original:
                items = [list(dict.fromkeys(s)) for s in items]
            n_scalars = max([1] + [len(s) for s in items])
            scalars = np.full((len(rows), n_scalars), -1, dtype=np.int64)
            images = Images(np.zeros((len(rows), n_categories), dtype=bool),
                            np.array([len(dataset.rows[row][3]) for row in rows], dtype=np.int64),
                            np.zeros(len(rows), dtype=np.int64))
            for b, (row, m, s) in enumerate(zip(rows, maps, items)):
                padded[b, : len(m)] = m
                scalars[b, : len(s)] = s
                for labels in m:
                    pixels = np.bincount(labels, minlength=dataset.n_labels)
                    pixels[0] = 0  # pixel label 0 is unlabelled, not the concept 0
                    truth += pixels
                for label in s:
                    truth[label] += sh * sw
                given = dataset.rows[row][3]
                repeated["items"] += int(len(set(given)) < len(given))
                ordered = np.sort(m, axis=0)
                repeated["pixel_labels"] += int(((ordered[1:] == ordered[:-1]) & (ordered[1:] > 0)).sum())
                # The categories the image carries anywhere (label 0 never marks one).
                carried = np.unique(m[m > 0])
                images.pixel_labels[b] = len(carried)
                images.present[b, dataset.primary[carried]] = True
                images.present[b, dataset.primary[[x for x in s if x != 0]]] = True
            decoded[(sh, sw)] = (np.asarray(rows) - start, padded, scalars, images)
        timer.add("labels", time.perf_counter() - t)

        for layer, array in arrays.items():
            t = time.perf_counter()
            acts = np.asarray(array[start:stop])
            timer.add("read", time.perf_counter() - t)
            for (sh, sw), (rows, padded, scalars, images) in decoded.items():
                if not original:
                    score_batch(counts[layer], dataset, acts[rows], layer_thresholds[layer],
                                padded, scalars, sh, sw, timer)
                    continue
                key = (layer, sh, sw)
                if key not in field_weights_:
                    field_weights_[key] = receptive_field_weights(fields[layer], input_size,
                                                                  *acts.shape[2:], sh, sw)
                score_batch_original(counts[layer], dataset, acts[rows], layer_thresholds[layer],
                                     padded, scalars, images, sh, sw, field_weights_[key],
                                     args.tally_depth, timer)

    t = time.perf_counter()
    out = {
        "mode": args.mode,
        "tally_depth": args.tally_depth,
        "top": args.top,
        "iou_threshold": args.iou_threshold,
        "categories": dataset.categories,
        "images": len(dataset),
        "repeated": repeated,
        "layers": {},
    }
    for layer in layers:
        units, tally, coverage = label_units(dataset, counts[layer], truth, layer_thresholds[layer],
                                             args.iou_threshold, args.mode)
        out["layers"][layer] = {
            "units": len(units),
            "detectors": sum(u["detector"] for u in units),
            "thresholds": [u["threshold"] for u in units],
            "unit": units,
            "tally": tally,
            "coverage": coverage,
        }
        if original:
            out["layers"][layer]["dropped"] = counts[layer].dropped
    timer.add("iou", time.perf_counter() - t)

    t = time.perf_counter()
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    timer.add("write", time.perf_counter() - t)
    timer.report()


if __name__ == "__main__":
    main()
