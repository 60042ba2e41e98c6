use std::process::Command;

fn netdissect(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_netdissect"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn synth_then_check_deep() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let data = data.to_str().unwrap();
    let (ok, stdout, stderr) = netdissect(&["synth", data, "--images", "30", "--size", "40"]);
    assert!(ok, "{stderr}");
    // 11 colours, 15 objects, 10 parts, 6 materials (paper is an object too), 12 scenes and
    // 14 textures.
    assert!(stdout.contains("wrote 30 images and 68 labels"), "{stdout}");
    let (ok, stdout, stderr) = netdissect(&["check", data, "--deep"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("30 images"), "{stdout}");
    assert!(
        stdout.contains("images 40×40, label maps 20×20"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every image and label map decodes"),
        "{stdout}"
    );
    for category in ["color", "object", "part", "material", "scene", "texture"] {
        assert!(stdout.contains(&format!("  {category} ")), "{stdout}");
    }
}

#[test]
fn check_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let (ok, _, stderr) = netdissect(&[
        "synth",
        data.to_str().unwrap(),
        "--images",
        "5",
        "--size",
        "16",
    ]);
    assert!(ok, "{stderr}");
    std::fs::remove_file(data.join("images/synth/000003_color.png")).unwrap();
    let (ok, _, stderr) = netdissect(&["check", data.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        stderr.contains("is incomplete: index.csv line 5: images/synth/000003_color.png"),
        "{stderr}"
    );
}

/// CMYK JPEGs (Photoshop's and PIL's) failed `check --deep` with libjpeg's "Unsupported
/// color conversion request"; they decode as PIL converts them to RGB.
#[test]
fn check_deep_decodes_a_cmyk_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("synth");
    let data = data.to_str().unwrap();
    let (ok, _, stderr) = netdissect(&["synth", data, "--images", "4", "--size", "16"]);
    assert!(ok, "{stderr}");
    let converted = dir.path().join("converted");
    crate::common::python(&[
        "tests/python/pil_jpegs.py",
        "resave",
        data,
        "synth/000001.jpg",
        converted.to_str().unwrap(),
    ]);
    let (ok, stdout, stderr) = netdissect(&["check", data, "--deep"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("every image and label map decodes"),
        "{stdout}"
    );
}
