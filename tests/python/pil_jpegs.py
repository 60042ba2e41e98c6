#!/usr/bin/env python3
"""JPEGs decoded by PIL, for the tests that our decoder gives the same RGB bytes.

    pil_jpegs.py fixtures DIR
        Writes CMYK JPEGs as PIL saves them (with Adobe's APP14 marker, as Photoshop's files
        have it) in several encodings, one with that marker removed, and an RGB and a
        greyscale JPEG, into DIR/images/pil/, beside any JPEG already there (the YCCK ones,
        which PIL cannot write, come from the Rust test). Then, for every JPEG there, writes
        `Image.open(f).convert("RGB")`'s bytes to DIR/expected/<name>.rgb, makes DIR a Broden
        dataset of one category whose rows are those images (no labels), and prints a JSON
        list of [image, PIL's mode, Adobe transform or null] in index.csv order.

    pil_jpegs.py resave DATASET IMAGE COPY
        Copies the dataset DATASET to COPY, re-saves images/IMAGE of DATASET as a CMYK JPEG
        (PIL's save), and writes PIL's RGB conversion of that CMYK JPEG, PNG-encoded, to
        images/IMAGE of COPY: the two datasets then hold the same pixels as PIL reads them.
"""

import argparse
import json
import os
import shutil

import numpy as np
from PIL import Image


def cmyk_pattern(width, height, seed):
    """A CMYK image whose channels sweep their whole range (C across, K down), with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    c = x * 255 // max(width - 1, 1)
    k = y * 255 // max(height - 1, 1)
    m = (x * 7 + y * 3) % 256
    yellow = rng.integers(0, 256, (height, width))
    pixels = np.stack([c, m, yellow, k], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "CMYK")


def without_app14(data):
    """The JPEG with its Adobe APP14 segment removed (so libjpeg guesses CMYK from 4 channels)."""
    start = data.index(b"\xff\xee")
    assert data[start + 4 : start + 9] == b"Adobe", "APP14 is not Adobe's"
    length = int.from_bytes(data[start + 2 : start + 4], "big")
    stripped = data[:start] + data[start + 2 + length :]
    assert b"Adobe" not in stripped
    return stripped


def fixtures(root):
    images = os.path.join(root, "images", "pil")
    os.makedirs(images, exist_ok=True)
    cmyk = cmyk_pattern(61, 37, 1)
    cmyk.save(os.path.join(images, "cmyk_444_q95.jpg"), quality=95, subsampling=0)
    cmyk.save(os.path.join(images, "cmyk_420_q75.jpg"), quality=75, subsampling=2)
    cmyk_pattern(40, 72, 2).save(
        os.path.join(images, "cmyk_progressive.jpg"), quality=85, progressive=True
    )
    with open(os.path.join(images, "cmyk_444_q95.jpg"), "rb") as f:
        plain = without_app14(f.read())
    with open(os.path.join(images, "cmyk_no_adobe.jpg"), "wb") as f:
        f.write(plain)
    rgb = cmyk.convert("RGB")
    rgb.save(os.path.join(images, "rgb.jpg"), quality=90)
    rgb.convert("L").save(os.path.join(images, "grey.jpg"), quality=90)

    expected = os.path.join(root, "expected")
    os.makedirs(expected, exist_ok=True)
    rows = []
    listed = []
    for name in sorted(os.listdir(images)):
        if not name.endswith(".jpg"):
            continue
        with Image.open(os.path.join(images, name)) as im:
            mode, adobe = im.mode, im.info.get("adobe_transform")
            converted = im.convert("RGB")
        with open(os.path.join(expected, name[: -len(".jpg")] + ".rgb"), "wb") as f:
            f.write(converted.tobytes())
        w, h = converted.size
        rows.append(f"pil/{name},val,{h},{w},{h},{w},\n")
        listed.append([f"pil/{name}", mode, adobe])

    tables = {
        "index.csv": "image,split,ih,iw,sh,sw,color\n" + "".join(rows),
        "category.csv": "name,first,last,count,frequency\ncolor,1,1,1,1\n",
        "label.csv": "number,name,category,frequency,coverage,syns\n1,red-c,color(1),1,1.0,\n",
        "c_color.csv": "code,number,name,frequency,coverage\n1,1,red-c,1,1.0\n",
    }
    for name, text in tables.items():
        with open(os.path.join(root, name), "w") as f:
            f.write(text)
    print(json.dumps(listed))


def resave(dataset, image, copy):
    shutil.copytree(dataset, copy)
    path = os.path.join(dataset, "images", image)
    with Image.open(path) as im:
        im.convert("CMYK").save(path, "JPEG", quality=90)
    with Image.open(path) as im:
        assert im.mode == "CMYK", im.mode
        im.convert("RGB").save(os.path.join(copy, "images", image), "PNG")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fixtures")
    p.add_argument("dir")
    p = sub.add_parser("resave")
    p.add_argument("dataset")
    p.add_argument("image")
    p.add_argument("copy")
    args = parser.parse_args()
    if args.command == "fixtures":
        fixtures(args.dir)
    else:
        resave(args.dataset, args.image, args.copy)


if __name__ == "__main__":
    main()
