# What the rules share: the pipeline as `netdissect config` resolves it, the shards, and
# the one function that runs a stage binary.

import json
import os
import re
import shlex
import subprocess


def bin_dir():
    """The directory of the stage binaries: `bin`, or the repository's target/release."""
    configured = config.get("bin") or ""
    if configured:
        return os.path.abspath(configured)
    return os.path.abspath(os.path.join(workflow.basedir, "..", "target", "release"))


BIN = bin_dir()
IMAGE_SHARDS = int(config.get("image_shards", 1))
UNIT_BLOCKS = int(config.get("unit_blocks", 1))
THREADS = int(config.get("threads", 4))


def load_pipeline(path):
    """The pipeline, checked and resolved by `netdissect config` (the checks `run` makes,
    with the line of the pipeline file to fix)."""
    command = [os.path.join(BIN, "netdissect"), "config", path]
    try:
        done = subprocess.run(command, capture_output=True, text=True)
    except FileNotFoundError:
        raise WorkflowError(
            f"{command[0]} does not exist: build the binaries (make build) or set the "
            "`bin` config value to the directory holding them"
        )
    if done.returncode != 0:
        raise WorkflowError(done.stderr.strip())
    return json.loads(done.stdout)


PIPELINE = load_pipeline(os.path.abspath(config.get("pipeline", "pipeline.toml")))
CACHE = PIPELINE["cache"]
MODELS = {m["name"]: m for m in PIPELINE["models"]}
# The generators ([[generator]]): each dissected on its own samples, which the generate
# stage draws and its segmenter labels into a dataset in the cache.
GENERATORS = {g["name"]: g for g in PIPELINE["generators"]}
# The rotation control: the dissections of a model's activations in fractions of a random
# rotation of each layer's unit basis (a model's `rotations`), by name.
ROTATED = {
    r["name"]: dict(model=m["name"], seed=r["seed"], power=r["power"])
    for m in PIPELINE["models"]
    for r in m["rotations"]
}
# Every dissection (a model's own, a rotated one, or a generator's) and the model it
# dissects, in the order of `netdissect run`: each model, then its rotations, then the
# generators.
DISSECTIONS = {
    **{
        name: model["name"]
        for model in PIPELINE["models"]
        for name in [model["name"], *(r["name"] for r in model["rotations"])]
    },
    **{name: name for name in GENERATORS},
}
DATASET = PIPELINE["dataset"]  # None when the pipeline dissects generators alone
ROWS = DATASET["rows"] if DATASET else None
RESULTS = PIPELINE["output"]["dir"]
PAGES = PIPELINE["html"]["pages"]
CATEGORIES = DATASET["categories"] if DATASET else None
INTERVENE = PIPELINE["intervene"]

if DATASET and not 1 <= IMAGE_SHARDS <= ROWS:
    raise WorkflowError(
        f"image_shards must be between 1 and the dataset's {ROWS} rows, got {IMAGE_SHARDS}"
    )
if UNIT_BLOCKS < 1:
    raise WorkflowError(f"unit_blocks must be at least 1, got {UNIT_BLOCKS}")

SHARDS = range(IMAGE_SHARDS)
BLOCKS = range(UNIT_BLOCKS)


def names_pattern(names):
    """A wildcard constraint that matches exactly these names (nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def model_shards(name):
    """The image shards of a dissection: a generator's samples are one artifact (the generate
    stage draws them in batches of bounded memory), so one shard; a model's, the
    configured image shards."""
    return range(1) if name in GENERATORS else SHARDS


# The dissections whose score is merged from image shards, and those scored whole.
SHARDED = [n for n in DISSECTIONS if len(model_shards(n)) > 1]
WHOLE = [n for n in DISSECTIONS if len(model_shards(n)) == 1]

# A synthetic dataset is generated into the cache by a rule and named by its record; a
# dataset directory is named by its path, and its index.csv stands for it as an input.
SYNTH = DATASET["synth"] if DATASET else None
if not DATASET:
    DATASET_INPUT = []  # no model to extract from or explain
elif SYNTH:
    DATASET_INPUT = "records/dataset.json"
else:
    DATASET_INPUT = os.path.join(DATASET["path"], "index.csv")


def dataset_input(name):
    """What stands for a dissection's dataset among a job's inputs: a generator's generate
    record (its samples are its dataset), else the pipeline's dataset."""
    return f"records/{name}/generate.json" if name in GENERATORS else DATASET_INPUT


def dataset_of(wildcards):
    return dataset_input(wildcards.model)


def dataset_arg(wildcards, input):
    """The --dataset of a stage: a record (the synthetic dataset's, or a generator's generate
    record), or the directory whose index.csv is the rule's input."""
    return input.dataset if input.dataset.endswith(".json") else os.path.dirname(input.dataset)


def rows(shard):
    """The dataset rows of an image shard: nearly equal contiguous ranges."""
    shard = int(shard)
    return f"{shard * ROWS // IMAGE_SHARDS}..{(shard + 1) * ROWS // IMAGE_SHARDS}"


def preprocessing_args(p):
    """A resolved preprocessing (a model's, a segmenter's) as stage arguments, every value
    spelled out."""
    args = [
        "--scale",
        repr(p["scale"]),
        "--mean",
        ",".join(map(repr, p["mean"])),
        "--std",
        ",".join(map(repr, p["std"])),
    ]
    if p["channel_order"] == "bgr":
        args.append("--bgr")
    if p["resize"]:
        args += ["--resize", ",".join(map(str, p["resize"]))]
    return args


def preprocess_args(name):
    """A model's outputs and preprocessing as stage arguments, every value spelled out."""
    model = MODELS[name]
    args = preprocessing_args(model["preprocess"])
    if model["output_names"]:
        args += ["--output-names", ",".join(model["output_names"])]
    return args


def model_args(name):
    """The extract arguments that change its result: layers, outputs and preprocessing."""
    return ["--layers", ",".join(MODELS[name]["layers"]), *preprocess_args(name)]


# The models trained by the pipeline (`train = { recipe, seed }`, with `epoch` for a snapshot
# of the training) on [train]'s training set.
TRAIN = PIPELINE["train"]


def training(name):
    """The record of the training behind a trained model: one per recipe, seed and whether
    it keeps snapshots, however many models use it."""
    train = MODELS[name]["train"]
    snapshots = "-snapshots" if train["epoch"] is not None else ""
    return f"records/train/{train['recipe']}-seed{train['seed']}{snapshots}.json"


def model_input(name):
    """What stands for a model's file among a job's inputs: the given file, or the record
    of its training."""
    return training(name) if MODELS[name]["train"] else MODELS[name]["file"]


def model_file(name, path):
    """The TorchScript file behind model_input(name): a trained model's is in its train
    artifact (the record names it by key), the epoch's snapshot when it asks for one."""
    train = MODELS[name]["train"]
    if not train:
        return path
    with open(path) as f:
        record = json.load(f)
    epoch = train["epoch"]
    if epoch is None:
        file = record["outputs"]["model"]
    else:
        file = (record["outputs"].get("snapshots") or {}).get(str(epoch))
        if file is None:
            raise WorkflowError(
                f"model {name}: epoch {epoch}: the training {path} has epochs 0 to "
                f"{record['params']['epochs']}"
            )
    return os.path.join(CACHE, "train", record["key"], file)


# The models [explain] explains, and the arguments of nd-explain that change its result.
EXPLAIN = PIPELINE["explain"]
EXPLAINED = EXPLAIN["models"] if EXPLAIN else []


def explain_shards(name):
    """The image shards of a model's explanation: the starts of the image shards moved
    down onto the model's batch grid, so that the merge is the artifact one run writes
    (the class scores' last bits follow the batches), without empty shards."""
    size = MODELS[name]["batch_size"]
    starts = sorted({(s * ROWS // IMAGE_SHARDS) // size * size for s in SHARDS})
    return list(zip(starts, starts[1:] + [ROWS]))


def explain_parts(wildcards):
    return expand(
        "records/{model}/explain/{part}.json",
        model=wildcards.model,
        part=range(len(explain_shards(wildcards.model))),
    )


def explain_rows(name, part):
    start, end = explain_shards(name)[int(part)]
    return f"{start}..{end}"


def explain_args(name):
    model = MODELS[name]
    args = [
        "--layer", model["explain_layer"],
        "--logits", model["logits"],
        "--top-k", EXPLAIN["top_k"],
        "--top-n", EXPLAIN["top_n"],
        "--ablate", ",".join(map(str, EXPLAIN["ablate"])),
        "--random-draws", EXPLAIN["random_draws"],
        "--seed", EXPLAIN["seed"],
        "--truth-category", EXPLAIN["truth_category"],
        *preprocess_args(name),
    ]
    if model["classes"]:
        args += ["--classes", model["classes"]]
    return args


def activations(name, shard):
    """The record of a dissection's activations for an image shard: the model's extraction,
    its rotation, or the generator's generate artifact (one shard)."""
    if name in GENERATORS:
        return f"records/{name}/generate.json"
    stage = "rotate" if name in ROTATED else "extract"
    return f"records/{name}/{stage}/{shard}.json"


def activation_shards(wildcards):
    return [activations(wildcards.model, shard) for shard in model_shards(wildcards.model)]


def mask_shards(wildcards):
    """The segment records of every image shard of a dissection."""
    return [f"records/{wildcards.model}/segment/{s}.json" for s in model_shards(wildcards.model)]


def rotation_args():
    """nd-html index's --rotation for each rotated dissection."""
    return [
        a
        for name, r in ROTATED.items()
        for a in ("--rotation", f"{name}={r['model']}:{r['seed']}:{r['power']!r}")
    ]


def category_args(name):
    """The pipeline dataset's categories (a generator's samples have its segmenter's)."""
    return ["--categories", ",".join(CATEGORIES)] if CATEGORIES and name not in GENERATORS else []


def fields_args(model):
    """nd-segment's --fields for a model: none when the model file's fields are used, the
    keyword assume-centred, or the pipeline's choices per layer as JSON."""
    if model in GENERATORS:
        return []  # generators map onto the image bilinearly (checked when loading)
    fields = MODELS[DISSECTIONS[model]]["fields"]
    if fields is None or PIPELINE["segment"]["upsample"] != "receptive-field":
        return []  # bilinear upsampling needs no fields: they change nothing then
    return ["--fields", fields if isinstance(fields, str) else json.dumps(fields, sort_keys=True)]


def generator_files(g):
    """A generator's files as arguments of nd-generate and nd-intervene."""
    return ["--generator", g["file"], "--segmenter", g["segmenter"],
            "--segmenter-labels", g["segmenter_labels"]]


def generator_args(name):
    """nd-generate's arguments for a generator, every value spelled out."""
    g = GENERATORS[name]
    return [
        *generator_files(g),
        "--layers", ",".join(g["layers"]), "--samples", g["samples"], "--seed", g["seed"],
        *preprocessing_args(g["segmenter_preprocess"]),
    ]


def intervene_args():
    """nd-intervene's arguments for [intervene], every value spelled out."""
    i = INTERVENE
    return [
        *generator_files(GENERATORS[i["generator"]]), "--layer", i["layer"],
        "--concepts", ",".join(i["concepts"]), "--ks", ",".join(map(str, i["ks"])),
        "--samples", i["samples"], "--ablation-value", repr(i["ablation_value"]),
        "--region", ",".join(map(repr, i["region"])), "--draws", i["draws"],
        "--seed", i["seed"],
    ]


def tally_depth_args():
    depth = PIPELINE["score"].get("tally_depth")
    return [] if depth is None else ["--tally-depth", depth]


# Compositional labels ([formulas]): nd-formulas' arguments, the denominator the score's.
FORMULAS = PIPELINE["formulas"]


def formulas_args():
    f = FORMULAS
    args = ["--max-length", f["max_length"], "--beam", f["beam"], "--ops", ",".join(f["ops"]),
            "--min-images", f["min_images"], "--denominator", PIPELINE["score"]["denominator"]]
    if f["categories"]:
        args += ["--only-categories", ",".join(f["categories"])]
    return args


def stage(binary, args, log, threads=None):
    """Runs a stage binary with an argument list (no shell, so no quoting of paths), its
    stdout and stderr in the job's log; on failure, the error names the log and repeats
    its last lines."""
    argv = [os.path.join(BIN, binary), *map(str, args), "--cache", CACHE]
    if threads is not None:
        argv += ["--threads", str(threads)]
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    with open(log, "w") as out:
        out.write(f"$ {shlex.join(argv)}\n")
        out.flush()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        with open(log) as out:
            tail = out.read().splitlines()[-10:]
        raise WorkflowError(
            f"{binary} failed (exit {done.returncode}); the end of its log {log}:\n"
            f"{chr(10).join(tail)}"
        )
