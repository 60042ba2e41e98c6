#!/usr/bin/env python3
"""Self-test of formulas_ref.py on a hand-made tiny Broden-format dataset and masks.zarr.

    test_formulas_ref.py

Writes to a temporary directory: 16 images of 10×10 (colour, object and part label maps,
scene and texture image-level items, texture "0" in some rows), a segment artifact covering
rows 2..14 (manifest.json with outputs.layers and outputs.rows, masks.zarr written with
zarr-python in the layout of crates/arrays/src/masks.rs) whose units are planted formulas,
then runs formulas_ref.py and checks:

- units equal to "A OR B", "A AND NOT C", "(A OR B) AND NOT C" get exactly those formulas
  (canonical) with IoU 1.0 as their best, at lengths 2, 2 and 3;
- a unit equal to an image-level (scene) concept gets that concept; a unit equal to a part
  label gets it, and loses it when --min-images excludes it;
- an empty unit has no formula;
- exhaustive search at lengths 1–2 equals the beam search at length 2 with a beam as wide
  as the number of concepts, for every unit, with both denominators and a subset of ops;
- the lite and original denominators: two units whose act terms differ between them, in
  both directions (a mask over object-free pixels of an image with objects; a mask over an
  image whose texture item is "0"), checked against counts written out by hand;
- --rows inside the artifact's rows; canonical forms and formula text.

Prints "test_formulas_ref: ok" at the end; exits non-zero on failure.
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import zarr
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import formulas_ref as fr  # noqa: E402

H = W = 10
N_ROWS = 16
ART_ROWS = (2, 14)  # the segment artifact covers rows 2..14: mask image j = row 2 + j
CATEGORIES = ["color", "object", "part", "scene", "texture"]
LABELS = [  # number, name, category
    (1, "red", "color"), (2, "blue", "color"),
    (3, "dog", "object"), (4, "cat", "object"), (5, "tree", "object"),
    (6, "leg", "part"),
    (7, "beach", "scene"), (8, "forest", "scene"),
    (9, "striped", "texture"), (10, "dotted", "texture"),
]
RED, BLUE, DOG, CAT, TREE, LEG, BEACH, FOREST, STRIPED, DOTTED = range(1, 11)
PART_ROW = 5  # the only row with a part map


def check(cond, message):
    if not cond:
        sys.exit(f"test_formulas_ref: FAILED: {message}")


def write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")


def save_map(path, labels):
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    rgb[:, :, 0] = labels % 256
    rgb[:, :, 1] = labels // 256
    Image.fromarray(rgb).save(path)


def make_dataset(root, rng):
    """Returns per row: {'color': map, 'object': map, 'part': map or None, 'scene': s,
    'texture': t} (maps flat int arrays of H·W)."""
    os.makedirs(os.path.join(root, "images"))
    truth = []
    index = []
    for r in range(N_ROWS):
        color = rng.choice([0, RED, BLUE], size=H * W, p=[0.3, 0.35, 0.35])
        obj = rng.choice([0, DOG, CAT, TREE], size=H * W, p=[0.25, 0.25, 0.25, 0.25])
        part = None
        if r == PART_ROW:
            part = np.zeros(H * W, dtype=np.int64)
            part[obj == DOG] = LEG  # legs on the dogs of one image
        scene = BEACH if r % 3 == 0 else FOREST
        texture = [STRIPED, DOTTED, 0][r % 3]
        cells = {}
        for cat, m in (("color", color), ("object", obj), ("part", part)):
            if m is None:
                cells[cat] = ""
                continue
            name = f"{r:03d}_{cat}.png"
            save_map(os.path.join(root, "images", name), m.reshape(H, W))
            cells[cat] = name
        index.append([f"{r:03d}.jpg", "train", H, W, H, W, cells["color"], cells["object"],
                      cells["part"], str(scene), str(texture)])
        truth.append({"color": color, "object": obj, "part": part, "scene": scene,
                      "texture": texture})
    write_csv(os.path.join(root, "index.csv"),
              ["image", "split", "ih", "iw", "sh", "sw"] + CATEGORIES, index)
    write_csv(os.path.join(root, "category.csv"), ["name", "first", "last", "count", "frequency"],
              [[c, 0, 0, 0, 0] for c in CATEGORIES])
    write_csv(os.path.join(root, "label.csv"),
              ["number", "name", "category", "frequency", "coverage", "syns"],
              [[n, name, f"{cat}(1)", 1, 0.5, ""] for n, name, cat in LABELS])
    for cat in CATEGORIES:
        rows = [[i + 1, n, name, 1, 0.5] for i, (n, name, c) in enumerate(
            [x for x in LABELS if x[2] == cat])]
        write_csv(os.path.join(root, f"c_{cat}.csv"),
                  ["code", "number", "name", "frequency", "coverage"], rows)
    return truth


def runs_of(mask):
    starts, lengths = [], []
    i = 0
    n = len(mask)
    while i < n:
        if mask[i]:
            j = i
            while j < n and mask[j]:
                j += 1
            starts.append(i)
            lengths.append(j - i)
            i = j
        else:
            i += 1
    return starts, lengths


def write_artifact(art, layers):
    """layers: {name: (units, images, H·W) bool}."""
    os.makedirs(art)
    group = zarr.open_group(os.path.join(art, "masks.zarr"), mode="w", zarr_format=3)
    for name, masks in layers.items():
        n_units, n_images, _ = masks.shape
        image_pairs, unit, pair_runs, run_start, run_length = [0], [], [0], [], []
        for j in range(n_images):
            for k in range(n_units):
                s, l = runs_of(masks[k, j])
                if not s:
                    continue
                unit.append(k)
                run_start += s
                run_length += l
                pair_runs.append(len(run_start))
            image_pairs.append(len(unit))
        g = group.require_group(name)
        for key, data, dtype in (("image_pairs", image_pairs, "uint64"), ("unit", unit, "uint32"),
                                 ("pair_runs", pair_runs, "uint64"),
                                 ("run_start", run_start, "uint32"),
                                 ("run_length", run_length, "uint32")):
            a = g.create_array(key, shape=(len(data),), dtype=dtype, chunks=(max(1, len(data)),))
            a[:] = np.asarray(data, dtype=dtype)
    manifest = {"stage": "segment", "outputs": {
        "layers": [{"name": n, "units": int(m.shape[0])} for n, m in layers.items()],
        "masks": "masks.zarr", "rows": list(ART_ROWS)}}
    with open(os.path.join(art, "manifest.json"), "w") as f:
        json.dump(manifest, f)


def run(tmp, name, *args):
    out = os.path.join(tmp, f"{name}.json")
    cmd = [sys.executable, os.path.join(HERE, "formulas_ref.py"), "--dataset",
           os.path.join(tmp, "dataset"), "--masks", os.path.join(tmp, "segment"),
           "--out", out, *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    check(p.returncode == 0, f"{name}: formulas_ref failed:\n{p.stderr}")
    with open(out) as f:
        return json.load(f)


def formula(result, layer, k, length):
    f = result["layers"][layer][k]["formulas"][length - 1]
    check(f["length"] == length, "formulas are listed by length")
    return f


def expect(result, layer, k, labels, ops, best, what):
    u = result["layers"][layer][k]
    check(u["unit"] == k, "units in order")
    f = u["formulas"][len(labels) - 1]
    got = (f["labels"], f["ops"], f["iou"], u["best"])
    check(got == (labels, ops, 1.0, best), f"{what}: expected {labels} {ops} IoU 1.0 best {best}, got {got}")
    check(f["inter"] == f["truth"] == f["act"], f"{what}: IoU 1 needs inter = truth = act: {f}")


def test_canonical():
    c = fr.canonical
    check(c([4, 3], ["or"]) == (3, 1, 4), "OR sorted")
    check(c([4, 3], ["and"]) == (3, 0, 4), "AND sorted")
    check(c([4, 3], ["and_not"]) == (4, 2, 3), "AND NOT kept")
    check(c([5, 1, 3], ["and_not", "and"]) == (3, 0, 5, 2, 1), "conjunction: positives, negatives")
    check(c([5, 3, 1], ["and_not", "and_not"]) == (5, 2, 1, 2, 3), "negatives sorted")
    check(c([5, 3, 1], ["or", "or"]) == (1, 1, 3, 1, 5), "disjunction sorted")
    check(c([5, 3, 1], ["or", "and_not"]) == (3, 1, 5, 2, 1), "mixed: first two swapped")
    check(c([5, 3, 1], ["and", "or"]) == (3, 0, 5, 1, 1), "mixed: and first")
    check(c([5, 3, 1], ["and_not", "or"]) == (5, 2, 3, 1, 1), "mixed: and_not first kept")
    names = [""] + [n for _, n, _ in LABELS]
    check(fr.text((3, 1, 4, 2, 1), names) == "(dog OR cat) AND NOT red", "text")
    check(fr.text((3, 2, 1), names) == "dog AND NOT red", "text 2")
    check(fr.text((3, 1, 4, 2, 1, 0, 9), names) == "((dog OR cat) AND NOT red) AND striped", "text 4")


def main():
    test_canonical()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        truth = make_dataset(os.path.join(tmp, "dataset"), rng)
        rows = range(*ART_ROWS)
        n_img = len(rows)
        obj = np.stack([truth[r]["object"] for r in rows])
        color = np.stack([truth[r]["color"] for r in rows])
        part = np.stack([truth[r]["part"] if truth[r]["part"] is not None
                         else np.zeros(H * W, dtype=np.int64) for r in rows])
        scene = np.array([truth[r]["scene"] for r in rows])
        texture = np.array([truth[r]["texture"] for r in rows])
        dog, cat, red = obj == DOG, obj == CAT, color == RED

        l1 = np.zeros((8, n_img, H * W), dtype=bool)
        l1[0] = dog | cat                       # dog OR cat
        l1[1] = dog & ~red                      # dog AND NOT red
        l1[2] = (dog | cat) & ~red              # (dog OR cat) AND NOT red
        l1[3] = (scene == BEACH)[:, None]       # the scene beach (image-level)
        # Unit 4: the dogs of image j0, and the object-free pixels of image j1 (which has
        # objects elsewhere): lite leaves j1 out of dog's act term, the original counts it.
        j0, j1 = 0, 1
        l1[4, j0] = dog[j0]
        l1[4, j1] = obj[j1] == 0
        # Unit 5: all of image jt (texture striped) and 10 pixels of image jz (texture item
        # "0"): lite counts jz in striped's act term (label 0 marks the last category,
        # texture), the original does not (jz carries no texture label).
        jt = int(np.nonzero(texture == STRIPED)[0][0])
        jz = int(np.nonzero(texture == 0)[0][0])
        l1[5, jt] = True
        l1[5, jz, :10] = True
        # Unit 6: empty. Unit 7: the legs (one image only).
        l1[7] = part == LEG
        # Layer 2: random blobs, for the exhaustive/beam comparison.
        l2 = np.zeros((4, n_img, H * W), dtype=bool)
        for k in range(4):
            for j in range(n_img):
                if rng.random() < 0.6:
                    y, x = rng.integers(0, H, 2)
                    m = np.zeros((H, W), dtype=bool)
                    m[max(0, y - 2):y + 3, max(0, x - 3):x + 2] = True
                    l2[k, j] = m.reshape(-1)
        l2[3] |= dog & (color == BLUE)          # something close to a formula
        write_artifact(os.path.join(tmp, "segment"), {"L1": l1, "L2": l2})

        # --- Planted formulas, beam search (lite and original) -------------------------
        for den in ("lite", "original"):
            res = run(tmp, f"planted-{den}", "--denominator", den)
            check(res["concepts"] == list(range(1, 11)), f"concepts {res['concepts']}")
            check([u["unit"] for u in res["layers"]["L1"]] == list(range(8)), "units in order")
            expect(res, "L1", 0, [DOG, CAT], ["or"], 2, f"{den}: dog OR cat")
            expect(res, "L1", 1, [DOG, RED], ["and_not"], 2, f"{den}: dog AND NOT red")
            expect(res, "L1", 2, [DOG, CAT, RED], ["or", "and_not"], 3,
                   f"{den}: (dog OR cat) AND NOT red")
            check(formula(res, "L1", 2, 3)["text"] == "(dog OR cat) AND NOT red", "text")
            for j in (1, 2):
                check(formula(res, "L1", 2, j)["iou"] < 1.0, f"{den}: no shorter exact formula")
            expect(res, "L1", 3, [BEACH], [], 1, f"{den}: scene beach")
            expect(res, "L1", 7, [LEG], [], 1, f"{den}: leg")
            u6 = res["layers"]["L1"][6]
            check(u6["best"] is None and all(f["labels"] is None and f["iou"] == 0.0
                                             for f in u6["formulas"]), f"{den}: empty unit {u6}")
            check(len(u6["formulas"]) == 3, "lengths 1..3 reported")

        # --- The beam is chosen from beam ∪ candidates ---------------------------------
        # With beam 1, a unit equal to a concept keeps that concept in the beam (a longer
        # formula of equal IoU ranks after it), so step 3 only extends it to length 2 again:
        # no formula of length 3 is ever scored.
        res = run(tmp, "beam1", "--beam", "1", "--max-length", "3")
        for k, c in ((3, BEACH), (7, LEG)):
            u = res["layers"]["L1"][k]
            check(u["best"] == 1 and u["formulas"][0]["labels"] == [c], f"beam 1: unit {k} {u}")
            check(u["formulas"][1]["iou"] == 1.0, f"beam 1: unit {k} has an exact length 2")
            check(u["formulas"][2]["labels"] is None, f"beam 1: unit {k} reached length 3 {u}")

        # --- --rows inside the artifact, --min-images ----------------------------------
        res = run(tmp, "rows", "--rows", "6", "12", "--max-length", "2")
        expect(res, "L1", 3, [BEACH], [], 1, "--rows 6 12: scene beach")
        expect(res, "L1", 0, [DOG, CAT], ["or"], 2, "--rows 6 12: dog OR cat")
        check(res["layers"]["L1"][7]["best"] is None, "--rows 6 12 leaves out the legs' image")
        res = run(tmp, "min-images", "--min-images", "2", "--max-length", "1")
        check(LEG not in res["concepts"] and len(res["concepts"]) == 9, "min-images drops leg")
        check(formula(res, "L1", 7, 1)["labels"] != [LEG], "min-images: leg not chosen")

        # --- Exhaustive = beam at length 2 with beam >= concepts -----------------------
        for den in ("lite", "original"):
            for ops in ("and,or,and_not", "or,and_not"):
                a = run(tmp, "beam", "--denominator", den, "--ops", ops, "--beam", "10",
                        "--max-length", "2")
                b = run(tmp, "exh", "--denominator", den, "--ops", ops, "--exhaustive")
                check(a["layers"] == b["layers"], f"{den} {ops}: exhaustive != beam 10 at length 2")
                found = sum(u["formulas"][1]["labels"] is not None
                            for l in a["layers"].values() for u in l)
                check(found >= 8, f"{den} {ops}: too few length-2 formulas ({found})")
                if ops == "or,and_not":
                    for l in a["layers"].values():
                        for u in l:
                            f = u["formulas"][1]
                            check(f["ops"] is None or f["ops"][0] in ("or", "and_not"),
                                  f"--ops {ops}: op {f['ops']}")

        # --- Denominators: counts by hand -----------------------------------------------
        # Unit 4 with objects only: its best concept is dog.
        inter = int(dog[j0].sum())
        dog_truth = int(dog.sum())
        m_j0, m_j1 = int(l1[4, j0].sum()), int(l1[4, j1].sum())
        check(m_j1 > 0 and (obj[j1] > 0).any(), "test data: j1 has objects and object-free pixels")
        for den, act in (("lite", m_j0), ("original", m_j0 + m_j1)):
            res = run(tmp, f"object-{den}", "--categories", "object", "--denominator", den,
                      "--max-length", "1")
            check(res["concepts"] == [DOG, CAT, TREE], f"object concepts {res['concepts']}")
            f = formula(res, "L1", 4, 1)
            want = {"labels": [DOG], "inter": inter, "act": act, "truth": dog_truth,
                    "iou": inter / (act + dog_truth - inter)}
            got = {k: f[k] for k in want}
            check(got == want, f"{den}: unit 4 expected {want}, got {got}")
        # Unit 5 with textures only: its best concept is striped.
        striped_truth = int((texture == STRIPED).sum()) * H * W
        for den, act in (("lite", H * W + 10), ("original", H * W)):
            res = run(tmp, f"texture-{den}", "--categories", "texture", "--denominator", den,
                      "--max-length", "1")
            check(res["concepts"] == [STRIPED, DOTTED], f"texture concepts {res['concepts']}")
            f = formula(res, "L1", 5, 1)
            want = {"labels": [STRIPED], "inter": H * W, "act": act, "truth": striped_truth,
                    "iou": (H * W) / (act + striped_truth - H * W)}
            got = {k: f[k] for k in want}
            check(got == want, f"{den}: unit 5 expected {want}, got {got}")

    print("test_formulas_ref: ok")


if __name__ == "__main__":
    main()
