//! The receptive-field geometry that exports store for `receptive-field` upsampling:
//! `tests/python/test_fieldmap.py` checks `python/fieldmap.py` against the original
//! NetDissect's field map arithmetic and against autograd, its errors, and the
//! `netdissect-fields.json` extra file of an export.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn field_geometry_matches_the_original_arithmetic_and_autograd() {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let output = Command::new(python)
        .arg(repo().join("tests/python/test_fieldmap.py"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tests/python/test_fieldmap.py failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
