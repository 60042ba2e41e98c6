#!/usr/bin/env python3
"""Small TorchScript models for the extract tests, each with one property to test.

    make_models.py KIND OUT [--seed N]

tiny:   dict {"conv1", "conv2"} of rank-4 maps (the well-behaved case)
nan:    dict {"conv1"} that is NaN everywhere
flat:   dict {"conv1", "pooled"} where pooled is (N, C), not a map
tuple:  a tuple (conv1, conv2) without names
"""

import argparse

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a))
        return {"conv1": a, "conv2": b}


class Nan(Tiny):
    def forward(self, x):
        a = self.conv1(x)
        return {"conv1": a * float("nan")}


class Flat(Tiny):
    def forward(self, x):
        a = torch.relu(self.conv1(x))
        return {"conv1": a, "pooled": a.mean(dim=(2, 3))}


class Pair(Tiny):
    def forward(self, x):
        a = torch.relu(self.conv1(x))
        return a, torch.relu(self.conv2(a))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["tiny", "nan", "flat", "tuple"])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = {"tiny": Tiny, "nan": Nan, "flat": Flat, "tuple": Pair}[args.kind]().eval()
    torch.jit.save(torch.jit.script(model), args.out)


if __name__ == "__main__":
    main()
