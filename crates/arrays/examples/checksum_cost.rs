//! What the cache's checksums cost an artifact, measured apart: hashing every file with
//! blake3 (what a commit adds to the sync it always made: it reads each file back from the
//! page cache; in parallel, as the commit does) and computing the crc32c of every Zarr
//! chunk (what the writer adds to each chunk, and each reader to each chunk it decodes;
//! one thread, as each chunk is checked by the thread that decodes it). Files are read
//! into memory first, so only the checksums are timed.
//!
//!     cargo run --release -p nd-arrays --example checksum_cost -- <cache>/<stage>/<key>

use std::time::Instant;

use rayon::prelude::*;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: checksum_cost ARTIFACT_DIR");
    let artifact = nd_store::Artifact::open(std::path::Path::new(&dir)).expect("a whole artifact");
    let files: Vec<(String, Vec<u8>)> = artifact
        .manifest
        .files
        .keys()
        .map(|name| {
            let bytes = std::fs::read(artifact.dir.join(name)).expect("a readable file");
            (name.clone(), bytes)
        })
        .collect();
    let bytes: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
    let chunk_bytes: u64 = files
        .iter()
        .filter(|(name, _)| nd_store::integrity::is_zarr_chunk(name))
        .map(|(_, b)| b.len() as u64)
        .sum();

    let started = Instant::now();
    let digests: Vec<blake3::Hash> = files.par_iter().map(|(_, b)| blake3::hash(b)).collect();
    let blake3_seconds = started.elapsed().as_secs_f64();
    for ((name, _), digest) in files.iter().zip(&digests) {
        assert_eq!(
            digest.to_hex().as_str(),
            artifact.manifest.files[name].blake3,
            "{name}"
        );
    }

    let started = Instant::now();
    let mut failed = 0;
    for (name, b) in &files {
        if nd_store::integrity::is_zarr_chunk(name)
            && nd_arrays::verify::crc32c_problem(b).is_some()
        {
            failed += 1;
        }
    }
    let crc_seconds = started.elapsed().as_secs_f64();
    assert_eq!(failed, 0, "chunks fail their checksums");
    println!(
        "checksums: blake3 of {bytes} bytes in {blake3_seconds:.4} s ({} threads); crc32c of \
         {chunk_bytes} chunk bytes in {crc_seconds:.4} s (one thread)",
        rayon::current_num_threads()
    );
}
