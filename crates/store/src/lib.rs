//! The content-addressed cache every stage writes through.
//!
//! An artifact lives in `<cache>/<stage>/<key>/`, where the key is a blake3 hash of a
//! [`Spec`]: the stage name and schema version, the canonicalised parameters that change
//! results, the keys of the input artifacts, and content digests of external inputs (model
//! file, dataset). A stage asks [`Store::get`] first and does no work on a hit; on a miss it
//! writes into the temporary directory of [`Store::begin`] and calls [`Pending::commit`],
//! which writes `manifest.json` and renames the directory into place.
//!
//! Invariants:
//! - an artifact directory is complete exactly when its `manifest.json` exists, and it is
//!   never modified after the rename;
//! - the manifest lists every other file of the artifact with its size and blake3 digest,
//!   and the store never hands out an artifact whose files do not match (Zarr chunks, which
//!   carry their own crc32c checksum, are checked by their reader as they are decoded;
//!   [`integrity`] says what is checked when);
//! - manifests are byte-deterministic: canonical JSON, no timestamps, no host names, no
//!   absolute paths;
//! - keys never depend on paths, mtimes, thread counts or batch sizes; file digests only
//!   use `stat` fields to decide whether a remembered hash can be reused.
//!
//! ```
//! use nd_store::{Spec, Store};
//! let cache = tempfile::tempdir()?;
//! let store = Store::open(cache.path())?;
//! let spec = Spec::new("quantile", 1, serde_json::json!({"top": 0.005}));
//! assert!(store.get(&spec)?.is_none());
//! let pending = store.begin(&spec)?;
//! std::fs::write(pending.dir().join("thresholds.txt"), "1.5\n")?;
//! let artifact = pending.commit(Default::default(), serde_json::json!({}))?;
//! assert_eq!(store.get(&spec)?.unwrap().dir, artifact.dir);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod canonical;
mod digest;
mod error;
mod export;
pub mod integrity;
pub mod progress;
mod record;
mod shards;
mod store;

pub use error::{Error, Result};
pub use export::{Transfer, copy_tree};
pub use integrity::{FileDigest, Level, Problem};
pub use record::{DATASET_STAGES, dataset_dir, locate};
pub use shards::in_row_order;
pub use store::{
    ACTIVATION_STAGES, Artifact, Key, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, Outcome, Pending,
    Spec, Store, versions,
};

#[cfg(test)]
mod tests;
