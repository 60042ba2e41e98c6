//! `nd-rotate` on an activation cube made by hand: it writes `Q^α · A` with the matrix it
//! stores, is fresh the second time, prints the extract artifact for power 0, and refuses
//! bad input naming what to fix, before anything is written.

use std::path::{Path, PathBuf};
use std::process::Command;

use nd_arrays::{ActivationGroup, LayerShape};
use serde_json::json;

/// An extract artifact of two layers: `conv` (2 images, 3 units, 2×2 maps) and `fc`.
fn extract(cache: &Path) -> PathBuf {
    let store = nd_store::Store::open(cache).unwrap();
    let spec = nd_store::Spec::new("extract", 2, json!({ "rows": [0, 2], "by": "hand" }));
    let pending = store.begin(&spec).unwrap();
    let group = ActivationGroup::create(&pending.dir().join(nd_arrays::ACTIVATIONS_DIR)).unwrap();
    for (layer, units) in [("conv", 3), ("fc", 2)] {
        let shape = LayerShape {
            images: 2,
            units,
            height: 2,
            width: 2,
        };
        let mut writer = group.create_layer(layer, shape).unwrap();
        let values: Vec<f32> = (0..shape.per_image() * 2)
            .map(|v| (v as f32 * 0.37).sin() * 5.0)
            .collect();
        writer.push(&values).unwrap();
        writer.finish().unwrap();
    }
    group
        .set_layers(&["conv".to_owned(), "fc".to_owned()])
        .unwrap();
    let layers = json!([
        { "name": "conv", "node": "conv", "shape": [2, 3, 2, 2] },
        { "name": "fc", "node": "fc", "shape": [2, 2, 2, 2] },
    ]);
    let outputs = json!({ "activations": "activations.zarr", "images": 2, "input_size": [8, 8],
                          "fields": {}, "layers": layers });
    pending.commit(Default::default(), outputs).unwrap().dir
}

fn rotate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nd-rotate"))
        .args(args)
        .arg("--no-progress")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn rotates_with_the_matrix_it_stores() {
    let dir = tempfile::tempdir().unwrap();
    let a = extract(&dir.path().join("cache"));
    let a = a.to_str().unwrap();
    let (ok, out, err) = rotate(&[
        "--activations",
        a,
        "--seed",
        "3",
        "--power",
        "0.5",
        "--layers",
        "conv",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("rotate: wrote"), "{err}");
    let rotated = nd_store::Artifact::open(Path::new(&out)).unwrap();
    assert_eq!(rotated.manifest.stage, "rotate");
    assert_eq!(
        rotated.manifest.outputs["layers"].as_array().unwrap().len(),
        1
    );
    assert_eq!(rotated.rows().unwrap(), 0..2);
    let m =
        nd_rotate::npy::from_bytes(&std::fs::read(rotated.dir.join("matrices/conv.npy")).unwrap())
            .unwrap();
    assert_eq!(
        m,
        nd_rotate::matrix::power(&nd_rotate::matrix::random_rotation(3, 3), 0.5)
    );
    let before = ActivationGroup::open(&Path::new(a).join("activations.zarr"))
        .unwrap()
        .open_layer("conv")
        .unwrap()
        .read(0..2, 0..3)
        .unwrap();
    let group = ActivationGroup::open(&rotated.dir.join("activations.zarr")).unwrap();
    assert_eq!(group.layers().unwrap(), ["conv"]);
    let after = group.open_layer("conv").unwrap().read(0..2, 0..3).unwrap();
    for image in 0..2 {
        for unit in 0..3 {
            for position in 0..4 {
                let want: f64 = (0..3)
                    .map(|j| m[(unit, j)] * f64::from(before[image * 12 + j * 4 + position]))
                    .sum();
                let got = after[image * 12 + unit * 4 + position];
                assert!((f64::from(got) - want).abs() < 1e-5, "{got} against {want}");
            }
        }
    }
    // Fresh the second time; power 0 is the extract artifact itself.
    let (ok, again, err) = rotate(&[
        "--activations",
        a,
        "--seed",
        "3",
        "--power",
        "0.5",
        "--layers",
        "conv",
    ]);
    assert!(ok && again == out && err.contains("fresh"), "{err}");
    let (ok, none, err) = rotate(&["--activations", a, "--seed", "3", "--power", "0"]);
    assert!(ok, "{err}");
    assert_eq!(Path::new(&none), Path::new(a).canonicalize().unwrap());
}

#[test]
fn bad_input_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let a = extract(&cache);
    let a = a.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--power", "1.5"],
            "power must be between 0 and 1 (the fraction of the rotation applied), got 1.5",
        ),
        (
            vec!["--layers", "conv,conv9"],
            "layers: `conv9` is not in the activations",
        ),
        (
            vec!["--layers", "conv,conv"],
            "layers: `conv` is given twice",
        ),
    ] {
        let mut all = vec!["--activations", a, "--seed", "1"];
        all.extend(args);
        let (ok, _, err) = rotate(&all);
        assert!(!ok);
        assert!(err.contains(needle), "{needle}\n{err}");
    }
    assert!(!cache.join("rotate").exists());
    let store = nd_store::Store::open(&cache).unwrap();
    let score = store
        .begin(&nd_store::Spec::new("score", 1, json!({})))
        .unwrap()
        .commit(Default::default(), json!({}))
        .unwrap()
        .dir;
    let (ok, _, err) = rotate(&["--activations", score.to_str().unwrap(), "--seed", "1"]);
    assert!(!ok);
    assert!(
        err.contains("is a score artifact, expected a extract artifact"),
        "{err}"
    );
}
