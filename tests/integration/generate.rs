//! GAN dissection through `netdissect run`: a pipeline's `[[generator]]` (the planted
//! generator and segmenter of `tests/python/planted_gan.py`, no `[dataset]`) is generated,
//! dissected and reported like a model, each planted unit labelled with its shape; its
//! mistakes name their line; the Snakemake workflow gives the artifacts `netdissect run`
//! gives, interventions included.

use std::path::Path;

use crate::common;

/// The planted models in `dir`.
fn planted(dir: &Path) {
    common::python(&["tests/python/planted_gan.py", dir.to_str().unwrap()]);
}

fn pipeline(dir: &Path, generator: &str) -> std::path::PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            r#"[cache]
dir = "cache"

[[generator]]
name = "planted-gan"
{generator}
layers = ["planted", "coarse"]
samples = 60
seed = 2
batch_size = 16

[quantile]
top = 0.01

[html]
top_images = 3

[output]
dir = "results"
"#
        ),
    )
    .unwrap();
    path
}

/// The planted pipeline with `sections` appended: its path and text.
fn pipeline_with(dir: &Path, sections: &str) -> (std::path::PathBuf, String) {
    let path = pipeline(dir, FILES);
    let text = std::fs::read_to_string(&path).unwrap() + sections;
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

const FILES: &str = r#"file = "models/generator.pt"
segmenter = "models/segmenter.pt"
segmenter_labels = "models/labels.csv""#;

#[test]
fn a_generator_is_dissected_like_a_model_and_its_units_get_their_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    planted(&d.join("models"));
    let run = common::netdissect(&pipeline(d, FILES), &[]);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("stage generate"), "{}", run.stderr);
    assert!(run.stdout.starts_with("planted-gan\n"), "{}", run.stdout);
    assert!(run.stdout.contains("\nplanted "), "{}", run.stdout);
    assert!(run.stdout.contains("\ncoarse "), "{}", run.stdout);
    let results = d.join("results/planted-gan");
    assert!(results.join("html/index.html").is_file());

    // Each planted unit's label is its shape, in both layers.
    let units = nd_tables::read(&results.join("units.parquet")).unwrap();
    let layers = nd_tables::strings(&units, "layer").unwrap();
    let names = nd_tables::strings(&units, "name").unwrap();
    let numbers = nd_tables::values::<arrow::datatypes::UInt32Type>(&units, "unit").unwrap();
    for layer in ["planted", "coarse"] {
        let labels: Vec<(u32, &str)> = (0..layers.len())
            .filter(|&i| layers[i] == layer)
            .map(|i| (numbers[i], names[i].as_str()))
            .collect();
        assert_eq!(
            labels,
            [(0, "square"), (1, "bar"), (2, "pole"), (3, "dot")],
            "{layer}"
        );
    }

    // The same again: everything cached.
    let again = common::netdissect(&pipeline(d, FILES), &[]);
    assert!(again.ok, "{}", again.stderr);
    assert!(!again.stderr.contains(" computed "), "{}", again.stderr);

    // The workflow reads the generator as run does: every value spelled out.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .arg("config")
        .arg(d.join("pipeline.toml"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(config["dataset"], serde_json::Value::Null);
    let g = &config["generators"][0];
    assert_eq!(g["name"], "planted-gan");
    assert_eq!(g["layers"], serde_json::json!(["planted", "coarse"]));
    assert_eq!(
        (g["samples"].as_u64(), g["seed"].as_u64()),
        (Some(60), Some(2))
    );
    assert!(
        Path::new(g["segmenter"].as_str().unwrap()).is_absolute(),
        "{g}"
    );
}

#[test]
fn generator_mistakes_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    planted(&d.join("models"));
    for (generator, says) in [
        (
            FILES.replace("models/segmenter.pt", "models/nope.pt"),
            "pipeline.toml:7:",
        ),
        (
            FILES.replace("models/labels.csv", "models/nope.csv"),
            "segmenter_labels",
        ),
        (format!("{FILES}\nsegment = 1"), "unknown field `segment`"),
    ] {
        let run = common::netdissect(&pipeline(d, &generator), &[]);
        assert!(!run.ok);
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
        assert!(!d.join("cache/generate").exists(), "{}", run.stderr);
    }
    // A layer the generator does not have: named before anything is written.
    let path = pipeline(d, FILES);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(r#"["planted", "coarse"]"#, r#"["planted", "conv9"]"#);
    std::fs::write(&path, text).unwrap();
    let run = common::netdissect(&path, &[]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("generator `planted-gan`") && run.stderr.contains("no layer `conv9`"),
        "{}",
        run.stderr
    );
    assert!(!d.join("cache/generate").exists());
    // A model needs a dataset; a generator does not.
    std::fs::write(
        &path,
        "[[model]]\nname = \"m\"\nfile = \"models/generator.pt\"\nlayers = [\"planted\"]\n",
    )
    .unwrap();
    let run = common::netdissect(&path, &[]);
    assert!(
        !run.ok && run.stderr.contains("no [dataset]"),
        "{}",
        run.stderr
    );
}

/// `nd-intervene` on the planted dissection's scores with the generator `generator` of the
/// planted models; (ok, stdout, stderr).
fn intervene(d: &Path, scores: &Path, generator: &str, extra: &[&str]) -> (bool, String, String) {
    let m = |f: &str| d.join("models").join(f).display().to_string();
    let output = std::process::Command::new(crate::workflow::bin_dir().join("nd-intervene"))
        .args(["--scores", scores.to_str().unwrap()])
        .args([
            "--generator",
            &m(generator),
            "--segmenter",
            &m("segmenter.pt"),
        ])
        .args(["--segmenter-labels", &m("labels.csv"), "--layer", "planted"])
        .args(["--samples", "60", "--draws", "3", "--device", "cpu"])
        .args(extra)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn ablating_a_shapes_unit_removes_it_and_inserting_it_draws_it_in_the_region() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    planted(&d.join("models"));
    // [intervene] in the pipeline, then the same by nd-intervene: one artifact.
    let (path, _) = pipeline_with(
        d,
        "\n[intervene]\nlayer = \"planted\"\nconcepts = [\"square\", \"dot\"]\nks = [1, 2]\n\
         samples = 60\ndraws = 3\nregion = [0.0, 0.0, 0.5, 0.5]\n",
    );
    let run = common::netdissect(&path, &[]);
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stderr.contains("stage intervene"), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("interventions in planted over 60 samples")
            && run.stdout.contains("\ninterventions: ")
            && run.stdout.contains("results/planted-gan/intervene\n"),
        "{}",
        run.stdout
    );
    assert!(
        d.join("results/planted-gan/intervene/interventions.parquet")
            .is_file()
    );
    let scores = common::only_dir(&d.join("cache/score"));
    // The square (unit 0) fills the grid's top-left quadrant; the dot (unit 3) lies in the
    // bottom-right one.
    let (ok, stdout, stderr) = intervene(
        d,
        &scores,
        "generator.pt",
        &[
            "--concepts",
            "square,dot",
            "--ks",
            "1,2",
            "--region",
            "0,0,0.5,0.5",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["square", "ablate", "1"])),
        "{stdout}"
    );
    let artifact = common::only_dir(&d.join("cache/intervene"));
    let table = nd_tables::read(&artifact.join("interventions.parquet")).unwrap();
    let concept = nd_tables::strings(&table, "concept").unwrap();
    let mode = nd_tables::strings(&table, "mode").unwrap();
    let choice = nd_tables::strings(&table, "choice").unwrap();
    let k = nd_tables::values::<arrow::datatypes::UInt32Type>(&table, "k").unwrap();
    let before = nd_tables::values::<arrow::datatypes::Float64Type>(&table, "before").unwrap();
    let after = nd_tables::values::<arrow::datatypes::Float64Type>(&table, "after").unwrap();
    // 2 concepts × 2 modes × 2 ks × (top + 3 draws).
    assert_eq!(table.num_rows(), 32);
    let find = |c: &str, m: &str, kk: u32| {
        (0..table.num_rows())
            .find(|&i| concept[i] == c && mode[i] == m && choice[i] == "top" && k[i] == kk)
            .unwrap()
    };
    for c in ["square", "dot"] {
        // Ablating the concept's top unit (its own) removes every pixel of its shape.
        let i = find(c, "ablate", 1);
        assert!(before[i] > 0.0, "{c} is drawn in some samples");
        assert_eq!(after[i], 0.0, "{c}: ablated");
    }
    // Inserting a shape's unit in the top-left quadrant draws its colour over all of it, so
    // the segmenter sees the shape's concept on the whole region (inside share 1), and
    // nothing changes outside it: the square where it was drawn half the time, the dot
    // where it never is.
    use arrow::array::AsArray;
    let nullable = |name: &str| {
        table
            .column_by_name(name)
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>()
            .clone()
    };
    let (outside_before, outside_after) = (nullable("outside_before"), nullable("outside_after"));
    let outside_before = |i: usize| outside_before.value(i);
    let outside_after = |i: usize| outside_after.value(i);
    let i = find("square", "insert", 1);
    assert!(before[i] > 0.0 && before[i] < 1.0, "{}", before[i]);
    assert_eq!(after[i], 1.0);
    assert_eq!((outside_before(i), outside_after(i)), (0.0, 0.0));
    let i = find("dot", "insert", 1);
    assert_eq!((before[i], after[i]), (0.0, 1.0));
    assert!(outside_before(i) > 0.0);
    assert_eq!(outside_after(i), outside_before(i));
    assert!(artifact.join("grids/square-ablate.png").is_file());
    assert!(artifact.join("grids/dot-insert.png").is_file());
    let page = std::fs::read_to_string(artifact.join("index.html")).unwrap();
    assert!(
        page.contains("<img src=\"grids/square-ablate.png\"") && page.contains("<td>square</td>"),
        "{page}"
    );

    // The files must be the dissection's; the concepts the segmenter's.
    let (ok, _, stderr) = intervene(d, &scores, "segmenter.pt", &["--concepts", "square"]);
    assert!(
        !ok && stderr.contains("is not the generator the dissection's samples were generated with"),
        "{stderr}"
    );
    let (ok, _, stderr) = intervene(d, &scores, "generator.pt", &["--concepts", "tree"]);
    assert!(
        !ok && stderr
            .contains("concept `tree` is not one the segmenter names (square, bar, pole, dot)"),
        "{stderr}"
    );
}

/// The manifest key of an artifact's record or copy (its `manifest.json`).
fn key_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["key"].as_str().unwrap().to_owned()
}

#[test]
fn the_workflow_generates_dissects_and_intervenes_like_netdissect_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    planted(&d.join("models"));
    let (path, text) = pipeline_with(
        d,
        "\n[formulas]\nmax_length = 2\n\n[intervene]\nlayer = \"planted\"\n\
         concepts = [\"square\"]\nks = [1, 2]\nsamples = 30\ndraws = 2\n",
    );
    let run = common::netdissect(&path, &[]);
    assert!(run.ok, "{}", run.stderr);

    // The same pipeline through Snakemake, on a cache and results of its own; image shards
    // split a model's images, a generator's samples are one shard.
    let other = d.join("workflow.toml");
    std::fs::write(
        &other,
        text.replace("dir = \"cache\"", "dir = \"cache-wf\"")
            .replace("dir = \"results\"", "dir = \"results-wf\""),
    )
    .unwrap();
    let output = crate::workflow::snakemake(d, &other, &["image_shards=2"], &[])
        .output()
        .unwrap();
    let log = crate::workflow::succeeded(&output, "snakemake");
    for rule in [
        "generate",
        "quantile",
        "segment",
        "score_whole",
        "formulas",
        "report",
    ] {
        assert!(log.contains(&format!("rule {rule}:")), "{rule}: {log}");
    }
    // Content-addressed: the same keys are the same inputs and settings, stage by stage.
    let records = d.join("records/planted-gan");
    let results = d.join("results/planted-gan");
    assert_eq!(
        key_of(&records.join("report.json")),
        key_of(&results.join("manifest.json"))
    );
    assert_eq!(
        key_of(&records.join("intervene.json")),
        key_of(&results.join("intervene/manifest.json"))
    );
    let copy = d.join("results-wf/planted-gan");
    for file in [
        "units.parquet",
        "intervene/interventions.parquet",
        "intervene/summary.json",
    ] {
        assert_eq!(
            std::fs::read(copy.join(file)).unwrap(),
            std::fs::read(results.join(file)).unwrap(),
            "{file}"
        );
    }
    assert!(copy.join("html/index.html").is_file());
    assert!(d.join("results-wf/index.html").is_file());
}

/// The bundled GAN-dissection demo (models/gan) keeps its contracts: checksums, the label
/// file, the segmenter's output shape, the generator's records, forward_from equal to the
/// forward, samples independent of their batch, samples.png the grid of its seed, and
/// objects the segmenter finds in the samples (tests/python/test_gan_demo.py).
#[test]
fn the_bundled_gan_demo_keeps_its_contracts() {
    let out = common::python(&["tests/python/test_gan_demo.py"]);
    assert!(out.contains("test_gan_demo: ok"), "{out}");
}
