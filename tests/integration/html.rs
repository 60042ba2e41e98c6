//! The browsable report in a real browser: headless Chromium (Debian's `chromium`) driven
//! by Playwright (`tests/python/check_html.py`), in a network namespace of its own where
//! the system allows one, so that the pages have no network at all.

use std::path::Path;
use std::process::Command;

use crate::common::{colour_pixels, model, netdissect, only_dir, repo};

/// Runs the browser check on a model's results; returns its JSON summary.
pub(crate) fn check_in_browser(
    model_dir: &Path,
    screenshots: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let python = repo().join(".venv/bin/python");
    let script = repo().join("tests/python/check_html.py");
    // Without a network namespace (no privileges), Chromium's host resolver rules still
    // make every name unresolvable, and the checker fails on any request off file://.
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut command = if isolated {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(&python);
        c
    } else {
        eprintln!("no network namespace here: the browser runs with its resolver disabled only");
        Command::new(&python)
    };
    let output = command
        .arg(&script)
        .arg(model_dir)
        .arg(screenshots)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "check_html.py failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The demo model's report opens offline with no error, holds a card per unit, sorts and
/// filters, and shows a unit's images; screenshots are saved.
#[test]
fn the_demo_models_report_works_in_a_browser_offline() {
    let dir = tempfile::tempdir().unwrap();
    let models = repo().join("models/demo");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[dataset]\nsynth = {{ images = 80, size = 112, seed = 4 }}\n[cache]\ndir = \"cache\"\n\
             [[model]]\nname = \"demo-trained\"\nfile = \"{0}/demo-trained.pt\"\nlayers = [\"conv2\", \"conv4\"]\n\
             [[model]]\nname = \"demo-random\"\nfile = \"{0}/demo-random.pt\"\nlayers = [\"conv2\", \"conv4\"]\n\
             [html]\ntop_images = 6\n[output]\ndir = \"results\"\n",
            models.display()
        ),
    )
    .unwrap();
    let run = netdissect(&pipeline, &[]);
    assert!(run.ok, "{}", run.stderr);
    let results = dir.path().join("results");
    assert!(run.stdout.contains("results/index.html"), "{}", run.stdout);
    let shots = dir.path().join("screenshots");
    let summary = check_in_browser(
        &results.join("demo-trained"),
        &shots,
        &[
            "--layer",
            "conv4",
            "--run-index",
            results.join("index.html").to_str().unwrap(),
        ],
    );
    assert_eq!(summary["index"]["layers"], 2);
    // Six top images, each an image and an overlay, twice (mask, concept).
    assert_eq!(summary["unit"]["images"], 24, "{summary}");
    assert_eq!(summary["sort_reordered"], true, "{summary}");
    let hidden = summary["category_filter"]["hidden"].as_u64().unwrap();
    assert!(hidden > 0 && hidden < 128, "{summary}");
    for shot in ["run", "index", "layer", "layer-filtered", "unit"] {
        let path = shots.join(format!("{shot}.png"));
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{}", path.display());
    }

    // Without explanations the pages' key has no such input (and keeps its old roles).
    for pages in std::fs::read_dir(dir.path().join("cache/html")).unwrap() {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(pages.unwrap().path().join("manifest.json")).unwrap(),
        )
        .unwrap();
        let roles: Vec<&String> = manifest["inputs"].as_object().unwrap().keys().collect();
        assert_eq!(roles, ["images", "report"], "{manifest}");
    }

    // The pages are byte for byte the same when written again from the same artifacts.
    let pages = dir.path().join("results/demo-trained/html");
    let index = std::fs::read(pages.join("layer-2-conv4.html")).unwrap();
    let reports: Vec<_> = std::fs::read_dir(dir.path().join("cache/report"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // Written afresh: the cached pages go, their inputs stay.
    for stage in ["html", "html-images"] {
        std::fs::remove_dir_all(dir.path().join("cache").join(stage)).unwrap();
    }
    let again = dir.path().join("again");
    let mut same = false;
    for report in reports {
        let output =
            Command::new(Path::new(env!("CARGO_BIN_EXE_netdissect")).with_file_name("nd-html"))
                .arg("--dataset")
                .arg(only_dir(&dir.path().join("cache/synth")).join("dataset"))
                .arg("--report")
                .arg(&report)
                .args(["--title", "demo-trained", "--top-images", "6", "--out"])
                .arg(&again)
                .output()
                .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        if let Ok(text) = std::fs::read(again.join("layer-2-conv4.html")) {
            same |= text == index;
        }
    }
    assert!(same, "no report's pages equal the run's copy");
}

/// A label named like a script shows as text, in the page's source and in the browser.
#[test]
fn a_hostile_label_name_is_escaped() {
    const HOSTILE: &str = "<script>alert(1)</script>";
    let dir = tempfile::tempdir().unwrap();
    model(dir.path(), "planted");
    let data = dir.path().join("data");
    nd_synth::generate(
        &data,
        &nd_synth::Config {
            seed: 5,
            images: 40,
            image_size: 64,
            format: nd_synth::ImageFormat::Png,
            ..Default::default()
        },
    )
    .unwrap();
    // The planted model's unit i detects colour i: rename the commonest colour.
    let dataset = nd_broden::Dataset::open(&data, &Default::default()).unwrap();
    let (pixels, total) = colour_pixels(&dataset);
    let commonest = (1..12).max_by_key(|&i| pixels[i]).unwrap() as u32;
    let name = dataset.label_name(commonest).to_owned();
    for table in ["label.csv", "c_color.csv"] {
        let path = data.join(table);
        let text = std::fs::read_to_string(&path).unwrap();
        let renamed = text.replace(&format!(",{name},"), &format!(",{HOSTILE},"));
        assert_ne!(renamed, text, "{table}");
        std::fs::write(&path, renamed).unwrap();
    }
    let share = pixels
        .iter()
        .map(|&p| p as f64 / total as f64)
        .fold(0.0, f64::max);
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[dataset]\npath = \"data\"\n[cache]\ndir = \"cache\"\n[[model]]\nname = \"planted\"\n\
             file = \"planted.pt\"\nlayers = [\"colors\"]\n[quantile]\ntop = {}\n[output]\ndir = \"results\"\n",
            (share + 0.01).min(0.5)
        ),
    )
    .unwrap();
    let run = netdissect(&pipeline, &[]);
    assert!(run.ok, "{}", run.stderr);
    let model_dir = dir.path().join("results/planted");
    // The hostile label is the planted unit's label...
    let (_, rows) = nd_report::tally::read(&model_dir.join("tally-colors.csv")).unwrap();
    assert!(
        rows.iter().any(|r| r.label == HOSTILE),
        "no unit is labelled {HOSTILE}"
    );
    // ...written escaped in every page that names it, never as markup.
    let layer = std::fs::read_to_string(model_dir.join("html/layer-1-colors.html")).unwrap();
    assert!(layer.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let mut files = vec![model_dir.join("html/index.html")];
    files.extend(
        std::fs::read_dir(model_dir.join("html/1-colors"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "html")),
    );
    files.push(model_dir.join("html/layer-1-colors.html"));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains(HOSTILE),
            "{} holds the raw label",
            file.display()
        );
    }
    // In the browser: shown as text, no dialog (the checker fails on any).
    let summary = check_in_browser(
        &model_dir,
        &dir.path().join("screenshots"),
        &["--expect-text", HOSTILE],
    );
    assert_eq!(summary["expected_text_shown"], true);
    // The checker itself fails when the text is not there.
    let output = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/python/check_html.py"))
        .arg(&model_dir)
        .arg(dir.path().join("screenshots2"))
        .args(["--expect-text", "<b>not there</b>"])
        .output()
        .unwrap();
    assert!(!output.status.success());
}
