use std::path::PathBuf;

/// Everything that can be wrong with a Broden-format dataset.
///
/// Each variant names the file (and, where there is one, the line of that file) the user
/// must look at. Line numbers count the header as line 1, as an editor shows them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file of a dataset being written could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An image or a label map could not be encoded.
    #[error("cannot encode {}: {message}", path.display())]
    Encode { path: PathBuf, message: String },
    /// A CSV file is malformed at a given line.
    #[error("{}: line {line}: {message}", file.display())]
    Table {
        file: PathBuf,
        line: u64,
        message: String,
    },
    /// A CSV file is malformed as a whole (missing column, empty file).
    #[error("{}: {message}", file.display())]
    File { file: PathBuf, message: String },
    /// An image or a label map referenced by `index.csv` is missing or wrong.
    #[error("index.csv line {line}: {}: {message}", path.display())]
    Referenced {
        line: u64,
        path: PathBuf,
        message: String,
    },
    /// The caller asked for something the dataset does not have.
    #[error("{0}")]
    Request(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
