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

use crate::{
    Result, StrColumn, Writer, dictionary, for_each_batch, primitives, read, strings, values, write,
};

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

impl Row {
    /// The row with its strings borrowed.
    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef {
            layer: &self.layer,
            unit: self.unit,
            label: self.label,
            name: &self.name,
            category: &self.category,
            truth: self.truth,
            activation: self.activation,
            intersect: self.intersect,
            iou: self.iou,
        }
    }
}

/// A [`Row`] whose strings are borrowed (from the dataset's labels and categories): what
/// the score stage writes, without a string allocated per row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    pub layer: &'a str,
    pub unit: u32,
    pub label: u32,
    pub name: &'a str,
    pub category: &'a str,
    pub truth: u64,
    pub activation: u64,
    pub intersect: u64,
    pub iou: f64,
}

fn batch_of(rows: &[RowRef]) -> Result<RecordBatch> {
    Ok(RecordBatch::try_from_iter([
        ("layer", dictionary(rows.iter().map(|r| r.layer))),
        (
            "unit",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.unit))) as ArrayRef,
        ),
        (
            "label",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.label))),
        ),
        ("name", dictionary(rows.iter().map(|r| r.name))),
        ("category", dictionary(rows.iter().map(|r| r.category))),
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
    ])?)
}

/// `scores.parquet` written a batch of rows at a time, so that a table of millions of rows
/// (every unit of a deep layer against every concept of Broden) never sits in memory whole.
pub struct RowWriter {
    inner: Writer,
}

impl RowWriter {
    pub fn create(path: &Path, metadata: &[(String, String)]) -> Result<RowWriter> {
        let schema = batch_of(&[])?.schema();
        Ok(RowWriter {
            inner: Writer::create(path, &schema, metadata)?,
        })
    }

    pub fn write(&mut self, rows: &[RowRef]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.inner.write(&batch_of(rows)?)
    }

    pub fn finish(self) -> Result<()> {
        self.inner.finish()
    }
}

pub fn write_rows(path: &Path, rows: &[Row], metadata: &[(String, String)]) -> Result<()> {
    let mut writer = RowWriter::create(path, metadata)?;
    writer.write(&rows.iter().map(Row::as_ref).collect::<Vec<_>>())?;
    writer.finish()
}

impl RowRef<'_> {
    /// The row with its strings owned.
    pub fn to_owned(&self) -> Row {
        Row {
            layer: self.layer.to_owned(),
            unit: self.unit,
            label: self.label,
            name: self.name.to_owned(),
            category: self.category.to_owned(),
            truth: self.truth,
            activation: self.activation,
            intersect: self.intersect,
            iou: self.iou,
        }
    }
}

/// Calls `f` with every row of `scores.parquet`, in order, a batch at a time with the
/// strings borrowed from the batch: the table (millions of rows for a deep layer on
/// Broden) is never held whole.
pub fn for_each_row<E: From<crate::Error>>(
    path: &Path,
    mut f: impl FnMut(RowRef<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    for_each_batch(path, |batch| -> std::result::Result<(), E> {
        let layer = StrColumn::of(batch, "layer")?;
        let unit = primitives::<UInt32Type>(batch, "unit")?;
        let label = primitives::<UInt32Type>(batch, "label")?;
        let name = StrColumn::of(batch, "name")?;
        let category = StrColumn::of(batch, "category")?;
        let truth = primitives::<UInt64Type>(batch, "truth")?;
        let activation = primitives::<UInt64Type>(batch, "activation")?;
        let intersect = primitives::<UInt64Type>(batch, "intersect")?;
        let iou = primitives::<Float64Type>(batch, "iou")?;
        for i in 0..batch.num_rows() {
            f(RowRef {
                layer: layer.get(i),
                unit: unit[i],
                label: label[i],
                name: name.get(i),
                category: category.get(i),
                truth: truth[i],
                activation: activation[i],
                intersect: intersect[i],
                iou: iou[i],
            })?;
        }
        Ok(())
    })
}

/// Every row of `scores.parquet`, owned.
pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for_each_row(path, |row| -> Result<()> {
        rows.push(row.to_owned());
        Ok(())
    })?;
    Ok(rows)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u32) -> Vec<Row> {
        let names = ["sky", "grass-s", "", "dog"];
        (0..n)
            .map(|i| Row {
                layer: ["layer3", "layer4"][(i / 5000) as usize % 2].to_owned(),
                unit: i / 37,
                label: i % 37,
                name: names[(i % 4) as usize].to_owned(),
                category: ["object", "scene"][(i % 3 == 0) as usize].to_owned(),
                truth: u64::from(i) * 3,
                activation: u64::from(i) * 2 + 1,
                intersect: u64::from(i % 11),
                iou: f64::from(i % 11) / f64::from(i + 1),
            })
            .collect()
    }

    #[test]
    fn rows_written_in_batches_are_the_rows_written_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let rows = rows(10_000);
        let metadata = [("stage".to_owned(), "score".to_owned())];
        let whole = dir.path().join("whole.parquet");
        write_rows(&whole, &rows, &metadata).unwrap();
        let refs: Vec<RowRef> = rows.iter().map(Row::as_ref).collect();
        for size in [1024, 3000] {
            let path = dir.path().join(format!("batches-{size}.parquet"));
            let mut writer = RowWriter::create(&path, &metadata).unwrap();
            for batch in refs.chunks(size) {
                writer.write(batch).unwrap();
            }
            writer.write(&[]).unwrap();
            writer.finish().unwrap();
            assert_eq!(read_rows(&path).unwrap(), rows, "batches of {size}");
            assert_eq!(
                crate::metadata(&path).unwrap()["stage"],
                "score",
                "batches of {size}"
            );
            // The writer cuts pages every 1,024 rows: batches of a multiple of that give the
            // same file, byte for byte.
            if size % 1024 == 0 {
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    std::fs::read(&whole).unwrap()
                );
            }
        }
    }
}
