//! The generate stage on a planted generator and segmenter (`tests/python/planted_gan.py`):
//! its dataset and activations are exactly what they were built to be, the intervention
//! runs the generator on unchanged and ablates a unit's shape exactly, and bad generators,
//! segmenters and label files are named, with a non-zero exit and nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use nd_generate::{Config, Segmenter, latent};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The planted models in `dir`, broken as `flags` say.
fn planted(dir: &Path, flags: &[&str]) -> PathBuf {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    let output = Command::new(python)
        .arg(repo().join("tests/python/planted_gan.py"))
        .arg(dir)
        .args(flags)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "planted_gan.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    dir.to_owned()
}

const SHAPES: [(&str, [usize; 2], [usize; 2]); 4] = [
    ("square", [0, 4], [0, 4]),
    ("bar", [5, 6], [0, 8]),
    ("pole", [0, 4], [6, 7]),
    ("dot", [7, 8], [6, 8]),
];
const COLOURS: [[u8; 3]; 4] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]];

/// The unit whose shape holds cell (row, column) of the 8×8 grid.
fn unit_at(row: usize, col: usize) -> Option<usize> {
    SHAPES
        .iter()
        .position(|(_, r, c)| (r[0]..r[1]).contains(&row) && (c[0]..c[1]).contains(&col))
}

fn config(models: &Path) -> Config {
    let mut config = Config::new(
        models.join("generator.pt"),
        Segmenter {
            model: models.join("segmenter.pt"),
            labels: models.join("labels.csv"),
            preprocess: nd_torch::Preprocess::torchvision(),
        },
        vec!["planted".into(), "coarse".into()],
    );
    config.samples = 40;
    config.seed = 3;
    config.batch_size = 7;
    config.device = nd_torch::DeviceChoice::Cpu;
    config
}

#[test]
fn the_planted_dataset_and_activations_are_as_constructed() {
    let dir = tempfile::tempdir().unwrap();
    let models = planted(&dir.path().join("models"), &[]);
    let store = nd_store::Store::open(&dir.path().join("cache")).unwrap();
    let outcome = nd_generate::run(&store, &config(&models)).unwrap();
    assert!(outcome.computed);
    let again = nd_generate::run(&store, &config(&models)).unwrap();
    assert!(!again.computed, "the second run finds the first's artifact");
    // Another batch size, the same key.
    let mut other = config(&models);
    other.batch_size = 40;
    assert!(!nd_generate::run(&store, &other).unwrap().computed);

    let artifact = outcome.artifact;
    let dataset =
        nd_broden::Dataset::open(&nd_generate::dataset_dir(&artifact), &Default::default())
            .unwrap();
    assert_eq!(dataset.len(), 40);
    let names: Vec<&str> = dataset
        .categories()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["object"]);
    for (u, (name, _, _)) in SHAPES.iter().enumerate() {
        assert_eq!(dataset.label_name(u as u32 + 1), *name);
    }
    let group =
        nd_arrays::ActivationGroup::open(&artifact.dir.join(nd_arrays::ACTIVATIONS_DIR)).unwrap();
    assert_eq!(group.layers().unwrap(), ["planted", "coarse"]);
    let planted = group.open_layer("planted").unwrap();
    assert_eq!(
        (
            planted.shape().units,
            planted.shape().height,
            planted.shape().width
        ),
        (4, 8, 8)
    );
    let values = planted.read(0..40, 0..4).unwrap();
    let coarse = group
        .open_layer("coarse")
        .unwrap()
        .read(0..40, 0..4)
        .unwrap();
    let mut shown = [0usize; 4];
    for row in 0..40 {
        let z = latent(3, row as u64, 4);
        let on = |u: usize| z[u] > 0.0;
        // The activations: relu(z[u]) on unit u's cells, exactly; their 2×2 means.
        for u in 0..4 {
            for cell in 0..64 {
                let (r, c) = (cell / 8, cell % 8);
                let want = if unit_at(r, c) == Some(u) {
                    z[u].max(0.0)
                } else {
                    0.0
                };
                assert_eq!(
                    values[((row * 4 + u) * 64) + cell],
                    want,
                    "row {row} unit {u}"
                );
            }
            for cell in 0..16 {
                let (r, c) = (cell / 4, cell % 4);
                let cells = (0..4)
                    .filter(|k| unit_at(2 * r + k / 2, 2 * c + k % 2) == Some(u))
                    .count();
                let want = z[u].max(0.0) * cells as f32 / 4.0;
                let got = coarse[((row * 4 + u) * 16) + cell];
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{got} {want}"
                );
            }
        }
        // The image: grey, and each unit's colour on its cells where it is on.
        let image = dataset.read_image(row).unwrap();
        assert_eq!((image.width(), image.height()), (32, 32));
        for (x, y, p) in image.enumerate_pixels() {
            let want = match unit_at(y as usize / 4, x as usize / 4) {
                Some(u) if on(u) => COLOURS[u],
                _ => [128, 128, 128],
            };
            assert_eq!(p.0, want, "row {row} pixel ({x}, {y})");
        }
        // The label maps (16×16): the shape of every unit that is on.
        let labels = dataset.read_labels(row).unwrap();
        let expected: Vec<u16> = (0..256)
            .map(|p| match unit_at(p / 16 / 2, p % 16 / 2) {
                Some(u) if on(u) => u as u16 + 1,
                _ => 0,
            })
            .collect();
        if expected.iter().all(|&l| l == 0) {
            assert!(labels.maps.is_empty(), "no map where nothing is labelled");
        } else {
            assert_eq!(labels.maps.len(), 1);
            assert_eq!(labels.maps[0].pixels, expected, "row {row}");
            assert_eq!((labels.height, labels.width), (16, 16));
        }
        for (u, count) in shown.iter_mut().enumerate() {
            *count += usize::from(on(u));
        }
    }
    // Every shape is drawn in some samples and not in others.
    assert!(shown.iter().all(|&n| n > 5 && n < 35), "{shown:?}");
    // label.csv counts what was drawn.
    let label_csv =
        std::fs::read_to_string(nd_generate::dataset_dir(&artifact).join("label.csv")).unwrap();
    for (u, (name, _, _)) in SHAPES.iter().enumerate() {
        assert!(
            label_csv.contains(&format!(
                "{},{name},object({}),{},",
                u + 1,
                shown[u],
                shown[u]
            )),
            "{label_csv}"
        );
    }
}

#[test]
fn the_intervention_runs_the_generator_on_and_ablates_a_shape() {
    let dir = tempfile::tempdir().unwrap();
    let models = planted(dir.path(), &[]);
    let model =
        nd_torch::Model::load(&models.join("generator.pt"), tch::Device::Cpu, None).unwrap();
    let z = tch::Tensor::from_slice(&nd_generate::latents(3, 0..12, 4)).view([12, 4]);
    let outputs = model.forward(&z).unwrap();
    let get = |name: &str| {
        outputs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .shallow_clone()
    };
    let (image, planted) = (get("image"), get("planted"));
    let _guard = tch::no_grad_guard();
    let again = model.forward_from("planted", &planted).unwrap();
    assert!(
        again.equal(&image),
        "unchanged activations give the same image"
    );
    // Unit 0 (the square) zeroed: its cells turn grey, nothing else changes.
    let ablated = planted.copy();
    let _ = ablated.narrow(1, 0, 1).fill_(0.0);
    let out = model.forward_from("planted", &ablated).unwrap();
    let changed = out.ne_tensor(&image).any_dim(1, false); // (N, H, W)
    let square = tch::Tensor::zeros([32, 32], (tch::Kind::Bool, tch::Device::Cpu));
    let _ = square.narrow(0, 0, 16).narrow(1, 0, 16).fill_(1);
    let z0 = tch::Tensor::from_slice(&nd_generate::latents(3, 0..12, 4))
        .view([12, 4])
        .narrow(1, 0, 1)
        .gt(0.0)
        .view([12, 1, 1]);
    let expected = square.unsqueeze(0).logical_and(&z0);
    assert!(
        changed.equal(&expected),
        "exactly the square's pixels, where it was drawn"
    );
    let grey = out.masked_select(&expected.unsqueeze(1).expand([12, 3, 32, 32], false));
    assert!(
        grey.eq(0.0).all().int64_value(&[]) == 1,
        "grey is 0 in [-1, 1]"
    );
}

/// `nd-generate` on the planted models with 8 samples, `changes` replacing or adding flags.
fn nd_generate_cli(cache: &Path, models: &Path, changes: &[(&str, &str)]) -> (bool, String) {
    let path = |name: &str| models.join(name).display().to_string();
    let mut flags: Vec<(String, String)> = vec![
        ("--generator".into(), path("generator.pt")),
        ("--segmenter".into(), path("segmenter.pt")),
        ("--segmenter-labels".into(), path("labels.csv")),
        ("--layers".into(), "planted".into()),
        ("--samples".into(), "8".into()),
        ("--device".into(), "cpu".into()),
        ("--cache".into(), cache.display().to_string()),
    ];
    for (flag, value) in changes {
        match flags.iter_mut().find(|(f, _)| f == flag) {
            Some(slot) => slot.1 = value.to_string(),
            None => flags.push((flag.to_string(), value.to_string())),
        }
    }
    let output = Command::new(env!("CARGO_BIN_EXE_nd-generate"))
        .args(flags.iter().flat_map(|(f, v)| [f, v]))
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Nothing committed in the cache.
fn nothing_written(cache: &Path) {
    assert!(
        !cache.join("generate").exists(),
        "an artifact was committed"
    );
}

#[test]
fn bad_generators_segmenters_and_label_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = planted(&d.join("good"), &[]);
    let cache = d.join("cache");

    let (ok, err) = nd_generate_cli(&cache, &good, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("generate: wrote"), "{err}");
    let cache = d.join("cache-bad");

    let no_image = planted(&d.join("no-image"), &["--no-image"]);
    let (ok, err) = nd_generate_cli(&cache, &no_image, &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("generator.pt")
            && err.contains("no image `image`")
            && err.contains("planted")
            && err.contains("coarse"),
        "{err}"
    );
    nothing_written(&cache);

    let wrong_z = planted(&d.join("wrong-z"), &["--record-z-dim", "3"]);
    let (ok, err) = nd_generate_cli(&cache, &wrong_z, &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("forward failed on latent vectors of 8 × 3 (z_dim 3 by its record)"),
        "{err}"
    );
    nothing_written(&cache);

    let extra = planted(&d.join("extra-class"), &["--extra-class"]);
    let (ok, err) = nd_generate_cli(&cache, &extra, &[]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("segmenter.pt")
            && err.contains("returns 6 classes")
            && err.contains("labels.csv names 5"),
        "{err}"
    );
    nothing_written(&cache);

    // A classifier is no generator; a layer the record does not name; a bad label file.
    let (ok, err) = nd_generate_cli(
        &cache,
        &good,
        &[("--generator", good.join("segmenter.pt").to_str().unwrap())],
    );
    assert!(!ok && err.contains("has no generator record"), "{err}");
    let (ok, err) = nd_generate_cli(&cache, &good, &[("--layers", "conv9")]);
    assert!(
        !ok && err.contains("no layer `conv9`") && err.contains("coarse, planted"),
        "{err}"
    );
    let labels = d.join("bad-labels.csv");
    std::fs::write(&labels, "class,name,category\n0,,object\n2,square,object\n").unwrap();
    let (ok, err) = nd_generate_cli(
        &cache,
        &good,
        &[("--segmenter-labels", labels.to_str().unwrap())],
    );
    assert!(
        !ok && err.contains("bad-labels.csv: line 3: class 2 where 1 was expected"),
        "{err}"
    );
    let (ok, err) = nd_generate_cli(&cache, &good, &[("--samples", "0")]);
    assert!(!ok && err.contains("samples must be at least 1"), "{err}");
    nothing_written(&cache);
}
