//! The score stage: over the whole dataset, count every unit's mask pixels against every
//! concept's pixels and score each unit/concept pair by intersection over union.
//!
//! Counts (METHOD §3.4), summed over images in integers ([`Counts`]):
//! `truth[c]`, pixels labelled `c` (an image-level label adds the whole label map);
//! `inter[k, c]`, mask pixels of unit `k` carrying `c`; `act[k, cat]`, mask pixels of `k`
//! counting towards category `cat`, by the [`Denominator`] rule.
//! Then `IoU[k, c] = inter[k, c] / (act[k, primary(c)] + truth[c] − inter[k, c])`, 0 when the
//! denominator is 0 (the references add 1e-10 instead; the difference is below 1e-15).
//! With the `original` denominator, as in the original's code, label 0 (an image-level
//! item naming no concept) has no activation term (`IoU[k, 0] = inter / (truth − inter)`,
//! and `scores.parquet` gives it an activation of 0), and a label given twice among one
//! image's image-level items counts once.
//!
//! Images are read and counted in parallel ([`Counter`]: each pixel of a mask is visited
//! once, whatever the number of label maps), each worker into counts of its own, which are
//! then summed; [`Counts::merge`] adds the counts of disjoint image sets, so the order
//! never changes a count.
//!
//! Invariant: scoring never reads images or activations, only masks and labels.

pub mod counts;

use nd_arrays::masks::{MASKS_DIR, MaskBlock, MaskGroup, MaskReader, Run};
use nd_tables::scores::{self, ActivationRow, RowRef};
use rayon::prelude::*;
use serde_json::json;

pub use counts::{Counter, Counts, Denominator, Dropped};

pub const STAGE: &str = "score";
pub const SCHEMA: u32 = 1;
/// Images counted per block: masks are read a block at a time, and a block is what one
/// worker counts at once.
const BLOCK: usize = 64;

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
    /// The original's tally depth, reproduced (a compatibility setting, `original`
    /// denominator only): at most this many entries an image and layer, the smallest
    /// intersections dropped ([`Counter::with_tally_depth`]). `None`: exact counts.
    pub tally_depth: Option<usize>,
}

impl Config {
    /// Fails on a tally depth of 0, or with the lite denominator (the truncation is the
    /// original's; NetDissect-Lite counts exactly).
    pub fn validate(&self) -> Result<()> {
        match (self.tally_depth, self.denominator) {
            (Some(0), _) => Err(Error::Input(
                "the tally depth must be at least 1 (the original's scripts use 2048)".into(),
            )),
            (Some(_), Denominator::Lite) => Err(Error::Input(
                "a tally depth reproduces the original's truncated tally: use it with the original denominator \
                 (NetDissect-Lite counts exactly)"
                    .into(),
            )),
            _ => Ok(()),
        }
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
    config.validate()?;
    let rows = masks.rows()?;
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
    let mut params = json!({ "denominator": config.denominator, "categories": categories });
    if let Some(depth) = config.tally_depth {
        params["tally_depth"] = json!(depth);
    }
    Ok(nd_store::Spec::new(STAGE, SCHEMA, params)
        .input("masks", masks.key())
        .digest("labels", digest))
}

/// Counts every image of a segment artifact.
///
/// A thread reads the masks in blocks of images, in order (so each compressed chunk is
/// decoded once), while the workers decode each block's label maps and count its images,
/// each into counts of its own; the integer counts are then summed, which gives the same
/// counts in any order.
pub fn count(
    dataset: &nd_broden::Dataset,
    masks: &nd_store::Artifact,
    config: &Config,
) -> Result<Counts> {
    let rows = masks.rows()?;
    let group = MaskGroup::open(&masks.dir.join(MASKS_DIR))?;
    let units = masks_layers(masks)?;
    let names: Vec<String> = units.iter().map(|(n, _)| n.clone()).collect();
    let readers: Vec<MaskReader> = names
        .iter()
        .map(|n| group.open_layer(n))
        .collect::<nd_arrays::Result<_>>()?;
    for (reader, name) in readers.iter().zip(&names) {
        if reader.images() != rows.len() as u64 {
            return Err(Error::Input(format!(
                "{}: layer `{name}` has masks of {} images, the artifact covers {} rows",
                masks.dir.display(),
                reader.images(),
                rows.len()
            )));
        }
    }
    let n_categories = dataset.categories().len();
    let primary: Vec<usize> = (0..dataset.n_labels() as u32)
        .map(|n| dataset.primary_category(n))
        .collect();
    let n_images = rows.len() as u64;
    std::thread::scope(|scope| -> Result<Counts> {
        // Two blocks in flight: one being counted, one read ahead.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(u64, Vec<MaskBlock>)>>(2);
        let readers = &readers;
        scope.spawn(move || {
            for start in (0..n_images).step_by(BLOCK) {
                let images = start..(start + BLOCK as u64).min(n_images);
                let block: Result<Vec<MaskBlock>> = readers
                    .iter()
                    .map(|r| r.read_block(images.clone()).map_err(Error::from))
                    .collect();
                let failed = block.is_err();
                if tx.send(block.map(|b| (start, b))).is_err() || failed {
                    break;
                }
            }
        });
        let new_counter = || {
            Counter::new(&primary, n_categories, &units, config.denominator)
                .with_tally_depth(config.tally_depth)
        };
        // Each worker keeps its counts and the first (lowest-row) error it met.
        type Partial<'a> = (Counter<'a>, Option<(usize, Error)>);
        let keep_first = |failure: &mut Option<(usize, Error)>, row: usize, e: Error| {
            if failure.as_ref().is_none_or(|(r, _)| row < *r) {
                *failure = Some((row, e));
            }
        };
        let (counter, failure) = rx
            .into_iter()
            .par_bridge()
            .fold(
                || (new_counter(), None),
                |(mut counter, mut failure): Partial, block| {
                    let (start, blocks) = match block {
                        Ok(block) => block,
                        Err(e) => {
                            keep_first(&mut failure, usize::MAX, e);
                            return (counter, failure);
                        }
                    };
                    let n = blocks.first().map_or(0, MaskBlock::len);
                    // The block's label maps are decoded in parallel, then counted.
                    let decoded: Vec<Result<nd_broden::RowLabels>> = (0..n)
                        .into_par_iter()
                        .map(|i| {
                            let row = rows.start + start as usize + i;
                            let labels = dataset.read_labels(row)?;
                            let image: Vec<_> = blocks.iter().map(|b| b.image(i)).collect();
                            check_sizes(&labels, &image, &names, row, dataset)?;
                            Ok(labels)
                        })
                        .collect();
                    for (i, labels) in decoded.into_iter().enumerate() {
                        let row = rows.start + start as usize + i;
                        match labels {
                            Ok(labels) => {
                                let image: Vec<_> = blocks.iter().map(|b| b.image(i)).collect();
                                counter.add_image(&labels, &image);
                            }
                            Err(e) => keep_first(&mut failure, row, e),
                        }
                    }
                    (counter, failure)
                },
            )
            .reduce(
                || (new_counter(), None),
                |(mut a, mut fa), (b, fb)| {
                    a.counts.merge(&b.counts);
                    if let Some((row, e)) = fb {
                        keep_first(&mut fa, row, e);
                    }
                    (a, fa)
                },
            );
        match failure {
            Some((_, e)) => Err(e),
            None => {
                if let (Some(depth), Some(layer)) = (
                    config.tally_depth,
                    counter
                        .counts
                        .layers
                        .iter()
                        .find(|l| l.dropped.overflows > 0),
                ) {
                    let n = layer.dropped.overflows;
                    return Err(Error::Input(format!(
                        "tally_depth = {depth}: in {n} image{}, layer `{}` has more entries than the depth before any \
                         intersection (its units' sizes, the label truths and the image-level items), and the original \
                         then drops some of those too, which is not reproduced: use a larger depth, or none",
                        if n == 1 { "" } else { "s" },
                        layer.name
                    )));
                }
                Ok(counter.counts)
            }
        }
    })
}

fn check_sizes<'m>(
    labels: &nd_broden::RowLabels,
    masks: &[impl Iterator<Item = (u32, &'m [Run])> + Clone],
    names: &[String],
    row: usize,
    dataset: &nd_broden::Dataset,
) -> Result<()> {
    let area = labels.height as u64 * labels.width as u64;
    for (layer, masks) in names.iter().zip(masks) {
        for (unit, runs) in masks.clone() {
            if runs
                .iter()
                .any(|r| u64::from(r.start) + u64::from(r.length) > area)
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

/// Rows of `scores.parquet` written at a time: the table (up to every unit against every
/// label, millions of rows for a deep layer on Broden) is never held whole. A multiple of
/// the Parquet writer's 1,024-row mini-batches, so the file is the same bytes as one
/// written at once.
const BATCH_ROWS: usize = 1 << 16;

/// The score rows of every layer, in order (layer, unit, label), to `f`: each label a unit
/// intersects, plus the best label of every category (highest IoU, the smallest label
/// number on ties).
pub fn score_rows<'a, E>(
    dataset: &'a nd_broden::Dataset,
    counts: &'a Counts,
    denominator: Denominator,
    mut f: impl FnMut(RowRef<'a>) -> Result<(), E>,
) -> Result<(), E> {
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
    let mut keep = vec![false; n_labels];
    for layer in &counts.layers {
        for unit in 0..layer.units {
            let inter = &layer.inter[unit * n_labels..(unit + 1) * n_labels];
            let act = &layer.act[unit * n_categories..(unit + 1) * n_categories];
            // The activation term of a label's IoU: the unit's count in the label's
            // category; none for label 0 with the original's denominator (its sum over
            // categories zeroes label 0's row of the label-category matrix).
            let activation = |l: usize| match (denominator, l) {
                (Denominator::Original, 0) => 0,
                _ => act[primary[l]],
            };
            let score = |label: u32| {
                let l = label as usize;
                iou(inter[l], activation(l), counts.truth[l])
            };
            for (k, &n) in keep.iter_mut().zip(inter) {
                *k = n > 0;
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
                f(RowRef {
                    layer: &layer.name,
                    unit: unit as u32,
                    label: l as u32,
                    name: dataset.label_name(l as u32),
                    category: category_names[primary[l]],
                    truth: counts.truth[l],
                    activation: activation(l),
                    intersect: inter[l],
                    iou: score(l as u32),
                })?;
            }
        }
    }
    Ok(())
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
    let rows = masks.rows()?;
    if let Some(depth) = config.tally_depth {
        for layer in &counts.layers {
            let d = layer.dropped;
            eprintln!(
                "score: tally_depth = {depth} dropped {} intersection pixels of layer `{}` ({} entries, in {} images)",
                d.pixels, layer.name, d.entries, d.images
            );
        }
    }
    let artifact = write(store, &spec, dataset, &counts, *config, rows, json!({}))?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// Writes the tables of `counts` (of the dataset rows `rows`) as the artifact of `spec`.
fn write(
    store: &nd_store::Store,
    spec: &nd_store::Spec,
    dataset: &nd_broden::Dataset,
    counts: &Counts,
    config: Config,
    rows: std::ops::Range<usize>,
    extra_outputs: serde_json::Value,
) -> Result<nd_store::Artifact> {
    let Config {
        denominator,
        tally_depth,
    } = config;
    let pending = store.begin(spec)?;
    let metadata = pending.table_metadata();
    let mut writer = scores::RowWriter::create(&pending.dir().join(scores::FILE), &metadata)?;
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    score_rows(dataset, counts, denominator, |row| -> Result<()> {
        batch.push(row);
        if batch.len() == BATCH_ROWS {
            writer.write(&batch)?;
            batch.clear();
        }
        Ok(())
    })?;
    writer.write(&batch)?;
    writer.finish()?;
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
    let mut outputs = json!({
        "scores": scores::FILE,
        "truth": scores::TRUTH_FILE,
        "activation": scores::ACTIVATION_FILE,
        "rows": [rows.start, rows.end],
        "layers": counts.layers.iter().map(|l| {
            let mut layer = json!({"name": l.name, "units": l.units});
            if tally_depth.is_some() {
                layer["dropped"] = json!(l.dropped);
            }
            layer
        }).collect::<Vec<_>>(),
        "categories": categories,
    });
    if let (Some(out), Some(extra)) = (outputs.as_object_mut(), extra_outputs.as_object()) {
        out.extend(extra.clone());
    }
    Ok(pending.commit(nd_store::versions(), outputs)?)
}

/// The counts a score artifact holds, read back from its tables: every count is there
/// (`truth.parquet`, `activation.parquet`, and every non-zero intersection in
/// `scores.parquet`), so the counts of image shards can be summed exactly.
pub fn read_counts(scores: &nd_store::Artifact) -> Result<Counts> {
    let bad = |what: &str| {
        Error::Input(format!(
            "{}: not a score artifact ({what})",
            scores.dir.display()
        ))
    };
    let layers = masks_layers(scores)?;
    let categories: Vec<String> =
        serde_json::from_value(scores.manifest.outputs["categories"].clone())
            .map_err(|_| bad("no categories"))?;
    let truth = scores::read_truth(&scores.dir.join(scores::TRUTH_FILE))?;
    let mut counts = Counts::new(truth.len(), categories.len(), &layers);
    counts.truth = truth;
    // What a tally depth dropped, as the manifest records it.
    if let Some(listed) = scores.manifest.outputs["layers"].as_array() {
        for (layer, entry) in counts.layers.iter_mut().zip(listed) {
            if let Ok(dropped) = serde_json::from_value(entry["dropped"].clone()) {
                layer.dropped = dropped;
            }
        }
    }
    let layer_index = |name: &str| {
        layers
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| bad(&format!("a row of layer `{name}`, which it does not list")))
    };
    let (n_labels, n_categories) = (counts.n_labels, counts.n_categories);
    for row in scores::read_activation(&scores.dir.join(scores::ACTIVATION_FILE))? {
        let layer = &mut counts.layers[layer_index(&row.layer)?];
        let c = categories
            .iter()
            .position(|c| *c == row.category)
            .ok_or_else(|| bad(&format!("unknown category `{}`", row.category)))?;
        let unit = row.unit as usize;
        if unit >= layer.units {
            return Err(bad(&format!("unit {unit} of layer `{}`", layer.name)));
        }
        layer.act[unit * n_categories + c] = row.activation;
        layer.pixels[unit] = row.pixels;
    }
    scores::for_each_row(&scores.dir.join(scores::FILE), |row| -> Result<()> {
        let layer = &mut counts.layers[layer_index(row.layer)?];
        let (unit, label) = (row.unit as usize, row.label as usize);
        if unit >= layer.units || label >= n_labels {
            return Err(bad(&format!(
                "unit {unit}, label {label} of layer `{}`",
                layer.name
            )));
        }
        layer.inter[unit * n_labels + label] = row.intersect;
        Ok(())
    })?;
    Ok(counts)
}

/// The spec of the merge of image shards' scores: the shards' parameters, and their keys.
fn merge_spec(shards: &[&nd_store::Artifact]) -> nd_store::Spec {
    let first = shards[0];
    let mut spec = nd_store::Spec::new(STAGE, first.manifest.schema, first.manifest.params.clone());
    for (i, shard) in shards.iter().enumerate() {
        spec = spec.input(&format!("scores.{i:04}"), shard.key());
    }
    spec
}

/// Sums the counts of score artifacts of image shards (of one model's masks, thresholded
/// alike, scored on one dataset) and writes the tables a single run over all their rows
/// writes: the same data, row for row, since the counts are integer sums.
///
/// Each shard is checked against `dataset` by recomputing its key from its segment
/// artifact, so shards scored on another dataset or with other settings are refused.
pub fn merge(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    shards: &[nd_store::Artifact],
) -> Result<Outcome> {
    if shards.is_empty() {
        return Err(Error::Input("no score artifact given to merge".into()));
    }
    for shard in shards {
        shard.expect_stage(STAGE)?;
    }
    let ordered = nd_store::in_row_order(shards)?;
    let mut thresholds: Option<(nd_store::Key, &nd_store::Artifact)> = None;
    for (_, shard) in &ordered {
        let masks_key = shard.manifest.inputs.get("masks").copied().ok_or_else(|| {
            Error::Input(format!(
                "{} is not the score of one segment artifact (a merge already?)",
                shard.dir.display()
            ))
        })?;
        let masks = store.get_key("segment", masks_key)?.ok_or_else(|| {
            Error::Input(format!(
                "the masks {} that {} was scored from are not in the cache {}",
                masks_key.short(),
                shard.dir.display(),
                store.root().display()
            ))
        })?;
        let denominator: Denominator =
            serde_json::from_value(shard.manifest.params["denominator"].clone()).map_err(|_| {
                Error::Input(format!(
                    "{}: no denominator in its manifest",
                    shard.dir.display()
                ))
            })?;
        let tally_depth = shard.manifest.params["tally_depth"]
            .as_u64()
            .map(|d| d as usize);
        let expected = spec(
            store,
            dataset,
            &masks,
            &Config {
                denominator,
                tally_depth,
            },
        )?;
        if expected.key() != shard.key() {
            return Err(Error::Input(format!(
                "{} was not scored on this dataset (its label maps, tables or categories differ)",
                shard.dir.display()
            )));
        }
        let t = masks.manifest.inputs.get("thresholds").copied();
        match (&thresholds, t) {
            (None, Some(t)) => thresholds = Some((t, shard)),
            (Some((t0, first)), Some(t)) if *t0 != t => {
                return Err(Error::Input(format!(
                    "{} and {} were segmented with different thresholds: not shards of one run",
                    first.dir.display(),
                    shard.dir.display()
                )));
            }
            _ => {}
        }
    }
    for pair in ordered.windows(2) {
        let ((_, a0), (_, a1)) = (&pair[0], &pair[1]);
        if a0.manifest.params != a1.manifest.params
            || a0.manifest.outputs["layers"] != a1.manifest.outputs["layers"]
        {
            return Err(Error::Input(format!(
                "{} and {} differ in denominator, categories or layers: not shards of one run",
                a0.dir.display(),
                a1.dir.display()
            )));
        }
    }
    let shards: Vec<&nd_store::Artifact> = ordered.iter().map(|(_, a)| *a).collect();
    let spec = merge_spec(&shards);
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let mut counts = read_counts(shards[0])?;
    for shard in &shards[1..] {
        counts.merge(&read_counts(shard)?);
    }
    let rows = ordered[0].0.start..ordered[ordered.len() - 1].0.end;
    let params = &shards[0].manifest.params;
    let config = Config {
        denominator: serde_json::from_value(params["denominator"].clone()).unwrap_or_default(),
        tally_depth: params["tally_depth"].as_u64().map(|d| d as usize),
    };
    let artifact = write(
        store,
        &spec,
        dataset,
        &counts,
        config,
        rows,
        json!({ "shards": shards.len() }),
    )?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}
