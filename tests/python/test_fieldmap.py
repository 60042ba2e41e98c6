#!/usr/bin/env python3
"""Checks python/fieldmap.py, the receptive-field geometry of exported layers.

1. Against the original NetDissect's field map arithmetic, recomputed here independently:
   each architecture written out by hand as Caffe-style layers (kernel, stride, padding),
   composed with the original's rules (``compose_fieldmap``; at a merge the branch with the
   largest size, ``max_fieldmap``; layers that are not convolutions or poolings pass the
   geometry through).
2. Against autograd: for a unit at an interior cell, the input pixels where its gradient is
   non-zero, over a few random images, span exactly the field.
3. The errors: an upsampling and a merge of maps with different centres are refused with
   the node named.
4. The exported file: the extra file netdissect-fields.json, read back through
   torch.jit.load and as a zip entry, and two exports give the same bytes.

Torchvision models have seeded random weights; nothing is downloaded. Exits non-zero on the
first failure.

    .venv/bin/python tests/python/test_fieldmap.py
"""

import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torchvision.models.feature_extraction import create_feature_extractor  # noqa: E402

import fieldmap  # noqa: E402
import train_demo  # noqa: E402

STARTED = time.time()


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


# 1. The original's arithmetic. A field map is ((offset_y, offset_x), (size_y, size_x),
# (step_y, step_x)), as in the original's upsample.py.
IDENTITY = ((0, 0), (1, 1), (1, 1))


def compose(lower, upper):
    """compose_fieldmap(rf1=lower, rf2=upper) of the original."""
    (o1, s1, t1), (o2, s2, t2) = lower, upper
    size = tuple((b - 1) * step + a for a, step, b in zip(s1, t1, s2))
    offset = tuple(b * step + a for b, step, a in zip(o2, t1, o1))
    step = tuple(b * a for a, b in zip(t1, t2))
    return offset, size, step


def largest(maps):
    """max_fieldmap of the original: the first map of the largest size on the first axis."""
    biggest = None
    for fm in maps:
        if biggest is None or fm[1][0] > biggest[1][0]:
            biggest = fm
    return biggest


def conv(k, s=1, p=0):
    """layer_fieldmap of a Caffe Convolution or Pooling layer."""
    return (-p, -p), (k, k), (s, s)


def chain(fm, *layers):
    for layer in layers:
        fm = compose(fm, layer)
    return fm


def as_field(fm):
    return fieldmap.Field(*fm)


def alexnet():
    conv1 = chain(IDENTITY, conv(11, 4, 2))  # torchvision's conv1 pads 2 (Caffe's: 0)
    conv2 = chain(conv1, conv(3, 2), conv(5, 1, 2))
    conv5 = chain(conv2, conv(3, 2), conv(3, 1, 1), conv(3, 1, 1), conv(3, 1, 1))
    return {"features.0": conv1, "features.1": conv1, "features.3": conv2, "features.4": conv2,
            "features.10": conv5, "features.11": conv5, "features.12": chain(conv5, conv(3, 2))}


def vgg16():
    fm, out, index = IDENTITY, {}, 0
    for block in (2, 2, 3, 3, 3):
        for _ in range(block):
            fm = compose(fm, conv(3, 1, 1))
            out[f"features.{index + 1}"] = fm  # the ReLU after the convolution
            index += 2
        fm = compose(fm, conv(2, 2))
        out[f"features.{index}"] = fm
        index += 1
    return out


def resnet(blocks, bottleneck):
    fm = chain(IDENTITY, conv(7, 2, 3), conv(3, 2, 1))
    out = {"maxpool": fm}
    for layer, n in enumerate(blocks, start=1):
        for b in range(n):
            stride = 2 if layer > 1 and b == 0 else 1
            if bottleneck:  # torchvision's v1.5: the stride is in the 3×3 convolution
                main = chain(fm, conv(1), conv(3, stride, 1), conv(1))
            else:
                main = chain(fm, conv(3, stride, 1), conv(3, 1, 1))
            shortcut = compose(fm, conv(1, stride)) if b == 0 and (stride > 1 or bottleneck) else fm
            fm = largest([main, shortcut])
        out[f"layer{layer}"] = fm
    return out


def googlenet():
    """torchvision's GoogLeNet: its "5×5" branch has a 3×3 kernel, and its poolings round up
    (ceil_mode), which changes the sizes of the maps but not the geometry."""
    def inception(fm):
        return largest([compose(fm, conv(1)),
                        chain(fm, conv(1), conv(3, 1, 1)),
                        chain(fm, conv(1), conv(3, 1, 1)),
                        chain(fm, conv(3, 1, 1), conv(1))])
    out = {}
    fm = chain(IDENTITY, conv(7, 2, 3), conv(3, 2), conv(1), conv(3, 1, 1), conv(3, 2))
    out["maxpool2"] = fm
    for name in ("inception3a", "inception3b"):
        fm = out[name] = inception(fm)
    fm = out["maxpool3"] = compose(fm, conv(3, 2))
    for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
        fm = out[name] = inception(fm)
    fm = out["maxpool4"] = compose(fm, conv(2, 2))
    for name in ("inception5a", "inception5b"):
        fm = out[name] = inception(fm)
    return out


def demo():
    conv1 = chain(IDENTITY, conv(7, 4, 3))
    conv2 = chain(conv1, conv(3, 2, 1), conv(5, 1, 2))
    conv3 = chain(conv2, conv(3, 2, 1), conv(3, 1, 1))
    conv4 = compose(conv3, conv(3, 1, 1))
    return {"conv1": conv1, "conv2": conv2, "conv3": conv3, "conv4": conv4,
            "conv5": compose(conv4, conv(3, 1, 1))}


def model(arch):
    torch.manual_seed(0)
    kwargs = {"aux_logits": False, "init_weights": True} if arch == "googlenet" else {}
    return torchvision.models.get_model(arch, weights=None, **kwargs).eval()


def demo_net():
    torch.manual_seed(0)
    return train_demo.DemoNet(12, 15, 14).eval()


FOUND = {}


def against_the_original(name, expected, computed, layers):
    for layer in layers:
        want, got = as_field(expected[layer]), computed[layer]
        check(got == want, f"{name} {layer}: fieldmap gives {got}, the original's arithmetic {want}")
        FOUND[(name, layer)] = got
    print(f"ok  {name}: {', '.join(f'{layer} {computed[layer].describe()}' for layer in layers)} "
          "as the original's field map arithmetic")


def original_arithmetic():
    cases = [
        ("alexnet", alexnet(), 227, ["features.0", "features.3", "features.10", "features.11",
                                     "features.12"]),
        ("vgg16", vgg16(), 32, ["features.4", "features.22", "features.29", "features.30"]),
        ("resnet18", resnet((2, 2, 2, 2), False), 64, ["maxpool", "layer1", "layer2", "layer3",
                                                        "layer4"]),
        ("resnet50", resnet((3, 4, 6, 3), True), 64, ["layer3", "layer4"]),
        ("googlenet", googlenet(), 64, ["maxpool2", "inception3a", "inception3b", "inception4e",
                                        "maxpool4", "inception5b"]),
    ]
    for arch, expected, size, layers in cases:
        against_the_original(arch, expected, fieldmap.node_fields(model(arch), layers, size), layers)
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
    against_the_original("demo", demo(), fieldmap.output_fields(train_demo.Layers(demo_net()), 224),
                         layers)

    # The facts METHOD.md §3.3 states.
    facts = [(("resnet18", "layer4"), (0.0, 32)), (("alexnet", "features.11"), (15.0, 16)),
             (("demo", "conv5"), (0.0, 16))]
    for key, (centre, stride) in facts:
        field = FOUND[key]
        check(field.centre() == (centre, centre) and field.stride == (stride, stride),
              f"{key}: centre {field.centre()} stride {field.stride}, expected {centre} + {stride}·j")
        print(f"ok  {key[0]} {key[1]}: centres at {centre:g} + {stride}·j")
    check(all(isinstance(v, int) for f in FOUND.values() for pair in f for v in pair),
          "the geometry holds something other than Python ints")


# 2. Autograd.
def gradient_span(layers, layer, field, size, units, seed=0):
    """The input pixels (first, last) per axis where the activation at an interior cell has a
    non-zero gradient, over 8 random images, and the cell."""
    cell = [-(o // t) for o, t in zip(field.offset, field.stride)]  # the first field inside
    for o, s, t, j in zip(field.offset, field.size, field.stride, cell):
        check(o + t * j + s <= size, f"{layer}: no interior cell at {size}×{size}")
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(seed),
                    requires_grad=True)
    value = layers(x)[layer][:, :, cell[0], cell[1]]
    if units == "one":
        # The unit most often active there: a unit that ReLU zeroes has no gradient.
        unit = int((value > 0).sum(0).argmax())
        value[:, unit].sum().backward()
    else:
        value.sum().backward()
    hit = x.grad.abs().sum(dim=(0, 1)) > 0
    spans = []
    for along in (hit.any(1), hit.any(0)):
        where = along.nonzero().squeeze(1)
        check(len(where) > 0, f"{layer}: no pixel has a gradient")
        spans.append((int(where[0]), int(where[-1])))
    return spans, cell


def autograd_check(name, layers, layer, field, size, units="one"):
    got, cell = gradient_span(layers, layer, field, size, units)
    want = [(o + t * j, o + t * j + s - 1) for o, s, t, j in zip(field.offset, field.size, field.stride, cell)]
    check(got == want, f"{name} {layer} cell {cell}: gradients reach pixels {got}, the field is {want}")
    what = "one unit" if units == "one" else "all units"
    print(f"ok  {name} {layer}: the gradient of {what} at cell {tuple(cell)} reaches pixels "
          f"{got[0][0]}..{got[0][1]} (y) and {got[1][0]}..{got[1][1]} (x), its field")


def autograd():
    net = demo_net()
    for layer in ("conv1", "conv3", "conv5"):
        autograd_check("demo", train_demo.Layers(net), layer, FOUND[("demo", layer)], 176)
    alex = create_feature_extractor(model("alexnet"), ["features.11"])
    autograd_check("alexnet", alex, "features.11", FOUND[("alexnet", "features.11")], 195)
    r18 = create_feature_extractor(model("resnet18"), ["layer2"])
    autograd_check("resnet18", r18, "layer2", FOUND[("resnet18", "layer2")], 128)
    # An inception block's units in a 1×1 branch see less than those in a 3×3 branch; the
    # field is the largest branch's, as in the original, so all units together span it.
    g = create_feature_extractor(model("googlenet"), ["inception3a"])
    autograd_check("googlenet", g, "inception3a", FOUND[("googlenet", "inception3a")], 128, "all")


# 3. Errors.
class Upsampled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.after = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.after(F.relu(self.up(self.conv(x))))


class Misaligned(nn.Module):
    """Two branches whose centres differ by half a pixel: 3×3 and 4×4 kernels, both padded 1."""

    def __init__(self):
        super().__init__()
        self.odd = nn.Conv2d(3, 4, 3, padding=1)
        self.even = nn.Conv2d(3, 4, 4, padding=1)

    def forward(self, x):
        return F.relu(self.odd(x)[:, :, :-1, :-1] + self.even(x))


def expect_error(module, layer, parts):
    try:
        got = fieldmap.node_fields(module, [layer], 16)
    except fieldmap.FieldError as e:
        message = str(e)
        for part in parts:
            check(part in message, f"the error for {layer} lacks {part!r}: {message}")
        print(f"ok  refused: {message}")
        return
    check(False, f"{layer} got a geometry, {got}, instead of an error")


def errors():
    expect_error(Upsampled(), "after", ["layer after", "node up", "Upsample", "16×16 to 32×32"])
    expect_error(Misaligned(), "relu", ["layer relu", "node add", "getitem", "even",
                                        "-1 + 1·j, size 3 (centre 0)",
                                        "-1 + 1·j, size 4 (centre 0.5)"])
    # Not strict: the error is the layer's value, and the other layers keep their geometry.
    fields = fieldmap.node_fields(Upsampled(), ["conv", "after"], 16, strict=False)
    check(fields["conv"] == fieldmap.Field((-1, -1), (3, 3), (1, 1)), f"conv: {fields['conv']}")
    check(isinstance(fields["after"], fieldmap.FieldError), f"after: {fields['after']}")
    print("ok  without strict, the layers before the upsampling keep their geometry")


# 4. The exported file.
def export(out, hash_seed):
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    subprocess.run([sys.executable, os.path.join(ROOT, "python", "export_torchvision.py"),
                    "resnet18", "--layers", "layer1,layer4,avgpool", "--seed", "5",
                    "--input-size", "64", "--out", out],
                   env=env, check=True, capture_output=True)
    with open(out, "rb") as f:
        return f.read()


def exported_file():
    with tempfile.TemporaryDirectory() as tmp:
        first = export(os.path.join(tmp, "resnet18.pt"), "1")
        os.mkdir(os.path.join(tmp, "b"))
        second = export(os.path.join(tmp, "b", "other.pt"), "2")
        check(first == second, f"two exports differ: {len(first)} and {len(second)} bytes")
        print(f"ok  two exports (other paths and hash seeds) give the same {len(first)} bytes")

        extra = {fieldmap.EXTRA_FILE: ""}
        torch.jit.load(os.path.join(tmp, "resnet18.pt"), _extra_files=extra)
        text = extra[fieldmap.EXTRA_FILE].decode()  # torch hands extra files back as bytes
        with zipfile.ZipFile(io.BytesIO(first)) as z:
            entries = [n for n in z.namelist() if n.endswith("/extra/" + fieldmap.EXTRA_FILE)]
            check(len(entries) == 1, f"zip entries for the fields: {entries}")
            check(z.read(entries[0]).decode() == text, "torch.jit.load and the zip entry differ")
            debug = [n for n in z.namelist() if n.endswith(".debug_pkl")]
            check(not debug, f"debug records, which hold absolute paths, are still there: {debug}")
        check(ROOT.encode() not in first, f"the export holds the path {ROOT}")

        document = json.loads(text)
        # avgpool is global (layer4 is 2×2 at 64), so it is left out; at 32, where layer4 is
        # 1×1, the pooling would be the identity and avgpool a map.
        expected = {"format": "netdissect-fields/1", "input_size": [64, 64], "layers": {
            "layer1": {"offset": [-21, -21], "size": [43, 43], "stride": [4, 4]},
            "layer4": {"offset": [-217, -217], "size": [435, 435], "stride": [32, 32]}}}
        check(document == expected, f"the extra file holds {document}")
        check(text == json.dumps(expected, sort_keys=True, separators=(",", ":")),
              f"the extra file is not compact sorted JSON: {text}")
        print(f"ok  the export holds {entries[0]}, the same through torch.jit.load: {text}")

    for name in ("demo-random", "demo-trained"):
        extra = {fieldmap.EXTRA_FILE: ""}
        torch.jit.load(os.path.join(ROOT, "models", "demo", f"{name}.pt"), _extra_files=extra)
        fields, size = fieldmap.read_extra_file(extra[fieldmap.EXTRA_FILE])
        want = {layer: as_field(fm) for layer, fm in demo().items()}
        check(fields == want and size == (224, 224), f"models/demo/{name}.pt: {fields}, {size}")
    print("ok  the committed demo models hold conv1..conv5's fields")


def main():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for step in (original_arithmetic, autograd, errors, exported_file):
        step()
    print(f"test_fieldmap: all checks passed in {time.time() - STARTED:.0f} s")


if __name__ == "__main__":
    main()
