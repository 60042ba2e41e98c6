#!/usr/bin/env python3
"""Export a torchvision architecture as a TorchScript file that nd-extract can dissect.

The exported module's forward takes an image batch (N, 3, H, W) and returns a dict from
layer name to activation tensor (N, C, h, w), for the layers you name (torchvision's graph
node names, e.g. ``layer4`` for ResNets, ``features.11`` for AlexNet's conv5 after ReLU).

Weights come only from a file you give (a state_dict, or a checkpoint holding one under
``state_dict``/``model``; a ``module.`` prefix left by DataParallel is stripped). Without a
file the model is randomly initialised from ``--seed``, which gives the same weights every
time on the CPU. Nothing is downloaded.

The same arguments, weights and torch build write the same bytes, wherever the file goes,
wherever the repository and the virtualenv lie and whatever PYTHONHASHSEED is, so a
re-export keeps nd-extract's cached artifacts (their key holds the model file's digest).

    python export_torchvision.py resnet18 --layers layer2,layer3,layer4 --out r18.pt
    python export_torchvision.py resnet18 --weights resnet18_places365.pth.tar \\
        --layers layer4 --out r18-places.pt
    python export_torchvision.py alexnet --list-nodes

The file also holds, as the TorchScript extra file ``netdissect-fields.json`` (the entry
``<root>/extra/netdissect-fields.json`` of the zip), the receptive-field geometry of each
exported layer, composed from the model's convolutions and poolings as the original
NetDissect does (``fieldmap.py``): per axis, in (y, x) order, ``offset`` (the image
coordinate of the first pixel of cell 0's field), ``size`` and ``stride``, for the example
size ``--input-size``. ``receptive-field`` upsampling reads it. The table printed after the
export shows it per layer as ``offset + stride·j, size`` (once when both axes agree). A layer
whose geometry cannot be computed (after an upsampling, a transposed convolution, a reshape
that mixes positions) is left out of the file with a warning that names the op; the export
still succeeds, and the pipeline file then has to give that layer's ``fields``.

With ``--logits [NAME]`` forward's dict also holds the classifier's output (N, classes)
under NAME (default ``logits``), and the module gains the TorchScript method
``forward_from(layer, activations)``, for every exported layer: it runs the rest of the
network from the layer's activations (N, C, h, w) to the logits, without the image, taking
the activations it is given as the layer's value (zero a unit's channel and it returns the
logits of the network with that unit ablated); for a layer it does not offer it raises a
RuntimeError that lists the layers it does. The rest is cut out of the model's torch.fx
graph: the layer's node becomes an input and what the output does not need is dropped. A
layer that the rest reaches around (a node inside a ResNet block, whose skip connection
carries the block's input past it) is refused, naming the node the rest would need. The
extra file ``netdissect-intervention.json`` then says which method, which forward output it
recomputes and which layers it takes:
``{"format": 1, "layers": [...], "method": "forward_from", "output": "logits"}``.

The class names go beside the model as ``<out without .pt>.classes.txt``, one a line: those
of ``--class-names FILE`` (as many lines as the classifier has outputs); without it, for
1000 outputs, the ImageNet-1k names that torchvision carries (with a note that they were
assumed); otherwise no file, and the classes will be numbered. Without ``--logits`` the
export is what it was before the option existed, byte for byte.

    python export_torchvision.py resnet18 --layers layer3,layer4 --logits --out r18.pt

``--list-nodes`` runs the model once on a blank image of ``--input-size`` and prints every
node with the shape it gives one image and its field geometry; nodes that are not
(N, C, H, W) maps (a ViT block's tokens, a pooled vector) are flagged instead, since
nd-extract cannot dissect them.
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
import json  # noqa: E402
import pickle  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402

from typing import Dict, Final, List  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import fx, nn  # noqa: E402
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names  # noqa: E402

import fieldmap  # noqa: E402 - beside this file


def fail(message):
    print(f"export_torchvision: error: {message}", file=sys.stderr)
    sys.exit(1)


# Records that torch's archive writer adds itself at the end of every archive.
_WRITER_RECORDS = ("version", ".data/version", "byteorder", ".data/serialization_id")


def archive(scripted, extra_files=None):
    """The bytes of the TorchScript archive of ``scripted``, with ``extra_files`` (name to text).

    Saved to a buffer, the archive's root folder is always ``archive`` (saved to a file it
    is named after the file). Its ``*.debug_pkl`` records are left out: they map the code to
    the Python source it came from by absolute path (the repository's, the virtualenv's),
    so they made the bytes depend on where those lie; loading does not need them. torch
    fixes the zip's timestamps and derives the serialization id from the records.
    """
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer, _extra_files=extra_files or {})
    raw = buffer.getvalue()
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        names = [n.split("/", 1)[1] for n in z.namelist()]
        version = int(z.read(z.namelist()[0].split("/", 1)[0] + "/version"))
    reader = torch._C.PyTorchFileReader(io.BytesIO(raw))
    out = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(out)
    for name in names:
        if name.endswith(".debug_pkl") or name in _WRITER_RECORDS:
            continue
        data = reader.get_record(name)
        writer.write_record(name, data, len(data))
    writer.set_min_version(version)
    writer.write_end_of_file()
    return out.getvalue()


def save(scripted, path, extra_files=None):
    """Writes ``archive(scripted, extra_files)`` to ``path`` atomically; raises OSError.

    The bytes do not depend on ``path``.
    """
    write_atomically(path, archive(scripted, extra_files))


def write_atomically(path, data):
    """Writes the bytes ``data`` to ``path`` through a temporary file beside it; raises OSError."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".export-", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's file is private; an ordinary file is not
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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


FIELD_HEADER = "field (offset + stride·j, size)"


def print_table(rows):
    """Columns aligned whatever the length of the names; the last may be empty."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    for row in rows:
        line = "  " + "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths))
        print(f"{line}  {row[-1]}" if row[-1] else line.rstrip())


def field_cell(value, field):
    """The last column: a map's field geometry, or why the node is not dissected."""
    if not is_map(value):
        return NOT_A_MAP
    if isinstance(field, fieldmap.Field):
        return field.describe()
    return f"field unknown: {field.reason}"


def list_nodes(model, input_size):
    """Every graph node with its output shape and field for one blank image of input_size."""
    _, nodes = get_graph_node_names(model)
    everything = create_feature_extractor(model, return_nodes={n: n for n in nodes}).eval()
    with torch.no_grad():
        outputs = everything(torch.zeros(1, 3, input_size, input_size))
    fields = fieldmap.node_fields(model, nodes, input_size, strict=False)
    print(f"nodes of the model, for one {input_size}×{input_size} image:")
    print_table([("node", "shape", FIELD_HEADER)]
                + [(n, describe(outputs[n]), field_cell(outputs[n], fields[n])) for n in nodes])


INTERVENTION_FILE = "netdissect-intervention.json"
INTERVENTION_METHOD = "forward_from"


def intervention_text(output, layers):
    """The text of ``netdissect-intervention.json``: the method that continues the forward
    pass from a layer, the forward output it recomputes and the layers it takes, in order."""
    document = {"format": 1, "method": INTERVENTION_METHOD, "output": output, "layers": list(layers)}
    return json.dumps(document, sort_keys=True)


class Intervenable(nn.Module):
    """What ``--logits`` exports: ``forward`` is ``features`` (a dict of the layers and the
    logits), and ``forward_from(layer, activations)`` runs the rest of the network from the
    layer's activations to the logits.

    ``tails`` are in the order of ``layers``: tail i is the network after layer i.
    """

    layers: Final[List[str]]

    def __init__(self, features, tails, layers):
        super().__init__()
        self.features = features
        self.tails = nn.ModuleList(tails)
        self.layers = list(layers)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.features(x)

    @torch.jit.export
    def forward_from(self, layer: str, activations: torch.Tensor) -> torch.Tensor:
        # TorchScript unrolls a loop over a ModuleList, so i is a constant in each copy.
        for i, tail in enumerate(self.tails):
            if self.layers[i] == layer:
                return tail(activations)
        raise RuntimeError(f"forward_from: the model offers no layer {layer}; it offers "
                           + ", ".join(self.layers))


def _lineage(start):
    """``start`` and every node computed from it."""
    seen, todo = {start}, [start]
    while todo:
        for user in todo.pop().users:
            if user not in seen:
                seen.add(user)
                todo.append(user)
    return seen


def tail(model, layer):
    """The rest of ``model`` after the graph node ``layer``: a ``fx.GraphModule`` from the
    layer's activations to the model's output.

    The whole model is traced with torchvision's tracer (so ``layer`` is chosen as
    ``create_feature_extractor`` chooses it); the layer's node is replaced by an input and
    what the output does not need is dropped. A layer that the rest still reaches around
    (a connection from before it to after it, as inside a ResNet block) is refused with
    ValueError, naming the node the rest would need. The input is cloned first, so that
    an in-place operation right after the layer cannot change the caller's tensor.
    """
    root, graph, names = fieldmap.trace(model)
    module = fx.GraphModule(root, graph, "Tail")  # a purity check in dead code elimination needs the owner
    node = fieldmap.choose_nodes(graph, names, [layer])[layer]
    (image,) = [n for n in graph.nodes if n.op == "placeholder"]
    with graph.inserting_after(image):
        activations = graph.placeholder("activations")
    with graph.inserting_after(activations):
        copy = graph.call_method("clone", (activations,))
    node.replace_all_uses_with(copy)
    graph.eliminate_dead_code()
    if image.users:
        after = _lineage(activations)
        before = [n for user in after for n in user.all_input_nodes if n in _lineage(image) and n not in after]
        needed = sorted({names.get(n, n.name) for n in before})
        raise ValueError(f"the network after {layer} also needs {', '.join(needed)}, computed from the image "
                         f"before {layer} (a connection around {layer}, as inside a residual block): choose "
                         "a layer that everything after it passes through, such as a block's output")
    graph.erase_node(image)
    graph.lint()
    module.delete_all_unused_submodules()
    module.recompile()
    return module.eval()


def logits_query(model, layers):
    """The qualified name of the graph node that gives ``model``'s output, the classifier's
    logits; raises ValueError when the output is not one tensor node or is one of ``layers``."""
    _, graph, names = fieldmap.trace(model)
    (output,) = [n for n in graph.nodes if n.op == "output"]
    result = output.args[0]
    if not isinstance(result, fx.Node) or names.get(result) is None:
        raise ValueError(f"the model's output is a {type(result).__name__}, not one tensor (the logits)")
    same = [layer for layer, node in fieldmap.choose_nodes(graph, names, layers).items() if node is result]
    if same:
        raise ValueError(f"layer {same[0]} is the model's output itself, the logits: choose an earlier layer")
    return names[result]


def read_class_names(path, n_classes):
    """The lines of ``path``, one class name each; their number must be ``n_classes``."""
    try:
        with open(path, encoding="utf-8") as f:
            names = f.read().splitlines()
    except OSError as e:
        fail(f"cannot read the class names {path}: {e}")
    if len(names) != n_classes:
        fail(f"{path} names {len(names)} classes, but the classifier has {n_classes} outputs")
    return names


def class_names(path, n_classes):
    """The class names to write beside the model, or None (with a note saying why)."""
    if path:
        return read_class_names(path, n_classes)
    if n_classes == 1000:
        print("export_torchvision: note: assuming the 1000 outputs are the ImageNet-1k classes "
              "(their names as torchvision lists them); give --class-names otherwise")
        # The weights enums carry the names offline; the weights are not downloaded.
        return list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    print(f"export_torchvision: note: no class names for the {n_classes} outputs "
          "(give --class-names): the classes will be numbered")
    return None


def classes_path(out):
    """``<out without .pt>.classes.txt``."""
    stem = out[: -len(".pt")] if out.endswith(".pt") else out
    return stem + ".classes.txt"


def to_torchscript(module, example):
    """``module`` scripted, or traced on ``example`` where some graphs only trace."""
    try:
        return torch.jit.script(module)
    except Exception:  # noqa: BLE001 - some graphs only trace
        return torch.jit.trace(module, example, strict=False)


def extractor(model, layers, logits=None):
    """The layers' feature extractor; with ``logits``, a pair (query, name) where the query
    names the graph node of the model's output (``logits_query``), it returns that node's
    value under that name too."""
    _, nodes = get_graph_node_names(model)
    # A module name (``layer4``) stands for the output of the module's last node.
    unknown = [layer for layer in layers
               if layer not in nodes and not any(n.startswith(layer + ".") for n in nodes)]
    if unknown:
        fail(f"no node named {', '.join(unknown)}; nodes are: {', '.join(nodes)}")
    return_nodes = {layer: layer for layer in layers}
    if logits is None:
        return create_feature_extractor(model, return_nodes=return_nodes).eval()
    return_nodes[logits[0]] = logits[1]
    features = create_feature_extractor(model, return_nodes=return_nodes).eval()
    # Running on to the logits, the graph now also holds what follows each layer, such as
    # AlexNet's in-place ReLU after a convolution, which would overwrite the convolution's
    # output before forward returns it: forward returns a copy of each layer instead.
    for graph in (features.train_graph, features.eval_graph):
        (output,) = [n for n in graph.nodes if n.op == "output"]
        returned = dict(output.args[0])
        for layer in layers:
            with graph.inserting_after(returned[layer]):
                returned[layer] = graph.call_method("clone", (returned[layer],))
        output.args = (returned,)
        graph.lint()
    features.recompile()
    return features


def close(expected, got):
    return torch.allclose(expected, got, rtol=1e-4, atol=1e-5)


def intervenable(model, scripted, layers, logits, expected):
    """``scripted``, the TorchScript of the layers and the logits, with ``forward_from`` for
    every layer, checked against ``expected``: the outputs of the model's feature extractor
    on an example batch."""
    tails = []
    for layer in layers:
        try:
            rest = tail(model, layer)
        except ValueError as e:
            fail(f"cannot offer {layer} to {INTERVENTION_METHOD}: {e}")
        with warnings.catch_warnings():
            # Scripting any fx.GraphModule warns about annotations in torch's own GraphModule
            # constructor, which TorchScript never compiles: nothing the user can act on.
            warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support instance-level")
            tails.append(to_torchscript(rest, expected[layer]))
    module = torch.jit.script(Intervenable(scripted, tails, layers))
    for layer in layers:
        if not close(expected[logits], module.forward_from(layer, expected[layer])):
            fail(f"the TorchScript export's {INTERVENTION_METHOD}({layer!r}, ...) does not reproduce "
                 "the model's logits")
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", help="a torchvision model name (resnet18, alexnet, vgg16, densenet161, googlenet, ...)")
    parser.add_argument("--layers", help="comma-separated graph node names to return")
    parser.add_argument("--out", help="the TorchScript file to write")
    parser.add_argument("--weights", help="a state_dict or checkpoint file (default: seeded random weights)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: from the weights, else 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    parser.add_argument("--logits", nargs="?", const="logits", metavar="NAME",
                        help="also return the classifier's output under NAME (default: logits) and "
                             "offer forward_from(layer, activations) for every layer")
    parser.add_argument("--class-names", metavar="FILE",
                        help="with --logits: the classes' names, one a line, as many as the "
                             "classifier's outputs (default: ImageNet's for 1000 outputs)")
    parser.add_argument("--input-size", type=int, default=224,
                        help="image side used to check the export, to list the nodes' shapes "
                             "and as the example size of the field geometry")
    parser.add_argument("--list-nodes", action="store_true",
                        help="print the node names with their shapes and fields and exit "
                             "(a module name such as layer4 works too)")
    args = parser.parse_args()

    model = build_model(args.arch, args.weights, args.num_classes, args.seed)
    if args.list_nodes:
        list_nodes(model, args.input_size)
        return
    if not args.layers or not args.out:
        fail("--layers and --out are required (use --list-nodes to see the layer names)")
    layers = [layer for layer in args.layers.split(",") if layer]
    if args.class_names and not args.logits:
        fail("--class-names names the logits' classes: give --logits too")
    if args.logits in layers:
        fail(f"--logits {args.logits} is also the name of a layer: choose another name")
    query = None
    if args.logits:
        try:
            query = logits_query(model, layers)
        except ValueError as e:
            fail(f"--logits: {e}")
    features = extractor(model, layers, (query, args.logits) if args.logits else None)
    example = torch.randn(2, 3, args.input_size, args.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = features(example)
        scripted = to_torchscript(features, example)
        got = scripted(example)
        for layer in layers:
            if not close(expected[layer], got[layer]):
                fail(f"the TorchScript export of {layer} does not reproduce the model")
        extra = {}
        if args.logits:
            if not close(model(example), got[args.logits]):
                fail("the TorchScript export's logits do not reproduce the model's output")
            scripted = intervenable(model, scripted, layers, args.logits, expected)
            extra[INTERVENTION_FILE] = intervention_text(args.logits, layers)
            n_classes = expected[args.logits].shape[-1]
            names = class_names(args.class_names, n_classes)
    fields = fieldmap.node_fields(model, layers, args.input_size, strict=False)
    known = {layer: field for layer, field in fields.items() if isinstance(field, fieldmap.Field)}
    text = fieldmap.extra_file_text(known, args.input_size)
    try:
        save(scripted, args.out, {fieldmap.EXTRA_FILE: text, **extra})
    except OSError as e:
        fail(f"cannot write {args.out}: {e}")
    if args.logits and names is not None:
        path = classes_path(args.out)
        try:
            write_atomically(path, "".join(f"{name}\n" for name in names).encode("utf-8"))
        except OSError as e:
            fail(f"cannot write {path}: {e}")
    print(f"{args.out} returns, for one {args.input_size}×{args.input_size} image:")
    print_table([("layer", "shape", FIELD_HEADER)]
                + [(layer, describe(expected[layer]), field_cell(expected[layer], fields[layer]))
                   for layer in layers])
    if args.logits:
        print(f"and {args.logits}, the classifier's {n_classes} outputs; {INTERVENTION_METHOD}(layer, "
              f"activations) recomputes them from any of {', '.join(layers)}")
        if names is not None:
            print(f"wrote the class names to {classes_path(args.out)}")
    flat = [layer for layer in layers if not is_map(expected[layer])]
    if flat:
        verb = "is" if len(flat) == 1 else "are"
        print(f"export_torchvision: warning: {', '.join(flat)} {verb} not (N, C, H, W); nd-extract "
              f"and netdissect run will refuse {'it' if len(flat) == 1 else 'them'} (choose a convolutional layer)", file=sys.stderr)
    for layer in layers:
        if is_map(expected[layer]) and layer not in known:
            print(f"export_torchvision: warning: the receptive field of {layer} cannot be computed: "
                  f"{fields[layer].reason}; `receptive-field` upsampling of {layer} will need its "
                  "`fields` in the pipeline file", file=sys.stderr)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
