//! `nd-html` as a command: bad inputs are clear errors that name what to fix, and leave
//! nothing in the cache. (The report itself is tested end to end, in a browser, by the
//! workspace's integration tests.)

use std::path::Path;
use std::process::{Command, Output};

fn nd_html(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nd-html"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "nd-html succeeded");
    assert_eq!(output.status.code(), Some(1));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An empty artifact of a stage, committed in a cache, with the given inputs.
fn artifact(
    store: &nd_store::Store,
    stage: &str,
    inputs: &[(&str, nd_store::Key)],
) -> nd_store::Artifact {
    let mut spec = nd_store::Spec::new(stage, 1, serde_json::json!({}));
    for (role, key) in inputs {
        spec = spec.input(role, *key);
    }
    store
        .begin(&spec)
        .unwrap()
        .commit(nd_store::versions(), serde_json::json!({}))
        .unwrap()
}

fn html_artifacts(cache: &Path) -> usize {
    ["html", "html-images"]
        .iter()
        .filter_map(|s| std::fs::read_dir(cache.join(s)).ok())
        .map(|d| d.count())
        .sum()
}

#[test]
fn bad_inputs_are_clear_errors_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let store = nd_store::Store::open(&cache).unwrap();
    let os = |s: &str| std::ffi::OsString::from(s);

    // Not an artifact at all.
    let missing = dir.path().join("nowhere");
    let err = stderr(&nd_html(&[
        &os("--dataset"),
        dir.path().as_os_str(),
        &os("--report"),
        missing.as_os_str(),
    ]));
    assert!(err.starts_with("nd-html: error: "), "{err}");
    assert!(err.contains("nowhere"), "{err}");

    // An artifact of another stage.
    let scores = artifact(&store, "score", &[]);
    let err = stderr(&nd_html(&[
        &os("--dataset"),
        dir.path().as_os_str(),
        &os("--report"),
        scores.dir.as_os_str(),
    ]));
    assert!(
        err.contains("is a score artifact, expected a report artifact"),
        "{err}"
    );

    // A report whose inputs are not in the cache.
    let orphan = artifact(
        &store,
        "report",
        &[("scores", nd_store::Key::from_hex(&"ab".repeat(32)).unwrap())],
    );
    let err = stderr(&nd_html(&[
        &os("--dataset"),
        dir.path().as_os_str(),
        &os("--report"),
        orphan.dir.as_os_str(),
    ]));
    assert!(err.contains("the score artifact abababababab"), "{err}");
    assert!(err.contains("is not in the cache"), "{err}");

    // A report without the `scores` input.
    let report = artifact(&store, "report", &[]);
    let err = stderr(&nd_html(&[
        &os("--dataset"),
        dir.path().as_os_str(),
        &os("--report"),
        report.dir.as_os_str(),
    ]));
    assert!(err.contains("names no `scores` input"), "{err}");
    assert_eq!(html_artifacts(&cache), 0);
}

#[test]
fn settings_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, message) in [
        (
            "--top-images",
            "0",
            "the number of top images must be between 1 and 100, got 0",
        ),
        (
            "--thumbnail-height",
            "4",
            "the thumbnail height must be between 16 and 512 pixels, got 4",
        ),
    ] {
        let err = stderr(&nd_html(&[
            "--dataset".as_ref(),
            dir.path().as_os_str(),
            "--report".as_ref(),
            dir.path().as_os_str(),
            flag.as_ref(),
            value.as_ref(),
        ]));
        assert!(err.contains(message), "{flag} {value}: {err}");
    }
}
