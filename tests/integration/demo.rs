//! The bundled default: the committed demo models are the ones their checksums name, and
//! `pipeline.toml` runs them end to end (here on a small synthetic world, to stay quick;
//! `make demo` runs it at full size).

use std::process::Command;

use crate::common::repo;

#[test]
fn the_demo_models_match_their_checksums() {
    let sums = std::fs::read_to_string(repo().join("models/demo/SHA256SUMS")).unwrap();
    let names: Vec<&str> = sums
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    for model in [
        "demo-random.pt",
        "demo-step20.pt",
        "demo-step75.pt",
        "demo-step250.pt",
        "demo-trained.pt",
    ] {
        assert!(names.contains(&model), "SHA256SUMS lacks {model}");
    }
    let output = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(repo().join("models/demo"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_bundled_pipeline_runs_every_demo_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("pipeline.toml")).unwrap();
    let models = repo().join("models/demo");
    let small = text
        .replace(
            "synth = { images = 1000, size = 224, seed = 1 }",
            "synth = { images = 48, size = 96, seed = 1 }",
        )
        .replace(
            "file = \"models/demo/",
            &format!("file = \"{}/", models.display()),
        )
        .replace(
            "classes = \"models/demo/",
            &format!("classes = \"{}/", models.display()),
        );
    assert_ne!(small, text);
    assert!(!small.contains("size = 224"), "the dataset line moved");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, small).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .arg("run")
        .arg(&pipeline)
        .arg("--no-progress")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let models = [
        "demo-random",
        "demo-step20",
        "demo-step75",
        "demo-step250",
        "demo-trained",
    ];
    for model in models {
        assert!(
            stdout.contains(&format!("{model}\nlayer ")),
            "no table for {model}:\n{stdout}"
        );
        assert!(
            dir.path()
                .join("results")
                .join(model)
                .join("summary.json")
                .exists()
        );
    }
    // The comparison across the training run closes the output, one line per model.
    let comparison: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("model "))
        .collect();
    assert_eq!(
        comparison
            .first()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["model", "conv1", "conv2", "conv3", "conv4", "conv5"]),
        "{stdout}"
    );
    for (line, model) in comparison[1..].iter().zip(models) {
        assert!(line.starts_with(model), "{line}");
    }
}
