//! Copies of artifacts outside the cache (`[output] dir`), and the file-tree copy that a
//! stage uses to share another artifact's files.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

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

static EXPORTS: AtomicU64 = AtomicU64::new(0);

impl Artifact {
    /// Puts the artifact's files (its manifest included, which says what the copy is) at
    /// `to`, replacing what was there. The copy is made beside `to` and renamed into place,
    /// so a failure leaves the previous copy whole, and two processes exporting to the same
    /// place at once each leave a whole copy (the last one renamed in stays).
    pub fn export(&self, to: &Path, transfer: Transfer) -> Result<()> {
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => std::path::PathBuf::from("."),
        };
        let name = to
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("artifact");
        let unique = |what: &str| {
            let n = EXPORTS.fetch_add(1, Ordering::Relaxed);
            parent.join(format!(".{name}.{what}-{}-{n}", std::process::id()))
        };
        let tmp = unique("tmp");
        let copied = copy_tree(&self.dir, &tmp, transfer, &|_| true);
        if let Err(e) = copied {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // Move the old copy aside (one rename), then rename the new one in. Another process
        // may rename its copy in between; then ours goes in after moving that one aside.
        let mut attempts = 0;
        loop {
            let old = unique("old");
            match std::fs::rename(to, &old) {
                Ok(()) => {
                    let _ = std::fs::remove_dir_all(&old);
                    let _ = std::fs::remove_file(&old);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(io("replace", to)(e));
                }
            }
            match std::fs::rename(&tmp, to) {
                Ok(()) => return Ok(()),
                Err(_) if to.exists() && attempts < 100 => attempts += 1,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    return Err(io("rename into", to)(e));
                }
            }
        }
    }
}
