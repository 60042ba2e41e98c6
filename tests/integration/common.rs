//! What several test modules need: the repository root, the project's Python, models
//! made by it, and `netdissect run`.

use std::path::{Path, PathBuf};
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

/// A TorchScript model of `tests/python/make_models.py` (`tiny`, `planted`, ...).
pub fn model(dir: &Path, kind: &str) -> PathBuf {
    let out = dir.join(format!("{kind}.pt"));
    python(&["tests/python/make_models.py", kind, out.to_str().unwrap()]);
    out
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `netdissect run PIPELINE --no-progress EXTRA...`, without `LD_LIBRARY_PATH`.
pub fn netdissect(pipeline: &Path, extra: &[&str]) -> Run {
    netdissect_env(pipeline, extra, &[])
}

/// [`netdissect`] with environment variables set for it alone.
pub fn netdissect_env(pipeline: &Path, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .arg("run")
        .arg(pipeline)
        .arg("--no-progress")
        .args(extra)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Pixels of each colour label (0..12) in the dataset's colour maps, and their total.
pub fn colour_pixels(dataset: &nd_broden::Dataset) -> ([u64; 12], u64) {
    let color = dataset.category_index("color").unwrap();
    let mut pixels = [0u64; 12];
    let mut total = 0u64;
    for row in 0..dataset.len() {
        for map in dataset
            .read_labels(row)
            .unwrap()
            .maps
            .iter()
            .filter(|m| m.category == color)
        {
            for &p in &map.pixels {
                pixels[p as usize] += 1;
                total += 1;
            }
        }
    }
    (pixels, total)
}

/// The one entry of a directory (the one artifact of a stage in a test's cache).
pub fn only_dir(parent: &Path) -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{}", parent.display());
    dirs.remove(0)
}
