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
import pickle  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402

import torch  # noqa: E402
import torchvision  # noqa: E402
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
    data = archive(scripted, extra_files)
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
    fields = fieldmap.node_fields(model, layers, args.input_size, strict=False)
    known = {layer: field for layer, field in fields.items() if isinstance(field, fieldmap.Field)}
    text = fieldmap.extra_file_text(known, args.input_size)
    try:
        save(scripted, args.out, {fieldmap.EXTRA_FILE: text})
    except OSError as e:
        fail(f"cannot write {args.out}: {e}")
    print(f"{args.out} returns, for one {args.input_size}×{args.input_size} image:")
    print_table([("layer", "shape", FIELD_HEADER)]
                + [(layer, describe(expected[layer]), field_cell(expected[layer], fields[layer]))
                   for layer in layers])
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
