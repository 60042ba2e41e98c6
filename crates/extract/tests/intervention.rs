//! The class scores and the intervention method that `export_torchvision.py --logits`
//! writes: `tests/python/test_intervention.py` checks, for resnet18, vgg11 and alexnet, that
//! `forward` returns the model's logits, that `forward_from(layer, activations)` is the rest
//! of the network (a unit zeroed in the activations gives the model with that unit zeroed
//! by a hook), the `netdissect-intervention.json` extra file, the class names written beside
//! the model, the refusals, and that two exports give the same bytes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn exports_with_logits_continue_from_every_layer_to_the_model_output() {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let output = Command::new(python)
        .arg(repo().join("tests/python/test_intervention.py"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "tests/python/test_intervention.py failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
