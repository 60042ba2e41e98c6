#!/usr/bin/env python3
"""Reads a dissection's Parquet tables with pyarrow and polars and checks their schemas.

    check_parquet.py THRESHOLDS_DIR SCORES_DIR REPORT_DIR

The schemas checked here are the ones README.md documents, with its convention for units that
overlap no concept (null labels). Prints a JSON summary.
"""

import json
import sys

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

STRING = "string"

SCHEMAS = {
    "thresholds.parquet": {"layer": STRING, "unit": pa.uint32(), "threshold": pa.float64(), "top": pa.float64(),
                           "n_values": pa.uint64(), "min": pa.float32(), "max": pa.float32(),
                           "zero_fraction": pa.float64()},
    "scores.parquet": {"layer": STRING, "unit": pa.uint32(), "label": pa.uint32(), "name": STRING,
                       "category": STRING, "truth": pa.uint64(), "activation": pa.uint64(),
                       "intersect": pa.uint64(), "iou": pa.float64()},
    "truth.parquet": {"label": pa.uint32(), "truth": pa.uint64()},
    "activation.parquet": {"layer": STRING, "unit": pa.uint32(), "category": STRING,
                           "activation": pa.uint64(), "pixels": pa.uint64()},
    "units.parquet": {"layer": STRING, "unit": pa.uint32(), "label": pa.uint32(), "name": STRING,
                      "category": STRING, "iou": pa.float64(), "detector": pa.bool_()},
    "unit_categories.parquet": {"layer": STRING, "unit": pa.uint32(), "category": STRING, "label": pa.uint32(),
                                "name": STRING, "truth": pa.uint64(), "activation": pa.uint64(),
                                "intersect": pa.uint64(), "iou": pa.float64()},
    "layers.parquet": {"layer": STRING, "units": pa.uint32(), "detectors": pa.uint32(),
                       "unique_top_label": pa.uint32(), "unique_per_category": pa.uint32(),
                       "iou_threshold": pa.float64()},
    "layer_categories.parquet": {"layer": STRING, "category": STRING, "detectors": pa.uint32(),
                                 "unique_top_label": pa.uint32(), "category_detectors": pa.uint32(),
                                 "unique_per_category": pa.uint32()},
}


def check(path, name):
    table = pq.read_table(path)
    expected = SCHEMAS[name]
    if table.schema.names != list(expected):
        sys.exit(f"{name}: columns {table.schema.names}, documented {list(expected)}")
    for field in table.schema:
        want = expected[field.name]
        if want == STRING:
            ok = pa.types.is_dictionary(field.type) and pa.types.is_string(field.type.value_type)
        else:
            ok = field.type == want
        if not ok:
            sys.exit(f"{name}: column {field.name} is {field.type}, documented {want}")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    frame = pl.read_parquet(path)
    if frame.height != table.num_rows:
        sys.exit(f"{name}: polars reads {frame.height} rows, pyarrow {table.num_rows}")
    return table, frame, meta


def main():
    thresholds_dir, scores_dir, report_dir = sys.argv[1:4]
    out = {}
    tables = {}
    for directory, names in [(thresholds_dir, ["thresholds.parquet"]),
                             (scores_dir, ["scores.parquet", "truth.parquet", "activation.parquet"]),
                             (report_dir, ["units.parquet", "unit_categories.parquet", "layers.parquet",
                                           "layer_categories.parquet"])]:
        for name in names:
            table, frame, meta = check(f"{directory}/{name}", name)
            tables[name] = frame
            out[name] = {"rows": table.num_rows, "stage": meta.get("netdissect.stage"),
                         "key": meta.get("netdissect.key", "")[:12]}
            if "netdissect.params" not in meta:
                sys.exit(f"{name}: no netdissect.params in the file metadata")
    # A unit's label is its best IoU over its categories' best labels.
    best = tables["unit_categories.parquet"].group_by(["layer", "unit"]).agg(pl.col("iou").max().alias("best"))
    joined = tables["units.parquet"].join(best, on=["layer", "unit"])
    if (joined["iou"] != joined["best"]).any():
        sys.exit("units.parquet: a unit's iou is not the best of its categories")
    # A unit that overlaps no concept has no label, name or category, an IoU of 0, and is no
    # detector; in a category it overlaps no label of, no label, name or truth, and nothing
    # intersected.
    units = tables["units.parquet"]
    dead = units.filter(pl.col("label").is_null())
    if (dead["name"].is_not_null() | dead["category"].is_not_null() | (dead["iou"] != 0) | dead["detector"]).any():
        sys.exit("units.parquet: a unit without a label has a name, category, IoU or detector flag")
    if (units.filter(pl.col("label").is_not_null())["iou"] <= 0).any():
        sys.exit("units.parquet: a labelled unit has an IoU of 0")
    per = tables["unit_categories.parquet"]
    none = per.filter(pl.col("label").is_null())
    if (none["name"].is_not_null() | none["truth"].is_not_null() | (none["intersect"] != 0) | (none["iou"] != 0)).any():
        sys.exit("unit_categories.parquet: a category without a label has a name, truth, intersection or IoU")
    n_categories = per["category"].n_unique()
    if per.height != units.height * n_categories:
        sys.exit(f"unit_categories.parquet: {per.height} rows, not one per unit ({units.height}) and category")
    out["units without a label"] = dead.height
    out["unit-categories without a label"] = none.height
    # Detector counts agree between the per-unit and per-layer tables.
    detectors = tables["units.parquet"].group_by("layer").agg(pl.col("detector").sum().alias("n"))
    layers = tables["layers.parquet"].join(detectors, on="layer")
    if (layers["detectors"].cast(pl.Int64) != layers["n"].cast(pl.Int64)).any():
        sys.exit("layers.parquet: detectors disagree with units.parquet")
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
