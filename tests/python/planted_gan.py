#!/usr/bin/env python3
"""A planted generator and segmenter for the generate stage's tests.

The generator's latent vectors have four numbers; its layer ``planted`` (N, 4, 8, 8) is
``relu(z[u])`` on unit u's shape and 0 elsewhere, the four shapes disjoint cells of the
8×8 grid (``SHAPES``); its image (32×32) is grey where no unit is on and unit u's colour
on the cells where unit u is > 0, each cell 4×4 pixels, mapped onto [-1, 1]. Its layer
``coarse`` is ``planted`` averaged over 2×2 cells (N, 4, 4, 4). ``forward_from("planted",
a)`` draws the image from ``a``: zeroing unit u removes exactly its shape.

The segmenter undoes the torchvision normalisation, scores each pixel by the negative
squared distance of its colour to grey (the ``object`` category's none class) and to each
unit's colour (the shape's name), and averages the scores over 2×2 pixels: its label maps
are 16×16.

    planted_gan.py OUT [--no-image] [--record-z-dim N] [--extra-class]

writes OUT/generator.pt, OUT/segmenter.pt and OUT/labels.csv. The flags break one thing
each, for the tests of bad input: a forward without the image, a record whose z_dim is not
the model's, a segmenter with one class more than its label file names.
"""

import argparse
import json
import os
from typing import Dict

import torch
from torch import nn
from torch.nn import functional as F

# Unit u's shape on the 8×8 grid: (name, rows, columns).
SHAPES = [
    ("square", range(0, 4), range(0, 4)),
    ("bar", range(5, 6), range(0, 8)),
    ("pole", range(0, 4), range(6, 7)),
    ("dot", range(7, 8), range(6, 8)),
]
COLOURS = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (1.0, 1.0, 0.0)]
GREY = (0.5, 0.5, 0.5)


def masks():
    m = torch.zeros(len(SHAPES), 8, 8)
    for u, (_, rows, cols) in enumerate(SHAPES):
        for r in rows:
            for c in cols:
                m[u, r, c] = 1.0
    return m


class Generator(nn.Module):
    def __init__(self, with_image: bool):
        super().__init__()
        self.register_buffer("masks", masks())
        self.register_buffer("colours", torch.tensor(COLOURS))
        self.register_buffer("grey", torch.tensor(GREY))
        self.with_image = with_image

    def render(self, a: torch.Tensor) -> torch.Tensor:
        on = (a > 0).to(a.dtype)
        shift = self.colours - self.grey[None, :]
        image = self.grey[None, :, None, None] + torch.einsum("nuhw,uc->nchw", on, shift)
        image = F.interpolate(image, scale_factor=4.0, mode="nearest")
        return image * 2.0 - 1.0

    def forward(self, z: torch.Tensor) -> Dict[str, torch.Tensor]:
        a = torch.relu(z[:, :, None, None]) * self.masks[None]
        out: Dict[str, torch.Tensor] = {"planted": a, "coarse": F.avg_pool2d(a, 2)}
        if self.with_image:
            out["image"] = self.render(a)
        return out

    @torch.jit.export
    def forward_from(self, layer: str, activations: torch.Tensor) -> torch.Tensor:
        if layer != "planted":
            raise ValueError("runs on from planted only")
        return self.render(activations)


class Segmenter(nn.Module):
    def __init__(self, extra_class: bool):
        super().__init__()
        centres = [GREY] + COLOURS + ([(0.0, 0.0, 0.0)] if extra_class else [])
        self.register_buffer("centres", torch.tensor(centres))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x * self.std[None, :, None, None] + self.mean[None, :, None, None]
        d = rgb[:, None] - self.centres[None, :, :, None, None]
        return F.avg_pool2d(-(d * d).sum(2), 2)


def save(module, path, extra):
    scripted = torch.jit.script(module)
    files = {name: json.dumps(value) for name, value in extra.items()}
    torch.jit.save(scripted, path, _extra_files=files)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--no-image", action="store_true")
    p.add_argument("--record-z-dim", type=int, default=len(SHAPES))
    p.add_argument("--extra-class", action="store_true")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    save(Generator(not args.no_image), os.path.join(args.out, "generator.pt"), {
        "netdissect-generator.json": {"format": 1, "z_dim": args.record_z_dim,
                                      "image": "image", "range": [-1, 1],
                                      "layers": ["coarse", "planted"]},
        "netdissect-intervention.json": {"format": 1, "method": "forward_from",
                                         "output": "image", "layers": ["planted"]},
    })
    save(Segmenter(args.extra_class), os.path.join(args.out, "segmenter.pt"), {})
    with open(os.path.join(args.out, "labels.csv"), "w") as f:
        f.write("class,name,category\n0,,object\n")
        for u, (name, _, _) in enumerate(SHAPES):
            f.write(f"{u + 1},{name},object\n")


if __name__ == "__main__":
    main()
