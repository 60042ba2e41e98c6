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
    /// Loading or running the model, decoding an image, the device.
    #[error(transparent)]
    Torch(#[from] nd_torch::Error),
    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    #[error("layer `{layer}`: {message}")]
    Layer { layer: String, message: String },
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use nd_torch::shape;
