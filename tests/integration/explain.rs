//! `[explain]` end to end on a planted classifier: make_models.py's `classifier`, whose
//! colour units fire where the dataset names their colour and whose class scores are known
//! linear functions of the units' spatial means and maxima. Its explanations must be
//! exactly what the weights say, the NumPy reference (`tests/python/check_explain.py`)
//! must agree, and bad models and class files must fail before anything is computed.
//! `netdissect explain --html` draws each top unit's mask in an image exactly as the
//! dissection segments it.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, UInt32Type};

use crate::common::{Run, colour_pixels, model, netdissect, only_dir, python, repo};

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

/// `netdissect explain PIPELINE --model planted --top-n 3 --image ...`: (success, stdout,
/// stderr).
fn explain_command(pipeline: &Path, images: &[&str]) -> (bool, String, String) {
    explain_cli(pipeline, "planted", images, &["--top-n", "3"])
}

/// `netdissect explain PIPELINE --model MODEL EXTRA... --image ...`: (success, stdout,
/// stderr).
pub(crate) fn explain_cli(
    pipeline: &Path,
    model: &str,
    images: &[&str],
    extra: &[&str],
) -> (bool, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_netdissect"));
    command
        .arg("explain")
        .arg(pipeline)
        .args(["--model", model])
        .args(extra);
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

/// The text of `html` between `start` (the first after it) and the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.find(start).unwrap_or_else(|| panic!("no {start}")) + start.len();
    let to = html[from..].find(end).unwrap() + from;
    &html[from..to]
}

/// Whether a pixel lies on a mask's outline as the pages draw it (nd-html's `on_edge`): it
/// differs from a 4-neighbour, or it is in the mask at the map's edge.
fn on_edge(mask: &[bool], w: usize, h: usize, x: usize, y: usize) -> bool {
    let at = |x: usize, y: usize| mask[y * w + x];
    let m = at(x, y);
    (m && (x == 0 || y == 0 || x + 1 == w || y + 1 == h))
        || (x > 0 && at(x - 1, y) != m)
        || (y > 0 && at(x, y - 1) != m)
        || (x + 1 < w && at(x + 1, y) != m)
        || (y + 1 < h && at(x, y + 1) != m)
}

/// Checks that every unit's mask on an image page of `netdissect explain --html` is the
/// mask the segment artifact holds for `layer`, dataset row `row` and that unit: the runs
/// the page carries, and the overlay it shows (decoded: clear inside, dimmed outside, the
/// outline on both sides of the edge), at `size` (the label maps'). Returns the number of
/// masks checked and of those not empty.
pub(crate) fn check_page_masks(
    page: &Path,
    segment: &Path,
    layer: &str,
    row: usize,
    size: [usize; 2],
) -> (usize, usize) {
    use base64::Engine as _;
    let html = std::fs::read_to_string(page).unwrap();
    let group =
        nd_arrays::masks::MaskGroup::open(&segment.join(nd_arrays::masks::MASKS_DIR)).unwrap();
    let stored: BTreeMap<u32, Vec<[u32; 2]>> = group
        .open_layer(layer)
        .unwrap()
        .read_images(row as u64..row as u64 + 1)
        .unwrap()
        .remove(0)
        .into_iter()
        .map(|(unit, runs)| (unit, runs.iter().map(|r| [r.start, r.length]).collect()))
        .collect();
    let [h, w] = size;
    let (mut checked, mut nonempty) = (0, 0);
    for figure in html
        .split(r#"<figure class="pair unit-mask" data-unit=""#)
        .skip(1)
    {
        let unit: u32 = figure[..figure.find('"').unwrap()].parse().unwrap();
        let runs: Vec<[u32; 2]> =
            serde_json::from_str(between(figure, r#"data-runs=""#, "\"")).unwrap();
        let want = stored.get(&unit).cloned().unwrap_or_default();
        assert_eq!(runs, want, "{}: unit {unit}, row {row}", page.display());
        let mut mask = vec![false; h * w];
        for [start, length] in &want {
            mask[*start as usize..(start + length) as usize].fill(true);
        }
        let png = base64::engine::general_purpose::STANDARD
            .decode(between(figure, "data:image/png;base64,", "\""))
            .unwrap();
        let overlay = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
            .unwrap()
            .to_rgba8();
        assert_eq!(
            (overlay.height() as usize, overlay.width() as usize),
            (h, w)
        );
        for (i, pixel) in overlay.pixels().enumerate() {
            let (x, y) = (i % w, i / w);
            let alpha = if on_edge(&mask, w, h, x, y) {
                255
            } else if mask[i] {
                0
            } else {
                255 - 77
            };
            assert_eq!(
                pixel.0[3], alpha,
                "unit {unit}: pixel ({y}, {x}) of its overlay"
            );
        }
        checked += 1;
        nonempty += usize::from(!want.is_empty());
    }
    (checked, nonempty)
}

/// The segment artifact of the cache made with `upsample`.
fn segment_artifact(cache: &Path, upsample: &str) -> std::path::PathBuf {
    std::fs::read_dir(cache.join("segment"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p.join("manifest.json")).unwrap()).unwrap();
            manifest["params"]["upsample"] == upsample
        })
        .unwrap()
}

/// `netdissect explain --html` on dataset images of the demo model (conv5's 6×6 maps on
/// 48×48 label maps): every top unit's mask on the pages is exactly the segment artifact's
/// mask of that image and unit, with both upsamplings (bilinear, and the model's receptive
/// fields), so the pages' masks come from the dissection's own thresholds and upsampling.
/// Without report pages the units say why they are not linked; a folder that cannot take
/// the pages, and an image that fails after some pages were written, leave nothing.
#[test]
fn explained_image_pages_show_the_masks_the_dissection_segments() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo().join("models/demo");
    let pipeline = dir.path().join("pipeline.toml");
    let write = |upsample: &str| {
        std::fs::write(
            &pipeline,
            format!(
                "[dataset]\nsynth = {{ images = 24, size = 96, seed = 3 }}\n[cache]\ndir = \"cache\"\n\
                 [[model]]\nname = \"demo\"\nfile = \"{0}/demo-trained.pt\"\nlayers = [\"conv5\"]\n\
                 logits = \"logits\"\nclasses = \"{0}/scenes.txt\"\nbatch_size = 8\n\
                 [quantile]\ntop = 0.02\n[segment]\nupsample = \"{upsample}\"\n[html]\npages = false\n",
                demo.display()
            ),
        )
        .unwrap();
    };
    let pages = dir.path().join("pages");
    let pages_arg = pages.to_str().unwrap();
    let data = || {
        let synth = only_dir(&dir.path().join("cache/synth")).join("dataset");
        (
            nd_broden::Dataset::open(&synth, &Default::default()).unwrap(),
            synth,
        )
    };
    let rows = [0, 9, 17];
    for upsample in ["bilinear", "receptive-field"] {
        write(upsample);
        let run = netdissect(&pipeline, &[]);
        assert!(run.ok, "{}", run.stderr);
        let (dataset, root) = data();
        let images: Vec<String> = rows
            .iter()
            .map(|&r| {
                root.join(dataset.image_file(r))
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let images: Vec<&str> = images.iter().map(String::as_str).collect();
        let out = explain_cli(
            &pipeline,
            "demo",
            &images,
            &["--top-n", "8", "--html", pages_arg],
        );
        assert!(out.0, "{}", out.2);
        assert!(
            out.1
                .ends_with(&format!("pages: {}\n", pages.join("index.html").display())),
            "{}",
            out.1
        );
        let segment = segment_artifact(&dir.path().join("cache"), upsample);
        let (mut checked, mut nonempty) = (0, 0);
        for (i, &row) in rows.iter().enumerate() {
            let page = pages.join(format!("images/{:04}.html", i + 1));
            let (c, n) = check_page_masks(&page, &segment, "conv5", row, [48, 48]);
            assert_eq!(c, 8, "{}", page.display());
            checked += c;
            nonempty += n;
            let html = std::fs::read_to_string(&page).unwrap();
            assert!(html.contains("at layer conv5 (6×6:"), "{html}");
            assert!(html.contains("label maps&#39; 48×48"));
            assert!(html.contains(
                "not linked to their pages: the model&#39;s last run wrote no report pages"
            ));
            assert!(!html.contains("file://"));
        }
        assert_eq!(checked, 24);
        assert!(
            nonempty >= 3,
            "{upsample}: only {nonempty} masks are not empty"
        );
        let listed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(pages.join("explained.json")).unwrap())
                .unwrap();
        assert_eq!(listed["images"].as_array().unwrap().len(), rows.len());
        assert_eq!(listed["unit_pages"], false);
    }

    // Nothing is left where the pages cannot go, nor where an image fails.
    let (dataset, root) = data();
    let image = root.join(dataset.image_file(0));
    let image = image.to_str().unwrap();
    let leftovers = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect::<Vec<_>>()
    };
    let file = dir.path().join("taken");
    std::fs::write(&file, "mine").unwrap();
    let out = explain_cli(
        &pipeline,
        "demo",
        &[image],
        &["--html", file.to_str().unwrap()],
    );
    assert!(
        !out.0 && out.2.contains("a file is there, not a folder"),
        "{}",
        out.2
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "mine");
    let folder = dir.path().join("mine");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "keep").unwrap();
    let out = explain_cli(
        &pipeline,
        "demo",
        &[image],
        &["--html", folder.to_str().unwrap()],
    );
    assert!(
        !out.0 && out.2.contains("the folder holds other files"),
        "{}",
        out.2
    );
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 1);
    // Eight images (a batch: their pages are written) and then one that does not decode.
    let bad = dir.path().join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8 not a jpeg").unwrap();
    let batch: Vec<String> = (0..8)
        .map(|r| {
            root.join(dataset.image_file(r))
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut images: Vec<&str> = batch.iter().map(String::as_str).collect();
    images.push(bad.to_str().unwrap());
    let fresh = dir.path().join("fresh");
    let out = explain_cli(
        &pipeline,
        "demo",
        &images,
        &["--html", fresh.to_str().unwrap()],
    );
    assert!(
        !out.0 && out.2.contains("bad.jpg: cannot decode"),
        "{}",
        out.2
    );
    assert!(!fresh.exists());
    // An earlier folder of pages is replaced whole; the failures left no temporary folder.
    let out = explain_cli(&pipeline, "demo", &[image], &["--html", pages_arg]);
    assert!(out.0, "{}", out.2);
    assert!(pages.join("images/0001.html").is_file());
    assert!(!pages.join("images/0002.html").exists());
    assert_eq!(leftovers(), Vec::<String>::new());
}
