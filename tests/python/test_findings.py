"""python/findings.py on planted results: every experiment's models get summary.json files
whose counts are chosen so that each verdict comes out one way (reproduces, within the
spread, does not reproduce), and the report and its figures must say so.

    .venv/bin/python tests/python/test_findings.py
"""

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import findings  # noqa: E402

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]


def write(results, experiment, model, per_layer, layers=LAYERS, per_category=None):
    """A summary.json whose layers have ``per_layer`` unique detectors (top-label rule)
    and ``per_category`` (default: one more) by the per-category rule."""
    folder = (os.path.join(results, "experiments", experiment, model) if experiment
              else os.path.join(results, model))
    os.makedirs(folder, exist_ok=True)
    extra = 1 if per_category is None else per_category
    entries = [{"layer": name, "unique_top_label": n, "unique_per_category": n + extra,
                "categories": {"object": {"unique_top_label": n // 2},
                               "scene": {"unique_top_label": n - n // 2}}}
               for name, n in zip(layers, per_layer)]
    with open(os.path.join(folder, "summary.json"), "w") as f:
        json.dump({"layers": entries}, f)


def seeds(results, experiment, variant, totals, layers=LAYERS):
    """Three seeds of a variant whose last layer holds ``totals[s]`` and the others 2."""
    for seed, total in zip(findings.SEEDS, totals):
        write(results, experiment, f"{variant}-seed{seed}", [2] * (len(layers) - 1) + [total],
              layers)


def plant(results):
    seeds(results, "batch-norm", "bn", [10, 11, 12])
    seeds(results, "batch-norm", "base", [11, 12, 13])          # +1, sd 1: within
    seeds(results, "width", "narrow", [5, 6, 7])
    seeds(results, "width", "base", [11, 12, 13])
    seeds(results, "width", "wide", [20, 21, 22])                # reproduces
    seeds(results, "self-supervision", "selfsup", [3, 4, 5])
    seeds(results, "self-supervision", "base", [11, 12, 13])
    seeds(results, "object-scene", "object", [20, 21, 22])
    seeds(results, "object-scene", "scene", [10, 11, 12])       # the other way
    for arch, totals in [("alexnet", [1, 2, 3]), ("googlenet", [5, 6, 7]),
                         ("vgg", [9, 10, 11]), ("resnet", [15, 16, 17])]:
        layers = ["a", "b", "c", "last"] if arch == "googlenet" else LAYERS
        seeds(results, "architectures", arch, totals, layers)
    for seed in findings.SEEDS:
        for i, alpha in enumerate(findings.ALPHAS):
            name = findings.rotated(f"base-seed{seed}", alpha)
            write(results, "rotation-seeds", name, [10 - 2 * i + seed] * 5)
        for i, epoch in enumerate(findings.EPOCHS):
            # Grows, but not at every step (epoch 2 dips below epoch 1).
            n = [1, 6, 5, 8, 9][i] + seed
            write(results, "training", f"base-seed{seed}-epoch{epoch}", [n] * 5)
    for i, alpha in enumerate(findings.ALPHAS):
        write(results, "rotation", findings.rotated("demo-trained", alpha), [9 - i] * 5)
    for i, name in enumerate(["demo-random", "demo-step20", "demo-step75", "demo-step250",
                              "demo-trained"]):
        write(results, None, name, [i] * 5)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        results = os.path.join(tmp, "results")
        plant(results)
        out = os.path.join(tmp, "EXPERIMENTS.md")
        fig = os.path.join(tmp, "figures")
        subprocess.run([sys.executable, os.path.join(ROOT, "python", "findings.py"),
                        "--results", results, "--out", out, "--figures", fig], check=True)
        text = open(out).read()
        rows = {line.split("|")[2].strip(" `"): [c.strip() for c in line.split("|")[3:5]]
                for line in text.splitlines() if line.startswith("| ") and "`" in line}
        want = {
            "batch-norm": ["same direction, within the seed spread"] * 2,
            "width": ["reproduces"] * 2,
            "self-supervision": ["reproduces"] * 2,
            "object-scene": ["does not reproduce"] * 2,
            "architectures": ["reproduces"] * 2,
            "rotation-seeds": ["reproduces"] * 2,
            "training": ["reproduces"] * 2,
        }
        assert rows == want, rows
        # The training grows 1 → 6 → 5 → 8 → 9 (+ seed) in each layer: 5 layers.
        assert "grows 15.0 → 40.0 → 35.0 → 50.0 → 55.0; not at every step" in text, text
        assert "after 2 of the 8 epochs, 50% of the whole gain" in text, text
        assert "falls 60.0 → 50.0 → 40.0 → 30.0 → 20.0)" in text, text
        # Batch norm's totals: 8 + the last layer's, and one more per layer by the
        # per-category rule.
        assert "| bn | 2.0 ± 0.0 (2, 2, 2) | " in text, text
        assert "| 19.0 ± 1.0 (18, 19, 20) |" in text and "| 24.0 ± 1.0 (23, 24, 25) |" in text
        # Each figure is linked and is well-formed SVG with a mark per variant and x.
        names = ["batch-norm", "width", "self-supervision", "object-scene", "architectures",
                 "rotation", "training"]
        assert sorted(os.listdir(fig)) == sorted(f"{n}.svg" for n in names)
        for name in names:
            assert f"](figures/{name}.svg)" in text, name
            root = ET.parse(os.path.join(fig, f"{name}.svg")).getroot()
            assert root.tag.endswith("svg")
        svg = "{http://www.w3.org/2000/svg}"
        width = ET.parse(os.path.join(fig, "width.svg")).getroot()
        bars = [r for r in width.iter(f"{svg}rect") if r.get("fill-opacity")]
        # 3 variants × (5 layers + 2 rules' totals).
        assert len(bars) == 3 * 7, len(bars)
        training = ET.parse(os.path.join(fig, "training.svg")).getroot()
        assert len(list(training.iter(f"{svg}polyline"))) == 5 + 2
        # The same results give the same bytes.
        again = os.path.join(tmp, "again")
        subprocess.run([sys.executable, os.path.join(ROOT, "python", "findings.py"),
                        "--results", results, "--out", os.path.join(tmp, "AGAIN.md"),
                        "--figures", again], check=True)
        for name in names:
            a = open(os.path.join(fig, f"{name}.svg"), "rb").read()
            assert a == open(os.path.join(again, f"{name}.svg"), "rb").read(), name
    # A missing result names the pipeline to run.
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, os.path.join(ROOT, "python", "findings.py"),
                               "--results", tmp, "--out", os.path.join(tmp, "E.md"),
                               "--figures", os.path.join(tmp, "f")],
                              capture_output=True, text=True)
        assert done.returncode == 1
        assert "run `netdissect run experiments/batch-norm.toml`" in done.stderr, done.stderr
    print("test_findings: ok")


if __name__ == "__main__":
    main()
