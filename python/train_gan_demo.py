#!/usr/bin/env python3
"""Train the GAN-dissection demo: a generator of the synthetic world and a segmenter for it.

GAN dissection (Bau et al., ICLR 2019) asks which units of a generator's layers track which
concepts of the images it draws; the concepts are read off the generated images by a
semantic segmenter. This script trains both on a synthetic dataset written by
``netdissect synth`` (64×64 images, label maps 32×32) and writes them as TorchScript:

``segmenter``: a small fully convolutional network (an encoder down to 8×8 and a
feature-pyramid decoder back to 32×32) that gives every pixel of the label-map grid one score
per class of four pixel categories, trained with one cross-entropy per category:

    <out>/segmenter.pt           forward(images (N, 3, H, W), normalised the torchvision way)
                                 -> class scores (N, K, H/2, W/2)
    <out>/segmenter-labels.csv   class,name,category: the K output channels in order; an
                                 empty name is its category's "none" class

A pixel's label in a category is the argmax among that category's channels; when the "none"
class wins, the pixel has no label of that category (``color`` has no none class). The
held-out evaluation (pixel accuracy per category, IoU per concept) goes to training.json.

``generator``: a DCGAN (transposed convolutions, batch normalisation, ReLU; a DCGAN
discriminator; non-saturating loss) with an exponential moving average of the generator's
weights, which is what is exported. Batch normalisation is computed from standing statistics
(the average over many batches of the final weights) and folded into the convolutions, so
the file holds no normalisation layer and a sample does not depend on its batch:

    <out>/generator.pt   forward(z (N, D)) -> {"layer1".."layer4": post-ReLU maps (4×4 ..
                         32×32), "image": (N, 3, 64, 64) in [-1, 1]}; the method
                         forward_from(layer, activations) runs on from a layer to the image;
                         extra files netdissect-intervention.json, netdissect-generator.json
    <out>/samples.png    64 samples (z from seed 0) in an 8×8 grid

After training it measures, with the segmenter, how much of each concept 500 generated
samples hold against the real held-out images (training.json).

    python python/train_gan_demo.py segmenter --data TRAIN --heldout HELDOUT --out models/gan
    python python/train_gan_demo.py generator --data TRAIN --heldout HELDOUT --out models/gan
    python python/train_gan_demo.py report models/gan     # the README's tables

Both run on the CPU, seeded, with deterministic algorithms and a fixed thread count: with the
same torch build on the same kind of CPU the same command writes the same bytes (the files
are written by ``export_torchvision.save``, without debug records).
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # torch.jit.script writes the convolutions' Final constants in the order of a set of
    # their names, which follows the string hash seed: fixed, so that the bytes are too.
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
              dict(os.environ, PYTHONHASHSEED="0"))

import argparse  # noqa: E402 - after the re-execution above
import copy  # noqa: E402
import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Dict, List  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import save  # noqa: E402
from train_demo import label_map  # noqa: E402 - a Broden label PNG as R + 256·G

INTERVENTION_FILE = "netdissect-intervention.json"
GENERATOR_FILE = "netdissect-generator.json"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# The segmenter's categories, in channel order, and whether each has a "none" class.
CATEGORIES = (("object", True), ("part", True), ("material", True), ("color", False))
IGNORE = 255  # target value of a pixel without a label in a category that has no none class
GEN_LAYERS = ("layer1", "layer2", "layer3", "layer4")
SAMPLES_SEED = 0     # z of samples.png
SHARES_SEED = 1      # z of the 500 samples whose concepts are measured
STANDING_SEED = 2    # z of the batches that give the standing batch-norm statistics
PRESENT = 0.01       # an image holds a concept when it covers at least this share of it


def fail(message):
    print(f"train_gan_demo: error: {message}", file=sys.stderr)
    sys.exit(1)


def say(message):
    print(f"train_gan_demo: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data


def read_csv(path):
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        fail(f"{path} does not exist: the data must be a Broden-format dataset (netdissect synth)")


def classes(data):
    """[(name, category)] of the segmenter's channels, from the dataset's c_<category>.csv:
    per category (CATEGORIES' order) its none class (name "") if it has one, then its labels
    in code order. Also the label numbers of each category, in the same order."""
    out, numbers = [], {}
    for category, has_none in CATEGORIES:
        rows = read_csv(os.path.join(data, f"c_{category}.csv"))
        if has_none:
            out.append(("", category))
        out.extend((r["name"], category) for r in rows)
        numbers[category] = [int(r["number"]) for r in rows]
    return out, numbers


def load(data, with_labels=True):
    """Images (uint8, N×H×W×3), pixel targets (uint8, N×categories×h×w: the index of the
    pixel's class among its category's channels; IGNORE where a category without a none class
    has no label), the val-split mask and the channel names.

    Where several label maps of a category cover a pixel (a door on a wall), the later map's
    label is the pixel's: the synthetic world lists the finer parts last."""
    rows = read_csv(os.path.join(data, "index.csv"))
    names, numbers = classes(data)
    luts = {}
    for category, has_none in CATEGORIES:
        top = max(numbers[category]) + 1
        lut = np.full(top, -1, np.int64)  # -1: a label of another category
        for i, n in enumerate(numbers[category]):
            lut[n] = i + (1 if has_none else 0)
        luts[category] = lut
    images, targets, val = [], [], []
    for i, row in enumerate(rows):
        image = np.asarray(Image.open(os.path.join(data, "images", row["image"])).convert("RGB"))
        images.append(image)
        val.append(row["split"] == "val")
        if not with_labels:
            continue
        h, w = int(row["sh"]), int(row["sw"])
        t = np.zeros((len(CATEGORIES), h, w), np.uint8)
        for c, (category, has_none) in enumerate(CATEGORIES):
            lut = luts[category]
            cell = np.full((h, w), 0 if has_none else IGNORE, np.int64)
            for item in filter(None, row[category].split(";")):
                m = label_map(os.path.join(data, "images", item))
                if m.shape != (h, w):
                    fail(f"{item}: label map of {m.shape}, the index says {h}×{w}")
                mapped = np.where(m < len(lut), lut[np.minimum(m, len(lut) - 1)], -1)
                # Unlabelled pixels (0) and labels of other categories leave the pixel as is.
                cell = np.where(mapped >= 0, mapped, cell)
            t[c] = cell
        targets.append(t)
        if (i + 1) % 2000 == 0:
            say(f"  read {i + 1}/{len(rows)} images of {data}")
    if len({im.shape for im in images}) != 1:
        fail(f"the images of {data} differ in size; use one size")
    images = torch.from_numpy(np.stack(images))
    targets = torch.from_numpy(np.stack(targets)) if with_labels else None
    return images, targets, torch.tensor(val), names


def normalise(batch):
    """uint8 N×H×W×3 -> the torchvision normalisation, N×3×H×W."""
    x = batch.permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def from_generated(image):
    """A generator's image in [-1, 1] -> the segmenter's input (pixel = (v+1)/2·255)."""
    x = (image.clamp(-1, 1) + 1) / 2
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def to_gan_range(batch):
    """uint8 N×H×W×3 -> N×3×H×W in [-1, 1]."""
    return batch.permute(0, 3, 1, 2).float() / 127.5 - 1.0


# ---------------------------------------------------------------- batch-norm folding


def folded(conv, bn):
    """``conv`` followed by ``bn`` (in eval mode) as one convolution with a bias."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    if isinstance(conv, nn.ConvTranspose2d):
        new = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                 conv.stride, conv.padding, conv.output_padding, conv.groups,
                                 True, conv.dilation)
        weight = conv.weight.detach() * scale.view(1, -1, 1, 1)
    else:
        new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                        conv.padding, conv.dilation, conv.groups, True)
        weight = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return new


def fold_all(net):
    """A copy of ``net`` in eval mode whose Sequential(conv, BatchNorm2d, ...) blocks are
    Sequential(folded conv, ...): the same function, no normalisation layer."""
    net = copy.deepcopy(net).eval()
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            items = list(module)
            out, i = [], 0
            while i < len(items):
                if (i + 1 < len(items) and isinstance(items[i], (nn.Conv2d, nn.ConvTranspose2d))
                        and isinstance(items[i + 1], nn.BatchNorm2d)):
                    out.append(folded(items[i], items[i + 1]))
                    i += 2
                else:
                    out.append(items[i])
                    i += 1
            for key in list(module._modules):
                del module._modules[key]
            for j, m in enumerate(out):
                module.add_module(str(j), m)
    # The archive records each parameter's requires_grad: the same for every path to here.
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# ---------------------------------------------------------------- segmenter


def cbr(cin, cout, stride=1, dilation=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU())


class Segmenter(nn.Module):
    """64×64 -> scores on the 32×32 grid of the label maps.

    Encoder: stem 3→24 (64×64), 24→48 stride 2 and 48→48 (32×32), 48→96 stride 2 and 96→96
    (16×16), 96→160 stride 2, 160→160 dilated 2 and 160→160 (8×8). Decoder (a feature
    pyramid): the 8×8 features, projected to 96 channels and upsampled bilinearly, are added
    to the 16×16 ones and convolved; the same to 48 channels at 32×32; a 1×1 convolution
    gives the class scores. Convolutions 3×3 with batch normalisation (folded on export)
    and ReLU.
    """

    def __init__(self, n_classes):
        super().__init__()
        self.stem = cbr(3, 24)
        self.enc1 = nn.Sequential(cbr(24, 48, 2), cbr(48, 48))
        self.enc2 = nn.Sequential(cbr(48, 96, 2), cbr(96, 96))
        self.enc3 = nn.Sequential(cbr(96, 160, 2), cbr(160, 160, 1, 2), cbr(160, 160))
        self.lat3 = nn.Conv2d(160, 96, 1)
        self.dec2 = cbr(96, 96)
        self.lat2 = nn.Conv2d(96, 48, 1)
        self.dec1 = cbr(48, 48)
        self.head = nn.Conv2d(48, n_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(self.stem(x))
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(e2 + F.interpolate(self.lat3(e3), size=e2.shape[-2:], mode="bilinear",
                                          align_corners=False))
        d1 = self.dec1(e1 + F.interpolate(self.lat2(d2), size=e1.shape[-2:], mode="bilinear",
                                          align_corners=False))
        return self.head(d1)


def groups_of(names):
    """{category: (first channel, count, has none class)} from [(name, category)]."""
    out = {}
    for i, (name, category) in enumerate(names):
        if category not in out:
            out[category] = [i, 0, name == ""]
        out[category][1] += 1
    return {k: tuple(v) for k, v in out.items()}


def seg_losses(scores, targets, groups):
    out = []
    for c, (category, _) in enumerate(CATEGORIES):
        first, count, _ = groups[category]
        out.append(F.cross_entropy(scores[:, first:first + count], targets[:, c].long(),
                                   ignore_index=IGNORE))
    return out


@torch.no_grad()
def segment(model, x, groups, batch=100):
    """Per category, the index of each pixel's class among the category's channels
    (N×h×w, int64), from the segmenter ``model`` on normalised images ``x``."""
    out = {category: [] for category, _ in CATEGORIES}
    for i in range(0, len(x), batch):
        scores = model(x[i:i + batch])
        for category, _ in CATEGORIES:
            first, count, _ = groups[category]
            out[category].append(scores[:, first:first + count].argmax(1))
    return {k: torch.cat(v) for k, v in out.items()}


def seg_evaluate(model, images, targets, names, batch=100):
    """Pixel accuracy per category (over the pixels that have a label or none) and IoU per
    class, on uint8 images and their targets."""
    groups = groups_of(names)
    pred = segment(model, normalise(images), groups, batch)
    result = {}
    for c, (category, has_none) in enumerate(CATEGORIES):
        first, count, _ = groups[category]
        t = targets[:, c].long()
        p = pred[category]
        valid = t != IGNORE
        acc = ((p == t) & valid).sum().item() / max(valid.sum().item(), 1)
        ious = {}
        for k in range(count):
            inter = ((p == k) & (t == k) & valid).sum().item()
            union = (((p == k) | (t == k)) & valid).sum().item()
            name = names[first + k][0] or "(none)"
            ious[name] = round(inter / union, 4) if union else None
        concepts = [v for k, v in ious.items() if k != "(none)" and v is not None]
        result[category] = {"pixel_accuracy": round(acc, 4),
                            "mean_iou": round(float(np.mean(concepts)), 4) if concepts else None,
                            "iou": ious}
    return result


def export_segmenter(net, path):
    scripted = torch.jit.script(fold_all(net))
    try:
        save(scripted, path)
    except OSError as e:
        fail(f"cannot write {path}: {e}")


def write_labels(path, names):
    with open(path, "w", newline="") as f:
        f.write("class,name,category\n")
        for i, (name, category) in enumerate(names):
            f.write(f"{i},{name},{category}\n")


def read_labels(path):
    rows = read_csv(path)
    if not rows or list(rows[0].keys()) != ["class", "name", "category"]:
        fail(f"{path}: the header must be class,name,category")
    if [int(r["class"]) for r in rows] != list(range(len(rows))):
        fail(f"{path}: the classes must be numbered 0..K-1 in order")
    return [(r["name"], r["category"]) for r in rows]


def train_segmenter(args):
    torch.manual_seed(args.seed)
    started = time.time()
    images, targets, val, names = load(args.data)
    held_images, held_targets, _, held_names = load(args.heldout)
    if held_names != names:
        fail(f"{args.heldout} has other labels than {args.data}")
    groups = groups_of(names)
    train = (~val).nonzero().squeeze(1)
    test = val.nonzero().squeeze(1)
    say(f"segmenter: {len(train)} training, {len(test)} validation and {len(held_images)} "
        f"held-out images of {images.shape[1]}×{images.shape[2]}, {len(names)} classes; "
        f"read in {time.time() - started:.0f} s")
    net = Segmenter(len(names))
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = len(train) // args.batch_size
    total = steps_per_epoch * args.epochs
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, args.lr, total_steps=total)
    generator = torch.Generator().manual_seed(args.seed)
    log = {"command": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "seed": args.seed,
           "data": {"train": args.data, "heldout": args.heldout, "train_images": len(train),
                    "val_images": len(test), "heldout_images": len(held_images)},
           "settings": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                        "optimiser": "AdamW (weight decay 1e-4), one-cycle learning rate",
                        "augmentation": "horizontal flips", "steps": total},
           "parameters": sum(p.numel() for p in net.parameters()), "history": []}
    for epoch in range(args.epochs):
        order = train[torch.randperm(len(train), generator=generator)]
        running = []
        net.train()
        for b in range(steps_per_epoch):
            idx = order[b * args.batch_size:(b + 1) * args.batch_size]
            x, t = images[idx], targets[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(2)
            t[flip] = t[flip].flip(3)
            parts = seg_losses(net(normalise(x)), t, groups)
            loss = sum(parts)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            running.append([p.item() for p in parts])
        net.eval()
        ev = seg_evaluate(net, images[test], targets[test], names)
        mean = np.mean(running, axis=0)
        record = {"epoch": epoch + 1,
                  "loss": {category: round(float(mean[c]), 4)
                           for c, (category, _) in enumerate(CATEGORIES)},
                  "val": {category: {"pixel_accuracy": ev[category]["pixel_accuracy"],
                                     "mean_iou": ev[category]["mean_iou"]} for category in ev},
                  "seconds": round(time.time() - started)}
        log["history"].append(record)
        say(f"segmenter: {json.dumps(record)}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "segmenter.pt")
    export_segmenter(net, path)
    write_labels(os.path.join(args.out, "segmenter-labels.csv"), names)
    exported = torch.jit.load(path).eval()
    with torch.no_grad():
        x = normalise(held_images[:50])
        gap = (exported(x) - net.eval()(x)).abs().max().item()
    log["export_max_difference"] = gap  # folding batch norm into the convolutions rounds
    log["heldout"] = seg_evaluate(exported, held_images, held_targets, names)
    log["heldout_truth_share"] = truth_shares(held_targets, names)
    log["seconds"] = round(time.time() - started)
    say(f"segmenter: held-out evaluation of the exported file: "
        + json.dumps({k: {"pixel_accuracy": v["pixel_accuracy"], "mean_iou": v["mean_iou"]}
                      for k, v in log["heldout"].items()}))
    update_log(args.out, "segmenter", log)


def truth_shares(targets, names):
    """Per category and class, the share of the pixels that the label maps give it."""
    groups = groups_of(names)
    out = {}
    for c, (category, _) in enumerate(CATEGORIES):
        first, count, _ = groups[category]
        t = targets[:, c].long()
        out[category] = {names[first + k][0] or "(none)": round((t == k).float().mean().item(), 5)
                         for k in range(count)}
    return out


def update_log(directory, key, record):
    path = os.path.join(directory, "training.json")
    log = {}
    if os.path.exists(path):
        with open(path) as f:
            log = json.load(f)
    log[key] = record
    with open(path, "w") as f:
        json.dump(log, f, indent=1, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------- generator


class Generator(nn.Module):
    """DCGAN generator: z (N, D) -> 4×4 -> 8×8 -> 16×16 -> 32×32 -> image 64×64.

    ``layer1`` is a 4×4 transposed convolution of z (8·ngf channels), ``layer2``..``layer4``
    4×4 stride-2 transposed convolutions halving the channels (4·ngf, 2·ngf, ngf), each with
    batch normalisation and ReLU; the image is a last 4×4 stride-2 transposed convolution to
    RGB and tanh. Every layer's output is post-ReLU. forward and forward_from compose the
    same blocks in the same order, so forward_from(layer, forward(z)[layer]) is the image.
    """

    def __init__(self, z_dim: int, ngf: int):
        super().__init__()
        self.z_dim = z_dim
        self.layer1 = nn.Sequential(nn.ConvTranspose2d(z_dim, 8 * ngf, 4, 1, 0, bias=False),
                                    nn.BatchNorm2d(8 * ngf), nn.ReLU())
        self.layer2 = nn.Sequential(nn.ConvTranspose2d(8 * ngf, 4 * ngf, 4, 2, 1, bias=False),
                                    nn.BatchNorm2d(4 * ngf), nn.ReLU())
        self.layer3 = nn.Sequential(nn.ConvTranspose2d(4 * ngf, 2 * ngf, 4, 2, 1, bias=False),
                                    nn.BatchNorm2d(2 * ngf), nn.ReLU())
        self.layer4 = nn.Sequential(nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1, bias=False),
                                    nn.BatchNorm2d(ngf), nn.ReLU())
        self.to_image = nn.Sequential(nn.ConvTranspose2d(ngf, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> Dict[str, torch.Tensor]:
        a1 = self.layer1(z.view(z.shape[0], z.shape[1], 1, 1))
        a2 = self.layer2(a1)
        a3 = self.layer3(a2)
        a4 = self.layer4(a3)
        return {"layer1": a1, "layer2": a2, "layer3": a3, "layer4": a4,
                "image": self.to_image(a4)}

    @torch.jit.export
    def forward_from(self, layer: str, activations: torch.Tensor) -> torch.Tensor:
        """The image (N, 3, 64, 64) from ``layer``'s post-ReLU activations, as given."""
        if layer not in ["layer1", "layer2", "layer3", "layer4"]:
            raise RuntimeError("forward_from: no layer " + layer
                               + "; it offers layer1, layer2, layer3, layer4")
        a = activations
        if layer == "layer1":
            a = self.layer2(a)
        if layer in ["layer1", "layer2"]:
            a = self.layer3(a)
        if layer in ["layer1", "layer2", "layer3"]:
            a = self.layer4(a)
        return self.to_image(a)


class Discriminator(nn.Module):
    """DCGAN discriminator: 4×4 stride-2 convolutions 3→ndf→2ndf→4ndf→8ndf (64 → 4),
    LeakyReLU 0.2, batch normalisation after all but the first, a 4×4 convolution to one logit."""

    def __init__(self, ndf):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ndf, 4 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * ndf), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * ndf, 8 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(8 * ndf), nn.LeakyReLU(0.2),
            nn.Conv2d(8 * ndf, 1, 4, 1, 0))

    def forward(self, x):
        return self.net(x).view(-1)


def dcgan_init(net):
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def standing_stats(g, batches, batch, seed):
    """Sets g's batch-norm running statistics to the exact average of the batch statistics
    over ``batches`` batches of seeded z (BigGAN's standing statistics), then eval mode."""
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    g.train()
    rng = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        g(torch.randn(batch, g.z_dim, generator=rng))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    g.eval()


def generator_json(z_dim):
    return json.dumps({"format": 1, "z_dim": z_dim, "image": "image", "range": [-1, 1],
                       "layers": list(GEN_LAYERS)}, sort_keys=True)


def intervention_json():
    return json.dumps({"format": 1, "method": "forward_from", "output": "image",
                       "layers": list(GEN_LAYERS)}, sort_keys=True)


def export_generator(g, path):
    scripted = torch.jit.script(fold_all(g))
    try:
        save(scripted, path, {INTERVENTION_FILE: intervention_json(),
                              GENERATOR_FILE: generator_json(g.z_dim)})
    except OSError as e:
        fail(f"cannot write {path}: {e}")


def sample_z(n, z_dim, seed):
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(model, z, batch=100):
    return torch.cat([model(z[i:i + batch])["image"] for i in range(0, len(z), batch)])


def grid_png(images, path, columns=8, gap=2):
    """Images (N, 3, H, W) in [-1, 1] as a PNG grid on white."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    n, h, w, _ = pixels.shape
    rows = (n + columns - 1) // columns
    canvas = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        canvas[gap + r * (h + gap):gap + r * (h + gap) + h,
               gap + c * (w + gap):gap + c * (w + gap) + w] = pixels[i]
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    with open(path, "wb") as f:
        f.write(buffer.getvalue())


def shares(pred, names):
    """Per category and class: the share of all pixels given the class, and the share of the
    images in which it covers at least PRESENT of the pixels."""
    groups = groups_of(names)
    out = {}
    for category, _ in CATEGORIES:
        first, count, _ = groups[category]
        p = pred[category]
        per_image = torch.stack([(p == k).float().mean(dim=(1, 2)) for k in range(count)], 1)
        out[category] = {
            names[first + k][0] or "(none)": {
                "pixels": round(per_image[:, k].mean().item(), 5),
                "images": round((per_image[:, k] >= PRESENT).float().mean().item(), 4)}
            for k in range(count)}
    return out


def generator_checks(path, z_dim):
    """Reads the exported file back: the extra files, forward_from against forward for every
    layer, and batch independence (each sample alone against the batch)."""
    extra = {INTERVENTION_FILE: "", GENERATOR_FILE: ""}
    g = torch.jit.load(path, _extra_files=extra).eval()
    z = sample_z(8, z_dim, 123)
    with torch.no_grad():
        out = g(z)
        from_layers = {}
        for layer in GEN_LAYERS:
            again = g.forward_from(layer, out[layer])
            from_layers[layer] = {"equal": bool(torch.equal(again, out["image"])),
                                  "max_difference": (again - out["image"]).abs().max().item()}
        alone = torch.cat([g(z[i:i + 1])["image"] for i in range(len(z))])
        batch_gap = (alone - out["image"]).abs().max().item()
    return {"extra_files": {k: json.loads(v) for k, v in extra.items()},
            "forward_from": from_layers, "batch_vs_alone_max_difference": batch_gap,
            "shapes": {k: list(v.shape[1:]) for k, v in out.items()}}


def train_generator(args):
    torch.manual_seed(args.seed)
    started = time.time()
    images, _, _, _ = load(args.data, with_labels=False)
    if args.plain:
        rows = read_csv(os.path.join(args.data, "index.csv"))
        keep = torch.tensor([r["texture"] in ("", "0") for r in rows])
        images = images[keep]
    if images.shape[1:3] != (64, 64):
        fail(f"the generator draws 64×64 images; {args.data} holds {images.shape[1]}×{images.shape[2]}")
    segmenter = torch.jit.load(args.segmenter).eval()
    names = read_labels(args.labels)
    held_images, held_targets, _, _ = load(args.heldout)
    say(f"generator: {len(images)} training images; read in {time.time() - started:.0f} s")
    if args.finish_from:
        snapshot = torch.load(args.finish_from, weights_only=False)
        ema = Generator(args.z_dim, args.ngf)
        ema.load_state_dict(snapshot["ema"])
        log = snapshot["log"]
        step = snapshot["step"]
        log["settings"]["steps"] = step
        command = log["command"]
        at = command.index("--steps")
        log["command"] = command[:at + 1] + [str(step)] + command[at + 2:]
        log["finished_from"] = (f"a snapshot at step {step} of a run of {args.steps} steps; the "
                                "learning rate is constant, so it is what the command trains")
        finish_generator(args, ema, log, started - snapshot["seconds"], segmenter, names,
                         held_images, held_targets)
        return
    g, d = Generator(args.z_dim, args.ngf), Discriminator(args.ndf)
    dcgan_init(g)
    dcgan_init(d)
    ema = copy.deepcopy(g)
    for p in ema.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=args.lr, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(args.seed)
    monitor_z = sample_z(200, args.z_dim, SHARES_SEED + 100)
    groups = groups_of(names)
    steps_per_epoch = len(images) // args.batch_size
    log = {"command": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "torch": torch.__version__,
           "threads": torch.get_num_threads(), "seed": args.seed,
           "data": {"train": args.data, "images": len(images), "heldout": args.heldout,
                    "heldout_images": len(held_images)},
           "settings": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                        "betas": [0.5, 0.999], "z_dim": args.z_dim, "ngf": args.ngf,
                        "ndf": args.ndf, "ema_decay": args.ema, "loss": "non-saturating (BCE)",
                        "real_label": args.real_label, "plain_backgrounds_only": args.plain,
                        "augmentation": "horizontal flips of the real images",
                        "standing_stats": "40 batches of 100"},
           "parameters": {"generator": sum(p.numel() for p in g.parameters()),
                          "discriminator": sum(p.numel() for p in d.parameters())},
           "history": []}
    say(f"generator: {log['parameters']}, {args.steps} steps of {args.batch_size}")
    running = []
    for step in range(1, args.steps + 1):
        if (step - 1) % steps_per_epoch == 0:
            order = torch.randperm(len(images), generator=rng)
        b = (step - 1) % steps_per_epoch
        real = images[order[b * args.batch_size:(b + 1) * args.batch_size]]
        flip = torch.rand(len(real), generator=rng) < 0.5
        real[flip] = real[flip].flip(2)
        real = to_gan_range(real)
        z = torch.randn(args.batch_size, args.z_dim, generator=rng)
        fake = g(z)["image"]
        # Discriminator: real against fake, each batch normalised by itself.
        d_real, d_fake = d(real), d(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, args.real_label))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        # Generator: the non-saturating loss on the same fakes.
        d_gen = d(fake)
        loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.ones_like(d_gen))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), g.parameters()):
                pe.mul_(decay).add_(p, alpha=1 - decay)
        running.append([loss_d.item(), loss_g.item(), torch.sigmoid(d_real).mean().item(),
                        torch.sigmoid(d_fake).mean().item()])
        if step % args.log_every == 0 or step == args.steps:
            mean = np.mean(running, axis=0)
            running = []
            record = {"step": step, "epoch": round(step / steps_per_epoch, 2),
                      "loss_d": round(float(mean[0]), 4), "loss_g": round(float(mean[1]), 4),
                      "d_real": round(float(mean[2]), 4), "d_fake": round(float(mean[3]), 4),
                      "seconds": round(time.time() - started)}
            log["history"].append(record)
            say(f"generator: {json.dumps(record)}")
            if args.preview:
                # Samples of the weights' average (batch statistics), and how many object
                # pixels the segmenter finds in them: printed, not logged, so that the log
                # does not depend on which segmenter was at hand.
                monitor = copy.deepcopy(ema).train()
                with torch.no_grad():
                    fake = monitor(monitor_z)["image"]
                    pred = segment(segmenter, from_generated(fake), groups)
                os.makedirs(args.preview, exist_ok=True)
                grid_png(fake[:64], os.path.join(args.preview, f"step{step:05d}.png"))
                say(f"generator: preview: {100 * (pred['object'] != 0).float().mean().item():.1f} %"
                    " object pixels in the samples")
                # The run up to here, to be finished with --finish-from: the learning rate is
                # constant, so it is what --steps <step> would have trained.
                torch.save({"step": step, "ema": ema.state_dict(), "log": copy.deepcopy(log),
                            "seconds": time.time() - started},
                           os.path.join(args.preview, f"step{step:05d}.ckpt"))
    finish_generator(args, ema, log, started, segmenter, names, held_images, held_targets)


def finish_generator(args, ema, log, started, segmenter, names, held_images, held_targets):
    """Standing statistics, export, checks, samples.png and the concept shares."""
    standing_stats(ema, 40, 100, STANDING_SEED)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "generator.pt")
    export_generator(ema, path)
    log["checks"] = generator_checks(path, args.z_dim)
    say(f"generator: checks {json.dumps(log['checks'])}")
    exported = torch.jit.load(path).eval()
    grid_png(generate(exported, sample_z(64, args.z_dim, SAMPLES_SEED)),
             os.path.join(args.out, "samples.png"))
    log["seconds"] = round(time.time() - started)
    log["evaluation"] = concept_shares(exported, segmenter, names, held_images, held_targets,
                                       args.z_dim)
    update_log(args.out, "generator", log)
    say(f"generator: wrote {path} and samples.png; trained in {log['seconds']} s")


def evaluate(args):
    """Measures the concept shares of OUT/generator.pt again with OUT/segmenter.pt (after a
    new segmenter) into training.json."""
    path = os.path.join(args.out, "training.json")
    with open(path) as f:
        log = json.load(f)
    if "generator" not in log:
        fail(f"{path} has no generator record to add the evaluation to")
    names = read_labels(args.labels)
    held_images, held_targets, _, _ = load(args.heldout)
    generator = torch.jit.load(os.path.join(args.out, "generator.pt")).eval()
    segmenter = torch.jit.load(args.segmenter).eval()
    log["generator"]["evaluation"] = concept_shares(
        generator, segmenter, names, held_images, held_targets, log["generator"]["settings"]["z_dim"])
    update_log(args.out, "generator", log["generator"])
    say(f"evaluate: measured the concepts of {args.out}/generator.pt again")


def concept_shares(generator, segmenter, names, held_images, held_targets, z_dim, n=500):
    """The segmenter's concepts on n generated samples (z from SHARES_SEED) against the
    held-out real images (as segmented, and as labelled)."""
    groups = groups_of(names)
    fake = generate(generator, sample_z(n, z_dim, SHARES_SEED))
    generated = shares(segment(segmenter, from_generated(fake), groups), names)
    real = shares(segment(segmenter, normalise(held_images[:n]), groups), names)
    truth = truth_shares(held_targets[:n], names)
    return {"samples": n, "z_seed": SHARES_SEED, "generated": generated, "real_segmented": real,
            "real_truth_pixels": truth}


# ---------------------------------------------------------------- report


def report(directory):
    """The README's tables, in Markdown, from training.json."""
    with open(os.path.join(directory, "training.json")) as f:
        log = json.load(f)
    seg = log.get("segmenter")
    if seg:
        print("| category | pixel accuracy | mean IoU (concepts) |\n|---|---|---|")
        for category, _ in CATEGORIES:
            v = seg["heldout"][category]
            print(f"| {category} | {v['pixel_accuracy']:.3f} | {v['mean_iou']:.3f} |")
        print()
    gen = log.get("generator")
    truth = seg["heldout_truth_share"] if seg else {}
    print("| category | concept | IoU (held-out) | pixels: generated | pixels: real, segmented"
          " | pixels: real, labels | images: generated | images: real, segmented |")
    print("|---|---|---|---|---|---|---|---|")
    for category, _ in CATEGORIES if seg else ():
        for name, iou in seg["heldout"][category]["iou"].items():
            row = [category, name, "–" if iou is None else f"{iou:.3f}"]
            if gen:
                ev = gen["evaluation"]
                gs, rs = ev["generated"][category][name], ev["real_segmented"][category][name]
                row += [f"{100 * gs['pixels']:.2f} %", f"{100 * rs['pixels']:.2f} %",
                        f"{100 * ev['real_truth_pixels'][category][name]:.2f} %",
                        f"{100 * gs['images']:.0f} %", f"{100 * rs['images']:.0f} %"]
            else:
                row += [f"–", "–", f"{100 * truth[category][name]:.2f} %", "–", "–"]
            print("| " + " | ".join(row) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("segmenter", help="train the segmenter")
    g = sub.add_parser("generator", help="train the generator (needs the segmenter)")
    for q in (s, g):
        q.add_argument("--data", required=True, help="training set (netdissect synth, 64×64)")
        q.add_argument("--heldout", required=True, help="held-out set for the evaluation")
        q.add_argument("--out", required=True, help="directory of the files (models/gan)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--threads", type=int, default=2, help="torch threads")
        q.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--steps", type=int, default=2000)
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--z-dim", type=int, default=128)
    g.add_argument("--ngf", type=int, default=48)
    g.add_argument("--ndf", type=int, default=48)
    g.add_argument("--ema", type=float, default=0.999, help="decay of the weights' average")
    g.add_argument("--log-every", type=int, default=100)
    g.add_argument("--real-label", type=float, default=1.0,
                   help="the discriminator's target for real images (one-sided label smoothing)")
    g.add_argument("--plain", action="store_true",
                   help="train on the images without a background texture (texture column "
                   "empty or 0)")
    g.add_argument("--preview", metavar="DIR",
                   help="write a grid of 64 samples of the weights' average to DIR at each log")
    g.add_argument("--finish-from", metavar="SNAPSHOT",
                   help="export a run's weights' average from a --preview snapshot (stepN.ckpt)")
    g.add_argument("--segmenter", help="default: OUT/segmenter.pt")
    g.add_argument("--labels", help="default: OUT/segmenter-labels.csv")
    e = sub.add_parser("evaluate", help="measure OUT/generator.pt's concepts again with "
                       "OUT/segmenter.pt")
    e.add_argument("--heldout", required=True, help="held-out set for the evaluation")
    e.add_argument("--out", required=True, help="directory of the files (models/gan)")
    e.add_argument("--threads", type=int, default=2, help="torch threads")
    r = sub.add_parser("report", help="print the README's tables from DIR/training.json")
    r.add_argument("dir")
    args = p.parse_args()
    if args.what == "report":
        report(args.dir)
        return
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    if args.what == "segmenter":
        train_segmenter(args)
        return
    args.segmenter = getattr(args, "segmenter", None) or os.path.join(args.out, "segmenter.pt")
    args.labels = getattr(args, "labels", None) or os.path.join(args.out, "segmenter-labels.csv")
    if args.what == "evaluate":
        evaluate(args)
    else:
        train_generator(args)


if __name__ == "__main__":
    main()
