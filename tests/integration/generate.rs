//! GAN dissection through `netdissect run`: a pipeline's `[[generator]]` (the planted
//! generator and segmenter of `tests/python/planted_gan.py`, no `[dataset]`) is generated,
//! dissected and reported like a model, each planted unit labelled with its shape; its
//! mistakes name their line; the workflow says it does not run generators yet.

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

    // The workflow does not run generators yet, and says so.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .arg("config")
        .arg(d.join("pipeline.toml"))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && err.contains("does not run [[generator]]s yet"),
        "{err}"
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
