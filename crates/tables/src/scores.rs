//! The score stage's tables.
//!
//! `scores.parquet` has one row per (layer, unit, label) with a non-zero intersection or
//! that is the best label of its category for the unit; `truth.parquet` and
//! `activation.parquet` hold the rest of the counts, so that the three together are every
//! count of the dissection (and counts of disjoint image sets can be summed).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, UInt32Array, UInt64Array};
use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::{Result, dictionary, read, strings, values, write};

pub const FILE: &str = "scores.parquet";
pub const TRUTH_FILE: &str = "truth.parquet";
pub const ACTIVATION_FILE: &str = "activation.parquet";

/// One unit/label pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub layer: String,
    /// 0-based.
    pub unit: u32,
    pub label: u32,
    /// The label's name as in `label.csv` (suffix kept); empty for label 0.
    pub name: String,
    /// The category the label is scored in (its primary category).
    pub category: String,
    /// Pixels of the dataset labelled with the label.
    pub truth: u64,
    /// Mask pixels of the unit counting towards the label's category.
    pub activation: u64,
    /// Mask pixels of the unit carrying the label.
    pub intersect: u64,
    /// `intersect / (activation + truth − intersect)`, 0 when that is 0.
    pub iou: f64,
}

pub fn write_rows(path: &Path, rows: &[Row], metadata: &[(String, String)]) -> Result<()> {
    let batch = RecordBatch::try_from_iter([
        ("layer", dictionary(rows.iter().map(|r| r.layer.as_str()))),
        (
            "unit",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.unit))) as ArrayRef,
        ),
        (
            "label",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.label))),
        ),
        ("name", dictionary(rows.iter().map(|r| r.name.as_str()))),
        (
            "category",
            dictionary(rows.iter().map(|r| r.category.as_str())),
        ),
        (
            "truth",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.truth))),
        ),
        (
            "activation",
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.activation),
            )),
        ),
        (
            "intersect",
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.intersect),
            )),
        ),
        (
            "iou",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.iou))),
        ),
    ])?;
    write(path, &batch, metadata)
}

pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let batch = read(path)?;
    let layer = strings(&batch, "layer")?;
    let unit = values::<UInt32Type>(&batch, "unit")?;
    let label = values::<UInt32Type>(&batch, "label")?;
    let name = strings(&batch, "name")?;
    let category = strings(&batch, "category")?;
    let truth = values::<UInt64Type>(&batch, "truth")?;
    let activation = values::<UInt64Type>(&batch, "activation")?;
    let intersect = values::<UInt64Type>(&batch, "intersect")?;
    let iou = values::<Float64Type>(&batch, "iou")?;
    Ok((0..batch.num_rows())
        .map(|i| Row {
            layer: layer[i].clone(),
            unit: unit[i],
            label: label[i],
            name: name[i].clone(),
            category: category[i].clone(),
            truth: truth[i],
            activation: activation[i],
            intersect: intersect[i],
            iou: iou[i],
        })
        .collect())
}

/// `truth.parquet`: every label's pixel count (labels that never occur included).
pub fn write_truth(path: &Path, truth: &[u64], metadata: &[(String, String)]) -> Result<()> {
    let batch = RecordBatch::try_from_iter([
        (
            "label",
            Arc::new(UInt32Array::from_iter_values(0..truth.len() as u32)) as ArrayRef,
        ),
        (
            "truth",
            Arc::new(UInt64Array::from_iter_values(truth.iter().copied())),
        ),
    ])?;
    write(path, &batch, metadata)
}

/// Reads `truth.parquet` back: the pixel count of every label, by label number.
pub fn read_truth(path: &Path) -> Result<Vec<u64>> {
    let batch = read(path)?;
    let label = values::<UInt32Type>(&batch, "label")?;
    let truth = values::<UInt64Type>(&batch, "truth")?;
    if label.iter().enumerate().any(|(i, &l)| l as usize != i) {
        return Err(crate::Error::File {
            path: path.to_owned(),
            message: "the labels are not 0, 1, 2... in order".into(),
        });
    }
    Ok(truth)
}

/// One row of `activation.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationRow {
    pub layer: String,
    pub unit: u32,
    pub category: String,
    /// Mask pixels of the unit counting towards the category.
    pub activation: u64,
    /// All mask pixels of the unit.
    pub pixels: u64,
}

pub fn write_activation(
    path: &Path,
    rows: &[ActivationRow],
    metadata: &[(String, String)],
) -> Result<()> {
    let batch = RecordBatch::try_from_iter([
        ("layer", dictionary(rows.iter().map(|r| r.layer.as_str()))),
        (
            "unit",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.unit))) as ArrayRef,
        ),
        (
            "category",
            dictionary(rows.iter().map(|r| r.category.as_str())),
        ),
        (
            "activation",
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.activation),
            )),
        ),
        (
            "pixels",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.pixels))),
        ),
    ])?;
    write(path, &batch, metadata)
}

pub fn read_activation(path: &Path) -> Result<Vec<ActivationRow>> {
    let batch = read(path)?;
    let layer = strings(&batch, "layer")?;
    let unit = values::<UInt32Type>(&batch, "unit")?;
    let category = strings(&batch, "category")?;
    let activation = values::<UInt64Type>(&batch, "activation")?;
    let pixels = values::<UInt64Type>(&batch, "pixels")?;
    Ok((0..batch.num_rows())
        .map(|i| ActivationRow {
            layer: layer[i].clone(),
            unit: unit[i],
            category: category[i].clone(),
            activation: activation[i],
            pixels: pixels[i],
        })
        .collect())
}
