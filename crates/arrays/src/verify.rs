//! Checking Zarr chunks' own checksums without decoding them, for `netdissect verify`.
//!
//! A chunk written with the `crc32c` codec as its last codec ends with the little-endian
//! crc32c of the bytes before it. [`ChunkChecker`] finds each chunk's array (the directory
//! above its `c/` key), reads the array's `zarr.json` once to see whether its last codec is
//! `crc32c`, and compares the checksum: a few GB/s, where decoding would decompress.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Checks the chunks of the Zarr arrays of one artifact directory.
pub struct ChunkChecker {
    dir: PathBuf,
    /// Per array directory (relative to `dir`): whether its chunks end with a crc32c, or
    /// why its metadata could not be read.
    arrays: Mutex<HashMap<String, Result<bool, String>>>,
}

impl ChunkChecker {
    pub fn new(dir: &std::path::Path) -> ChunkChecker {
        ChunkChecker {
            dir: dir.to_owned(),
            arrays: Mutex::new(HashMap::new()),
        }
    }

    /// What is wrong with the chunk file `relative` (a path under the artifact's directory,
    /// `/`-separated) whose bytes are `bytes`, if anything.
    pub fn check(&self, relative: &str, bytes: &[u8]) -> Option<String> {
        let Some((array, key)) = split_chunk_key(relative) else {
            return Some("not a chunk of a Zarr array (no `c/` chunk key)".to_owned());
        };
        let checksummed = {
            let mut arrays = self
                .arrays
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            arrays
                .entry(array.to_owned())
                .or_insert_with(|| ends_with_crc32c(&self.dir.join(array).join("zarr.json")))
                .clone()
        };
        let chunk = format!("chunk [{}]", key.replace('/', ", "));
        match checksummed {
            Err(message) => Some(format!("{chunk}: {message}")),
            Ok(false) => None,
            Ok(true) => crc32c_problem(bytes).map(|problem| format!("{chunk} {problem}")),
        }
    }
}

/// `a.zarr/conv1/activations/c/0/1/0/0` → (`a.zarr/conv1/activations`, `0/1/0/0`).
fn split_chunk_key(relative: &str) -> Option<(&str, &str)> {
    let at = relative.rfind("/c/")?;
    Some((&relative[..at], &relative[at + 3..]))
}

/// Whether the array whose metadata is at `path` ends its codecs with `crc32c`.
fn ends_with_crc32c(path: &std::path::Path) -> Result<bool, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read its array's {} ({e})", path.display()))?;
    let metadata: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("its array's {} is not JSON ({e})", path.display()))?;
    let codecs = metadata["codecs"]
        .as_array()
        .ok_or_else(|| format!("its array's {} lists no codecs", path.display()))?;
    Ok(codecs
        .last()
        .and_then(|codec| codec["name"].as_str())
        .is_some_and(|name| name == "crc32c"))
}

/// What is wrong with a chunk's trailing crc32c, if anything.
pub fn crc32c_problem(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 4 {
        return Some(format!(
            "has {} bytes, too few to hold its checksum",
            bytes.len()
        ));
    }
    let (data, stored) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(stored.try_into().expect("four bytes"));
    (crc32c::crc32c(data) != stored).then(|| "fails its crc32c checksum".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActivationGroup, LayerShape};

    #[test]
    fn chunks_pass_until_a_byte_flips() {
        let dir = tempfile::tempdir().unwrap();
        let group = ActivationGroup::create(&dir.path().join("activations.zarr")).unwrap();
        let shape = LayerShape {
            images: 3,
            units: 2,
            height: 4,
            width: 4,
        };
        let mut writer = group.create_layer("conv1", shape).unwrap();
        writer
            .push(&(0..96).map(|v| v as f32 * 0.5).collect::<Vec<_>>())
            .unwrap();
        writer.finish().unwrap();
        let checker = ChunkChecker::new(dir.path());
        let chunk = "activations.zarr/conv1/activations/c/0/0/0/0";
        let mut bytes = std::fs::read(dir.path().join(chunk)).unwrap();
        assert_eq!(checker.check(chunk, &bytes), None);
        let max = "activations.zarr/conv1/max/c/0/0";
        let max_bytes = std::fs::read(dir.path().join(max)).unwrap();
        assert_eq!(checker.check(max, &max_bytes), None);
        bytes[10] ^= 0x40;
        assert_eq!(
            checker.check(chunk, &bytes).as_deref(),
            Some("chunk [0, 0, 0, 0] fails its crc32c checksum")
        );
        assert_eq!(
            checker.check(chunk, &bytes[..2]).as_deref(),
            Some("chunk [0, 0, 0, 0] has 2 bytes, too few to hold its checksum")
        );
    }
}
