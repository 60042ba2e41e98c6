//! The read floor of the stages after extract: the time to decompress every activation of
//! an extract artifact once, a column of chunks at a time in parallel (what quantile and
//! segment each must do at least), with nothing computed on the values: chunk by chunk
//! into the decoder's buffer (`LayerReader::read_chunk`, what segment does), and with
//! `--copy` through subset reads, which copy each chunk into the block returned.
//!
//!     cargo run --release -p nd-arrays --example read_floor -- <cache>/extract/<key> [--copy]

use std::time::Instant;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: read_floor EXTRACT_ARTIFACT_DIR [--copy]");
    let copy = std::env::args().nth(2).is_some_and(|a| a == "--copy");
    let group = nd_arrays::ActivationGroup::open(
        &std::path::Path::new(&dir).join(nd_arrays::ACTIVATIONS_DIR),
    )
    .expect("an extract artifact");
    let started = Instant::now();
    let mut values = 0u64;
    for name in group.layers().expect("layers") {
        let layer = group.open_layer(&name).expect("a layer");
        let shape = layer.shape();
        let (chunk_images, chunk_units) = layer.chunk_extent();
        let columns: Vec<u64> = (0..shape.units).step_by(chunk_units as usize).collect();
        let per_column: Vec<u64> = std::thread::scope(|scope| {
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (layer, columns) = (&layer, &columns);
                    scope.spawn(move || {
                        let mut n = 0u64;
                        for &u0 in columns.iter().skip(w).step_by(workers) {
                            let units = u0..(u0 + chunk_units).min(shape.units);
                            for i0 in (0..shape.images).step_by(chunk_images as usize) {
                                let images = i0..(i0 + chunk_images).min(shape.images);
                                n += if copy {
                                    layer.read(images, units.clone()).expect("read").len() as u64
                                } else {
                                    let chunk = layer
                                        .read_chunk(i0 / chunk_images, u0 / chunk_units)
                                        .expect("read");
                                    (images.end - images.start)
                                        * (units.end - units.start)
                                        * chunk.map(images.start, units.start).len() as u64
                                };
                            }
                        }
                        n
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a worker"))
                .collect()
        });
        values += per_column.iter().sum::<u64>();
    }
    let seconds = started.elapsed().as_secs_f64();
    let how = if copy { "subset reads" } else { "whole chunks" };
    println!("read floor ({how}): {values} values in {seconds:.3} s");
}
