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
//!
//! The original mode (`receptive-field` upsampling, the `original` denominator, with and
//! without a tally depth) gets the same check, with `oracle.py --mode original`: see
//! `original_dissection_matches_the_numpy_oracle`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{model, netdissect, only_dir, python, repo};

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
    model(dir.path(), "tiny"); // tiny.pt, which the pipelines name
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

/// One `netdissect run` of the original-mode test: its pipeline file's stem, the dataset and
/// model sections, `[quantile] top`, the tally depth if any, and the models it dissects with
/// their number of layers.
struct OriginalRun {
    name: &'static str,
    cache: &'static str,
    dataset: &'static str,
    models: String,
    top: &'static str,
    tally_depth: Option<usize>,
    checks: &'static [(&'static str, usize)],
}

fn original_pipeline(run: &OriginalRun) -> String {
    let OriginalRun {
        name,
        cache,
        dataset,
        models,
        top,
        ..
    } = run;
    let depth = run
        .tally_depth
        .map(|d| format!("tally_depth = {d}\n"))
        .unwrap_or_default();
    format!(
        r#"
[dataset]
{dataset}

[cache]
dir = "{cache}"
{models}
[quantile]
top = {top}

[segment]
upsample = "receptive-field"

[score]
denominator = "original"
{depth}
[html]
pages = false

[output]
dir = "results-{name}"
"#
    )
}

/// The original mode checked against the oracle's `--mode original`, written from the rules
/// the README documents (receptive-field centres by the original's integer arithmetic, its
/// denominator, label 0's rules, the ranking by the exact IoU, the truncated tally), not
/// from the score and segment crates.
///
/// The geometries: the demo models (centres 0 + 2j, 4j and 8j label pixels on 32-pixel
/// label maps); make_models.py's `tiny` fed 128-pixel images, where conv1's stride 2 is
/// under r = 4 and the centres are scaled exactly (0 + 0.5j), and fed 80-pixel images,
/// where 80 / 32 = 2.5 rounds to r = 2 (half to even: rounding half up, r = 3 would scale
/// conv1 exactly and give other masks); the trained demo model fed 16-pixel images
/// (r = round(0.5) = 0, so 1), whose 1×1 maps fill the label map (full masks);
/// torchvision's AlexNet at 227 pixels (seeded random weights), whose 13×13
/// maps are centred at 7 + 8j of 113-pixel label maps, neither dividing the other. Two runs
/// set a tally depth under which intersections are dropped in some images (AlexNet at
/// 1,000, the 16-pixel demo model at 250 with top 0.1, where full masks and drops meet in
/// one image), each well above the most entries any image needs before its intersections.
#[test]
fn original_dissection_matches_the_numpy_oracle() {
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "tiny"); // tiny.pt, which the pipelines name
    let alexnet = dir.path().join("alexnet.pt");
    python(&[
        "python/export_torchvision.py",
        "alexnet",
        "--layers",
        "features.5,features.11",
        "--input-size",
        "227",
        "--out",
        alexnet.to_str().unwrap(),
    ]);
    let demo = repo().join("models/demo");
    let demo = demo.display();
    let demo_model = |name: &str, file: &str, layers: &str, preprocess: &str| {
        format!(
            "\n[[model]]\nname = \"{name}\"\nfile = \"{demo}/{file}\"\nlayers = [{layers}]\npreprocess = {preprocess}\n"
        )
    };
    let all = r#""conv1", "conv2", "conv3", "conv4", "conv5""#;
    let demo_16 = r#"{ preset = "torchvision", resize = [16, 16] }"#;
    let alexnet_model = r#"
[[model]]
name = "alexnet"
file = "alexnet.pt"
layers = ["features.5", "features.11"]
preprocess = "torchvision"
"#;
    let runs = [
        OriginalRun {
            name: "demo",
            cache: "cache-64",
            dataset: "synth = { images = 60, size = 64, seed = 5 }",
            models: [
                demo_model("demo-trained", "demo-trained.pt", all, "\"torchvision\""),
                demo_model("demo-random", "demo-random.pt", all, "\"torchvision\""),
                demo_model("demo-16", "demo-trained.pt", all, demo_16),
                r#"
[[model]]
name = "tiny-128"
file = "tiny.pt"
layers = ["conv1", "conv2"]
preprocess = { preset = "torchvision", resize = [128, 128] }

[[model]]
name = "tiny-80"
file = "tiny.pt"
layers = ["conv1", "conv2"]
preprocess = { preset = "torchvision", resize = [80, 80] }
"#
                .to_string(),
            ]
            .concat(),
            top: "0.005",
            tally_depth: None,
            checks: &[
                ("demo-trained", 5),
                ("demo-random", 5),
                ("demo-16", 5),
                ("tiny-128", 2),
                ("tiny-80", 2),
            ],
        },
        OriginalRun {
            name: "alexnet",
            cache: "cache-227",
            dataset: "synth = { images = 60, size = 227, seed = 7 }",
            models: alexnet_model.to_string(),
            top: "0.005",
            tally_depth: None,
            checks: &[("alexnet", 2)],
        },
        OriginalRun {
            name: "alexnet-depth",
            cache: "cache-227",
            dataset: "synth = { images = 60, size = 227, seed = 7 }",
            models: alexnet_model.to_string(),
            top: "0.005",
            tally_depth: Some(1000),
            checks: &[("alexnet", 2)],
        },
        OriginalRun {
            name: "demo-depth",
            cache: "cache-64",
            dataset: "synth = { images = 60, size = 64, seed = 5 }",
            models: demo_model("demo-16", "demo-trained.pt", r#""conv1", "conv2""#, demo_16),
            top: "0.1",
            tally_depth: Some(250),
            checks: &[("demo-16", 2)],
        },
    ];

    let mut exact: BTreeMap<String, u64> = BTreeMap::new();
    let mut truncated: BTreeMap<String, u64> = BTreeMap::new();
    for run in &runs {
        let pipeline_file = dir.path().join(format!("{}.toml", run.name));
        std::fs::write(&pipeline_file, original_pipeline(run)).unwrap();
        let done = netdissect(&pipeline_file, &[]);
        assert!(
            done.ok,
            "netdissect run {} failed:\n{}",
            run.name, done.stderr
        );
        let cache = dir.path().join(run.cache);
        let dataset = only_dir(&cache.join("synth")).join("dataset");
        for &(model, layers) in run.checks {
            let results = dir.path().join(format!("results-{}", run.name)).join(model);
            let summary = python(&[
                "tests/python/check_oracle.py",
                "--dataset",
                dataset.to_str().unwrap(),
                "--cache",
                cache.to_str().unwrap(),
                "--results",
                results.to_str().unwrap(),
                "--top",
                run.top,
            ]);
            let mode = match run.tally_depth {
                None => "original mode;".to_string(),
                Some(d) => format!("original mode with tally depth {d};"),
            };
            assert!(
                summary.contains(&format!("{model} agrees with the oracle: {layers} layers"))
                    && summary.contains(&mode),
                "{summary}"
            );
            println!("{}: {}", run.name, summary.trim());
            let counts = original_counts(&summary);
            if run.tally_depth.is_some() {
                // Each truncated run really drops intersections.
                assert!(counts["dropped entries"] > 0, "nothing dropped: {summary}");
            }
            let totals = if run.tally_depth.is_some() {
                &mut truncated
            } else {
                &mut exact
            };
            for (what, n) in counts {
                *totals.entry(what).or_default() += n;
            }
        }
    }
    println!("covered without a tally depth: {exact:?}");
    println!("covered with a tally depth: {truncated:?}");
    // The cases the rules must get right are really there, so a change to the models or the
    // dataset cannot make them disappear unnoticed.
    for what in [
        "dead units",
        "partly dead units",
        "category ties",
        "label ties",
        "units labelled 0 in a category",
        "full masks",
        "images repeating an image-level label",
        "repeated pixel labels",
    ] {
        assert!(
            exact[what] > 0,
            "no {what} without a tally depth: {exact:?}"
        );
    }
    assert_eq!(exact["dropped entries"], 0, "{exact:?}");
    for what in [
        "dropped entries",
        "depth cuts between equal counts",
        "depth cuts beside a full mask",
        "units labelled 0 overall",
    ] {
        assert!(
            truncated[what] > 0,
            "no {what} with a tally depth: {truncated:?}"
        );
    }
}

/// The counts in check_oracle.py's original-mode line, by what they count: "covers 2 dead
/// units, 455 partly dead units, ...; dropped E entries (P pixels) in I images" gives
/// {"dead units": 2, "partly dead units": 455, ..., "dropped entries": E, "dropped pixels":
/// P, "dropped images": I}.
fn original_counts(summary: &str) -> BTreeMap<String, u64> {
    let number = |text: &str| -> u64 {
        text.trim_matches(|c: char| c == '(' || c == ')')
            .parse()
            .unwrap_or_else(|_| panic!("no count in `{text}` of {summary}"))
    };
    let text = summary
        .split("covers ")
        .nth(1)
        .unwrap_or_else(|| panic!("no coverage in {summary}"));
    let (covers, dropped) = text
        .split_once("; dropped ")
        .unwrap_or_else(|| panic!("no dropped entries in {summary}"));
    let mut counts = BTreeMap::new();
    for part in covers.split(", ") {
        let (n, what) = part
            .split_once(' ')
            .unwrap_or_else(|| panic!("no count in `{part}` of {summary}"));
        counts.insert(what.to_string(), number(n));
    }
    let words: Vec<&str> = dropped.split_whitespace().collect();
    assert!(
        words.len() == 7 && words[1] == "entries" && words[3] == "pixels)" && words[6] == "images",
        "not `E entries (P pixels) in I images`: {summary}"
    );
    counts.insert("dropped entries".to_string(), number(words[0]));
    counts.insert("dropped pixels".to_string(), number(words[2]));
    counts.insert("dropped images".to_string(), number(words[5]));
    counts
}
