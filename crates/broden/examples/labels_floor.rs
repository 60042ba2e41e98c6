//! The label floor of the score stage: the time to decode every label map of a dataset
//! once, rows in parallel (what scoring must do at least, besides counting).
//!
//!     cargo run --release -p nd-broden --example labels_floor -- <dataset dir>

use std::time::Instant;

use rayon::prelude::*;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: labels_floor DATASET_DIR");
    let dataset = nd_broden::Dataset::open(std::path::Path::new(&dir), &Default::default())
        .expect("a Broden-format dataset");
    for _ in 0..3 {
        let started = Instant::now();
        let maps: usize = (0..dataset.len())
            .into_par_iter()
            .map(|row| {
                dataset
                    .read_labels(row)
                    .expect("readable labels")
                    .maps
                    .len()
            })
            .sum();
        let seconds = started.elapsed().as_secs_f64();
        println!("label floor: {maps} label maps in {seconds:.3} s");
    }
}
