//! What the cache's checksums cost an artifact, measured apart and in the pattern the
//! stages use them, on as many threads as the stages run:
//! - blake3: a commit reads every file of its artifact back from the page cache and hashes
//!   it (in parallel), beside the sync it always made. Timed: reading and hashing.
//! - crc32c: the writer of a Zarr chunk computes it over the compressed bytes it just made,
//!   and each reader over the bytes it just read, before decoding them. Timed: reading
//!   every chunk, and reading and checking every chunk; the difference is what the
//!   checksums add (the bytes are in cache when checked, as they are in the stages).
//!
//! Each figure is the minimum of five rounds; run it after one read of the artifact so
//! that the page cache holds it.
//!
//!     cargo run --release -p nd-arrays --example checksum_cost -- <cache>/<stage>/<key>

use std::time::Instant;

use rayon::prelude::*;

const ROUNDS: usize = 5;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: checksum_cost ARTIFACT_DIR");
    let artifact = nd_store::Artifact::open(std::path::Path::new(&dir)).expect("a whole artifact");
    let files: Vec<&String> = artifact.manifest.files.keys().collect();
    let chunks: Vec<&String> = files
        .iter()
        .copied()
        .filter(|name| nd_store::integrity::is_zarr_chunk(name))
        .collect();
    let size = |names: &[&String]| -> u64 {
        names
            .iter()
            .map(|name| artifact.manifest.files[*name].size)
            .sum()
    };
    let read = |name: &String| std::fs::read(artifact.dir.join(name)).expect("a readable file");

    let mut blake3_seconds = f64::INFINITY;
    let mut read_seconds = f64::INFINITY;
    let mut checked_seconds = f64::INFINITY;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let digests: Vec<blake3::Hash> = files
            .par_iter()
            .map(|name| blake3::hash(&read(name)))
            .collect();
        blake3_seconds = blake3_seconds.min(started.elapsed().as_secs_f64());
        for (name, digest) in files.iter().zip(&digests) {
            assert_eq!(
                digest.to_hex().as_str(),
                artifact.manifest.files[*name].blake3,
                "{name}"
            );
        }

        // Reading alone: touch one byte so the read is not optimised away.
        let started = Instant::now();
        let touched: u64 = chunks
            .par_iter()
            .map(|name| read(name).last().copied().unwrap_or(0) as u64)
            .sum();
        read_seconds = read_seconds.min(started.elapsed().as_secs_f64());
        std::hint::black_box(touched);

        let started = Instant::now();
        let failed = chunks
            .par_iter()
            .filter(|name| nd_arrays::verify::crc32c_problem(&read(name)).is_some())
            .count();
        checked_seconds = checked_seconds.min(started.elapsed().as_secs_f64());
        assert_eq!(failed, 0, "chunks fail their checksums");
    }
    println!(
        "checksums: blake3 of {} bytes, each file read back, in {blake3_seconds:.4} s; crc32c \
         of {} chunk bytes: reading them took {read_seconds:.4} s, reading and checking them \
         {checked_seconds:.4} s ({} threads)",
        size(&files),
        size(&chunks),
        rayon::current_num_threads()
    );
}
