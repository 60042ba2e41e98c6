//! `formulas.parquet`, the formulas stage's table: per layer, unit and formula length, the
//! best formula of that length (null where none overlaps the unit), its counts and IoU,
//! and whether it is the unit's best of every length.
//!
//! A formula is left-deep, `c1 op2 c2 op3 c3 …` (`(c1 op2 c2) op3 c3`): `labels` holds the
//! concepts' label numbers, `names` their names, `ops` the operators before each concept
//! after the first (`and`, `or`, `and_not`), and `formula` the text, e.g.
//! `(water OR river) AND NOT grass`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray, ListBuilder, StringArray,
    StringBuilder, UInt32Array, UInt32Builder, UInt64Array,
};
use arrow::datatypes::{Float64Type, UInt32Type, UInt64Type};
use arrow::record_batch::RecordBatch;

use crate::{Error, Result, dictionary, read, strings, values, write};

pub const FILE: &str = "formulas.parquet";

/// A formula: its concepts and the operators between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formula {
    pub labels: Vec<u32>,
    pub names: Vec<String>,
    /// `ops.len() + 1 == labels.len()`.
    pub ops: Vec<String>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub layer: String,
    pub unit: u32,
    pub length: u32,
    /// `None` when no formula of this length overlaps the unit.
    pub formula: Option<Formula>,
    pub iou: f64,
    /// Mask pixels where the formula holds.
    pub intersect: u64,
    /// The unit's mask pixels in images where a category of the formula counts.
    pub activation: u64,
    /// Pixels of the dataset where the formula holds.
    pub truth: u64,
    /// This length's formula is the unit's best of all lengths.
    pub best: bool,
}

pub fn write_rows(path: &Path, rows: &[Row], metadata: &[(String, String)]) -> Result<()> {
    let mut labels = ListBuilder::new(UInt32Builder::new());
    let mut names = ListBuilder::new(StringBuilder::new());
    let mut ops = ListBuilder::new(StringBuilder::new());
    let mut text = StringBuilder::new();
    for r in rows {
        match &r.formula {
            Some(f) => {
                labels.values().append_slice(&f.labels);
                labels.append(true);
                for n in &f.names {
                    names.values().append_value(n);
                }
                names.append(true);
                for o in &f.ops {
                    ops.values().append_value(o);
                }
                ops.append(true);
                text.append_value(&f.text);
            }
            None => {
                labels.append(false);
                names.append(false);
                ops.append(false);
                text.append_null();
            }
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("layer", dictionary(rows.iter().map(|r| r.layer.as_str()))),
        (
            "unit",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.unit))) as ArrayRef,
        ),
        (
            "length",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.length))),
        ),
        ("formula", Arc::new(text.finish())),
        ("labels", Arc::new(labels.finish())),
        ("names", Arc::new(names.finish())),
        ("ops", Arc::new(ops.finish())),
        (
            "iou",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.iou))),
        ),
        (
            "intersect",
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.intersect),
            )),
        ),
        (
            "activation",
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.activation),
            )),
        ),
        (
            "truth",
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.truth))),
        ),
        (
            "best",
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| r.best).collect::<Vec<_>>(),
            )),
        ),
    ])?;
    write(path, &batch, metadata)
}

fn list<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ListArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| Error::Column(name.to_owned()))
}

pub fn read_rows(path: &Path) -> Result<Vec<Row>> {
    let batch = read(path)?;
    let layer = strings(&batch, "layer")?;
    let unit = values::<UInt32Type>(&batch, "unit")?;
    let length = values::<UInt32Type>(&batch, "length")?;
    let iou = values::<Float64Type>(&batch, "iou")?;
    let intersect = values::<UInt64Type>(&batch, "intersect")?;
    let activation = values::<UInt64Type>(&batch, "activation")?;
    let truth = values::<UInt64Type>(&batch, "truth")?;
    let best = batch
        .column_by_name("best")
        .and_then(|c| c.as_boolean_opt())
        .ok_or_else(|| Error::Column("best".into()))?;
    let text = batch
        .column_by_name("formula")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::Column("formula".into()))?;
    let (labels, names, ops) = (
        list(&batch, "labels")?,
        list(&batch, "names")?,
        list(&batch, "ops")?,
    );
    let strings_at = |l: &ListArray, i: usize| -> Result<Vec<String>> {
        let v = l.value(i);
        let s: &StringArray = v
            .as_string_opt::<i32>()
            .ok_or_else(|| Error::Column("names/ops".into()))?;
        Ok(s.iter().map(|x| x.unwrap_or_default().to_owned()).collect())
    };
    (0..batch.num_rows())
        .map(|i| {
            let formula = if labels.is_valid(i) {
                let v = labels.value(i);
                let l = v
                    .as_primitive_opt::<UInt32Type>()
                    .ok_or_else(|| Error::Column("labels".into()))?;
                Some(Formula {
                    labels: l.values().to_vec(),
                    names: strings_at(names, i)?,
                    ops: strings_at(ops, i)?,
                    text: text.value(i).to_owned(),
                })
            } else {
                None
            };
            Ok(Row {
                layer: layer[i].clone(),
                unit: unit[i],
                length: length[i],
                formula,
                iou: iou[i],
                intersect: intersect[i],
                activation: activation[i],
                truth: truth[i],
                best: best.value(i),
            })
        })
        .collect()
}

/// What formulas add in one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSummary {
    pub layer: String,
    pub units: usize,
    /// Units whose best formula's IoU beats their best single concept's by at least the
    /// gain.
    pub better: usize,
    /// Mean over units of the best single concept's IoU, and of the best formula's.
    pub mean_concept: f64,
    pub mean_formula: f64,
}

/// Per layer, in table order: how many units a formula explains better than one concept,
/// by at least `gain` in IoU.
pub fn summarise(rows: &[Row], gain: f64) -> Vec<LayerSummary> {
    let mut out: Vec<LayerSummary> = Vec::new();
    // Rows come per layer, then unit, then length.
    let mut i = 0;
    while i < rows.len() {
        let (layer, unit) = (&rows[i].layer, rows[i].unit);
        let mut j = i;
        while j < rows.len() && rows[j].layer == *layer && rows[j].unit == unit {
            j += 1;
        }
        let unit_rows = &rows[i..j];
        let concept = unit_rows
            .iter()
            .find(|r| r.length == 1)
            .map_or(0.0, |r| r.iou);
        let best = unit_rows.iter().map(|r| r.iou).fold(0.0f64, f64::max);
        if out.last().is_none_or(|s| s.layer != *layer) {
            out.push(LayerSummary {
                layer: layer.clone(),
                units: 0,
                better: 0,
                mean_concept: 0.0,
                mean_formula: 0.0,
            });
        }
        let s = out.last_mut().expect("pushed");
        s.units += 1;
        s.better += usize::from(best > concept && best - concept >= gain);
        s.mean_concept += concept;
        s.mean_formula += best;
        i = j;
    }
    for s in &mut out {
        s.mean_concept /= s.units.max(1) as f64;
        s.mean_formula /= s.units.max(1) as f64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_null_formulas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let rows = vec![
            Row {
                layer: "conv5".into(),
                unit: 3,
                length: 2,
                formula: Some(Formula {
                    labels: vec![4, 9],
                    names: vec!["water".into(), "river".into()],
                    ops: vec!["or".into()],
                    text: "water OR river".into(),
                }),
                iou: 0.25,
                intersect: 10,
                activation: 30,
                truth: 20,
                best: true,
            },
            Row {
                layer: "conv5".into(),
                unit: 4,
                length: 1,
                formula: None,
                iou: 0.0,
                intersect: 0,
                activation: 0,
                truth: 0,
                best: false,
            },
        ];
        write_rows(&path, &rows, &[("k".into(), "v".into())]).unwrap();
        assert_eq!(read_rows(&path).unwrap(), rows);
    }
}
