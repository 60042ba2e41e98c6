# The stages as rules. Each writes a record (its artifact's manifest) under records/; the
# artifacts live in the pipeline's cache. Everything that changes a result is a parameter
# (params:), so Snakemake reruns exactly what a changed parameter affects; batch size,
# device and threads change no result and are not.


wildcard_constraints:
    model=names_pattern(DISSECTIONS),
    shard=r"\d+",
    block=r"\d+",
    part=r"\d+",


localrules:
    report,


if SYNTH:

    rule dataset:
        output:
            record="records/dataset.json",
        params:
            images=SYNTH["images"],
            size=SYNTH["size"],
            seed=SYNTH["seed"],
            format=SYNTH["format"],
        threads: THREADS
        log:
            "logs/dataset.log",
        run:
            stage(
                "nd-synth",
                ["--images", params.images, "--size", params.size, "--seed", params.seed,
                 "--format", params.format, "--record", output.record],
                log[0],
                threads,
            )


if TRAIN:

    rule training_data:
        output:
            record="records/train-data.json",
        params:
            images=TRAIN["data"]["images"],
            size=TRAIN["data"]["size"],
            seed=TRAIN["data"]["seed"],
            format=TRAIN["data"]["format"],
        threads: THREADS
        log:
            "logs/train-data.log",
        run:
            stage(
                "nd-synth",
                ["--images", params.images, "--size", params.size, "--seed", params.seed,
                 "--format", params.format, "--record", output.record],
                log[0],
                threads,
            )

    # A training of the pipeline's models (nd-train: once per cache), per recipe, seed and
    # whether it keeps its snapshots (for models that ask for an epoch).
    rule train:
        input:
            data="records/train-data.json",
        output:
            record="records/train/{recipe}-seed{seed}{snapshots}.json",
        wildcard_constraints:
            recipe=r"[A-Za-z0-9_]+",
            seed=r"\d+",
            snapshots=r"(-snapshots)?",
        params:
            snapshots=lambda wc: ["--snapshots"] if wc.snapshots else [],
            epochs=["--epochs", TRAIN["epochs"]] if TRAIN["epochs"] else [],
            threads=TRAIN["threads"],
        threads: TRAIN["threads"]
        log:
            "logs/train/{recipe}-seed{seed}{snapshots}.log",
        run:
            stage(
                "nd-train",
                ["--data", input.data, "--recipe", wildcards.recipe, "--seed", wildcards.seed,
                 *params.snapshots, *params.epochs, "--threads", params.threads,
                 "--record", output.record],
                log[0],
            )


if GENERATORS:

    # A generator's samples (z seeded per sample), labelled by its segmenter: a dataset in
    # the Broden layout, and the dissected layers' activations in the extract layout.
    rule generate:
        input:
            generator=lambda wc: GENERATORS[wc.model]["file"],
            segmenter=lambda wc: GENERATORS[wc.model]["segmenter"],
            labels=lambda wc: GENERATORS[wc.model]["segmenter_labels"],
        output:
            record="records/{model}/generate.json",
        wildcard_constraints:
            model=names_pattern(GENERATORS),
        params:
            args=lambda wc: generator_args(wc.model),
        resources:
            batch_size=lambda wc: GENERATORS[wc.model]["batch_size"],
            device=lambda wc: GENERATORS[wc.model]["device"],
        threads: THREADS
        log:
            "logs/{model}/generate.log",
        run:
            stage(
                "nd-generate",
                [*params.args, "--batch-size", resources.batch_size,
                 "--device", resources.device, "--record", output.record],
                log[0],
                threads,
            )


rule extract:
    input:
        model=lambda wc: model_input(wc.model),
        dataset=DATASET_INPUT,
    output:
        record="records/{model}/extract/{shard}.json",
    params:
        dataset=dataset_arg,
        file=lambda wc, input: model_file(wc.model, input.model),
        model=lambda wc: model_args(wc.model),
        images=lambda wc: rows(wc.shard),
    resources:
        batch_size=lambda wc: MODELS[wc.model]["batch_size"],
        device=lambda wc: MODELS[wc.model]["device"],
    threads: THREADS
    log:
        "logs/{model}/extract-{shard}.log",
    run:
        stage(
            "nd-extract",
            ["--dataset", params.dataset, "--model", params.file, *params.model,
             "--images", params.images, "--batch-size", resources.batch_size,
             "--device", resources.device, "--no-progress", "--record", output.record],
            log[0],
            threads,
        )


# The rotation control: an image shard's activations turned by the fraction `power` of
# the random rotation `seed` names (the same matrix for every shard).
rule rotate:
    input:
        activations=lambda wc: f"records/{ROTATED[wc.model]['model']}/extract/{wc.shard}.json",
    output:
        record="records/{model}/rotate/{shard}.json",
    params:
        seed=lambda wc: ROTATED[wc.model]["seed"],
        power=lambda wc: repr(ROTATED[wc.model]["power"]),
    threads: THREADS
    log:
        "logs/{model}/rotate-{shard}.log",
    run:
        stage(
            "nd-rotate",
            ["--activations", input.activations, "--seed", params.seed,
             "--power", params.power, "--no-progress", "--record", output.record],
            log[0],
            threads,
        )


if UNIT_BLOCKS == 1:

    rule quantile:
        input:
            activations=activation_shards,
        output:
            record="records/{model}/quantile.json",
        params:
            top=PIPELINE["quantile"]["top"],
        threads: THREADS
        log:
            "logs/{model}/quantile.log",
        run:
            stage(
                "nd-quantile",
                ["--activations", *input.activations, "--top", params.top,
                 "--record", output.record],
                log[0],
                threads,
            )

else:

    rule quantile_block:
        input:
            activations=activation_shards,
        output:
            record="records/{model}/quantile/{block}.json",
        params:
            top=PIPELINE["quantile"]["top"],
            units=lambda wc: f"{wc.block}/{UNIT_BLOCKS}",
        threads: THREADS
        log:
            "logs/{model}/quantile-{block}.log",
        run:
            stage(
                "nd-quantile",
                ["--activations", *input.activations, "--top", params.top,
                 "--units", params.units, "--record", output.record],
                log[0],
                threads,
            )

    rule quantile_merge:
        input:
            blocks=lambda wc: expand(
                "records/{model}/quantile/{block}.json", model=wc.model, block=BLOCKS
            ),
        output:
            record="records/{model}/quantile.json",
        log:
            "logs/{model}/quantile-merge.log",
        run:
            stage(
                "nd-quantile",
                ["merge", *input.blocks, "--record", output.record],
                log[0],
            )


rule segment:
    input:
        activations=lambda wc: activations(wc.model, wc.shard),
        thresholds="records/{model}/quantile.json",
        dataset=dataset_of,
    output:
        record="records/{model}/segment/{shard}.json",
    params:
        dataset=dataset_arg,
        upsample=PIPELINE["segment"]["upsample"],
        fields=lambda wc: fields_args(wc.model),
    threads: THREADS
    log:
        "logs/{model}/segment-{shard}.log",
    run:
        stage(
            "nd-segment",
            ["--dataset", params.dataset, "--activations", input.activations,
             "--thresholds", input.thresholds, "--upsample", params.upsample,
             *params.fields, "--record", output.record],
            log[0],
            threads,
        )


# A dissection of one image shard (a generator's always) is scored whole: the score of its
# masks is the dissection's (nothing to merge). Others are scored per shard, then merged.
rule score_whole:
    input:
        masks="records/{model}/segment/0.json",
        dataset=dataset_of,
    output:
        record="records/{model}/score.json",
    wildcard_constraints:
        model=names_pattern(WHOLE),
    params:
        dataset=dataset_arg,
        denominator=PIPELINE["score"]["denominator"],
        tally_depth=tally_depth_args(),
        categories=lambda wc: category_args(wc.model),
    threads: THREADS
    log:
        "logs/{model}/score.log",
    run:
        stage(
            "nd-score",
            ["--dataset", params.dataset, "--masks", input.masks,
             "--denominator", params.denominator, *params.tally_depth, *params.categories,
             "--record", output.record],
            log[0],
            threads,
        )


if SHARDED:

    rule score:
        input:
            masks="records/{model}/segment/{shard}.json",
            dataset=dataset_of,
        output:
            record="records/{model}/score/{shard}.json",
        wildcard_constraints:
            model=names_pattern(SHARDED),
        params:
            dataset=dataset_arg,
            denominator=PIPELINE["score"]["denominator"],
            tally_depth=tally_depth_args(),
            categories=lambda wc: category_args(wc.model),
        threads: THREADS
        log:
            "logs/{model}/score-{shard}.log",
        run:
            stage(
                "nd-score",
                ["--dataset", params.dataset, "--masks", input.masks,
                 "--denominator", params.denominator, *params.tally_depth,
                 *params.categories, "--record", output.record],
                log[0],
                threads,
            )

    rule score_merge:
        input:
            shards=lambda wc: expand(
                "records/{model}/score/{shard}.json", model=wc.model, shard=SHARDS
            ),
            dataset=dataset_of,
        output:
            record="records/{model}/score.json",
        wildcard_constraints:
            model=names_pattern(SHARDED),
        params:
            dataset=dataset_arg,
            categories=lambda wc: category_args(wc.model),
        threads: THREADS
        log:
            "logs/{model}/score-merge.log",
        run:
            stage(
                "nd-score",
                ["merge", *input.shards, "--dataset", params.dataset,
                 *params.categories, "--record", output.record],
                log[0],
                threads,
            )


if FORMULAS:

    # Each unit's best formula of concepts, from every image shard's masks at once. After
    # the report, whose copy in the results replaces the model's folder there.
    rule formulas:
        input:
            masks=mask_shards,
            dataset=dataset_of,
        output:
            record="records/{model}/formulas.json",
        params:
            dataset=dataset_arg,
            categories=lambda wc: category_args(wc.model),
            args=formulas_args(),
        threads: THREADS
        log:
            "logs/{model}/formulas.log",
        run:
            stage(
                "nd-formulas",
                ["--masks", *input.masks, "--dataset", params.dataset, *params.categories,
                 *params.args, "--record", output.record],
                log[0],
                threads,
            )


rule report:
    input:
        scores="records/{model}/score.json",
        # With [formulas], the report counts the units a formula explains better (and its
        # copy in the results holds the formulas table).
        formulas=lambda wc: ["records/{model}/formulas.json"] if FORMULAS else [],
    output:
        record="records/{model}/report.json",
    params:
        iou_threshold=PIPELINE["report"]["iou_threshold"],
        formulas=lambda wc, input: (
            ["--formulas", input.formulas[0], "--formula-gain", FORMULAS["gain"]]
            if input.formulas else []
        ),
        out=lambda wc: ["--out", os.path.join(RESULTS, wc.model)] if RESULTS else [],
    log:
        "logs/{model}/report.log",
    run:
        stage(
            "nd-report",
            ["--scores", input.scores, "--iou-threshold", params.iou_threshold,
             *params.formulas, *params.out, "--record", output.record],
            log[0],
        )


rule explain_part:
    input:
        report="records/{model}/report.json",
        model=lambda wc: model_input(wc.model),
        dataset=DATASET_INPUT,
        classes=lambda wc: [MODELS[wc.model]["classes"]] if MODELS[wc.model]["classes"] else [],
    output:
        record="records/{model}/explain/{part}.json",
    params:
        dataset=dataset_arg,
        file=lambda wc, input: model_file(wc.model, input.model),
        args=lambda wc: explain_args(wc.model),
        images=lambda wc: explain_rows(wc.model, wc.part),
        # Unlike extract's, the explain stage's result depends on the batch size (the class
        # scores' last bits): a parameter.
        batch_size=lambda wc: MODELS[wc.model]["batch_size"],
    resources:
        device=lambda wc: MODELS[wc.model]["device"],
    threads: THREADS
    log:
        "logs/{model}/explain-{part}.log",
    run:
        stage(
            "nd-explain",
            ["--dataset", params.dataset, "--model", params.file, "--report", input.report,
             *params.args, "--images", params.images, "--batch-size", params.batch_size,
             "--device", resources.device, "--no-progress", "--record", output.record],
            log[0],
            threads,
        )


# The shards' explanations joined: the artifact `netdissect run` writes (the shards start
# on the batch grid). A single shard is its own merge.
rule explain:
    input:
        parts=explain_parts,
        dataset=DATASET_INPUT,
    output:
        record="records/{model}/explain.json",
    params:
        dataset=dataset_arg,
        out=lambda wc: ["--out", os.path.join(RESULTS, wc.model, "explain")] if RESULTS else [],
    log:
        "logs/{model}/explain.log",
    run:
        stage(
            "nd-explain",
            ["merge", *input.parts, "--dataset", params.dataset, *params.out,
             "--record", output.record],
            log[0],
        )


rule pages:
    input:
        report="records/{model}/report.json",
        dataset=dataset_of,
        # An explained model's pages include its explanations.
        explain=lambda wc: ["records/{model}/explain.json"] if wc.model in EXPLAINED else [],
        # With [formulas], the units' formulas are on the pages.
        formulas=lambda wc: ["records/{model}/formulas.json"] if FORMULAS else [],
    output:
        record="records/{model}/pages.json",
    params:
        dataset=dataset_arg,
        top_images=PIPELINE["html"]["top_images"],
        thumbnail_height=PIPELINE["html"]["thumbnail_height"],
        title=lambda wc: wc.model,
        explanations=lambda wc, input: ["--explanations", input.explain[0]] if input.explain else [],
        formulas=lambda wc, input: ["--formulas", input.formulas[0]] if input.formulas else [],
        out=lambda wc: (
            ["--out", os.path.join(RESULTS, wc.model, "html")] if RESULTS else []
        ),
    threads: THREADS
    log:
        "logs/{model}/pages.log",
    run:
        stage(
            "nd-html",
            ["--dataset", params.dataset, "--report", input.report, *params.explanations,
             *params.formulas, "--top-images", params.top_images,
             "--thumbnail-height", params.thumbnail_height, "--title", params.title,
             *params.out, "--record", output.record],
            log[0],
            threads,
        )


if RESULTS:

    rule index:
        input:
            reports=expand("records/{model}/report.json", model=DISSECTIONS),
            pages=expand("records/{model}/pages.json", model=DISSECTIONS) if PAGES else [],
        output:
            os.path.join(RESULTS, "index.html"),
        params:
            results=lambda wc, output: os.path.dirname(output[0]),
            models=[f"{name}=records/{name}/report.json" for name in DISSECTIONS],
            rotations=rotation_args(),
        log:
            "logs/index.log",
        run:
            stage(
                "nd-html",
                ["index", "--out", params.results,
                 *[a for m in params.models for a in ("--model", m)], *params.rotations],
                log[0],
            )


if INTERVENE:

    # GAN dissection's interventions: a concept's top units of a generator's layer (by the
    # dissection's IoU) ablated everywhere and inserted in a region, against random units.
    # After the report, whose copy in the results replaces the generator's folder there.
    rule intervene:
        input:
            scores="records/{model}/score.json",
            report="records/{model}/report.json",
            generator=lambda wc: GENERATORS[wc.model]["file"],
            segmenter=lambda wc: GENERATORS[wc.model]["segmenter"],
            labels=lambda wc: GENERATORS[wc.model]["segmenter_labels"],
        output:
            record="records/{model}/intervene.json",
        wildcard_constraints:
            model=names_pattern([INTERVENE["generator"]]),
        params:
            args=intervene_args(),
            out=lambda wc: (
                ["--out", os.path.join(RESULTS, wc.model, "intervene")] if RESULTS else []
            ),
        resources:
            batch_size=lambda wc: GENERATORS[wc.model]["batch_size"],
            device=lambda wc: GENERATORS[wc.model]["device"],
        threads: THREADS
        log:
            "logs/{model}/intervene.log",
        run:
            stage(
                "nd-intervene",
                ["--scores", input.scores, *params.args, "--batch-size", resources.batch_size,
                 "--device", resources.device, *params.out, "--record", output.record],
                log[0],
                threads,
            )
