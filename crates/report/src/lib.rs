//! The report stage: label every unit with its best concept per category and overall, and
//! summarise each layer's interpretability (detectors, unique detectors by both published
//! rules, per category).
//!
//! Outputs, in the report artifact: `units.parquet` (a unit's label), `unit_categories.parquet`
//! (a unit's best label in each category, with its counts), `layers.parquet` and
//! `layer_categories.parquet` (the per-layer figures), `summary.json`, and one
//! `tally-<layer>.csv` per layer in NetDissect-Lite's format. Labels are chosen by the rules
//! of the reference the score stage's denominator names (`labels`: ties, units that
//! overlap no concept). [`tally::read`] reads published files of that format, in any column
//! order, for [`summarize`].
//!
//! ```no_run
//! let (categories, rows) = nd_report::tally::read("resnet18-places365-layer4.csv".as_ref())?;
//! let units: Vec<_> = rows.iter().map(|r| r.labels()).collect();
//! let summary = nd_report::summarize("layer4", &units, &categories, 0.04);
//! println!("{} detectors, {} unique", summary.detectors, summary.unique_top_label);
//! # Ok::<(), nd_report::Error>(())
//! ```

mod labels;
pub mod summary;
pub mod tally;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use nd_tables::dictionary;
use serde_json::json;

use labels::{Choice, Choices, UnitChoices};
pub use summary::{Best, CategorySummary, FormulaSummary, LayerSummary, UnitLabels, summarize};
use tally::{TallyCategory, TallyRow};

pub const STAGE: &str = "report";
/// 2: a unit's label is the later category's on ties, and in lite mode NetDissect-Lite's
/// `1e-10` orders equal IoUs; a unit (or a unit's category) that overlaps no concept has
/// null labels in the tables and label 0's name and counts in tally.csv.
pub const SCHEMA: u32 = 2;
pub const SUMMARY_FILE: &str = "summary.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Tables(#[from] nd_tables::Error),
    #[error("{}: line {line}: {message}", path.display())]
    Tally {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Error {
        Error::Tables(nd_tables::Error::Arrow(e))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// A unit is a detector when its best IoU reaches this.
    pub iou_threshold: f64,
    /// With a formulas artifact: a unit counts as better explained by a formula when its
    /// best formula's IoU beats its best single concept's by at least this.
    pub formula_gain: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            iou_threshold: 0.04,
            formula_gain: 0.01,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.iou_threshold) {
            return Err(Error::Input(format!(
                "the IoU threshold must be between 0 and 1 (an IoU is at most 1), got {}",
                self.iou_threshold
            )));
        }
        if !(0.0..=1.0).contains(&self.formula_gain) {
            return Err(Error::Input(format!(
                "the formula gain is a difference of IoUs, between 0 and 1, got {}",
                self.formula_gain
            )));
        }
        Ok(())
    }
}

/// A layer's rows of tally.csv, in the file's order (NetDissect-Lite's `tally()`).
///
/// Where a unit overlaps no label of a category, the references' `argmax` over all-zero
/// IoUs names label 0: its empty name, its truth, the unit's activation count in its
/// category (the last; 0 with the original's denominator, where label 0 has no activation
/// term) and its intersection with the unit, and an IoU of 0. A unit that
/// overlaps no concept gets the last category and label 0's empty name, with a score of 0.
fn tally_rows(choices: &Choices, units: &[UnitChoices]) -> Vec<TallyRow> {
    let last = choices.categories.len() - 1;
    labels::tally_order(units)
        .into_iter()
        .map(|u| {
            let unit = &units[u];
            let categories: Vec<TallyCategory> = choices
                .categories
                .iter()
                .zip(&unit.categories)
                .map(|(category, choice)| match choice {
                    Some(c) => TallyCategory {
                        category: category.clone(),
                        label: c.row.name.clone(),
                        truth: c.row.truth,
                        activation: c.row.activation,
                        intersect: c.row.intersect,
                        iou: c.row.iou,
                    },
                    None => TallyCategory {
                        category: category.clone(),
                        label: String::new(),
                        truth: choices.label0_truth,
                        // The original's label 0 has no activation term.
                        activation: match choices.reference {
                            labels::Reference::Lite => unit.activation[last],
                            labels::Reference::Original => 0,
                        },
                        intersect: unit.label0_intersect,
                        iou: 0.0,
                    },
                })
                .collect();
            let top = unit.top().unwrap_or(last);
            TallyRow {
                unit: u as u32 + 1,
                category: choices.categories[top].clone(),
                label: categories[top].label.clone(),
                score: categories[top].iou,
                categories,
            }
        })
        .collect()
}

/// What the summary needs of a unit: its label (none when it overlaps no concept) and its
/// best label in each category it overlaps.
fn unit_labels(categories: &[String], unit: u32, choices: &UnitChoices) -> UnitLabels {
    let best = |c: usize| {
        choices.categories[c].as_ref().map(|choice| Best {
            category: categories[c].clone(),
            label: choice.row.name.clone(),
            iou: choice.row.iou,
        })
    };
    UnitLabels {
        unit: unit + 1,
        top: choices.top().and_then(best),
        categories: (0..categories.len()).filter_map(best).collect(),
    }
}

/// A row of units.parquet, in unit order: layer, unit, the unit's choices, and its label's
/// category and choice (none when the unit overlaps no concept).
type UnitRow<'a> = (
    &'a str,
    u32,
    &'a UnitChoices,
    Option<usize>,
    Option<&'a Choice>,
);

/// A dictionary-encoded string column with nulls (a unit without a label).
fn nullable_dictionary<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    let array: DictionaryArray<Int32Type> = values.into_iter().collect();
    Arc::new(array)
}

/// File names from layer names: `/` would make a directory.
pub fn file_stem(layer: &str) -> String {
    layer.replace(['/', '\\'], "_")
}

/// The report's spec. Without formulas, neither they nor the gain are in it, so reports
/// without formulas keep their keys.
pub fn spec(
    scores: &nd_store::Artifact,
    formulas: Option<&nd_store::Artifact>,
    config: &Config,
) -> Result<nd_store::Spec> {
    config.validate()?;
    let spec = match formulas {
        None => nd_store::Spec::new(
            STAGE,
            SCHEMA,
            json!({ "iou_threshold": config.iou_threshold }),
        ),
        Some(formulas) => {
            formulas.expect_stage("formulas")?;
            nd_store::Spec::new(
                STAGE,
                SCHEMA,
                json!({
                    "iou_threshold": config.iou_threshold,
                    "formula_gain": config.formula_gain,
                }),
            )
            .input("formulas", formulas.key())
        }
    };
    Ok(spec.input("scores", scores.key()))
}

/// Each layer's formula figures (`None` for layers the formulas do not cover), after
/// checking that the formulas are of the same layers and units as the scores.
fn formula_summaries(
    formulas: &nd_store::Artifact,
    layers: &[(&str, usize)],
    gain: f64,
) -> Result<Vec<Option<FormulaSummary>>> {
    let path = formulas.dir.join(nd_tables::formulas::FILE);
    let rows = nd_tables::formulas::read_rows(&path)?;
    let found = nd_tables::formulas::summarise(&rows, gain);
    for f in &found {
        let Some(&(_, units)) = layers.iter().find(|(l, _)| *l == f.layer) else {
            return Err(Error::Input(format!(
                "{}: the formulas are of layer {:?}, which the scores do not have (layers: {}); \
                 give the formulas of the same dissection",
                path.display(),
                f.layer,
                layers
                    .iter()
                    .map(|(l, _)| *l)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let last = rows
            .iter()
            .filter(|r| r.layer == f.layer)
            .map(|r| r.unit)
            .max();
        if f.units != units || last.is_some_and(|u| u as usize >= units) {
            return Err(Error::Input(format!(
                "{}: layer {:?} has {} units in the formulas but {} in the scores; give the \
                 formulas of the same dissection",
                path.display(),
                f.layer,
                f.units,
                units
            )));
        }
    }
    Ok(layers
        .iter()
        .map(|(layer, _)| {
            found
                .iter()
                .find(|f| f.layer == *layer)
                .map(|f| FormulaSummary {
                    gain,
                    better: f.better,
                    mean_concept_iou: f.mean_concept,
                    mean_formula_iou: f.mean_formula,
                })
        })
        .collect())
}

pub use nd_store::Outcome;

/// Writes the report of a score artifact through the store.
///
/// With `formulas` (the formulas stage's artifact of the same masks), each layer's figures
/// also count the units whose best formula beats their best single concept by at least
/// [`Config::formula_gain`] in IoU.
pub fn run(
    store: &nd_store::Store,
    scores: &nd_store::Artifact,
    formulas: Option<&nd_store::Artifact>,
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(scores, formulas, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let choices = labels::choose(scores)?;
    let categories = &choices.categories;
    let formula_figures = match formulas {
        Some(f) => {
            let layers: Vec<(&str, usize)> = choices
                .layers
                .iter()
                .map(|(l, units)| (l.as_str(), units.len()))
                .collect();
            Some(formula_summaries(f, &layers, config.formula_gain)?)
        }
        None => None,
    };
    let pending = store.begin(&spec)?;
    let dir = pending.dir().to_owned();
    let metadata = pending.table_metadata();
    let mut summaries = Vec::new();
    let mut units_rows: Vec<UnitRow> = Vec::new();
    let mut tallies = Vec::new();
    for (layer, units) in &choices.layers {
        let labels: Vec<UnitLabels> = units
            .iter()
            .enumerate()
            .map(|(u, unit)| unit_labels(categories, u as u32, unit))
            .collect();
        let mut summary = summarize(layer, &labels, categories, config.iou_threshold);
        summary.formulas = formula_figures
            .as_ref()
            .and_then(|f| f[summaries.len()].clone());
        summaries.push(summary);
        for (u, unit) in units.iter().enumerate() {
            let top = unit.top();
            let choice = top.and_then(|c| unit.categories[c].as_ref());
            units_rows.push((layer, u as u32, unit, top, choice));
        }
        let file = format!("tally-{}.csv", file_stem(layer));
        tally::write(&dir.join(&file), categories, &tally_rows(&choices, units))?;
        tallies.push(json!({ "layer": layer, "file": file }));
    }

    // A unit that overlaps no concept has no label, name or category (null), an IoU of 0,
    // and is no detector.
    let units_batch = RecordBatch::try_from_iter([
        ("layer", dictionary(units_rows.iter().map(|r| r.0))),
        (
            "unit",
            Arc::new(UInt32Array::from_iter_values(
                units_rows.iter().map(|r| r.1),
            )) as ArrayRef,
        ),
        (
            "label",
            Arc::new(UInt32Array::from_iter(
                units_rows.iter().map(|r| r.4.map(|c| c.row.label)),
            )),
        ),
        (
            "name",
            nullable_dictionary(units_rows.iter().map(|r| r.4.map(|c| c.row.name.as_str()))),
        ),
        (
            "category",
            nullable_dictionary(
                units_rows
                    .iter()
                    .map(|r| r.3.map(|c| categories[c].as_str())),
            ),
        ),
        (
            "iou",
            Arc::new(Float64Array::from_iter_values(
                units_rows.iter().map(|r| r.4.map_or(0.0, |c| c.row.iou)),
            )),
        ),
        (
            "detector",
            Arc::new(BooleanArray::from_iter(units_rows.iter().map(|r| {
                Some(r.4.is_some_and(|c| c.row.iou >= config.iou_threshold))
            }))),
        ),
    ])?;
    nd_tables::write(&dir.join("units.parquet"), &units_batch, &metadata)?;
    // Every unit and category: the chosen label's counts, as its IoU used them (the
    // category's activation count, but none for label 0 with the original's denominator);
    // where the unit overlaps no label of the category, no label, name or truth (null), its
    // activation count in the category, and 0 intersection and IoU.
    let category_rows: Vec<(&str, u32, usize, u64, Option<&Choice>)> = units_rows
        .iter()
        .flat_map(|&(layer, unit, choices, _, _)| {
            (0..categories.len()).map(move |c| {
                let choice = choices.categories[c].as_ref();
                let activation = choice.map_or(choices.activation[c], |c| c.row.activation);
                (layer, unit, c, activation, choice)
            })
        })
        .collect();
    let category_batch = RecordBatch::try_from_iter([
        ("layer", dictionary(category_rows.iter().map(|r| r.0))),
        (
            "unit",
            Arc::new(UInt32Array::from_iter_values(
                category_rows.iter().map(|r| r.1),
            )) as ArrayRef,
        ),
        (
            "category",
            dictionary(category_rows.iter().map(|r| categories[r.2].as_str())),
        ),
        (
            "label",
            Arc::new(UInt32Array::from_iter(
                category_rows.iter().map(|r| r.4.map(|c| c.row.label)),
            )),
        ),
        (
            "name",
            nullable_dictionary(
                category_rows
                    .iter()
                    .map(|r| r.4.map(|c| c.row.name.as_str())),
            ),
        ),
        (
            "truth",
            Arc::new(UInt64Array::from_iter(
                category_rows.iter().map(|r| r.4.map(|c| c.row.truth)),
            )),
        ),
        (
            "activation",
            Arc::new(UInt64Array::from_iter_values(
                category_rows.iter().map(|r| r.3),
            )),
        ),
        (
            "intersect",
            Arc::new(UInt64Array::from_iter_values(
                category_rows
                    .iter()
                    .map(|r| r.4.map_or(0, |c| c.row.intersect)),
            )),
        ),
        (
            "iou",
            Arc::new(Float64Array::from_iter_values(
                category_rows.iter().map(|r| r.4.map_or(0.0, |c| c.row.iou)),
            )),
        ),
    ])?;
    nd_tables::write(
        &dir.join("unit_categories.parquet"),
        &category_batch,
        &metadata,
    )?;
    write_layer_tables(
        &dir,
        &summaries,
        categories,
        config.iou_threshold,
        formulas.is_some(),
        &metadata,
    )?;
    let summary = match formulas {
        None => {
            json!({ "iou_threshold": config.iou_threshold, "categories": categories, "layers": summaries })
        }
        Some(_) => json!({
            "iou_threshold": config.iou_threshold,
            "formula_gain": config.formula_gain,
            "categories": categories,
            "layers": summaries,
        }),
    };
    let path = dir.join(SUMMARY_FILE);
    std::fs::write(&path, nd_store::canonical::to_pretty(&summary))
        .map_err(|source| Error::Io { path, source })?;
    let outputs = json!({
        "summary": SUMMARY_FILE,
        "units": "units.parquet",
        "unit_categories": "unit_categories.parquet",
        "layers": "layers.parquet",
        "layer_categories": "layer_categories.parquet",
        "tallies": tallies,
    });
    let versions = nd_store::versions();
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

fn write_layer_tables(
    dir: &std::path::Path,
    summaries: &[LayerSummary],
    categories: &[String],
    threshold: f64,
    with_formulas: bool,
    metadata: &[(String, String)],
) -> Result<()> {
    let mut columns: Vec<(&str, ArrayRef)> = vec![
        (
            "layer",
            dictionary(summaries.iter().map(|s| s.layer.as_str())),
        ),
        (
            "units",
            Arc::new(UInt32Array::from_iter_values(
                summaries.iter().map(|s| s.units as u32),
            )) as ArrayRef,
        ),
        (
            "detectors",
            Arc::new(UInt32Array::from_iter_values(
                summaries.iter().map(|s| s.detectors as u32),
            )) as ArrayRef,
        ),
        (
            "unique_top_label",
            Arc::new(UInt32Array::from_iter_values(
                summaries.iter().map(|s| s.unique_top_label as u32),
            )),
        ),
        (
            "unique_per_category",
            Arc::new(UInt32Array::from_iter_values(
                summaries.iter().map(|s| s.unique_per_category as u32),
            )),
        ),
        (
            "iou_threshold",
            Arc::new(Float64Array::from_iter_values(
                summaries.iter().map(|_| threshold),
            )),
        ),
    ];
    // With formulas: their figures, null for layers they do not cover.
    if with_formulas {
        let f = |get: fn(&FormulaSummary) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter(
                summaries.iter().map(|s| s.formulas.as_ref().map(get)),
            ))
        };
        columns.extend([
            ("formula_gain", f(|f| f.gain)),
            (
                "formula_better",
                Arc::new(UInt32Array::from_iter(
                    summaries
                        .iter()
                        .map(|s| s.formulas.as_ref().map(|f| f.better as u32)),
                )) as ArrayRef,
            ),
            ("mean_concept_iou", f(|f| f.mean_concept_iou)),
            ("mean_formula_iou", f(|f| f.mean_formula_iou)),
        ]);
    }
    let batch = RecordBatch::try_from_iter(columns)?;
    nd_tables::write(&dir.join("layers.parquet"), &batch, metadata)?;
    let pairs: Vec<(&LayerSummary, &String)> = summaries
        .iter()
        .flat_map(|s| categories.iter().map(move |c| (s, c)))
        .collect();
    let get = |s: &LayerSummary, c: &str, f: fn(&CategorySummary) -> usize| {
        s.categories.get(c).map_or(0, f) as u32
    };
    let batch = RecordBatch::try_from_iter([
        (
            "layer",
            dictionary(pairs.iter().map(|(s, _)| s.layer.as_str())),
        ),
        (
            "category",
            dictionary(pairs.iter().map(|(_, c)| c.as_str())),
        ),
        (
            "detectors",
            Arc::new(UInt32Array::from_iter_values(
                pairs.iter().map(|(s, c)| get(s, c, |x| x.detectors)),
            )) as ArrayRef,
        ),
        (
            "unique_top_label",
            Arc::new(UInt32Array::from_iter_values(
                pairs.iter().map(|(s, c)| get(s, c, |x| x.unique_top_label)),
            )),
        ),
        (
            "category_detectors",
            Arc::new(UInt32Array::from_iter_values(
                pairs
                    .iter()
                    .map(|(s, c)| get(s, c, |x| x.category_detectors)),
            )),
        ),
        (
            "unique_per_category",
            Arc::new(UInt32Array::from_iter_values(
                pairs
                    .iter()
                    .map(|(s, c)| get(s, c, |x| x.unique_per_category)),
            )),
        ),
    ])?;
    Ok(nd_tables::write(
        &dir.join("layer_categories.parquet"),
        &batch,
        metadata,
    )?)
}

/// Copies a report artifact's files to a directory of the user's (Make and Snakemake
/// targets, notebooks), replacing what was there. The copy is written next to it and
/// renamed into place, so the directory is never half-written. With the formulas the report
/// was given, their table (`formulas.parquet`) goes beside the report's, written under
/// another name and renamed in too.
pub fn export(
    report: &nd_store::Artifact,
    formulas: Option<&nd_store::Artifact>,
    to: &std::path::Path,
) -> Result<()> {
    // Copies, not links: these tables get opened, and sometimes rewritten, in notebooks.
    report.export(to, nd_store::Transfer::Copy)?;
    if let Some(formulas) = formulas {
        let from = formulas.dir.join(nd_tables::formulas::FILE);
        let into = to.join(nd_tables::formulas::FILE);
        let tmp = to.join(format!(".{}.tmp", nd_tables::formulas::FILE));
        std::fs::copy(&from, &tmp)
            .and_then(|_| std::fs::rename(&tmp, &into))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                Error::Io { path: into, source }
            })?;
    }
    Ok(())
}

/// The per-layer summaries a report artifact holds.
pub fn read_summaries(report: &nd_store::Artifact) -> Result<(Vec<String>, Vec<LayerSummary>)> {
    let path = report.dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let categories: Vec<String> =
        serde_json::from_value(value["categories"].clone()).unwrap_or_default();
    let layers = value["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| LayerSummary {
            layer: l["layer"].as_str().unwrap_or_default().to_owned(),
            units: l["units"].as_u64().unwrap_or(0) as usize,
            detectors: l["detectors"].as_u64().unwrap_or(0) as usize,
            unique_top_label: l["unique_top_label"].as_u64().unwrap_or(0) as usize,
            unique_per_category: l["unique_per_category"].as_u64().unwrap_or(0) as usize,
            categories: l["categories"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, c)| {
                    let n = |f: &str| c[f].as_u64().unwrap_or(0) as usize;
                    (
                        name.clone(),
                        CategorySummary {
                            detectors: n("detectors"),
                            unique_top_label: n("unique_top_label"),
                            category_detectors: n("category_detectors"),
                            unique_per_category: n("unique_per_category"),
                        },
                    )
                })
                .collect(),
            formulas: l.get("formulas").filter(|f| f.is_object()).map(|f| {
                let x = |n: &str| f[n].as_f64().unwrap_or(0.0);
                FormulaSummary {
                    gain: x("gain"),
                    better: f["better"].as_u64().unwrap_or(0) as usize,
                    mean_concept_iou: x("mean_concept_iou"),
                    mean_formula_iou: x("mean_formula_iou"),
                }
            }),
        })
        .collect();
    Ok((categories, layers))
}

/// A readable table: one line per layer, with the unique detectors per category by the
/// per-category rule, and, where the report has formulas, the units a formula explains
/// better than one concept.
pub fn format_table(summaries: &[LayerSummary], categories: &[String], threshold: f64) -> String {
    let width = summaries
        .iter()
        .map(|s| s.layer.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let gain = summaries
        .iter()
        .find_map(|s| s.formulas.as_ref().map(|f| f.gain));
    let mut out = String::new();
    let _ = write!(
        out,
        "{:<width$}  {:>5}  {:>9}  {:>10}  {:>12}",
        "layer", "units", "detectors", "unique top", "unique p.c."
    );
    for c in categories {
        let _ = write!(out, "  {:>8}", c);
    }
    if gain.is_some() {
        let _ = write!(out, "  {:>10}", "by formula");
    }
    out.push('\n');
    for s in summaries {
        let _ = write!(
            out,
            "{:<width$}  {:>5}  {:>9}  {:>10}  {:>12}",
            s.layer, s.units, s.detectors, s.unique_top_label, s.unique_per_category
        );
        for c in categories {
            let _ = write!(
                out,
                "  {:>8}",
                s.categories.get(c).map_or(0, |x| x.unique_per_category)
            );
        }
        if gain.is_some() {
            let cell = s
                .formulas
                .as_ref()
                .map_or_else(|| "-".to_owned(), |f| f.better.to_string());
            let _ = write!(out, "  {cell:>10}");
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "detectors: units with best IoU ≥ {threshold}; unique top: distinct labels of detectors; \
         unique p.c.: distinct best labels with IoU > {threshold}, per category (columns), summed"
    );
    if let Some(gain) = gain {
        let _ = writeln!(
            out,
            "by formula: units whose best formula of concepts beats their best single concept \
             by ≥ {gain} IoU"
        );
    }
    out
}

/// A table comparing models layer by layer (checkpoints of one training run, say): one line
/// per model, one column per layer (in first-seen order), each cell the layer's unique
/// detectors by the top-label rule and, in brackets, by the per-category rule; `-` where a
/// model has no such layer.
pub fn format_comparison(models: &[(String, Vec<LayerSummary>)]) -> String {
    let mut layers: Vec<&str> = Vec::new();
    for (_, summaries) in models {
        for s in summaries {
            if !layers.contains(&s.layer.as_str()) {
                layers.push(&s.layer);
            }
        }
    }
    let cell = |s: Option<&LayerSummary>| match s {
        Some(s) => format!("{} ({})", s.unique_top_label, s.unique_per_category),
        None => "-".to_owned(),
    };
    let name_width = models
        .iter()
        .map(|(m, _)| m.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let widths: Vec<usize> = layers
        .iter()
        .map(|layer| {
            models
                .iter()
                .map(|(_, s)| cell(s.iter().find(|s| s.layer == *layer)).chars().count())
                .chain([layer.chars().count()])
                .max()
                .unwrap_or(1)
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:<name_width$}", "model");
    for (layer, w) in layers.iter().zip(&widths) {
        let _ = write!(out, "  {layer:>w$}");
    }
    out.push('\n');
    for (model, summaries) in models {
        let _ = write!(out, "{model:<name_width$}");
        for (layer, w) in layers.iter().zip(&widths) {
            let text = cell(summaries.iter().find(|s| s.layer == *layer));
            let _ = write!(out, "  {text:>w$}");
        }
        out.push('\n');
    }
    out.push_str("unique detectors per layer: top-label rule (per-category rule in brackets)\n");
    out
}

/// The rotation control of one model as text: unique detectors per layer and in total
/// (top-label rule, per-category rule in brackets) for each fraction α of the random
/// rotation that `seed` names, by increasing α (`rows`: α and that dissection's layers).
pub fn format_rotation(model: &str, seed: u64, rows: &[(f64, Vec<LayerSummary>)]) -> String {
    let mut layers: Vec<&str> = Vec::new();
    for (_, summaries) in rows {
        for s in summaries {
            if !layers.contains(&s.layer.as_str()) {
                layers.push(&s.layer);
            }
        }
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|(power, summaries)| {
            let mut row = vec![format!("{power}")];
            let (mut top, mut per_category) = (0, 0);
            for layer in &layers {
                row.push(match summaries.iter().find(|s| s.layer == *layer) {
                    Some(s) => {
                        top += s.unique_top_label;
                        per_category += s.unique_per_category;
                        format!("{} ({})", s.unique_top_label, s.unique_per_category)
                    }
                    None => "-".to_owned(),
                });
            }
            row.push(format!("{top} ({per_category})"));
            row
        })
        .collect();
    let header: Vec<&str> = ["α"]
        .into_iter()
        .chain(layers.iter().copied())
        .chain(["total"])
        .collect();
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(1)
        })
        .collect();
    let mut out = format!(
        "rotation control of {model} (seed {seed}): unique detectors when each layer's basis \
         is turned by the fraction α of a random rotation\n"
    );
    let line = |texts: &[&str]| -> String {
        let parts: Vec<String> = texts
            .iter()
            .zip(&widths)
            .map(|(t, w)| format!("{t:>w$}"))
            .collect();
        parts.join("  ") + "\n"
    };
    out.push_str(&line(&header));
    for row in &cells {
        let row: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&line(&row));
    }
    out.push_str("top-label rule (per-category rule in brackets); α = 0: the model's own units\n");
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn rotation_table_totals_each_alpha() {
        let rows = vec![
            (0.0, vec![layer("conv1", 7, 9), layer("conv2", 10, 11)]),
            (0.5, vec![layer("conv1", 4, 5), layer("conv2", 3, 3)]),
            (1.0, vec![layer("conv1", 1, 1), layer("conv2", 0, 0)]),
        ];
        let text = format_rotation("m", 3, &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("m (seed 3)"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["α", "conv1", "conv2", "total"]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["0", "7", "(9)", "10", "(11)", "17", "(20)"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["0.5", "4", "(5)", "3", "(3)", "7", "(8)"]
        );
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>(),
            ["1", "1", "(1)", "0", "(0)", "1", "(1)"]
        );
    }

    fn layer(name: &str, top: usize, pc: usize) -> LayerSummary {
        LayerSummary {
            layer: name.to_owned(),
            units: 10,
            detectors: top,
            unique_top_label: top,
            unique_per_category: pc,
            categories: BTreeMap::new(),
            formulas: None,
        }
    }

    #[test]
    fn the_iou_threshold_is_an_iou() {
        for ok in [0.0, 0.04, 1.0] {
            let config = Config {
                iou_threshold: ok,
                ..Config::default()
            };
            assert!(config.validate().is_ok(), "{ok}");
        }
        for bad in [-0.1, 1.5, 2.0, f64::NAN, f64::INFINITY] {
            let config = Config {
                iou_threshold: bad,
                ..Config::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("between 0 and 1"), "{bad}: {err}");
        }
    }

    /// A formulas artifact holding a table of `(layer, unit, length, iou)` rows.
    fn formulas(store: &nd_store::Store, rows: &[(&str, u32, u32, f64)]) -> nd_store::Artifact {
        let spec = nd_store::Spec::new("formulas", 1, json!({ "rows": rows.len() }));
        let pending = store.begin(&spec).unwrap();
        let rows: Vec<nd_tables::formulas::Row> = rows
            .iter()
            .map(|&(layer, unit, length, iou)| nd_tables::formulas::Row {
                layer: layer.into(),
                unit,
                length,
                formula: None,
                iou,
                intersect: 0,
                activation: 0,
                truth: 0,
                best: false,
            })
            .collect();
        nd_tables::formulas::write_rows(&pending.dir().join(nd_tables::formulas::FILE), &rows, &[])
            .unwrap();
        pending.commit(Default::default(), json!({})).unwrap()
    }

    #[test]
    fn formula_figures_count_units_a_formula_explains_better() {
        let dir = tempfile::tempdir().unwrap();
        let store = nd_store::Store::open(dir.path()).unwrap();
        let f = formulas(
            &store,
            &[
                // Unit 0 gains 0.02 at length 2; unit 1 gains 0.005; unit 2 gains 0.01
                // at length 3 after nothing at length 2.
                ("conv5", 0, 1, 0.10),
                ("conv5", 0, 2, 0.12),
                ("conv5", 1, 1, 0.20),
                ("conv5", 1, 2, 0.205),
                ("conv5", 2, 1, 0.0),
                ("conv5", 2, 2, 0.0),
                ("conv5", 2, 3, 0.25),
            ],
        );
        let layers = [("conv4", 2), ("conv5", 3)];
        let got = formula_summaries(&f, &layers, 0.01).unwrap();
        assert_eq!(got[0], None, "conv4 has no formulas");
        let conv5 = got[1].as_ref().unwrap();
        assert_eq!((conv5.better, conv5.gain), (2, 0.01));
        assert!((conv5.mean_concept_iou - 0.1).abs() < 1e-12);
        assert!((conv5.mean_formula_iou - (0.12 + 0.205 + 0.25) / 3.0).abs() < 1e-12);
        let strict = formula_summaries(&f, &layers, 0.05).unwrap();
        assert_eq!(strict[1].as_ref().unwrap().better, 1);

        // Formulas of another dissection are refused, naming the table.
        let err = formula_summaries(&f, &[("conv4", 3)], 0.01)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("formulas.parquet") && err.contains("\"conv5\"") && err.contains("conv4"),
            "{err}"
        );
        let err = formula_summaries(&f, &[("conv5", 4)], 0.01)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3 units in the formulas but 4"), "{err}");
    }

    #[test]
    fn the_table_shows_formulas_only_when_there_are_some() {
        let mut with = layer("conv5", 3, 4);
        with.formulas = Some(FormulaSummary {
            gain: 0.02,
            better: 7,
            mean_concept_iou: 0.1,
            mean_formula_iou: 0.15,
        });
        let text = format_table(&[layer("conv4", 1, 1), with], &[], 0.04);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("by formula"), "{text}");
        assert!(
            lines[1].ends_with(" -") && lines[2].ends_with(" 7"),
            "{text}"
        );
        assert!(text.contains("by ≥ 0.02 IoU"), "{text}");
        let text = format_table(&[layer("conv4", 1, 1)], &[], 0.04);
        assert!(!text.contains("formula"), "{text}");
    }

    #[test]
    fn comparison_lines_up_layers_by_name() {
        let text = format_comparison(&[
            (
                "random".into(),
                vec![layer("conv1", 1, 2), layer("conv5", 0, 0)],
            ),
            (
                "trained".into(),
                vec![layer("conv1", 12, 15), layer("conv3", 7, 9)],
            ),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "model      conv1  conv5  conv3");
        assert_eq!(lines[1], "random     1 (2)  0 (0)      -");
        assert_eq!(lines[2], "trained  12 (15)      -  7 (9)");
    }
}
