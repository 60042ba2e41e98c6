//! The compute of the segment stage alone: every map above its unit's threshold is read
//! into memory first, then masked by `hot_runs` on one thread, timed, with nothing read or
//! written meanwhile. It prints the time per map and a checksum of the runs, so a change to
//! `hot_runs` can be timed and checked for the same masks.
//!
//!     cargo run --release -p nd-segment --example hot_runs -- \
//!         <cache>/extract/<key> <cache>/quantile/<key> LABEL_HEIGHT LABEL_WIDTH

use std::time::Instant;

use nd_segment::upsample::{Geometry, LayerPlacement, Scratch, Upsample, hot_runs};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert!(
        args.len() == 5,
        "usage: hot_runs EXTRACT_DIR QUANTILE_DIR LABEL_HEIGHT LABEL_WIDTH"
    );
    let (sh, sw): (usize, usize) = (args[3].parse().unwrap(), args[4].parse().unwrap());
    let group = nd_arrays::ActivationGroup::open(
        &std::path::Path::new(&args[1]).join(nd_arrays::ACTIVATIONS_DIR),
    )
    .expect("an extract artifact");
    let thresholds = nd_tables::thresholds::read_rows(
        &std::path::Path::new(&args[2]).join(nd_tables::thresholds::FILE),
    )
    .expect("a quantile artifact");
    let mut total = (0u64, 0f64, 0u64);
    for name in group.layers().expect("layers") {
        let layer = group.open_layer(&name).expect("a layer");
        let shape = layer.shape();
        let mut t = vec![0.0; shape.units as usize];
        for row in thresholds.iter().filter(|r| r.layer == name) {
            t[row.unit as usize] = row.threshold;
        }
        let (chunk_images, chunk_units) = layer.chunk_extent();
        let maxima = layer.read_max().expect("maxima");
        let mut maps: Vec<(f64, Vec<f32>)> = Vec::new();
        for ic in 0..shape.images.div_ceil(chunk_images) {
            for uc in 0..shape.units.div_ceil(chunk_units) {
                let chunk = layer.read_chunk(ic, uc).expect("a chunk");
                for image in chunk.images.clone() {
                    for unit in chunk.units.clone() {
                        let threshold = t[unit as usize];
                        if f64::from(maxima[(image * shape.units + unit) as usize]) > threshold {
                            maps.push((threshold, chunk.map(image, unit).to_vec()));
                        }
                    }
                }
            }
        }
        let geometry = Geometry::new(
            &LayerPlacement::Assumed(Upsample::Bilinear),
            shape.height as usize,
            shape.width as usize,
            sh,
            sw,
        );
        let mut scratch = Scratch::default();
        let (mut runs, mut pixels) = (0u64, 0u64);
        let started = Instant::now();
        for (threshold, map) in &maps {
            hot_runs(map, &geometry, *threshold, &mut scratch, |y, x0, x1| {
                runs += 1;
                pixels += (y * sw + x0) as u64 * 31 + (x1 - x0) as u64;
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{name}: {} hot maps of {}×{}: {seconds:.3} s, {:.0} ns a map; {runs} runs, checksum {pixels}",
            maps.len(),
            shape.height,
            shape.width,
            seconds * 1e9 / maps.len() as f64
        );
        total = (
            total.0 + maps.len() as u64,
            total.1 + seconds,
            total.2 + runs,
        );
    }
    println!("all: {} maps, {:.3} s, {} runs", total.0, total.1, total.2);
}
