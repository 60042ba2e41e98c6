//! `nd-synth --cache`: a dataset generated into a cache once, named by a record.

use std::process::Command;

fn synth(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nd-synth"))
        .args(["--images", "4", "--size", "32"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn generated_into_a_cache_once_with_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, record) = (
        dir.path().join("cache"),
        dir.path().join("records/dataset.json"),
    );
    let args = [
        "--cache".as_ref(),
        cache.as_os_str(),
        "--record".as_ref(),
        record.as_os_str(),
    ];
    let first = synth(&args);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("synth: wrote"));
    let printed = String::from_utf8(first.stdout).unwrap();
    let dataset = std::path::Path::new(printed.trim());
    assert!(dataset.join("index.csv").is_file(), "{printed}");
    // The record names the artifact, and the stage binaries resolve it to the dataset.
    assert_eq!(
        nd_store::dataset_dir(&record, Some(&cache)).unwrap(),
        dataset
    );
    let text = std::fs::read(&record).unwrap();
    let again = synth(&args);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("fresh, nothing to do"));
    assert_eq!(
        std::fs::read(&record).unwrap(),
        text,
        "the same record, byte for byte"
    );
    // A record of a dataset written outside a cache would name nothing.
    let out = dir.path().join("plain");
    let refused = synth(&[out.as_os_str(), "--record".as_ref(), record.as_os_str()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--record needs --cache"));
    assert!(!out.exists());
}
