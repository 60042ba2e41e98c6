//! The Snakemake workflow (`workflow/Snakefile`): sharded over images and units, it gives
//! the tables and pages `netdissect run` gives; a changed parameter plans exactly the rules
//! it affects; two workflows sharing one cache both finish whole; `snakemake --lint` is
//! clean.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{netdissect, python, repo};

/// A pipeline of the demo's models on a small synthetic world, with the cache and the
/// output directory (if any) given.
pub(crate) fn pipeline(
    models: &[&str],
    cache: &Path,
    output: Option<&Path>,
    pages: bool,
) -> String {
    let mut text = format!(
        "[dataset]\nsynth = {{ images = 60, size = 96, seed = 1 }}\n\n[cache]\ndir = \"{}\"\n",
        cache.display()
    );
    for name in models {
        text += &format!(
            "\n[[model]]\nname = \"{name}\"\nfile = \"{}\"\nlayers = [\"conv1\", \"conv2\", \"conv3\", \"conv4\", \"conv5\"]\nbatch_size = 16\n",
            repo().join(format!("models/demo/demo-{name}.pt")).display()
        );
    }
    text += &format!("\n[html]\npages = {pages}\n");
    if let Some(dir) = output {
        text += &format!("\n[output]\ndir = \"{}\"\n", dir.display());
    }
    text
}

/// The directory of the stage binaries this test run built.
pub(crate) fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_netdissect"))
        .parent()
        .unwrap()
        .to_owned()
}

/// `snakemake` in `dir` with the repository's workflow, `--cores 2`, and `config` values
/// after the pipeline and binaries.
pub(crate) fn snakemake(dir: &Path, pipeline: &Path, config: &[&str], extra: &[&str]) -> Command {
    let mut command = Command::new(repo().join(".venv/bin/snakemake"));
    command
        .arg("--snakefile")
        .arg(repo().join("workflow/Snakefile"))
        .arg("--directory")
        .arg(dir)
        .args(["--cores", "2"])
        .args(extra)
        .arg("--config")
        .arg(format!("pipeline={}", pipeline.display()))
        .arg(format!("bin={}", bin_dir().display()))
        .args(config)
        .env_remove("LD_LIBRARY_PATH");
    command
}

pub(crate) fn succeeded(output: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// The jobs per rule of a dry run's "Job stats" table.
fn planned(text: &str) -> BTreeMap<String, usize> {
    let mut jobs = BTreeMap::new();
    let Some(start) = text.find("Job stats:") else {
        assert!(text.contains("Nothing to be done"), "{text}");
        return jobs;
    };
    for line in text[start..].lines().skip(3) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            ["total", _] => break,
            [rule, count] => {
                jobs.insert(rule.to_owned(), count.parse().unwrap());
            }
            _ => panic!("unexpected job stats line `{line}` in\n{text}"),
        }
    }
    jobs
}

/// `tests/python/compare_runs.py` on two (cache, results) pairs under `dir`: every table's
/// data, model by model; fails the test if any differ.
pub(crate) fn compare(dir: &Path, a: (&str, &str), b: (&str, &str), models: &[&str]) -> String {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let mut args = vec![
        "tests/python/compare_runs.py".to_owned(),
        path(a.0),
        path(a.1),
        path(b.0),
        path(b.1),
    ];
    args.extend(models.iter().map(|m| m.to_string()));
    python(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path.strip_prefix(dir).unwrap().to_owned(), bytes);
            }
        }
    }
    out
}

#[test]
fn sharded_workflow_gives_the_tables_and_pages_of_netdissect_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let models = ["step75", "trained"];
    // The trained model's predictions are explained too (a rule of its own), and step75's
    // activations are also dissected wholly rotated (the rotation control).
    let explained = |text: String| {
        let file = "models/demo/demo-trained.pt\"\n";
        let rotated = "models/demo/demo-step75.pt\"\n";
        assert!(text.contains(file) && text.contains(rotated));
        text.replace(
            rotated,
            &format!("{rotated}rotations = [0.0, 1.0]\nrotation_seed = 4\n"),
        )
        .replace(
            file,
            &format!(
                "{file}logits = \"logits\"\nclasses = \"{}\"\n",
                repo().join("models/demo/scenes.txt").display()
            ),
        ) + "\n[explain]\nablate = [1, 2, 4]\nrandom_draws = 2\n"
            + "\n[formulas]\nmax_length = 2\nbeam = 5\n"
    };
    let single = d.join("run.toml");
    std::fs::write(
        &single,
        explained(pipeline(
            &models,
            &d.join("cache-run"),
            Some(&d.join("results-run")),
            true,
        )),
    )
    .unwrap();
    let run = netdissect(&single, &[]);
    assert!(run.ok, "{}", run.stderr);

    let sharded = d.join("workflow.toml");
    std::fs::write(
        &sharded,
        explained(pipeline(
            &models,
            &d.join("cache"),
            Some(&d.join("results")),
            true,
        )),
    )
    .unwrap();
    let work = d.join("work");
    let shards = ["image_shards=3", "unit_blocks=2"];
    let output = snakemake(&work, &sharded, &shards, &[]).output().unwrap();
    succeeded(&output, "the sharded workflow");

    // It did shard: three image ranges, two blocks of units, merged.
    for (shard, rows) in [(0, [0, 20]), (1, [20, 40]), (2, [40, 60])] {
        let record = work.join(format!("records/trained/extract/{shard}.json"));
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
        assert_eq!(manifest["params"]["rows"], serde_json::json!(rows));
    }
    for block in 0..2 {
        assert!(
            work.join(format!("records/trained/quantile/{block}.json"))
                .is_file()
        );
    }
    for model in models {
        for log in [
            "extract-0",
            "quantile-1",
            "segment-2",
            "score-merge",
            "report",
            "pages",
        ] {
            assert!(
                work.join(format!("logs/{model}/{log}.log")).is_file(),
                "{log}"
            );
        }
    }

    // The rotation turned each image shard of step75's activations.
    for shard in 0..3 {
        let record = work.join(format!("records/step75-rot1/rotate/{shard}.json"));
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
        assert_eq!(manifest["params"]["rotation"]["seed"], 4, "{manifest}");
    }
    assert!(work.join("logs/trained/explain.log").is_file());
    assert!(!work.join("logs/step75/explain.log").exists());
    // The explanation too, over image shards moved onto the batch grid (16 images), so
    // that the merge has one run's batches (its tables are compared below).
    let manifest = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    for (part, rows) in [(0, [0, 16]), (1, [16, 32]), (2, [32, 60])] {
        let part = manifest(work.join(format!("records/trained/explain/{part}.json")));
        assert_eq!(part["params"]["rows"], serde_json::json!(rows));
    }
    let merged = manifest(work.join("records/trained/explain.json"));
    assert_eq!(merged["params"]["rows"], serde_json::json!([0, 60]));
    assert!(merged["params"].get("batch_restarts").is_none(), "{merged}");

    // The same data in every table: report, scores, counts, thresholds and explanations.
    let compared = compare(
        d,
        ("cache", "results"),
        ("cache-run", "results-run"),
        &["step75", "step75-rot1", "trained"],
    );
    assert_eq!(compared.matches(", same").count(), 24 + 5 + 3, "{compared}");
    // The formulas of every image shard's masks at once: the table of one run.
    assert!(compared.contains("trained formulas.parquet"), "{compared}");
    let formulas = manifest(work.join("records/trained/formulas.json"));
    let inputs: Vec<&String> = formulas["inputs"].as_object().unwrap().keys().collect();
    assert_eq!(
        inputs,
        ["masks.0000", "masks.0001", "masks.0002"],
        "{formulas}"
    );
    assert!(
        compared.contains("trained explanations.parquet"),
        "{compared}"
    );
    // The same pages and images, byte for byte (their manifests name other keys).
    let (a, b) = (files(&d.join("results")), files(&d.join("results-run")));
    let pages = |files: &BTreeMap<PathBuf, Vec<u8>>| -> BTreeMap<PathBuf, Vec<u8>> {
        files
            .iter()
            .filter(|(p, _)| {
                p.components().any(|c| c.as_os_str() == "html") && !p.ends_with("manifest.json")
                    || p.parent() == Some(Path::new(""))
            })
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect()
    };
    let (pa, pb) = (pages(&a), pages(&b));
    assert!(pa.keys().any(|p| p.ends_with("unit-0000.html")));
    assert!(pa.contains_key(Path::new("index.html")));
    // The run page plots the rotation (and is the same page either way, below).
    let index = String::from_utf8_lossy(&pa[Path::new("index.html")]).into_owned();
    assert!(
        index.contains("Rotation control") && index.contains("step75 <small>(seed 4)</small>"),
        "{index}"
    );
    assert_eq!(pa.keys().collect::<Vec<_>>(), pb.keys().collect::<Vec<_>>());
    for (path, bytes) in &pa {
        assert!(bytes == &pb[path], "{} differs", path.display());
    }

    // Nothing to do the second time.
    let again = snakemake(&work, &sharded, &shards, &[]).output().unwrap();
    let text = succeeded(&again, "the rerun");
    assert!(text.contains("Nothing to be done"), "{text}");
}

#[test]
fn a_changed_parameter_plans_exactly_the_rules_it_affects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("pipeline.toml");
    let text = pipeline(&["trained"], &d.join("cache"), None, false);
    std::fs::write(&path, &text).unwrap();
    let work = d.join("work");
    let shards = ["image_shards=3", "unit_blocks=2"];
    succeeded(
        &snakemake(&work, &path, &shards, &[]).output().unwrap(),
        "the workflow",
    );
    let plan = |text: &str| {
        std::fs::write(&path, text).unwrap();
        let output = snakemake(&work, &path, &shards, &["--dry-run"])
            .output()
            .unwrap();
        planned(&succeeded(&output, "the dry run"))
    };
    assert!(plan(&text).is_empty());
    let jobs = |list: &[(&str, usize)]| -> BTreeMap<String, usize> {
        list.iter().map(|(r, n)| (r.to_string(), *n)).collect()
    };
    let iou = plan(&format!("{text}\n[report]\niou_threshold = 0.05\n"));
    assert_eq!(iou, jobs(&[("report", 1), ("all", 1)]));
    let top = plan(&format!("{text}\n[quantile]\ntop = 0.01\n"));
    assert_eq!(
        top,
        jobs(&[
            ("quantile_block", 2),
            ("quantile_merge", 1),
            ("segment", 3),
            ("score", 3),
            ("score_merge", 1),
            ("report", 1),
            ("all", 1),
        ])
    );
    // The original's tally depth: score onwards.
    let depth = plan(&format!(
        "{text}\n[score]\ndenominator = \"original\"\ntally_depth = 2048\n"
    ));
    assert_eq!(
        depth,
        jobs(&[("score", 3), ("score_merge", 1), ("report", 1), ("all", 1)])
    );
    // Receptive fields matter to receptive-field upsampling only: chosen with bilinear
    // they plan nothing (netdissect run recomputes nothing either); with receptive-field
    // upsampling, segment onwards reruns whether the model's fields or chosen ones are
    // used.
    let chosen = text.replace(
        "batch_size = 16\n",
        "batch_size = 16\nfields = \"assume-centred\"\n",
    );
    assert!(plan(&chosen).is_empty());
    let receptive = "\n[segment]\nupsample = \"receptive-field\"\n";
    let segment_onwards = jobs(&[
        ("segment", 3),
        ("score", 3),
        ("score_merge", 1),
        ("report", 1),
        ("all", 1),
    ]);
    assert_eq!(plan(&format!("{text}{receptive}")), segment_onwards);
    assert_eq!(plan(&format!("{chosen}{receptive}")), segment_onwards);
    assert!(plan(&text).is_empty(), "back to the computed parameters");

    // The lint is clean, sharded or not.
    for config in [&shards[..], &[]] {
        let output = snakemake(&work, &path, config, &["--lint"])
            .output()
            .unwrap();
        let text = succeeded(&output, "snakemake --lint");
        assert!(
            text.contains("your workflow is in a good condition"),
            "{text}"
        );
    }
}

#[test]
fn two_workflows_at_once_on_one_cache_both_finish_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("pipeline.toml");
    std::fs::write(
        &path,
        pipeline(
            &["trained"],
            &d.join("cache"),
            Some(&d.join("results")),
            true,
        ),
    )
    .unwrap();
    let shards = ["image_shards=3", "unit_blocks=2"];
    let (one, two) = (d.join("one"), d.join("two"));
    let children: Vec<_> = [&one, &two]
        .iter()
        .map(|work| {
            snakemake(work, &path, &shards, &["--cores", "1"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        succeeded(&child.wait_with_output().unwrap(), "a concurrent workflow");
    }
    // The same records: the same artifacts, each whole in the cache.
    let (a, b) = (files(&one.join("records")), files(&two.join("records")));
    assert_eq!(a.len(), 16, "{:?}", a.keys().collect::<Vec<_>>());
    assert_eq!(a, b);
    for record in a.values() {
        let manifest: nd_store::Manifest = serde_json::from_slice(record).unwrap();
        let dir = d
            .join("cache")
            .join(&manifest.stage)
            .join(manifest.key.to_string());
        // A record is the manifest without its list of files, and the artifact is whole.
        let artifact = nd_store::Artifact::open(&dir).unwrap();
        assert!(!artifact.manifest.files.is_empty());
        let without_files = nd_store::Manifest {
            files: Default::default(),
            ..artifact.manifest
        };
        assert_eq!(without_files.to_text().as_bytes(), record.as_slice());
    }
    let leftovers: Vec<_> = std::fs::read_dir(d.join("cache/tmp"))
        .unwrap()
        .flat_map(|host| std::fs::read_dir(host.unwrap().path()).unwrap())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Every table reads back, and the exported copy is one run's, whole.
    compare(d, ("cache", "results"), ("cache", "results"), &["trained"]);
    let results: Vec<_> = std::fs::read_dir(d.join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(results.iter().all(|n| !n.starts_with('.')), "{results:?}");
    assert!(d.join("results/trained/html/index.html").is_file());
}
