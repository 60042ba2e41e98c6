//! What several test modules need: the repository root and the project's Python.

use std::path::PathBuf;
use std::process::Command;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the virtualenv's python in the repository root; fails the test if it fails, and
/// returns its stdout.
pub fn python(args: &[&str]) -> String {
    let output = Command::new(repo().join(".venv/bin/python"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
