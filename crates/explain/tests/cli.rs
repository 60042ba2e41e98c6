//! `nd-explain` as a command: bad arguments are named before anything runs. (The stage
//! itself is tested end to end in tests/integration/explain.rs, through `netdissect run`
//! and, in the Snakemake workflow's test, through this binary.)

use std::process::Command;

fn nd_explain(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nd-explain"))
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
    let base = [
        "--dataset",
        dir.path().to_str().unwrap(),
        "--model",
        "model.pt",
        "--layer",
        "conv5",
    ];
    let report = dir.path().join("no-such-report");
    let mut args = base.to_vec();
    args.extend(["--report", report.to_str().unwrap(), "--mean", "0.5,0.5"]);
    let (ok, stderr) = nd_explain(&args);
    assert!(!ok);
    assert!(
        stderr.contains("--mean takes three comma-separated numbers, got 2"),
        "{stderr}"
    );
    let mut args = base.to_vec();
    args.extend(["--report", report.to_str().unwrap()]);
    let (ok, stderr) = nd_explain(&args);
    assert!(!ok);
    assert!(
        stderr.starts_with("nd-explain: error: ") && stderr.contains("no-such-report"),
        "{stderr}"
    );
}

#[test]
fn the_shard_and_merge_arguments_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // Without the model: the error says what else it could be.
    let (ok, stderr) = nd_explain(&["--dataset", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("--model is required (or use `nd-explain merge SHARD...`)"),
        "{stderr}"
    );
    let report = dir.path().join("no-such-report");
    let (ok, stderr) = nd_explain(&[
        "--model",
        "m.pt",
        "--layer",
        "conv5",
        "--report",
        report.to_str().unwrap(),
        "--images",
        "10-20",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--images `10-20` is not START..END"),
        "{stderr}"
    );
    // A merge needs shards, and names one that is not there.
    let (ok, stderr) = nd_explain(&["merge"]);
    assert!(!ok && stderr.contains("SHARDS"), "{stderr}");
    let missing = dir.path().join("no-such-shard");
    let (ok, stderr) = nd_explain(&["merge", missing.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("no-such-shard"), "{stderr}");
}
