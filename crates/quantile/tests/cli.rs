//! `nd-quantile` refuses inputs it cannot use, naming them.

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

fn quantile(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nd-quantile"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn inputs_that_are_not_extract_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err) = quantile(&["--activations".as_ref(), dir.path().as_os_str()]);
    assert!(!ok);
    assert!(
        err.contains("not a complete artifact: cannot read its manifest.json"),
        "{err}"
    );
    let score = artifact(&dir.path().join("cache"), "score");
    let (ok, err) = quantile(&["--activations".as_ref(), score.as_os_str()]);
    assert!(!ok);
    assert!(
        err.contains("is a score artifact, expected an extract (or rotate, or generate) artifact"),
        "{err}"
    );
}

#[test]
fn top_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let extract = artifact(&dir.path().join("cache"), "extract");
    let (ok, err) = quantile(&[
        "--activations".as_ref(),
        extract.as_os_str(),
        "--top".as_ref(),
        "1.5".as_ref(),
    ]);
    assert!(!ok);
    assert!(
        err.contains("top must be between 0 and 1 (exclusive), got 1.5"),
        "{err}"
    );
    // Nothing was written for it.
    assert!(!dir.path().join("cache/quantile").exists());
}

#[test]
fn bad_blocks_and_merges_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let extract = artifact(&cache, "extract");
    for (units, message) in [
        ("2/2", "block 2 of 2 does not exist (blocks count from 0)"),
        ("5..5", "the range is empty"),
        ("half", "use START..END (unit numbers) or K/N"),
    ] {
        let (ok, err) = quantile(&[
            "--activations".as_ref(),
            extract.as_os_str(),
            "--units".as_ref(),
            units.as_ref(),
        ]);
        assert!(!ok);
        assert!(err.contains(message), "{units}: {err}");
    }
    // A merge takes quantile blocks only.
    let (ok, err) = quantile(&["merge".as_ref(), extract.as_os_str()]);
    assert!(!ok);
    assert!(
        err.contains("is a extract artifact, expected a quantile artifact"),
        "{err}"
    );
    // A record names an artifact only with the cache that holds it.
    let record = dir.path().join("extract.json");
    std::fs::copy(extract.join("manifest.json"), &record).unwrap();
    let (ok, err) = quantile(&["--activations".as_ref(), record.as_os_str()]);
    assert!(!ok);
    assert!(
        err.contains("give --cache (or set NETDISSECT_CACHE)"),
        "{err}"
    );
    assert!(!cache.join("quantile").exists());
}
