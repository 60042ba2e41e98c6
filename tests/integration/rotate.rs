//! The rotation control end to end on the planted model (tests/python/make_models.py's
//! `planted`, whose unit i fires exactly where the synthetic dataset names colour i):
//! extract, rotate, then quantile, segment and score as libraries, unchanged.
//!
//! A permutation of the units moves every detector to its permuted unit with exactly its
//! IoUs; a random rotation lowers the unique detectors; the NumPy reference
//! (tests/python/check_rotate.py) recomputes the rotated activations from the stored
//! matrix; bad input fails naming what to fix, before anything is written.

use nalgebra::DMatrix;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::common::{colour_pixels, model, netdissect, python};

const LAYER: &str = "colors";
const UNITS: usize = 11;
/// The paper's detector threshold.
const IOU: f64 = 0.04;

struct Setup {
    dir: tempfile::TempDir,
    store: nd_store::Store,
    dataset: nd_broden::Dataset,
    extract: nd_store::Artifact,
    /// The quantile's `top`: just above the largest colour's share of the pixels, so that
    /// a planted unit's top activations cover all of its colour.
    top: f64,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path(), "planted");
    let data = dir.path().join("data");
    let config = nd_synth::Config {
        seed: 5,
        images: 40,
        image_size: 64,
        format: nd_synth::ImageFormat::Png,
        ..Default::default()
    };
    nd_synth::generate(&data, &config).unwrap();
    let dataset = nd_broden::Dataset::open(&data, &Default::default()).unwrap();
    let (pixels, total) = colour_pixels(&dataset);
    let largest = pixels
        .iter()
        .map(|&p| p as f64 / total as f64)
        .fold(0.0, f64::max);
    let store = nd_store::Store::open(&dir.path().join("cache")).unwrap();
    let mut extract = nd_extract::Config::new(
        model,
        vec![LAYER.to_owned()],
        nd_extract::Preprocess::torchvision(),
    );
    extract.device = nd_extract::DeviceChoice::Cpu;
    extract.progress = false;
    let extract = nd_extract::run(&store, &dataset, &extract)
        .unwrap()
        .artifact;
    Setup {
        dir,
        store,
        dataset,
        extract,
        top: (largest + 0.01).min(0.5),
    }
}

/// Each unit's IoU with each label (`(unit, label) → iou`), dissecting `activations`.
fn dissect(s: &Setup, activations: &nd_store::Artifact) -> BTreeMap<(u32, u32), f64> {
    ious(&scores(s, activations))
}

/// The score artifact of `activations`.
fn scores(s: &Setup, activations: &nd_store::Artifact) -> nd_store::Artifact {
    let thresholds = nd_quantile::run(
        &s.store,
        std::slice::from_ref(activations),
        &nd_quantile::Config {
            top: s.top,
            ..Default::default()
        },
    )
    .unwrap()
    .artifact;
    let masks = nd_segment::run(
        &s.store,
        &s.dataset,
        activations,
        &thresholds,
        &nd_segment::Config {
            upsample: nd_segment::Upsample::Bilinear,
            fields: nd_arrays::fields::Fields::Model,
            progress: false,
        },
    )
    .unwrap()
    .artifact;
    nd_score::run(&s.store, &s.dataset, &masks, &Default::default())
        .unwrap()
        .artifact
}

fn ious(scores: &nd_store::Artifact) -> BTreeMap<(u32, u32), f64> {
    nd_tables::scores::read_rows(&scores.dir.join(nd_tables::scores::FILE))
        .unwrap()
        .into_iter()
        .map(|r| ((r.unit, r.label), r.iou))
        .collect()
}

/// The distinct labels of the detectors: units whose best IoU reaches [`IOU`] (label 0,
/// no label, is no concept).
fn unique_detectors(ious: &BTreeMap<(u32, u32), f64>) -> BTreeSet<u32> {
    let mut best: BTreeMap<u32, (f64, u32)> = BTreeMap::new();
    for (&(unit, label), &iou) in ious.iter().filter(|((_, label), _)| *label != 0) {
        let b = best.entry(unit).or_insert((f64::NEG_INFINITY, 0));
        if iou > b.0 {
            *b = (iou, label);
        }
    }
    best.values()
        .filter(|(iou, _)| *iou >= IOU)
        .map(|&(_, label)| label)
        .collect()
}

fn rotate(s: &Setup, config: &nd_rotate::Config) -> nd_rotate::Result<nd_rotate::Outcome> {
    nd_rotate::run(&s.store, &s.extract, config)
}

#[test]
fn a_permutation_moves_each_detector_with_its_iou() {
    let s = setup();
    // Rotated unit i is original unit (i + 3) mod 11.
    let shift = |i: usize| (i + 3) % UNITS;
    let mut p = DMatrix::<f64>::zeros(UNITS, UNITS);
    for i in 0..UNITS {
        p[(i, shift(i))] = 1.0;
    }
    let config = nd_rotate::Config {
        rotation: nd_rotate::Rotation::Given(BTreeMap::from([(LAYER.to_owned(), p)])),
        layers: None,
        progress: false,
    };
    let permuted = rotate(&s, &config).unwrap();
    assert!(permuted.computed);
    let original = dissect(&s, &s.extract);
    let moved = dissect(&s, &permuted.artifact);
    assert_eq!(original.len(), moved.len());
    for (&(unit, label), &iou) in &moved {
        assert_eq!(
            iou,
            original[&(shift(unit as usize) as u32, label)],
            "unit {unit} label {label}"
        );
    }
    // The planted detectors are all there, each one unit further on.
    let detectors = unique_detectors(&original);
    assert_eq!(detectors.len(), UNITS, "{detectors:?}");
    assert_eq!(unique_detectors(&moved), detectors);
    // Again: fresh.
    assert!(!rotate(&s, &config).unwrap().computed);
}

#[test]
fn a_random_rotation_lowers_the_unique_detectors_and_numpy_agrees() {
    let s = setup();
    let whole = rotate(&s, &nd_rotate::Config::random(1, 1.0)).unwrap();
    assert!(whole.computed);
    let rotated = &whole.artifact;
    assert_eq!(rotated.manifest.stage, "rotate");
    // Everything the later stages read from an extraction, carried over.
    for field in ["layers", "input_size", "images", "fields"] {
        assert_eq!(
            rotated.manifest.outputs[field], s.extract.manifest.outputs[field],
            "{field}"
        );
    }
    assert_eq!(rotated.rows().unwrap(), s.extract.rows().unwrap());

    // All 11 planted colour detectors; rotated, 4 (seed 1) whose best labels are mixtures.
    let original = unique_detectors(&dissect(&s, &s.extract));
    let rotated_scores = scores(&s, rotated);
    let turned = unique_detectors(&ious(&rotated_scores));
    assert_eq!(original.len(), UNITS, "{original:?}");
    assert!(
        turned.len() < original.len(),
        "unique detectors: {} rotated, {} not",
        turned.len(),
        original.len()
    );

    // The pages find the rotated activations from the report alone.
    let report = nd_report::run(&s.store, &rotated_scores, None, &Default::default())
        .unwrap()
        .artifact;
    let chain = nd_html::Chain::find(&s.store, &report).unwrap();
    assert_eq!(chain.shards[0].0.key(), rotated.key());

    let out = python(&[
        "tests/python/check_rotate.py",
        rotated.dir.to_str().unwrap(),
        s.extract.dir.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report[LAYER]["shape"][1], UNITS);
    assert!(report[LAYER]["relative_error"].as_f64().unwrap() <= 1e-5);

    // Half the rotation is another artifact; none of it is the extraction itself.
    let half = rotate(&s, &nd_rotate::Config::random(1, 0.5)).unwrap();
    assert_ne!(half.artifact.key(), rotated.key());
    python(&[
        "tests/python/check_rotate.py",
        half.artifact.dir.to_str().unwrap(),
        s.extract.dir.to_str().unwrap(),
    ]);
    // Power 0 is the identity: the extract artifact itself, nothing written.
    let none = rotate(&s, &nd_rotate::Config::random(1, 0.0)).unwrap();
    assert!(!none.computed);
    assert_eq!(none.artifact.key(), s.extract.key());
    assert_eq!(
        std::fs::read_dir(s.dir.path().join("cache/rotate"))
            .unwrap()
            .count(),
        2
    );
}

fn refused(s: &Setup, activations: &nd_store::Artifact, config: &nd_rotate::Config, needle: &str) {
    let err = nd_rotate::run(&s.store, activations, config)
        .unwrap_err()
        .to_string();
    assert!(err.contains(needle), "{needle}\n{err}");
}

#[test]
fn bad_rotations_fail_naming_what_to_fix() {
    let s = setup();
    refused(
        &s,
        &s.extract,
        &nd_rotate::Config::random(1, 1.5),
        "power must be between 0 and 1 (the fraction of the rotation applied), got 1.5",
    );
    let mut config = nd_rotate::Config::random(1, 1.0);
    config.layers = Some(vec!["conv9".to_owned()]);
    refused(
        &s,
        &s.extract,
        &config,
        "layers: `conv9` is not in the activations",
    );
    let thresholds = nd_quantile::run(
        &s.store,
        std::slice::from_ref(&s.extract),
        &Default::default(),
    )
    .unwrap()
    .artifact;
    refused(
        &s,
        &thresholds,
        &nd_rotate::Config::random(1, 1.0),
        "is a quantile artifact, expected a extract artifact",
    );
    // A matrix of the wrong width.
    let config = nd_rotate::Config {
        rotation: nd_rotate::Rotation::Given(BTreeMap::from([(
            LAYER.to_owned(),
            DMatrix::identity(3, 3),
        )])),
        layers: None,
        progress: false,
    };
    refused(
        &s,
        &s.extract,
        &config,
        "the matrix given for layer `colors` is 3×3, but the layer has 11 units",
    );
    assert!(
        !s.dir.path().join("cache/rotate").exists()
            || std::fs::read_dir(s.dir.path().join("cache/rotate"))
                .unwrap()
                .count()
                == 0
    );
}

/// The stage binaries chained by hand, as a Makefile would: nd-rotate's directory goes
/// wherever nd-extract's did, through to the pages.
#[test]
fn the_stage_binaries_take_a_rotate_artifact() {
    let s = setup();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_netdissect"))
        .parent()
        .unwrap();
    let data = s.dir.path().join("data");
    let step = |name: &str, args: &[&OsStr]| -> String {
        let path = bin_dir.join(name);
        assert!(
            path.exists(),
            "{} is missing: build the workspace first (make test does)",
            path.display()
        );
        let output = Command::new(path).args(args).output().unwrap();
        assert!(
            output.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    let os = OsStr::new;
    let r = step(
        "nd-rotate",
        &[
            os("--activations"),
            s.extract.dir.as_os_str(),
            os("--seed"),
            os("4"),
            os("--power"),
            os("0.75"),
            os("--no-progress"),
        ],
    );
    assert!(r.contains("/rotate/"), "{r}");
    let top = s.top.to_string();
    let t = step(
        "nd-quantile",
        &[
            os("--activations"),
            os(&r),
            os("--top"),
            os(&top),
            os("--no-progress"),
        ],
    );
    let m = step(
        "nd-segment",
        &[
            os("--dataset"),
            data.as_os_str(),
            os("--activations"),
            os(&r),
            os("--thresholds"),
            os(&t),
            os("--no-progress"),
        ],
    );
    let scores = nd_store::Artifact::open(Path::new(&step(
        "nd-score",
        &[os("--dataset"), data.as_os_str(), os("--masks"), os(&m)],
    )))
    .unwrap();
    let report = nd_report::run(&s.store, &scores, None, &Default::default())
        .unwrap()
        .artifact;
    let pages = step(
        "nd-html",
        &[
            os("--dataset"),
            data.as_os_str(),
            os("--report"),
            report.dir.as_os_str(),
            os("--title"),
            os("rotated"),
            os("--no-progress"),
        ],
    );
    assert!(Path::new(&pages).join("index.html").exists(), "{pages}");
}

/// `netdissect run` with a model's `rotations`: each fraction is a dissection of its own
/// (`<model>-rot<α>`) through the rotate stage, whose artifact is the library's; the
/// table of unique detectors against α is printed and plotted on the run page; a rerun
/// computes nothing.
#[test]
fn a_pipeline_dissects_each_fraction_of_the_rotation() {
    let s = setup();
    let pipeline = s.dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[dataset]
synth = {{ images = 40, size = 64, seed = 5, format = "png" }}

[cache]
dir = "cache"

[[model]]
name = "planted"
file = "planted.pt"
layers = ["{LAYER}"]
device = "cpu"
rotations = [1.0, 0.0, 0.5]
rotation_seed = 1

[quantile]
top = {}

[output]
dir = "results"
"#,
            s.top
        ),
    )
    .unwrap();
    let run = netdissect(&pipeline, &[]);
    assert!(run.ok, "{}", run.stderr);
    let stages: Vec<(String, String, String)> = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stage "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect();
    for name in ["planted-rot0.5", "planted-rot1"] {
        for stage in ["rotate", "quantile", "segment", "score", "report", "html"] {
            assert!(
                stages.contains(&(stage.into(), name.into(), "computed".into())),
                "{stage} {name}: {stages:?}"
            );
        }
    }
    assert!(
        !stages
            .iter()
            .any(|(stage, name, _)| stage == "rotate" && name == "planted")
    );

    // The rotate artifact the run recorded is the library's rotation of its extraction.
    let keys = s.store.last_run("planted-rot1").unwrap();
    let extract = s.store.last_run("planted").unwrap()["extract"];
    assert_eq!(keys["extract"], extract);
    let extract = s.store.get_key("extract", extract).unwrap().unwrap();
    let again = nd_rotate::run(&s.store, &extract, &nd_rotate::Config::random(1, 1.0)).unwrap();
    assert!(!again.computed);
    assert_eq!(keys["rotate"], again.artifact.key());

    // The table of unique detectors against α: all 11 planted detectors at α = 0, fewer
    // when the basis is wholly turned.
    let table: Vec<Vec<&str>> = run
        .stdout
        .split("rotation control of planted (seed 1)")
        .nth(1)
        .unwrap_or_else(|| panic!("no rotation table in\n{}", run.stdout))
        .lines()
        .skip(2)
        .take(3)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let alphas: Vec<&str> = table.iter().map(|r| r[0]).collect();
    assert_eq!(alphas, ["0", "0.5", "1"], "{}", run.stdout);
    let total = |row: &Vec<&str>| -> usize { row[row.len() - 2].parse().unwrap() };
    assert_eq!(total(&table[0]), UNITS, "{}", run.stdout);
    assert!(total(&table[2]) < UNITS, "{}", run.stdout);

    let results = s.dir.path().join("results");
    assert!(results.join("planted-rot0.5/summary.json").is_file());
    let index = std::fs::read_to_string(results.join("index.html")).unwrap();
    assert!(index.contains("Rotation control"), "{index}");
    assert!(index.contains("planted-rot1/html/index.html"), "{index}");

    // Nothing to do the second time.
    let rerun = netdissect(&pipeline, &[]);
    assert!(rerun.ok, "{}", rerun.stderr);
    assert!(!rerun.stderr.contains(" computed "), "{}", rerun.stderr);
    assert_eq!(rerun.stdout, run.stdout);
}
