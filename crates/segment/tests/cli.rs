//! `nd-segment` refuses inputs it cannot use, naming them.

use std::process::Command;

fn artifact(cache: &std::path::Path, stage: &str) -> std::path::PathBuf {
    let store = nd_store::Store::open(cache).unwrap();
    let spec = nd_store::Spec::new(stage, 1, serde_json::json!({ "rows": [0, 3] }));
    store
        .begin(&spec)
        .unwrap()
        .commit(Default::default(), serde_json::json!({}))
        .unwrap()
        .dir
}

#[test]
fn wrong_inputs_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let extract = artifact(&cache, "extract");
    let run = |thresholds: &std::path::Path, upsample: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_nd-segment"))
            .arg("--dataset")
            .arg(dir.path())
            .arg("--activations")
            .arg(&extract)
            .arg("--thresholds")
            .arg(thresholds)
            .args(["--upsample", upsample])
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let err = run(&extract, "nearest");
    assert!(
        err.contains("unknown upsampling `nearest` (use bilinear or receptive-field)"),
        "{err}"
    );
    let err = run(&extract, "bilinear");
    assert!(
        err.contains("is a extract artifact, expected a quantile artifact"),
        "{err}"
    );
    let thresholds = artifact(&cache, "quantile");
    let err = run(&thresholds, "bilinear");
    assert!(err.contains("cannot open the dataset"), "{err}");
    assert!(!cache.join("segment").exists());
}
