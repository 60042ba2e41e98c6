use std::path::PathBuf;

/// Everything that can stop loading or running a model, with the file, row or setting to
/// look at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dataset(#[from] nd_broden::Error),
    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// `forward` itself failed on an input batch: often a model that expects images of
    /// another size, which binaries answer by naming their resize setting.
    #[error("model {}: forward failed on a batch of {}: {message}", path.display(), shape(input))]
    Forward {
        path: PathBuf,
        /// The input batch's shape, `[N, 3, H, W]`.
        input: Vec<i64>,
        message: String,
    },
    #[error("{0}")]
    Config(String),
    /// A label file (a segmenter's) is malformed at a line.
    #[error("{}: line {line}: {message}", path.display())]
    Labels {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// CUDA was asked for and is not usable. The message does not say who asked (a flag
    /// or a pipeline's key): the binaries put that in front.
    #[error("{0}")]
    Device(String),
    #[error("index.csv line {line}: {}: {message}", path.display())]
    Image {
        line: u64,
        path: PathBuf,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A shape as the messages write it: `1 × 3 × 224 × 224`.
pub fn shape(dims: &[i64]) -> String {
    let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
    dims.join(" × ")
}
