//! `nd-score` refuses inputs it cannot use, naming them.

use std::process::Command;

fn artifact(cache: &std::path::Path, stage: &str) -> std::path::PathBuf {
    let store = nd_store::Store::open(cache).unwrap();
    let spec = nd_store::Spec::new(stage, 1, serde_json::json!({}));
    store
        .begin(&spec)
        .unwrap()
        .commit(Default::default(), serde_json::json!({}))
        .unwrap()
        .dir
}

/// A three-image synthetic dataset in `dir`.
fn dataset(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("data");
    nd_synth::generate(
        &data,
        &nd_synth::Config {
            images: 3,
            image_size: 16,
            ..Default::default()
        },
    )
    .unwrap();
    data
}

#[test]
fn wrong_inputs_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let cache = dir.path().join("cache");
    let run = |masks: &std::path::Path, extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_nd-score"))
            .arg("--dataset")
            .arg(&data)
            .arg("--masks")
            .arg(masks)
            .args(extra)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let quantile = artifact(&cache, "quantile");
    let err = run(&quantile, &["--denominator", "mean"]);
    assert!(
        err.contains("unknown denominator `mean` (use lite or original)"),
        "{err}"
    );
    let err = run(&quantile, &[]);
    assert!(
        err.contains("is a quantile artifact, expected a segment artifact"),
        "{err}"
    );
    let segment = artifact(&cache, "segment");
    let err = run(&segment, &["--categories", "color,smell"]);
    assert!(
        err.contains("category `smell` is not in category.csv"),
        "{err}"
    );
    let err = run(&segment, &[]);
    assert!(
        err.contains("the segment artifact's manifest names no rows of the dataset"),
        "{err}"
    );
    assert!(!cache.join("score").exists());
}

#[test]
fn merges_take_score_artifacts_of_one_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    let cache = dir.path().join("cache");
    let merge = |inputs: &[&std::path::Path]| {
        let output = Command::new(env!("CARGO_BIN_EXE_nd-score"))
            .arg("merge")
            .args(inputs)
            .arg("--dataset")
            .arg(&data)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let segment = artifact(&cache, "segment");
    let err = merge(&[&segment]);
    assert!(
        err.contains("is a segment artifact, expected a score artifact"),
        "{err}"
    );
    // A score artifact whose masks are gone cannot be checked against the dataset.
    let store = nd_store::Store::open(&cache).unwrap();
    let orphan = store
        .begin(
            &nd_store::Spec::new("score", 1, serde_json::json!({"denominator": "lite"})).input(
                "masks",
                nd_store::Spec::new("segment", 9, serde_json::json!({})).key(),
            ),
        )
        .unwrap()
        .commit(Default::default(), serde_json::json!({ "rows": [0, 3] }))
        .unwrap();
    let err = merge(&[&orphan.dir]);
    assert!(err.contains("are not in the cache"), "{err}");
    let err = Command::new(env!("CARGO_BIN_EXE_nd-score"))
        .arg("--dataset")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("--masks is required"),
        "{err:?}"
    );
    assert_eq!(std::fs::read_dir(cache.join("score")).unwrap().count(), 1);
}
