//! The segment stage: for every image and unit, upsample the unit's activation map to the
//! image's label resolution and keep the pixels strictly above the unit's threshold.
//!
//! Image/unit pairs whose map never exceeds the threshold are skipped without upsampling
//! (neither upsampling ever exceeds its input's maximum), and within a map only the output
//! rows that read an input row above the threshold are computed. Values are interpolated
//! in float64 and compared with the float64 threshold. Masks are written run-length
//! encoded ([`nd_arrays::masks`]), image after image; images are processed in parallel.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (store, dataset, activations, thresholds): (nd_store::Store, nd_broden::Dataset, nd_store::Artifact, nd_store::Artifact) = todo!();
//! let config = nd_segment::Config { upsample: nd_segment::Upsample::Bilinear };
//! let outcome = nd_segment::run(&store, &dataset, &activations, &thresholds, &config)?;
//! # Ok(()) }
//! ```

pub mod upsample;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use nd_arrays::masks::{ImageMasks, MASKS_DIR, MaskGroup, Run};
use nd_arrays::{ActivationGroup, LayerReader};
use rayon::prelude::*;
use serde_json::json;

pub use upsample::Upsample;
use upsample::{Tap, hot_runs, taps};

pub const STAGE: &str = "segment";
pub const SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Arrays(#[from] nd_arrays::Error),
    #[error(transparent)]
    Tables(#[from] nd_tables::Error),
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Config {
    pub upsample: Upsample,
}

/// The label-map sizes of the rows, which set the masks' sizes.
fn label_sizes(dataset: &nd_broden::Dataset, rows: &Range<usize>) -> Result<Vec<(usize, usize)>> {
    if rows.end > dataset.len() {
        return Err(Error::Input(format!(
            "the activations cover rows {}..{} but the dataset has {} rows: is it the same dataset?",
            rows.start,
            rows.end,
            dataset.len()
        )));
    }
    Ok(dataset.rows()[rows.clone()]
        .iter()
        .map(|r| (r.label_height as usize, r.label_width as usize))
        .collect())
}

pub fn spec(
    dataset: &nd_broden::Dataset,
    activations: &nd_store::Artifact,
    thresholds: &nd_store::Artifact,
    config: &Config,
) -> Result<nd_store::Spec> {
    let rows = activations.rows()?;
    let mut hasher = blake3::Hasher::new_derive_key("netdissect label sizes v1");
    for (h, w) in label_sizes(dataset, &rows)? {
        hasher.update(&(h as u64).to_le_bytes());
        hasher.update(&(w as u64).to_le_bytes());
    }
    Ok(
        nd_store::Spec::new(STAGE, SCHEMA, json!({ "upsample": config.upsample }))
            .input("activations", activations.key())
            .input("thresholds", thresholds.key())
            .digest("label-sizes", hasher.finalize().to_hex().to_string()),
    )
}

pub use nd_store::Outcome;

/// The masks of one image for every unit: `data` is the image's `units × h × w` values.
pub fn image_masks(
    data: &[f32],
    h: usize,
    w: usize,
    thresholds: &[f64],
    rows: &[Tap],
    columns: &[Tap],
) -> ImageMasks {
    let per_map = h * w;
    let sw = columns.len();
    let mut out = ImageMasks::new();
    for (unit, (map, &threshold)) in data.chunks_exact(per_map).zip(thresholds).enumerate() {
        if !map.iter().any(|&v| f64::from(v) > threshold) {
            continue;
        }
        let mut runs: Vec<Run> = Vec::new();
        hot_runs(map, w, rows, columns, threshold, |y, x0, x1| {
            let (start, length) = ((y * sw + x0) as u32, (x1 - x0) as u32);
            match runs.last_mut() {
                // A run ending a row and one starting the next are one run.
                Some(last) if last.start + last.length == start => last.length += length,
                _ => runs.push(Run { start, length }),
            }
        });
        if !runs.is_empty() {
            out.push((unit as u32, runs));
        }
    }
    out
}

fn segment_layer(
    layer: &LayerReader,
    thresholds: &[f64],
    sizes: &[(usize, usize)],
    mode: Upsample,
    writer: &mut nd_arrays::masks::MaskWriter,
) -> Result<()> {
    let shape = layer.shape();
    let (h, w) = (shape.height as usize, shape.width as usize);
    let mut tap_cache: HashMap<(usize, usize), (Vec<Tap>, Vec<Tap>)> = HashMap::new();
    for &(sh, sw) in sizes {
        tap_cache
            .entry((sh, sw))
            .or_insert_with(|| (taps(mode, h, sh), taps(mode, w, sw)));
    }
    let (chunk_images, _) = layer.chunk_extent();
    let per_image = shape.per_image();
    // Reading (decompressing) the next row of chunks overlaps with computing and writing
    // the masks of this one; one row in flight bounds the memory.
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(Range<u64>, Vec<f32>)>>(1);
        scope.spawn(move || {
            for i0 in (0..shape.images).step_by(chunk_images as usize) {
                let images = i0..(i0 + chunk_images).min(shape.images);
                let data = layer
                    .read(images.clone(), 0..shape.units)
                    .map_err(Error::from);
                let failed = data.is_err();
                if tx.send(data.map(|d| (images, d))).is_err() || failed {
                    break;
                }
            }
        });
        for read in rx {
            let (images, data) = read?;
            let masks: Vec<ImageMasks> = data
                .par_chunks_exact(per_image)
                .enumerate()
                .map(|(i, values)| {
                    let image = images.start as usize + i;
                    let (rows, columns) = &tap_cache[&sizes[image]];
                    image_masks(values, h, w, thresholds, rows, columns)
                })
                .collect();
            for m in &masks {
                writer.push(m)?;
            }
        }
        Ok(())
    })
}

/// Segments every layer of an extract artifact with the thresholds of a quantile artifact.
pub fn run(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    activations: &nd_store::Artifact,
    thresholds: &nd_store::Artifact,
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(dataset, activations, thresholds, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let rows = activations.rows()?;
    let sizes = label_sizes(dataset, &rows)?;
    let table =
        nd_tables::thresholds::read_rows(&thresholds.dir.join(nd_tables::thresholds::FILE))?;
    let mut by_layer: BTreeMap<&str, Vec<(u32, f64)>> = BTreeMap::new();
    for row in &table {
        by_layer
            .entry(row.layer.as_str())
            .or_default()
            .push((row.unit, row.threshold));
    }
    let group = ActivationGroup::open(&activations.dir.join(nd_arrays::ACTIVATIONS_DIR))?;
    let layers = group.layers()?;
    let pending = store.begin(&spec)?;
    let masks = MaskGroup::create(&pending.dir().join(MASKS_DIR))?;
    let mut summary = Vec::new();
    for name in &layers {
        let layer = group.open_layer(name)?;
        let mut units = by_layer.remove(name.as_str()).unwrap_or_default();
        units.sort_by_key(|(u, _)| *u);
        let expected: Vec<u32> = (0..layer.shape().units as u32).collect();
        if units.iter().map(|(u, _)| *u).collect::<Vec<_>>() != expected {
            return Err(Error::Input(format!(
                "the thresholds {} do not cover the {} units of layer `{name}`: were they computed from these activations?",
                thresholds.dir.display(),
                layer.shape().units
            )));
        }
        let values: Vec<f64> = units.iter().map(|(_, t)| *t).collect();
        if layer.shape().images as usize != sizes.len() {
            return Err(Error::Input(format!(
                "layer `{name}` has {} images but the artifact covers {} rows",
                layer.shape().images,
                sizes.len()
            )));
        }
        let mut writer = masks.create_layer(name)?;
        segment_layer(&layer, &values, &sizes, config.upsample, &mut writer)?;
        let totals = writer.finish()?;
        summary.push(json!({
            "name": name,
            "units": layer.shape().units,
            "pairs": totals.pairs,
            "runs": totals.runs,
            "pixels": totals.pixels,
        }));
    }
    let outputs = json!({
        "masks": MASKS_DIR,
        "rows": [rows.start, rows.end],
        "layers": summary,
    });
    let versions = nd_store::versions();
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// The layers of a segment artifact, in order.
pub fn layers(masks: &nd_store::Artifact) -> Result<Vec<String>> {
    let layers = masks.manifest.outputs["layers"].as_array().ok_or_else(|| {
        Error::Input(format!(
            "{}: the manifest lists no layers",
            masks.dir.display()
        ))
    })?;
    Ok(layers
        .iter()
        .filter_map(|l| l["name"].as_str().map(str::to_owned))
        .collect())
}
