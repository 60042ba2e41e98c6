"""Compares two dissections of the same models, table by table: the data of every Parquet
table (rows, columns, values, in order), not its metadata (which names the artifact's key).

    compare_runs.py CACHE_A RESULTS_A CACHE_B RESULTS_B MODEL...

For each model, the report's tables are read from RESULTS/<model>/ (and the explain
stage's from RESULTS/<model>/explain/ when the model was explained), and the scores and the
thresholds it was computed from are found in CACHE by following the manifests' inputs,
through the merge of image shards when the run was sharded. Prints one line per table and
exits 1 if any differ.
"""

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq


def manifest(path):
    return json.loads(Path(path).read_text())


def artifact(cache, stage, key):
    return Path(cache) / stage / key


def chain(cache, results, model):
    """The report, score and quantile artifact directories of a model's report copy."""
    report = manifest(Path(results) / model / "manifest.json")
    scores = artifact(cache, "score", report["inputs"]["scores"])
    inputs = manifest(scores / "manifest.json")["inputs"]
    # A merge of image shards names their scores; any shard leads to the thresholds.
    shard = scores
    if "masks" not in inputs:
        shard = artifact(cache, "score", inputs[sorted(inputs)[0]])
    masks = artifact(cache, "segment", manifest(shard / "manifest.json")["inputs"]["masks"])
    quantile = artifact(
        cache, "quantile", manifest(masks / "manifest.json")["inputs"]["thresholds"]
    )
    return Path(results) / model, scores, quantile


def data(path):
    return pq.read_table(path).replace_schema_metadata(None)


def main(cache_a, results_a, cache_b, results_b, *models):
    differ = 0
    for model in models:
        a = chain(cache_a, results_a, model)
        b = chain(cache_b, results_b, model)
        explained = (Path(results_a) / model / "explain").is_dir()
        assert explained == (Path(results_b) / model / "explain").is_dir(), model
        if explained:
            a = (*a, Path(results_a) / model / "explain")
            b = (*b, Path(results_b) / model / "explain")
        for dir_a, dir_b in zip(a, b):
            tables = sorted(p.name for p in dir_a.glob("*.parquet"))
            assert tables, f"no table in {dir_a}"
            assert tables == sorted(p.name for p in dir_b.glob("*.parquet")), (dir_a, dir_b)
            for name in tables:
                ta, tb = data(dir_a / name), data(dir_b / name)
                same = ta.equals(tb)
                differ += not same
                print(f"{model} {name}: {ta.num_rows} rows, {'same' if same else 'DIFFERENT'}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main(*sys.argv[1:])
