#!/usr/bin/env python3
"""Checks ``export_torchvision.py --logits``: the logits among forward's outputs and the
``forward_from(layer, activations)`` method that continues the network from a layer.

For resnet18, vgg11 and alexnet, exported into a temporary directory and read back with
torch.jit.load, and for every exported layer:

1. ``forward(x)``'s layers are the outputs of the modules (not overwritten by an in-place
   operation after them) and its ``logits`` are the torchvision model's output;
2. ``forward_from(layer, forward(x)[layer])`` is the logits again;
3. ``forward_from`` with one unit's channel zeroed is the torchvision model run with a
   forward hook that zeroes that channel of the layer's output: the method really is the
   rest of the network, taking the activations it is given as the layer's value.

Then, on resnet18: the extra file ``netdissect-intervention.json``, the ImageNet class names
written beside a 1000-class model, an unknown layer refused with the layers named, two
exports (other paths and hash seeds) giving the same bytes, and an export without
``--logits`` returning the layers alone; a layer inside a residual block refused with the
node it would need; ``--class-names`` with the wrong number of names refused.

Models have seeded random weights and small inputs; nothing is downloaded. Exits non-zero
on the first failure.

    .venv/bin/python tests/python/test_intervention.py
"""

import contextlib
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

import export_torchvision  # noqa: E402
import fieldmap  # noqa: E402

STARTED = time.time()
SIZE = 64
SEED = 3


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


# What is exported: (file stem, architecture, layers, further arguments).
EXPORTS = [
    ("resnet18", "resnet18", ["layer2", "layer3", "layer4"], ["--logits"]),
    # features.0 is a convolution whose output AlexNet's in-place ReLU then overwrites.
    ("alexnet", "alexnet", ["features.0", "features.4", "features.11"],
     ["--logits", "scores", "--num-classes", "10", "--class-names", "CLASSES"]),
    ("vgg11", "vgg11", ["features.1", "features.9", "features.19"],
     ["--logits", "--num-classes", "10"]),
    ("resnet18-again", "resnet18", ["layer2", "layer3", "layer4"], ["--logits"]),
    ("resnet18-plain", "resnet18", ["layer2", "layer3", "layer4"], []),
]


def start(tmp, stem, arch, layers, arguments):
    """The export as a running process; the second resnet18 goes to another folder and runs
    with another hash seed, to show that neither changes the bytes."""
    folder = os.path.join(tmp, "again") if stem.endswith("-again") else tmp
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, stem.replace("-again", "") + ".pt")
    arguments = [os.path.join(tmp, "classes.txt") if a == "CLASSES" else a for a in arguments]
    command = [sys.executable, os.path.join(ROOT, "python", "export_torchvision.py"), arch,
               "--layers", ",".join(layers), "--seed", str(SEED), "--input-size", str(SIZE),
               "--out", out, *arguments]
    env = dict(os.environ, PYTHONHASHSEED="5" if stem.endswith("-again") else "0")
    return out, subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(stem, process):
    stdout, stderr = process.communicate()
    check(process.returncode == 0, f"the export of {stem} failed:\n{stdout}{stderr}")
    return stdout


def close(got, want):
    """Equal up to float rounding, relative to the magnitude of the logits."""
    scale = max(want.abs().max().item(), 1e-3)
    return got.shape == want.shape and (got - want).abs().max().item() <= 1e-5 * scale


def capturing(captured, layer):
    def hook(module, inputs, output):
        captured[layer] = output.clone()  # before an in-place operation after the module
    return hook


def zeroing(unit):
    def hook(module, inputs, output):
        output = output.clone()
        output[:, unit] = 0
        return output
    return hook


def check_model(stem, arch, layers, path, logits, num_classes):
    """Checks 1 to 3 above; returns the loaded module and its outputs on the example batch."""
    model = export_torchvision.build_model(arch, num_classes=num_classes, seed=SEED)
    loaded = torch.jit.load(path)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    captured = {}
    handles = [model.get_submodule(layer).register_forward_hook(capturing(captured, layer)) for layer in layers]
    with torch.no_grad():
        reference = model(x)
        for handle in handles:
            handle.remove()
        outputs = loaded(x)
        check(list(outputs) == layers + [logits], f"{stem}: forward returns {list(outputs)}")
        for layer in layers:
            check(close(outputs[layer], captured[layer]),
                  f"{stem}: forward's {layer} is not the output of the module {layer} (overwritten in place?)")
        check(close(outputs[logits], reference),
              f"{stem}: forward's {logits} differ from the model's output by "
              f"{(outputs[logits] - reference).abs().max().item():.3g}")
        for layer in layers:
            again = loaded.forward_from(layer, outputs[layer])
            check(close(again, reference), f"{stem}: forward_from({layer!r}, forward(x)[{layer!r}]) "
                  f"differs from the logits by {(again - reference).abs().max().item():.3g}")
            activations = outputs[layer].clone()
            unit = int(activations.abs().sum(dim=(0, 2, 3)).argmax())
            activations[:, unit] = 0
            ablated = loaded.forward_from(layer, activations)
            handle = model.get_submodule(layer).register_forward_hook(zeroing(unit))
            try:
                want = model(x)
            finally:
                handle.remove()
            check(not close(want, reference), f"{stem}: zeroing unit {unit} of {layer} changes nothing, "
                  "so the check below would prove nothing")
            check(close(ablated, want), f"{stem}: forward_from({layer!r}) with unit {unit} zeroed differs "
                  f"by {(ablated - want).abs().max().item():.3g} from the model with that unit zeroed by a hook")
            check(torch.equal(outputs[layer], loaded(x)[layer]) and not torch.equal(outputs[layer], activations),
                  f"{stem}: forward_from changed the tensor it was given")
    print(f"ok  {stem}: forward's layers and {logits} are the model's; forward_from each of "
          f"{', '.join(layers)} gives them again, and with a unit zeroed gives the output of the model "
          "with that unit zeroed by a hook")
    return loaded, outputs


def check_extra_file(path, logits, layers):
    extra = {export_torchvision.INTERVENTION_FILE: ""}
    torch.jit.load(path, _extra_files=extra)
    text = extra[export_torchvision.INTERVENTION_FILE].decode()
    expected = {"format": 1, "method": "forward_from", "output": logits, "layers": layers}
    check(json.loads(text) == expected, f"{path}: netdissect-intervention.json holds {text}")
    check(text == json.dumps(expected, sort_keys=True), f"{path}: the extra file is not sorted JSON: {text}")
    with zipfile.ZipFile(path) as z:
        entries = [n for n in z.namelist() if n.endswith("/extra/netdissect-intervention.json")]
        check(len(entries) == 1 and z.read(entries[0]).decode() == text, f"{path}: zip entries {entries}")
    print(f"ok  {os.path.basename(path)} holds {entries[0]}: {text}")


def check_classes(path, expected):
    classes = path[: -len(".pt")] + ".classes.txt"
    if expected is None:
        check(not os.path.exists(classes), f"{classes} was written, though no names were known")
        return
    with open(classes, "rb") as f:
        text = f.read().decode("utf-8")
    check(text == "".join(f"{name}\n" for name in expected),
          f"{classes} holds {len(text.splitlines())} lines, not the {len(expected)} names expected")
    print(f"ok  {os.path.basename(classes)} names the {len(expected)} classes ({expected[0]}, ...)")


def check_unknown_layer(loaded, outputs):
    try:
        loaded.forward_from("layer9", outputs["layer4"])
    except torch.jit.Error as e:  # TorchScript's RuntimeError, as Python sees it
        message = str(e).strip().splitlines()[-1]
        check("RuntimeError" in message and "layer9" in message and "layer2, layer3, layer4" in message,
              f"forward_from of an unknown layer says: {message}")
        print(f"ok  an unknown layer is refused: {message}")
        return
    check(False, "forward_from of an unknown layer returned")


def check_refusals():
    model = export_torchvision.build_model("resnet18", num_classes=10, seed=SEED)
    try:
        export_torchvision.tail(model, "layer3.0.conv2")
        check(False, "a layer inside a residual block was offered to forward_from")
    except ValueError as e:
        check("layer3.0.conv2" in str(e) and "layer3.0.downsample.1" in str(e),
              f"the refusal of layer3.0.conv2 does not name it and the skip connection: {e}")
        print(f"ok  refused: {e}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("cat\ndog\n")
        f.flush()
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            try:
                export_torchvision.read_class_names(f.name, 10)
                check(False, "two class names for ten outputs were accepted")
            except SystemExit as e:
                check(e.code != 0, "a wrong number of class names exits with status 0")
        message = stderr.getvalue().strip()
        check(f.name in message and " 2 " in message and " 10 " in message,
              f"the refusal of two class names for ten outputs does not name the file and both counts: {message}")
        print(f"ok  refused: {message}")


def main():
    torch.set_num_threads(1)  # two exports run beside this process
    imagenet = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    mine = [f"class {i} ✓" for i in range(10)]
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "classes.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{name}\n" for name in mine))
        # Two exports at a time while this process checks the ones already written.
        pending = list(EXPORTS)
        running = {}
        for _ in range(2):
            stem, arch, layers, arguments = pending.pop(0)
            running[stem] = start(tmp, stem, arch, layers, arguments)
        paths, printed = {}, {}
        for stem, arch, layers, arguments in EXPORTS:
            path, process = running.pop(stem)
            printed[stem] = finish(stem, process)
            paths[stem] = path
            if pending:
                following = pending.pop(0)
                running[following[0]] = start(tmp, *following)
            if not arguments:
                continue
            logits = "scores" if "scores" in arguments else "logits"
            num_classes = 10 if "--num-classes" in arguments else None
            if stem.endswith("-again"):
                continue
            check_model(stem, arch, layers, path, logits, num_classes)
            check_extra_file(path, logits, layers)

        check("assuming the 1000 outputs are the ImageNet-1k classes" in printed["resnet18"],
              f"the resnet18 export does not say that it assumed ImageNet classes:\n{printed['resnet18']}")
        check_classes(paths["resnet18"], imagenet)
        check_classes(paths["alexnet"], mine)
        check("the classes will be numbered" in printed["vgg11"],
              f"the vgg11 export does not say that its classes will be numbered:\n{printed['vgg11']}")
        check_classes(paths["vgg11"], None)

        loaded = torch.jit.load(paths["resnet18"])
        x = torch.randn(1, 3, SIZE, SIZE)
        with torch.no_grad():
            check_unknown_layer(loaded, loaded(x))

        with open(paths["resnet18"], "rb") as f:
            first = f.read()
        with open(paths["resnet18-again"], "rb") as f:
            second = f.read()
        check(first == second, f"two exports with --logits differ: {len(first)} and {len(second)} bytes")
        print(f"ok  two exports with --logits (other paths and hash seeds) give the same {len(first)} bytes")

        plain = torch.jit.load(paths["resnet18-plain"], _extra_files={export_torchvision.INTERVENTION_FILE: "",
                                                                     fieldmap.EXTRA_FILE: ""})
        with torch.no_grad():
            keys = list(plain(x))
        check(keys == ["layer2", "layer3", "layer4"], f"without --logits forward returns {keys}")
        check(not plain._c._has_method("forward_from"), "without --logits the module has forward_from")
        with zipfile.ZipFile(paths["resnet18-plain"]) as z:
            extras = sorted(n.split("/extra/")[1] for n in z.namelist() if "/extra/" in n)
        check(extras == [fieldmap.EXTRA_FILE], f"without --logits the extra files are {extras}")
        check_classes(paths["resnet18-plain"], None)
        print("ok  without --logits forward returns the layers alone, with no forward_from and no "
              "intervention file")
    check_refusals()
    print(f"test_intervention: all checks passed in {time.time() - STARTED:.0f} s")


if __name__ == "__main__":
    main()
