//! `[explain]` end to end on a planted classifier: make_models.py's `classifier`, whose
//! colour units fire where the dataset names their colour and whose class scores are known
//! linear functions of the units' spatial means and maxima. Its explanations must be
//! exactly what the weights say, the NumPy reference (`tests/python/check_explain.py`)
//! must agree, and bad models and class files must fail before anything is computed.

use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, UInt32Type};

use crate::common::{Run, colour_pixels, model, netdissect, only_dir, python};

/// The classifier's weights on the units' means (tests/python/make_models.py); a unit with
/// no weight for a class (mean or max) can contribute nothing to it.
const MEAN: [[f64; 11]; 3] = [
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.5],
    [0.0, 1.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0],
    [1.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25, 0.0],
];
const CLASSES: [&str; 3] = ["warm", "nature", "dark"];

/// A dataset of 60 synthetic 64-pixel images, and a pipeline explaining `kind` with the
/// class names `classes` (and `extra` appended).
pub(crate) fn setup(dir: &Path, kind: &str, classes: &[&str], extra: &str) -> std::path::PathBuf {
    model(dir, kind);
    let data = dir.join("data");
    if !data.exists() {
        let config = nd_synth::Config {
            seed: 5,
            images: 60,
            image_size: 64,
            format: nd_synth::ImageFormat::Png,
            ..Default::default()
        };
        nd_synth::generate(&data, &config).unwrap();
    }
    let dataset = nd_broden::Dataset::open(&data, &Default::default()).unwrap();
    let (pixels, total) = colour_pixels(&dataset);
    let largest = pixels
        .iter()
        .map(|&p| p as f64 / total as f64)
        .fold(0.0, f64::max);
    std::fs::write(dir.join("classes.txt"), classes.join("\n") + "\n").unwrap();
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[dataset]\npath = \"data\"\n[cache]\ndir = \"cache\"\n[[model]]\nname = \"planted\"\n\
             file = \"{kind}.pt\"\nlayers = [\"colors\"]\nlogits = \"logits\"\nclasses = \"classes.txt\"\n\
             [quantile]\ntop = {}\n[html]\npages = false\n[explain]\ntop_n = 11\nablate = [1, 2, 4, 8]\n\
             random_draws = 3\n{extra}\n[output]\ndir = \"results\"\n",
            (largest + 0.01).min(0.5)
        ),
    )
    .unwrap();
    pipeline
}

/// Whether the run's explain stage of the model `planted` says `what` (computed, fresh).
fn stage(run: &Run, what: &str) -> bool {
    run.stderr.lines().any(|l| {
        l.split_whitespace().take(4).collect::<Vec<_>>()[..]
            == ["stage", "explain", "planted", what]
    })
}

fn failed(run: &Run, needle: &str, dir: &Path) {
    assert!(!run.ok, "the run succeeded:\n{}", run.stdout);
    assert!(run.stderr.contains(needle), "{needle}\n{}", run.stderr);
    assert!(
        !dir.join("cache/extract").exists(),
        "a bad [explain] must fail before any extraction"
    );
}

#[test]
fn planted_classifier_explanations_are_exactly_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = setup(dir.path(), "classifier", &CLASSES, "");
    let run = netdissect(&pipeline, &[]);
    assert!(run.ok, "{}", run.stderr);
    assert!(stage(&run, "computed"), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("explain: predictions by the units of colors"),
        "{}",
        run.stdout
    );

    let explain = only_dir(&dir.path().join("cache/explain"));
    let table = nd_tables::read(&explain.join("explanations.parquet")).unwrap();
    let names = nd_tables::strings(&table, "class_name").unwrap();
    let classes = nd_tables::values::<UInt32Type>(&table, "class").unwrap();
    let units = nd_tables::values::<UInt32Type>(&table, "unit").unwrap();
    let contributions = nd_tables::values::<Float64Type>(&table, "contribution").unwrap();
    let labels = table.column_by_name("label").unwrap();
    let labels = labels.as_dictionary::<arrow::datatypes::Int32Type>();
    let label_names = labels.values().as_string::<i32>();
    assert_eq!(
        table.num_rows(),
        60 * 11,
        "every image, its top class, all 11 units"
    );
    let data = nd_broden::Dataset::open(&dir.path().join("data"), &Default::default()).unwrap();
    let mut labelled = 0;
    for i in 0..table.num_rows() {
        let (c, u) = (classes[i] as usize, units[i] as usize);
        assert_eq!(names[i], CLASSES[c]);
        // No weight, no gradient: exactly nothing.
        let weighted = MEAN[c][u] != 0.0;
        if !weighted {
            assert_eq!(contributions[i], 0.0, "class {c} unit {u}");
        }
        // Each planted unit carries its colour's label from the dissection.
        if !labels.is_null(i) {
            let name = label_names.value(labels.keys().value(i) as usize);
            assert_eq!(name, data.label_name(u as u32 + 1), "unit {u}");
            labelled += 1;
        }
    }
    assert!(labelled > 0);

    // The NumPy reference: contributions, shares, scores, maps and ablations.
    let extract = only_dir(&dir.path().join("cache/extract"));
    let out = python(&[
        "tests/python/check_explain.py",
        explain.to_str().unwrap(),
        extract.to_str().unwrap(),
        dir.path().join("classifier.pt").to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["blocks"], 60);

    // The weight baseline applies (mean and max pooling, then a linear layer), and the
    // top units beat random ones.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(explain.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["head_linear_after_pooling"], true, "{summary}");
    let ablation = &summary["ablation"][0];
    assert!(
        ablation["top_drop"].as_f64().unwrap() > ablation["random_drop"].as_f64().unwrap(),
        "{summary}"
    );
    assert!(
        dir.path()
            .join("results/planted/explain/explanations.parquet")
            .is_file()
    );

    // Cached: the second run explains nothing again.
    let again = netdissect(&pipeline, &[]);
    assert!(stage(&again, "fresh"), "{}", again.stderr);

    // `netdissect explain --image` on a dataset image prints the stage's numbers for it.
    let first = data.image_file(0);
    let image = dir.path().join("data").join(&first);
    let out = explain_command(&pipeline, &[image.to_str().unwrap()]);
    assert!(out.0, "{}", out.2);
    let (i, class) = (0, classes[0] as usize);
    assert_eq!(
        nd_tables::strings(&table, "image").unwrap()[i],
        data.image(0)
    );
    let predicted = format!("predicted 1: {}", CLASSES[class]);
    assert!(out.1.contains(&predicted), "{predicted}\n{}", out.1);
    let shares = nd_tables::values::<Float64Type>(&table, "share").unwrap();
    let first_row = format!(
        "1  {:>4}  {}",
        units[i],
        label_names.value(labels.keys().value(i) as usize)
    );
    let share = format!("{:.1} %", 100.0 * shares[i]);
    let line = out
        .1
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or("");
    assert!(
        line.contains(first_row.trim_start_matches("1  ").trim()) && line.ends_with(&share),
        "{first_row} … {share}\n{}",
        out.1
    );
    // An image that does not decode is named.
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8 not a jpeg").unwrap();
    let out = explain_command(&pipeline, &[bad.to_str().unwrap()]);
    assert!(
        !out.0 && out.2.contains("bad.jpg: cannot decode"),
        "{}",
        out.2
    );
}

/// `netdissect explain PIPELINE --model planted --image ...`: (success, stdout, stderr).
fn explain_command(pipeline: &Path, images: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_netdissect"));
    command
        .arg("explain")
        .arg(pipeline)
        .args(["--model", "planted", "--top-n", "3"]);
    for image in images {
        command.args(["--image", image]);
    }
    let output = command.env_remove("LD_LIBRARY_PATH").output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_models_and_class_files_fail_before_extraction() {
    let dir = tempfile::tempdir().unwrap();
    // Class scores of another length than the names.
    let pipeline = setup(dir.path(), "classifier", &CLASSES, "");
    // Not dissected yet.
    let out = explain_command(&pipeline, &["x.jpg"]);
    assert!(
        !out.0
            && out
                .2
                .contains("model `planted` has not been dissected in the cache"),
        "{}",
        out.2
    );
    let pipeline = setup(dir.path(), "classifier", &CLASSES[..2], "");
    failed(
        &netdissect(&pipeline, &[]),
        "has 2 names but the model's `logits` has 3 classes",
        dir.path(),
    );
    // No intervention method.
    let pipeline = setup(dir.path(), "classifier-nointervention", &CLASSES, "");
    failed(
        &netdissect(&pipeline, &[]),
        "no intervention record (netdissect-intervention.json)",
        dir.path(),
    );
    // No class scores.
    let pipeline = setup(dir.path(), "planted", &CLASSES, "");
    failed(
        &netdissect(&pipeline, &[]),
        "no intervention record",
        dir.path(),
    );
    // A layer that is not dissected, a model that gives no logits.
    let pipeline = setup(dir.path(), "classifier", &CLASSES, "layer = \"conv9\"");
    failed(
        &netdissect(&pipeline, &[]),
        "explain.layer `conv9` is not among model `planted`'s layers",
        dir.path(),
    );
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("layer = \"conv9\"", "")
        .replace("logits = \"logits\"\n", "");
    std::fs::write(&pipeline, text).unwrap();
    failed(
        &netdissect(&pipeline, &[]),
        "[explain] has no model to explain",
        dir.path(),
    );
    // A class-names file with an empty line.
    std::fs::write(dir.path().join("classes.txt"), "warm\n\ndark\n").unwrap();
    let pipeline = setup(dir.path(), "classifier", &[], "");
    std::fs::write(dir.path().join("classes.txt"), "warm\n\ndark\n").unwrap();
    failed(
        &netdissect(&pipeline, &[]),
        "line 2: empty class name",
        dir.path(),
    );
}

/// A torchvision classifier exported with `--logits` (seeded ResNet-18, 10 classes) is
/// explained end to end through its `forward_from`: from `layer4`, whose head is a global
/// average pooling and a linear layer, the contributions are exact and the weight baseline
/// applies; from `layer3`, with `layer4` in between, the head is not linear after pooling
/// and the baseline is left out.
#[test]
fn a_torchvision_export_is_explained_through_its_intervention_method() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("r18.pt");
    python(&[
        "python/export_torchvision.py",
        "resnet18",
        "--layers",
        "layer3,layer4",
        "--logits",
        "--num-classes",
        "10",
        "--input-size",
        "64",
        "--out",
        model.to_str().unwrap(),
    ]);
    let pipeline = dir.path().join("pipeline.toml");
    let text = |layer: &str| {
        format!(
            "[dataset]\nsynth = {{ images = 24, size = 64, seed = 2 }}\n[cache]\ndir = \"cache\"\n\
             [[model]]\nname = \"r18\"\nfile = \"r18.pt\"\nlayers = [\"layer3\", \"layer4\"]\n\
             logits = \"logits\"\nbatch_size = 8\n[html]\npages = false\n[explain]\nlayer = \"{layer}\"\n\
             top_k = 2\nablate = [1, 4]\nrandom_draws = 2\n"
        )
    };
    for (layer, linear) in [("layer4", true), ("layer3", false)] {
        std::fs::write(&pipeline, text(layer)).unwrap();
        let run = netdissect(&pipeline, &[]);
        assert!(run.ok, "{}", run.stderr);
        let explain = dir.path().join("cache/explain");
        let artifact = std::fs::read_dir(&explain)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                std::fs::read_to_string(p.join("summary.json"))
                    .is_ok_and(|s| s.contains(&format!("\"layer\": \"{layer}\"")))
            })
            .unwrap();
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(artifact.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(
            summary["head_linear_after_pooling"], linear,
            "{layer}: {summary}"
        );
        assert!(
            summary["intervention_deviation"].as_f64().unwrap() < 1e-5,
            "{summary}"
        );
        let table = nd_tables::read(&artifact.join("explanations.parquet")).unwrap();
        // 24 images, 2 classes each, 10 units each; classes numbered without names.
        assert_eq!(table.num_rows(), 24 * 2 * 10);
        assert!(nd_tables::strings(&table, "class_name").unwrap()[0].starts_with("class "));
        let faithfulness = nd_tables::read(&artifact.join("faithfulness.parquet")).unwrap();
        let methods = nd_tables::strings(&faithfulness, "method").unwrap();
        assert_eq!(
            methods.contains(&"weight".to_owned()),
            linear,
            "{methods:?}"
        );
    }
}
