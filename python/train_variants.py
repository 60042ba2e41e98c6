#!/usr/bin/env python3
"""Train one variant of the demo network for the paper's comparisons (METHOD.md §5).

Each recipe changes one thing against ``base`` (the demo's five-convolution network and
its three tasks, trained cheaply: smaller images, fewer epochs): batch normalisation after
every convolution; conv5 half or twice as wide; the task (only the scene, only the
objects, or a pretext task that uses no label of the synthetic world: predicting by how
many quarter turns the image was rotated); or the architecture (small networks in the
style of AlexNet, VGG, GoogLeNet and ResNet, of comparable parameter counts, on the
demo's tasks). ``--list`` prints every recipe as JSON.

    python python/train_variants.py --recipe bn --seed 1 --data DATASET --out bn-1.pt

The file is TorchScript whose forward takes a batch normalised the torchvision way and
returns a dict from each dissected layer's name to its activations (after the ReLU, or the
block's output) and, under ``logits``, the task head's scores; ``forward_from(layer,
activations)`` runs on from a layer to those scores (the intervention the explain stage
uses; the extra file ``netdissect-intervention.json`` names it), and the extra file
``netdissect-fields.json`` holds the layers' receptive fields. Beside it, ``--log`` (default:
the file with ``.json``) gets the recipe, the command, the losses and the validation
scores per epoch. On the CPU with the same torch build and kind of CPU, the same command
writes the same bytes.

``--snapshots DIR`` also writes the network as it stood before training and after each
epoch but the last, as ``DIR/epoch-<k>.pt`` (k = 0 is the initialisation; the last epoch's
is ``--out``), for the paper's comparison over training iterations. Writing them draws no
random number and changes nothing of the training: ``--out`` has the same bytes either way.
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # As train_demo.py: TorchScript's constants follow the string hash seed; fixed.
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
              dict(os.environ, PYTHONHASHSEED="0"))

import argparse  # noqa: E402 - after the re-execution above
import json  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import fieldmap  # noqa: E402
import train_demo  # noqa: E402
from export_torchvision import save  # noqa: E402

# The training every recipe shares unless it says otherwise: cheap enough that three seeds
# of every variant train in an hour on two cores.
TRAINING = {"epochs": 8, "batch_size": 64, "lr": 2e-3}

# name → what it changes. arch: the network (see ARCHITECTURES); task: what it learns
# ("all": the demo's scene, objects and textures; "scene"; "object"; "rotation": the
# self-supervised pretext); bn: batch normalisation after every convolution; width: conv5's
# channels as a multiple of base's.
RECIPES = {
    "base": {"arch": "demo", "task": "all", "bn": False, "width": 1.0,
             "about": "the demo network and tasks, trained cheaply: the reference"},
    "bn": {"arch": "demo", "task": "all", "bn": True, "width": 1.0,
           "about": "batch normalisation after every convolution"},
    "narrow": {"arch": "demo", "task": "all", "bn": False, "width": 0.5,
               "about": "conv5 half as wide (128 units)"},
    "wide": {"arch": "demo", "task": "all", "bn": False, "width": 2.0,
             "about": "conv5 twice as wide (512 units)"},
    "scene": {"arch": "demo", "task": "scene", "bn": False, "width": 1.0,
              "about": "trained only to name the scene (scene-centric)"},
    "object": {"arch": "demo", "task": "object", "bn": False, "width": 1.0,
               "about": "trained only to name the objects (object-centric)"},
    "selfsup": {"arch": "demo", "task": "rotation", "bn": False, "width": 1.0,
                "about": "self-supervised: predicts the quarter turns an image was rotated "
                         "by; no label of the synthetic world"},
    "alexnet": {"arch": "alexnet", "task": "all", "bn": False, "width": 1.0,
                "about": "AlexNet-style: 11×11 stride-4 conv1, 5×5 conv2, three 3×3"},
    "vgg": {"arch": "vgg", "task": "all", "bn": False, "width": 1.0,
            "about": "VGG-style: five blocks of two stacked 3×3 convolutions"},
    "googlenet": {"arch": "googlenet", "task": "all", "bn": False, "width": 1.0,
                  "about": "GoogLeNet-style: a stem, then inception blocks"},
    "resnet": {"arch": "resnet", "task": "all", "bn": True, "width": 1.0,
               "about": "ResNet-style: a stem, basic residual blocks, a bottleneck block; "
                        "batch norm throughout"},
}


def fail(message):
    print(f"train_variants: error: {message}", file=sys.stderr)
    sys.exit(1)


def conv(cin, cout, k, stride=1, bn=False):
    """A convolution ("same" padding), batch norm when asked, then ReLU; He-initialised."""
    c = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn)
    nn.init.kaiming_normal_(c.weight, nonlinearity="relu")
    if c.bias is not None:
        nn.init.zeros_(c.bias)
    layers = [c] + ([nn.BatchNorm2d(cout)] if bn else []) + [nn.ReLU()]
    return nn.Sequential(*layers)


def pool():
    return nn.MaxPool2d(3, 2, 1)


class Inception(nn.Module):
    """Four branches concatenated: 1×1; 1×1 → 3×3; 1×1 → 3×3 → 3×3 (the 5×5 of the
    original, as two 3×3); 3×3 max pool → 1×1."""

    def __init__(self, cin, b1, b3r, b3, b5r, b5, bp, bn):
        super().__init__()
        self.b1 = conv(cin, b1, 1, bn=bn)
        self.b3 = nn.Sequential(conv(cin, b3r, 1, bn=bn), conv(b3r, b3, 3, bn=bn))
        self.b5 = nn.Sequential(conv(cin, b5r, 1, bn=bn), conv(b5r, b5, 3, bn=bn),
                                conv(b5, b5, 3, bn=bn))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(cin, bp, 1, bn=bn))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class Residual(nn.Module):
    """A basic residual block: two 3×3 convolutions with batch norm, the input added
    (through a strided 1×1 projection when the shape changes), then ReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.BatchNorm2d(cout)
        for c in (self.c1, self.c2):
            nn.init.kaiming_normal_(c.weight, nonlinearity="relu")
        nn.init.zeros_(self.n2.weight)  # each block starts as the identity
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))
        else:
            self.skip = nn.Sequential()

    def forward(self, x):
        y = F.relu(self.n1(self.c1(x)))
        return F.relu(self.n2(self.c2(y)) + self.skip(x))


class Bottleneck(nn.Module):
    """A bottleneck residual block (1×1 down, 3×3, 1×1 up, with batch norm), the input
    projected by a 1×1 convolution and added, then ReLU: ResNet-50's block, which widens
    the last layer for few parameters."""

    def __init__(self, cin, mid, cout):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        nn.init.zeros_(self.body[-1].weight)
        self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


def architecture(recipe):
    """The stages of a recipe's network: (layer name, module) in order, each module taking
    the previous stage's output; the dissected layers are the stages' outputs."""
    arch, bn = recipe["arch"], recipe["bn"]
    if arch == "demo":
        c5 = int(256 * recipe["width"])
        return [
            ("conv1", conv(3, 32, 7, 4, bn)),
            ("conv2", nn.Sequential(pool(), conv(32, 64, 5, bn=bn))),
            ("conv3", nn.Sequential(pool(), conv(64, 128, 3, bn=bn))),
            ("conv4", conv(128, 128, 3, bn=bn)),
            ("conv5", conv(128, c5, 3, bn=bn)),
        ]
    if arch == "alexnet":
        return [
            ("conv1", conv(3, 48, 11, 4, bn)),
            ("conv2", nn.Sequential(pool(), conv(48, 96, 5, bn=bn))),
            ("conv3", nn.Sequential(pool(), conv(96, 144, 3, bn=bn))),
            ("conv4", conv(144, 144, 3, bn=bn)),
            ("conv5", conv(144, 256, 3, bn=bn)),
        ]
    if arch == "vgg":
        def block(cin, cout, first=None):
            return nn.Sequential(*([first] if first else []), conv(cin, cout, 3, bn=bn),
                                 conv(cout, cout, 3, bn=bn))
        return [
            ("conv1", nn.Sequential(conv(3, 24, 3, 2, bn), conv(24, 24, 3, bn=bn))),
            ("conv2", block(24, 48, pool())),
            ("conv3", block(48, 96, pool())),
            ("conv4", block(96, 112, pool())),
            ("conv5", nn.Sequential(conv(112, 160, 3, bn=bn), conv(160, 256, 3, bn=bn))),
        ]
    if arch == "googlenet":
        return [
            ("conv1", conv(3, 32, 7, 2, bn)),
            ("conv2", nn.Sequential(pool(), conv(32, 64, 3, bn=bn))),
            ("inception3a", nn.Sequential(pool(), Inception(64, 32, 48, 64, 8, 16, 16, bn))),
            ("inception3b", Inception(128, 48, 64, 96, 16, 32, 32, bn)),
            ("inception4a", nn.Sequential(pool(), Inception(208, 64, 64, 96, 16, 48, 48, bn))),
            ("inception4b", Inception(256, 64, 64, 112, 24, 48, 32, bn)),
        ]
    if arch == "resnet":
        return [
            ("conv1", nn.Sequential(conv(3, 32, 7, 2, True), pool())),
            ("layer1", nn.Sequential(Residual(32, 32, 1), Residual(32, 32, 1))),
            ("layer2", nn.Sequential(Residual(32, 64, 2), Residual(64, 64, 1))),
            ("layer3", nn.Sequential(Residual(64, 128, 2), Residual(128, 128, 1))),
            ("layer4", Bottleneck(128, 64, 256)),
        ]
    raise ValueError(f"unknown architecture {arch}")


class Staged(nn.Module):
    """A network as stages whose outputs are the named layers, and a head on the last
    layer's spatial mean and maximum. ``scores`` of the head's outputs go out as
    ``logits``."""

    names: List[str]

    def __init__(self, stages, outputs, scores):
        super().__init__()
        self.names = [name for name, _ in stages]
        self.stages = nn.ModuleList([module for _, module in stages])
        width = self._width()
        self.head = nn.Linear(2 * width, outputs)
        self.scores = scores

    def _width(self):
        with torch.no_grad():
            a = torch.zeros(1, 3, 64, 64)
            for stage in self.stages:
                a = stage(a)
        return a.shape[1]

    def pooled(self, a: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([a.mean(dim=(2, 3)), a.amax(dim=(2, 3))], dim=1))

    def layers(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        a = x
        for i, stage in enumerate(self.stages):
            a = stage(a)
            out[self.names[i]] = a
        return out

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.layers(x)
        out["logits"] = self.pooled(out[self.names[-1]])[:, :self.scores]
        return out

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """Every head output (the training losses read all of them)."""
        a = x
        for stage in self.stages:
            a = stage(a)
        return self.pooled(a)

    @torch.jit.export
    def forward_from(self, layer: str, activations: torch.Tensor) -> torch.Tensor:
        """The scores under ``logits`` from ``layer``'s activations, as given."""
        if layer not in self.names:
            raise RuntimeError("forward_from: no layer " + layer + "; it offers "
                               + ", ".join(self.names))
        a = activations
        after = False
        for i, stage in enumerate(self.stages):
            if after:
                a = stage(a)
            if self.names[i] == layer:
                after = True
        return self.pooled(a)[:, :self.scores]


class LayersOnly(nn.Module):
    """The named layers alone (what the field maps are composed from)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.layers(x)


def head_sizes(task, sizes):
    """(head outputs, of which the first ones go out as logits) for a task."""
    s, o, t = sizes
    return {"all": (s + o + t, s), "scene": (s, s), "object": (o, o), "rotation": (4, 4)}[task]


def loss(task, out, scene, objects, textures, sizes, turns):
    """The task's loss and its parts (for the log)."""
    s, o, _ = sizes
    if task == "all":
        ls, lo, lt = train_demo.losses(out, scene, objects, textures, sizes)
        return ls + lo + lt, {"scene": ls.item(), "object": lo.item(), "texture": lt.item()}
    if task == "scene":
        ls = F.cross_entropy(out, scene, ignore_index=-100)
        return ls, {"scene": ls.item()}
    if task == "object":
        lo = F.binary_cross_entropy_with_logits(out, objects, reduction="sum") / len(out)
        return lo, {"object": lo.item()}
    lr = F.cross_entropy(out, turns)
    return lr, {"rotation": lr.item()}


def turn(x, turns):
    """Each image of a (N, H, W, 3) uint8 batch turned by its number of quarter turns."""
    return torch.stack([torch.rot90(im, int(k), dims=(0, 1)) for im, k in zip(x, turns)])


@torch.no_grad()
def evaluate(net, task, images, scene, objects, textures, sizes, batch=200):
    """The validation scores of the task (rotation: every image at each of four turns)."""
    net.eval()
    s, o, _ = sizes
    if task == "rotation":
        hits = 0
        for k in range(4):
            for i in range(0, len(images), batch):
                x = images[i:i + batch]
                ks = torch.full((len(x),), k)
                hits += (net.outputs(train_demo.normalise(turn(x, ks))).argmax(1) == k).sum().item()
        net.train()
        return {"rotation_accuracy": round(hits / (4 * len(images)), 4)}
    scene_hits, n_scene, obj_ok = 0, 0, 0.0
    for i in range(0, len(images), batch):
        out = net.outputs(train_demo.normalise(images[i:i + batch]))
        if task in ("all", "scene"):
            sc = scene[i:i + batch]
            keep = sc >= 0
            scene_hits += (out[:, :s].argmax(1)[keep] == sc[keep]).sum().item()
            n_scene += keep.sum().item()
        if task in ("all", "object"):
            start = s if task == "all" else 0
            obj_ok += ((out[:, start:start + o] > 0).float()
                       == objects[i:i + batch]).float().sum().item()
    net.train()
    result = {}
    if task in ("all", "scene"):
        result["scene_accuracy"] = round(scene_hits / max(n_scene, 1), 4)
    if task in ("all", "object"):
        result["object_label_accuracy"] = round(obj_ok / objects.numel(), 4)
    return result


def intervention_text(names):
    return json.dumps({"format": 1, "method": "forward_from", "output": "logits",
                       "layers": list(names)}, sort_keys=True)


def export(net, path, size, fields=None):
    """Writes ``net`` as TorchScript with its fields and intervention records (in eval
    mode: batch norm with its running statistics); ``net``'s mode is kept. ``fields``: the
    layers' receptive fields when already known (they follow the architecture alone)."""
    training = net.training
    net.eval()
    scripted = torch.jit.script(net)
    if fields is None:
        fields = fieldmap.output_fields(LayersOnly(net), size)
    try:
        save(scripted, path, {fieldmap.EXTRA_FILE: fieldmap.extra_file_text(fields, size),
                              train_demo.INTERVENTION_FILE: intervention_text(net.names)})
    except OSError as e:
        fail(f"cannot write {path}: {e}")
    net.train(training)


def build(recipe, sizes, seed):
    torch.manual_seed(seed)
    outputs, scores = head_sizes(recipe["task"], sizes)
    return Staged(architecture(recipe), outputs, scores)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--list", action="store_true", help="print the recipes as JSON and exit")
    p.add_argument("--names", action="store_true", help="print the recipes' names and exit")
    p.add_argument("--recipe", choices=sorted(RECIPES))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", help="the training dataset (netdissect synth)")
    p.add_argument("--out", help="the TorchScript file to write")
    p.add_argument("--log", help="the training log (default: --out with .json)")
    p.add_argument("--epochs", type=int, default=TRAINING["epochs"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--snapshots", help="a folder for the network before training and after "
                   "each epoch but the last (epoch-<k>.pt)")
    args = p.parse_args()
    if args.names:
        print("\n".join(RECIPES))
        return
    if args.list:
        print(json.dumps({"training": TRAINING, "recipes": RECIPES, "torch": torch.__version__},
                         indent=1, sort_keys=True))
        return
    if not (args.recipe and args.data and args.out):
        fail("--recipe, --data and --out are required (or --list)")
    if args.epochs < 1:
        fail(f"--epochs must be at least 1, got {args.epochs}")
    recipe = RECIPES[args.recipe]
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    started = time.time()
    images, scene, objects, textures, val, names = train_demo.load(args.data)
    sizes = (len(names["scene"]), len(names["object"]), len(names["texture"]))
    train = (~val).nonzero().squeeze(1)
    test = val.nonzero().squeeze(1)
    if len(train) == 0:
        fail(f"{args.data} has no train split")
    size = images.shape[1]
    net = build(recipe, sizes, args.seed)
    parameters = sum(q.numel() for q in net.parameters())
    print(f"train_variants: {args.recipe} seed {args.seed}: {parameters:,} parameters; "
          f"{len(train)} training and {len(test)} validation images of {size}×{images.shape[2]}",
          file=sys.stderr)
    batch_size, lr = TRAINING["batch_size"], TRAINING["lr"]
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = len(train) // batch_size
    total = steps_per_epoch * args.epochs
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=total)
    generator = torch.Generator().manual_seed(args.seed)
    task = recipe["task"]
    log = {"recipe": args.recipe, **recipe, "seed": args.seed, "command": sys.argv[1:],
           "torch": torch.__version__, "parameters": parameters, "steps": total,
           "epochs": args.epochs, "batch_size": batch_size, "lr": lr, "image_size": size,
           "layers": net.names, "history": []}
    fields = None
    if args.snapshots:
        try:
            os.makedirs(args.snapshots, exist_ok=True)
        except OSError as e:
            fail(f"cannot create {args.snapshots}: {e}")
        fields = fieldmap.output_fields(LayersOnly(net), size)
        log["snapshots"] = {}

    def snapshot(epoch):
        if fields is not None and epoch < args.epochs:
            name = f"epoch-{epoch}.pt"
            export(net, os.path.join(args.snapshots, name), size, fields)
            log["snapshots"][str(epoch)] = name

    snapshot(0)
    for epoch in range(args.epochs):
        order = train[torch.randperm(len(train), generator=generator)]
        running = []
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            x = images[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(2)
            turns = torch.randint(0, 4, (len(idx),), generator=generator)
            if task == "rotation":
                x = turn(x, turns)
            value, parts = loss(task, net.outputs(train_demo.normalise(x)), scene[idx],
                                objects[idx], textures[idx], sizes, turns)
            optimiser.zero_grad()
            value.backward()
            optimiser.step()
            schedule.step()
            running.append(parts)
        record = {"epoch": epoch + 1,
                  "loss": {k: round(float(np.mean([r[k] for r in running])), 4)
                           for k in running[0]},
                  "val": evaluate(net, task, images[test], scene[test], objects[test],
                                  textures[test], sizes),
                  "seconds": round(time.time() - started)}
        log["history"].append(record)
        print(f"train_variants: {json.dumps(record)}", file=sys.stderr)
        snapshot(epoch + 1)
    export(net, args.out, size)
    with open(args.log or os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(log, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
