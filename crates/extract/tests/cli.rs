//! Drives the real `nd-extract` binary on generated datasets and models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn python(script: &str, args: &[&str]) -> Output {
    let output = python_result(script, args);
    assert!(
        output.status.success(),
        "{script} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs a script of the repository with the project's python, whether it succeeds or not.
fn python_result(script: &str, args: &[&str]) -> Output {
    let python = repo().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup",
        python.display()
    );
    Command::new(python)
        .arg(repo().join(script))
        .args(args)
        .output()
        .unwrap()
}

fn dataset(
    dir: &Path,
    name: &str,
    images: usize,
    size: u32,
    format: nd_synth::ImageFormat,
) -> PathBuf {
    let out = dir.join(name);
    let config = nd_synth::Config {
        seed: 11,
        images,
        image_size: size,
        format,
        ..Default::default()
    };
    nd_synth::generate(&out, &config).unwrap();
    out
}

fn tiny_model(dir: &Path, kind: &str, seed: u32) -> PathBuf {
    let out = dir.join(format!("{kind}-{seed}.pt"));
    python(
        "tests/python/make_models.py",
        &[kind, out.to_str().unwrap(), "--seed", &seed.to_string()],
    );
    out
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn extract(cache: &Path, dataset: &Path, model: &Path, extra: &[&str]) -> Run {
    extract_env(cache, dataset, model, extra, &[])
}

/// [`extract`] with environment variables set for it alone.
fn extract_env(
    cache: &Path,
    dataset: &Path,
    model: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_nd-extract"))
        .arg("--dataset")
        .arg(dataset)
        .arg("--model")
        .arg(model)
        .arg("--cache")
        .arg(cache)
        .arg("--no-progress")
        .args(extra)
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn artifacts(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("extract")).map_or(0, |d| d.count())
}

fn assert_no_partial_artifacts(cache: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("tmp"))
        .unwrap()
        .flat_map(|host| std::fs::read_dir(host.unwrap().path()).unwrap())
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

/// The acceptance check: our Zarr equals what PyTorch computes directly, for a torchvision
/// export, in both published preprocessing settings, through both image encodings.
#[test]
fn activations_match_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("resnet18.pt");
    python(
        "python/export_torchvision.py",
        &[
            "resnet18",
            "--layers",
            "layer1,layer3",
            "--seed",
            "3",
            "--input-size",
            "64",
            "--out",
            model.to_str().unwrap(),
        ],
    );
    let cache = dir.path().join("cache");
    for (name, format, preprocess) in [
        ("png", nd_synth::ImageFormat::Png, "torchvision"),
        ("jpg", nd_synth::ImageFormat::Jpeg, "lite-caffe"),
    ] {
        // 70 images in batches of 16: more than one row of chunks and a ragged last batch.
        let data = dataset(dir.path(), name, 70, 64, format);
        let run = extract(
            &cache,
            &data,
            &model,
            &[
                "--layers",
                "layer1,layer3",
                "--batch-size",
                "16",
                "--preprocess",
                preprocess,
            ],
        );
        assert!(run.ok, "{}", run.stderr);
        let report = python(
            "tests/python/check_extract.py",
            &[
                "--dataset",
                data.to_str().unwrap(),
                "--artifact",
                &run.stdout,
                "--arch",
                "resnet18",
                "--seed",
                "3",
                "--layers",
                "layer1,layer3",
                "--preprocess",
                preprocess,
            ],
        );
        let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
        eprintln!("{name} {preprocess}: {report}");
        assert!(
            report["layer3"]["max_abs_activation"].as_f64().unwrap() > 0.1,
            "a dead layer proves nothing"
        );
    }
}

/// Regression: two exports of one model wrote different files (TorchScript listed each
/// module's constants in the order of Python's random string hash seed, and torch names the
/// archive's root folder after the output file), so the extract key, which holds the model
/// file's digest, changed with every export. Same arguments and weights, same bytes, whatever
/// the hash seed and the output path; libtorch loads the file, and the second export's
/// extraction is the first one's artifact.
#[test]
fn exporting_a_model_twice_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let export = |out: &Path, hash_seed: Option<&str>| {
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let mut command = Command::new(repo().join(".venv/bin/python"));
        command
            .arg(repo().join("python/export_torchvision.py"))
            .args(["resnet18", "--layers", "layer1", "--seed", "5"])
            .args(["--input-size", "32", "--out"])
            .arg(out);
        match hash_seed {
            Some(seed) => command.env("PYTHONHASHSEED", seed),
            None => command.env_remove("PYTHONHASHSEED"),
        };
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "export to {} failed:\n{}",
            out.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::read(out).unwrap()
    };
    let first = dir.path().join("a/resnet18.pt");
    let second = dir.path().join("b/another-name.pt");
    let (one, two) = (export(&first, Some("1")), export(&second, None));
    assert!(
        one == two,
        "two exports differ: {} and {} bytes",
        one.len(),
        two.len()
    );

    let data = dataset(dir.path(), "d", 4, 32, nd_synth::ImageFormat::Png);
    let cache = dir.path().join("cache");
    let layers = ["--layers", "layer1"];
    let run = extract(&cache, &data, &first, &layers);
    assert!(run.ok, "{}", run.stderr);
    let again = extract(&cache, &data, &second, &layers);
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(again.stdout, run.stdout);
    assert!(again.stderr.contains("extract: fresh"), "{}", again.stderr);
    assert_eq!(artifacts(&cache), 1);
}

/// The tolerance of `check_extract.py` scales with the layer's values: what another order
/// of float32 sums gives passes it (libtorch's order depends on the processor, the batch
/// and the thread count), and a mean one grey level off, a std 1 % off, channels in BGR
/// order and a resize one pixel off each fail it, in both published settings.
#[test]
fn the_pytorch_check_passes_rounding_and_fails_preprocessing_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "png", 6, 64, nd_synth::ImageFormat::Png);
    let output = python(
        "tests/python/test_check_extract.py",
        &["--dataset", data.to_str().unwrap()],
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn second_run_does_no_work_and_only_content_changes_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "d", 12, 32, nd_synth::ImageFormat::Jpeg);
    let model = tiny_model(dir.path(), "tiny", 1);
    let cache = dir.path().join("cache");
    let layers = ["--layers", "conv1,conv2"];

    let first = extract(&cache, &data, &model, &layers);
    assert!(first.ok, "{}", first.stderr);
    assert!(first.stderr.contains("extract: wrote"), "{}", first.stderr);
    let manifest = std::fs::read(Path::new(&first.stdout).join("manifest.json")).unwrap();

    // Thread count, batch size and layer order are not part of the key.
    let again = extract(
        &cache,
        &data,
        &model,
        &[
            "--layers",
            "conv2,conv1",
            "--threads",
            "1",
            "--batch-size",
            "5",
            "--explain",
        ],
    );
    assert!(again.ok, "{}", again.stderr);
    assert_eq!(again.stdout, first.stdout);
    assert!(again.stderr.contains("extract: fresh"), "{}", again.stderr);
    assert_eq!(
        std::fs::read(Path::new(&first.stdout).join("manifest.json")).unwrap(),
        manifest
    );
    assert_eq!(artifacts(&cache), 1);

    // The preprocessing is.
    let caffe = extract(
        &cache,
        &data,
        &model,
        &[
            layers[0],
            layers[1],
            "--preprocess",
            "lite-caffe",
            "--explain",
        ],
    );
    assert!(caffe.ok, "{}", caffe.stderr);
    assert_ne!(caffe.stdout, first.stdout);
    assert!(
        caffe
            .stderr
            .contains("params.preprocess.scale: 1.0 -> 255.0"),
        "{}",
        caffe.stderr
    );
    assert_eq!(artifacts(&cache), 2);

    // So is the model file's content, at the same path.
    python(
        "tests/python/make_models.py",
        &["tiny", model.to_str().unwrap(), "--seed", "2"],
    );
    let retrained = extract(&cache, &data, &model, &[layers[0], layers[1], "--explain"]);
    assert!(retrained.ok, "{}", retrained.stderr);
    assert!(
        retrained.stderr.contains("digest of model"),
        "{}",
        retrained.stderr
    );
    assert!(![first.stdout.as_str(), caffe.stdout.as_str()].contains(&retrained.stdout.as_str()));
    assert_eq!(artifacts(&cache), 3);

    // And so is an image.
    let image = data.join("images/synth/000004.jpg");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::copy(data.join("images/synth/000005.jpg"), &image).unwrap();
    let edited = extract(&cache, &data, &model, &layers);
    assert!(edited.ok, "{}", edited.stderr);
    assert_eq!(artifacts(&cache), 4);
    std::fs::write(&image, bytes).unwrap();
    assert_eq!(
        extract(&cache, &data, &model, &layers).stdout,
        retrained.stdout
    );
}

/// `nd-extract --list-layers` on 32×32 images: its standard output, after checking it
/// succeeded.
fn list_layers(model: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_nd-extract"))
        .args(["--list-layers", "--input-size", "32", "--model"])
        .arg(model)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn list_layers_shows_what_forward_returns() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "tiny", 1);
    let stdout = list_layers(&model);
    // With the receptive fields the file holds (offset, size, stride and the centres).
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "  conv1  4 × 16 × 16  field offset -1, size 3, stride 2: centres at 0 + 2·j px",
            "  conv2  6 × 8 × 8    field offset -3, size 7, stride 4: centres at 0 + 4·j px",
        ],
        "{stdout}"
    );
    let plain = tiny_model(dir.path(), "tiny-nofields", 1);
    let stdout = list_layers(&plain);
    assert!(stdout.contains("\n  conv1  4 × 16 × 16\n"), "{stdout}");
    assert!(stdout.contains("\n  conv2  6 × 8 × 8\n"), "{stdout}");
    assert!(
        stdout.ends_with("(the file holds no receptive fields, which receptive-field upsampling needs: python/export_torchvision.py stores them, or give them in the pipeline file)\n"),
        "{stdout}"
    );
}

/// The shapes used to sit in a 24-character column that a longer name pushed out of
/// line, and a ViT block's tokens or a pooled vector looked like any layer.
#[test]
fn list_layers_aligns_long_names_and_flags_outputs_that_are_not_maps() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "tokens", 1);
    let stdout = list_layers(&model);
    let flag = "not (N, C, H, W): cannot be dissected";
    let lines: Vec<&str> = stdout.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "  conv1                           4 × 16 × 16",
            &format!("  encoder.layers.encoder_layer_0  256 × 4      {flag}"),
            &format!("  pooled                          4            {flag}"),
            "(the file holds no receptive fields, which receptive-field upsampling needs: python/export_torchvision.py stores them, or give them in the pipeline file)",
        ],
        "{stdout}"
    );
}

/// The torchvision export helper lists every node with its shape for one image and its
/// receptive field, aligned, and flags those that are not (N, C, H, W) maps.
#[test]
fn export_helper_lists_node_shapes_and_flags_what_is_not_a_map() {
    let output = python(
        "python/export_torchvision.py",
        &["resnet18", "--list-nodes", "--input-size", "64"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let flag = "not (N, C, H, W): cannot be dissected";
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name}:\n{stdout}"))
    };
    let column = |name: &str, shape: &str| line(name).find(shape).unwrap();
    assert!(line("x").contains("3 × 64 × 64"), "{stdout}");
    assert!(line("x").ends_with("  0 + 1·j, 1"), "{stdout}");
    assert!(line("layer4.1.relu_1").contains("512 × 2 × 2"), "{stdout}");
    assert!(
        line("layer4.1.relu_1").ends_with("  -217 + 32·j, 435"),
        "{stdout}"
    );
    assert!(line("flatten").ends_with(flag), "{stdout}");
    assert!(line("fc").contains("1000"), "{stdout}");
    assert!(line("fc").ends_with(flag), "{stdout}");
    assert!(!line("layer4.1.relu_1").contains(flag), "{stdout}");
    assert_eq!(
        column("x", "3 × 64 × 64"),
        column("layer4.1.relu_1", "512 × 2 × 2"),
        "{stdout}"
    );
}

/// A whole model pickled with torch.save(model) given as weights used to dump torch's page
/// about `weights_only`; the helper says to save the state_dict instead.
#[test]
fn export_helper_says_to_save_a_state_dict_for_a_pickled_model() {
    let dir = tempfile::tempdir().unwrap();
    let pickled = tiny_model(dir.path(), "pickled", 1);
    let out = dir.path().join("out.pt");
    let output = python_result(
        "python/export_torchvision.py",
        &[
            "resnet18",
            "--weights",
            pickled.to_str().unwrap(),
            "--layers",
            "layer4",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "export_torchvision: error: weights file {} holds a pickled __main__.Tiny object, \
             not a state_dict: load it where its class is defined, save the weights alone with \
             torch.save(model.state_dict(), \"state_dict.pth\") and pass that file",
            pickled.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("weights_only"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!out.exists());
}

/// The benchmark's floor runs the same forward passes and writes nothing to the cache; a
/// layer the model does not return fails it as it fails an extraction.
#[test]
fn floor_times_the_forward_passes_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "d", 10, 32, nd_synth::ImageFormat::Png);
    let model = tiny_model(dir.path(), "tiny", 1);
    let cache = dir.path().join("cache");
    let run = extract(
        &cache,
        &data,
        &model,
        &["--layers", "conv1,conv2", "--batch-size", "4", "--floor"],
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("floor: 10 images in 3 batches: forward "),
        "{}",
        run.stdout
    );
    assert_eq!(artifacts(&cache), 0);
    let run = extract(&cache, &data, &model, &["--layers", "conv9", "--floor"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("does not return layer `conv9`"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_models_are_clear_errors_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "d", 6, 32, nd_synth::ImageFormat::Jpeg);
    let cache = dir.path().join("cache");
    let cases: [(&str, &[&str], &str); 9] = [
        (
            "tiny",
            &["--layers", "conv1,conv9"],
            "forward does not return layer `conv9`; it returns: conv1, conv2",
        ),
        (
            "nan",
            &["--layers", "conv1"],
            "layer `conv1`: the model returned NaN for unit 0 on image images/synth/000000.jpg (index.csv line 2)",
        ),
        (
            "flat",
            &["--layers", "pooled"],
            "layer `pooled`: the model returns shape [6, 4]; a layer must be (images, units, height, width)",
        ),
        (
            "tuple",
            &["--layers", "conv1"],
            "forward returns a tuple of 2 tensors; name them",
        ),
        (
            "tiny",
            &["--layers", "conv1", "--images", "4..9"],
            "image range 4..9 is empty or beyond the dataset's 6 rows",
        ),
        (
            "tokens",
            &["--layers", "encoder.layers.encoder_layer_0"],
            "layer `encoder.layers.encoder_layer_0`: the model returns shape [6, 256, 4]; a layer must be (images, units, height, width)",
        ),
        (
            "tuple",
            &["--layers", "a", "--output-names", "a"],
            "forward returns 2 tensors but 1 output name was given; give one output name (output_names / --output-names) per tensor, in order",
        ),
        (
            "state_dict",
            &["--layers", "conv1"],
            "state_dict-1.pt: it is not TorchScript but a file of torch.save (a state_dict or a pickled model); export the model as TorchScript: python/export_torchvision.py",
        ),
        (
            "fixed",
            &["--layers", "conv1"],
            "forward failed on a batch of 6 × 3 × 32 × 32: RuntimeError: AssertionError: this model takes 16x16 images; if the model expects images of another size than 32×32, resize them with --resize H,W",
        ),
    ];
    for (kind, args, message) in cases {
        let model = tiny_model(dir.path(), kind, 1);
        let run = extract(&cache, &data, &model, args);
        assert!(!run.ok, "{kind} {args:?} succeeded");
        assert!(run.stderr.contains(message), "{kind}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("nd-extract: error: "),
            "{}",
            run.stderr
        );
        assert_eq!(artifacts(&cache), 0);
        assert_no_partial_artifacts(&cache);
    }
    let tiny = tiny_model(dir.path(), "tiny", 1);
    let missing = dir.path().join("missing.pt");
    let run = extract(&cache, &data, &missing, &["--layers", "conv1"]);
    assert!(
        run.stderr.contains(&format!(
            "nd-extract: error: model {}: no such file",
            missing.display()
        )),
        "{}",
        run.stderr
    );
    // Without a GPU (CUDA_VISIBLE_DEVICES hides any there is), the flag that asked for one.
    let run = extract_env(
        &cache,
        &data,
        &tiny,
        &["--layers", "conv1", "--device", "cuda"],
        &[("CUDA_VISIBLE_DEVICES", "")],
    );
    assert!(
        run.stderr.contains(
            "nd-extract: error: --device cuda: libtorch sees no CUDA device; choose auto or cpu"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(artifacts(&cache), 0);
    assert_no_partial_artifacts(&cache);
    // Named, the tuple works.
    let model = tiny_model(dir.path(), "tuple", 1);
    let named = extract(
        &cache,
        &data,
        &model,
        &["--layers", "b", "--output-names", "a,b"],
    );
    assert!(named.ok, "{}", named.stderr);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(&named.stdout).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["outputs"]["layers"][0]["shape"],
        serde_json::json!([6, 6, 8, 8])
    );
}

#[test]
fn a_truncated_image_names_its_row_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "d", 8, 32, nd_synth::ImageFormat::Jpeg);
    let model = tiny_model(dir.path(), "tiny", 1);
    let image = data.join("images/synth/000006.jpg");
    let bytes = std::fs::read(&image).unwrap();
    std::fs::write(&image, &bytes[..bytes.len() / 2]).unwrap();
    let cache = dir.path().join("cache");
    let run = extract(
        &cache,
        &data,
        &model,
        &["--layers", "conv1", "--batch-size", "3"],
    );
    assert!(!run.ok);
    assert!(
        run.stderr.contains(
            "index.csv line 8: images/synth/000006.jpg: cannot decode JPEG: the file is truncated"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(artifacts(&cache), 0);
    assert_no_partial_artifacts(&cache);
}

/// A CMYK JPEG (which libjpeg cannot turn into RGB itself) extracts as PIL's RGB conversion
/// of it: beside the same dataset with that image replaced by PIL's conversion (as a PNG),
/// every activation is equal, bit for bit.
#[test]
fn a_cmyk_jpeg_extracts_as_pils_rgb_conversion_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "cmyk", 6, 32, nd_synth::ImageFormat::Jpeg);
    let converted = dir.path().join("converted");
    python(
        "tests/python/pil_jpegs.py",
        &[
            "resave",
            data.to_str().unwrap(),
            "synth/000002.jpg",
            converted.to_str().unwrap(),
        ],
    );
    let model = tiny_model(dir.path(), "tiny", 1);
    let cache = dir.path().join("cache");
    let layers = ["--layers", "conv1,conv2"];
    let cmyk = extract(&cache, &data, &model, &layers);
    assert!(cmyk.ok, "{}", cmyk.stderr);
    let rgb = extract(&cache, &converted, &model, &layers);
    assert!(rgb.ok, "{}", rgb.stderr);
    assert_ne!(cmyk.stdout, rgb.stdout, "the datasets' files differ");
    let open = |artifact: &str| {
        nd_arrays::ActivationGroup::open(&Path::new(artifact).join("activations.zarr")).unwrap()
    };
    let (cmyk, rgb) = (open(&cmyk.stdout), open(&rgb.stdout));
    for layer in ["conv1", "conv2"] {
        let (ours, theirs) = (
            cmyk.open_layer(layer).unwrap(),
            rgb.open_layer(layer).unwrap(),
        );
        let shape = ours.shape();
        assert_eq!(shape, theirs.shape());
        let all = |reader: &nd_arrays::LayerReader| {
            let values = reader.read(0..shape.images, 0..shape.units).unwrap();
            values.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        assert_eq!(all(&ours), all(&theirs), "{layer}");
    }
}

/// The extract manifest records the model's input size and the receptive fields the model
/// file holds for the layers extracted, which the segment stage's receptive-field
/// upsampling reads; a file without them records none.
#[test]
fn the_manifest_records_the_input_size_and_the_models_fields() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "d", 4, 32, nd_synth::ImageFormat::Jpeg);
    let cache = dir.path().join("cache");
    let outputs = |model: &Path, extra: &[&str]| {
        let run = extract(&cache, &data, model, extra);
        assert!(run.ok, "{}", run.stderr);
        let text = std::fs::read_to_string(Path::new(&run.stdout).join("manifest.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["outputs"].clone()
    };
    let model = tiny_model(dir.path(), "tiny", 1);
    let recorded = outputs(&model, &["--layers", "conv2"]);
    assert_eq!(recorded["input_size"], serde_json::json!([32, 32]));
    assert_eq!(
        recorded["fields"],
        serde_json::json!({ "conv2": { "offset": [-3, -3], "size": [7, 7], "stride": [4, 4] } })
    );
    let resized = outputs(&model, &["--layers", "conv1", "--resize", "48,40"]);
    assert_eq!(resized["input_size"], serde_json::json!([48, 40]));
    assert_eq!(
        resized["fields"],
        serde_json::json!({ "conv1": { "offset": [-1, -1], "size": [3, 3], "stride": [2, 2] } })
    );
    let plain = tiny_model(dir.path(), "tiny-nofields", 1);
    let none = outputs(&plain, &["--layers", "conv1,conv2"]);
    assert_eq!(none["fields"], serde_json::json!({}));
}
