//! NetDissect's per-unit result files: NetDissect-Lite's `tally.csv` and the original's
//! `<layer>-result.csv`, which share one format (METHOD §3.6).
//!
//! `unit,category,label,score`, then for every category `<cat>-label,<cat>-truth,
//! <cat>-activation,<cat>-intersect,<cat>-iou`; one row per unit, by descending score;
//! units 1-based; labels with their suffix. Files in the wild order these columns
//! differently, so reading goes by header name.

use std::path::Path;

use crate::summary::{Best, UnitLabels};
use crate::{Error, Result};

/// A unit's full record as the format holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TallyRow {
    /// 1-based.
    pub unit: u32,
    pub category: String,
    pub label: String,
    pub score: f64,
    /// Per category, in the file's (or dataset's) category order.
    pub categories: Vec<TallyCategory>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TallyCategory {
    pub category: String,
    pub label: String,
    pub truth: u64,
    pub activation: u64,
    pub intersect: u64,
    pub iou: f64,
}

impl TallyRow {
    /// The unit's labels as the file gives them: its label is the row's own `category,
    /// label, score` (none with a score of 0: the references' label 0 of a unit that
    /// overlaps nothing).
    pub fn labels(&self) -> UnitLabels {
        UnitLabels {
            unit: self.unit,
            top: (self.score > 0.0).then(|| Best {
                category: self.category.clone(),
                label: self.label.clone(),
                iou: self.score,
            }),
            categories: self
                .categories
                .iter()
                .map(|c| Best {
                    category: c.category.clone(),
                    label: c.label.clone(),
                    iou: c.iou,
                })
                .collect(),
        }
    }
}

/// Reads a tally/result file of any column order. Returns the categories in the order of
/// their columns, and the rows.
pub fn read(path: &Path) -> Result<(Vec<String>, Vec<TallyRow>)> {
    let file_error = |line: u64, message: String| Error::Tally {
        path: path.to_owned(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(path)
        .map_err(|e| file_error(0, e.to_string()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| file_error(1, e.to_string()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let column = |name: &str| -> Result<usize> {
        header.iter().position(|h| h == name).ok_or_else(|| {
            file_error(
                1,
                format!("no `{name}` column (the header is `{}`)", header.join(",")),
            )
        })
    };
    let (unit, category, label, score) = (
        column("unit")?,
        column("category")?,
        column("label")?,
        column("score")?,
    );
    let categories: Vec<String> = header
        .iter()
        .filter_map(|h| h.strip_suffix("-iou").map(str::to_owned))
        .collect();
    if categories.is_empty() {
        return Err(file_error(1, "no `<category>-iou` columns".into()));
    }
    let per_category: Vec<[usize; 5]> = categories
        .iter()
        .map(|c| {
            Ok([
                column(&format!("{c}-label"))?,
                column(&format!("{c}-truth"))?,
                column(&format!("{c}-activation"))?,
                column(&format!("{c}-intersect"))?,
                column(&format!("{c}-iou"))?,
            ])
        })
        .collect::<Result<_>>()?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| file_error(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let number = |i: usize| -> Result<f64> {
            record[i].trim().parse::<f64>().map_err(|_| {
                file_error(
                    line,
                    format!("column `{}`: `{}` is not a number", header[i], &record[i]),
                )
            })
        };
        // Counts are integers, though some files write them as floats (`3044167.0`).
        let count = |i: usize| -> Result<u64> {
            let v = number(i)?;
            if v < 0.0 || v.fract() != 0.0 {
                return Err(file_error(
                    line,
                    format!("column `{}`: `{}` is not a count", header[i], &record[i]),
                ));
            }
            Ok(v as u64)
        };
        rows.push(TallyRow {
            unit: count(unit)? as u32,
            category: record[category].to_owned(),
            label: record[label].to_owned(),
            score: number(score)?,
            categories: categories
                .iter()
                .zip(&per_category)
                .map(|(c, cols)| {
                    Ok(TallyCategory {
                        category: c.clone(),
                        label: record[cols[0]].to_owned(),
                        truth: count(cols[1])?,
                        activation: count(cols[2])?,
                        intersect: count(cols[3])?,
                        iou: number(cols[4])?,
                    })
                })
                .collect::<Result<_>>()?,
        });
    }
    Ok((categories, rows))
}

/// Writes rows in NetDissect-Lite's format: categories in the given order, rows in the
/// order given (the file's is by descending score; the report decides ties).
pub fn write(path: &Path, categories: &[String], rows: &[TallyRow]) -> Result<()> {
    let io = |e: csv::Error| Error::Tally {
        path: path.to_owned(),
        line: 0,
        message: e.to_string(),
    };
    let mut writer = csv::Writer::from_path(path).map_err(io)?;
    let mut header = vec![
        "unit".to_owned(),
        "category".into(),
        "label".into(),
        "score".into(),
    ];
    for c in categories {
        for field in ["label", "truth", "activation", "intersect", "iou"] {
            header.push(format!("{c}-{field}"));
        }
    }
    writer.write_record(&header).map_err(io)?;
    for row in rows {
        let mut record = vec![
            row.unit.to_string(),
            row.category.clone(),
            row.label.clone(),
            row.score.to_string(),
        ];
        for c in categories {
            let entry = row.categories.iter().find(|e| &e.category == c);
            match entry {
                Some(e) => record.extend([
                    e.label.clone(),
                    e.truth.to_string(),
                    e.activation.to_string(),
                    e.intersect.to_string(),
                    e.iou.to_string(),
                ]),
                None => record.extend(std::iter::repeat_n(String::new(), 5)),
            }
        }
        writer.write_record(&record).map_err(io)?;
    }
    writer.flush().map_err(|e| Error::Tally {
        path: path.to_owned(),
        line: 0,
        message: e.to_string(),
    })?;
    Ok(())
}
