#!/usr/bin/env python3
"""Recomputes a rotate artifact's activations from its extract artifact with NumPy.

    check_rotate.py ROTATE_DIR EXTRACT_DIR

For every layer the rotate artifact holds, reads the matrix it applied (matrices/<node>.npy,
named by its manifest), checks that the matrix is orthogonal, reads both activation
arrays with zarr-python and checks that A'(image, :, y, x) = M · A(image, :, y, x) within a
relative 1e-5 (of the largest rotated value), and that the stored maxima are those of the
rotated maps. Exits non-zero naming the layer otherwise; prints a JSON summary.
"""

import json
import os
import sys

import numpy as np
import zarr


def main():
    rotate_dir, extract_dir = sys.argv[1:3]
    with open(os.path.join(rotate_dir, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest["stage"] != "rotate":
        sys.exit(f"{rotate_dir} is a {manifest['stage']} artifact, not a rotate artifact")
    outputs = manifest["outputs"]
    rotated = zarr.open_group(os.path.join(rotate_dir, "activations.zarr"), mode="r")
    original = zarr.open_group(os.path.join(extract_dir, "activations.zarr"), mode="r")
    out = {}
    for layer in outputs["layers"]:
        name, node = layer["name"], layer["node"]
        m = np.load(os.path.join(rotate_dir, outputs["matrices"][name]))
        error = np.abs(m.T @ m - np.eye(len(m))).max()
        if error > 1e-9:
            sys.exit(f"{name}: the stored matrix is not orthogonal (MᵀM is {error:.3g} from I)")
        a = np.asarray(original[f"{node}/activations"][:], dtype=np.float64)
        got = np.asarray(rotated[f"{node}/activations"][:])
        want = np.einsum("ij,njyx->niyx", m, a)
        scale = max(np.abs(want).max(), 1e-30)
        relative = float(np.abs(got - want).max() / scale)
        if got.shape != want.shape or relative > 1e-5:
            sys.exit(f"{name}: the rotated activations differ from M·A by {relative:.3g} (relative)")
        maxima = np.asarray(rotated[f"{node}/max"][:])
        if not np.array_equal(maxima, got.max(axis=(2, 3))):
            sys.exit(f"{name}: the stored maxima are not the maxima of the rotated maps")
        out[name] = {"shape": list(got.shape), "relative_error": relative}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
