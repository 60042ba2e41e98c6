//! Records: copies of an artifact's manifest kept outside the cache, which name the artifact
//! by stage and key.
//!
//! A workflow engine (Snakemake, Make) tracks small files, not directories named by hashes
//! it cannot predict. So each stage binary can write its artifact's manifest to a file of
//! the workflow's (`--record FILE`) and accepts such a file wherever it takes an artifact
//! directory. A record is byte-identical whenever the artifact is the same, so an engine
//! that compares checksums (Snakemake does, for small files) sees that nothing changed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result, io};
use crate::store::{Artifact, Manifest, Store};

static RECORDS: AtomicU64 = AtomicU64::new(0);

impl Artifact {
    /// Writes the artifact's manifest, without its list of files, to `path`, through a
    /// temporary file renamed into place (so a reader never sees half a record), creating
    /// the directory if needed. The list of files (a line per Zarr chunk: thousands for
    /// the activations of a real dataset) belongs to the cache; the record only names the
    /// artifact, and is identical whenever the artifact is.
    pub fn write_record(&self, path: &Path) -> Result<()> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io("create", &parent))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record");
        let n = RECORDS.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let record = Manifest {
            files: Default::default(),
            ..self.manifest.clone()
        };
        std::fs::write(&tmp, record.to_text()).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("write", path)(e)
        })
    }
}

/// The artifact a command-line argument names: an artifact directory
/// (`<cache>/<stage>/<key>/`), or a record of one, found in `cache`.
pub fn locate(path: &Path, cache: Option<&Path>) -> Result<Artifact> {
    if path.is_dir() {
        return Artifact::open(path);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        message: format!("neither an artifact directory nor a readable record ({e})"),
    })?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        message: format!("not a record of an artifact (a copy of its manifest.json): {e}"),
    })?;
    let Some(cache) = cache else {
        return Err(Error::Invalid(format!(
            "{} is a record of the {} artifact {}; give --cache (or set NETDISSECT_CACHE) to say \
             which cache holds it",
            path.display(),
            manifest.stage,
            manifest.key.short()
        )));
    };
    let store = Store::open(cache)?;
    store
        .get_key(&manifest.stage, manifest.key)?
        .ok_or_else(|| Error::Corrupt {
            path: path.to_owned(),
            message: format!(
                "the record names the {} artifact {}, which the cache {} does not hold: rerun \
                 the step that wrote the record, or point --cache at the cache it came from",
                manifest.stage,
                manifest.key,
                store.root().display()
            ),
        })
}

/// The stages whose artifacts hold a dataset (their manifest's `outputs.dataset` names its
/// directory): `synth` (the synthetic world) and `generate` (a generator's samples,
/// labelled by its segmenter).
pub const DATASET_STAGES: &[&str] = &["synth", "generate"];

/// The dataset a command-line argument names: a directory in the Broden layout, or the
/// record of an artifact that holds one ([`DATASET_STAGES`]), found in `cache`.
pub fn dataset_dir(path: &Path, cache: Option<&Path>) -> Result<PathBuf> {
    if path.is_dir() {
        return Ok(path.to_owned());
    }
    let artifact = locate(path, cache)?;
    if !DATASET_STAGES.contains(&artifact.manifest.stage.as_str()) {
        return Err(Error::Invalid(format!(
            "{} is the record of a {} artifact, which holds no dataset; a dataset is a \
             directory in the Broden layout or the record of a {} artifact",
            path.display(),
            artifact.manifest.stage,
            DATASET_STAGES.join(" or ")
        )));
    }
    let sub = artifact.manifest.outputs["dataset"]
        .as_str()
        .unwrap_or("dataset");
    Ok(artifact.dir.join(sub))
}
