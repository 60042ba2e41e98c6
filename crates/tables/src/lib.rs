//! Parquet I/O shared by the stages, so every table is written the same way: zstd
//! compression, dictionary-encoded string columns, the stage's parameters and artifact key
//! in the file's key-value metadata, and nothing that varies between runs (the writer's
//! `created_by` is fixed), so equal tables are equal bytes.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, UInt32Array};
//! use arrow::record_batch::RecordBatch;
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("t.parquet");
//! let batch = RecordBatch::try_from_iter([
//!     ("layer", nd_tables::dictionary(["conv5", "conv5"])),
//!     ("unit", Arc::new(UInt32Array::from(vec![0, 1])) as ArrayRef),
//! ])?;
//! nd_tables::write(&path, &batch, &[("top".into(), "0.005".into())])?;
//! let table = nd_tables::read(&path)?;
//! assert_eq!(table.num_rows(), 2);
//! assert_eq!(nd_tables::strings(&table, "layer")?, ["conv5", "conv5"]);
//! assert_eq!(nd_tables::metadata(&path)?["top"], "0.005");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod formulas;
pub mod scores;
pub mod thresholds;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, StringArray};
use arrow::datatypes::{ArrowPrimitiveType, DataType, Int32Type};
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("table has no column `{0}` of the expected type")]
    Column(String),
    #[error("table: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn file_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A dictionary-encoded string column (what pandas reads as a categorical).
pub fn dictionary<'a>(values: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    let array: DictionaryArray<Int32Type> = values.into_iter().collect();
    Arc::new(array)
}

/// Writes one batch as a Parquet file with the given key-value metadata, which goes into
/// the Arrow schema (where pyarrow and polars show it) and so into the file's footer too.
pub fn write(path: &Path, batch: &RecordBatch, metadata: &[(String, String)]) -> Result<()> {
    let mut writer = Writer::create(path, batch.schema().as_ref(), metadata)?;
    writer.write(batch)?;
    writer.finish()
}

/// A Parquet file written batch by batch (the same file as [`write`] of the batches put
/// together): a table of any length is written in bounded memory.
pub struct Writer {
    path: PathBuf,
    schema: Arc<arrow::datatypes::Schema>,
    inner: ArrowWriter<std::fs::File>,
}

impl Writer {
    /// Creates the file for batches of `schema`, with the given key-value metadata.
    pub fn create(
        path: &Path,
        schema: &arrow::datatypes::Schema,
        metadata: &[(String, String)],
    ) -> Result<Writer> {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(3).expect("valid level"),
            ))
            .set_created_by("netdissect".to_owned())
            .build();
        let schema = Arc::new(
            schema.clone().with_metadata(
                metadata
                    .iter()
                    .cloned()
                    .collect::<std::collections::HashMap<_, _>>(),
            ),
        );
        let file = std::fs::File::create(path).map_err(|e| file_error(path, e))?;
        let inner = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .map_err(|e| file_error(path, e))?;
        Ok(Writer {
            path: path.to_owned(),
            schema,
            inner,
        })
    }

    /// Appends the rows of a batch of the writer's schema.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = batch.clone().with_schema(self.schema.clone())?;
        self.inner
            .write(&batch)
            .map_err(|e| file_error(&self.path, e))
    }

    /// Writes the footer and closes the file.
    pub fn finish(self) -> Result<()> {
        self.inner.close().map_err(|e| file_error(&self.path, e))?;
        Ok(())
    }
}

/// Reads a whole Parquet file into one batch.
pub fn read(path: &Path) -> Result<RecordBatch> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| file_error(path, e))?
        .build()
        .map_err(|e| file_error(path, e))?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| file_error(path, e))?;
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| file_error(path, e))
}

/// The key-value metadata of a table written by [`write`] (its Arrow schema's metadata).
pub fn metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| file_error(path, e))?;
    Ok(builder
        .schema()
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Column(name.to_owned()))
}

/// A primitive column's values.
pub fn values<T: ArrowPrimitiveType>(batch: &RecordBatch, name: &str) -> Result<Vec<T::Native>> {
    Ok(primitives::<T>(batch, name)?.to_vec())
}

/// A string column of a batch, plain or dictionary-encoded, read in place (a null reads as
/// the empty string, as in [`strings`]).
pub enum StrColumn<'a> {
    Plain(&'a StringArray),
    Dictionary {
        keys: &'a arrow::array::Int32Array,
        values: &'a StringArray,
    },
}

impl<'a> StrColumn<'a> {
    pub fn of(batch: &'a RecordBatch, name: &str) -> Result<StrColumn<'a>> {
        let array = column(batch, name)?;
        let wrong = || Error::Column(name.to_owned());
        Ok(match array.data_type() {
            DataType::Utf8 => StrColumn::Plain(array.as_string::<i32>()),
            DataType::Dictionary(key, _) if **key == DataType::Int32 => {
                let dictionary = array.as_dictionary::<Int32Type>();
                StrColumn::Dictionary {
                    keys: dictionary.keys(),
                    values: dictionary
                        .values()
                        .as_string_opt::<i32>()
                        .ok_or_else(wrong)?,
                }
            }
            _ => return Err(wrong()),
        })
    }

    /// The value of row `i`.
    pub fn get(&self, i: usize) -> &'a str {
        match self {
            StrColumn::Plain(array) if array.is_valid(i) => array.value(i),
            StrColumn::Dictionary { keys, values } if keys.is_valid(i) => {
                let key = keys.value(i) as usize;
                if values.is_valid(key) {
                    values.value(key)
                } else {
                    ""
                }
            }
            _ => "",
        }
    }
}

/// A primitive column's values in place; a column with nulls is refused.
pub fn primitives<'a, T: ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a [T::Native]> {
    let array = column(batch, name)?
        .as_primitive_opt::<T>()
        .ok_or_else(|| Error::Column(name.to_owned()))?;
    if array.null_count() > 0 {
        return Err(Error::Column(format!("{name} (it has nulls)")));
    }
    Ok(array.values())
}

/// Calls `f` with each batch of a Parquet file in turn: a table of any length is read in
/// bounded memory.
pub fn for_each_batch<E: From<Error>>(
    path: &Path,
    mut f: impl FnMut(&RecordBatch) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let file = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| file_error(path, e))?
        .with_batch_size(1 << 16)
        .build()
        .map_err(|e| file_error(path, e))?;
    for batch in reader {
        f(&batch.map_err(|e| file_error(path, e))?)?;
    }
    Ok(())
}

/// A string column's values, whether plain or dictionary-encoded.
pub fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>> {
    let array = column(batch, name)?;
    let plain;
    let array: &StringArray = match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>(),
        DataType::Dictionary(_, _) => {
            plain = arrow::compute::cast(array, &DataType::Utf8)?;
            plain.as_string::<i32>()
        }
        _ => return Err(Error::Column(name.to_owned())),
    };
    Ok(array
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect())
}
