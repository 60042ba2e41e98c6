#!/usr/bin/env python3
"""Train the demo model: a five-layer CNN that sees the synthetic Broden world.

The network (conv1..conv5, ReLU, no batch normalisation, global average pooling) learns
three things about each image of a synthetic dataset written by ``netdissect synth``:
its scene (softmax over the scene labels; images with scene item 0 are left out of that
loss), which objects it holds (one sigmoid per object label, from the object label maps)
and which textures its background carries (one sigmoid per texture label). Nothing in the
labels says where anything is: whatever the units learn to localise, they learn on their
own, which is what a dissection then measures.

It writes TorchScript files whose forward takes a normalised batch (N, 3, H, W) (the
torchvision setting: RGB / 255, ImageNet mean and std) and returns a dict from layer name
to its post-ReLU activations, the form ``nd-extract`` reads, and under ``logits`` the scene
head's class scores (N, scenes). The method ``forward_from(layer, activations)`` runs the
network on from a layer's activations to those scores (the intervention that the explain
stage ablates units through), and the extra file ``netdissect-intervention.json`` names it.
The scene names go to ``<out>/scenes.txt``, one per line in the order of the scores.

    <out>/demo-random.pt       the seeded initial weights (step 0)
    <out>/demo-step<K>.pt      checkpoints from early in training, one per --checkpoints
    <out>/demo-trained.pt      the final weights
    <out>/training.json        the command, losses and accuracies along the way

Each file also holds the layers' receptive-field geometry as the extra file
``netdissect-fields.json`` (see ``fieldmap.py``), and is written by ``export_torchvision.save``:
its bytes depend on neither the output path nor where the repository lies. On the CPU with
the same torch build, the same command gives the same weights, hence the same bytes.

    python python/train_demo.py --data DATASET --out models/demo

``--reexport DIR`` rewrites the ``demo-*.pt`` files of DIR with the current export code
without training: each file's parameters are loaded into a fresh DemoNet, which must give
activations equal to the file's on a seeded batch; the rewritten file must give them too.

    python python/train_demo.py --reexport models/demo
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # torch.jit.script writes the convolutions' Final constants in the order of a set of
    # their names, which follows the string hash seed: fixed, so that the bytes are too.
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
              dict(os.environ, PYTHONHASHSEED="0"))

import argparse  # noqa: E402 - after the re-execution above
import csv
import glob  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Dict  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import fieldmap  # noqa: E402
from export_torchvision import save  # noqa: E402

INTERVENTION_FILE = "netdissect-intervention.json"

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")


def fail(message):
    print(f"train_demo: error: {message}", file=sys.stderr)
    sys.exit(1)


class DemoNet(nn.Module):
    """conv1 7×7/4 → pool → conv2 5×5 → pool → conv3, conv4, conv5 3×3 → heads.

    The heads read conv5's spatial mean and maximum: the maximum lets a small object
    anywhere in the image be seen, the mean how much of the image a pattern covers.
    """

    def __init__(self, n_scenes, n_objects, n_textures):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, stride=4, padding=3)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.conv4 = nn.Conv2d(128, 128, 3, padding=1)
        self.conv5 = nn.Conv2d(128, 256, 3, padding=1)
        self.heads = nn.Linear(2 * 256, n_scenes + n_objects + n_textures)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def features(self, x):
        c1 = F.relu(self.conv1(x))
        c2 = F.relu(self.conv2(F.max_pool2d(c1, 3, 2, 1)))
        c3 = F.relu(self.conv3(F.max_pool2d(c2, 3, 2, 1)))
        c4 = F.relu(self.conv4(c3))
        c5 = F.relu(self.conv5(c4))
        return {"conv1": c1, "conv2": c2, "conv3": c3, "conv4": c4, "conv5": c5}

    def forward(self, x):
        c5 = self.features(x)["conv5"]
        return self.heads(torch.cat([c5.mean(dim=(2, 3)), c5.amax(dim=(2, 3))], dim=1))


class Layers(nn.Module):
    """The named post-ReLU activations of DemoNet (what the field maps are composed from)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x)


class Exported(nn.Module):
    """What is exported: DemoNet's layers and scene scores, and the intervention method.

    Written out layer by layer (not through DemoNet.features) so that TorchScript compiles
    it; the operations are DemoNet's, in its order.
    """

    def __init__(self, net, n_scenes):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = net.conv1, net.conv2, net.conv3
        self.conv4, self.conv5, self.heads = net.conv4, net.conv5, net.heads
        self.n_scenes = n_scenes

    def scenes(self, c5: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([c5.mean(dim=(2, 3)), c5.amax(dim=(2, 3))], dim=1)
        return self.heads(pooled)[:, :self.n_scenes]

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        c1 = F.relu(self.conv1(x))
        c2 = F.relu(self.conv2(F.max_pool2d(c1, 3, 2, 1)))
        c3 = F.relu(self.conv3(F.max_pool2d(c2, 3, 2, 1)))
        c4 = F.relu(self.conv4(c3))
        c5 = F.relu(self.conv5(c4))
        return {"conv1": c1, "conv2": c2, "conv3": c3, "conv4": c4, "conv5": c5,
                "logits": self.scenes(c5)}

    @torch.jit.export
    def forward_from(self, layer: str, activations: torch.Tensor) -> torch.Tensor:
        """The scene scores from ``layer``'s post-ReLU activations, as given."""
        if layer not in ["conv1", "conv2", "conv3", "conv4", "conv5"]:
            raise RuntimeError("forward_from: no layer " + layer
                               + "; it offers conv1, conv2, conv3, conv4, conv5")
        a = activations
        if layer == "conv1":
            a = F.relu(self.conv2(F.max_pool2d(a, 3, 2, 1)))
        if layer in ["conv1", "conv2"]:
            a = F.relu(self.conv3(F.max_pool2d(a, 3, 2, 1)))
        if layer in ["conv1", "conv2", "conv3"]:
            a = F.relu(self.conv4(a))
        if layer in ["conv1", "conv2", "conv3", "conv4"]:
            a = F.relu(self.conv5(a))
        return self.scenes(a)


def intervention_text():
    return json.dumps({"format": 1, "method": "forward_from", "output": "logits",
                       "layers": list(LAYERS)}, sort_keys=True)


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        fail(f"{path} does not exist: --data must be a Broden-format dataset")


def label_map(path):
    """A Broden label PNG decoded as R + 256·G."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1]


def load(data):
    """Images (uint8, N×H×W×3), targets, split and the label names of each target."""
    rows = read_csv(os.path.join(data, "index.csv"))
    codes = {c: read_csv(os.path.join(data, f"c_{c}.csv")) for c in ("scene", "object", "texture")}
    numbers = {c: [int(r["number"]) for r in codes[c]] for c in codes}
    names = {c: [r["name"] for r in codes[c]] for c in codes}
    col = {c: {n: i for i, n in enumerate(numbers[c])} for c in codes}
    images, scene, objects, textures, val = [], [], [], [], []
    for i, row in enumerate(rows):
        path = os.path.join(data, "images", row["image"])
        images.append(np.asarray(Image.open(path).convert("RGB")))
        s = [int(x) for x in row["scene"].split(";") if x]
        scene.append(col["scene"].get(s[0], -100) if s else -100)
        o = np.zeros(len(numbers["object"]), np.float32)
        for item in filter(None, row["object"].split(";")):
            for n in np.unique(label_map(os.path.join(data, "images", item))):
                if n in col["object"]:
                    o[col["object"][n]] = 1
        objects.append(o)
        t = np.zeros(len(numbers["texture"]), np.float32)
        for item in filter(None, row["texture"].split(";")):
            if int(item) in col["texture"]:
                t[col["texture"][int(item)]] = 1
        textures.append(t)
        val.append(row["split"] == "val")
        if (i + 1) % 1000 == 0:
            print(f"  read {i + 1}/{len(rows)} images", file=sys.stderr)
    if len({im.shape for im in images}) != 1:
        fail("the images of the dataset differ in size; train on one size")
    return (
        torch.from_numpy(np.stack(images)),
        torch.tensor(scene),
        torch.from_numpy(np.stack(objects)),
        torch.from_numpy(np.stack(textures)),
        torch.tensor(val),
        names,
    )


def normalise(batch):
    x = batch.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def losses(logits, scene, objects, textures, sizes):
    s, o, _ = sizes
    ls = F.cross_entropy(logits[:, :s], scene, ignore_index=-100)
    # Summed over labels, not averaged: each object or texture weighs as much as the scene.
    lo = F.binary_cross_entropy_with_logits(logits[:, s:s + o], objects, reduction="sum")
    lt = F.binary_cross_entropy_with_logits(logits[:, s + o:], textures, reduction="sum")
    n = len(logits)
    return ls, lo / n, lt / n


@torch.no_grad()
def evaluate(net, images, scene, objects, textures, sizes, batch=200):
    net.eval()
    s, o, _ = sizes
    hits, n_scene, obj_ok, tex_ok = 0, 0, 0.0, 0.0
    for i in range(0, len(images), batch):
        logits = net(normalise(images[i:i + batch]))
        sc = scene[i:i + batch]
        keep = sc >= 0
        hits += (logits[:, :s].argmax(1)[keep] == sc[keep]).sum().item()
        n_scene += keep.sum().item()
        obj_ok += ((logits[:, s:s + o] > 0).float() == objects[i:i + batch]).float().sum().item()
        tex_ok += ((logits[:, s + o:] > 0).float() == textures[i:i + batch]).float().sum().item()
    net.train()
    return {
        "scene_accuracy": round(hits / max(n_scene, 1), 4),
        "object_label_accuracy": round(obj_ok / objects.numel(), 4),
        "texture_label_accuracy": round(tex_ok / textures.numel(), 4),
    }


def export(net, path, size, n_scenes):
    """Writes ``net``'s layers and scene scores as TorchScript to ``path``, with the
    intervention method, the layers' receptive fields and the intervention record.

    The one export of training and of --reexport: the same weights give the same bytes.
    """
    net.eval()
    scripted = torch.jit.script(Exported(net, n_scenes))
    fields = fieldmap.output_fields(Layers(net), size)
    try:
        save(scripted, path, {fieldmap.EXTRA_FILE: fieldmap.extra_file_text(fields, size),
                              INTERVENTION_FILE: intervention_text()})
    except OSError as e:
        fail(f"cannot write {path}: {e}")
    net.train()


def write_scenes(directory, names):
    with open(os.path.join(directory, "scenes.txt"), "w") as f:
        f.write("".join(f"{name}\n" for name in names))


def scene_names(directory):
    """The scene names, in head order, from the directory's training log."""
    path = os.path.join(directory, "training.json")
    try:
        with open(path) as f:
            return json.load(f)["label_names"]["scene"]
    except (OSError, KeyError, ValueError) as e:
        fail(f"{path}: cannot read the scene names (label_names.scene) that the heads follow: {e}")


def reexport(directory, size):
    """Rewrites every demo-*.pt of ``directory`` with ``export``, checking that the weights and
    the activations on a seeded batch stay bit-identical, and that the scene scores and the
    intervention method give DemoNet's."""
    paths = sorted(glob.glob(os.path.join(directory, "demo-*.pt")))
    if not paths:
        fail(f"{directory} holds no demo-*.pt file")
    scenes = scene_names(directory)
    write_scenes(directory, scenes)
    n_scenes = len(scenes)
    for path in paths:
        extra = {fieldmap.EXTRA_FILE: ""}
        old = torch.jit.load(path, _extra_files=extra)
        file_size = size
        if extra[fieldmap.EXTRA_FILE]:
            _, (height, width) = fieldmap.read_extra_file(extra[fieldmap.EXTRA_FILE])
            file_size = height
        # Files of the first export held DemoNet under `net.`; later ones hold its modules.
        state = {k.removeprefix("net."): v for k, v in old.state_dict().items()}
        # Only the heads' total size shows in the weights; how it splits between scenes,
        # objects and textures matters to the losses alone.
        net = DemoNet(state["heads.weight"].shape[0], 0, 0)
        net.load_state_dict(state)
        batch = torch.randn(4, 3, file_size, file_size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            before = old(batch)
            fresh = Layers(net.eval())(batch)
            scores = net(batch)[:, :n_scenes]
        if not all(torch.equal(before[k], fresh[k]) for k in LAYERS):
            fail(f"{path}: DemoNet with the file's weights does not reproduce its activations")
        export(net, path, file_size, n_scenes)
        new = torch.jit.load(path)
        with torch.no_grad():
            after = new(batch)
            resumed = {k: new.forward_from(k, after[k]) for k in LAYERS}
        new_state = new.state_dict()
        same_weights = all(torch.equal(v, new_state[k]) for k, v in state.items())
        if not same_weights or not all(torch.equal(before[k], after[k]) for k in LAYERS):
            fail(f"{path}: the re-exported file differs from the old one in weights or activations")
        if not torch.equal(after["logits"], scores):
            fail(f"{path}: the exported scene scores differ from DemoNet's by "
                 f"{(after['logits'] - scores).abs().max().item():.3g}")
        for k, v in resumed.items():
            if not torch.equal(v, scores):
                fail(f"{path}: forward_from({k!r}) differs from the scene scores by "
                     f"{(v - scores).abs().max().item():.3g}")
        print(f"train_demo: rewrote {path}: {len(state)} parameter tensors and the activations "
              f"of {', '.join(LAYERS)} on a seeded batch of 4 {file_size}×{file_size} images "
              f"are bit-identical; its {n_scenes} scene scores and forward_from each layer equal "
              "DemoNet's", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="a Broden-format dataset (netdissect synth)")
    p.add_argument("--out", help="directory for the TorchScript files")
    p.add_argument("--reexport", metavar="DIR",
                   help="rewrite DIR's demo-*.pt with the current export code, without training")
    p.add_argument("--size", type=int, default=224,
                   help="with --reexport: the image side of files without a field record "
                        "(the training images' size)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoints", default="30,100,300",
                   help="comma-separated optimiser steps at which to export a checkpoint")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.reexport:
        reexport(args.reexport, args.size)
        return
    if not args.data or not args.out:
        fail("--data and --out are required (or --reexport DIR)")
    try:
        checkpoints = sorted({int(s) for s in args.checkpoints.split(",") if s})
    except ValueError:
        fail(f"--checkpoints {args.checkpoints!r} is not a list of step numbers")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)

    started = time.time()
    images, scene, objects, textures, val, names = load(args.data)
    sizes = (len(names["scene"]), len(names["object"]), len(names["texture"]))
    train = (~val).nonzero().squeeze(1)
    test = val.nonzero().squeeze(1)
    if len(train) == 0:
        fail(f"{args.data} has no train split")
    size = images.shape[1]
    print(f"train_demo: {len(train)} training and {len(test)} validation images of "
          f"{size}×{images.shape[2]}; read in {time.time() - started:.0f} s", file=sys.stderr)

    net = DemoNet(*sizes)
    write_scenes(args.out, names["scene"])
    export(net, os.path.join(args.out, "demo-random.pt"), size, sizes[0])
    optimiser = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps_per_epoch = len(train) // args.batch_size
    total = steps_per_epoch * args.epochs
    missed = [c for c in checkpoints if c > total]
    if missed:
        fail(f"checkpoint steps {missed} lie beyond the {total} steps of training")
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=total)
    generator = torch.Generator().manual_seed(args.seed)
    log = {"command": sys.argv[1:], "torch": torch.__version__, "steps": total,
           "label_names": names, "history": []}
    step = 0
    for epoch in range(args.epochs):
        order = train[torch.randperm(len(train), generator=generator)]
        running = []
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            x = images[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(2)
            ls, lo, lt = losses(net(normalise(x)), scene[idx], objects[idx], textures[idx], sizes)
            loss = ls + lo + lt
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            running.append([ls.item(), lo.item(), lt.item()])
            if step in checkpoints:
                export(net, os.path.join(args.out, f"demo-step{step}.pt"), size, sizes[0])
        mean = np.mean(running, axis=0)
        record = {"epoch": epoch + 1, "step": step,
                  "loss": {"scene": round(float(mean[0]), 4), "object": round(float(mean[1]), 4),
                           "texture": round(float(mean[2]), 4)},
                  "val": evaluate(net, images[test], scene[test], objects[test], textures[test],
                                  sizes),
                  "seconds": round(time.time() - started)}
        log["history"].append(record)
        print(f"train_demo: {json.dumps(record)}", file=sys.stderr)
    export(net, os.path.join(args.out, "demo-trained.pt"), size, sizes[0])
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(log, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
