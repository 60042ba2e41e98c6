use std::path::PathBuf;

use crate::integrity::{Described, repair_hint};

/// What can go wrong with the cache directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cache: cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache: {}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// An artifact whose files are not what was written: never read from.
    #[error(
        "cache: {artifact} is damaged: {}; {}",
        shown(problems),
        repair_hint(artifact)
    )]
    Damaged {
        artifact: Described,
        problems: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The first few problems, and how many more there are.
fn shown(problems: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = problems
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > SHOWN {
        text.push_str(&format!(" (and {} more)", problems.len() - SHOWN));
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
