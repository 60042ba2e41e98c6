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

pub(crate) struct Record {
    pub line: u64,
    pub fields: csv::StringRecord,
}

impl Table {
    pub fn read(path: &Path) -> Result<Table> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Table::parse(path, &bytes)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Table> {
        let file = path.to_owned();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(bytes);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| Error::File {
                file: file.clone(),
                message: format!("unreadable header: {e}"),
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
        let mut records = Vec::new();
        for result in reader.records() {
            let fields = result.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                Error::Table {
                    file: file.clone(),
                    line,
                    message: format!("malformed CSV: {e}"),
                }
            })?;
            let line = fields.position().map_or(0, |p| p.line());
            // A blank line at the end of a file is not a record.
            if fields.len() == 1 && fields[0].is_empty() {
                continue;
            }
            if fields.len() != header.len() {
                return Err(Error::Table {
                    file,
                    line,
                    message: format!(
                        "expected {} fields as in the header, found {} (is the file truncated or a value unquoted?)",
                        header.len(),
                        fields.len()
                    ),
                });
            }
            records.push(Record { line, fields });
        }
        Ok(Table {
            file,
            header,
            records,
        })
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
