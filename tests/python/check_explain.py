#!/usr/bin/env python3
"""A NumPy reference for the explain stage's contributions, shares, maps and ablations.

    check_explain.py EXPLAIN_DIR EXTRACT_DIR MODEL

For a model whose class scores are a linear layer ``heads`` over the concatenated spatial
means and maxima of the explained layer's units (the demo models, make_models.py's
classifier), unit u's contribution to class c on an image is exactly
``W[c, u]·mean(A_u) + W[c, K + u]·max(A_u)``, computed here in float64 from the stored
activations (EXTRACT_DIR's Zarr) and the model's weights. Checks, for every row of
explanations.parquet: the contribution (relative 1e-5 of the image's largest), that the
row's units are the image's top units by the reference, the share, the score (the
reference's sum plus the bias); for cams.parquet, that each map sums to the contributions'
sum; for faithfulness.parquet, that zeroing the top-n units dropped the score by the sum of
their contributions (exact for such a head: each unit enters the score alone). Prints a
JSON summary; exits non-zero naming the first mismatch.
"""

import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq
import torch
import zarr


def fail(message):
    sys.exit(f"check_explain: {message}")


def main():
    explain_dir, extract_dir, model_path = sys.argv[1:4]
    summary = json.load(open(os.path.join(explain_dir, "summary.json")))
    layer = summary["layer"]
    classes = len(summary["classes"])
    state = torch.jit.load(model_path).state_dict()
    key = next(k for k in state if k.endswith("heads.weight"))
    weight = state[key].double().numpy()[:classes]
    bias = state[key.replace("weight", "bias")].double().numpy()[:classes]
    group = zarr.open_group(os.path.join(extract_dir, "activations.zarr"), mode="r")
    acts = np.asarray(group[f"{layer}/activations"][:], dtype=np.float64)
    n, units = acts.shape[:2]
    if weight.shape[1] != 2 * units:
        fail(f"{key} is {weight.shape}: not a head over the means and maxima of {units} units")
    means, maxima = acts.mean(axis=(2, 3)), acts.max(axis=(2, 3))
    # contributions[i, c, u]
    contributions = weight[None, :, :units] * means[:, None, :] + weight[None, :, units:] * maxima[:, None, :]

    rows = pq.read_table(os.path.join(explain_dir, "explanations.parquet")).to_pydict()
    # Rows come in dataset order, one block per (image, class rank), ranked units in order:
    # an image's first appearance gives its row of the dataset (and of the activations).
    row_of = {}
    blocks = {}
    for r in range(len(rows["image"])):
        image = rows["image"][r]
        row_of.setdefault(image, len(row_of))
        blocks.setdefault((image, rows["class_rank"][r]), []).append(r)
    if len(row_of) != n:
        fail(f"explanations.parquet names {len(row_of)} images, the activations hold {n}")
    worst = 0.0
    for (image, _), block in blocks.items():
        i = row_of[image]
        c = rows["class"][block[0]]
        reference = contributions[i, c]
        scale = max(np.abs(reference).max(), 1e-12)
        block = sorted(block, key=lambda r: rows["rank"][r])
        units_got = np.array([rows["unit"][r] for r in block])
        for r in block:
            unit, value = rows["unit"][r], rows["contribution"][r]
            error = abs(value - reference[unit]) / scale
            worst = max(worst, error)
            if error > 1e-5:
                fail(f"{image} class {c} unit {unit}: contribution {value} but the reference gives "
                     f"{reference[unit]} (relative error {error:.2e})")
        expected = np.argsort(-reference, kind="stable")[:len(units_got)]
        # Units whose reference contributions are equal (within the tolerance) may come in
        # either order.
        if not np.allclose(np.sort(reference[units_got]), np.sort(reference[expected]), rtol=0,
                           atol=1e-5 * scale):
            fail(f"{image} class {c}: top units {list(units_got)}, the reference's {list(expected)}")
        total = reference.sum()
        shares = np.array([rows["share"][r] for r in block])
        if not np.allclose(shares, reference[units_got] / total, rtol=1e-4, atol=1e-6):
            fail(f"{image} class {c}: shares {shares[:4]} but the reference gives "
                 f"{reference[units_got][:4] / total}")
        score = rows["score"][block[0]]
        if abs(score - (total + bias[c])) > 1e-4 * max(1.0, abs(score)):
            fail(f"{image} class {c}: score {score} but the contributions and bias sum to "
                 f"{total + bias[c]}")

    cams = pq.read_table(os.path.join(explain_dir, "cams.parquet")).to_pydict()
    for image, c, cam in zip(cams["image"], cams["class"], cams["cam"]):
        reference = contributions[row_of[image], c]
        got = float(np.sum(np.asarray(cam, dtype=np.float64)))
        if abs(got - reference.sum()) > 1e-4 * max(1.0, np.abs(reference).sum()):
            fail(f"{image}: the class activation map sums to {got}, the contributions to "
                 f"{reference.sum()}")

    faithfulness = pq.read_table(os.path.join(explain_dir, "faithfulness.parquet")).to_pydict()
    predicted = {}
    for r in range(len(rows["image"])):
        if rows["class_rank"][r] == 1:
            predicted.setdefault(rows["image"][r], rows["class"][r])
    drops = {}
    for method, k, drop in zip(faithfulness["method"], faithfulness["n"], faithfulness["mean_drop"]):
        if method != "top":
            continue
        expected = float(np.mean([np.sort(contributions[row_of[image], c])[::-1][:k].sum()
                                  for image, c in predicted.items()]))
        drops[k] = [drop, expected]
        if abs(drop - expected) > 1e-4 * max(1.0, abs(expected)):
            fail(f"zeroing the top {k} units dropped the score by {drop} on average; the "
                 f"reference's top {k} contributions sum to {expected}")
    print(json.dumps({"blocks": len(blocks), "worst_relative_error": worst, "top_drops": drops}))


if __name__ == "__main__":
    main()
