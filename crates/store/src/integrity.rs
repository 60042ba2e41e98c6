//! What an artifact holds, checked: the size and blake3 digest of every file, recorded in
//! its manifest when it is committed, and compared whenever the artifact is read.
//!
//! A content-addressed cache is trusted for reruns, so it must know when a file is no longer
//! what was written: a flipped bit on disk, a truncated copy, a file deleted or dropped in by
//! hand. Two levels of checking:
//!
//! - [`Level::Open`], whenever the store hands an artifact out ([`crate::Store::get`],
//!   [`crate::Artifact::open`], [`crate::locate`]): every file listed is present with its
//!   size, no file is present that is not listed, and every file is rehashed except Zarr
//!   chunks. Chunks are the bulk of the bytes (activations, masks) and carry a crc32c
//!   checksum of their own that the reader checks as it decodes each one (`nd-arrays`), so
//!   hashing them again on every read would only double the cost.
//! - [`Level::Full`], for `netdissect verify`: every file rehashed, and every Zarr chunk's own
//!   checksum checked by a function the caller supplies (the store knows files, not Zarr).
//!
//! A damaged artifact is reported with the command that repairs the cache: `netdissect
//! verify --repair` moves it aside, and the next run recomputes it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::store::{Artifact, Key, MANIFEST_FILE};

/// The size and content hash of one file of an artifact, as its manifest records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub size: u64,
    /// blake3, 64 lowercase hex digits.
    pub blake3: String,
}

/// How thoroughly an artifact is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Presence, sizes and stray files everywhere; digests of every file but Zarr chunks,
    /// which their reader checks chunk by chunk.
    Open,
    /// Every file's digest too, and every Zarr chunk's own checksum.
    Full,
}

/// One thing wrong with an artifact's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A file the manifest lists is gone.
    Missing { file: String },
    /// A file is not the size the manifest records (truncated, or grown).
    Size {
        file: String,
        expected: u64,
        found: u64,
    },
    /// A file's content is not what was written.
    Digest { file: String },
    /// A Zarr chunk fails its own checksum (the message says which chunk of which array).
    Chunk { file: String, message: String },
    /// A file the manifest does not list.
    Stray { file: String },
    /// A file could not be read at all.
    Unreadable { file: String, message: String },
}

impl Problem {
    /// The file (relative to the artifact's directory) the problem is in.
    pub fn file(&self) -> &str {
        match self {
            Problem::Missing { file }
            | Problem::Size { file, .. }
            | Problem::Digest { file }
            | Problem::Chunk { file, .. }
            | Problem::Stray { file }
            | Problem::Unreadable { file, .. } => file,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing { file } => write!(f, "{file} is missing"),
            Problem::Size {
                file,
                expected,
                found,
            } => write!(f, "{file} has {found} bytes, {expected} were written"),
            Problem::Digest { file } => {
                write!(f, "{file} does not match its blake3 digest")
            }
            Problem::Chunk { file, message } => write!(f, "{file}: {message}"),
            Problem::Stray { file } => {
                write!(f, "{file} is not one of the artifact's files")
            }
            Problem::Unreadable { file, message } => write!(f, "{file} cannot be read ({message})"),
        }
    }
}

/// Checks one Zarr chunk file: given its path relative to the artifact and its bytes, says
/// what is wrong with it, if anything.
pub type ChunkCheck<'a> = dyn Fn(&str, &[u8]) -> Option<String> + Sync + 'a;

/// Whether a file of an artifact is a Zarr chunk: inside a `*.zarr` directory, and not a
/// `zarr.json` metadata document. Chunks carry a crc32c checksum of their own.
pub fn is_zarr_chunk(file: &str) -> bool {
    match file.rsplit_once('/') {
        Some((dirs, name)) => name != "zarr.json" && dirs.split('/').any(|d| d.ends_with(".zarr")),
        None => false,
    }
}

/// Every file under `dir` but the manifest, by path relative to `dir` (`/`-separated).
pub(crate) fn list_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut dirs = vec![(String::new(), dir.to_owned())];
    while let Some((prefix, path)) = dirs.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if entry.file_type()?.is_dir() {
                dirs.push((relative, entry.path()));
            } else if relative != MANIFEST_FILE {
                files.push((relative, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Hashes a whole file, returning its size and digest.
fn hash_file(path: &Path) -> std::io::Result<(u64, blake3::Hash)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((size, hasher.finalize()))
}

/// The digests of every file of an artifact being committed, each file also made durable
/// (its data synced) in the same pass, in parallel: the files were just written and are
/// still in the page cache, so this reads memory, not disk.
pub(crate) fn digest_and_sync(dir: &Path) -> std::io::Result<BTreeMap<String, FileDigest>> {
    let files = list_files(dir)?;
    files
        .par_iter()
        .map(|(relative, path)| {
            let (size, hash) = hash_file(path)?;
            std::fs::File::open(path)?.sync_all()?;
            Ok((
                relative.clone(),
                FileDigest {
                    size,
                    blake3: hash.to_hex().to_string(),
                },
            ))
        })
        .collect()
}

/// Bytes read by a full check of the artifact (every file listed), for progress bars.
pub fn listed_bytes(artifact: &Artifact) -> u64 {
    artifact.manifest.files.values().map(|f| f.size).sum()
}

impl Artifact {
    /// Checks the artifact's files against its manifest at `level` and returns everything
    /// wrong with them (empty when the artifact is whole). `chunk` checks Zarr chunks' own
    /// checksums at [`Level::Full`]; `progress` is told the bytes of each file read.
    pub fn problems(
        &self,
        level: Level,
        chunk: Option<&ChunkCheck<'_>>,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Vec<Problem> {
        let present = match list_files(&self.dir) {
            Ok(files) => files,
            Err(e) => {
                return vec![Problem::Unreadable {
                    file: ".".to_owned(),
                    message: e.to_string(),
                }];
            }
        };
        let listed = &self.manifest.files;
        let mut problems: Vec<Problem> = present
            .iter()
            .filter(|(relative, _)| !listed.contains_key(relative))
            .map(|(relative, _)| Problem::Stray {
                file: relative.clone(),
            })
            .collect();
        let checked: Vec<Problem> = listed
            .par_iter()
            .filter_map(|(relative, want)| {
                let path = self.dir.join(relative);
                let problem = check_file(relative, &path, want, level, chunk);
                progress(want.size);
                problem
            })
            .collect();
        problems.extend(checked);
        problems.sort_by(|a, b| a.file().cmp(b.file()));
        problems
    }

    /// Fails with [`crate::Error::Damaged`] unless the artifact passes the check made
    /// whenever an artifact is read ([`Level::Open`]).
    pub fn check(&self) -> crate::Result<()> {
        let problems = self.problems(Level::Open, None, &|_| {});
        if problems.is_empty() {
            Ok(())
        } else {
            Err(crate::Error::Damaged {
                artifact: describe(&self.manifest.stage, self.manifest.key, &self.dir),
                problems: problems.iter().map(ToString::to_string).collect(),
            })
        }
    }
}

fn check_file(
    relative: &str,
    path: &Path,
    want: &FileDigest,
    level: Level,
    chunk: Option<&ChunkCheck<'_>>,
) -> Option<Problem> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Some(Problem::Missing {
                file: relative.to_owned(),
            });
        }
        Err(e) => {
            return Some(Problem::Unreadable {
                file: relative.to_owned(),
                message: e.to_string(),
            });
        }
    };
    if !meta.is_file() {
        return Some(Problem::Unreadable {
            file: relative.to_owned(),
            message: "not a file".to_owned(),
        });
    }
    if meta.len() != want.size {
        return Some(Problem::Size {
            file: relative.to_owned(),
            expected: want.size,
            found: meta.len(),
        });
    }
    let chunk_file = is_zarr_chunk(relative);
    if level == Level::Open && chunk_file {
        return None;
    }
    let unreadable = |e: std::io::Error| Problem::Unreadable {
        file: relative.to_owned(),
        message: e.to_string(),
    };
    // A chunk is read whole once: its digest and its own checksum from the same bytes.
    if chunk_file && let Some(check) = chunk {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => return Some(unreadable(e)),
        };
        if let Some(message) = check(relative, &bytes) {
            return Some(Problem::Chunk {
                file: relative.to_owned(),
                message,
            });
        }
        return (blake3::hash(&bytes).to_hex().as_str() != want.blake3).then(|| Problem::Digest {
            file: relative.to_owned(),
        });
    }
    match hash_file(path) {
        Ok((size, hash)) if size == want.size && hash.to_hex().as_str() == want.blake3 => None,
        Ok(_) => Some(Problem::Digest {
            file: relative.to_owned(),
        }),
        Err(e) => Some(unreadable(e)),
    }
}

/// An artifact named for a message: stage, key, directory, and the cache it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub stage: String,
    pub key: Key,
    pub dir: PathBuf,
}

impl Described {
    /// The cache directory: `<cache>/<stage>/<key>` → `<cache>`.
    pub fn cache(&self) -> &Path {
        self.dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
    }
}

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} artifact {} ({})",
            self.stage,
            self.key.short(),
            self.dir.display()
        )
    }
}

pub(crate) fn describe(stage: &str, key: Key, dir: &Path) -> Described {
    Described {
        stage: stage.to_owned(),
        key,
        dir: dir.to_owned(),
    }
}

/// The artifact a path lies in, read from the path alone (`<cache>/<stage>/<key>/...`):
/// for messages about damage found inside an artifact by a reader that only has a path,
/// such as a Zarr chunk that fails its checksum.
pub fn artifact_of(path: &Path) -> Option<Described> {
    let mut dir = Some(path);
    while let Some(d) = dir {
        if let (Some(key), Some(stage)) = (
            d.file_name()
                .and_then(|n| n.to_str())
                .and_then(Key::from_hex),
            d.parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str()),
        ) {
            return Some(describe(stage, key, d));
        }
        dir = d.parent();
    }
    None
}

/// What to do about a damaged artifact, said the same way by every reader.
pub fn repair_hint(artifact: &Described) -> String {
    format!(
        "run `netdissect verify --repair --cache {}` to move it aside, then rerun to recompute \
         it",
        artifact.cache().display()
    )
}

/// Directories of a cache that hold no artifacts: temporaries, remembered file digests,
/// and artifacts moved aside by a repair.
const RESERVED: [&str; 4] = ["tmp", "digests", DAMAGED_DIR, RUNS_DIR];
/// Where `netdissect run` records which artifacts each model's last run used (for
/// `--explain`; see [`crate::Store::last_run`]).
pub const RUNS_DIR: &str = "runs";
/// Where a repair moves damaged artifacts: `<cache>/damaged/<stage>/<key>`.
pub const DAMAGED_DIR: &str = "damaged";

/// A directory in a stage's folder of the cache, as `netdissect verify` finds it.
#[derive(Debug)]
pub enum Entry {
    /// An artifact whose manifest reads (its files are still to be checked).
    Artifact(Box<Artifact>),
    /// A directory that is not a readable artifact of this netdissect: no manifest (a
    /// hand edit), an unreadable one, or one naming another artifact.
    Broken {
        stage: String,
        dir: PathBuf,
        message: String,
    },
    /// An artifact of an older netdissect (another manifest format): its key was derived
    /// under another rule, so this version never finds it, let alone reads it.
    Old {
        stage: String,
        dir: PathBuf,
        format: String,
    },
}

impl crate::Store {
    /// Every artifact directory of the cache, by stage then key.
    pub fn entries(&self) -> crate::Result<Vec<Entry>> {
        use crate::error::io;
        let mut stages: Vec<String> = std::fs::read_dir(self.root())
            .map_err(io("list", self.root()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| !RESERVED.contains(&name.as_str()))
            .collect();
        stages.sort();
        let mut entries = Vec::new();
        for stage in stages {
            let stage_dir = self.root().join(&stage);
            let mut keys: Vec<(String, PathBuf)> = std::fs::read_dir(&stage_dir)
                .map_err(io("list", &stage_dir))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| Some((e.file_name().to_str()?.to_owned(), e.path())))
                .collect();
            keys.sort();
            for (name, dir) in keys {
                entries.push(self.entry(&stage, &name, dir));
            }
        }
        Ok(entries)
    }

    fn entry(&self, stage: &str, name: &str, dir: PathBuf) -> Entry {
        let broken = |message: String| Entry::Broken {
            stage: stage.to_owned(),
            dir: dir.clone(),
            message,
        };
        let Some(key) = Key::from_hex(name) else {
            return broken("not named by an artifact key".to_owned());
        };
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return broken(format!("no {MANIFEST_FILE}: an incomplete artifact"));
            }
            Err(e) => return broken(format!("cannot read its {MANIFEST_FILE} ({e})")),
        };
        // The format first: an older manifest may not parse as this version's.
        let format = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["format"].as_str().map(str::to_owned));
        match format {
            Some(format) if format != crate::MANIFEST_FORMAT => {
                return Entry::Old {
                    stage: stage.to_owned(),
                    dir,
                    format,
                };
            }
            _ => {}
        }
        match self.get_key_unchecked(stage, key) {
            Ok(Some(artifact)) => Entry::Artifact(Box::new(artifact)),
            Ok(None) => broken(format!("its {MANIFEST_FILE} vanished")),
            Err(e) => broken(e.to_string()),
        }
    }

    /// Moves an artifact directory (damaged, or broken) out of the cache's stage folders to
    /// `<cache>/damaged/<stage>/<key>` (`.1`, `.2`, ... after the first), so that the next
    /// run recomputes it; nothing is deleted. Returns where it went.
    pub fn move_aside(&self, dir: &Path) -> crate::Result<PathBuf> {
        use crate::error::io;
        let (Some(name), Some(stage)) = (dir.file_name(), dir.parent().and_then(Path::file_name))
        else {
            return Err(crate::Error::Invalid(format!(
                "{}: not an artifact directory of the cache",
                dir.display()
            )));
        };
        let aside = self.root().join(DAMAGED_DIR).join(stage);
        std::fs::create_dir_all(&aside).map_err(io("create", &aside))?;
        let mut target = aside.join(name);
        let mut n = 0;
        while target.exists() {
            n += 1;
            target = aside.join(format!("{}.{n}", name.to_string_lossy()));
        }
        std::fs::rename(dir, &target).map_err(io("move aside", dir))?;
        Ok(target)
    }
}
