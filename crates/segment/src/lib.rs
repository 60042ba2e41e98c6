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
//! let config = nd_segment::Config {
//!     upsample: nd_segment::Upsample::Bilinear,
//!     fields: Default::default(),
//!     progress: true,
//! };
//! let outcome = nd_segment::run(&store, &dataset, &activations, &thresholds, &config)?;
//! # Ok(()) }
//! ```

pub mod upsample;

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use nd_arrays::masks::{MASKS_DIR, MaskGroup, Run};
use nd_arrays::{ActivationGroup, LayerReader};
use rayon::prelude::*;
use serde_json::json;

use nd_arrays::fields::{Field, FieldChoice, Fields};
pub use upsample::Upsample;
use upsample::{Geometry, LayerPlacement, Scratch, hot_runs};

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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Config {
    pub upsample: Upsample,
    /// Where `receptive-field` upsampling takes each layer's field geometry from (the
    /// model's, recorded by the extract stage, unless chosen here); bilinear needs none.
    pub fields: Fields,
    /// Draw a progress bar on stderr (images done, layer after layer); changes no output.
    pub progress: bool,
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
    spec_placed(
        dataset,
        activations,
        thresholds,
        config,
        &placements(activations, config)?,
    )
}

/// [`spec`] with the layers' placements already resolved.
fn spec_placed(
    dataset: &nd_broden::Dataset,
    activations: &nd_store::Artifact,
    thresholds: &nd_store::Artifact,
    config: &Config,
    placements: &BTreeMap<String, LayerPlacement>,
) -> Result<nd_store::Spec> {
    let rows = activations.rows()?;
    let mut hasher = blake3::Hasher::new_derive_key("netdissect label sizes v1");
    for (h, w) in label_sizes(dataset, &rows)? {
        hasher.update(&(h as u64).to_le_bytes());
        hasher.update(&(w as u64).to_le_bytes());
    }
    let mut params = json!({ "upsample": config.upsample });
    if config.upsample == Upsample::ReceptiveField {
        // The fields used, whatever their source: a change of geometry reruns this stage
        // (and not the extraction).
        let fields: BTreeMap<&String, FieldChoice> = placements
            .iter()
            .map(|(layer, placement)| {
                let choice = match *placement {
                    LayerPlacement::Field { field, .. } => FieldChoice::Field(field),
                    LayerPlacement::Assumed(_) => FieldChoice::AssumeCentred,
                };
                (layer, choice)
            })
            .collect();
        params["fields"] = json!(fields);
    }
    Ok(nd_store::Spec::new(STAGE, SCHEMA, params)
        .input("activations", activations.key())
        .input("thresholds", thresholds.key())
        .digest("label-sizes", hasher.finalize().to_hex().to_string()))
}

/// How each layer of the activations is placed over the label maps: bilinear; or the
/// receptive-field centres of the field the configuration gives, else of the model's own
/// (recorded by the extract stage), else an error that says how to give one.
pub fn placements(
    activations: &nd_store::Artifact,
    config: &Config,
) -> Result<BTreeMap<String, LayerPlacement>> {
    config.fields.validate().map_err(Error::Input)?;
    let layers =
        ActivationGroup::open(&activations.dir.join(nd_arrays::ACTIVATIONS_DIR))?.layers()?;
    if config.upsample == Upsample::Bilinear {
        return Ok(layers
            .into_iter()
            .map(|l| (l, LayerPlacement::Assumed(Upsample::Bilinear)))
            .collect());
    }
    if let Fields::Overrides(given) = &config.fields
        && let Some(layer) = given.keys().find(|l| !layers.contains(l))
    {
        return Err(Error::Input(format!(
            "a field is given for layer `{layer}`, which the activations do not hold (they hold {})",
            layers.join(", ")
        )));
    }
    let outputs = &activations.manifest.outputs;
    let recorded: BTreeMap<String, Field> = match outputs.get("fields") {
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| {
            Error::Input(format!(
                "{}: its fields are not field maps: {e}",
                activations.manifest_path().display()
            ))
        })?,
        None => BTreeMap::new(),
    };
    let input = || -> Result<[usize; 2]> {
        serde_json::from_value::<[usize; 2]>(outputs["input_size"].clone()).map_err(|_| {
            Error::Input(format!(
                "{} records no model input size: extract again with this version",
                activations.manifest_path().display()
            ))
        })
    };
    let mut placed = BTreeMap::new();
    for layer in layers {
        let placement = match config.fields.choice(&layer) {
            Some(FieldChoice::AssumeCentred) => LayerPlacement::Assumed(Upsample::ReceptiveField),
            Some(FieldChoice::Field(field)) => LayerPlacement::Field {
                field,
                input: input()?,
            },
            None => match recorded.get(&layer) {
                Some(&field) => LayerPlacement::Field {
                    field,
                    input: input()?,
                },
                None => {
                    return Err(Error::Input(format!(
                        "receptive-field upsampling needs the field geometry of layer `{layer}`, and the model file does not hold it: {}",
                        nd_arrays::fields::how_to_give(&layer)
                    )));
                }
            },
        };
        placed.insert(layer, placement);
    }
    Ok(placed)
}

/// Says on stderr which layers' receptive-field centres are assumed mid-cell.
fn warn_assumed(placements: &BTreeMap<String, LayerPlacement>) {
    let assumed: Vec<&str> = placements
        .iter()
        .filter(|(_, p)| **p == LayerPlacement::Assumed(Upsample::ReceptiveField))
        .map(|(l, _)| l.as_str())
        .collect();
    if !assumed.is_empty() {
        eprintln!(
            "segment: warning: the receptive-field centres of {} are assumed mid-cell (s/2 + j·s), as chosen; \
             they are not the model's true geometry, so labels can differ from the original NetDissect's",
            assumed.join(", ")
        );
    }
}

pub use nd_store::Outcome;

/// The masks of some units of one image, flat: pair `p` is unit `units[p]` with the runs
/// `runs[ends[p - 1]..ends[p]]`.
#[derive(Debug, Default)]
struct ImageRuns {
    units: Vec<u32>,
    ends: Vec<usize>,
    runs: Vec<Run>,
}

impl ImageRuns {
    fn pairs(&self) -> impl Iterator<Item = (u32, &[Run])> {
        self.units.iter().enumerate().map(|(p, &unit)| {
            let start = if p == 0 { 0 } else { self.ends[p - 1] };
            (unit, &self.runs[start..self.ends[p]])
        })
    }
}

/// Appends the mask of one map to `out` as unit `unit`'s pair, unless it is empty.
fn map_mask(
    map: &[f32],
    geometry: &Geometry,
    threshold: f64,
    unit: u32,
    scratch: &mut Scratch,
    out: &mut ImageRuns,
) {
    let sw = geometry.label_width();
    let first = out.runs.len();
    let runs = &mut out.runs;
    hot_runs(map, geometry, threshold, scratch, |y, x0, x1| {
        let (start, length) = ((y * sw + x0) as u32, (x1 - x0) as u32);
        let this_map = runs.len() > first;
        match runs.last_mut() {
            // A run ending a row and one starting the next are one run.
            Some(last) if this_map && last.start + last.length == start => last.length += length,
            _ => runs.push(Run { start, length }),
        }
    });
    if out.runs.len() > first {
        out.units.push(unit);
        out.ends.push(out.runs.len());
    }
}

/// The masks of one decoded chunk (a block of images and units), image by image: only the
/// maps whose maximum exceeds their unit's threshold are upsampled (no blend exceeds its
/// inputs' maximum), and the extract stage stored every map's maximum.
fn chunk_masks(
    chunk: &nd_arrays::Chunk,
    maxima: &[f32],
    first_image: u64,
    n_units: usize,
    thresholds: &[f64],
    geometries: &[&Geometry],
) -> Vec<ImageRuns> {
    chunk
        .images
        .clone()
        .into_par_iter()
        .map_init(Scratch::default, |scratch, image| {
            let i = (image - first_image) as usize;
            let mut out = ImageRuns::default();
            for unit in chunk.units.clone() {
                let threshold = thresholds[unit as usize];
                if f64::from(maxima[i * n_units + unit as usize]) > threshold {
                    let map = chunk.map(image, unit);
                    map_mask(
                        map,
                        geometries[i],
                        threshold,
                        unit as u32,
                        scratch,
                        &mut out,
                    );
                }
            }
            out
        })
        .collect()
}

fn segment_layer(
    layer: &LayerReader,
    thresholds: &[f64],
    sizes: &[(usize, usize)],
    placement: &LayerPlacement,
    writer: &mut nd_arrays::masks::MaskWriter,
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let shape = layer.shape();
    let (h, w) = (shape.height as usize, shape.width as usize);
    let mut by_size: HashMap<(usize, usize), Geometry> = HashMap::new();
    for &(sh, sw) in sizes {
        by_size
            .entry((sh, sw))
            .or_insert_with(|| Geometry::new(placement, h, w, sh, sw));
    }
    let (chunk_images, chunk_units) = layer.chunk_extent();
    let n_units = shape.units as usize;
    let unit_chunks = shape.units.div_ceil(chunk_units);
    // Rows of chunks (a block of images, every unit) are masked in parallel, chunk by chunk
    // and image by image, while a thread writes the masks of the row before: a row at a
    // time bounds the memory.
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<ImageRuns>>>(1);
        let written = scope.spawn(move || -> Result<()> {
            for row in rx {
                let n_images = row.iter().map(Vec::len).max().unwrap_or(0);
                for i in 0..n_images {
                    writer.push_pairs(
                        row.iter()
                            .filter_map(|chunk| chunk.get(i))
                            .flat_map(ImageRuns::pairs),
                    )?;
                }
            }
            Ok(())
        });
        let computed = (|| -> Result<()> {
            for image_chunk in 0..shape.images.div_ceil(chunk_images) {
                let first = image_chunk * chunk_images;
                let images = first..(first + chunk_images).min(shape.images);
                let maxima = layer.read_max_images(images.clone())?;
                let geometries: Vec<&Geometry> = sizes[images.start as usize..images.end as usize]
                    .iter()
                    .map(|size| &by_size[size])
                    .collect();
                let row: Vec<Vec<ImageRuns>> = (0..unit_chunks)
                    .into_par_iter()
                    .map(|unit_chunk| -> Result<Vec<ImageRuns>> {
                        let units = unit_chunk * chunk_units
                            ..((unit_chunk + 1) * chunk_units).min(shape.units);
                        let any_hot = (0..images.end - images.start).any(|i| {
                            units.clone().any(|u| {
                                f64::from(maxima[i as usize * n_units + u as usize])
                                    > thresholds[u as usize]
                            })
                        });
                        if !any_hot {
                            // Nothing to decode: every image's masks are empty here.
                            return Ok((images.start..images.end)
                                .map(|_| ImageRuns::default())
                                .collect());
                        }
                        let chunk = layer.read_chunk(image_chunk, unit_chunk)?;
                        Ok(chunk_masks(
                            &chunk,
                            &maxima,
                            images.start,
                            n_units,
                            thresholds,
                            &geometries,
                        ))
                    })
                    .collect::<Result<_>>()?;
                progress.inc(images.end - images.start);
                if tx.send(row).is_err() {
                    // The writer stopped on an error, which its join reports.
                    break;
                }
            }
            Ok(())
        })();
        drop(tx);
        let written = written.join().expect("the mask writer panicked");
        computed.and(written)
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
    let placements = placements(activations, config)?;
    let spec = spec_placed(dataset, activations, thresholds, config, &placements)?;
    warn_assumed(&placements);
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
    let progress = nd_store::progress::bar(
        config.progress,
        (layers.len() * sizes.len()) as u64,
        "segment {bar:32} {pos}/{len} images × layers, {rate}, eta {eta}",
    );
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
        segment_layer(
            &layer,
            &values,
            &sizes,
            placements.get(name).ok_or_else(|| {
                Error::Input(format!(
                    "layer `{name}` of {} is not in its manifest",
                    activations.dir.display()
                ))
            })?,
            &mut writer,
            &progress,
        )?;
        let totals = writer.finish()?;
        summary.push(json!({
            "name": name,
            "units": layer.shape().units,
            "pairs": totals.pairs,
            "runs": totals.runs,
            "pixels": totals.pixels,
        }));
    }
    progress.finish_and_clear();
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
