//! What an image shard keeps for `nd-explain merge`, beside its tables: the explanation of
//! some of the dataset's rows is a shard, and its artifact also holds
//!
//! - `merge_images.parquet`: per image, its predicted class and score, every unit's
//!   contribution to it and the ablations' outcomes (what the class tables and the
//!   faithfulness check sum over images);
//! - `merge_explained.parquet`: per image and explained class, its score, probability, top
//!   units and the sum of all units' contributions (the shares' denominator).
//!
//! The merge sums them in row order, as one run over all the rows does, so that the merged
//! tables are the same bits ([`crate::merge`]). Its class activation maps are read back from
//! the shard's `cams.parquet`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, BooleanArray, Float32Array, Float64Array, ListArray, UInt32Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, UInt32Type};
use arrow::record_batch::RecordBatch;

use crate::compute::{Explained, ImageRecord};
use crate::tables::LazyWriter;
use crate::{Error, Result};

pub const MERGE_IMAGES: &str = "merge_images.parquet";
pub const MERGE_EXPLAINED: &str = "merge_explained.parquet";

/// A list column: row `i` holds `lengths[i]` of `values`.
fn list(item: DataType, lengths: impl IntoIterator<Item = usize>, values: ArrayRef) -> ArrayRef {
    Arc::new(ListArray::new(
        Arc::new(Field::new("item", item, false)),
        OffsetBuffer::from_lengths(lengths),
        values,
        None,
    ))
}

fn u32s(values: impl IntoIterator<Item = u32>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(values))
}

fn f32s(values: impl IntoIterator<Item = f32>) -> ArrayRef {
    Arc::new(Float32Array::from_iter_values(values))
}

/// `merge_images.parquet`, written a batch of images at a time.
pub(crate) struct PartSink(LazyWriter);

impl PartSink {
    pub fn new(dir: &Path, metadata: &[(String, String)]) -> PartSink {
        PartSink(LazyWriter::new(dir.join(MERGE_IMAGES), metadata))
    }

    /// Appends a batch's images.
    pub fn push(&mut self, records: &[ImageRecord]) -> Result<()> {
        let batch = RecordBatch::try_from_iter([
            ("row", u32s(records.iter().map(|r| r.row as u32))),
            ("class", u32s(records.iter().map(|r| r.class as u32))),
            ("score", f32s(records.iter().map(|r| r.score))),
            (
                "head_deviation",
                f32s(records.iter().map(|r| r.head_deviation)),
            ),
            (
                "contributions",
                list(
                    DataType::Float32,
                    records.iter().map(|r| r.contributions.len()),
                    f32s(records.iter().flat_map(|r| r.contributions.iter().copied())),
                ),
            ),
            (
                "drops",
                list(
                    DataType::Float64,
                    records.iter().map(|r| r.outcomes.len()),
                    Arc::new(Float64Array::from_iter_values(
                        records.iter().flat_map(|r| r.outcomes.iter().map(|o| o.0)),
                    )),
                ),
            ),
            (
                "flips",
                list(
                    DataType::Boolean,
                    records.iter().map(|r| r.outcomes.len()),
                    Arc::new(BooleanArray::from_iter(
                        records
                            .iter()
                            .flat_map(|r| r.outcomes.iter().map(|o| Some(o.1))),
                    )),
                ),
            ),
        ])?;
        self.0.write(&batch)
    }

    pub fn finish(self) -> Result<()> {
        self.0.finish("no image was explained")
    }
}

/// Writes `merge_explained.parquet`.
pub(crate) fn write_explained(
    dir: &Path,
    explained: &[Explained],
    metadata: &[(String, String)],
) -> Result<()> {
    let batch = RecordBatch::try_from_iter([
        ("row", u32s(explained.iter().map(|e| e.row as u32))),
        (
            "class_rank",
            u32s(explained.iter().map(|e| e.class_rank as u32)),
        ),
        ("class", u32s(explained.iter().map(|e| e.class as u32))),
        ("score", f32s(explained.iter().map(|e| e.score))),
        ("probability", f32s(explained.iter().map(|e| e.probability))),
        (
            "total",
            Arc::new(Float64Array::from_iter_values(
                explained.iter().map(|e| e.total),
            )) as ArrayRef,
        ),
        (
            "units",
            list(
                DataType::UInt32,
                explained.iter().map(|e| e.top.len()),
                u32s(
                    explained
                        .iter()
                        .flat_map(|e| e.top.iter().map(|t| t.0 as u32)),
                ),
            ),
        ),
        (
            "contributions",
            list(
                DataType::Float32,
                explained.iter().map(|e| e.top.len()),
                f32s(explained.iter().flat_map(|e| e.top.iter().map(|t| t.1))),
            ),
        ),
    ])?;
    Ok(nd_tables::write(
        &dir.join(MERGE_EXPLAINED),
        &batch,
        metadata,
    )?)
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Per row of a list column, the range of its values.
type Rows = Vec<std::ops::Range<usize>>;

/// A list column's rows: per row, the range of its values in `values`.
fn list_rows<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<(Rows, &'a ArrayRef)> {
    let list = batch
        .column_by_name(name)
        .and_then(|c| c.as_list_opt::<i32>())
        .ok_or_else(|| bad(path, format!("no list column `{name}`")))?;
    let offsets = list.value_offsets();
    let rows = offsets
        .windows(2)
        .map(|w| w[0] as usize..w[1] as usize)
        .collect();
    Ok((rows, list.values()))
}

fn primitive_list<'a, T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<(Rows, &'a [T::Native])> {
    let (rows, values) = list_rows(batch, name, path)?;
    let values = values
        .as_primitive_opt::<T>()
        .ok_or_else(|| bad(path, format!("column `{name}` holds lists of another type")))?;
    Ok((rows, values.values()))
}

/// Reads an image shard's `merge_images.parquet`.
pub(crate) fn read_images(dir: &Path) -> Result<Vec<ImageRecord>> {
    let path = dir.join(MERGE_IMAGES);
    let batch = nd_tables::read(&path)?;
    let rows = nd_tables::primitives::<UInt32Type>(&batch, "row")?;
    let classes = nd_tables::primitives::<UInt32Type>(&batch, "class")?;
    let scores = nd_tables::primitives::<Float32Type>(&batch, "score")?;
    let deviations = nd_tables::primitives::<Float32Type>(&batch, "head_deviation")?;
    let (c_rows, contributions) = primitive_list::<Float32Type>(&batch, "contributions", &path)?;
    let (d_rows, drops) = primitive_list::<Float64Type>(&batch, "drops", &path)?;
    let (f_rows, flips) = list_rows(&batch, "flips", &path)?;
    let flips = flips
        .as_boolean_opt()
        .ok_or_else(|| bad(&path, "column `flips` holds lists of another type"))?;
    (0..batch.num_rows())
        .map(|i| {
            if d_rows[i] != f_rows[i] {
                return Err(bad(&path, format!("row {i}: as many drops as flips")));
            }
            Ok(ImageRecord {
                row: rows[i] as usize,
                class: classes[i] as usize,
                score: scores[i],
                contributions: contributions[c_rows[i].clone()].to_vec(),
                head_deviation: deviations[i],
                outcomes: d_rows[i]
                    .clone()
                    .map(|k| (drops[k], flips.value(k)))
                    .collect(),
            })
        })
        .collect()
}

/// Reads an image shard's `merge_explained.parquet`.
pub(crate) fn read_explained(dir: &Path) -> Result<Vec<Explained>> {
    let path = dir.join(MERGE_EXPLAINED);
    let batch = nd_tables::read(&path)?;
    let rows = nd_tables::primitives::<UInt32Type>(&batch, "row")?;
    let ranks = nd_tables::primitives::<UInt32Type>(&batch, "class_rank")?;
    let classes = nd_tables::primitives::<UInt32Type>(&batch, "class")?;
    let scores = nd_tables::primitives::<Float32Type>(&batch, "score")?;
    let probabilities = nd_tables::primitives::<Float32Type>(&batch, "probability")?;
    let totals = nd_tables::primitives::<Float64Type>(&batch, "total")?;
    let (u_rows, units) = primitive_list::<UInt32Type>(&batch, "units", &path)?;
    let (c_rows, contributions) = primitive_list::<Float32Type>(&batch, "contributions", &path)?;
    (0..batch.num_rows())
        .map(|i| {
            if u_rows[i] != c_rows[i] {
                return Err(bad(
                    &path,
                    format!("row {i}: as many units as contributions"),
                ));
            }
            Ok(Explained {
                row: rows[i] as usize,
                class_rank: ranks[i] as usize,
                class: classes[i] as usize,
                score: scores[i],
                probability: probabilities[i],
                total: totals[i],
                top: u_rows[i]
                    .clone()
                    .map(|k| (units[k] as usize, contributions[k]))
                    .collect(),
            })
        })
        .collect()
}

/// An image shard's class activation maps, as `cams.parquet` holds them: per map its image,
/// class rank (from 0) and class, and all the maps' values, `height × width` each.
pub(crate) struct CamRows {
    pub images: Vec<String>,
    pub class_ranks: Vec<usize>,
    pub classes: Vec<usize>,
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

/// Reads an image shard's `cams.parquet`.
pub(crate) fn read_cams(dir: &Path) -> Result<CamRows> {
    let path = dir.join(crate::tables::CAMS);
    let batch = nd_tables::read(&path)?;
    let images = nd_tables::strings(&batch, "image")?;
    let class_ranks = nd_tables::primitives::<UInt32Type>(&batch, "class_rank")?;
    let classes = nd_tables::primitives::<UInt32Type>(&batch, "class")?;
    let heights = nd_tables::primitives::<UInt32Type>(&batch, "height")?;
    let widths = nd_tables::primitives::<UInt32Type>(&batch, "width")?;
    let cam = batch
        .column_by_name("cam")
        .and_then(|c| c.as_fixed_size_list_opt())
        .ok_or_else(|| bad(&path, "no column `cam` of fixed-size lists"))?;
    let values = cam
        .values()
        .as_primitive_opt::<Float32Type>()
        .ok_or_else(|| bad(&path, "column `cam` holds lists of another type"))?;
    let (height, width) = match (heights.first(), widths.first()) {
        (Some(&h), Some(&w)) => (h as usize, w as usize),
        _ => return Err(bad(&path, "no class activation map")),
    };
    if heights.iter().any(|&h| h as usize != height)
        || widths.iter().any(|&w| w as usize != width)
        || cam.value_length() as usize != height * width
    {
        return Err(bad(&path, "the maps are not all of one size"));
    }
    Ok(CamRows {
        images,
        class_ranks: class_ranks
            .iter()
            .map(|&r| (r as usize).saturating_sub(1))
            .collect(),
        classes: classes.iter().map(|&c| c as usize).collect(),
        height,
        width,
        values: values.values().to_vec(),
    })
}
