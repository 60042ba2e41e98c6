#!/usr/bin/env python3
"""Checks the networks of ``python/train_variants.py`` as exported, for every recipe, with
seeded random weights (nothing is trained here):

1. the TorchScript file's ``forward`` returns the recipe's layers, each the output of its
   stage in the Python network, and under ``logits`` the task head's scores;
2. ``forward_from(layer, forward(x)[layer])`` is the logits again, for every layer;
3. ``forward_from`` with one unit of a layer zeroed is the Python network run with that
   channel zeroed by a forward hook: the method is the rest of the network;
4. the extra files: the receptive fields of every layer, and the intervention record;
5. two exports of the same weights (another path) are the same bytes.

Exits non-zero on the first failure.

    .venv/bin/python tests/python/test_train_variants.py
"""

import os
import sys

if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    # The exports' bytes follow the string hash seed (see train_variants.py): fixed.
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
              dict(os.environ, PYTHONHASHSEED="0"))

import json  # noqa: E402
import tempfile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))

import torch  # noqa: E402

import fieldmap  # noqa: E402
import train_demo  # noqa: E402
import train_variants as tv  # noqa: E402

SIZES = (12, 10, 8)  # scenes, objects, textures: what the synthetic world has
SIZE = 96


def check(condition, message):
    if not condition:
        print(f"test_train_variants: FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def main():
    torch.manual_seed(0)
    x = torch.randn(2, 3, SIZE, SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        for name, recipe in tv.RECIPES.items():
            net = tv.build(recipe, SIZES, 1).eval()
            path = os.path.join(tmp, f"{name}.pt")
            tv.export(net, path, SIZE)
            extra = {fieldmap.EXTRA_FILE: "", train_demo.INTERVENTION_FILE: ""}
            scripted = torch.jit.load(path, _extra_files=extra)
            with torch.no_grad():
                out = scripted(x)
                own = net.layers(x)
                scores = net.outputs(x)[:, :net.scores]
            check(list(out) == [*net.names, "logits"], f"{name}: outputs {list(out)}")
            for layer in net.names:
                check(torch.equal(out[layer], own[layer]), f"{name}: {layer} differs")
            check(torch.allclose(out["logits"], scores, atol=1e-5), f"{name}: logits differ")
            outputs, n_scores = tv.head_sizes(recipe["task"], SIZES)
            check(out["logits"].shape == (2, n_scores), f"{name}: logits {out['logits'].shape}")
            for i, layer in enumerate(net.names):
                with torch.no_grad():
                    again = scripted.forward_from(layer, out[layer])
                check(torch.allclose(again, out["logits"], atol=1e-5),
                      f"{name}: forward_from({layer}) is not the logits")
                # Unit 0 of the layer zeroed: the method against a hooked Python network.
                zeroed = out[layer].clone()
                zeroed[:, 0] = 0

                def hook(_module, _inputs, output):
                    output = output.clone()
                    output[:, 0] = 0
                    return output

                handle = net.stages[i].register_forward_hook(hook)
                with torch.no_grad():
                    want = net.outputs(x)[:, :net.scores]
                handle.remove()
                with torch.no_grad():
                    got = scripted.forward_from(layer, zeroed)
                check(torch.allclose(got, want, atol=1e-5),
                      f"{name}: forward_from({layer}) with unit 0 zeroed is not the network's")
            fields, _ = fieldmap.read_extra_file(extra[fieldmap.EXTRA_FILE])
            check(sorted(fields) == sorted(net.names), f"{name}: fields of {sorted(fields)}")
            record = json.loads(extra[train_demo.INTERVENTION_FILE])
            check(record["layers"] == net.names and record["method"] == "forward_from",
                  f"{name}: intervention record {record}")
            other = os.path.join(tmp, "elsewhere", f"{name}.pt")
            os.makedirs(os.path.dirname(other), exist_ok=True)
            tv.export(net, other, SIZE)
            with open(path, "rb") as a, open(other, "rb") as b:
                check(a.read() == b.read(), f"{name}: two exports differ in bytes")
            print(f"test_train_variants: {name}: {sum(p.numel() for p in net.parameters()):,} "
                  f"parameters, layers {', '.join(net.names)}: ok")


if __name__ == "__main__":
    main()
