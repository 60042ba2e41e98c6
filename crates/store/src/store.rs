//! Artifacts: keys, manifests, and the temporary-directory-then-rename protocol.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical;
use crate::error::{Error, Result, io};
use crate::integrity::{self, FileDigest};

/// The `format` field of every manifest. Format 2 added the digest of every file; keys are
/// derived under a new context with it, so that artifacts of format 1 (never checksummed)
/// are never found, let alone read.
pub const MANIFEST_FORMAT: &str = "netdissect-artifact-2";
/// The file whose presence marks an artifact complete.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A 256-bit blake3 key, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    pub fn from_hex(text: &str) -> Option<Key> {
        let hash = blake3::Hash::from_hex(text).ok()?;
        Some(Key(*hash.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(blake3::Hash::from(self.0).to_hex().as_str())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let text = String::deserialize(d)?;
        Key::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex key"))
    }
}

/// Everything that determines an artifact's content, and nothing else.
///
/// Paths, modification times, thread counts, batch sizes and host names must never go in
/// here: two runs that must give the same result must give the same spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The stage that produces the artifact (`extract`, `quantile`, ...).
    pub stage: String,
    /// Bumped whenever the stage's output format or semantics change.
    pub schema: u32,
    /// The parameters that change results, as JSON; hashed in canonical form.
    pub params: Value,
    /// The keys of the artifacts this one is computed from, by role.
    pub inputs: BTreeMap<String, Key>,
    /// Content digests of external inputs (model file, dataset), by role.
    pub digests: BTreeMap<String, String>,
}

impl Spec {
    pub fn new(stage: &str, schema: u32, params: Value) -> Spec {
        Spec {
            stage: stage.to_owned(),
            schema,
            params,
            inputs: BTreeMap::new(),
            digests: BTreeMap::new(),
        }
    }

    pub fn input(mut self, role: &str, key: Key) -> Spec {
        self.inputs.insert(role.to_owned(), key);
        self
    }

    pub fn digest(mut self, role: &str, digest: impl Into<String>) -> Spec {
        self.digests.insert(role.to_owned(), digest.into());
        self
    }

    /// The JSON that is hashed: every field of the spec, canonical.
    fn identity(&self) -> Value {
        serde_json::json!({
            "stage": self.stage,
            "schema": self.schema,
            "params": self.params,
            "inputs": self.inputs,
            "digests": self.digests,
        })
    }

    pub fn key(&self) -> Key {
        let text = canonical::to_compact(&self.identity());
        let mut hasher = blake3::Hasher::new_derive_key("netdissect artifact key v2");
        hasher.update(text.as_bytes());
        Key(*hasher.finalize().as_bytes())
    }
}

/// The record that marks an artifact complete and says what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub stage: String,
    pub schema: u32,
    pub key: Key,
    pub params: Value,
    pub inputs: BTreeMap<String, Key>,
    pub digests: BTreeMap<String, String>,
    /// Versions of the software that wrote it; informative, not part of the key.
    pub versions: BTreeMap<String, String>,
    /// What the stage says about its output (layers, shapes, files).
    pub outputs: Value,
    /// Every file of the artifact but the manifest, by path relative to its directory
    /// (`/`-separated): size and blake3 digest, checked whenever the artifact is read.
    /// Records leave it out (see [`Artifact::write_record`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileDigest>,
}

/// What `runs/<model>.json` holds: see [`Store::last_run`].
#[derive(Serialize, Deserialize)]
struct RunRecord {
    model: String,
    keys: BTreeMap<String, Key>,
}

impl Manifest {
    /// The byte-deterministic text of the manifest.
    pub fn to_text(&self) -> String {
        let value = serde_json::to_value(self).expect("a manifest is plain JSON");
        canonical::to_pretty(&value)
    }

    fn spec(&self) -> Spec {
        Spec {
            stage: self.stage.clone(),
            schema: self.schema,
            params: self.params.clone(),
            inputs: self.inputs.clone(),
            digests: self.digests.clone(),
        }
    }
}

/// What a stage's `run` returns: its artifact, and whether this call computed it (`false`
/// when it was in the cache already).
#[derive(Debug)]
pub struct Outcome {
    pub artifact: Artifact,
    pub computed: bool,
}

/// The software versions every manifest records (informative, never part of a key).
pub fn versions() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "netdissect".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    )])
}

/// The stages whose artifacts hold activations: an `activations.zarr` group and the extract
/// stage's manifest outputs (`layers`, `input_size`, `fields`, and the `rows` of the dataset
/// as a parameter or an output). The rotate stage's artifacts are extract artifacts in a
/// turned basis of units, the generate stage's a generator's on its own samples (beside
/// them, in its `dataset/`), and every stage that reads activations takes any of them.
pub const ACTIVATION_STAGES: [&str; 3] = ["extract", "rotate", "generate"];

/// A complete artifact in the store.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Artifact {
    /// Opens the artifact in a directory (`<cache>/<stage>/<key>/`), as a stage binary
    /// given its input on the command line does, and checks its files
    /// ([`Artifact::check`]).
    pub fn open(dir: &Path) -> Result<Artifact> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Corrupt {
            path: dir.to_owned(),
            message: format!("not a complete artifact: cannot read its {MANIFEST_FILE} ({e})"),
        })?;
        let manifest = parse_manifest(&text, &path)?;
        let dir = dir.canonicalize().map_err(io("resolve", dir))?;
        let artifact = Artifact { dir, manifest };
        artifact.check()?;
        Ok(artifact)
    }

    /// The cache an artifact lives in: `<cache>/<stage>/<key>/` → `<cache>`.
    pub fn cache_root(&self) -> Option<&Path> {
        self.dir.parent()?.parent()
    }

    /// Fails unless the artifact was written by the given stage.
    pub fn expect_stage(&self, stage: &str) -> Result<()> {
        if self.manifest.stage == stage {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{} is a {} artifact, expected a {stage} artifact",
                self.dir.display(),
                self.manifest.stage
            )))
        }
    }

    /// Fails unless the artifact holds activations in the extract stage's layout
    /// ([`ACTIVATION_STAGES`]): what the quantile, segment and html stages read.
    pub fn expect_activations(&self) -> Result<()> {
        if ACTIVATION_STAGES.contains(&self.manifest.stage.as_str()) {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{} is a {} artifact, expected an extract (or rotate, or generate) artifact",
                self.dir.display(),
                self.manifest.stage
            )))
        }
    }

    pub fn key(&self) -> Key {
        self.manifest.key
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }
}

/// A cache directory of artifacts, `<root>/<stage>/<key>/`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

static PENDING_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) a cache directory, and clears the temporary directories
    /// that processes which no longer run left behind.
    pub fn open(root: &Path) -> Result<Store> {
        std::fs::create_dir_all(root.join("tmp")).map_err(io("create", root.join("tmp")))?;
        let root = root.canonicalize().map_err(io("resolve", root))?;
        let store = Store { root };
        store.clear_stale_temporaries();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifact of a stage and key lives (complete or not).
    pub fn artifact_dir(&self, stage: &str, key: Key) -> PathBuf {
        self.root.join(stage).join(key.to_string())
    }

    /// The complete artifact for a spec, if there is one.
    pub fn get(&self, spec: &Spec) -> Result<Option<Artifact>> {
        self.get_key(&spec.stage, spec.key())
    }

    /// The complete artifact of a stage with a given key, if there is one, its files
    /// checked ([`Artifact::check`]): a damaged artifact is an error, never served.
    pub fn get_key(&self, stage: &str, key: Key) -> Result<Option<Artifact>> {
        let artifact = self.get_key_unchecked(stage, key)?;
        if let Some(artifact) = &artifact {
            artifact.check()?;
        }
        Ok(artifact)
    }

    /// The artifact of a stage and key as its manifest describes it, files unchecked.
    pub(crate) fn get_key_unchecked(&self, stage: &str, key: Key) -> Result<Option<Artifact>> {
        let dir = self.artifact_dir(stage, key);
        let path = dir.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", path)(e)),
        };
        let manifest = parse_manifest(&text, &path)?;
        if manifest.key != key || manifest.stage != stage {
            return Err(Error::Corrupt {
                path,
                message: format!(
                    "the manifest is for {} {}; run `netdissect verify --repair --cache {}` to \
                     move it aside",
                    manifest.stage,
                    manifest.key,
                    self.root.display()
                ),
            });
        }
        Ok(Some(Artifact { dir, manifest }))
    }

    /// Starts writing the artifact of a spec into a fresh temporary directory.
    pub fn begin(&self, spec: &Spec) -> Result<Pending<'_>> {
        let key = spec.key();
        let n = PENDING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}-{}-{}-{}",
            spec.stage,
            key.short(),
            std::process::id(),
            n
        );
        let dir = self.root.join("tmp").join(host_name()).join(name);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        Ok(Pending {
            store: self,
            spec: spec.clone(),
            key,
            dir,
            done: false,
        })
    }

    /// Every complete artifact of a stage, in key order, as their manifests describe them:
    /// their files are not checked (get one through [`Store::get_key`] to read it).
    pub fn list(&self, stage: &str) -> Result<Vec<Artifact>> {
        let dir = self.root.join(stage);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", dir)(e)),
        };
        let mut keys: Vec<Key> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Key::from_hex(e.file_name().to_str()?))
            .collect();
        keys.sort();
        let mut artifacts = Vec::new();
        for key in keys {
            if let Ok(Some(artifact)) = self.get_key_unchecked(stage, key) {
                artifacts.push(artifact);
            }
        }
        Ok(artifacts)
    }

    /// Says whether a spec's artifact exists and, if not, what differs from the closest
    /// artifact of the same stage in the cache (the one with the fewest differing fields).
    pub fn explain(&self, spec: &Spec) -> Result<String> {
        let key = spec.key();
        if self.get_key(&spec.stage, key)?.is_some() {
            return Ok(format!("{}: fresh ({})", spec.stage, key.short()));
        }
        let wanted = flatten_spec(spec);
        let mut best: Option<(usize, Vec<String>)> = None;
        for artifact in self.list(&spec.stage)? {
            let have = flatten_spec(&artifact.manifest.spec());
            let diffs = diff(&have, &wanted);
            if best.as_ref().is_none_or(|(n, _)| diffs.len() < *n) {
                best = Some((diffs.len(), diffs));
            }
        }
        Ok(match best {
            None => format!(
                "{}: computing {}: no {} artifact in the cache yet",
                spec.stage,
                key.short(),
                spec.stage
            ),
            Some((_, diffs)) => format!(
                "{}: computing {}: the closest cached artifact differs in\n  {}",
                spec.stage,
                key.short(),
                diffs.join("\n  ")
            ),
        })
    }

    /// The keys the last `netdissect run` of a model (by its name in the pipeline) found or
    /// computed, by stage: what `--explain` compares the next run of that model with.
    /// `None` when the model has never run into this cache (or its record is unreadable:
    /// it only ever serves explanations).
    pub fn last_run(&self, model: &str) -> Option<BTreeMap<String, Key>> {
        let text = std::fs::read_to_string(self.run_record_path(model)).ok()?;
        let record: RunRecord = serde_json::from_str(&text).ok()?;
        (record.model == model).then_some(record.keys)
    }

    /// Records the keys of a model's run (see [`Store::last_run`]), replacing the last
    /// record atomically.
    pub fn record_run(&self, model: &str, keys: &BTreeMap<String, Key>) -> Result<()> {
        let path = self.run_record_path(model);
        let dir = path.parent().expect("a file in runs/");
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let record = RunRecord {
            model: model.to_owned(),
            keys: keys.clone(),
        };
        let value = serde_json::to_value(&record).expect("a run record is plain JSON");
        let n = PENDING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}-{}-{}-{n}",
            blake3::hash(model.as_bytes())
                .to_hex()
                .get(..16)
                .unwrap_or_default(),
            host_name(),
            std::process::id()
        ));
        std::fs::write(&tmp, canonical::to_pretty(&value)).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))
    }

    /// `runs/<blake3 of the name>.json`: any model name is a safe file name that way.
    fn run_record_path(&self, model: &str) -> PathBuf {
        let name = blake3::hash(model.as_bytes()).to_hex();
        self.root
            .join(integrity::RUNS_DIR)
            .join(format!("{}.json", &name[..32]))
    }

    /// Like [`Store::explain`], but compares with the artifact a model's last run used for
    /// the stage (`last`, from [`Store::last_run`]) rather than with the closest artifact
    /// of any model: after changing `top` for one model, its score stage is explained by
    /// its own masks, not by another model's.
    pub fn explain_run(&self, spec: &Spec, model: &str, last: Option<Key>) -> Result<String> {
        let key = spec.key();
        if self.get_key_unchecked(&spec.stage, key)?.is_some() {
            return Ok(format!("{}: fresh ({})", spec.stage, key.short()));
        }
        let head = format!("{}: computing {}", spec.stage, key.short());
        let Some(last) = last else {
            return Ok(format!(
                "{head}: first run for model `{model}` (no earlier {} of it in this cache)",
                spec.stage
            ));
        };
        let Ok(Some(artifact)) = self.get_key_unchecked(&spec.stage, last) else {
            return Ok(format!(
                "{head}: the last run of model `{model}` used {}, no longer in the cache",
                last.short()
            ));
        };
        let diffs = diff(
            &flatten_spec(&artifact.manifest.spec()),
            &flatten_spec(spec),
        );
        Ok(format!(
            "{head}: the last run of model `{model}` used {}, which differs in\n  {}",
            last.short(),
            diffs.join("\n  ")
        ))
    }

    /// Temporary directories live in `tmp/<host>/`, so that a cache shared by the nodes of
    /// a cluster (a network file system) only ever has a process's liveness judged on the
    /// host it runs on.
    #[cfg(target_os = "linux")]
    fn clear_stale_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp").join(host_name())) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // <stage>-<key>-<pid>-<n>: the pid is the second field from the end.
            let mut fields = name.rsplit('-');
            let (Some(_), Some(pid)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if !Path::new("/proc").join(pid.to_string()).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn clear_stale_temporaries(&self) {}
}

/// This machine's name, as a safe path component (`localhost` when it has none).
pub(crate) fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Makes the entries of every directory under `dir` durable (the names of the files in
/// them; the files themselves are synced as they are hashed). Concurrent syncs share the
/// filesystem's journal commits, so many cost about what a few do.
fn sync_dirs(dir: &Path) -> std::io::Result<()> {
    use rayon::prelude::*;
    let mut dirs = vec![dir.to_owned()];
    let mut next = 0;
    while next < dirs.len() {
        for entry in std::fs::read_dir(&dirs[next])? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
        next += 1;
    }
    dirs.par_iter().for_each(|path| sync_dir(path));
    Ok(())
}

/// Syncs a directory's entries (the names of new files and directories in it). Some
/// filesystems cannot sync a directory; there its files are still synced, and only a crash
/// right after may lose the names.
fn sync_dir(path: &Path) {
    if let Ok(dir) = std::fs::File::open(path) {
        let _ = dir.sync_all();
    }
}

/// An artifact being written. Dropping it without [`Pending::commit`] removes its files.
#[derive(Debug)]
pub struct Pending<'a> {
    store: &'a Store,
    spec: Spec,
    key: Key,
    dir: PathBuf,
    done: bool,
}

impl Pending<'_> {
    /// The temporary directory to write the artifact's files into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn key(&self) -> Key {
        self.key
    }

    /// The key-value metadata a stage puts in its tables: stage, key and parameters, so a
    /// table copied out of the cache still says where it came from.
    pub fn table_metadata(&self) -> Vec<(String, String)> {
        vec![
            ("netdissect.stage".to_owned(), self.spec.stage.clone()),
            ("netdissect.key".to_owned(), self.key.to_string()),
            (
                "netdissect.params".to_owned(),
                canonical::to_compact(&self.spec.params),
            ),
        ]
    }

    /// Writes the manifest and moves the directory into place. If another process
    /// finished the same key first, its artifact is kept and this one is discarded: equal
    /// keys mean equal content.
    pub fn commit(
        mut self,
        versions: BTreeMap<String, String>,
        outputs: Value,
    ) -> Result<Artifact> {
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            stage: self.spec.stage.clone(),
            schema: self.spec.schema,
            key: self.key,
            params: self.spec.params.clone(),
            inputs: self.spec.inputs.clone(),
            digests: self.spec.digests.clone(),
            versions,
            outputs,
            // Everything the artifact holds is hashed and made durable before the rename
            // makes it one: the stages write their files without syncing each, and this
            // reads each back (from the page cache) and syncs it, all in parallel.
            files: integrity::digest_and_sync(&self.dir).map_err(io("hash and sync", &self.dir))?,
        };
        let manifest_path = self.dir.join(MANIFEST_FILE);
        std::fs::write(&manifest_path, manifest.to_text()).map_err(io("write", &manifest_path))?;
        std::fs::File::open(&manifest_path)
            .and_then(|f| f.sync_all())
            .map_err(io("sync", &manifest_path))?;
        sync_dirs(&self.dir).map_err(io("sync", &self.dir))?;
        let target = self.store.artifact_dir(&self.spec.stage, self.key);
        let parent = target.parent().expect("artifact dirs have a parent");
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        if target.exists() && !target.join(MANIFEST_FILE).exists() {
            // A directory without a manifest is not an artifact (it can only come from a
            // hand edit); move it out of the way rather than trust it.
            let trash = self.dir.with_extension("incomplete");
            std::fs::rename(&target, &trash).map_err(io("move aside", &target))?;
            let _ = std::fs::remove_dir_all(&trash);
        }
        match std::fs::rename(&self.dir, &target) {
            Ok(()) => {}
            Err(_) if target.join(MANIFEST_FILE).exists() => {
                // Lost a race with an identical computation.
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            Err(e) => return Err(io("move into place", &target)(e)),
        }
        // And the rename itself.
        sync_dir(parent);
        self.done = true;
        self.store
            .get_key_unchecked(&self.spec.stage, self.key)?
            .ok_or_else(|| Error::Corrupt {
                path: target,
                message: "the artifact vanished right after it was written".into(),
            })
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reads a manifest's text, refusing manifests of another format: an artifact of an older
/// netdissect has no digests to check its files against.
fn parse_manifest(text: &str, path: &Path) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_str(text).map_err(|e| Error::Corrupt {
        path: path.to_owned(),
        message: format!("unreadable manifest ({e})"),
    })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            message: format!(
                "written by another version of netdissect (format `{}`, this one reads `{}`); \
                 recompute it",
                manifest.format, MANIFEST_FORMAT
            ),
        });
    }
    Ok(manifest)
}

fn flatten_spec(spec: &Spec) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("schema".to_owned(), spec.schema.to_string());
    flatten("params", &spec.params, &mut out);
    for (role, key) in &spec.inputs {
        out.insert(format!("input `{role}`"), key.short());
    }
    for (role, digest) in &spec.digests {
        let short = digest.get(..12).unwrap_or(digest);
        out.insert(format!("digest of {role}"), short.to_owned());
    }
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), canonical::to_compact(other));
        }
    }
}

fn diff(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (field, new) in want {
        match have.get(field) {
            Some(old) if old == new => {}
            Some(old) => out.push(format!("{field}: {old} -> {new}")),
            None => out.push(format!("{field}: (absent) -> {new}")),
        }
    }
    for (field, old) in have {
        if !want.contains_key(field) {
            out.push(format!("{field}: {old} -> (absent)"));
        }
    }
    out
}
