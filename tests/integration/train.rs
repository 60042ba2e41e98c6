//! Models a pipeline trains (`train = { recipe, seed }` on `[train]`'s training set):
//! `netdissect run` trains each once per cache through the train stage and dissects it
//! like a model file, or a snapshot of the training (`epoch`); the Snakemake workflow
//! trains them with its own rules and gives the same tables; mistakes name their line.

use std::path::Path;

use crate::common::{netdissect, python};
use crate::workflow::{compare, snakemake, succeeded};

/// A dataset, a small training set (one epoch), a trained model and the same training's
/// initialisation.
fn pipeline(dir: &Path, cache: &str, results: &str) -> String {
    format!(
        r#"
[dataset]
synth = {{ images = 40, size = 64, seed = 3 }}

[cache]
dir = "{cache}"

[train]
data = {{ images = 80, size = 64, seed = 2 }}
epochs = 1

[[model]]
name = "bn-s3"
train = {{ recipe = "bn", seed = 3 }}
layers = ["conv4", "conv5"]
device = "cpu"

[[model]]
name = "bn-s3-init"
train = {{ recipe = "bn", seed = 3, epoch = 0 }}
layers = ["conv5"]
device = "cpu"

[quantile]
top = 0.05

[html]
pages = false

[output]
dir = "{}"
"#,
        dir.join(results).display()
    )
}

fn stages(stderr: &str) -> Vec<(String, String, String)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("stage "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].to_owned())
        })
        .collect()
}

#[test]
fn a_pipeline_trains_its_models_once_and_the_workflow_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("run.toml");
    std::fs::write(&path, pipeline(d, "cache-run", "results-run")).unwrap();
    let run = netdissect(&path, &[]);
    assert!(run.ok, "{}", run.stderr);
    let lines = stages(&run.stderr);
    assert!(
        lines.contains(&("train".into(), "bn-s3".into(), "computed".into())),
        "{lines:?}"
    );
    assert!(lines.contains(&("report".into(), "bn-s3".into(), "computed".into())));
    assert!(d.join("results-run/bn-s3/summary.json").is_file());
    // The extractions read the trained networks in the cache: the model, and the snapshot
    // before training from the training that keeps them.
    let store = nd_store::Store::open(&d.join("cache-run")).unwrap();
    let trained = store.list(nd_train::STAGE).unwrap();
    assert_eq!(trained.len(), 2);
    for t in &trained {
        assert_eq!(t.manifest.params["recipe"], "bn");
        assert_eq!(t.manifest.params["seed"], 3);
        assert_eq!(t.manifest.params["epochs"], 1);
    }
    let snapshots = trained
        .iter()
        .find(|t| t.manifest.params["snapshots"] == true)
        .unwrap();
    let summary = |name: &str| {
        std::fs::read_to_string(d.join(format!("results-run/{name}/summary.json"))).unwrap()
    };
    assert!(summary("bn-s3-init") != summary("bn-s3"));
    assert!(snapshots.dir.join("snapshots/epoch-0.pt").is_file());

    // Again: trained already, nothing computed.
    let again = netdissect(&path, &[]);
    assert!(again.ok, "{}", again.stderr);
    assert!(
        stages(&again.stderr)
            .iter()
            .all(|(_, _, what)| what == "fresh"),
        "{}",
        again.stderr
    );

    // The workflow trains it with its rules (a training set, then nd-train) and gives the
    // same tables.
    let flow = d.join("workflow.toml");
    std::fs::write(&flow, pipeline(d, "cache", "results")).unwrap();
    let work = d.join("work");
    let output = snakemake(&work, &flow, &[], &[]).output().unwrap();
    succeeded(&output, "the workflow");
    for training in ["bn-seed3", "bn-seed3-snapshots"] {
        assert!(
            work.join(format!("records/train/{training}.json"))
                .is_file()
        );
        assert!(work.join(format!("logs/train/{training}.log")).is_file());
    }
    let compared = compare(
        d,
        ("cache", "results"),
        ("cache-run", "results-run"),
        &["bn-s3", "bn-s3-init"],
    );
    assert!(!compared.contains("DIFFERENT"), "{compared}");
    assert!(compared.contains("bn-s3 units.parquet"), "{compared}");
    assert!(compared.contains("bn-s3-init units.parquet"), "{compared}");
}

fn failure(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    let run = netdissect(&path, &[]);
    assert!(!run.ok, "expected a failure:\n{text}");
    assert!(!dir.path().join("results").exists());
    assert!(!dir.path().join("cache/train").exists());
    run.stderr
}

#[test]
fn training_mistakes_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = pipeline(dir.path(), "cache", "results");
    let no_section = good.replace(
        "[train]\ndata = { images = 80, size = 64, seed = 2 }\nepochs = 1\n",
        "",
    );
    let err = failure(&no_section);
    assert!(
        err.contains("pipeline.toml:11:9: model `bn-s3` is trained (train = { recipe, seed }) but the file has no [train] section"),
        "{err}"
    );
    let both = good.replace("train = { recipe", "file = \"m.pt\"\ntrain = { recipe");
    let err = failure(&both);
    assert!(
        err.contains("model `bn-s3` gives both `file` and `train`: give one"),
        "{err}"
    );
    let neither = good.replace("train = { recipe = \"bn\", seed = 3 }\n", "");
    let err = failure(&neither);
    assert!(
        err.contains("model `bn-s3` needs `file` (a TorchScript file) or `train`"),
        "{err}"
    );
    let unknown = good.replace("recipe = \"bn\"", "recipe = \"batchnorm\"");
    let err = failure(&unknown);
    assert!(
        err.contains("model `bn-s3`: train") && err.contains("recipe `batchnorm` is not one of"),
        "{err}"
    );
    let past = good.replace("epoch = 0", "epoch = 2");
    let err = failure(&past);
    assert!(
        err.contains("model `bn-s3-init`: epoch 2 is past the training's 1 epochs"),
        "{err}"
    );
    let zero = good.replace("epochs = 1", "epochs = 0");
    let err = failure(&zero);
    assert!(
        err.contains("[train]") && err.contains("epochs must be at least 1"),
        "{err}"
    );
}

/// `python/findings.py` (EXPERIMENTS.md and its figures) on planted results says each
/// verdict as the counts make it: `tests/python/test_findings.py`.
#[test]
fn the_findings_report_says_what_the_results_say() {
    let out = python(&["tests/python/test_findings.py"]);
    assert!(out.contains("test_findings: ok"), "{out}");
}
