//! The score stage: over the whole dataset, count every unit's mask pixels against every
//! concept's pixels and score each unit/concept pair by intersection over union.
//!
//! Counts (METHOD §3.4), summed over images in integers ([`Counts`]):
//! `truth[c]`, pixels labelled `c` (an image-level label adds the whole label map);
//! `inter[k, c]`, mask pixels of unit `k` carrying `c`; `act[k, cat]`, mask pixels of `k`
//! counting towards category `cat`, by the [`Denominator`] rule.
//! Then `IoU[k, c] = inter[k, c] / (act[k, primary(c)] + truth[c] − inter[k, c])`, 0 when the
//! denominator is 0 (the references add 1e-10 instead; the difference is below 1e-15).
//!
//! Images are read and counted in parallel, each giving a sparse contribution that is added
//! in image order; [`Counts::merge`] adds the counts of disjoint image sets.
//!
//! Invariant: scoring never reads images or activations, only masks and labels.

pub mod counts;

use nd_arrays::masks::{ImageMasks, MASKS_DIR, MaskGroup, MaskReader};
use nd_tables::scores::{self, ActivationRow, Row};
use rayon::prelude::*;
use serde_json::json;

pub use counts::{Counts, Denominator, count_image};

pub const STAGE: &str = "score";
pub const SCHEMA: u32 = 1;
/// Images counted per block: masks are read a block at a time.
const BLOCK: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dataset(#[from] nd_broden::Error),
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
    pub denominator: Denominator,
}

fn masks_rows(masks: &nd_store::Artifact) -> Result<std::ops::Range<usize>> {
    let rows = &masks.manifest.outputs["rows"];
    match (rows[0].as_u64(), rows[1].as_u64()) {
        (Some(a), Some(b)) => Ok(a as usize..b as usize),
        _ => Err(Error::Input(format!(
            "{}: not a segment artifact (no rows)",
            masks.dir.display()
        ))),
    }
}

/// The layers of a segment artifact with their numbers of units.
fn masks_layers(masks: &nd_store::Artifact) -> Result<Vec<(String, usize)>> {
    let missing = || {
        Error::Input(format!(
            "{}: not a segment artifact (no layers)",
            masks.dir.display()
        ))
    };
    masks.manifest.outputs["layers"]
        .as_array()
        .ok_or_else(missing)?
        .iter()
        .map(|l| match (l["name"].as_str(), l["units"].as_u64()) {
            (Some(name), Some(units)) => Ok((name.to_owned(), units as usize)),
            _ => Err(missing()),
        })
        .collect()
}

/// The store spec: the masks, the denominator, the loaded categories, and the content of
/// the label maps and tables of the rows scored (never the images).
pub fn spec(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    masks: &nd_store::Artifact,
    config: &Config,
) -> Result<nd_store::Spec> {
    let rows = masks_rows(masks)?;
    if rows.end > dataset.len() {
        return Err(Error::Input(format!(
            "the masks cover rows {}..{} but the dataset has {} rows: is it the same dataset?",
            rows.start,
            rows.end,
            dataset.len()
        )));
    }
    let mut files: Vec<String> = dataset.metadata_files().to_vec();
    for row in rows.clone() {
        files.extend(dataset.label_map_files(row));
    }
    let digest = store.digest_files(dataset.root(), &files)?;
    let categories: Vec<&str> = dataset
        .categories()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    Ok(nd_store::Spec::new(
        STAGE,
        SCHEMA,
        json!({ "denominator": config.denominator, "categories": categories }),
    )
    .input("masks", masks.key())
    .digest("labels", digest))
}

/// Counts every image of a segment artifact.
pub fn count(
    dataset: &nd_broden::Dataset,
    masks: &nd_store::Artifact,
    config: &Config,
) -> Result<Counts> {
    let rows = masks_rows(masks)?;
    let group = MaskGroup::open(&masks.dir.join(MASKS_DIR))?;
    let units = masks_layers(masks)?;
    let names: Vec<String> = units.iter().map(|(n, _)| n.clone()).collect();
    let readers: Vec<MaskReader> = names
        .iter()
        .map(|n| group.open_layer(n))
        .collect::<nd_arrays::Result<_>>()?;
    let n_categories = dataset.categories().len();
    let primary: Vec<usize> = (0..dataset.n_labels() as u32)
        .map(|n| dataset.primary_category(n))
        .collect();
    let mut counts = Counts::new(dataset.n_labels(), n_categories, &units);
    for block in (0..rows.len()).step_by(BLOCK) {
        let images = block as u64..(block + BLOCK).min(rows.len()) as u64;
        // Read layer by layer (one column of arrays at a time), then regroup by image.
        let mut by_image: Vec<Vec<ImageMasks>> =
            (images.start..images.end).map(|_| Vec::new()).collect();
        for reader in &readers {
            for (slot, masks) in by_image.iter_mut().zip(reader.read_images(images.clone())?) {
                slot.push(masks);
            }
        }
        let per_image: Vec<counts::ImageCounts> = by_image
            .into_par_iter()
            .enumerate()
            .map(|(i, masks)| {
                let image = images.start + i as u64;
                let labels = dataset.read_labels(rows.start + image as usize)?;
                check_sizes(
                    &labels,
                    &masks,
                    &names,
                    rows.start + image as usize,
                    dataset,
                )?;
                Ok(count_image(
                    &labels,
                    &masks,
                    &primary,
                    n_categories,
                    config.denominator,
                ))
            })
            .collect::<Result<_>>()?;
        for image in &per_image {
            image.add_to(&mut counts);
        }
    }
    Ok(counts)
}

fn check_sizes(
    labels: &nd_broden::RowLabels,
    masks: &[ImageMasks],
    names: &[String],
    row: usize,
    dataset: &nd_broden::Dataset,
) -> Result<()> {
    let area = labels.height as u64 * labels.width as u64;
    for (layer, masks) in names.iter().zip(masks) {
        for (unit, runs) in masks {
            if runs
                .last()
                .is_some_and(|r| u64::from(r.start) + u64::from(r.length) > area)
            {
                return Err(Error::Input(format!(
                    "layer `{layer}` unit {unit}: the mask of {} (index.csv line {}) is larger than its {}×{} label map: \
                     were the masks made for this dataset?",
                    dataset.image_file(row),
                    dataset.rows()[row].line,
                    labels.height,
                    labels.width
                )));
            }
        }
    }
    Ok(())
}

/// `inter / (act + truth − inter)`, 0 for an empty denominator.
pub fn iou(inter: u64, act: u64, truth: u64) -> f64 {
    let denominator = act + truth - inter;
    if denominator == 0 {
        0.0
    } else {
        inter as f64 / denominator as f64
    }
}

/// The score rows of every layer: each label a unit intersects, plus the best label of
/// every category (highest IoU, the smallest label number on ties).
pub fn score_rows(dataset: &nd_broden::Dataset, counts: &Counts) -> Vec<Row> {
    let n_labels = counts.n_labels;
    let n_categories = counts.n_categories;
    let primary: Vec<usize> = (0..n_labels as u32)
        .map(|n| dataset.primary_category(n))
        .collect();
    // Label 0 is a concept with an empty name, in the last category (as in both references).
    let candidates: Vec<Vec<u32>> = (0..n_categories)
        .map(|c| {
            (0..n_labels as u32)
                .filter(|&n| primary[n as usize] == c && (n == 0 || dataset.label(n).is_some()))
                .collect()
        })
        .collect();
    let category_names: Vec<&str> = dataset
        .categories()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let mut out = Vec::new();
    for layer in &counts.layers {
        for unit in 0..layer.units {
            let inter = &layer.inter[unit * n_labels..(unit + 1) * n_labels];
            let act = &layer.act[unit * n_categories..(unit + 1) * n_categories];
            let score = |label: u32| {
                let l = label as usize;
                iou(inter[l], act[primary[l]], counts.truth[l])
            };
            let mut keep = vec![false; n_labels];
            for (l, &n) in inter.iter().enumerate() {
                keep[l] = n > 0;
            }
            for labels in &candidates {
                let mut best: Option<(u32, f64)> = None;
                for &label in labels {
                    let s = score(label);
                    if best.is_none_or(|(_, b)| s > b) {
                        best = Some((label, s));
                    }
                }
                if let Some((label, _)) = best {
                    keep[label as usize] = true;
                }
            }
            for (l, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                out.push(Row {
                    layer: layer.name.clone(),
                    unit: unit as u32,
                    label: l as u32,
                    name: dataset.label_name(l as u32).to_owned(),
                    category: category_names[primary[l]].to_owned(),
                    truth: counts.truth[l],
                    activation: act[primary[l]],
                    intersect: inter[l],
                    iou: score(l as u32),
                });
            }
        }
    }
    out
}

pub use nd_store::Outcome;

/// Scores a segment artifact through the store.
pub fn run(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    masks: &nd_store::Artifact,
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(store, dataset, masks, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let counts = count(dataset, masks, config)?;
    let rows = score_rows(dataset, &counts);
    let pending = store.begin(&spec)?;
    let metadata = pending.table_metadata();
    scores::write_rows(&pending.dir().join(scores::FILE), &rows, &metadata)?;
    scores::write_truth(
        &pending.dir().join(scores::TRUTH_FILE),
        &counts.truth,
        &metadata,
    )?;
    let categories: Vec<&str> = dataset
        .categories()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let mut activation = Vec::new();
    for layer in &counts.layers {
        for unit in 0..layer.units {
            for (c, name) in categories.iter().enumerate() {
                activation.push(ActivationRow {
                    layer: layer.name.clone(),
                    unit: unit as u32,
                    category: (*name).to_owned(),
                    activation: layer.act[unit * counts.n_categories + c],
                    pixels: layer.pixels[unit],
                });
            }
        }
    }
    scores::write_activation(
        &pending.dir().join(scores::ACTIVATION_FILE),
        &activation,
        &metadata,
    )?;
    let outputs = json!({
        "scores": scores::FILE,
        "truth": scores::TRUTH_FILE,
        "activation": scores::ACTIVATION_FILE,
        "rows": masks.manifest.outputs["rows"],
        "layers": counts.layers.iter().map(|l| json!({"name": l.name, "units": l.units})).collect::<Vec<_>>(),
        "categories": categories,
    });
    let versions = nd_store::versions();
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}
