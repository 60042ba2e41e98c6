//! `nd-formulas` as a command: bad arguments are named, with a non-zero exit and nothing
//! written. (Its results are tested end to end in `tests/integration/formulas.rs`.)

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nd-formulas"))
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
    let (ok, err) = run(&["--dataset", d]);
    assert!(!ok && err.contains("--masks"), "{err}");
    let (ok, err) = run(&["--masks", d, "--dataset", d, "--ops", "and,xor"]);
    assert!(
        !ok && err.contains("--ops: unknown operator `xor`"),
        "{err}"
    );
    let (ok, err) = run(&["--masks", d, "--dataset", d, "--denominator", "union"]);
    assert!(!ok && err.contains("unknown denominator `union`"), "{err}");
    let missing = dir.path().join("no-such-artifact");
    let (ok, err) = run(&[
        "--masks",
        missing.to_str().unwrap(),
        "--dataset",
        d,
        "--cache",
        d,
    ]);
    assert!(!ok && err.contains("no-such-artifact"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
