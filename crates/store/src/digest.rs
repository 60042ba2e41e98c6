//! Content digests of input files, remembered between runs.
//!
//! Hashing a gigabyte dataset on every run would make a no-op rerun slow, so each file's
//! blake3 hash is remembered next to the `stat` fields that tell whether it may have
//! changed (size, mtime, ctime, inode). The remembered hash is used only when all of them
//! are unchanged, and never for a file modified within the last two seconds, because a
//! change in the same clock tick would not show in its mtime (git's "racy clean" rule).
//! The digest itself depends on content and relative names only.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;

use crate::error::{Error, Result, io};
use crate::store::Store;

const MEMO_HEADER: &str = "# netdissect file digests 1";
const RACY_NANOS: i128 = 2_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    size: u64,
    mtime: i128,
    ctime: i128,
    ino: u64,
}

impl Stat {
    fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }
}

type Memo = HashMap<String, (Stat, blake3::Hash)>;

impl Store {
    /// The blake3 hash (hex) of one file's content.
    pub fn file_hash(&self, path: &Path) -> Result<String> {
        let path = path.canonicalize().map_err(io("read", path))?;
        let (base, name) = (
            path.parent().unwrap_or(Path::new("/")),
            path.file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::Invalid(format!("{}: not a file name", path.display())))?,
        );
        let hashes = self.hash_files(base, &[name.to_owned()])?;
        Ok(hashes[0].to_hex().to_string())
    }

    /// One digest (hex) of many files under `base`: a hash over each file's relative name
    /// and content hash, in the order given. Renaming, reordering, adding or changing any
    /// file changes it; moving `base` elsewhere does not.
    pub fn digest_files(&self, base: &Path, files: &[String]) -> Result<String> {
        let hashes = self.hash_files(base, files)?;
        let mut hasher = blake3::Hasher::new_derive_key("netdissect file list digest v1");
        hasher.update(&(files.len() as u64).to_le_bytes());
        for (name, hash) in files.iter().zip(&hashes) {
            hasher.update(&(name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update(hash.as_bytes());
        }
        Ok(hasher.finalize().to_hex().to_string())
    }

    fn hash_files(&self, base: &Path, files: &[String]) -> Result<Vec<blake3::Hash>> {
        let base = base.canonicalize().map_err(io("read", base))?;
        let memo_path = self.memo_path(&base);
        let memo = read_memo(&memo_path);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let results: Vec<(blake3::Hash, Option<Stat>, bool)> = files
            .par_iter()
            .map(|name| {
                let path = base.join(name);
                let meta = std::fs::metadata(&path).map_err(io("read", &path))?;
                if !meta.is_file() {
                    return Err(Error::Invalid(format!(
                        "{}: not a regular file",
                        path.display()
                    )));
                }
                let stat = Stat::of(&meta);
                let racy = now - stat.mtime < RACY_NANOS;
                if !racy
                    && let Some((seen, hash)) = memo.get(name)
                    && *seen == stat
                {
                    return Ok((*hash, Some(stat), false));
                }
                let hash = hash_file(&path, stat.size)?;
                Ok((hash, (!racy).then_some(stat), true))
            })
            .collect::<Result<_>>()?;
        if results
            .iter()
            .any(|(_, stat, fresh)| *fresh && stat.is_some())
        {
            let mut memo = memo;
            for (name, (hash, stat, _)) in files.iter().zip(&results) {
                match stat {
                    Some(stat) if !name.contains(['\t', '\n']) => {
                        memo.insert(name.clone(), (*stat, *hash));
                    }
                    _ => {
                        memo.remove(name);
                    }
                }
            }
            // The memo is an optimisation: failing to save it only costs a rehash later.
            let _ = write_memo(&memo_path, &base, &memo);
        }
        Ok(results.into_iter().map(|(hash, _, _)| hash).collect())
    }

    fn memo_path(&self, base: &Path) -> PathBuf {
        let id = blake3::hash(base.as_os_str().as_encoded_bytes()).to_hex();
        self.root()
            .join("digests")
            .join(format!("{}.tsv", &id[..32]))
    }
}

fn hash_file(path: &Path, size: u64) -> Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    if size > 16 << 20 {
        hasher.update_mmap_rayon(path).map_err(io("read", path))?;
    } else {
        let bytes = std::fs::read(path).map_err(io("read", path))?;
        hasher.update(&bytes);
    }
    Ok(hasher.finalize())
}

fn read_memo(path: &Path) -> Memo {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Memo::new();
    };
    let mut lines = text.lines();
    if lines.next().is_none_or(|h| !h.starts_with(MEMO_HEADER)) {
        return Memo::new();
    }
    lines
        .filter_map(|line| {
            let mut f = line.splitn(6, '\t');
            let hash = blake3::Hash::from_hex(f.next()?).ok()?;
            let stat = Stat {
                size: f.next()?.parse().ok()?,
                mtime: f.next()?.parse().ok()?,
                ctime: f.next()?.parse().ok()?,
                ino: f.next()?.parse().ok()?,
            };
            Some((f.next()?.to_owned(), (stat, hash)))
        })
        .collect()
}

fn write_memo(path: &Path, base: &Path, memo: &Memo) -> std::io::Result<()> {
    let dir = path.parent().expect("memo files live in a directory");
    std::fs::create_dir_all(dir)?;
    let mut names: Vec<&String> = memo.keys().collect();
    names.sort();
    let mut text = format!("{MEMO_HEADER}\t{}\n", base.display());
    for name in names {
        let (s, hash) = &memo[name];
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{name}\n",
            hash.to_hex(),
            s.size,
            s.mtime,
            s.ctime,
            s.ino
        ));
    }
    let tmp = dir.join(format!(
        ".{}.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("memo"),
        std::process::id()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    std::fs::rename(&tmp, path)
}
