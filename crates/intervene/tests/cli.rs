//! `nd-intervene` as a command: bad arguments are named, with a non-zero exit. (Its results
//! are tested end to end on a planted generator in `tests/integration/generate.rs`.)

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nd-intervene"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let base = [
        "--generator",
        d,
        "--segmenter",
        d,
        "--segmenter-labels",
        d,
        "--layer",
        "l",
    ];
    let (ok, err) = run(&base);
    assert!(!ok && err.contains("--scores"), "{err}");
    let missing = dir.path().join("no-such-artifact");
    let mut args = base.to_vec();
    args.extend([
        "--scores",
        missing.to_str().unwrap(),
        "--concepts",
        "a",
        "--cache",
        d,
    ]);
    let (ok, err) = run(&args);
    assert!(!ok && err.contains("no-such-artifact"), "{err}");
}
