//! A small CSV layer that keeps line numbers, so every complaint can name its line.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Error, Result};

/// A CSV file read into memory with its header, every record checked for its field count.
pub(crate) struct Table {
    pub file: PathBuf,
    pub header: Vec<String>,
    pub records: Vec<Record>,
}

/// The records of a table being read, each checked for its field count; blank lines are
/// skipped, and the first error ends the iteration.
pub(crate) struct Records {
    file: PathBuf,
    fields: usize,
    reader: csv::Reader<std::fs::File>,
    failed: bool,
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.failed {
            return None;
        }
        let mut fields = csv::StringRecord::new();
        loop {
            let read = self.reader.read_record(&mut fields);
            let line = fields.position().map_or(0, |p| p.line());
            let failure = match read {
                Ok(false) => return None,
                // A blank line at the end of a file is not a record.
                Ok(true) if fields.len() == 1 && fields[0].is_empty() => continue,
                Ok(true) if fields.len() == self.fields => {
                    return Some(Ok(Record { line, fields }));
                }
                Ok(true) => Error::Table {
                    file: self.file.clone(),
                    line,
                    message: format!(
                        "expected {} fields as in the header, found {} (is the file truncated or a value unquoted?)",
                        self.fields,
                        fields.len()
                    ),
                },
                Err(e) => csv_error(&self.file, e, |e| Error::Table {
                    file: self.file.clone(),
                    line: e.position().map_or(0, |p| p.line()),
                    message: format!("malformed CSV: {e}"),
                }),
            };
            self.failed = true;
            return Some(Err(failure));
        }
    }
}

/// A failure to read the file itself is an I/O error on it; anything else is the table's
/// fault, described by `otherwise`.
fn csv_error(file: &Path, e: csv::Error, otherwise: impl FnOnce(&csv::Error) -> Error) -> Error {
    let table_error = otherwise(&e);
    match e.into_kind() {
        csv::ErrorKind::Io(source) => Error::Io {
            path: file.to_owned(),
            source,
        },
        _ => table_error,
    }
}

pub(crate) struct Record {
    pub line: u64,
    pub fields: csv::StringRecord,
}

impl Table {
    /// Reads a whole (small) table into memory.
    pub fn read(path: &Path) -> Result<Table> {
        let (mut table, records) = Table::stream(path)?;
        table.records = records.collect::<Result<_>>()?;
        Ok(table)
    }

    /// Reads the header of a table and returns its records one at a time, so a table
    /// of any length (the real `index.csv` has 63k rows) never sits in memory whole.
    /// The returned table has no records of its own.
    pub fn stream(path: &Path) -> Result<(Table, Records)> {
        let file = path.to_owned();
        let opened = std::fs::File::open(path).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .buffer_capacity(1 << 16)
            .from_reader(opened);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| {
                csv_error(&file, e, |e| Error::File {
                    file: file.clone(),
                    message: format!("unreadable header: {e}"),
                })
            })?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        if header.iter().all(|h| h.is_empty()) {
            return Err(Error::File {
                file,
                message: "the file is empty (no header line)".into(),
            });
        }
        let records = Records {
            file: file.clone(),
            fields: header.len(),
            reader,
            failed: false,
        };
        Ok((
            Table {
                file,
                header,
                records: Vec::new(),
            },
            records,
        ))
    }

    /// The position of a required column.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::File {
                file: self.file.clone(),
                message: format!(
                    "missing column `{name}` (the header is `{}`)",
                    self.header.join(",")
                ),
            })
    }

    /// Parses one field, naming the line and column when it does not parse.
    pub fn parse_field<T: FromStr>(&self, record: &Record, column: usize, what: &str) -> Result<T> {
        let text = record.fields[column].trim();
        text.parse().map_err(|_| Error::Table {
            file: self.file.clone(),
            line: record.line,
            message: format!("column `{}`: `{text}` is not {what}", self.header[column]),
        })
    }

    pub fn error(&self, record: &Record, message: impl Into<String>) -> Error {
        Error::Table {
            file: self.file.clone(),
            line: record.line,
            message: message.into(),
        }
    }
}
