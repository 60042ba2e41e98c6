#!/usr/bin/env python3
"""Reads every Zarr array of an extract and a segment artifact with zarr-python.

    check_zarr.py EXTRACT_DIR SEGMENT_DIR

zarr-python is a second reader of our format: every array must open, name its crc32c
codec (each chunk carries its checksum), and read whole; the stored maxima must be the
maxima of the stored maps, and the masks' offsets must be consistent. A chunk that fails
its checksum makes zarr-python raise, and this script exit non-zero naming the array.
Prints a JSON summary.
"""

import json
import os
import sys

import numpy as np
import zarr


def codecs(array):
    return [type(c).__name__ for c in array.metadata.codecs]


def read(group, path):
    array = group[path]
    if "Crc32cCodec" not in codecs(array):
        sys.exit(f"{path}: no crc32c codec ({codecs(array)})")
    try:
        return np.asarray(array[:])
    except Exception as e:  # zarr-python raises its codec's own error type
        sys.exit(f"{path}: zarr-python cannot read it: {type(e).__name__}: {e}")


def main():
    extract_dir, segment_dir = sys.argv[1:3]
    out = {}
    activations = zarr.open_group(os.path.join(extract_dir, "activations.zarr"), mode="r")
    for layer in activations.attrs["layers"]:
        maps = read(activations, f"{layer}/activations")
        maxima = read(activations, f"{layer}/max")
        if not np.array_equal(maxima, maps.max(axis=(2, 3))):
            sys.exit(f"{layer}: the stored maxima are not the maxima of the stored maps")
        out[f"activations/{layer}"] = list(maps.shape)
    masks = zarr.open_group(os.path.join(segment_dir, "masks.zarr"), mode="r")
    for layer in activations.attrs["layers"]:
        image_pairs = read(masks, f"{layer}/image_pairs")
        units = read(masks, f"{layer}/unit")
        pair_runs = read(masks, f"{layer}/pair_runs")
        starts = read(masks, f"{layer}/run_start")
        lengths = read(masks, f"{layer}/run_length")
        if image_pairs[-1] != len(units) or len(pair_runs) != len(units) + 1 or pair_runs[-1] != len(starts):
            sys.exit(f"{layer}: mask offsets disagree with the arrays they index")
        if len(lengths) != len(starts) or (np.diff(image_pairs) < 0).any() or (np.diff(pair_runs) < 0).any():
            sys.exit(f"{layer}: mask offsets are not ascending")
        out[f"masks/{layer}"] = {"pairs": int(len(units)), "runs": int(len(starts)),
                                 "pixels": int(lengths.sum())}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
