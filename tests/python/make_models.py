#!/usr/bin/env python3
"""Small TorchScript models for the extract tests, each with one property to test.

    make_models.py KIND OUT [--seed N]

tiny:   dict {"conv1", "conv2"} of rank-4 maps (the well-behaved case), carrying its
        receptive fields (the extra file netdissect-fields.json) as the export helper writes
        them; tiny-nofields: the same without them
nan:    dict {"conv1"} that is NaN everywhere
flat:   dict {"conv1", "pooled"} where pooled is (N, C), not a map
tuple:  a tuple (conv1, conv2) without names
tokens: dict {"conv1", "encoder.layers.encoder_layer_0", "pooled"}: a map, a ViT block's
        (N, tokens, channels) and a pooled (N, C), under a long name
fixed:  dict {"conv1"}, but forward asserts 16×16 images (a model made for one size)
state_dict: tiny's state_dict saved with torch.save (not TorchScript)
pickled: tiny saved whole with torch.save(model) (a pickled object, not a state_dict)
planted: dict {"colors"} whose unit i fires exactly where the synthetic dataset names a
         pixel with colour i (its label maps name each 2×2 block by the nearest of Broden's
         eleven colours); it expects torchvision-normalised input at twice the label size
classifier: planted's units plus class scores "logits" that are known linear functions of
         the units' spatial means and maxima (CLASSIFIER_MEAN, CLASSIFIER_MAX, CLASSIFIER_BIAS),
         with the intervention method forward_from("colors", activations) and its record
         (the extra file netdissect-intervention.json)
classifier-nointervention: the same without forward_from and its record
"""

import argparse
import json

import torch
import torch.nn.functional as F
from torch import nn

# The synthetic dataset's colour prototypes, in label order (crates/synth/src/vocab.rs).
COLORS = [
    (20, 20, 20), (40, 70, 200), (120, 70, 30), (128, 128, 128), (50, 160, 60), (240, 140, 30),
    (240, 150, 190), (130, 50, 160), (210, 30, 30), (235, 235, 235), (240, 220, 40),
]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)

    def forward(self, x):
        a = torch.relu(self.conv1(x))
        b = torch.relu(self.conv2(a))
        return {"conv1": a, "conv2": b}


# Tiny's fields, composed by hand: conv1 (3×3, stride 2, padding 1) is (−1, 3, 2); conv2
# on top: offset −1·2 − 1 = −3, size (3 − 1)·2 + 3 = 7, stride 4. Centres at 0 + 2j, 0 + 4j.
TINY_FIELDS = {
    "conv1": {"offset": [-1, -1], "size": [3, 3], "stride": [2, 2]},
    "conv2": {"offset": [-3, -3], "size": [7, 7], "stride": [4, 4]},
}


def fields_file(layers, input_size):
    text = json.dumps({"format": "netdissect-fields/1", "input_size": input_size, "layers": layers},
                      sort_keys=True, separators=(",", ":"))
    return {"netdissect-fields.json": text}


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


class Tokens(Tiny):
    def forward(self, x):
        a = torch.relu(self.conv1(x))
        return {
            "conv1": a,
            "encoder.layers.encoder_layer_0": a.flatten(2).transpose(1, 2),
            "pooled": a.mean(dim=(2, 3)),
        }


class Fixed(Tiny):
    def forward(self, x):
        assert x.shape[2] == 16 and x.shape[3] == 16, "this model takes 16x16 images"
        return {"conv1": torch.relu(self.conv1(x))}


class Planted(nn.Module):
    """Unit i: 1 + closeness to colour i where colour i is the nearest, 0 elsewhere."""

    def forward(self, x):
        return {"colors": self.colors(x)}

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("prototypes", torch.tensor(COLORS, dtype=torch.float32).view(1, 11, 3, 1, 1))

    def colors(self, x):
        rgb = (x * self.std + self.mean) * 255.0
        cells = F.avg_pool2d(rgb, 2)
        distance = ((cells.unsqueeze(1) - self.prototypes) ** 2).sum(dim=2)
        nearest = F.one_hot(distance.argmin(dim=1), 11).permute(0, 3, 1, 2).to(x.dtype)
        closeness = 1.0 - distance / (distance.amax(dim=(1, 2, 3), keepdim=True) + 1.0)
        return nearest * (1.0 + closeness)


# The classifier's head: class c's score is Σ_u MEAN[c][u]·mean(A_u) + MAX[c][u]·max(A_u)
# + BIAS[c] over the colour units u (black, blue, brown, grey, green, orange, pink, purple,
# red, white, yellow): "warm" reads red, orange and yellow, "nature" green and blue against
# red, "dark" black and grey.
CLASSIFIER_MEAN = [
    [0, 0, 0, 0, 0, 1.0, 0, 0, 2.0, 0, 0.5],
    [0, 1.0, 0, 0, 3.0, 0, 0, 0, -1.0, 0, 0],
    [1.5, 0, 0, 1.0, 0, 0, 0, 0, 0, 0.25, 0],
]
CLASSIFIER_MAX = [
    [0, 0, 0, 0, 0, 0, 0, 0, 0.2, 0, 0],
    [0, 0, 0, 0, 0.3, 0, 0, 0, 0, 0, 0],
    [0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]
CLASSIFIER_BIAS = [0.1, -0.2, 0.3]


class Classifier(Planted):
    def __init__(self):
        super().__init__()
        self.heads = nn.Linear(22, 3)
        with torch.no_grad():
            self.heads.weight.copy_(torch.cat([torch.tensor(CLASSIFIER_MEAN), torch.tensor(CLASSIFIER_MAX)], 1))
            self.heads.bias.copy_(torch.tensor(CLASSIFIER_BIAS))

    def head(self, a):
        return self.heads(torch.cat([a.mean(dim=(2, 3)), a.amax(dim=(2, 3))], dim=1))

    def forward(self, x):
        a = self.colors(x)
        return {"colors": a, "logits": self.head(a)}


class Intervenable(Classifier):
    @torch.jit.export
    def forward_from(self, layer: str, activations: torch.Tensor) -> torch.Tensor:
        if layer != "colors":
            raise RuntimeError("forward_from: no layer " + layer + "; it offers colors")
        return self.head(activations)


INTERVENTION = json.dumps({"format": 1, "method": "forward_from", "output": "logits", "layers": ["colors"]},
                          sort_keys=True)


def main():
    parser = argparse.ArgumentParser()
    kinds = {"tiny": Tiny, "tiny-nofields": Tiny, "nan": Nan, "flat": Flat, "tuple": Pair, "tokens": Tokens, "fixed": Fixed,
             "planted": Planted, "classifier-nointervention": Classifier}
    parser.add_argument("kind", choices=[*kinds, "state_dict", "pickled", "classifier"])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.kind == "state_dict":
        torch.save(Tiny().state_dict(), args.out)
    elif args.kind == "pickled":
        torch.save(Tiny(), args.out)
    elif args.kind == "classifier":
        torch.jit.save(torch.jit.script(Intervenable().eval()), args.out,
                       _extra_files={"netdissect-intervention.json": INTERVENTION})
    elif args.kind == "tiny":
        torch.jit.save(torch.jit.script(Tiny().eval()), args.out, _extra_files=fields_file(TINY_FIELDS, [32, 32]))
    else:
        torch.jit.save(torch.jit.script(kinds[args.kind]().eval()), args.out)


if __name__ == "__main__":
    main()
