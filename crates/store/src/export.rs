//! Copies of artifacts outside the cache (`[output] dir`), and the file-tree copy that a
//! stage uses to share another artifact's files.

use std::path::Path;

use crate::error::{Result, io};
use crate::store::Artifact;

/// How files reach their destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Independent copies: safe to edit in place (tables opened in a notebook).
    Copy,
    /// Hard links where the file system allows, copies elsewhere: instant and free of space,
    /// for files nobody edits (pages and images).
    Link,
}

/// Puts the files of `from` whose names `keep` accepts under `to`, recursively, creating
/// directories as needed.
pub fn copy_tree(
    from: &Path,
    to: &Path,
    transfer: Transfer,
    keep: &dyn Fn(&str) -> bool,
) -> Result<()> {
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    for entry in std::fs::read_dir(from).map_err(io("read", from))? {
        let entry = entry.map_err(io("read", from))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(io("read", &source))?.is_dir() {
            copy_tree(&source, &target, transfer, keep)?;
        } else if keep(&entry.file_name().to_string_lossy())
            && (transfer == Transfer::Copy || std::fs::hard_link(&source, &target).is_err())
        {
            std::fs::copy(&source, &target).map_err(io("copy to", &target))?;
        }
    }
    Ok(())
}

impl Artifact {
    /// Puts the artifact's files (its manifest included, which says what the copy is) at
    /// `to`, replacing what was there. The copy is made beside `to` and renamed into place,
    /// so a failure leaves the previous copy whole.
    pub fn export(&self, to: &Path, transfer: Transfer) -> Result<()> {
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => std::path::PathBuf::from("."),
        };
        let name = to
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact");
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let copied = copy_tree(&self.dir, &tmp, transfer, &|_| true);
        if let Err(e) = copied {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        if to.exists() {
            std::fs::remove_dir_all(to).map_err(io("replace", to))?;
        }
        std::fs::rename(&tmp, to).map_err(io("rename into", to))
    }
}
