#!/usr/bin/env python3
"""Checks a finished `netdissect run` against the independent oracle (oracle.py).

    check_oracle.py --dataset DIR --cache CACHE_DIR --results RESULTS_DIR/<model> --top T
                    [--keep oracle.json]

The report in RESULTS_DIR/<model> names its artifact key; from there each artifact's
manifest.json names its inputs' keys, back through score, segment and quantile to the
extract artifact that holds the model's activations. The oracle runs on those activations
with the run's categories, rows and IoU threshold, in the run's mode (lite: `bilinear`
upsampling and the `lite` denominator; original: `receptive-field` upsampling and the
`original` denominator, with the run's tally depth if it has one; other mixes are refused),
and must agree with the Rust outputs:

- thresholds.parquet: every threshold equal, or within 1e-12 relative;
- units.parquet: every unit's label, name and category identical (null for a unit that
  overlaps no concept), IoU within 1e-9, same detector flag;
- unit_categories.parquet: per unit and category the same best label, name, truth,
  activation and intersect (nulls where the unit overlaps no label of the category), IoU
  within 1e-9;
- tally-<layer>.csv: NetDissect-Lite's header, and row by row in order the same unit,
  category, label and, per category, label and counts; score and IoUs within 1e-9 relative;
- original mode: the score manifest's per-layer `dropped` (images, entries, pixels and
  overflows of the tally depth) equal to the oracle's, all 0 without a depth.

Exits non-zero listing the first mismatches; on success prints one summary line, with the
counts of what the run covers: units that overlap no concept ("dead"), units that overlap no
label of some categories only ("partly dead"), units whose best IoU ties across categories,
and units with a category label that Lite's 1e-10 picks among equal IoUs. In original mode
the last are instead units with a category label that is the smallest of several with the
same IoU ("label ties"), followed by units labelled 0 in its category and overall, units
whose only overlap in a category is label 0 with an IoU of 0, (image, unit) masks that fill
the label map, images where the tally depth cut falls between equal counts, images with a
cut and a full mask, images that repeat an image-level label and repeated appearances of a pixel's label in several maps;
then what the tally depth dropped in all layers: "dropped E entries (P pixels) in I images".
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

import pyarrow.parquet as pq

THRESHOLD_RTOL = 1e-12
IOU_TOL = 1e-9
IOU_RTOL = 1e-9
FIELDS = ("label", "truth", "activation", "intersect", "iou")
SHOWN = 20


def fail(message):
    sys.exit(f"check_oracle: error: {message}")


def manifest(cache, stage, key):
    path = os.path.join(cache, stage, key, "manifest.json")
    if not os.path.exists(path):
        fail(f"no {stage} artifact {key} in {cache} (looked for {path})")
    with open(path) as f:
        m = json.load(f)
    if m.get("key") != key or m.get("stage") != stage:
        fail(f"{path} is not the {stage} artifact {key}")
    return m


def rows(path):
    return pq.read_table(path).to_pylist()


def close(got, want):
    return abs(got - want) <= IOU_RTOL * abs(want)


def file_stem(layer):
    """As the report names a layer's tally file: `/` and `\\` would make directories."""
    return layer.replace("/", "_").replace("\\", "_")


def check_tally(path, categories, expected):
    """tally.csv against the oracle's rows, in order; returns the mismatches."""
    if not os.path.exists(path):
        return [f"{path}: missing"]
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        got = list(reader)
    want_header = ["unit", "category", "label", "score"] + [f"{c}-{k}" for c in categories for k in FIELDS]
    if header != want_header:
        return [f"{path}: header {','.join(header)}, expected {','.join(want_header)}"]
    errors = []
    if len(got) != len(expected):
        errors.append(f"{path}: {len(got)} rows, expected {len(expected)}")
    name = os.path.basename(path)
    for line, (record, want) in enumerate(zip(got, expected), start=2):
        row = dict(zip(header, record))
        problems = []
        if (int(row["unit"]), row["category"], row["label"]) != (want["unit"], want["category"], want["label"]):
            problems.append(f"unit,category,label {row['unit']},{row['category']},{row['label']!r}; "
                            f"oracle {want['unit']},{want['category']},{want['label']!r}")
        if not close(float(row["score"]), want["score"]):
            problems.append(f"score {row['score']}, oracle {want['score']!r}")
        for c in categories:
            w = want["categories"][c]
            g = {k: row[f"{c}-{k}"] for k in FIELDS}
            counts = tuple(int(g[k]) for k in ("truth", "activation", "intersect"))
            if g["label"] != w["label"] or counts != tuple(w[k] for k in ("truth", "activation", "intersect")) \
                    or not close(float(g["iou"]), w["iou"]):
                problems.append(f"{c} {g['label']!r},{','.join(str(x) for x in counts)},{g['iou']}; oracle "
                                f"{w['label']!r},{w['truth']},{w['activation']},{w['intersect']},{w['iou']!r}")
        if problems:
            errors.append(f"{name} line {line}: " + "; ".join(problems))
    return errors


def artifacts(cache, results):
    """The run's manifests, found from the report's key down to the extract artifact."""
    meta = pq.read_schema(os.path.join(results, "units.parquet")).metadata or {}
    key = meta.get(b"netdissect.key", b"").decode()
    if not key:
        fail(f"{results}/units.parquet names no artifact key in its metadata")
    report = manifest(cache, "report", key)
    score = manifest(cache, "score", report["inputs"]["scores"])
    segment = manifest(cache, "segment", score["inputs"]["masks"])
    quantile = manifest(cache, "quantile", segment["inputs"]["thresholds"])
    extract = manifest(cache, "extract", segment["inputs"]["activations"])
    if quantile["inputs"]["activations"] != extract["key"]:
        fail(f"segment {segment['key']} reads thresholds of other activations than its own")
    return {"report": report, "score": score, "segment": segment, "quantile": quantile, "extract": extract}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--results", required=True, help="the report directory of one model")
    parser.add_argument("--top", type=float, required=True)
    parser.add_argument("--keep", help="also keep the oracle's JSON at this path")
    args = parser.parse_args()

    run = artifacts(args.cache, args.results)
    params = {stage: m["params"] for stage, m in run.items()}
    if params["quantile"]["top"] != args.top:
        fail(f"the run used top = {params['quantile']['top']}, not {args.top}")
    modes = {("bilinear", "lite"): "lite", ("receptive-field", "original"): "original"}
    mode = modes.get((params["segment"]["upsample"], params["score"]["denominator"]))
    if mode is None:
        fail(f"the oracle checks lite mode (bilinear, lite) and original mode (receptive-field, original); "
             f"the run used upsample = {params['segment']['upsample']}, "
             f"denominator = {params['score']['denominator']}")
    tally_depth = params["score"].get("tally_depth")
    if mode == "original" and params["segment"].get("fields") != run["extract"]["outputs"].get("fields"):
        # The oracle reads the fields of the extract artifact, which a pipeline's `fields`
        # would override.
        fail(f"segment {run['segment']['key']} used other receptive fields than its extract artifact records; "
             f"the oracle reads the extract artifact's")
    extract_dir = os.path.join(args.cache, "extract", run["extract"]["key"])
    quantile_dir = os.path.join(args.cache, "quantile", run["quantile"]["key"])

    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or os.path.join(tmp, "oracle.json")
        command = [
            sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "oracle.py"),
            "--dataset", args.dataset,
            "--activations", os.path.join(extract_dir, run["extract"]["outputs"]["activations"]),
            "--top", repr(args.top),
            "--iou-threshold", repr(params["report"]["iou_threshold"]),
            "--categories", ",".join(params["score"]["categories"]),
            "--rows", *[str(r) for r in params["extract"]["rows"]],
            "--mode", mode,
            "--out", out,
        ]
        if tally_depth is not None:
            command += ["--tally-depth", str(tally_depth)]
        done = subprocess.run(command, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(done.stderr)
        if done.returncode != 0:
            fail(f"the oracle failed: {' '.join(command)}")
        with open(out) as f:
            oracle = json.load(f)

    errors = []
    layers = oracle["layers"]
    # What the oracle expects, keyed like the Rust tables' rows.
    expected_units = {(layer, u["unit"]): u for layer, o in layers.items() for u in o["unit"]}
    expected_categories = {(layer, u["unit"], cat): c for layer, o in layers.items()
                           for u in o["unit"] for cat, c in u["categories"].items()}

    max_threshold_abs = max_threshold_rel = 0.0
    thresholds = rows(os.path.join(quantile_dir, run["quantile"]["outputs"]["table"]))
    seen = set()
    for r in thresholds:
        key = (r["layer"], r["unit"])
        seen.add(key)
        if key not in expected_units:
            errors.append(f"thresholds.parquet: {key} is not a unit the oracle knows")
            continue
        want = expected_units[key]["threshold"]
        diff = abs(r["threshold"] - want)
        rel = diff / abs(want) if want != 0 else diff
        max_threshold_abs, max_threshold_rel = max(max_threshold_abs, diff), max(max_threshold_rel, rel)
        if rel > THRESHOLD_RTOL:
            errors.append(f"threshold {r['layer']} unit {r['unit']}: rust {r['threshold']!r}, oracle {want!r}")
    errors += [f"thresholds.parquet: no row for {k}" for k in sorted(set(expected_units) - seen)]

    max_iou = 0.0
    units = rows(os.path.join(args.results, "units.parquet"))
    seen = set()
    for r in units:
        key = (r["layer"], r["unit"])
        seen.add(key)
        want = expected_units.get(key)
        if want is None:
            errors.append(f"units.parquet: {key} is not a unit the oracle knows")
            continue
        max_iou = max(max_iou, abs(r["iou"] - want["iou"]))
        if (r["label"], r["name"], r["category"]) != (want["label"], want["name"], want["category"]) \
                or abs(r["iou"] - want["iou"]) > IOU_TOL or r["detector"] != want["detector"]:
            errors.append(
                f"unit {r['layer']} {r['unit']}: rust label {r['label']} ({r['name']}, {r['category']}) "
                f"iou {r['iou']!r} detector {r['detector']}; oracle label {want['label']} ({want['name']}, "
                f"{want['category']}) iou {want['iou']!r} detector {want['detector']}")
    errors += [f"units.parquet: no row for {k}" for k in sorted(set(expected_units) - seen)]

    unit_categories = rows(os.path.join(args.results, "unit_categories.parquet"))
    seen = set()
    for r in unit_categories:
        key = (r["layer"], r["unit"], r["category"])
        seen.add(key)
        want = expected_categories.get(key)
        if want is None:
            errors.append(f"unit_categories.parquet: {key} is not a unit and category the oracle knows")
            continue
        max_iou = max(max_iou, abs(r["iou"] - want["iou"]))
        got = tuple(r[k] for k in ("label", "name", "truth", "activation", "intersect"))
        exp = tuple(want[k] for k in ("label", "name", "truth", "activation", "intersect"))
        if got != exp or abs(r["iou"] - want["iou"]) > IOU_TOL:
            errors.append(
                f"unit {r['layer']} {r['unit']} {r['category']}: rust (label, name, truth, activation, intersect) "
                f"{got} iou {r['iou']!r}; oracle {exp} iou {want['iou']!r}")
    errors += [f"unit_categories.parquet: no row for {k}" for k in sorted(set(expected_categories) - seen)]

    tally_rows = 0
    for layer, o in layers.items():
        path = os.path.join(args.results, f"tally-{file_stem(layer)}.csv")
        errors += check_tally(path, oracle["categories"], o["tally"])
        tally_rows += len(o["tally"])
    keys = ("dead_units", "partly_dead_units", "category_ties", "lite_ties") if mode == "lite" else \
        ("dead_units", "partly_dead_units", "category_ties", "label_ties", "label0_in_category", "label0_units",
         "label0_zero_iou", "full_masks", "cut_ties", "full_mask_cuts")
    coverage = {k: sum(o["coverage"][k] for o in layers.values()) for k in keys}

    dropped = {"images": 0, "entries": 0, "pixels": 0, "overflows": 0}
    if mode == "original":
        # What the tally depth dropped, per layer: the score manifest's record and the oracle's.
        recorded = {entry["name"]: entry.get("dropped") for entry in run["score"]["outputs"]["layers"]}
        for layer, o in layers.items():
            want = o["dropped"]
            got = recorded.get(layer)
            if got is None and tally_depth is None:
                got = {k: 0 for k in want}
            if got != want:
                errors.append(f"score manifest: layer {layer} dropped {got}, oracle {want}")
            for k in dropped:
                dropped[k] += want[k]

    name = os.path.basename(os.path.normpath(args.results))
    if errors:
        shown = "\n  ".join(errors[:SHOWN])
        more = f"\n  ... and {len(errors) - SHOWN} more" if len(errors) > SHOWN else ""
        sys.exit(f"check_oracle: {name}: {len(errors)} mismatches with the oracle:\n  {shown}{more}")
    print(f"check_oracle: {name} agrees with the oracle: {len(layers)} layers ({', '.join(layers)}), "
          f"{len(expected_units)} units, {len(expected_categories)} unit-categories, {tally_rows} tally rows; "
          f"max |Δthreshold| {max_threshold_abs:.3g} (relative {max_threshold_rel:.3g}), max |ΔIoU| {max_iou:.3g}; "
          + (f"covers {coverage['dead_units']} dead units, {coverage['partly_dead_units']} partly dead units, "
             f"{coverage['category_ties']} category ties, {coverage['lite_ties']} lite ties" if mode == "lite" else
             f"original mode{'' if tally_depth is None else f' with tally depth {tally_depth}'}; "
             f"covers {coverage['dead_units']} dead units, {coverage['partly_dead_units']} partly dead units, "
             f"{coverage['category_ties']} category ties, {coverage['label_ties']} label ties, "
             f"{coverage['label0_in_category']} units labelled 0 in a category, "
             f"{coverage['label0_units']} units labelled 0 overall, "
             f"{coverage['label0_zero_iou']} units overlapping only label 0 with IoU 0 in a category, "
             f"{coverage['full_masks']} full masks, {coverage['cut_ties']} depth cuts between equal counts, "
             f"{coverage['full_mask_cuts']} depth cuts beside a full mask, "
             f"{oracle['repeated']['items']} images repeating an image-level label, "
             f"{oracle['repeated']['pixel_labels']} repeated pixel labels; "
             f"dropped {dropped['entries']} entries ({dropped['pixels']} pixels) in {dropped['images']} images"))


if __name__ == "__main__":
    main()
