//! The explain stage: why a classifier predicted what it did, in terms of its labelled
//! units, and a test of that explanation by ablating the units.
//!
//! For every image of a dataset and each of its top-k predicted classes, the contribution of
//! each unit `u` of a dissected layer to the class score `y_c` is gradient × activation,
//! summed over the unit's map: `Σ_p ∂y_c/∂A_u(p) · A_u(p)`; the class activation map (CAM)
//! is its per-position sum over units, `Σ_u ∂y_c/∂A_u(p) · A_u(p)`. For a head that pools
//! the map and applies a linear layer (global average pooling as in the CAM papers, or any
//! mix of average and max pooling) the contributions are exact: they sum to the class score
//! less the head's bias (Euler's theorem for a positively homogeneous function). Otherwise
//! they are its first-order (Taylor) approximation. The gradients come from libtorch's
//! autograd through the model's intervention method ([`nd_torch::Model::forward_from`]),
//! which runs the network on from the layer.
//!
//! Each contributing unit is joined with the dissection of the same model and layer (the
//! report artifact's `units.parquet`): its label, category, IoU and whether it is a
//! detector.
//!
//! The **faithfulness check**: for each image, its top-n contributing units are set to zero
//! (through the intervention method) and the drop of the predicted class's score is
//! measured, with whether the prediction changes; the same for n random units of the layer
//! (seeded draws), and, when the head is linear after pooling, for the n units with the
//! largest weights for the class whatever the image (the "weight" baseline).
//!
//! Outputs, in the explain artifact (README, "Explaining predictions"): `explanations.parquet`,
//! `class_units.parquet`, `class_concepts.parquet`, `faithfulness.parquet`, `cams.parquet`
//! and `summary.json`.

mod compute;
mod merge;
mod part;
mod tables;

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

pub use compute::{
    ClassExplanation, Faithfulness, ImagesExplained, explain_images,
    explain_images_with_activations,
};
pub use merge::merge;
use nd_torch::{DeviceChoice, Preprocess};
pub use tables::{UnitLabel, read_units as unit_labels};

/// The stage's name in the store.
pub const STAGE: &str = "explain";
/// Bumped when the artifact's layout or meaning changes.
pub const SCHEMA: u32 = 1;
pub const SUMMARY_FILE: &str = "summary.json";

/// Everything that can stop an explanation, naming the file, layer or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dataset(#[from] nd_broden::Error),
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Tables(#[from] nd_tables::Error),
    #[error(transparent)]
    Torch(#[from] nd_torch::Error),
    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
    #[error("torch: {0}")]
    Tch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Error {
        Error::Tables(nd_tables::Error::Arrow(e))
    }
}

/// What to explain, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// A TorchScript file whose `forward` returns `layer` and `logits`, and which has the
    /// intervention method for `layer` (see [`nd_torch`]).
    pub model: PathBuf,
    pub output_names: Option<Vec<String>>,
    pub preprocess: Preprocess,
    /// The dissected layer whose units explain the predictions.
    pub layer: String,
    /// The name under which `forward` returns the class scores `(N, classes)`.
    pub logits: String,
    /// The classes' names, in the order of the class scores; `None` numbers them.
    pub classes: Option<Vec<String>>,
    /// Classes explained per image: the `top_k` highest scores.
    pub top_k: usize,
    /// Units kept per image and class in `explanations.parquet`, and per class in
    /// `class_units.parquet` and `class_concepts.parquet`.
    pub top_n: usize,
    /// The numbers of units the faithfulness check ablates.
    pub ablate: Vec<usize>,
    /// Seeded draws of random units per number.
    pub random_draws: usize,
    pub seed: u64,
    /// The dataset category that names an image's true class (its first image-level label
    /// of that category, matched by name with the class names), when the dataset has it.
    pub truth_category: Option<String>,
    pub batch_size: usize,
    /// The dataset rows explained: all of them, or an image shard (whose artifact also
    /// keeps what `nd-explain merge` needs to join shards into the tables of all their rows).
    pub rows: Option<Range<usize>>,
    pub device: DeviceChoice,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

impl Config {
    pub fn new(model: PathBuf, layer: String, preprocess: Preprocess) -> Config {
        Config {
            model,
            output_names: None,
            preprocess,
            layer,
            logits: "logits".into(),
            classes: None,
            top_k: 1,
            top_n: 10,
            ablate: vec![1, 2, 4, 8, 16],
            random_draws: 5,
            seed: 0,
            truth_category: Some("scene".into()),
            batch_size: 32,
            rows: None,
            device: DeviceChoice::Auto,
            progress: true,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(what));
        if self.layer.is_empty() {
            return bad("no layer to explain with".into());
        }
        if self.logits.is_empty() {
            return bad("the name of the class scores (logits) is empty".into());
        }
        if self.top_k == 0 {
            return bad("top_k (classes explained per image) must be at least 1".into());
        }
        if self.top_n == 0 {
            return bad("top_n (units kept per image and class) must be at least 1".into());
        }
        if self.ablate.contains(&0) {
            return bad("ablate: every number of units to ablate must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.classes.as_ref().is_some_and(Vec::is_empty) {
            return bad("the class names list is empty".into());
        }
        self.preprocess.validate()?;
        Ok(())
    }

    /// Class `c`'s name: its given name, or `class <c>`.
    pub fn class_name(&self, c: usize) -> String {
        match &self.classes {
            Some(names) if c < names.len() => names[c].clone(),
            _ => format!("class {c}"),
        }
    }
}

/// Reads a class-names file: one name per line, blank lines at the end ignored; a name may
/// not be empty.
pub fn read_classes(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::File {
        path: path.to_owned(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            "no such file (a class-names file: one name per line, in the order of the class \
             scores)"
                .into()
        } else {
            format!("cannot read: {e}")
        },
    })?;
    let lines: Vec<&str> = text.trim_end().lines().map(str::trim_end).collect();
    if let Some(i) = lines.iter().position(|l| l.trim().is_empty()) {
        return Err(Error::File {
            path: path.to_owned(),
            message: format!("line {}: empty class name", i + 1),
        });
    }
    if lines.is_empty() {
        return Err(Error::File {
            path: path.to_owned(),
            message: "no class names (one name per line)".into(),
        });
    }
    Ok(lines.into_iter().map(str::to_owned).collect())
}

pub use nd_store::Outcome;

/// The rows of the dataset explained: all of them, or the shard `config.rows` names.
fn rows(dataset: &nd_broden::Dataset, config: &Config) -> Result<Range<usize>> {
    if dataset.is_empty() {
        return Err(Error::Config("the dataset has no images".into()));
    }
    match &config.rows {
        None => Ok(0..dataset.len()),
        Some(r) if r.start < r.end && r.end <= dataset.len() => Ok(r.clone()),
        Some(r) => Err(Error::Config(format!(
            "images {}..{}: not a non-empty range of the dataset's {} rows",
            r.start,
            r.end,
            dataset.len()
        ))),
    }
}

/// Whether `rows` leave some of the dataset out: the artifact is then an image shard.
fn is_shard(dataset: &nd_broden::Dataset, rows: &Range<usize>) -> bool {
    *rows != (0..dataset.len())
}

/// The rows other than `rows.start` where batching restarts (a merge of shards that do not
/// start on a multiple of the batch size from the first): with `rows` and the batch size,
/// they fix the batches, on which the class scores' last bits depend.
fn restarts_param(restarts: &[usize]) -> Option<serde_json::Value> {
    (!restarts.is_empty()).then(|| json!(restarts))
}

/// The store spec of an explanation: the model file, the images, the parameters and the
/// dissection (report artifact) it joins.
pub fn spec(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    report: &nd_store::Artifact,
    config: &Config,
) -> Result<nd_store::Spec> {
    config.validate()?;
    report.expect_stage("report")?;
    if !config.model.is_file() {
        return Err(Error::Model {
            path: config.model.clone(),
            message: "no such file".into(),
        });
    }
    let model_digest = store.file_hash(&config.model).map_err(|e| Error::Model {
        path: config.model.clone(),
        message: e.to_string(),
    })?;
    let rows = rows(dataset, config)?;
    spec_of(
        store,
        dataset,
        report.key(),
        &model_digest,
        config,
        rows,
        &[],
    )
}

/// The spec of an explanation of `rows` with batching restarted at `restarts`.
fn spec_of(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    report: nd_store::Key,
    model_digest: &str,
    config: &Config,
    rows: Range<usize>,
    restarts: &[usize],
) -> Result<nd_store::Spec> {
    let images: Vec<String> = rows.clone().map(|row| dataset.image_file(row)).collect();
    let images_digest = store.digest_files(dataset.root(), &images)?;
    let truth = config
        .truth_category
        .as_ref()
        .filter(|c| dataset.category_index(c).is_some());
    let mut params = json!({
        "layer": config.layer,
        "logits": config.logits,
        "classes": config.classes,
        "output_names": config.output_names,
        "preprocess": config.preprocess,
        "rows": [rows.start, rows.end],
        "top_k": config.top_k,
        "top_n": config.top_n,
        "ablate": config.ablate,
        "random_draws": config.random_draws,
        "seed": config.seed,
        "truth_category": truth,
        // The class scores' last bits depend on how libtorch blocks the head's matrix
        // products, which follows the batch's size (measured: up to 1e-5 of a score of 16
        // between batches of 7 and 50, contributions and maps bit-identical): a different
        // batch size is another artifact, not a different file under the same key.
        "batch_size": config.batch_size,
    });
    if let Some(restarts) = restarts_param(restarts) {
        params["batch_restarts"] = restarts;
    }
    Ok(nd_store::Spec::new(STAGE, SCHEMA, params)
        .digest("model", model_digest.to_owned())
        .digest("images", images_digest)
        .input("report", report))
}

/// The faithfulness figures of one number of ablated units, as `summary.json` and the
/// printed table give them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AblationSummary {
    pub n: usize,
    /// Mean drop of the predicted class's score when the image's top-n units are zeroed.
    pub top_drop: f64,
    pub top_flip_rate: f64,
    /// The same for n random units: the mean over draws, and the draws' standard deviation.
    pub random_drop: f64,
    pub random_drop_sd: f64,
    pub random_flip_rate: f64,
    /// The same for the n units with the largest weights for the class (where the head is
    /// linear after pooling; else none).
    pub weight_drop: Option<f64>,
    pub weight_flip_rate: Option<f64>,
}

/// Explains through the store: returns the cached artifact when there is one, computes and
/// commits it otherwise.
pub fn run(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    report: &nd_store::Artifact,
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(store, dataset, report, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let rows = rows(dataset, config)?;
    let shard = is_shard(dataset, &rows);
    let units = tables::read_units(report, &config.layer)?;
    // Begun first: the class activation maps are written as they are computed. Should
    // anything fail, dropping `pending` removes what was written.
    let pending = store.begin(&spec)?;
    let dir = pending.dir().to_owned();
    let metadata = pending.table_metadata();
    let mut cams = tables::CamSink::new(&dir, &metadata, dataset, &config.layer);
    let mut part = shard.then(|| part::PartSink::new(&dir, &metadata));
    let result = compute::explain(dataset, config, rows, &mut cams, part.as_mut())?;
    if result.units != units.len() {
        return Err(Error::Config(format!(
            "layer `{}` has {} units in the model but {} in the dissection (report {}); \
             explain with the dissection of the same model",
            config.layer,
            result.units,
            units.len(),
            report.key().short()
        )));
    }
    cams.finish()?;
    if let Some(part) = part {
        part.finish()?;
    }
    let artifact = finish(pending, dataset, config, &result, &units, shard)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// Writes the tables and the summary of an explanation whose maps (and, for a shard,
/// images) are written, and commits the artifact.
fn finish(
    pending: nd_store::Pending,
    dataset: &nd_broden::Dataset,
    config: &Config,
    result: &compute::Explanation,
    units: &[UnitLabel],
    shard: bool,
) -> Result<nd_store::Artifact> {
    let dir = pending.dir().to_owned();
    let metadata = pending.table_metadata();
    let summary = tables::write(&dir, dataset, config, result, units, &metadata)?;
    let path = dir.join(SUMMARY_FILE);
    std::fs::write(&path, nd_store::canonical::to_pretty(&summary)).map_err(|e| Error::File {
        path,
        message: format!("cannot write: {e}"),
    })?;
    let mut outputs = json!({
        "summary": SUMMARY_FILE,
        "explanations": tables::EXPLANATIONS,
        "class_units": tables::CLASS_UNITS,
        "class_concepts": tables::CLASS_CONCEPTS,
        "faithfulness": tables::FAITHFULNESS,
        "cams": tables::CAMS,
    });
    if shard {
        part::write_explained(&dir, &result.explained, &metadata)?;
        outputs["merge_images"] = json!(part::MERGE_IMAGES);
        outputs["merge_explained"] = json!(part::MERGE_EXPLAINED);
    }
    let mut versions = nd_store::versions();
    versions.insert("libtorch".to_owned(), nd_torch::LIBTORCH_VERSION.to_owned());
    Ok(pending.commit(versions, outputs)?)
}

/// The per-n faithfulness figures of an explain artifact's `summary.json`.
pub fn read_ablation(artifact: &nd_store::Artifact) -> Result<Vec<AblationSummary>> {
    let path = artifact.dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::File {
        path: path.clone(),
        message: format!("cannot read: {e}"),
    })?;
    let summary: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::File {
        path: path.clone(),
        message: e.to_string(),
    })?;
    serde_json::from_value(summary["ablation"].clone()).map_err(|e| Error::File {
        path,
        message: format!("`ablation`: {e}"),
    })
}

/// The faithfulness figures as a plain table, one line per number of ablated units.
pub fn ablation_table(rows: &[AblationSummary]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "   n  top-n drop  flips   random drop (sd)  flips   weights drop  flips  top/random\n",
    );
    for r in rows {
        let weight = match (r.weight_drop, r.weight_flip_rate) {
            (Some(d), Some(f)) => format!("{d:>12.3}  {:>4.0} %", 100.0 * f),
            _ => format!("{:>12}  {:>6}", "-", "-"),
        };
        let ratio = if r.random_drop.abs() > 0.0 {
            format!("{:.1}×", r.top_drop / r.random_drop)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:>4}  {:>10.3}  {:>3.0} %  {:>9.3} ({:.3})  {:>3.0} %  {weight}  {ratio:>10}",
            r.n,
            r.top_drop,
            100.0 * r.top_flip_rate,
            r.random_drop,
            r.random_drop_sd,
            100.0 * r.random_flip_rate,
        );
    }
    out
}
