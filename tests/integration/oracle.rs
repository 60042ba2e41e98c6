//! The lite dissection checked against an independent reference: `tests/python/oracle.py`,
//! written from METHOD.md alone in NumPy, recomputes every threshold, mask, count and IoU
//! from the cached activations, and NetDissect-Lite's tally.csv rows from its rules, and
//! `tests/python/check_oracle.py` compares them with the Rust tables and tally files.
//!
//! The models cover the geometries that matter: the trained and random demo models (maps of
//! 16, 8 and 4 cells upsampled to 32-pixel label maps), and make_models.py's `tiny` fed
//! 56- and 72-pixel images, whose 28/14- and 36/18-cell maps meet the label size at
//! non-integer scales, once above it and once below. The demo models have units whose best
//! IoUs tie across categories (a part and its material share their pixels), units that
//! overlap no concept and units that overlap no label of some categories, so the tie rules
//! and NetDissect-Lite's label 0 are exercised too; the test checks that they still do.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{python, repo};

const TOP: &str = "0.005";

fn pipeline(demo: &Path) -> String {
    let demo = demo.display();
    format!(
        r#"
[dataset]
synth = {{ images = 60, size = 64, seed = 5 }}

[cache]
dir = "cache"

[[model]]
name = "demo-trained"
file = "{demo}/demo-trained.pt"
layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
preprocess = "torchvision"

[[model]]
name = "demo-random"
file = "{demo}/demo-random.pt"
layers = ["conv1", "conv2", "conv3", "conv4", "conv5"]
preprocess = "torchvision"

[[model]]
name = "tiny-56"
file = "tiny.pt"
layers = ["conv1", "conv2"]
preprocess = {{ preset = "torchvision", resize = [56, 56] }}

[[model]]
name = "tiny-72"
file = "tiny.pt"
layers = ["conv1", "conv2"]
preprocess = {{ preset = "torchvision", resize = [72, 72] }}

[quantile]
top = {TOP}

[segment]
upsample = "bilinear"

[score]
denominator = "lite"

[output]
dir = "results"
"#
    )
}

#[test]
fn lite_dissection_matches_the_numpy_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.pt");
    python(&[
        "tests/python/make_models.py",
        "tiny",
        tiny.to_str().unwrap(),
    ]);
    let pipeline_file = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline_file, pipeline(&repo().join("models/demo"))).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .arg("run")
        .arg(&pipeline_file)
        .arg("--no-progress")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "netdissect run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The synthetic dataset lives in the cache, as the synth stage's one artifact.
    let cache = dir.path().join("cache");
    let synth: Vec<PathBuf> = std::fs::read_dir(cache.join("synth"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(synth.len(), 1, "{synth:?}");
    let dataset = synth[0].join("dataset");

    // Dead units, partly dead units, category ties, ties Lite's 1e-10 breaks: all models.
    let mut covered = [0u64; 4];
    for (model, layers) in [
        ("demo-trained", 5),
        ("demo-random", 5),
        ("tiny-56", 2),
        ("tiny-72", 2),
    ] {
        let results = dir.path().join("results").join(model);
        let summary = python(&[
            "tests/python/check_oracle.py",
            "--dataset",
            dataset.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--results",
            results.to_str().unwrap(),
            "--top",
            TOP,
        ]);
        assert!(
            summary.contains(&format!("{model} agrees with the oracle: {layers} layers")),
            "{summary}"
        );
        println!("{}", summary.trim());
        let coverage = coverage(&summary);
        for (total, n) in covered.iter_mut().zip(coverage) {
            *total += n;
        }
    }
    println!(
        "covered: {} dead units, {} partly dead units, {} category ties, {} lite ties",
        covered[0], covered[1], covered[2], covered[3]
    );
    // The cases tally.csv and the tie rules must get right are really there, so a change to
    // the models or the dataset cannot make them disappear unnoticed.
    assert!(covered[0] > 0, "no unit that overlaps no concept");
    assert!(
        covered[1] > 0,
        "no unit that overlaps no label of some categories only"
    );
    assert!(
        covered[2] > 0,
        "no unit whose best IoU ties across categories"
    );
}

/// The counts in check_oracle.py's line: "covers A dead units, B partly dead units, C
/// category ties, D lite ties".
fn coverage(summary: &str) -> [u64; 4] {
    let text = summary
        .split("covers ")
        .nth(1)
        .unwrap_or_else(|| panic!("no coverage in {summary}"));
    let numbers: Vec<u64> = text
        .split(", ")
        .map(|part| {
            part.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in `{part}` of {summary}"))
        })
        .collect();
    numbers
        .try_into()
        .unwrap_or_else(|_| panic!("not four counts in {summary}"))
}
