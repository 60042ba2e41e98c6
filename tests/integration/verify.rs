//! A damaged cache is found, never read, and repaired: bytes flipped inside an activation
//! chunk and a mask chunk of a real run's cache, then `netdissect verify`, the runs that
//! must read them, zarr-python (which checks the same checksums), and `verify --repair`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Run, netdissect, only_dir, repo};

fn pipeline(top: f64, denominator: &str) -> String {
    let demo = repo().join("models/demo/demo-trained.pt");
    format!(
        r#"
[dataset]
synth = {{ images = 40, size = 64, seed = 9 }}

[cache]
dir = "cache"

[[model]]
name = "demo"
file = "{}"
layers = ["conv1", "conv3"]

[quantile]
top = {top}

[score]
denominator = "{denominator}"

[html]
pages = false

[output]
dir = "results"
"#,
        demo.display()
    )
}

fn run(dir: &Path, top: f64, denominator: &str) -> Run {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, pipeline(top, denominator)).unwrap();
    netdissect(&path, &[])
}

fn verify(dir: &Path, extra: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .arg("verify")
        .arg(dir.join("pipeline.toml"))
        .arg("--no-progress")
        .args(extra)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `check_zarr.py` on the two artifacts: whether zarr-python read them, and what it said.
fn zarr_python(extract: &Path, segment: &Path) -> (bool, String) {
    let output = Command::new(repo().join(".venv/bin/python"))
        .arg("tests/python/check_zarr.py")
        .args([extract, segment])
        .current_dir(repo())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn flip(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Every file of the model's results, by name.
fn tables(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("results/demo"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn artifacts(dir: &Path, stage: &str) -> usize {
    std::fs::read_dir(dir.join("cache").join(stage)).map_or(0, |entries| entries.count())
}

#[test]
fn damaged_chunks_are_found_never_read_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = run(d, 0.005, "lite");
    assert!(first.ok, "{}", first.stderr);
    let extract: PathBuf = only_dir(&d.join("cache/extract"));
    let segment: PathBuf = only_dir(&d.join("cache/segment"));
    let manifests = |extract: &Path, segment: &Path| {
        [extract, segment].map(|a| std::fs::read_to_string(a.join("manifest.json")).unwrap())
    };
    let undamaged = manifests(&extract, &segment);
    let undamaged_tables = tables(d);
    assert!(undamaged_tables.iter().any(|(n, _)| n == "units.parquet"));

    // zarr-python reads the checksummed arrays, and so does verify.
    let (ok, text) = zarr_python(&extract, &segment);
    assert!(ok, "{text}");
    let clean = verify(d, &[]);
    assert!(clean.ok, "{}{}", clean.stdout, clean.stderr);
    assert!(
        clean.stdout.contains(": 6 whole, 0 damaged"),
        "{}",
        clean.stdout
    );

    let activation_chunk = "activations.zarr/conv3/activations/c/0/0/0/0";
    let mask_chunk = "masks.zarr/conv3/run_start/c/0";
    flip(&extract.join(activation_chunk));
    flip(&segment.join(mask_chunk));
    let key = |artifact: &Path| artifact.file_name().unwrap().to_string_lossy()[..12].to_owned();

    // verify names both, and fails.
    let found = verify(d, &[]);
    assert!(!found.ok);
    for line in [
        format!(
            "damaged extract {} {}: {activation_chunk}: chunk [0, 0, 0, 0] fails its crc32c \
             checksum",
            key(&extract),
            extract.display()
        ),
        format!(
            "damaged segment {} {}: {mask_chunk}: chunk [0] fails its crc32c checksum",
            key(&segment),
            segment.display()
        ),
    ] {
        assert!(
            found.stdout.lines().any(|l| l == line),
            "no line `{line}` in\n{}",
            found.stdout
        );
    }
    assert!(
        found.stdout.contains(": 4 whole, 2 damaged"),
        "{}",
        found.stdout
    );
    assert!(
        found
            .stderr
            .contains("2 damaged artifacts; run `netdissect verify --repair"),
        "{}",
        found.stderr
    );
    // zarr-python refuses the damaged chunk too.
    let (ok, text) = zarr_python(&extract, &segment);
    assert!(!ok && text.contains("conv3/activations"), "{text}");

    // A run that must read the damaged activations fails, naming them, and writes nothing.
    let quantiles = artifacts(d, "quantile");
    let top = run(d, 0.01, "lite");
    assert!(!top.ok, "a run read damaged activations:\n{}", top.stderr);
    assert!(
        top.stderr.contains(&format!(
            "the extract artifact {} ({}) is damaged: chunk [0, 0, 0, 0] of \
             `conv3/activations` ({activation_chunk}) fails its crc32c checksum; run \
             `netdissect verify --repair --cache",
            key(&extract),
            extract.display()
        )),
        "{}",
        top.stderr
    );
    assert_eq!(artifacts(d, "quantile"), quantiles);
    assert_eq!(tables(d), undamaged_tables);
    // So does one that must read the damaged masks (score them with another denominator).
    let score = run(d, 0.005, "original");
    assert!(!score.ok, "a run read damaged masks:\n{}", score.stderr);
    assert!(
        score.stderr.contains(&format!(
            "the segment artifact {} ({}) is damaged: chunk [0] of `conv3/run_start` \
             ({mask_chunk}) fails its crc32c checksum",
            key(&segment),
            segment.display()
        )),
        "{}",
        score.stderr
    );
    assert_eq!(artifacts(d, "score"), 1);
    assert_eq!(tables(d), undamaged_tables);

    // The repair moves exactly the two aside; the cache is whole again.
    let repair = verify(d, &["--repair"]);
    assert!(!repair.ok, "a repair still says damage was found");
    assert_eq!(
        repair
            .stdout
            .lines()
            .filter(|l| l.starts_with("moved aside "))
            .count(),
        2,
        "{}",
        repair.stdout
    );
    assert!(
        d.join("cache/damaged/extract")
            .join(extract.file_name().unwrap())
            .exists()
    );
    assert!(
        d.join("cache/damaged/segment")
            .join(segment.file_name().unwrap())
            .exists()
    );
    let again = verify(d, &[]);
    assert!(again.ok, "{}{}", again.stdout, again.stderr);
    assert!(
        again.stdout.contains(": 4 whole, 0 damaged"),
        "{}",
        again.stdout
    );

    // The original settings recompute exactly the two, byte for byte (their manifests list
    // every file's digest), and the tables are the undamaged run's.
    let rerun = run(d, 0.005, "lite");
    assert!(rerun.ok, "{}", rerun.stderr);
    for (stage, what) in [
        ("extract", "computed"),
        ("quantile", "fresh"),
        ("segment", "computed"),
        ("score", "fresh"),
        ("report", "fresh"),
    ] {
        assert!(
            rerun
                .stderr
                .lines()
                .any(|l| l.starts_with(&format!("stage {stage:<8} demo {what} "))),
            "{stage} not {what}:\n{}",
            rerun.stderr
        );
    }
    assert_eq!(manifests(&extract, &segment), undamaged);
    assert_eq!(tables(d), undamaged_tables);
    let (ok, text) = zarr_python(&extract, &segment);
    assert!(ok, "{text}");
    // And the runs that failed now go through.
    assert!(run(d, 0.01, "lite").ok);
    assert!(run(d, 0.005, "original").ok);
}

#[test]
fn verify_refuses_what_is_not_a_cache() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .args(["verify", "--no-progress", "--cache"])
        .arg(dir.path().join("nowhere"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a netdissect cache"), "{stderr}");
    assert!(!dir.path().join("nowhere").exists());
}
