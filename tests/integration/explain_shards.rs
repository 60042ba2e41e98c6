//! The explain stage over image shards: shards that start on the batch grid merge into the
//! artifact of one run (same key, same bytes); others merge into tables equal to one run's
//! up to the class scores' last bits, under a key that says where batching restarted; and
//! what is not one explanation's shards is refused, naming why.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use arrow::datatypes::{Float64Type, UInt32Type};

use crate::common::{netdissect, only_dir};

const CLASSES: [&str; 3] = ["warm", "nature", "dark"];

/// The settings of the unsharded run, read back from its manifest.
fn config_of(artifact: &nd_store::Artifact, model: &Path) -> nd_explain::Config {
    let p = &artifact.manifest.params;
    let preprocess = serde_json::from_value(p["preprocess"].clone()).unwrap();
    let mut config = nd_explain::Config::new(
        model.to_owned(),
        p["layer"].as_str().unwrap().to_owned(),
        preprocess,
    );
    config.classes = serde_json::from_value(p["classes"].clone()).unwrap();
    config.top_k = p["top_k"].as_u64().unwrap() as usize;
    config.top_n = p["top_n"].as_u64().unwrap() as usize;
    config.ablate = serde_json::from_value(p["ablate"].clone()).unwrap();
    config.random_draws = p["random_draws"].as_u64().unwrap() as usize;
    config.seed = p["seed"].as_u64().unwrap();
    config.truth_category = serde_json::from_value(p["truth_category"].clone()).unwrap();
    config.batch_size = p["batch_size"].as_u64().unwrap() as usize;
    config.progress = false;
    config
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Every file of `a` is in `b` with the same bytes, and the other way round.
fn same_files(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    let names = |f: &BTreeMap<String, Vec<u8>>| f.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&fa), names(&fb));
    let differ: Vec<&String> = fa.keys().filter(|k| fa[*k] != fb[*k]).collect();
    assert!(
        differ.is_empty(),
        "{differ:?} differ between {} and {}",
        a.display(),
        b.display()
    );
}

fn shards(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    report: &nd_store::Artifact,
    config: &nd_explain::Config,
    ranges: &[Range<usize>],
) -> Vec<nd_store::Artifact> {
    ranges
        .iter()
        .map(|rows| {
            let mut c = config.clone();
            c.rows = Some(rows.clone());
            nd_explain::run(store, dataset, report, &c)
                .unwrap()
                .artifact
        })
        .collect()
}

#[test]
fn shards_merge_into_the_explanation_of_all_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = crate::explain::setup(dir.path(), "classifier", &CLASSES, "");
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        "logits = \"logits\"\n",
        "logits = \"logits\"\nbatch_size = 8\n",
    );
    std::fs::write(&pipeline, text).unwrap();
    let run = netdissect(&pipeline, &[]);
    assert!(run.ok, "{}", run.stderr);
    let whole = nd_store::Artifact::open(&only_dir(&dir.path().join("cache/explain"))).unwrap();
    let config = config_of(&whole, &dir.path().join("classifier.pt"));
    assert_eq!(config.batch_size, 8);

    // A second cache holding the dissection but not the explanation.
    let copy = dir.path().join("copy");
    let status = std::process::Command::new("cp")
        .args(["-r"])
        .arg(dir.path().join("cache"))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(copy.join("explain")).unwrap();
    let store = nd_store::Store::open(&copy).unwrap();
    let dataset = nd_broden::Dataset::open(&dir.path().join("data"), &Default::default()).unwrap();
    let report = store
        .get_key("report", whole.manifest.inputs["report"])
        .unwrap()
        .unwrap();

    // On the batch grid: the same artifact, byte for byte, in any order.
    let parts = shards(&store, &dataset, &report, &config, &[0..16, 16..40, 40..60]);
    assert!(parts[0].dir.join("merge_images.parquet").is_file());
    let merged = nd_explain::merge(
        &store,
        &dataset,
        &[parts[2].clone(), parts[0].clone(), parts[1].clone()],
    )
    .unwrap();
    assert!(merged.computed);
    assert_eq!(merged.artifact.key(), whole.key());
    same_files(&merged.artifact.dir, &whole.dir);
    assert!(!merged.artifact.dir.join("merge_images.parquet").exists());
    // Merged again: the cached one.
    let again = nd_explain::merge(&store, &dataset, &parts).unwrap();
    assert!(!again.computed);
    // Shards of shards: the first two merged, then with the third.
    let head = nd_explain::merge(&store, &dataset, &parts[..2])
        .unwrap()
        .artifact;
    assert!(
        head.dir.join("merge_images.parquet").is_file(),
        "a merge of some rows is a shard"
    );
    let whole_again = nd_explain::merge(&store, &dataset, &[head, parts[2].clone()]).unwrap();
    assert_eq!(whole_again.artifact.key(), whole.key());

    // Off the grid: another key, naming where batching restarted, and the same tables up
    // to the class scores' last bits.
    let odd = shards(&store, &dataset, &report, &config, &[0..13, 13..60]);
    let merged = nd_explain::merge(&store, &dataset, &odd).unwrap().artifact;
    assert_ne!(merged.key(), whole.key());
    assert_eq!(
        merged.manifest.params["batch_restarts"],
        serde_json::json!([13])
    );
    let a = nd_tables::read(&whole.dir.join("explanations.parquet")).unwrap();
    let b = nd_tables::read(&merged.dir.join("explanations.parquet")).unwrap();
    assert_eq!(a.num_rows(), b.num_rows());
    assert_eq!(
        nd_tables::values::<UInt32Type>(&a, "class").unwrap(),
        nd_tables::values::<UInt32Type>(&b, "class").unwrap()
    );
    for column in ["score", "contribution", "share"] {
        let x = nd_tables::values::<Float64Type>(&a, column).unwrap();
        let y = nd_tables::values::<Float64Type>(&b, column).unwrap();
        for (i, (x, y)) in x.iter().zip(&y).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * x.abs().max(1.0),
                "{column} row {i}: {x} vs {y}"
            );
        }
    }

    // Not shards of one explanation.
    let err = |shards: &[nd_store::Artifact]| {
        nd_explain::merge(&store, &dataset, shards)
            .unwrap_err()
            .to_string()
    };
    let overlapping = shards(
        &store,
        &dataset,
        &report,
        &config,
        std::slice::from_ref(&(10..60)),
    );
    let e = err(&[parts[0].clone(), overlapping[0].clone()]);
    assert!(e.contains("do not follow one another"), "{e}");
    let e = err(&[parts[0].clone(), whole.clone()]);
    assert!(e.contains("explains every row of its dataset"), "{e}");
    // One artifact is its own merge.
    let one = nd_explain::merge(&store, &dataset, std::slice::from_ref(&whole)).unwrap();
    assert!(!one.computed && one.artifact.dir == whole.dir);
    let mut other = config.clone();
    other.top_n = 3;
    let other = shards(
        &store,
        &dataset,
        &report,
        &other,
        std::slice::from_ref(&(16..60)),
    );
    let e = err(&[parts[0].clone(), other[0].clone()]);
    assert!(e.contains("different settings (`top_n`)"), "{e}");
    // A rows range outside the dataset.
    let mut outside = config.clone();
    outside.rows = Some(50..70);
    let e = nd_explain::run(&store, &dataset, &report, &outside)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("images 50..70: not a non-empty range of the dataset's 60 rows"),
        "{e}"
    );
}
