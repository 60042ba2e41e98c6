//! The dissection's labels in, the explain artifact's tables out.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, FixedSizeListArray, Float32Array,
    Float64Array, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int32Type, UInt32Type};
use arrow::record_batch::RecordBatch;
use nd_tables::dictionary;
use serde_json::{Value, json};

use crate::compute::{Explanation, Faithfulness};
use crate::{AblationSummary, Config, Error, Result};

pub const EXPLANATIONS: &str = "explanations.parquet";
pub const CLASS_UNITS: &str = "class_units.parquet";
pub const CLASS_CONCEPTS: &str = "class_concepts.parquet";
pub const FAITHFULNESS: &str = "faithfulness.parquet";
pub const CAMS: &str = "cams.parquet";

/// A unit's label in the dissection; `name` and `category` are none for a unit that
/// overlaps no concept.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitLabel {
    pub name: Option<String>,
    pub category: Option<String>,
    pub iou: f64,
    pub detector: bool,
}

/// The labels of `layer`'s units from a report artifact's `units.parquet`, in unit order.
pub fn read_units(report: &nd_store::Artifact, layer: &str) -> Result<Vec<UnitLabel>> {
    let path = report.dir.join("units.parquet");
    let batch = nd_tables::read(&path)?;
    let layers = nd_tables::strings(&batch, "layer")?;
    let units = nd_tables::values::<UInt32Type>(&batch, "unit")?;
    let ious = nd_tables::values::<Float64Type>(&batch, "iou")?;
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Tables(nd_tables::Error::Column(name.into())))
    };
    let names = column("name")?;
    let categories = column("category")?;
    let detectors = column("detector")?
        .as_boolean_opt()
        .ok_or_else(|| Error::Tables(nd_tables::Error::Column("detector".into())))?
        .clone();
    let string_at = |array: &ArrayRef, i: usize| -> Option<String> {
        if array.is_null(i) {
            return None;
        }
        let dict = array.as_dictionary_opt::<Int32Type>()?;
        let key = dict.keys().value(i) as usize;
        Some(dict.values().as_string::<i32>().value(key).to_owned())
    };
    let mut out: BTreeMap<u32, UnitLabel> = BTreeMap::new();
    for i in (0..batch.num_rows()).filter(|&i| layers[i] == layer) {
        out.insert(
            units[i],
            UnitLabel {
                name: string_at(names, i),
                category: string_at(categories, i),
                iou: ious[i],
                detector: detectors.value(i),
            },
        );
    }
    if out.is_empty() {
        let mut known: Vec<&String> = layers.iter().collect();
        known.dedup();
        return Err(Error::Config(format!(
            "the dissection (report {}) has no layer `{layer}`; it has {}",
            report.key().short(),
            known
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if out.keys().copied().ne(0..out.len() as u32) {
        return Err(Error::Config(format!(
            "{}: the units of layer `{layer}` are not numbered 0..{}",
            path.display(),
            out.len()
        )));
    }
    Ok(out.into_values().collect())
}

fn nullable_dictionary<'a>(values: impl IntoIterator<Item = Option<&'a str>>) -> ArrayRef {
    let array: DictionaryArray<Int32Type> = values.into_iter().collect();
    Arc::new(array)
}

fn u32s(values: impl IntoIterator<Item = u32>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(values))
}

fn f64s(values: impl IntoIterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

/// `part / whole`, or 0 when the whole is 0.
fn share(part: f64, whole: f64) -> f64 {
    if whole == 0.0 { 0.0 } else { part / whole }
}

/// The true class of a row: the name of its first image-level label of the truth
/// category, when the dataset has the category.
fn truths(dataset: &nd_broden::Dataset, config: &Config) -> Option<Vec<Option<String>>> {
    let category = dataset.category_index(config.truth_category.as_deref()?)?;
    Some(
        (0..dataset.len())
            .map(|row| {
                dataset.items(row).find_map(|(c, item)| match item {
                    nd_broden::Item::Label(number) if c == category && number != 0 => {
                        Some(dataset.label_name(number).to_owned())
                    }
                    _ => None,
                })
            })
            .collect(),
    )
}

/// `cams.parquet`, written a batch of images at a time as the maps are computed, so that
/// the maps never all sit in memory: one row per explained (image, class), in the order of
/// `explanations.parquet`.
pub(crate) struct CamSink<'a> {
    file: LazyWriter,
    dataset: &'a nd_broden::Dataset,
    layer: &'a str,
}

/// A Parquet file written batch by batch and created at its first batch (whose schema it
/// takes): the tables written as images are explained.
pub(crate) struct LazyWriter {
    path: std::path::PathBuf,
    metadata: Vec<(String, String)>,
    writer: Option<nd_tables::Writer>,
}

impl LazyWriter {
    pub fn new(path: std::path::PathBuf, metadata: &[(String, String)]) -> LazyWriter {
        LazyWriter {
            path,
            metadata: metadata.to_vec(),
            writer: None,
        }
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.writer.is_none() {
            self.writer = Some(nd_tables::Writer::create(
                &self.path,
                batch.schema().as_ref(),
                &self.metadata,
            )?);
        }
        self.writer.as_mut().expect("created above").write(batch)?;
        Ok(())
    }

    /// Closes the file; fails, saying `none`, when no batch was written.
    pub fn finish(self, none: &str) -> Result<()> {
        match self.writer {
            Some(writer) => Ok(writer.finish()?),
            None => Err(Error::Config(none.to_owned())),
        }
    }
}

/// One map: the dataset row, the class's rank (0 for the predicted class), the class and
/// the map, `height × width` row-major.
pub(crate) struct Cam<'a> {
    pub row: usize,
    pub class_rank: usize,
    pub class: usize,
    pub values: &'a [f32],
}

impl<'a> CamSink<'a> {
    pub fn new(
        dir: &Path,
        metadata: &[(String, String)],
        dataset: &'a nd_broden::Dataset,
        layer: &'a str,
    ) -> CamSink<'a> {
        CamSink {
            file: LazyWriter::new(dir.join(CAMS), metadata),
            dataset,
            layer,
        }
    }

    /// Appends a batch's maps, each of `height × width` values.
    pub fn push(&mut self, cams: &[Cam], height: usize, width: usize) -> Result<()> {
        let cells = height * width;
        let flat = Float32Array::from_iter_values(cams.iter().flat_map(|c| {
            assert_eq!(c.values.len(), cells, "a map of height × width values");
            c.values.iter().copied()
        }));
        let list = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            cells as i32,
            Arc::new(flat),
            None,
        )?;
        let batch = RecordBatch::try_from_iter([
            (
                "image",
                dictionary(cams.iter().map(|c| self.dataset.image(c.row))),
            ),
            (
                "class_rank",
                u32s(cams.iter().map(|c| c.class_rank as u32 + 1)),
            ),
            ("class", u32s(cams.iter().map(|c| c.class as u32))),
            ("layer", dictionary(cams.iter().map(|_| self.layer))),
            ("height", u32s(cams.iter().map(|_| height as u32))),
            ("width", u32s(cams.iter().map(|_| width as u32))),
            ("cam", Arc::new(list) as ArrayRef),
        ])?;
        self.file.write(&batch)
    }

    pub fn finish(self) -> Result<()> {
        self.file.finish("no class activation map was computed")
    }
}

/// Writes every table but `cams.parquet` ([`CamSink`]) into `dir` and returns
/// `summary.json`'s value.
pub(crate) fn write(
    dir: &Path,
    dataset: &nd_broden::Dataset,
    config: &Config,
    result: &Explanation,
    units: &[UnitLabel],
    metadata: &[(String, String)],
) -> Result<Value> {
    let class_names: Vec<String> = (0..result.classes).map(|c| config.class_name(c)).collect();
    let truths = truths(dataset, config);
    let layer = config.layer.as_str();

    // explanations.parquet: one row per image, class and top unit.
    let rows: Vec<(&crate::compute::Explained, usize, usize, f32)> = result
        .explained
        .iter()
        .flat_map(|e| {
            e.top
                .iter()
                .enumerate()
                .map(move |(rank, &(unit, contribution))| (e, rank, unit, contribution))
        })
        .collect();
    let truth_of = |row: usize| truths.as_ref().and_then(|t| t[row].as_deref());
    let correct_of = |e: &crate::compute::Explained| {
        truths
            .as_ref()
            .and_then(|t| t[e.row].as_ref())
            .filter(|t| class_names.contains(t))
            .map(|t| *t == class_names[e.class])
    };
    let image_names: Vec<String> = (0..dataset.len())
        .map(|r| dataset.image(r).to_owned())
        .collect();
    let batch = RecordBatch::try_from_iter([
        (
            "image",
            dictionary(rows.iter().map(|r| image_names[r.0.row].as_str())),
        ),
        (
            "class_rank",
            u32s(rows.iter().map(|r| r.0.class_rank as u32 + 1)),
        ),
        ("class", u32s(rows.iter().map(|r| r.0.class as u32))),
        (
            "class_name",
            dictionary(rows.iter().map(|r| class_names[r.0.class].as_str())),
        ),
        ("score", f64s(rows.iter().map(|r| f64::from(r.0.score)))),
        (
            "probability",
            f64s(rows.iter().map(|r| f64::from(r.0.probability))),
        ),
        (
            "truth",
            nullable_dictionary(rows.iter().map(|r| truth_of(r.0.row))),
        ),
        (
            "correct",
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| correct_of(r.0)),
            )) as ArrayRef,
        ),
        ("layer", dictionary(rows.iter().map(|_| layer))),
        ("rank", u32s(rows.iter().map(|r| r.1 as u32 + 1))),
        ("unit", u32s(rows.iter().map(|r| r.2 as u32))),
        ("contribution", f64s(rows.iter().map(|r| f64::from(r.3)))),
        (
            "share",
            f64s(rows.iter().map(|r| share(f64::from(r.3), r.0.total))),
        ),
        (
            "label",
            nullable_dictionary(rows.iter().map(|r| units[r.2].name.as_deref())),
        ),
        (
            "category",
            nullable_dictionary(rows.iter().map(|r| units[r.2].category.as_deref())),
        ),
        ("iou", f64s(rows.iter().map(|r| units[r.2].iou))),
        (
            "detector",
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(units[r.2].detector)),
            )),
        ),
    ])?;
    nd_tables::write(&dir.join(EXPLANATIONS), &batch, metadata)?;

    // class_units.parquet and class_concepts.parquet: per predicted class, the units with the
    // largest mean contribution, and the concepts whose detectors contribute most.
    let mut unit_rows = Vec::new();
    let mut concept_rows = Vec::new();
    for c in 0..result.classes {
        let images = result.totals.class_images[c];
        if images == 0 {
            continue;
        }
        let means: Vec<f64> = result.totals.class_sums[c]
            .iter()
            .map(|s| s / images as f64)
            .collect();
        let total: f64 = means.iter().sum();
        let mut order: Vec<usize> = (0..means.len()).collect();
        order.sort_by(|&x, &y| means[y].total_cmp(&means[x]).then(x.cmp(&y)));
        for (rank, &u) in order.iter().take(config.top_n).enumerate() {
            unit_rows.push((c, images, rank, u, means[u], share(means[u], total)));
        }
        // A concept's contribution: the sum of its detectors' mean contributions.
        let mut concepts: BTreeMap<(&str, &str), (f64, u32, usize)> = BTreeMap::new();
        for (u, label) in units.iter().enumerate() {
            if let (true, Some(name), Some(category)) =
                (label.detector, &label.name, &label.category)
            {
                let entry = concepts.entry((name, category)).or_insert((0.0, 0, u));
                entry.0 += means[u];
                entry.1 += 1;
                if means[u] > means[entry.2] {
                    entry.2 = u;
                }
            }
        }
        let mut concepts: Vec<_> = concepts.into_iter().collect();
        concepts.sort_by(|x, y| y.1.0.total_cmp(&x.1.0).then(x.0.cmp(&y.0)));
        for (rank, ((name, category), (sum, count, best))) in
            concepts.into_iter().take(config.top_n).enumerate()
        {
            concept_rows.push((
                c,
                images,
                rank,
                name,
                category,
                count,
                sum,
                share(sum, total),
                best,
            ));
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("class", u32s(unit_rows.iter().map(|r| r.0 as u32))),
        (
            "class_name",
            dictionary(unit_rows.iter().map(|r| class_names[r.0].as_str())),
        ),
        ("images", u32s(unit_rows.iter().map(|r| r.1 as u32))),
        ("layer", dictionary(unit_rows.iter().map(|_| layer))),
        ("rank", u32s(unit_rows.iter().map(|r| r.2 as u32 + 1))),
        ("unit", u32s(unit_rows.iter().map(|r| r.3 as u32))),
        ("mean_contribution", f64s(unit_rows.iter().map(|r| r.4))),
        ("share", f64s(unit_rows.iter().map(|r| r.5))),
        (
            "label",
            nullable_dictionary(unit_rows.iter().map(|r| units[r.3].name.as_deref())),
        ),
        (
            "category",
            nullable_dictionary(unit_rows.iter().map(|r| units[r.3].category.as_deref())),
        ),
        ("iou", f64s(unit_rows.iter().map(|r| units[r.3].iou))),
        (
            "detector",
            Arc::new(BooleanArray::from_iter(
                unit_rows.iter().map(|r| Some(units[r.3].detector)),
            )),
        ),
    ])?;
    nd_tables::write(&dir.join(CLASS_UNITS), &batch, metadata)?;
    let batch = RecordBatch::try_from_iter([
        ("class", u32s(concept_rows.iter().map(|r| r.0 as u32))),
        (
            "class_name",
            dictionary(concept_rows.iter().map(|r| class_names[r.0].as_str())),
        ),
        ("images", u32s(concept_rows.iter().map(|r| r.1 as u32))),
        ("layer", dictionary(concept_rows.iter().map(|_| layer))),
        ("rank", u32s(concept_rows.iter().map(|r| r.2 as u32 + 1))),
        ("label", dictionary(concept_rows.iter().map(|r| r.3))),
        ("category", dictionary(concept_rows.iter().map(|r| r.4))),
        ("units", u32s(concept_rows.iter().map(|r| r.5))),
        ("mean_contribution", f64s(concept_rows.iter().map(|r| r.6))),
        ("share", f64s(concept_rows.iter().map(|r| r.7))),
        ("best_unit", u32s(concept_rows.iter().map(|r| r.8 as u32))),
    ])?;
    nd_tables::write(&dir.join(CLASS_CONCEPTS), &batch, metadata)?;

    // faithfulness.parquet: one row per way of choosing, number and draw.
    let mut f_rows: Vec<(&str, usize, u32, &Faithfulness)> = Vec::new();
    for (j, &n) in config.ablate.iter().enumerate() {
        if n > result.units {
            continue;
        }
        f_rows.push(("top", n, 0, &result.totals.top[j]));
        for (d, f) in result.totals.random[j].iter().enumerate() {
            f_rows.push(("random", n, d as u32, f));
        }
        if result.totals.linear_head {
            f_rows.push(("weight", n, 0, &result.totals.weight[j]));
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("layer", dictionary(f_rows.iter().map(|_| layer))),
        ("method", dictionary(f_rows.iter().map(|r| r.0))),
        ("n", u32s(f_rows.iter().map(|r| r.1 as u32))),
        ("draw", u32s(f_rows.iter().map(|r| r.2))),
        (
            "images",
            Arc::new(UInt64Array::from_iter_values(
                f_rows.iter().map(|r| r.3.images),
            )) as ArrayRef,
        ),
        ("mean_drop", f64s(f_rows.iter().map(|r| r.3.mean_drop()))),
        ("flip_rate", f64s(f_rows.iter().map(|r| r.3.flip_rate()))),
    ])?;
    nd_tables::write(&dir.join(FAITHFULNESS), &batch, metadata)?;

    let ablation = summarize_ablation(config, result);
    let predicted: Vec<&crate::compute::Explained> = result
        .explained
        .iter()
        .filter(|e| e.class_rank == 0)
        .collect();
    let judged: Vec<bool> = predicted.iter().filter_map(|e| correct_of(e)).collect();
    Ok(json!({
        "layer": layer,
        "logits": config.logits,
        "images": predicted.len(),
        "classes": class_names,
        "units": result.units,
        "map": [result.height, result.width],
        "mean_predicted_score": result.totals.score_sum / predicted.len().max(1) as f64,
        "accuracy": if judged.is_empty() { Value::Null } else {
            json!(judged.iter().filter(|&&c| c).count() as f64 / judged.len() as f64)
        },
        "images_with_truth": judged.len(),
        "head_linear_after_pooling": result.totals.linear_head,
        "linear_head_deviation": result.totals.linear_head_deviation,
        "intervention_deviation": result.totals.intervention_deviation,
        "ablation": ablation,
    }))
}

/// Mean and standard deviation.
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn summarize_ablation(config: &Config, result: &Explanation) -> Vec<AblationSummary> {
    config
        .ablate
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n <= result.units)
        .map(|(j, &n)| {
            let drops: Vec<f64> = result.totals.random[j]
                .iter()
                .map(Faithfulness::mean_drop)
                .collect();
            let flips: Vec<f64> = result.totals.random[j]
                .iter()
                .map(Faithfulness::flip_rate)
                .collect();
            let (random_drop, random_drop_sd) = mean_sd(&drops);
            AblationSummary {
                n,
                top_drop: result.totals.top[j].mean_drop(),
                top_flip_rate: result.totals.top[j].flip_rate(),
                random_drop,
                random_drop_sd,
                random_flip_rate: mean_sd(&flips).0,
                weight_drop: result
                    .totals
                    .linear_head
                    .then(|| result.totals.weight[j].mean_drop()),
                weight_flip_rate: result
                    .totals
                    .linear_head
                    .then(|| result.totals.weight[j].flip_rate()),
            }
        })
        .collect()
}
