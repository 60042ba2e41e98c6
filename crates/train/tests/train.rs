//! The train stage with the project's Python: a recipe trained once per cache (then
//! fresh), the same bytes in another cache, the seed in the key, bad requests named
//! before anything is written; and `tests/python/test_train_variants.py`, which checks
//! every recipe's exported network (layers, logits, `forward_from` against the Python
//! network with a unit zeroed, extra files, bytes).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A small synthetic training set in a fresh cache.
fn setup() -> (tempfile::TempDir, nd_store::Store, nd_store::Artifact) {
    let dir = tempfile::tempdir().unwrap();
    let store = nd_store::Store::open(&dir.path().join("cache")).unwrap();
    let config = nd_synth::Config {
        seed: 2,
        images: 80,
        image_size: 64,
        ..Default::default()
    };
    let data = nd_synth::generate_cached(&store, &config).unwrap().artifact;
    (dir, store, data)
}

fn config(recipe: &str, seed: u64) -> nd_train::Config {
    nd_train::Config {
        epochs: Some(1),
        ..nd_train::Config::new(recipe, seed)
    }
}

#[test]
fn a_recipe_trains_once_per_cache_and_the_same_everywhere() {
    let (_dir, store, data) = setup();
    let first = nd_train::run(&store, &data, &config("bn", 3)).unwrap();
    assert!(first.computed);
    let artifact = &first.artifact;
    assert_eq!(artifact.manifest.stage, nd_train::STAGE);
    assert_eq!(artifact.manifest.params["recipe"], "bn");
    assert_eq!(artifact.manifest.params["settings"]["bn"], true);
    assert_eq!(artifact.manifest.inputs["data"], data.key());
    assert_eq!(
        artifact.manifest.outputs["layers"],
        serde_json::json!(["conv1", "conv2", "conv3", "conv4", "conv5"])
    );
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifact.dir.join(nd_train::LOG_FILE)).unwrap())
            .unwrap();
    assert_eq!(log["seed"], 3);
    assert_eq!(log["history"].as_array().unwrap().len(), 1);

    // Again: fresh, the same artifact.
    let again = nd_train::run(&store, &data, &config("bn", 3)).unwrap();
    assert!(!again.computed);
    assert_eq!(again.artifact.key(), artifact.key());

    // Another cache trains the same bytes (same machine, same torch).
    let (_other_dir, other, other_data) = setup();
    assert_eq!(other_data.key(), data.key());
    let elsewhere = nd_train::run(&other, &other_data, &config("bn", 3)).unwrap();
    assert!(elsewhere.computed);
    let bytes = |a: &nd_store::Artifact| std::fs::read(a.dir.join(nd_train::MODEL_FILE)).unwrap();
    assert!(bytes(&elsewhere.artifact) == bytes(artifact));

    // Another seed is another network.
    let seed = nd_train::spec(&data, &config("bn", 4)).unwrap();
    assert_ne!(seed.key(), artifact.key());
}

/// A training with snapshots keeps the network before training and after each epoch; its
/// model is the same bytes as the same training's without them, under another key.
#[test]
fn snapshots_are_the_training_as_it_went() {
    let (_dir, store, data) = setup();
    let plain = nd_train::Config {
        epochs: Some(2),
        ..nd_train::Config::new("base", 5)
    };
    let with = nd_train::Config {
        snapshots: true,
        ..plain.clone()
    };
    let a = nd_train::run(&store, &data, &plain).unwrap().artifact;
    let b = nd_train::run(&store, &data, &with).unwrap().artifact;
    assert_ne!(a.key(), b.key());
    let bytes = |p: PathBuf| std::fs::read(p).unwrap();
    let model = bytes(a.dir.join(nd_train::MODEL_FILE));
    assert!(bytes(b.dir.join(nd_train::MODEL_FILE)) == model);
    let epochs: Vec<Vec<u8>> = (0..=2)
        .map(|e| bytes(nd_train::snapshot(&b, e).unwrap()))
        .collect();
    assert!(epochs[2] == model);
    assert!(epochs[0] != epochs[1] && epochs[1] != epochs[2]);
    assert_eq!(
        b.manifest.outputs["snapshots"],
        serde_json::json!({"0": "snapshots/epoch-0.pt", "1": "snapshots/epoch-1.pt",
                           "2": "model.pt"})
    );
    // The last epoch of a training without snapshots is its model; others are named.
    assert_eq!(
        nd_train::snapshot(&a, 2).unwrap(),
        a.dir.join(nd_train::MODEL_FILE)
    );
    let err = nd_train::snapshot(&a, 1).unwrap_err().to_string();
    assert!(err.contains("kept no snapshots"), "{err}");
    let err = nd_train::snapshot(&b, 3).unwrap_err().to_string();
    assert!(err.contains("epoch 3: the training has 2 epochs"), "{err}");
}

#[test]
fn bad_requests_are_named_and_write_nothing() {
    let (dir, store, data) = setup();
    let err = nd_train::run(&store, &data, &config("batchnorm", 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("recipe `batchnorm` is not one of python/train_variants.py's: ")
            && err.contains("bn")
            && err.contains("resnet"),
        "{err}"
    );
    let mut zero = config("bn", 1);
    zero.epochs = Some(0);
    let err = nd_train::run(&store, &data, &zero).unwrap_err().to_string();
    assert!(err.contains("epochs must be at least 1"), "{err}");
    let mut missing = config("bn", 1);
    missing.python = Some(dir.path().join("no-python"));
    let err = nd_train::run(&store, &data, &missing)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-python"), "{err}");
    assert!(!dir.path().join("cache/train").exists());
}

#[test]
fn every_recipe_exports_a_network_the_stages_can_use() {
    let python = nd_train::python().unwrap();
    let output = Command::new(python)
        .arg(repo().join("tests/python/test_train_variants.py"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tests/python/test_train_variants.py failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `models/variants` holds one file per recipe (seed 1), with its log, and the files are
/// the ones their checksums name.
#[test]
fn the_committed_variants_are_every_recipe_and_match_their_checksums() {
    let dir = repo().join("models/variants");
    let list = nd_train::recipes(&nd_train::python().unwrap()).unwrap();
    let recipes: Vec<&String> = list["recipes"].as_object().unwrap().keys().collect();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut named: Vec<String> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    named.sort();
    let mut want: Vec<String> = recipes.iter().map(|r| format!("{r}-seed1.pt")).collect();
    want.sort();
    assert_eq!(named, want);
    for recipe in recipes {
        let log: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{recipe}-seed1.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(&log["recipe"], recipe.as_str());
        assert_eq!(log["seed"], 1);
        assert_eq!(log["arch"], list["recipes"][recipe]["arch"]);
    }
    let output = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
