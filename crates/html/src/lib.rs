//! The browsable report: a static directory of HTML pages that opens from `file://` with no
//! network, for one model's dissection.
//!
//! - `index.html`: every layer's statistics and the "interpretability by layer" plot;
//! - `layer-<n>-<name>.html`: the layer's detectors per concept (an SVG bar chart) and a card
//!   per unit (label, category, IoU, the next-best labels, a strip of its top images with
//!   its mask drawn over them), sortable and filterable;
//! - `<n>-<name>/u<unit>.html`: a unit's top images large, its mask beside the label map of
//!   its best concept.
//!
//! Images are drawn here from the cached artifacts: a unit's top images are those where its
//! spatial maximum (stored by extract) is highest, and its mask in each is the one the
//! segment stage stored and the score stage counted. Every text from the dataset or the
//! model is HTML-escaped.
//!
//! - `explain/`, when the model's predictions were explained (the explain stage's artifact,
//!   [`Inputs::explain`]): an index of the explained images, a page per image (its predicted
//!   classes, the class activation map over it, its top units' masks over it) and a page
//!   per predicted class (its top concepts and units, example images).
//!
//! [`write_run_index`] writes the page that compares the models of a run.
//!
//! [`ImagePages`] writes the same pages for images explained outside the dataset
//! (`netdissect explain --html`), from plain data the caller computes: an index and a page
//! per image with its classes, map and top units' masks, linking the units' pages of a
//! report ([`unit_page`]) where there is one.

mod draw;
mod explain;
mod explain_single;
mod formulas;
mod page;
mod rotation;
mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array as _, AsArray};
use rayon::prelude::*;
use serde_json::{Value, json};

pub use explain::{ClassScore, TopUnit};
pub use explain_single::{
    ExplainedImage, IMAGE_PAGES_FILE, ImagePages, ImageSet, UnitInImage, file_url, unit_page,
};
pub use page::escape;

pub const STAGE: &str = "html";
pub const SCHEMA: u32 = 1;
/// The sources of the drawings, in the images' key: changed code never serves old images.
const DRAWING_SOURCES: [&str; 2] = [include_str!("lib.rs"), include_str!("draw.rs")];
/// The stage of the images the pages show.
pub const IMAGES_STAGE: &str = "html-images";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Tables(#[from] nd_tables::Error),
    #[error(transparent)]
    Arrays(#[from] nd_arrays::Error),
    #[error(transparent)]
    Dataset(#[from] nd_broden::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {}: {message}", path.display())]
    Encode { path: PathBuf, message: String },
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Top images shown per unit (by the unit's spatial maximum in the image).
    pub top_images: usize,
    /// Height in pixels of each image in a card's strip.
    pub thumbnail_height: u32,
    /// The report's title (the model's name in a run).
    pub title: String,
    /// Draw a progress bar on stderr (units drawn, then units paged); changes no output.
    pub progress: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            top_images: 10,
            thumbnail_height: 84,
            title: "Network Dissection".to_owned(),
            progress: false,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        if !(1..=100).contains(&self.top_images) {
            return Err(Error::Input(format!(
                "the number of top images must be between 1 and 100, got {}",
                self.top_images
            )));
        }
        if !(16..=512).contains(&self.thumbnail_height) {
            return Err(Error::Input(format!(
                "the thumbnail height must be between 16 and 512 pixels, got {}",
                self.thumbnail_height
            )));
        }
        Ok(())
    }
}

/// One image shard of a report's inputs: its activations, the masks segmented from them,
/// and the scores counted from those masks (the model's scores when there is one shard).
#[derive(Debug, Clone, Copy)]
pub struct Shard<'a> {
    pub activations: &'a nd_store::Artifact,
    pub masks: &'a nd_store::Artifact,
    pub scores: &'a nd_store::Artifact,
}

/// The artifacts a report is drawn from; each must be the input of the next. A report of a
/// sharded run (`nd-score merge`) has one shard per image range, in row order.
pub struct Inputs<'a> {
    pub dataset: &'a nd_broden::Dataset,
    pub shards: Vec<Shard<'a>>,
    pub scores: &'a nd_store::Artifact,
    pub report: &'a nd_store::Artifact,
    /// The explanations of the model's predictions by a layer of this report (the explain
    /// stage's artifact), for the pages under `explain/`; `None`: no such pages.
    pub explain: Option<&'a nd_store::Artifact>,
    /// The units' formulas of concepts (the formulas stage's artifact, of these masks), for
    /// the cards and unit pages; `None`: none shown.
    pub formulas: Option<&'a nd_store::Artifact>,
}

impl Inputs<'_> {
    /// Checks that the artifacts form one chain: report ← scores ← (shard scores ←) masks ←
    /// activations.
    fn check(&self) -> Result<()> {
        self.scores.expect_stage("score")?;
        self.report.expect_stage("report")?;
        let link = |artifact: &nd_store::Artifact, role: &str, input: &nd_store::Artifact| {
            if artifact.manifest.inputs.get(role) == Some(&input.key()) {
                Ok(())
            } else {
                Err(Error::Input(format!(
                    "{} was not computed from {}: pass the {role} it was made from",
                    artifact.dir.display(),
                    input.dir.display()
                )))
            }
        };
        link(self.report, "scores", self.scores)?;
        if let Some(explain) = self.explain {
            explain.expect_stage("explain")?;
            link(explain, "report", self.report)?;
        }
        if self.shards.is_empty() {
            return Err(Error::Input("no image shard given".into()));
        }
        if let Some(formulas) = self.formulas {
            formulas.expect_stage("formulas")?;
            let of_masks =
                |m: &nd_store::Artifact| formulas.manifest.inputs.values().any(|k| *k == m.key());
            if !self.shards.iter().all(|s| of_masks(s.masks)) {
                return Err(Error::Input(format!(
                    "{} is not the formulas of these masks ({})",
                    formulas.dir.display(),
                    self.shards[0].masks.dir.display()
                )));
            }
        }
        for (i, shard) in self.shards.iter().enumerate() {
            shard.activations.expect_activations()?;
            shard.masks.expect_stage("segment")?;
            shard.scores.expect_stage("score")?;
            link(shard.masks, "activations", shard.activations)?;
            link(shard.scores, "masks", shard.masks)?;
            if self.shards.len() > 1 {
                link(self.scores, &format!("scores.{i:04}"), shard.scores)?;
            } else if shard.scores.key() != self.scores.key() {
                return Err(Error::Input(format!(
                    "{} is not the score of {}",
                    self.scores.dir.display(),
                    shard.masks.dir.display()
                )));
            }
        }
        Ok(())
    }
}

/// A report's inputs found in the store from the report alone, by the keys its manifest
/// and its inputs' manifests name; owned, for [`Chain::inputs`].
pub struct Chain {
    pub scores: nd_store::Artifact,
    /// `(activations, masks, scores)` of each image shard, in row order.
    pub shards: Vec<(nd_store::Artifact, nd_store::Artifact, nd_store::Artifact)>,
}

impl Chain {
    pub fn find(store: &nd_store::Store, report: &nd_store::Artifact) -> Result<Chain> {
        let input = |artifact: &nd_store::Artifact, role: &str, stage: &str| {
            let key = artifact.manifest.inputs.get(role).ok_or_else(|| {
                Error::Input(format!(
                    "{}: the manifest names no `{role}` input",
                    artifact.dir.display()
                ))
            })?;
            store.get_key(stage, *key)?.ok_or_else(|| {
                Error::Input(format!(
                    "the {stage} artifact {} that {} was made from is not in the cache {}",
                    key.short(),
                    artifact.dir.display(),
                    store.root().display()
                ))
            })
        };
        report.expect_stage("report")?;
        let scores = input(report, "scores", "score")?;
        let shard_scores: Vec<nd_store::Artifact> = if scores.manifest.inputs.contains_key("masks")
        {
            vec![scores.clone()]
        } else {
            let roles: Vec<String> = scores
                .manifest
                .inputs
                .keys()
                .filter(|r| r.starts_with("scores."))
                .cloned()
                .collect();
            roles
                .iter()
                .map(|role| input(&scores, role, "score"))
                .collect::<Result<_>>()?
        };
        let mut shards = Vec::new();
        for shard in shard_scores {
            let masks = input(&shard, "masks", "segment")?;
            // Activations of the extract stage, of the rotate stage (a turned basis) or of
            // the generate stage (a generator's, beside the dataset of its samples).
            let other = masks.manifest.inputs.get("activations").and_then(|key| {
                ["rotate", "generate"]
                    .into_iter()
                    .find_map(|stage| store.get_key(stage, *key).transpose())
            });
            let activations = match other {
                Some(artifact) => artifact?,
                None => input(&masks, "activations", "extract")?,
            };
            shards.push((activations, masks, shard));
        }
        Ok(Chain { scores, shards })
    }

    pub fn inputs<'a>(
        &'a self,
        dataset: &'a nd_broden::Dataset,
        report: &'a nd_store::Artifact,
    ) -> Inputs<'a> {
        Inputs {
            dataset,
            shards: self
                .shards
                .iter()
                .map(|(activations, masks, scores)| Shard {
                    activations,
                    masks,
                    scores,
                })
                .collect(),
            scores: &self.scores,
            report,
            explain: None,
            formulas: None,
        }
    }
}

/// The key of the images (strips, top images, overlays): everything but the IoU threshold
/// and the title, so that changing those rewrites only the pages. The units' labels are read
/// from the report, but they are a function of the scores alone (the threshold only decides
/// which units are detectors), by the rule of the report's schema version, which is in the key.
pub fn images_spec(inputs: &Inputs, config: &Config) -> Result<nd_store::Spec> {
    config.validate()?;
    inputs.check()?;
    // The images are in the extract key (their digest), the label maps in the score key.
    let mut spec = nd_store::Spec::new(
        IMAGES_STAGE,
        SCHEMA,
        json!({
            "top_images": config.top_images,
            "thumbnail_height": config.thumbnail_height,
        }),
    )
    .input("scores", inputs.scores.key())
    .digest(
        "labels",
        format!("report schema {}", inputs.report.manifest.schema),
    )
    .digest("drawings", sources_digest(&DRAWING_SOURCES));
    // The formulas' masks are drawn beside the unit's.
    if let Some(formulas) = inputs.formulas {
        spec = spec
            .input("formulas", formulas.key())
            .digest("formula_drawings", sources_digest(&formulas::SOURCES));
    }
    // One shard keeps the roles it had before sharding existed (and so its keys).
    for (i, shard) in inputs.shards.iter().enumerate() {
        let suffix = if inputs.shards.len() == 1 {
            String::new()
        } else {
            format!(".{i:04}")
        };
        spec = spec
            .input(&format!("activations{suffix}"), shard.activations.key())
            .input(&format!("masks{suffix}"), shard.masks.key());
    }
    Ok(spec)
}

/// The key of the pages: the images, the report, the title, and what the pages are made
/// with; the explanations and the code of their pages only when there are some, so that a
/// report without them keeps the key it had before they existed.
pub fn spec(inputs: &Inputs, config: &Config) -> Result<nd_store::Spec> {
    let images = images_spec(inputs, config)?;
    let mut spec = nd_store::Spec::new(STAGE, SCHEMA, json!({ "title": config.title }))
        .input("images", images.key())
        .input("report", inputs.report.key())
        .digest("pages", sources_digest(&page::SOURCES));
    if let Some(explain) = inputs.explain {
        spec = spec
            .input("explain", explain.key())
            .digest("explain_pages", sources_digest(&explain::SOURCES));
    }
    if let Some(formulas) = inputs.formulas {
        spec = spec
            .input("formulas", formulas.key())
            .digest("formula_pages", sources_digest(&formulas::SOURCES));
    }
    Ok(spec)
}

pub use nd_store::Outcome;

/// Writes the report pages of one model through the store: the images first (unless they
/// are cached), then the pages, which link the images.
pub fn run(store: &nd_store::Store, inputs: &Inputs, config: &Config) -> Result<Outcome> {
    let spec = spec(inputs, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let mut report = read_report(inputs)?;
    let rows = checked_rows(inputs)?;
    let images_spec = images_spec(inputs, config)?;
    let cached = store.get(&images_spec)?;
    // One step per unit drawn (unless the drawings are cached) and one per unit page.
    let units: usize = report.layers.iter().map(|l| l.units.len()).sum();
    let steps = units * if cached.is_some() { 1 } else { 2 };
    let progress = nd_store::progress::bar(
        config.progress,
        steps as u64,
        "html    {msg:7} {bar:32} {pos}/{len} units, {rate}, eta {eta}",
    );
    let images = match cached {
        Some(artifact) => artifact,
        None => {
            progress.set_message("drawing");
            let pending = store.begin(&images_spec)?;
            let outputs =
                write_images(pending.dir(), inputs, config, &mut report, &rows, &progress)?;
            pending.commit(nd_store::versions(), outputs)?
        }
    };
    progress.set_message("pages");
    let pending = store.begin(&spec)?;
    let outputs = write_pages(pending.dir(), &images, inputs, config, &report, &progress)?;
    progress.finish_and_clear();
    let artifact = pending.commit(nd_store::versions(), outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// The next-best labels a unit's card and page list after its top label.
const NEXT: usize = 4;

/// Puts the label `(iou, label)` into `best` (highest IoU first, the smaller label number on
/// ties; at most `keep` long) when it is among the `keep` best seen, made by `make`.
fn keep_best(
    best: &mut Vec<CategoryBest>,
    (iou, label): (f64, u32),
    make: impl FnOnce() -> CategoryBest,
    keep: usize,
) {
    let at = best.partition_point(|c| c.iou.total_cmp(&iou).then(label.cmp(&c.label)).is_gt());
    if at < keep {
        best.insert(at, make());
        best.truncate(keep);
    }
}

/// A unit's best label in one category.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CategoryBest {
    pub category: String,
    pub label: u32,
    pub name: String,
    pub iou: f64,
}

/// One unit's labels, as the report and score artifacts give them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unit {
    /// 0-based.
    pub unit: u32,
    /// The unit's label; `None` when no label overlaps its masks at all.
    pub top: Option<CategoryBest>,
    pub detector: bool,
    /// Best label per category, in category order; a category none of whose labels
    /// overlaps the unit's masks is left out.
    pub categories: Vec<CategoryBest>,
    /// The next-best labels over all categories, after the top one.
    pub next: Vec<CategoryBest>,
}

/// A layer: its summary from `summary.json`, its units and their top images.
pub(crate) struct Layer {
    pub name: String,
    /// File-name-safe and unique within the report: `<n>-<name>`.
    pub stem: String,
    pub summary: Value,
    pub units: Vec<Unit>,
    /// Per unit, the dataset rows of its top images with the unit's maximum there.
    pub top: Vec<Vec<(usize, f32)>>,
}

/// The report's summary.json and per-unit tables, by layer.
pub(crate) struct Report {
    pub categories: Vec<String>,
    pub iou_threshold: f64,
    pub layers: Vec<Layer>,
}

/// What every page and drawing of a report needs.
pub(crate) struct Context<'a> {
    /// The directory the report is written into.
    pub dir: &'a Path,
    pub dataset: &'a nd_broden::Dataset,
    pub categories: &'a [String],
    pub iou_threshold: f64,
    pub config: &'a Config,
    /// Advanced by one per unit drawn and per unit page written.
    pub progress: indicatif::ProgressBar,
    /// The units' formulas, when given (empty otherwise).
    pub formulas: formulas::Formulas,
}

impl<'a> Context<'a> {
    fn new(
        dir: &'a Path,
        inputs: &Inputs<'a>,
        categories: &'a [String],
        iou_threshold: f64,
        config: &'a Config,
        progress: indicatif::ProgressBar,
    ) -> Result<Context<'a>> {
        Ok(Context {
            dir,
            dataset: inputs.dataset,
            categories,
            iou_threshold,
            config,
            progress,
            formulas: match inputs.formulas {
                Some(artifact) => formulas::Formulas::read(artifact)?,
                None => formulas::Formulas::default(),
            },
        })
    }
}

/// A name safe as a file name on every system, kept readable.
fn stem(index: usize, layer: &str) -> String {
    let safe: String = layer
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    format!("{}-{safe}", index + 1)
}

/// The blake3 digest of the code (and assets) that writes an artifact.
fn sources_digest(sources: &[&str]) -> String {
    let mut hasher = blake3::Hasher::new();
    for source in sources {
        hasher.update(&(source.len() as u64).to_le_bytes());
        hasher.update(source.as_bytes());
    }
    hasher.finalize().to_hex().to_string()
}

/// A report artifact's `summary.json`, and its path (for errors).
fn read_summary(report: &nd_store::Artifact) -> Result<(PathBuf, Value)> {
    let path = report.dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let summary = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: unreadable ({e})", path.display())))?;
    Ok((path, summary))
}

fn read_report(inputs: &Inputs) -> Result<Report> {
    let (path, summary) = read_summary(inputs.report)?;
    let categories: Vec<String> = serde_json::from_value(summary["categories"].clone())
        .map_err(|_| Error::Input(format!("{}: no `categories` list", path.display())))?;
    let iou_threshold = summary["iou_threshold"]
        .as_f64()
        .ok_or_else(|| Error::Input(format!("{}: no `iou_threshold`", path.display())))?;
    let layer_summaries = summary["layers"]
        .as_array()
        .ok_or_else(|| Error::Input(format!("{}: no `layers` list", path.display())))?;

    // units.parquet: the label of each unit (category and name; IoU).
    let units_path = inputs.report.dir.join("units.parquet");
    let batch = nd_tables::read(&units_path)?;
    let u_layer = nd_tables::strings(&batch, "layer")?;
    let u_unit = nd_tables::values::<arrow::datatypes::UInt32Type>(&batch, "unit")?;
    let u_name = nd_tables::strings(&batch, "name")?;
    let u_category = nd_tables::strings(&batch, "category")?;
    let u_iou = nd_tables::values::<arrow::datatypes::Float64Type>(&batch, "iou")?;
    let u_label = batch
        .column_by_name("label")
        .and_then(|c| {
            c.as_primitive_opt::<arrow::datatypes::UInt32Type>()
                .cloned()
        })
        .ok_or_else(|| Error::Input(format!("{}: no `label` column", units_path.display())))?;

    // unit_categories.parquet: each unit's best label per category; none (a null label)
    // where the unit overlaps no label of the category.
    let categories_path = inputs.report.dir.join("unit_categories.parquet");
    let batch = nd_tables::read(&categories_path)?;
    let c_layer = nd_tables::strings(&batch, "layer")?;
    let c_unit = nd_tables::values::<arrow::datatypes::UInt32Type>(&batch, "unit")?;
    let c_category = nd_tables::strings(&batch, "category")?;
    let c_label = batch
        .column_by_name("label")
        .and_then(|c| {
            c.as_primitive_opt::<arrow::datatypes::UInt32Type>()
                .cloned()
        })
        .ok_or_else(|| Error::Input(format!("{}: no `label` column", categories_path.display())))?;
    let c_name = nd_tables::strings(&batch, "name")?;
    let c_iou = nd_tables::values::<arrow::datatypes::Float64Type>(&batch, "iou")?;
    let mut per_category: BTreeMap<(String, u32), Vec<CategoryBest>> = BTreeMap::new();
    for i in (0..c_layer.len()).filter(|&i| !c_label.is_null(i)) {
        per_category
            .entry((c_layer[i].clone(), c_unit[i]))
            .or_default()
            .push(CategoryBest {
                category: c_category[i].clone(),
                label: c_label.value(i),
                name: c_name[i].clone(),
                iou: c_iou[i],
            });
    }

    // scores.parquet: every label that overlaps a unit's masks, for the next-best labels. The
    // table streams past (millions of rows for a deep layer on Broden), keeping each unit's
    // best NEXT + 1 labels: the page shows NEXT after the top label, which is at most one
    // of them.
    let mut all: BTreeMap<String, Vec<Vec<CategoryBest>>> = BTreeMap::new();
    let scores_path = inputs.scores.dir.join(nd_tables::scores::FILE);
    nd_tables::scores::for_each_row(&scores_path, |row| -> Result<()> {
        if row.intersect == 0 {
            return Ok(());
        }
        if !all.contains_key(row.layer) {
            all.insert(row.layer.to_owned(), Vec::new());
        }
        let units = all.get_mut(row.layer).expect("inserted above");
        let unit = row.unit as usize;
        if units.len() <= unit {
            units.resize_with(unit + 1, Vec::new);
        }
        keep_best(
            &mut units[unit],
            (row.iou, row.label),
            || CategoryBest {
                category: row.category.to_owned(),
                label: row.label,
                name: row.name.to_owned(),
                iou: row.iou,
            },
            NEXT + 1,
        );
        Ok(())
    })?;

    let mut layers = Vec::new();
    for (index, layer_summary) in layer_summaries.iter().enumerate() {
        let name = layer_summary["layer"]
            .as_str()
            .ok_or_else(|| Error::Input(format!("{}: a layer has no name", path.display())))?
            .to_owned();
        let mut units: Vec<Unit> = Vec::new();
        for i in (0..u_layer.len()).filter(|&i| u_layer[i] == name) {
            let unit = u_unit[i];
            let mut bests = per_category
                .remove(&(name.clone(), unit))
                .unwrap_or_default();
            bests.sort_by_key(|c| categories_position(&categories, &c.category));
            let top = (!u_label.is_null(i)).then(|| {
                bests
                    .iter()
                    .find(|c| c.category == u_category[i] && c.name == u_name[i])
                    .cloned()
                    .unwrap_or(CategoryBest {
                        category: u_category[i].clone(),
                        label: u_label.value(i),
                        name: u_name[i].clone(),
                        iou: u_iou[i],
                    })
            });
            let mut next = all
                .get_mut(&name)
                .and_then(|units| units.get_mut(unit as usize))
                .map(std::mem::take)
                .unwrap_or_default();
            next.retain(|c| {
                top.as_ref()
                    .is_none_or(|t| !(t.label == c.label && t.category == c.category))
            });
            next.truncate(NEXT);
            units.push(Unit {
                unit,
                // A unit without a label is no detector, whatever the threshold.
                detector: top.is_some() && u_iou[i] >= iou_threshold,
                top,
                categories: bests,
                next,
            });
        }
        units.sort_by_key(|u| u.unit);
        if units.iter().enumerate().any(|(i, u)| u.unit as usize != i) {
            return Err(Error::Input(format!(
                "{}: layer `{name}` does not list its units 0..{} once each",
                units_path.display(),
                units.len()
            )));
        }
        layers.push(Layer {
            stem: stem(index, &name),
            name,
            summary: layer_summary.clone(),
            units,
            top: Vec::new(),
        });
    }
    Ok(Report {
        categories,
        iou_threshold,
        layers,
    })
}

fn categories_position(order: &[String], category: &str) -> usize {
    order
        .iter()
        .position(|c| c == category)
        .unwrap_or(order.len())
}

/// Per unit, the `k` images with the highest spatial maximum (earlier images first on
/// ties), best first, as dataset rows.
fn top_images(maxima: &[f32], units: usize, k: usize, first_row: usize) -> Vec<Vec<(usize, f32)>> {
    let images = maxima.len() / units.max(1);
    (0..units)
        .into_par_iter()
        .map(|u| {
            let mut order: Vec<usize> = (0..images).collect();
            let key = |i: &usize| maxima[i * units + u];
            let cmp = |a: &usize, b: &usize| key(b).total_cmp(&key(a)).then(a.cmp(b));
            let k = k.min(images);
            if k < images {
                order.select_nth_unstable_by(k, cmp);
                order.truncate(k);
            }
            order.sort_by(cmp);
            order
                .into_iter()
                .map(|i| (first_row + i, key(&i)))
                .collect()
        })
        .collect()
}

fn checked_rows(inputs: &Inputs) -> Result<std::ops::Range<usize>> {
    let ordered = nd_store::in_row_order(inputs.shards.iter().map(|s| s.activations))?;
    if ordered
        .iter()
        .zip(&inputs.shards)
        .any(|((_, a), s)| a.key() != s.activations.key())
    {
        return Err(Error::Input("the image shards are not in row order".into()));
    }
    let rows = match (ordered.first(), ordered.last()) {
        (Some((first, _)), Some((last, _))) => first.start..last.end,
        _ => return Err(Error::Input("no image shard given".into())),
    };
    if rows.end > inputs.dataset.len() {
        return Err(Error::Input(format!(
            "the activations cover rows {}..{} but the dataset has {} rows: is it the same dataset?",
            rows.start,
            rows.end,
            inputs.dataset.len()
        )));
    }
    Ok(rows)
}

const DRAWN_FILE: &str = "units.json";

/// The masks of each image shard, with the shard's first dataset row.
pub(crate) fn mask_groups(inputs: &Inputs) -> Result<Vec<(nd_arrays::masks::MaskGroup, usize)>> {
    inputs
        .shards
        .iter()
        .map(|shard| {
            Ok((
                nd_arrays::masks::MaskGroup::open(
                    &shard.masks.dir.join(nd_arrays::masks::MASKS_DIR),
                )?,
                shard.activations.rows()?.start,
            ))
        })
        .collect()
}

/// Draws the images of every layer into `dir`: the top images, each unit's strip, and per
/// layer `<stem>/units.json` (what each image shows, the overlays). Returns the manifest's
/// outputs.
fn write_images(
    dir: &Path,
    inputs: &Inputs,
    config: &Config,
    report: &mut Report,
    rows: &std::ops::Range<usize>,
    progress: &indicatif::ProgressBar,
) -> Result<Value> {
    let mut groups = Vec::new();
    for (shard, (masks, first_row)) in inputs.shards.iter().zip(mask_groups(inputs)?) {
        groups.push((
            nd_arrays::ActivationGroup::open(
                &shard.activations.dir.join(nd_arrays::ACTIVATIONS_DIR),
            )?,
            masks,
            first_row,
        ));
    }
    let mut outputs = Vec::new();
    let mut written_images = std::collections::BTreeSet::new();
    let categories = report.categories.clone();
    let ctx = Context::new(
        dir,
        inputs,
        &categories,
        report.iou_threshold,
        config,
        progress.clone(),
    )?;
    for layer in &mut report.layers {
        // The shards' spatial maxima, image after image, are those of all the rows.
        let mut maxima = Vec::new();
        let mut readers = Vec::new();
        for (group, masks, first_row) in &groups {
            let reader = group.open_layer(&layer.name)?;
            let shape = reader.shape();
            if shape.units as usize != layer.units.len() {
                return Err(Error::Input(format!(
                    "layer `{}`: the activations have {} units, the report {}",
                    layer.name,
                    shape.units,
                    layer.units.len()
                )));
            }
            maxima.extend(reader.read_max()?);
            readers.push((masks.open_layer(&layer.name)?, *first_row));
        }
        layer.top = top_images(&maxima, layer.units.len(), config.top_images, rows.start);
        let drawn = draw::layer_images(&ctx, layer, &readers, &mut written_images)?;
        let path = dir.join(&layer.stem).join(DRAWN_FILE);
        std::fs::write(&path, drawn.to_json().to_string())
            .map_err(|source| Error::Io { path, source })?;
        outputs.push(json!({ "layer": layer.name, "dir": layer.stem, "units": layer.units.len() }));
    }
    Ok(json!({ "layers": outputs, "images": written_images.len() }))
}

/// Writes the pages into `dir`, with hard links to (or copies of) the images they show.
/// Returns the manifest's outputs.
fn write_pages(
    dir: &Path,
    images: &nd_store::Artifact,
    inputs: &Inputs,
    config: &Config,
    report: &Report,
    progress: &indicatif::ProgressBar,
) -> Result<Value> {
    nd_store::copy_tree(&images.dir, dir, nd_store::Transfer::Link, &|name| {
        name != nd_store::MANIFEST_FILE && name != DRAWN_FILE
    })?;
    page::write_assets(dir)?;
    let ctx = Context::new(
        dir,
        inputs,
        &report.categories,
        report.iou_threshold,
        config,
        progress.clone(),
    )?;
    let mut outputs = Vec::new();
    for layer in &report.layers {
        let path = images.dir.join(&layer.stem).join(DRAWN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let drawn = serde_json::from_str(&text)
            .ok()
            .and_then(|v| draw::Drawn::from_json(&v))
            .filter(|d| d.units.len() == layer.units.len())
            .ok_or_else(|| {
                Error::Input(format!(
                    "{}: not the drawings of layer `{}`",
                    path.display(),
                    layer.name
                ))
            })?;
        page::write_layer(&ctx, layer, &drawn)?;
        (0..layer.units.len()).into_par_iter().try_for_each(|u| {
            page::write_unit(&ctx, layer, u, &drawn.units[u])?;
            ctx.progress.inc(1);
            Ok::<_, Error>(())
        })?;
        outputs.push(json!({
            "layer": layer.name,
            "page": format!("layer-{}.html", layer.stem),
            "units": layer.units.len(),
        }));
    }
    let mut written = json!({ "index": "index.html", "layers": outputs });
    let explained = match inputs.explain {
        Some(artifact) => {
            let shards = mask_groups(inputs)?;
            let explained = explain::write(&ctx, report, artifact, &shards)?;
            written["explain"] = explained.outputs();
            Some(explained)
        }
        None => None,
    };
    page::write_index(dir, report, &config.title, explained.as_ref())?;
    Ok(written)
}

/// Puts a pages artifact at `to`, replacing what was there: hard links to the cache's files
/// (no page is meant to be edited).
pub fn export(artifact: &nd_store::Artifact, to: &Path) -> Result<()> {
    Ok(artifact.export(to, nd_store::Transfer::Link)?)
}

/// One model of a run, for the run's index page.
pub struct RunModel<'a> {
    pub name: &'a str,
    /// The model's report artifact (its summary.json is read).
    pub report: &'a nd_store::Artifact,
    /// The model's pages, relative to the index's directory (`None`: no pages).
    pub link: Option<String>,
    /// When the report dissects a model's activations in a random rotation of each
    /// layer's unit basis (the rotation control): which.
    pub rotation: Option<RunRotation>,
}

/// The rotation a run index entry dissects: the fraction `power` (α) of the random
/// rotation that `seed` names, of the activations of the model named `of`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRotation {
    pub of: String,
    pub seed: u64,
    pub power: f64,
}

/// Writes `index.html` (and the style sheet and script) into `dir`: every model's layers
/// side by side, and unique detectors per layer across the models. The index covers every
/// model report in `dir`: the given models first, in their order, then the reports of
/// earlier runs found there (`<name>/manifest.json` and `<name>/summary.json`, as
/// [`nd_report::export`] writes them), by name, marked as such. A found report whose
/// summary does not match its manifest's digest is left out and named on the page.
pub fn write_run_index(dir: &Path, models: &[RunModel]) -> Result<PathBuf> {
    let mut loaded = Vec::new();
    for model in models {
        let (_, summary) = read_summary(model.report)?;
        loaded.push(page::IndexedModel {
            name: model.name.to_owned(),
            summary,
            link: model.link.clone(),
            earlier: false,
            rotation: model.rotation.clone(),
        });
    }
    let (earlier, skipped) = earlier_reports(dir, models)?;
    loaded.extend(earlier);
    page::write_assets(dir)?;
    page::write_run_index(dir, &loaded, &skipped)
}

/// A folder left out of the run index, and why.
type Skipped = (String, String);

/// The model reports in `dir` other than `models`' (see [`write_run_index`]), and the
/// folders that look like one but fail their manifest (with why).
fn earlier_reports(
    dir: &Path,
    models: &[RunModel],
) -> Result<(Vec<page::IndexedModel>, Vec<Skipped>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(source) => {
            return Err(Error::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(nd_store::MANIFEST_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|name| !models.iter().any(|m| m.name == name))
        .collect();
    names.sort();
    let (mut found, mut skipped) = (Vec::new(), Vec::new());
    for name in names {
        let folder = dir.join(&name);
        match read_exported_summary(&folder) {
            Ok(Some(summary)) => {
                let link = folder
                    .join("html")
                    .join("index.html")
                    .is_file()
                    .then(|| format!("{name}/html/index.html"));
                found.push(page::IndexedModel {
                    name,
                    summary,
                    link,
                    earlier: true,
                    rotation: None,
                });
            }
            Ok(None) => {}
            Err(why) => skipped.push((name, why)),
        }
    }
    Ok((found, skipped))
}

/// The summary of an exported report folder, checked against the folder's manifest;
/// `None` when the folder holds another stage's export.
fn read_exported_summary(folder: &Path) -> std::result::Result<Option<Value>, String> {
    let text = std::fs::read_to_string(folder.join(nd_store::MANIFEST_FILE))
        .map_err(|e| format!("its manifest is unreadable ({e})"))?;
    let manifest: nd_store::Manifest =
        serde_json::from_str(&text).map_err(|e| format!("its manifest is unreadable ({e})"))?;
    if manifest.stage != "report" {
        return Ok(None);
    }
    let listed = manifest
        .files
        .get("summary.json")
        .ok_or("its manifest lists no summary.json")?;
    let bytes = std::fs::read(folder.join("summary.json"))
        .map_err(|e| format!("its summary.json is unreadable ({e})"))?;
    if bytes.len() as u64 != listed.size || blake3::hash(&bytes).to_hex().as_str() != listed.blake3
    {
        return Err("its summary.json does not match its manifest (damaged or edited)".into());
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("its summary.json is unreadable ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_the_best_while_streaming_equals_sorting_all() {
        // IoUs with many ties, labels in a scrambled order.
        let all: Vec<CategoryBest> = (0..200u32)
            .map(|i| CategoryBest {
                category: format!("c{}", i % 3),
                label: (i * 37) % 200,
                name: format!("l{i}"),
                iou: f64::from((i * 13) % 7) / 7.0,
            })
            .collect();
        for keep in [1, 5, 300] {
            let mut best = Vec::new();
            for c in &all {
                keep_best(&mut best, (c.iou, c.label), || c.clone(), keep);
            }
            let mut sorted = all.clone();
            sorted.sort_by(|a, b| b.iou.total_cmp(&a.iou).then(a.label.cmp(&b.label)));
            sorted.truncate(keep);
            assert_eq!(best, sorted, "keep {keep}");
        }
    }

    #[test]
    fn top_images_are_the_highest_maxima_earliest_first_on_ties() {
        // 5 images × 2 units.
        let maxima = [1.0, 0.0, 3.0, 0.0, 2.0, 5.0, 3.0, 5.0, 0.5, 1.0];
        let top = top_images(&maxima, 2, 3, 10);
        assert_eq!(top[0], vec![(11, 3.0), (13, 3.0), (12, 2.0)]);
        assert_eq!(top[1], vec![(12, 5.0), (13, 5.0), (14, 1.0)]);
        let all = top_images(&maxima, 2, 10, 0);
        assert_eq!(all[0].len(), 5);
    }

    /// An exported report folder as `nd_report::export` leaves it: the manifest (listing
    /// summary.json's size and digest) and the summary.
    fn exported(dir: &Path, name: &str, stage: &str, summary: &str) {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("summary.json"), summary).unwrap();
        let manifest = json!({
            "format": nd_store::MANIFEST_FORMAT, "stage": stage, "schema": 2,
            "key": "ab".repeat(32), "params": {}, "inputs": {}, "digests": {},
            "versions": {}, "outputs": {},
            "files": { "summary.json": {
                "size": summary.len(), "blake3": blake3::hash(summary.as_bytes()).to_hex().as_str()
            } },
        });
        std::fs::write(folder.join("manifest.json"), manifest.to_string()).unwrap();
    }

    #[test]
    fn the_run_index_covers_every_report_in_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let summary = |units: u64| {
            json!({ "categories": ["color"], "iou_threshold": 0.04, "layers": [
                { "layer": "conv1", "units": units, "detectors": 1, "unique_top_label": 1,
                  "unique_per_category": 1, "categories": {} } ] })
            .to_string()
        };
        exported(dir.path(), "older", "report", &summary(8));
        std::fs::create_dir_all(dir.path().join("older/html")).unwrap();
        std::fs::write(dir.path().join("older/html/index.html"), "").unwrap();
        exported(dir.path(), "alone", "report", &summary(4));
        exported(dir.path(), "damaged", "report", &summary(16));
        std::fs::write(dir.path().join("damaged/summary.json"), summary(17)).unwrap();
        exported(dir.path(), "pages", "html", "{}");

        let (found, skipped) = earlier_reports(dir.path(), &[]).unwrap();
        let names: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|m| (m.name.as_str(), m.link.as_deref()))
            .collect();
        assert_eq!(
            names,
            [("alone", None), ("older", Some("older/html/index.html"))]
        );
        assert!(found.iter().all(|m| m.earlier));
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].0, "damaged");
        assert!(
            skipped[0].1.contains("does not match its manifest"),
            "{skipped:?}"
        );

        let page = write_run_index(dir.path(), &[]).unwrap();
        let html = std::fs::read_to_string(page).unwrap();
        assert!(
            html.contains("0 from the last run, then 2 from earlier runs"),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="older/html/index.html">older</a> <small>earlier</small>"#)
        );
        assert!(html.contains("Left out: <code>damaged</code>"));
    }

    #[test]
    fn stems_are_safe_and_unique() {
        assert_eq!(stem(0, "layer4.1.conv2"), "1-layer4.1.conv2");
        assert_eq!(stem(2, "a/b <c>"), "3-a_b__c_");
        assert_eq!(stem(1, "../x"), "2-.._x");
    }
}
