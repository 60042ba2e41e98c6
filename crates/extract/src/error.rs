use std::path::PathBuf;

/// Everything that can stop an extraction, with the file, row or layer to look at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dataset(#[from] nd_broden::Error),
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Arrays(#[from] nd_arrays::Error),
    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    #[error("layer `{layer}`: {message}")]
    Layer { layer: String, message: String },
    #[error("{0}")]
    Config(String),
    #[error("device: {0}")]
    Device(String),
    #[error("index.csv line {line}: {}: {message}", path.display())]
    Image {
        line: u64,
        path: PathBuf,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
