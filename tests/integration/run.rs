//! `netdissect run` end to end: what reruns after a change, how bad pipelines fail, a
//! planted model whose units must get their planted labels, and the Parquet outputs read
//! back with pyarrow and polars.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Run, colour_pixels, model, netdissect, netdissect_env, only_dir, python};

/// The fields of a successful run's `stage <stage> <model> computed|fresh <key> <seconds>`
/// lines.
fn stage_lines(run: &Run) -> Vec<Vec<&str>> {
    assert!(run.ok, "netdissect run failed:\n{}", run.stderr);
    run.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stage "))
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// Stage → what happened.
fn stages(run: &Run) -> BTreeMap<String, String> {
    stage_lines(run)
        .into_iter()
        .map(|f| (f[0].to_owned(), f[2].to_owned()))
        .collect()
}

fn expect(run: &Run, computed: &[&str]) {
    let got = stages(run);
    for stage in ["extract", "quantile", "segment", "score", "report", "html"] {
        let want = if computed.contains(&stage) {
            "computed"
        } else {
            "fresh"
        };
        assert_eq!(
            got.get(stage).map(String::as_str),
            Some(want),
            "{stage}: {got:?}\n{}",
            run.stderr
        );
    }
}

const PIPELINE: &str = r#"
[dataset]
synth = { images = 40, size = 32, seed = 3 }

[cache]
dir = "cache"

[[model]]
name = "tiny"
file = "tiny.pt"
layers = ["conv1", "conv2"]

[quantile]
top = 0.05

[report]
iou_threshold = 0.04

[output]
dir = "results"
"#;

/// (stage, model) → key.
fn keys(run: &Run) -> BTreeMap<(String, String), String> {
    stage_lines(run)
        .into_iter()
        .map(|f| ((f[0].to_owned(), f[1].to_owned()), f[3].to_owned()))
        .collect()
}

/// `--explain` compares each stage of a model with what the same model's last run used,
/// never with another model's artifacts (which may be closer by count of differences).
#[test]
fn explain_compares_each_model_with_its_own_last_run() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "tiny");
    let other = dir.path().join("other.pt");
    python(&[
        "tests/python/make_models.py",
        "tiny",
        other.to_str().unwrap(),
        "--seed",
        "1",
    ]);
    let two = format!(
        "{PIPELINE}\n[[model]]\nname = \"other\"\nfile = \"other.pt\"\nlayers = [\"conv1\"]\n"
    );
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, &two).unwrap();

    let first = netdissect(&pipeline, &["--explain"]);
    let before = keys(&first);
    for model in ["tiny", "other"] {
        for stage in ["extract", "quantile", "segment", "score", "report", "html"] {
            let line = format!(
                "{stage}: computing {}: first run for model `{model}` (no earlier {stage} of it in this cache)",
                before[&(stage.to_owned(), model.to_owned())]
            );
            assert!(first.stderr.contains(&line), "{line}\n{}", first.stderr);
        }
    }

    std::fs::write(&pipeline, two.replace("top = 0.05", "top = 0.02")).unwrap();
    let second = netdissect(&pipeline, &["--explain"]);
    let after = keys(&second);
    let key = |keys: &BTreeMap<(String, String), String>, stage: &str, model: &str| {
        keys[&(stage.to_owned(), model.to_owned())].clone()
    };
    for model in ["tiny", "other"] {
        assert!(
            second.stderr.contains(&format!(
                "extract: fresh ({})",
                key(&before, "extract", model)
            )),
            "{}",
            second.stderr
        );
        let quantile = format!(
            "quantile: computing {}: the last run of model `{model}` used {}, which differs in\n  params.top: 0.05 -> 0.02\n",
            key(&after, "quantile", model),
            key(&before, "quantile", model)
        );
        assert!(
            second.stderr.contains(&quantile),
            "{quantile}\n{}",
            second.stderr
        );
        // Score differs from the model's own last score in its masks, and in nothing else.
        let score = format!(
            "score: computing {}: the last run of model `{model}` used {}, which differs in\n  input `masks`: {} -> {}\n",
            key(&after, "score", model),
            key(&before, "score", model),
            key(&before, "segment", model),
            key(&after, "segment", model)
        );
        assert!(second.stderr.contains(&score), "{score}\n{}", second.stderr);
    }
    // The record names the stages' keys of the last run only.
    assert!(!second.stderr.contains("first run"), "{}", second.stderr);
}

#[test]
fn a_stage_reruns_only_when_its_inputs_change() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "tiny");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, PIPELINE).unwrap();

    let first = netdissect(&pipeline, &[]);
    expect(
        &first,
        &["extract", "quantile", "segment", "score", "report", "html"],
    );
    assert_eq!(stages(&first)["synth"], "computed");
    assert!(first.stdout.contains("tiny\nlayer"), "{}", first.stdout);
    let summary = dir.path().join("results/tiny/summary.json");
    assert!(summary.exists());
    assert!(dir.path().join("results/tiny/tally-conv2.csv").exists());

    // Nothing changed: nothing runs.
    let again = netdissect(&pipeline, &["--explain"]);
    expect(&again, &[]);
    assert_eq!(stages(&again)["synth"], "fresh");
    assert!(again.stderr.contains("report: fresh"), "{}", again.stderr);

    // Only the IoU threshold: only the report.
    std::fs::write(
        &pipeline,
        PIPELINE.replace("iou_threshold = 0.04", "iou_threshold = 0.02"),
    )
    .unwrap();
    let threshold = netdissect(&pipeline, &["--explain"]);
    expect(&threshold, &["report", "html"]);
    // The pages are rewritten; the images they show are not redrawn.
    let count = |stage: &str| {
        std::fs::read_dir(dir.path().join("cache").join(stage))
            .unwrap()
            .count()
    };
    assert_eq!((count("html"), count("html-images")), (2, 1));
    assert!(
        threshold
            .stderr
            .contains("params.iou_threshold: 0.04 -> 0.02"),
        "{}",
        threshold.stderr
    );

    // Only top: everything after extract.
    std::fs::write(&pipeline, PIPELINE.replace("top = 0.05", "top = 0.02")).unwrap();
    expect(
        &netdissect(&pipeline, &[]),
        &["quantile", "segment", "score", "report", "html"],
    );

    // Only the pages' settings: only the pages.
    std::fs::write(&pipeline, format!("{PIPELINE}\n[html]\ntop_images = 3\n")).unwrap();
    expect(&netdissect(&pipeline, &[]), &["html"]);

    // The upsampling mode: segment onwards. The denominator: score onwards.
    std::fs::write(
        &pipeline,
        format!("{PIPELINE}\n[segment]\nupsample = \"receptive-field\"\n"),
    )
    .unwrap();
    expect(
        &netdissect(&pipeline, &[]),
        &["segment", "score", "report", "html"],
    );
    std::fs::write(
        &pipeline,
        format!("{PIPELINE}\n[score]\ndenominator = \"original\"\n"),
    )
    .unwrap();
    expect(&netdissect(&pipeline, &[]), &["score", "report", "html"]);

    // Back to the first settings: all cached, and the same report.
    std::fs::write(&pipeline, PIPELINE).unwrap();
    expect(&netdissect(&pipeline, &[]), &[]);
    assert!(dir.path().join("results/tiny/summary.json").exists());

    // Thread count is not a result parameter.
    expect(&netdissect(&pipeline, &["--threads", "1"]), &[]);
}

/// Receptive-field upsampling takes each layer's field from the model file (make_models.py's
/// `tiny` carries them); the pipeline file can give the same (nothing reruns: the key holds
/// the fields used), another (segment onwards reruns, not the extraction), or the
/// mid-cell assumption, which is said on stderr.
#[test]
fn receptive_fields_come_from_the_model_or_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "tiny");
    let pipeline = dir.path().join("pipeline.toml");
    let original = format!("{PIPELINE}\n[segment]\nupsample = \"receptive-field\"\n");
    let with_fields = |fields: &str| {
        original.replace(
            r#"layers = ["conv1", "conv2"]"#,
            &format!("layers = [\"conv1\", \"conv2\"]\nfields = {fields}"),
        )
    };
    std::fs::write(&pipeline, &original).unwrap();
    let first = netdissect(&pipeline, &[]);
    expect(
        &first,
        &["extract", "quantile", "segment", "score", "report", "html"],
    );
    assert!(!first.stderr.contains("warning"), "{}", first.stderr);

    std::fs::write(
        &pipeline,
        with_fields("{ conv2 = { offset = -3, size = 7, stride = [4, 4] } }"),
    )
    .unwrap();
    expect(&netdissect(&pipeline, &[]), &[]);

    std::fs::write(
        &pipeline,
        with_fields("{ conv2 = { offset = [-3, 1], size = 7, stride = 4 } }"),
    )
    .unwrap();
    let moved = netdissect(&pipeline, &["--explain"]);
    expect(&moved, &["segment", "score", "report", "html"]);
    assert!(moved.stderr.contains("params.fields"), "{}", moved.stderr);

    std::fs::write(&pipeline, with_fields("\"assume-centred\"")).unwrap();
    let assumed = netdissect(&pipeline, &[]);
    expect(&assumed, &["segment", "score", "report", "html"]);
    assert!(
        assumed.stderr.contains(
            "segment: warning: the receptive-field centres of conv1, conv2 are assumed mid-cell (s/2 + j·s), as chosen"
        ),
        "{}",
        assumed.stderr
    );
}

/// A model file without receptive fields in receptive-field mode fails before any
/// extraction, at its line, saying the three ways to give them; bad field tables name
/// their line and what is wrong.
#[test]
fn missing_or_bad_receptive_fields_are_named_before_extraction() {
    let original = format!("{PIPELINE}\n[segment]\nupsample = \"receptive-field\"\n");
    let plain = original.replace("tiny.pt", "tiny-nofields.pt");
    let err = failure_with(&plain, &["tiny-nofields"], &[]);
    assert!(
        err.contains(
            "pipeline.toml:10:8: segment.upsample = \"receptive-field\" needs the receptive fields of conv1, conv2, and "
        ),
        "{err}"
    );
    for fix in [
        "export the model with python/export_torchvision.py (which stores them)",
        "fields = { conv1 = { offset = [y, x], size = [y, x], stride = [y, x] } }",
        "or set fields = \"assume-centred\" to place the centres mid-cell",
    ] {
        assert!(err.contains(fix), "{err}");
    }
    // Bilinear upsampling needs no fields.
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "tiny-nofields");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, PIPELINE.replace("tiny.pt", "tiny-nofields.pt")).unwrap();
    assert!(netdissect(&pipeline, &[]).ok);

    let with_fields = |fields: &str| {
        original.replace(
            r#"layers = ["conv1", "conv2"]"#,
            &format!("layers = [\"conv1\", \"conv2\"]\nfields = {fields}"),
        )
    };
    for (fields, message) in [
        (
            "{ conv9 = \"assume-centred\" }",
            "pipeline.toml:12:10: model `tiny`: fields: `conv9` is not one of the model's layers (conv1, conv2)",
        ),
        (
            "{ conv1 = { offset = 0, size = 3 } }",
            "pipeline.toml:12:10: model `tiny`: fields: layer `conv1`: `stride` is missing",
        ),
        (
            "{ conv1 = { offset = 0, size = 3, stride = [2, 0] } }",
            "fields: layer `conv1`: stride 0 is not positive",
        ),
        (
            "{ conv1 = { offset = 0, size = 3, stride = 2, centre = 1 } }",
            "fields: layer `conv1`: unknown key `centre` (use offset, size and stride)",
        ),
        (
            "\"centred\"",
            "fields: give \"assume-centred\" or a table from layer name to { offset = [y, x]",
        ),
    ] {
        let err = failure(&with_fields(fields));
        assert!(err.contains(message), "{fields}: {err}");
    }
}

/// Regression: re-exporting a model with `python/export_torchvision.py` wrote other bytes
/// (constants in the order of Python's hash seed), so the same weights reran every stage.
#[test]
fn re_exporting_a_model_recomputes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("resnet18.pt");
    let export = |hash_seed: &str| {
        python_with_hash_seed(
            hash_seed,
            &[
                "python/export_torchvision.py",
                "resnet18",
                "--layers",
                "layer1",
                "--input-size",
                "32",
                "--out",
                model.to_str().unwrap(),
            ],
        )
    };
    export("1");
    let pipeline = dir.path().join("pipeline.toml");
    let text = PIPELINE
        .replace("name = \"tiny\"", "name = \"resnet18\"")
        .replace("file = \"tiny.pt\"", "file = \"resnet18.pt\"")
        .replace("[\"conv1\", \"conv2\"]", "[\"layer1\"]");
    std::fs::write(&pipeline, text).unwrap();
    expect(
        &netdissect(&pipeline, &[]),
        &["extract", "quantile", "segment", "score", "report", "html"],
    );

    export("2");
    expect(&netdissect(&pipeline, &["--explain"]), &[]);
}

/// `python ARGS...` in the repository root under the given `PYTHONHASHSEED`.
fn python_with_hash_seed(hash_seed: &str, args: &[&str]) {
    let output = Command::new(crate::common::repo().join(".venv/bin/python"))
        .args(args)
        .current_dir(crate::common::repo())
        .env("PYTHONHASHSEED", hash_seed)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn failure(pipeline_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "tiny");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, pipeline_text).unwrap();
    let run = netdissect(&pipeline, &[]);
    assert!(!run.ok, "expected a failure:\n{pipeline_text}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("netdissect: error: "), "{}", run.stderr);
    assert!(!dir.path().join("results").exists());
    run.stderr
}

#[test]
fn bad_pipelines_name_the_key_and_its_line() {
    let err = failure(&PIPELINE.replace("top = 0.05", "top = 0.05\ntopp = 0.1"));
    assert!(
        err.contains("pipeline.toml:15: unknown field `topp`"),
        "{err}"
    );
    let err = failure(&PIPELINE.replace("top = 0.05", "top = 1.5"));
    assert!(
        err.contains(
            "pipeline.toml:14:7: quantile.top must be between 0 and 1 (exclusive), got 1.5"
        ),
        "{err}"
    );
    let err = failure(&PIPELINE.replace("top = 0.05", "top = 0"));
    assert!(
        err.contains("quantile.top must be between 0 and 1"),
        "{err}"
    );
    let err = failure(&PIPELINE.replace("iou_threshold = 0.04", "iou_threshold = -0.1"));
    assert!(
        err.contains("pipeline.toml:17:17: report.iou_threshold must be between 0 and 1 (an IoU is at most 1), got -0.1"),
        "{err}"
    );
    // An IoU is at most 1: a threshold above it would silently yield no detectors.
    for threshold in ["2", "1.5", "nan"] {
        let err = failure(&PIPELINE.replace(
            "iou_threshold = 0.04",
            &format!("iou_threshold = {threshold}"),
        ));
        assert!(
            err.contains("pipeline.toml:17:17: report.iou_threshold must be between 0 and 1"),
            "{threshold}: {err}"
        );
    }
    // The original's tally depth is the original's: not with the lite denominator.
    let err = failure(&format!("{PIPELINE}[score]\ntally_depth = 2048\n"));
    assert!(
        err.contains("pipeline.toml:22:15: score.tally_depth: a tally depth reproduces the original's truncated tally: use it with the original denominator"),
        "{err}"
    );
    let err = failure(&format!(
        "{PIPELINE}[score]\ndenominator = \"original\"\ntally_depth = 0\n"
    ));
    assert!(
        err.contains("pipeline.toml:23:15: score.tally_depth: the tally depth must be at least 1"),
        "{err}"
    );
    let err = failure(&format!("{PIPELINE}[html]\ntop_images = 0\n"));
    assert!(
        err.contains("pipeline.toml:22:14: html.top_images: the number of top images must be between 1 and 100, got 0"),
        "{err}"
    );
    let err = failure(&PIPELINE.replace(r#"["conv1", "conv2"]"#, r#"["conv1", "conv9"]"#));
    assert!(err.contains("error: model `tiny`: "), "{err}");
    assert!(
        err.contains("pipeline.toml:11:10: layer `conv9` is not returned by"),
        "{err}"
    );
    assert!(err.contains("(it returns conv1, conv2)"), "{err}");
    let err = failure(&PIPELINE.replace(r#"file = "tiny.pt""#, r#"file = "missing.pt""#));
    assert!(err.contains("missing.pt"), "{err}");
    // The rotation control: fractions of the rotation in [0, 1], each once, names free.
    let layers = r#"layers = ["conv1", "conv2"]"#;
    let rotations = |r: &str| PIPELINE.replace(layers, &format!("{layers}\n{r}"));
    let err = failure(&rotations("rotations = [0.5, 1.5]"));
    assert!(
        err.contains("pipeline.toml:12:13: model `tiny`: rotations[1] = 1.5: each fraction of the rotation must be between 0"),
        "{err}"
    );
    let err = failure(&rotations("rotations = [0.5, nan]"));
    assert!(err.contains("rotations[1] = NaN"), "{err}");
    let err = failure(&rotations("rotations = [0.5, 0.25, 0.5]"));
    assert!(
        err.contains("pipeline.toml:12:13: model `tiny`: rotations gives 0.5 twice"),
        "{err}"
    );
    let err = failure(&rotations("rotation_seed = 3"));
    assert!(
        err.contains("pipeline.toml:12:17: model `tiny`: rotation_seed is given without rotations"),
        "{err}"
    );
    let err = failure(&format!(
        "{}\n[[model]]\nname = \"tiny-rot1\"\nfile = \"tiny.pt\"\nlayers = [\"conv1\"]\n",
        rotations("rotations = [1.0]")
    ));
    assert!(
        err.contains("model `tiny`: the dissection of rotation 1 is named `tiny-rot1`, which another [[model]] already is"),
        "{err}"
    );
}

/// `netdissect run PIPELINE` in a fresh directory holding the given models of
/// `tests/python/make_models.py` (as `<kind>.pt`): it must fail having extracted nothing
/// and written no results; returns its stderr.
fn failure_with(pipeline_text: &str, kinds: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds {
        model(dir.path(), kind);
    }
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, pipeline_text).unwrap();
    let run = netdissect_env(&pipeline, &[], env);
    assert!(!run.ok, "expected a failure:\n{pipeline_text}");
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("netdissect: error: "), "{}", run.stderr);
    assert!(!run.stderr.contains("stage extract"), "{}", run.stderr);
    let extracted = std::fs::read_dir(dir.path().join("cache/extract")).map_or(0, |d| d.count());
    assert_eq!(extracted, 0, "{}", run.stderr);
    assert!(!dir.path().join("results").exists());
    run.stderr
}

/// A ViT block's `(N, tokens, channels)` or a pooled `(N, C)` used to be found by the
/// extraction of the model that returns it, after every earlier model's extraction; a
/// pipeline whose second model names one must fail before any extraction, at its line.
#[test]
fn a_layer_that_is_not_a_map_fails_before_any_extraction() {
    let two_models = format!(
        "{PIPELINE}\n[[model]]\nname = \"vit\"\nfile = \"tokens.pt\"\n\
         layers = [\"conv1\", \"encoder.layers.encoder_layer_0\"]\n"
    );
    let err = failure_with(&two_models, &["tiny", "tokens"], &[]);
    assert!(err.contains("error: model `vit`: "), "{err}");
    assert!(
        err.contains("pipeline.toml:25:10: layer `encoder.layers.encoder_layer_0` of "),
        "{err}"
    );
    assert!(
        err.contains(
            "cannot be dissected: it is 256 × 4 for one image, not a map (N, C, H, W); \
             dissection needs a convolutional layer's (C, H, W) output"
        ),
        "{err}"
    );
    let pooled = two_models.replace("encoder.layers.encoder_layer_0", "pooled");
    let err = failure_with(&pooled, &["tiny", "tokens"], &[]);
    assert!(
        err.contains("pipeline.toml:25:10: layer `pooled` of "),
        "{err}"
    );
    assert!(err.contains("it is 4 for one image, not a map"), "{err}");
}

/// Each mistake a new user made with a model (issue 25) gets a message that names the
/// pipeline's line and what to put there, and fails before any extraction.
#[test]
fn model_mistakes_name_their_line_and_the_fix() {
    let model_line = |file: &str, extra: &str| {
        PIPELINE.replace(
            r#"file = "tiny.pt""#,
            &format!("file = \"{file}\"\n{extra}"),
        )
    };
    // No GPU (CUDA_VISIBLE_DEVICES hides any there is): the key, not nd-extract's flag.
    let err = failure_with(
        &model_line("tiny.pt", r#"device = "cuda""#),
        &["tiny"],
        &[("CUDA_VISIBLE_DEVICES", "")],
    );
    assert!(
        err.contains(
            "pipeline.toml:11:10: device = \"cuda\": libtorch sees no CUDA device; choose auto or cpu"
        ),
        "{err}"
    );
    assert!(!err.contains("--device"), "{err}");

    let err = failure_with(&model_line("missing.pt", ""), &[], &[]);
    assert!(err.contains("pipeline.toml:10:8: model file "), "{err}");
    assert!(
        err.contains("missing.pt does not exist (no such file)"),
        "{err}"
    );

    // A state_dict where TorchScript belongs: not libtorch's "constants.pkl ... corrupted".
    let err = failure_with(&model_line("state_dict.pt", ""), &["state_dict"], &[]);
    assert!(err.contains("pipeline.toml:10:8: model "), "{err}");
    assert!(
        err.contains("state_dict.pt: it is not TorchScript but a file of torch.save"),
        "{err}"
    );
    assert!(err.contains("python/export_torchvision.py"), "{err}");
    assert!(!err.contains("corrupted"), "{err}");

    let err = failure_with(
        &model_line("tuple.pt", r#"output_names = ["a"]"#)
            .replace(r#"["conv1", "conv2"]"#, r#"["a"]"#),
        &["tuple"],
        &[],
    );
    assert!(
        err.contains("forward returns 2 tensors but 1 output name was given; give one output name"),
        "{err}"
    );

    // A model made for 16×16 images given the dataset's 32×32 ones.
    let err = failure_with(
        &model_line("fixed.pt", "").replace(r#"["conv1", "conv2"]"#, r#"["conv1"]"#),
        &["fixed"],
        &[],
    );
    assert!(err.contains("pipeline.toml:10:8: model "), "{err}");
    assert!(
        err.contains("fixed.pt: forward failed on a batch of 1 × 3 × 32 × 32: "),
        "{err}"
    );
    assert!(err.contains("this model takes 16x16 images"), "{err}");
    assert!(
        err.contains(
            "if the model expects images of another size than 32×32, set it in the model's \
             preprocess: preprocess = { preset = \"...\", resize = [H, W] }"
        ),
        "{err}"
    );
}

/// The planted model's unit i fires where the dataset names colour i. With `top` at least
/// the largest colour's share of pixels, each unit's threshold falls among its zeros and its
/// mask is its colour's region, so each must be labelled with its colour (IoU ≥ 0.5).
#[test]
fn planted_units_get_their_planted_labels() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "planted");
    let data = dir.path().join("data");
    let config = nd_synth::Config {
        seed: 5,
        images: 60,
        image_size: 64,
        format: nd_synth::ImageFormat::Png,
        ..Default::default()
    };
    nd_synth::generate(&data, &config).unwrap();
    let dataset = nd_broden::Dataset::open(&data, &Default::default()).unwrap();
    let (pixels, total) = colour_pixels(&dataset);
    let largest_share = pixels
        .iter()
        .map(|&p| p as f64 / total as f64)
        .fold(0.0, f64::max);
    let top = (largest_share + 0.01).min(0.5);
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[dataset]\npath = \"data\"\n[cache]\ndir = \"cache\"\n[[model]]\nname = \"planted\"\nfile = \"planted.pt\"\n\
             layers = [\"colors\"]\n[quantile]\ntop = {top}\n[output]\ndir = \"results\"\n"
        ),
    )
    .unwrap();
    let run = netdissect(&pipeline, &[]);
    expect(
        &run,
        &["extract", "quantile", "segment", "score", "report", "html"],
    );
    let (_, rows) =
        nd_report::tally::read(&dir.path().join("results/planted/tally-colors.csv")).unwrap();
    let mut checked = 0;
    for unit in 1..=11u32 {
        let expected = dataset.label_name(unit);
        if pixels[unit as usize] == 0 {
            continue;
        }
        let row = rows.iter().find(|r| r.unit == unit).unwrap();
        let best = row
            .categories
            .iter()
            .find(|c| c.category == "color")
            .unwrap();
        assert_eq!(best.label, expected, "unit {unit}");
        assert!(
            best.iou >= 0.5,
            "unit {unit} ({expected}): IoU {}",
            best.iou
        );
        assert_eq!(
            (row.label.as_str(), row.category.as_str()),
            (expected, "color"),
            "unit {unit}"
        );
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} colours appear in the dataset");

    // The Parquet tables, read back by pyarrow and polars with the documented schema.
    let artifact = |stage: &str| {
        only_dir(&dir.path().join("cache").join(stage))
            .to_string_lossy()
            .into_owned()
    };
    let report = python(&[
        "tests/python/check_parquet.py",
        &artifact("quantile"),
        &artifact("score"),
        &artifact("report"),
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["scores.parquet"]["stage"], "score");
    assert_eq!(report["thresholds.parquet"]["rows"], 11);
    assert_eq!(report["units.parquet"]["rows"], 11);
}

/// The stage binaries, as a Makefile chains them, give the very artifacts `netdissect run`
/// gives: run after them on the same cache, every stage is fresh.
#[test]
fn stage_binaries_chain_to_the_same_artifacts() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_netdissect"))
        .parent()
        .unwrap()
        .to_owned();
    let bin = |name: &str| {
        let path = bin_dir.join(name);
        assert!(
            path.exists(),
            "{} is missing: build the workspace first (make test does)",
            path.display()
        );
        path
    };
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path(), "tiny");
    let data = dir.path().join("data");
    nd_synth::generate(
        &data,
        &nd_synth::Config {
            seed: 9,
            images: 30,
            image_size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let step = |name: &str, args: &[&std::ffi::OsStr]| -> String {
        let output = Command::new(bin(name))
            .args(args)
            .arg("--explain")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let a = step(
        "nd-extract",
        &[
            &os("--dataset"),
            data.as_os_str(),
            &os("--model"),
            model.as_os_str(),
            &os("--layers"),
            &os("conv1,conv2"),
            &os("--cache"),
            cache.as_os_str(),
            &os("--no-progress"),
        ],
    );
    let t = step(
        "nd-quantile",
        &[&os("--activations"), &os(&a), &os("--top"), &os("0.05")],
    );
    let m = step(
        "nd-segment",
        &[
            &os("--dataset"),
            data.as_os_str(),
            &os("--activations"),
            &os(&a),
            &os("--thresholds"),
            &os(&t),
        ],
    );
    let s = step(
        "nd-score",
        &[&os("--dataset"), data.as_os_str(), &os("--masks"), &os(&m)],
    );
    let out = dir.path().join("by-hand");
    let table = step(
        "nd-report",
        &[&os("--scores"), &os(&s), &os("--out"), out.as_os_str()],
    );
    assert!(table.starts_with("layer"), "{table}");
    assert!(out.join("summary.json").exists());
    let reports: Vec<PathBuf> = std::fs::read_dir(cache.join("report"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let pages = step(
        "nd-html",
        &[
            &os("--dataset"),
            data.as_os_str(),
            &os("--report"),
            reports[0].as_os_str(),
            &os("--title"),
            &os("tiny"),
        ],
    );
    assert!(Path::new(&pages).join("index.html").exists(), "{pages}");

    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "[dataset]\npath = \"data\"\n[cache]\ndir = \"cache\"\n[[model]]\nname = \"tiny\"\nfile = \"tiny.pt\"\n\
         layers = [\"conv1\", \"conv2\"]\n[quantile]\ntop = 0.05\n[output]\ndir = \"results\"\n",
    )
    .unwrap();
    expect(&netdissect(&pipeline, &[]), &[]);
    assert_eq!(
        std::fs::read(out.join("summary.json")).unwrap(),
        std::fs::read(dir.path().join("results/tiny/summary.json")).unwrap()
    );
}
