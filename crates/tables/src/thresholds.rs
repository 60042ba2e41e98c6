//! The quantile stage's table: one row per unit of each layer.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Float64Array, UInt32Array, UInt64Array};
use arrow::datatypes::{Float32Type, Float64Type, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::{Result, dictionary, read, strings, values, write};

/// The file name inside a quantile artifact.
pub const FILE: &str = "thresholds.parquet";

/// A unit's threshold and the statistics of its activations.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub layer: String,
    /// 0-based.
    pub unit: u32,
    /// The value that only the top fraction `top` of the unit's activations exceeds.
    pub threshold: f64,
    pub top: f64,
    /// How many activations (images × height × width) the threshold was taken over.
    pub n_values: u64,
    pub min: f32,
    pub max: f32,
    /// The fraction of activations that are exactly 0 (dead after a ReLU).
    pub zero_fraction: f64,
}

pub fn write_rows(path: &Path, rows: &[Row], metadata: &[(String, String)]) -> Result<()> {
    let batch = RecordBatch::try_from_iter([
        ("layer", dictionary(rows.iter().map(|r| r.layer.as_str()))),
        (
            "unit",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.unit))) as ArrayRef,
        ),
        (
            "threshold",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.threshold),
            )),
        ),
        (
            "top",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.top))),
        ),
        (
            "n_values",
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.n_values),
            )),
        ),
        (
            "min",
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.min))),
        ),
        (
            "max",
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.max))),
        ),
        (
            "zero_fraction",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.zero_fraction),
            )),
        ),
    ])?;
    write(path, &batch, metadata)
}

pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let batch = read(path)?;
    let layer = strings(&batch, "layer")?;
    let unit = values::<UInt32Type>(&batch, "unit")?;
    let threshold = values::<Float64Type>(&batch, "threshold")?;
    let top = values::<Float64Type>(&batch, "top")?;
    let n_values = values::<UInt64Type>(&batch, "n_values")?;
    let min = values::<Float32Type>(&batch, "min")?;
    let max = values::<Float32Type>(&batch, "max")?;
    let zero_fraction = values::<Float64Type>(&batch, "zero_fraction")?;
    Ok((0..batch.num_rows())
        .map(|i| Row {
            layer: layer[i].clone(),
            unit: unit[i],
            threshold: threshold[i],
            top: top[i],
            n_values: n_values[i],
            min: min[i],
            max: max[i],
            zero_fraction: zero_fraction[i],
        })
        .collect())
}
