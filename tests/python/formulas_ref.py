#!/usr/bin/env python3
"""A brute-force reference for the `formulas` stage (compositional explanations, Mu & Andreas
2020 style), written from notes/formulas-spec.md alone, as a test oracle for the Rust stage.

    formulas_ref.py --dataset DIR --masks SEGMENT_ARTIFACT_DIR [--rows START END]
                    [--denominator lite|original] [--max-length 3] [--beam 10]
                    [--ops and,or,and_not] [--categories object,part,...] [--min-images 0]
                    [--exhaustive] --out OUT.json

- Dataset: the Broden-format loader of oracle.py (same folder), every category of
  category.csv loaded, in file order; primary categories as there (largest coverage, 0 where a
  category does not list the label, the later category on a tie; label 0 and labels of
  coverage 0 everywhere go to the last one).
  --categories only restricts which concepts are allowed; it never changes the loaded
  categories (so primary categories and the denominator's `present` sets are unchanged).
- Concepts: the label numbers 1 .. n_labels − 1, n_labels being oracle.py's (one more than
  the largest number in label.csv or among the image-level items of index.csv, all rows).
- Masks: SEGMENT_ARTIFACT_DIR/masks.zarr read with zarr-python (per layer image_pairs, unit,
  pair_runs, run_start, run_length); the layers and unit counts come from
  manifest.json's outputs.layers, the rows it covers from outputs.rows: mask image j is
  dataset row rows[0] + j. --rows (default: the artifact's rows) must lie inside them.
- Everything is counted by materialising boolean masks over all the pixels of the chosen
  rows: a (labels × pixels) matrix of the per-pixel label sets, one unit mask at a time, and
  each scored formula's mask, built left-deep from its canonical sequence with &, |, & ~.
  No inclusion–exclusion, no per-image shortcuts beyond the act term's per-image sum.
  A single concept is counted as the score stage counts it: a pixel once per label map
  giving the label and once per image-level item naming it (a repeated item once with the
  original denominator), so that length 1 is the score stage's IoU; a longer formula counts
  each pixel once.

Output (JSON, keys sorted):
  {"params": {...}, "concepts": [allowed label numbers],
   "layers": {layer: [{"unit": k,
                       "formulas": [{"length": j, "labels": [c1, ...] | null,
                                     "ops": ["or", ...] | null, "text": str | null,
                                     "iou": float, "inter": int | null, "act": int | null,
                                     "truth": int | null} for j = 1 .. max_length],
                       "best": j | null}, ...]}}
A length whose best IoU is 0 (or that had no formula to score) is null: labels, ops, text,
inter, act and truth null, iou 0.0. "ops" of a length-1 formula is []. "best" is the length
of the unit's overall best formula (null when its IoU is 0). With --exhaustive only lengths
1 and 2 are reported (min(max_length, 2) of them).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import zarr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402  (the independent Broden loader)

OPS = ("and", "or", "and_not")  # index = rank in the ordering: and < or < and_not
RANK = {op: r for r, op in enumerate(OPS)}
TEXT = {"and": " AND ", "or": " OR ", "and_not": " AND NOT "}


def fail(message):
    sys.exit(f"formulas_ref: error: {message}")


# --- Formulas ------------------------------------------------------------------------------
# A formula is its sequence as a tuple of ints: (c1, r2, c2, r3, c3, ...), r = op rank.


def length(seq):
    return (len(seq) + 1) // 2


def concepts_of(seq):
    return seq[0::2]


def canonical(concepts, ops):
    """The canonical sequence of the left-deep formula c1 op2 c2 op3 c3 ... (ops as names)."""
    concepts = list(concepts)
    ops = list(ops)
    if len(set(concepts)) != len(concepts):
        raise ValueError(f"repeated concept in {concepts}")
    if ops and all(op in ("and", "and_not") for op in ops):
        pos = sorted([concepts[0]] + [c for c, op in zip(concepts[1:], ops) if op == "and"])
        neg = sorted(c for c, op in zip(concepts[1:], ops) if op == "and_not")
        concepts = pos + neg
        ops = ["and"] * (len(pos) - 1) + ["and_not"] * len(neg)
    elif ops and all(op == "or" for op in ops):
        concepts = sorted(concepts)
    elif ops and ops[0] in ("and", "or") and concepts[1] < concepts[0]:
        concepts[0], concepts[1] = concepts[1], concepts[0]
    seq = [concepts[0]]
    for op, c in zip(ops, concepts[1:]):
        seq += [RANK[op], c]
    return tuple(seq)


def extend(seq, op, c):
    """canonical(F op c) for a canonical F."""
    concepts = list(concepts_of(seq)) + [c]
    ops = [OPS[r] for r in seq[1::2]] + [op]
    return canonical(concepts, ops)


def text(seq, names):
    out = names[seq[0]] or str(seq[0])
    for i, (r, c) in enumerate(zip(seq[1::2], seq[2::2])):
        if i > 0:
            out = f"({out})"
        out += TEXT[OPS[r]] + (names[c] or str(c))
    return out


# --- Data ------------------------------------------------------------------------------------


class Pixels:
    """The label sets of every pixel of the chosen rows, and what the act term needs.

    lab: (n_labels, P) bool, lab[c, p] = c ∈ L(p) (row 0 all False).
    offsets: (images + 1,) first pixel of each image in the concatenation.
    sizes: per image, sh·sw.
    maps: per image, its label maps (maps, sh·sw) int32 (for the lite `present` sets).
    scalars: per image, its image-level items (label 0 included, repeats included).
    present_orig: (images, categories) bool, the original denominator's `present` sets.
    count: {denominator: (n_labels, P) int32}, how many times each label is given at each
    pixel, as the score stage counts a single concept: once per label map carrying it, and
    once per image-level item naming it (repeated items once with the original denominator).
    """

    def __init__(self, ds, rows):
        n_cat = len(ds.categories)
        self.maps, self.scalars, sizes = [], [], []
        for r in range(rows[0], rows[1]):
            sh, sw, _, scalars = ds.rows[r]
            self.maps.append(ds.label_maps(r))
            self.scalars.append(list(scalars))
            sizes.append(sh * sw)
        self.sizes = sizes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total = int(self.offsets[-1])
        self.lab = np.zeros((ds.n_labels, total), dtype=bool)
        self.present_orig = np.zeros((len(sizes), n_cat), dtype=bool)
        self.count = {d: np.zeros((ds.n_labels, total), dtype=np.int32)
                      for d in ("lite", "original")}
        for i, (maps, scalars) in enumerate(zip(self.maps, self.scalars)):
            o0, o1 = self.offsets[i], self.offsets[i + 1]
            block = self.lab[:, o0:o1]  # a view
            pix = np.arange(o1 - o0)
            for d, items in (("lite", list(scalars)), ("original", sorted(set(scalars)))):
                counted = self.count[d][:, o0:o1]  # a view
                for m in maps:
                    counted[m, pix] += 1
                for s in items:
                    counted[s, :] += 1
                counted[0, :] = 0
            for m in maps:
                block[m, pix] = True
                self.present_orig[i, ds.primary[m[m > 0]]] = True
            for s in scalars:
                if s != 0:
                    block[s, :] = True
                    self.present_orig[i, ds.primary[s]] = True
            block[0, :] = False  # label 0 is never in a label set
        # Images where each label occurs (in some L(p)).
        self.images_with = np.zeros(ds.n_labels, dtype=np.int64)
        for i in range(len(sizes)):
            o0, o1 = self.offsets[i], self.offsets[i + 1]
            self.images_with += self.lab[:, o0:o1].any(axis=1)


def read_manifest(masks_dir):
    path = os.path.join(masks_dir, "manifest.json")
    with open(path) as f:
        manifest = json.load(f)
    out = manifest.get("outputs", {})
    if "layers" not in out or "rows" not in out:
        fail(f"{path}: no outputs.layers or outputs.rows")
    layers = [(l["name"], int(l["units"])) for l in out["layers"]]
    rows = (int(out["rows"][0]), int(out["rows"][1]))
    return layers, rows


def unit_runs(group, layer, n_units, images, pixels):
    """Per unit, (global pixel starts, lengths) of its runs in the chosen mask images.

    images: the mask image indices (j) of the chosen rows, in order."""
    image_pairs = np.asarray(group[f"{layer}/image_pairs"][:]).astype(np.int64)
    unit = np.asarray(group[f"{layer}/unit"][:]).astype(np.int64)
    pair_runs = np.asarray(group[f"{layer}/pair_runs"][:]).astype(np.int64)
    starts = np.asarray(group[f"{layer}/run_start"][:]).astype(np.int64)
    lengths = np.asarray(group[f"{layer}/run_length"][:]).astype(np.int64)
    if len(pair_runs) != len(unit) + 1 or image_pairs[-1] != len(unit) or pair_runs[-1] != len(starts):
        fail(f"{layer}: mask offsets disagree with the arrays they index")
    per_unit = [([], []) for _ in range(n_units)]
    for i, j in enumerate(images):
        if j + 1 >= len(image_pairs):
            fail(f"{layer}: masks have {len(image_pairs) - 1} images, image {j} asked")
        for p in range(image_pairs[j], image_pairs[j + 1]):
            k = int(unit[p])
            if k >= n_units:
                fail(f"{layer}: unit {k} beyond the manifest's {n_units}")
            s = starts[pair_runs[p]:pair_runs[p + 1]]
            l = lengths[pair_runs[p]:pair_runs[p + 1]]
            if len(s) and (s + l).max() > pixels.sizes[i]:
                fail(f"{layer}: image {j} unit {k}: a run ends beyond the label map")
            per_unit[k][0].append(s + pixels.offsets[i])
            per_unit[k][1].append(l)
    return per_unit


def unit_mask(runs, total):
    starts, lengths = runs
    edges = np.zeros(total + 1, dtype=np.int64)
    if starts:
        s = np.concatenate(starts)
        l = np.concatenate(lengths)
        np.add.at(edges, s, 1)
        np.add.at(edges, s + l, -1)
    return np.cumsum(edges[:-1]) > 0


# --- Scoring ---------------------------------------------------------------------------------


class Unit:
    """One unit's mask and its act-term tables."""

    def __init__(self, mask, pixels, ds, denominator):
        self.mask = mask
        self.count = pixels.count[denominator]
        n_img = len(pixels.sizes)
        self.mcount = np.zeros(n_img, dtype=np.int64)
        if denominator == "original":
            self.present = pixels.present_orig
        else:
            self.present = np.zeros((n_img, len(ds.categories)), dtype=bool)
        for i in range(n_img):
            o0, o1 = pixels.offsets[i], pixels.offsets[i + 1]
            m = mask[o0:o1]
            self.mcount[i] = int(np.count_nonzero(m))
            if denominator == "lite" and self.mcount[i] > 0:
                under = pixels.maps[i][:, m]
                under = under[under > 0]
                self.present[i, ds.primary[under]] = True
                for s in pixels.scalars[i]:  # label 0 included: primary[0] = last category
                    self.present[i, ds.primary[s]] = True


def formula_mask(seq, lab):
    f = lab[seq[0]].copy()
    for r, c in zip(seq[1::2], seq[2::2]):
        op = OPS[r]
        if op == "and":
            f &= lab[c]
        elif op == "or":
            f |= lab[c]
        else:
            f &= ~lab[c]
    return f


def score(seq, unit, lab, primary):
    """(iou, inter, act, truth) of a formula for a unit, exact integer counts. A single
    concept is counted as the score stage counts it (unit.count: a pixel once per map or
    item giving the label), a longer formula on label sets (each pixel once)."""
    if length(seq) == 1:
        count = unit.count[seq[0]]
        inter = int(count[unit.mask].sum())
        truth = int(count.sum())
    else:
        f = formula_mask(seq, lab)
        inter = int(np.count_nonzero(f & unit.mask))
        truth = int(np.count_nonzero(f))
    cats = sorted({int(primary[c]) for c in concepts_of(seq)})
    hit = unit.present[:, cats].any(axis=1)
    act = int(unit.mcount[hit].sum())
    denom = act + truth - inter
    iou = float(inter) / float(denom) if denom != 0 else 0.0
    return iou, inter, act, truth


class Search:
    def __init__(self, unit, lab, primary):
        self.unit, self.lab, self.primary = unit, lab, primary
        self.scored = {}

    def get(self, seq):
        if seq not in self.scored:
            self.scored[seq] = score(seq, self.unit, self.lab, self.primary)
        return self.scored[seq]

    def key(self, seq):
        return (-self.get(seq)[0], length(seq), seq)


def beam_search(search, allowed, ops, beam_width, max_length):
    singles = [(c,) for c in allowed]
    for s in singles:
        search.get(s)
    beam = sorted(singles, key=search.key)[:beam_width]
    for _step in range(2, max_length + 1):
        candidates = set()
        for f in beam:
            used = set(concepts_of(f))
            for c in allowed:
                if c in used:
                    continue
                for op in ops:
                    candidates.add(extend(f, op, c))
        for s in sorted(candidates):
            search.get(s)
        beam = sorted(set(beam) | candidates, key=search.key)[:beam_width]
    return beam


def exhaustive(search, allowed, ops, max_length):
    for c in allowed:
        search.get((c,))
    if max_length >= 2:
        for c1 in allowed:
            for c2 in allowed:
                if c1 == c2:
                    continue
                for op in ops:
                    search.get(canonical([c1, c2], [op]))


def report(search, max_length, names):
    best_of = {}
    for seq in search.scored:
        j = length(seq)
        if j not in best_of or search.key(seq) < search.key(best_of[j]):
            best_of[j] = seq
    formulas = []
    for j in range(1, max_length + 1):
        seq = best_of.get(j)
        if seq is None or search.scored[seq][0] == 0.0:
            formulas.append({"length": j, "labels": None, "ops": None, "text": None,
                             "iou": 0.0, "inter": None, "act": None, "truth": None})
            continue
        iou, inter, act, truth = search.scored[seq]
        formulas.append({"length": j, "labels": [int(c) for c in concepts_of(seq)],
                         "ops": [OPS[r] for r in seq[1::2]], "text": text(seq, names),
                         "iou": iou, "inter": inter, "act": act, "truth": truth})
    best = None
    if search.scored:
        overall = min(search.scored, key=search.key)
        if search.scored[overall][0] > 0.0:
            best = length(overall)
    return formulas, best


# --- Main ------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--masks", required=True, help="segment artifact directory")
    ap.add_argument("--rows", nargs=2, type=int, metavar=("START", "END"))
    ap.add_argument("--denominator", choices=("lite", "original"), default="lite")
    ap.add_argument("--max-length", type=int, default=3)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--ops", default="and,or,and_not")
    ap.add_argument("--categories")
    ap.add_argument("--min-images", type=int, default=0)
    ap.add_argument("--exhaustive", action="store_true")
    ap.add_argument("--layers", help="only these layers (comma-separated; default: all)")
    ap.add_argument("--units", type=int, help="only each layer's first N units (timing)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    ops = [op for op in args.ops.split(",") if op]
    for op in ops:
        if op not in OPS:
            fail(f"unknown op `{op}` (and, or, and_not)")
    ops = [op for op in OPS if op in ops]  # a set; the order changes nothing
    if args.max_length < 1 or args.beam < 1:
        fail("--max-length and --beam must be at least 1")

    ds = oracle.Dataset(args.dataset)  # every category, every row (rows are absolute)
    layers, art_rows = read_manifest(args.masks)
    if args.layers:
        wanted = [name for name in args.layers.split(",") if name]
        unknown = [name for name in wanted if name not in dict(layers)]
        if unknown:
            fail(f"layers {unknown} are not in the artifact ({[n for n, _ in layers]})")
        layers = [(name, n) for name, n in layers if name in wanted]
    rows = tuple(args.rows) if args.rows else art_rows
    if not (art_rows[0] <= rows[0] <= rows[1] <= art_rows[1]):
        fail(f"--rows {rows[0]} {rows[1]} is not inside the artifact's rows {art_rows}")
    if art_rows[1] > len(ds):
        fail(f"the artifact covers rows {art_rows}, the dataset has {len(ds)}")
    images = list(range(rows[0] - art_rows[0], rows[1] - art_rows[0]))

    if args.categories:
        allowed_cats = [c for c in args.categories.split(",") if c]
        for c in allowed_cats:
            if c not in ds.categories:
                fail(f"category `{c}` is not in category.csv ({', '.join(ds.categories)})")
    else:
        allowed_cats = list(ds.categories)
    allowed_idx = {ds.categories.index(c) for c in allowed_cats}

    pixels = Pixels(ds, rows)
    allowed = [c for c in range(1, ds.n_labels)
               if int(ds.primary[c]) in allowed_idx and pixels.images_with[c] >= args.min_images]
    max_length = min(args.max_length, 2) if args.exhaustive else args.max_length

    group = zarr.open_group(os.path.join(args.masks, "masks.zarr"), mode="r")
    total = int(pixels.offsets[-1])
    out_layers = {}
    for layer, n_units in layers:
        per_unit = unit_runs(group, layer, n_units, images, pixels)
        units = []
        # --units 0 searches no unit: the cost of reading alone, which timing subtracts.
        for k in range(n_units if args.units is None else min(n_units, args.units)):
            unit = Unit(unit_mask(per_unit[k], total), pixels, ds, args.denominator)
            search = Search(unit, pixels.lab, ds.primary)
            if args.exhaustive:
                exhaustive(search, allowed, ops, max_length)
            else:
                beam_search(search, allowed, ops, args.beam, max_length)
            formulas, best = report(search, max_length, ds.names)
            units.append({"unit": k, "formulas": formulas, "best": best})
        out_layers[layer] = units

    result = {
        "params": {"rows": list(rows), "denominator": args.denominator,
                   "max_length": max_length, "beam": args.beam, "ops": ops,
                   "categories": allowed_cats, "min_images": args.min_images,
                   "exhaustive": args.exhaustive},
        "concepts": allowed,
        "layers": out_layers,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, sort_keys=True, indent=1)
        f.write("\n")
    print(f"formulas_ref: {sum(len(u) for u in out_layers.values())} units, "
          f"{len(allowed)} concepts, {rows[1] - rows[0]} images, "
          f"{time.perf_counter() - t0:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
