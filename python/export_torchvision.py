#!/usr/bin/env python3
"""Export a torchvision architecture as a TorchScript file that nd-extract can dissect.

The exported module's forward takes an image batch (N, 3, H, W) and returns a dict from
layer name to activation tensor (N, C, h, w), for the layers you name (torchvision's graph
node names, e.g. ``layer4`` for ResNets, ``features.11`` for AlexNet's conv5 after ReLU).

Weights come only from a file you give (a state_dict, or a checkpoint holding one under
``state_dict``/``model``; a ``module.`` prefix left by DataParallel is stripped). Without a
file the model is randomly initialised from ``--seed``, which gives the same weights every
time on the CPU. Nothing is downloaded.

The same arguments, weights and virtualenv write the same bytes, wherever the file goes and
whatever PYTHONHASHSEED is, so a re-export keeps nd-extract's cached artifacts (their key
holds the model file's digest).

    python export_torchvision.py resnet18 --layers layer2,layer3,layer4 --out r18.pt
    python export_torchvision.py resnet18 --weights resnet18_places365.pth.tar \\
        --layers layer4 --out r18-places.pt
    python export_torchvision.py alexnet --list-nodes

``--list-nodes`` runs the model once on a blank image of ``--input-size`` and prints every
node with the shape it gives one image; nodes that are not (N, C, H, W) maps (a ViT block's
tokens, a pooled vector) are flagged, since nd-extract cannot dissect them.
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # torch.jit.script writes a module's Final constants in the iteration order of a set of
    # their names, which follows the string hash seed, random in each process: without a
    # fixed seed two exports of one model differ in their code files and serialization id.
    # Done before importing torch, which takes seconds.
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
              dict(os.environ, PYTHONHASHSEED="0"))

import argparse  # noqa: E402 - after the re-execution above
import io  # noqa: E402
import pickle  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names  # noqa: E402


def fail(message):
    print(f"export_torchvision: error: {message}", file=sys.stderr)
    sys.exit(1)


def save(scripted, path):
    """Writes the TorchScript archive to ``path`` atomically, its bytes independent of ``path``.

    ``torch.jit.save`` to a file names the archive's root folder after the file (every entry
    is ``<name>/...``); saved to a buffer the root is always ``archive``. torch already fixes
    the zip's timestamps and derives the serialization id from the entries.
    """
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".export-", suffix=".tmp")
    except OSError as e:
        fail(f"cannot write {path}: {e}")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's file is private; an ordinary file is not
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def load_state_dict(path):
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        fail(f"weights file {path} does not exist")
    except pickle.UnpicklingError as e:
        # torch.load(weights_only=True) refuses a whole pickled model (torch.save(model))
        # with a page of advice about trusting the file; what the user needs is a state_dict.
        found = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
        what = f"a pickled {found.group(1)} object" if found else "pickled Python objects"
        fail(f"weights file {path} holds {what}, not a state_dict: load it where its class is "
             "defined, save the weights alone with torch.save(model.state_dict(), \"state_dict.pth\") "
             "and pass that file")
    except Exception as e:  # noqa: BLE001 - report any unpickling problem as a user error
        fail(f"cannot read weights file {path}: {e}")
    state = checkpoint
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        fail(f"{path} holds no state_dict (a dict from parameter name to tensor)")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def infer_num_classes(state):
    """The output size of the last 2-D weight: the classifier of torchvision models."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return weights[-1].shape[0] if weights else None


def build_model(arch, weights=None, num_classes=None, seed=0):
    """The torchvision model, in eval mode, with the given or seeded random weights."""
    if arch not in torchvision.models.list_models(module=torchvision.models):
        fail(f"unknown architecture {arch!r}; torchvision has: "
             + ", ".join(torchvision.models.list_models(module=torchvision.models)))
    state = load_state_dict(weights) if weights else None
    if num_classes is None and state is not None:
        num_classes = infer_num_classes(state)
    kwargs = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if arch in ("googlenet", "inception_v3"):
        # Auxiliary heads only exist for training; user checkpoints may or may not have them.
        has_aux = state is not None and any(k.startswith("aux") or k.startswith("AuxLogits") for k in state)
        kwargs["aux_logits"] = has_aux
        kwargs["init_weights"] = True
    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, **kwargs)
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            fail(f"{weights} does not fit {arch}: missing {sorted(missing)[:8]}, "
                 f"unexpected {sorted(unexpected)[:8]}")
    return model.eval()


def is_map(value):
    """Whether a node's output is an (N, C, H, W) map, the only shape nd-extract dissects."""
    return isinstance(value, torch.Tensor) and value.dim() == 4


def describe(value):
    """A node's output for one image: `C × H × W` for a tensor, else its type."""
    if isinstance(value, torch.Tensor):
        return " × ".join(str(d) for d in value.shape[1:]) or "a scalar"
    return f"not a tensor ({type(value).__name__})"


NOT_A_MAP = "not (N, C, H, W): cannot be dissected"


def print_table(rows):
    """Name, shape and flag columns, aligned whatever the length of the names."""
    name_width = max((len(name) for name, _, _ in rows), default=0)
    shape_width = max((len(shape) for _, shape, _ in rows), default=0)
    for name, shape, flag in rows:
        line = f"  {name:<{name_width}}  {shape:<{shape_width}}"
        print(f"{line}  {flag}" if flag else line.rstrip())


def list_nodes(model, input_size):
    """Every graph node with its output shape for one blank image of input_size."""
    _, nodes = get_graph_node_names(model)
    everything = create_feature_extractor(model, return_nodes={n: n for n in nodes}).eval()
    with torch.no_grad():
        outputs = everything(torch.zeros(1, 3, input_size, input_size))
    print(f"nodes of the model, for one {input_size}×{input_size} image:")
    print_table([(n, describe(outputs[n]), "" if is_map(outputs[n]) else NOT_A_MAP) for n in nodes])


def extractor(model, layers):
    _, nodes = get_graph_node_names(model)
    # A module name (``layer4``) stands for the output of the module's last node.
    unknown = [layer for layer in layers
               if layer not in nodes and not any(n.startswith(layer + ".") for n in nodes)]
    if unknown:
        fail(f"no node named {', '.join(unknown)}; nodes are: {', '.join(nodes)}")
    return create_feature_extractor(model, return_nodes={layer: layer for layer in layers}).eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", help="a torchvision model name (resnet18, alexnet, vgg16, densenet161, googlenet, ...)")
    parser.add_argument("--layers", help="comma-separated graph node names to return")
    parser.add_argument("--out", help="the TorchScript file to write")
    parser.add_argument("--weights", help="a state_dict or checkpoint file (default: seeded random weights)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: from the weights, else 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--input-size", type=int, default=224,
                        help="image side used to check the export and to list the nodes' shapes")
    parser.add_argument("--list-nodes", action="store_true",
                        help="print the node names with their shapes and exit "
                             "(a module name such as layer4 works too)")
    args = parser.parse_args()

    model = build_model(args.arch, args.weights, args.num_classes, args.seed)
    if args.list_nodes:
        list_nodes(model, args.input_size)
        return
    if not args.layers or not args.out:
        fail("--layers and --out are required (use --list-nodes to see the layer names)")
    layers = [layer for layer in args.layers.split(",") if layer]
    features = extractor(model, layers)
    example = torch.randn(2, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = features(example)
        try:
            scripted = torch.jit.script(features)
        except Exception:  # noqa: BLE001 - some graphs only trace
            scripted = torch.jit.trace(features, example, strict=False)
        got = scripted(example)
        for layer in layers:
            if not torch.allclose(expected[layer], got[layer], rtol=1e-4, atol=1e-5):
                fail(f"the TorchScript export of {layer} does not reproduce the model")
    save(scripted, args.out)
    print(f"{args.out} returns, for one {args.input_size}×{args.input_size} image:")
    print_table([(layer, describe(expected[layer]), "" if is_map(expected[layer]) else NOT_A_MAP)
                 for layer in layers])
    flat = [layer for layer in layers if not is_map(expected[layer])]
    if flat:
        verb = "is" if len(flat) == 1 else "are"
        print(f"export_torchvision: warning: {', '.join(flat)} {verb} not (N, C, H, W); nd-extract "
              f"and netdissect run will refuse {'it' if len(flat) == 1 else 'them'} (choose a convolutional layer)", file=sys.stderr)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
