use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::{Key, MANIFEST_FILE, Spec, Store};

fn spec(top: f64) -> Spec {
    Spec::new("quantile", 1, json!({"top": top, "layer": "conv5"}))
        .input("activations", Key::from_hex(&"ab".repeat(32)).unwrap())
        .digest("dataset", "00ff")
}

#[test]
fn key_depends_on_every_part_of_the_spec_and_nothing_else() {
    let base = spec(0.005);
    // Same content, keys written in another order: same key.
    let reordered = Spec::new("quantile", 1, json!({"layer": "conv5", "top": 0.005}))
        .input("activations", Key::from_hex(&"ab".repeat(32)).unwrap())
        .digest("dataset", "00ff");
    assert_eq!(base.key(), reordered.key());
    let mut variants = vec![spec(0.01)];
    let mut s = spec(0.005);
    s.schema = 2;
    variants.push(s);
    let mut s = spec(0.005);
    s.stage = "segment".into();
    variants.push(s);
    variants.push(spec(0.005).digest("dataset", "00fe"));
    variants.push(spec(0.005).input("activations", Key::from_hex(&"cd".repeat(32)).unwrap()));
    variants.push(spec(0.005).input("extra", base.key()));
    for v in variants {
        assert_ne!(v.key(), base.key(), "{v:?}");
    }
}

#[test]
fn commit_then_get_and_no_partial_artifact_before() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let s = spec(0.005);
    assert!(store.get(&s).unwrap().is_none());
    let pending = store.begin(&s).unwrap();
    std::fs::write(pending.dir().join("data.bin"), b"123").unwrap();
    // Not visible until committed.
    assert!(store.get(&s).unwrap().is_none());
    assert!(!store.artifact_dir("quantile", s.key()).exists());
    let versions = BTreeMap::from([("netdissect".to_owned(), "0.1.0".to_owned())]);
    let artifact = pending.commit(versions, json!({"rows": 3})).unwrap();
    assert_eq!(artifact.dir, store.artifact_dir("quantile", s.key()));
    assert_eq!(
        std::fs::read(artifact.dir.join("data.bin")).unwrap(),
        b"123"
    );
    let again = store.get(&s).unwrap().unwrap();
    assert_eq!(again.manifest, artifact.manifest);
    assert_eq!(again.manifest.outputs, json!({"rows": 3}));
    // The temporary area is empty again.
    assert_eq!(temporaries(&store), 0);
}

#[test]
fn manifests_are_byte_deterministic() {
    let texts: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let cache = tempfile::tempdir().unwrap();
            let store = Store::open(cache.path()).unwrap();
            let artifact = store
                .begin(&spec(0.005))
                .unwrap()
                .commit(BTreeMap::new(), json!({"z": 1, "a": [1.5, 2]}))
                .unwrap();
            std::fs::read(artifact.manifest_path()).unwrap()
        })
        .collect();
    assert_eq!(texts[0], texts[1]);
    let text = String::from_utf8(texts[0].clone()).unwrap();
    assert!(text.starts_with("{\n  \"digests\": {\n    \"dataset\": \"00ff\"\n  },\n  \"format\": \"netdissect-artifact-2\",\n"), "{text}");
    assert!(!text.contains("/tmp"));
}

#[test]
fn dropping_a_pending_artifact_leaves_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    {
        let pending = store.begin(&spec(0.005)).unwrap();
        std::fs::write(pending.dir().join("half-written"), b"x").unwrap();
    }
    assert_eq!(temporaries(&store), 0);
    assert!(store.get(&spec(0.005)).unwrap().is_none());
}

#[test]
fn racing_writers_of_one_key_keep_one_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let a = store.begin(&spec(0.005)).unwrap();
    let b = store.begin(&spec(0.005)).unwrap();
    std::fs::write(a.dir().join("v"), b"a").unwrap();
    std::fs::write(b.dir().join("v"), b"b").unwrap();
    let first = a.commit(BTreeMap::new(), json!({})).unwrap();
    let second = b.commit(BTreeMap::new(), json!({})).unwrap();
    assert_eq!(first.dir, second.dir);
    assert_eq!(std::fs::read(first.dir.join("v")).unwrap(), b"a");
    assert_eq!(temporaries(&store), 0);
}

#[test]
fn directory_without_manifest_is_not_an_artifact() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let dir = store.artifact_dir("quantile", spec(0.005).key());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stale"), b"?").unwrap();
    assert!(store.get(&spec(0.005)).unwrap().is_none());
    let artifact = store
        .begin(&spec(0.005))
        .unwrap()
        .commit(BTreeMap::new(), json!({}))
        .unwrap();
    assert!(artifact.dir.join(MANIFEST_FILE).exists());
    assert!(!artifact.dir.join("stale").exists());
}

#[test]
fn explain_names_what_changed() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let first = store.explain(&spec(0.005)).unwrap();
    assert!(
        first.ends_with("no quantile artifact in the cache yet"),
        "{first}"
    );
    store
        .begin(&spec(0.005))
        .unwrap()
        .commit(BTreeMap::new(), json!({}))
        .unwrap();
    assert!(
        store
            .explain(&spec(0.005))
            .unwrap()
            .starts_with("quantile: fresh")
    );
    let changed = store
        .explain(&spec(0.01).digest("dataset", "1234567890abcdef"))
        .unwrap();
    assert!(changed.contains("params.top: 0.005 -> 0.01"), "{changed}");
    assert!(
        changed.contains("digest of dataset: 00ff -> 1234567890ab"),
        "{changed}"
    );
    assert!(!changed.contains("params.layer"), "{changed}");
}

/// The temporary directories of every host in a cache.
fn temporaries(store: &Store) -> usize {
    std::fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .map(|host| std::fs::read_dir(host.unwrap().path()).unwrap().count())
        .sum()
}

#[test]
fn stale_temporaries_of_dead_processes_are_cleared_on_their_host_only() {
    let cache = tempfile::tempdir().unwrap();
    let here = cache.path().join("tmp").join(super::store::host_name());
    let dead = here.join("extract-0123456789ab-4000000000-0");
    let alive = here.join(format!("extract-0123456789ab-{}-0", std::process::id()));
    // Another node of a cluster sharing the cache: its processes are not ours to judge.
    let elsewhere = cache
        .path()
        .join("tmp/another-node/extract-0123456789ab-4000000000-0");
    for dir in [&dead, &alive, &elsewhere] {
        std::fs::create_dir_all(dir).unwrap();
    }
    Store::open(cache.path()).unwrap();
    assert!(!dead.exists());
    assert!(alive.exists());
    assert!(elsewhere.exists());
}

fn age(path: &std::path::Path, secs: u64) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn file_digests_follow_content_not_location() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [a.path(), b.path()] {
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("index.csv"), "x\n").unwrap();
        std::fs::write(dir.join("images/1.png"), "png").unwrap();
    }
    let files = vec!["index.csv".to_owned(), "images/1.png".to_owned()];
    let da = store.digest_files(a.path(), &files).unwrap();
    assert_eq!(da, store.digest_files(b.path(), &files).unwrap());
    let swapped = vec![files[1].clone(), files[0].clone()];
    assert_ne!(da, store.digest_files(a.path(), &swapped).unwrap());
    std::fs::write(b.path().join("images/1.png"), "PNG").unwrap();
    assert_ne!(da, store.digest_files(b.path(), &files).unwrap());
    let missing = store
        .digest_files(a.path(), &["nope.csv".to_owned()])
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.csv"), "{missing}");
    assert_eq!(
        store.file_hash(&a.path().join("index.csv")).unwrap(),
        blake3::hash(b"x\n").to_hex().to_string()
    );
}

#[test]
fn remembered_hashes_still_notice_changes() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("a.jpg");
    std::fs::write(&file, "0123456789").unwrap();
    age(&file, 3600);
    let names = vec!["a.jpg".to_owned()];
    let before = store.digest_files(data.path(), &names).unwrap();
    let memo_dir = store.root().join("digests");
    let memo = std::fs::read_dir(&memo_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        std::fs::read_to_string(&memo)
            .unwrap()
            .contains("\ta.jpg\n")
    );
    assert_eq!(before, store.digest_files(data.path(), &names).unwrap());
    // Same size, mtime put back: the inode's ctime still moves, so the change is seen.
    std::fs::write(&file, "9876543210").unwrap();
    age(&file, 3600);
    assert_ne!(before, store.digest_files(data.path(), &names).unwrap());
}

#[test]
fn files_changed_just_now_are_not_remembered() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("fresh.jpg"), "x").unwrap();
    store
        .digest_files(data.path(), &["fresh.jpg".to_owned()])
        .unwrap();
    assert!(!store.root().join("digests").exists());
}

#[test]
fn exports_replace_the_copy_whole_as_copies_or_links() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cache")).unwrap();
    let pending = store.begin(&spec(0.005)).unwrap();
    std::fs::create_dir_all(pending.dir().join("sub")).unwrap();
    std::fs::write(pending.dir().join("table.txt"), "a").unwrap();
    std::fs::write(pending.dir().join("sub/page.txt"), "b").unwrap();
    let artifact = pending.commit(BTreeMap::new(), json!({})).unwrap();

    let to = dir.path().join("results/model");
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("stale.txt"), "old").unwrap();
    artifact.export(&to, crate::Transfer::Copy).unwrap();
    assert!(
        !to.join("stale.txt").exists(),
        "the previous copy is replaced"
    );
    assert_eq!(
        std::fs::read_to_string(to.join("sub/page.txt")).unwrap(),
        "b"
    );
    assert!(to.join(MANIFEST_FILE).exists());
    let inode = |p: &std::path::Path| std::fs::metadata(p).unwrap().ino();
    assert_ne!(
        inode(&to.join("table.txt")),
        inode(&artifact.dir.join("table.txt"))
    );

    artifact.export(&to, crate::Transfer::Link).unwrap();
    assert_eq!(
        inode(&to.join("table.txt")),
        inode(&artifact.dir.join("table.txt"))
    );
    // Nothing is left beside the copy.
    let siblings: Vec<_> = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .collect();
    assert_eq!(siblings.len(), 1);
}

#[test]
fn racing_exports_to_one_place_each_leave_a_whole_copy() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let artifacts: Vec<_> = [0.1, 0.2]
        .iter()
        .map(|&top| {
            let pending = store.begin(&spec(top)).unwrap();
            for i in 0..20 {
                std::fs::write(pending.dir().join(format!("f{i}")), top.to_string()).unwrap();
            }
            pending.commit(BTreeMap::new(), json!({})).unwrap()
        })
        .collect();
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("report");
    std::thread::scope(|scope| {
        for artifact in &artifacts {
            let to = &to;
            scope.spawn(move || {
                for _ in 0..30 {
                    artifact.export(to, crate::Transfer::Copy).unwrap();
                }
            });
        }
    });
    let names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["report"], "nothing left beside the copy");
    let contents: std::collections::BTreeSet<String> = (0..20)
        .map(|i| std::fs::read_to_string(to.join(format!("f{i}"))).unwrap())
        .collect();
    assert_eq!(
        contents.len(),
        1,
        "one artifact's files, not a mix: {contents:?}"
    );
}

#[test]
fn records_name_their_artifact_in_a_cache() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let pending = store.begin(&spec(0.005)).unwrap();
    std::fs::write(pending.dir().join("thresholds.txt"), b"1.5\n").unwrap();
    let artifact = pending
        .commit(BTreeMap::new(), json!({"dataset": "dataset"}))
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let record = work.path().join("records/quantile.json");
    artifact.write_record(&record).unwrap();
    // The record is the manifest without its list of files.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(artifact.manifest_path()).unwrap()).unwrap();
    let mut without_files = manifest.clone();
    without_files.as_object_mut().unwrap().remove("files");
    assert_ne!(manifest, without_files);
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        crate::canonical::to_pretty(&without_files)
    );
    let found = crate::locate(&record, Some(cache.path())).unwrap();
    assert_eq!(found.dir, artifact.dir);
    // A directory is taken as it is, cache or not.
    assert_eq!(
        crate::locate(&artifact.dir, None).unwrap().dir,
        artifact.dir
    );
    let err = crate::locate(&record, None).unwrap_err().to_string();
    assert!(err.contains("give --cache"), "{err}");
    let other = tempfile::tempdir().unwrap();
    let err = crate::locate(&record, Some(other.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not hold"), "{err}");
    std::fs::write(work.path().join("junk.json"), "{}").unwrap();
    let err = crate::locate(&work.path().join("junk.json"), Some(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a record"), "{err}");
    // Only a synth or generate artifact's record names a dataset.
    let err = crate::dataset_dir(&record, Some(cache.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no dataset"), "{err}");
    assert_eq!(
        crate::dataset_dir(work.path(), None).unwrap(),
        work.path().to_owned()
    );
}

/// An artifact of a few files, one of them a Zarr chunk (by its place in a `*.zarr`
/// directory, as the store tells chunks apart).
fn artifact_with_files(store: &Store) -> crate::Artifact {
    let pending = store.begin(&spec(0.005)).unwrap();
    std::fs::write(pending.dir().join("table.parquet"), b"0123456789").unwrap();
    let chunks = pending.dir().join("a.zarr/conv1/activations/c/0/0");
    std::fs::create_dir_all(&chunks).unwrap();
    std::fs::write(chunks.join("0"), b"chunk bytes").unwrap();
    std::fs::write(
        pending.dir().join("a.zarr/conv1/activations/zarr.json"),
        b"{}",
    )
    .unwrap();
    pending.commit(BTreeMap::new(), json!({})).unwrap()
}

#[test]
fn manifests_list_every_file_with_its_size_and_digest() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let artifact = artifact_with_files(&store);
    let files: Vec<(&str, u64)> = artifact
        .manifest
        .files
        .iter()
        .map(|(name, f)| (name.as_str(), f.size))
        .collect();
    assert_eq!(
        files,
        [
            ("a.zarr/conv1/activations/c/0/0/0", 11),
            ("a.zarr/conv1/activations/zarr.json", 2),
            ("table.parquet", 10)
        ]
    );
    assert_eq!(
        artifact.manifest.files["table.parquet"].blake3,
        blake3::hash(b"0123456789").to_hex().as_str()
    );
    assert!(crate::integrity::is_zarr_chunk(
        "a.zarr/conv1/activations/c/0/0/0"
    ));
    assert!(!crate::integrity::is_zarr_chunk(
        "a.zarr/conv1/activations/zarr.json"
    ));
    assert!(!crate::integrity::is_zarr_chunk("table.parquet"));
    assert!(!crate::integrity::is_zarr_chunk("a.zarr"));
}

/// Each kind of damage, done to a fresh copy of the artifact: what opening it says, and
/// what a full check finds.
#[test]
fn damaged_artifacts_are_never_served() {
    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage, &str); 6] = [
        (
            "flipped byte",
            |dir| flip(&dir.join("table.parquet"), 3),
            "table.parquet does not match its blake3 digest",
        ),
        (
            "truncated",
            |dir| truncate(&dir.join("table.parquet"), 4),
            "table.parquet has 4 bytes, 10 were written",
        ),
        (
            "missing",
            |dir| std::fs::remove_file(dir.join("table.parquet")).unwrap(),
            "table.parquet is missing",
        ),
        (
            "stray",
            |dir| std::fs::write(dir.join("extra.txt"), b"?").unwrap(),
            "extra.txt is not one of the artifact's files",
        ),
        (
            "missing chunk",
            |dir| std::fs::remove_file(dir.join("a.zarr/conv1/activations/c/0/0/0")).unwrap(),
            "a.zarr/conv1/activations/c/0/0/0 is missing",
        ),
        (
            "metadata",
            |dir| flip(&dir.join("a.zarr/conv1/activations/zarr.json"), 0),
            "a.zarr/conv1/activations/zarr.json does not match its blake3 digest",
        ),
    ];
    for (what, damage, problem) in cases {
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(cache.path()).unwrap();
        let artifact = artifact_with_files(&store);
        assert!(store.get(&spec(0.005)).unwrap().is_some());
        damage(&artifact.dir);
        for err in [
            store.get(&spec(0.005)).unwrap_err(),
            crate::Artifact::open(&artifact.dir).unwrap_err(),
        ] {
            let text = err.to_string();
            assert!(
                text.contains(&format!("the quantile artifact {}", artifact.key().short()))
                    && text.contains(problem)
                    && text.contains("netdissect verify --repair --cache"),
                "{what}: {text}"
            );
        }
        let problems = artifact.problems(crate::Level::Full, None, &|_| {});
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown, [problem], "{what}");
    }
}

/// A chunk's content is left to its own checksum when an artifact is opened (its size is
/// still checked), and checked by digest and by the chunk checker in a full check.
#[test]
fn chunks_are_checked_in_full_checks_only() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let artifact = artifact_with_files(&store);
    let chunk = "a.zarr/conv1/activations/c/0/0/0";
    flip(&artifact.dir.join(chunk), 5);
    assert!(store.get(&spec(0.005)).unwrap().is_some());
    let problems = artifact.problems(crate::Level::Full, None, &|_| {});
    assert_eq!(
        problems,
        [crate::Problem::Digest {
            file: chunk.to_owned()
        }]
    );
    let seen = std::sync::Mutex::new(Vec::new());
    let check = |file: &str, bytes: &[u8]| {
        seen.lock().unwrap().push((file.to_owned(), bytes.len()));
        Some("fails its crc32c checksum".to_owned())
    };
    let read = std::sync::atomic::AtomicU64::new(0);
    let problems = artifact.problems(crate::Level::Full, Some(&check), &|n| {
        read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(
        problems,
        [crate::Problem::Chunk {
            file: chunk.to_owned(),
            message: "fails its crc32c checksum".to_owned()
        }]
    );
    assert_eq!(*seen.lock().unwrap(), [(chunk.to_owned(), 11)]);
    assert_eq!(read.into_inner(), 23);
}

#[test]
fn entries_find_damaged_broken_and_old_artifacts_and_repairs_move_them_aside() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let artifact = artifact_with_files(&store);
    // A directory without a manifest, and an artifact of an older format.
    let broken = store.artifact_dir("segment", spec(0.01).key());
    std::fs::create_dir_all(&broken).unwrap();
    let old = store.artifact_dir("score", spec(0.02).key());
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        old.join(MANIFEST_FILE),
        r#"{"format": "netdissect-artifact-1", "stage": "score"}"#,
    )
    .unwrap();
    let entries = store.entries().unwrap();
    let kinds: Vec<String> = entries
        .iter()
        .map(|e| match e {
            crate::integrity::Entry::Artifact(a) => format!("artifact {}", a.manifest.stage),
            crate::integrity::Entry::Broken { stage, message, .. } => {
                format!("broken {stage}: {message}")
            }
            crate::integrity::Entry::Old { stage, format, .. } => format!("old {stage} {format}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "artifact quantile",
            "old score netdissect-artifact-1",
            "broken segment: no manifest.json: an incomplete artifact"
        ]
    );
    // Moving aside keeps every byte, under damaged/<stage>/<key>, and never overwrites.
    flip(&artifact.dir.join("table.parquet"), 0);
    let to = store.move_aside(&artifact.dir).unwrap();
    assert_eq!(
        to,
        store
            .root()
            .join("damaged/quantile")
            .join(artifact.key().to_string())
    );
    assert!(to.join("table.parquet").exists() && !artifact.dir.exists());
    assert!(store.get(&spec(0.005)).unwrap().is_none());
    let again = artifact_with_files(&store);
    let second = store.move_aside(&again.dir).unwrap();
    assert_eq!(
        second.file_name().unwrap().to_str().unwrap(),
        format!("{}.1", artifact.key())
    );
    // The moved artifacts are no longer entries of the cache.
    assert!(
        store
            .entries()
            .unwrap()
            .iter()
            .all(|e| !matches!(e, crate::integrity::Entry::Artifact(_)))
    );
}

#[test]
fn damage_inside_an_artifact_is_named_from_its_path() {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap();
    let artifact = artifact_with_files(&store);
    let found =
        crate::integrity::artifact_of(&artifact.dir.join("a.zarr/conv1/activations/c/0/0/0"))
            .unwrap();
    assert_eq!(
        (found.stage.as_str(), found.key, found.dir.as_path()),
        ("quantile", artifact.key(), artifact.dir.as_path())
    );
    assert_eq!(found.cache(), store.root());
    assert!(crate::integrity::artifact_of(std::path::Path::new("/tmp/x/y")).is_none());
}

fn flip(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &std::path::Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}
