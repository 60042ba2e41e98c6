//! The intervene stage of GAN dissection (Bau et al., ICLR 2019): do a generator's units
//! labelled with a concept cause it? For a concept and a layer, the units of highest IoU
//! with the concept (the top 1, 2, 4, ... of the dissection's scores) are
//! - **ablated**: set to a constant (0) everywhere; the samples are drawn again from the
//!   modified layer (the intervention, `forward_from`), segmented by the same segmenter,
//!   and the concept's share of the pixels compared before and after;
//! - **inserted**: set to their top-quantile value (the quantile stage's threshold, what
//!   makes a unit's mask) inside a region of the layer's grid; the concept's share inside
//!   the region and outside it compared before and after;
//!
//! and the same numbers of units drawn at random from the layer, several seeded draws, are
//! the control.
//!
//! The input is the score artifact of a generator's dissection: from it the stage finds
//! the segment, quantile and generate artifacts (the samples' latent vectors, the
//! segmenter's preprocessing), and it checks that the generator, segmenter and label file
//! it is given are the ones the samples were generated with (their blake3). Outputs:
//! `interventions.parquet` (a row per concept, mode, choice of units, k and draw: the
//! units, the concept's share before and after, inside the region and outside it for
//! insertions), `summary.json` (per concept, mode and k: the top units' change, the random
//! units' mean and standard deviation), `grids/<concept>-<mode>.png` (the first samples
//! before, with the top units changed, and with random units changed) and `index.html`,
//! which shows them.

mod grid;
mod page;
mod rng;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, ListBuilder, UInt32Array, UInt32Builder};
use arrow::record_batch::RecordBatch;
use nd_torch::{DeviceChoice, Generator, Preprocess, Segmenter};
use serde_json::json;
use tch::Tensor;

pub const STAGE: &str = "intervene";
pub const SCHEMA: u32 = 2;
pub const FILE: &str = "interventions.parquet";
pub const SUMMARY_FILE: &str = "summary.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Tables(#[from] nd_tables::Error),
    #[error(transparent)]
    Torch(#[from] nd_torch::Error),
    #[error("cannot write {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Error {
        Error::Tables(nd_tables::Error::Arrow(e))
    }
}

/// What to intervene on, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The generator, segmenter and label file the dissection's samples were made with.
    pub generator: PathBuf,
    pub segmenter: PathBuf,
    pub segmenter_labels: PathBuf,
    pub layer: String,
    /// Concepts by name, as the segmenter's label file names them.
    pub concepts: Vec<String>,
    /// How many top units (and random ones) to change; those beyond the layer's units are
    /// left out.
    pub ks: Vec<usize>,
    /// The first samples of the dissection to measure on.
    pub samples: usize,
    /// The value ablated units are set to.
    pub ablation_value: f64,
    /// Where units are inserted: `[top, left, bottom, right]` as fractions of the layer's
    /// grid (a cell is in when its centre is).
    pub region: [f64; 4],
    /// Draws of random units per k.
    pub draws: usize,
    /// The seed of the random units.
    pub seed: u64,
    pub batch_size: usize,
    pub device: DeviceChoice,
    pub threads: usize,
}

impl Config {
    pub fn new(
        generator: PathBuf,
        segmenter: PathBuf,
        segmenter_labels: PathBuf,
        layer: String,
        concepts: Vec<String>,
    ) -> Config {
        Config {
            generator,
            segmenter,
            segmenter_labels,
            layer,
            concepts,
            ks: vec![1, 2, 4, 8, 16, 32],
            samples: 100,
            ablation_value: 0.0,
            region: [0.25, 0.25, 0.75, 0.75],
            draws: 3,
            seed: 1,
            batch_size: 32,
            device: DeviceChoice::Auto,
            threads: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.concepts.is_empty() {
            return bad("no concepts given".into());
        }
        if self.ks.is_empty() || self.ks.contains(&0) {
            return bad(format!(
                "ks must be numbers of units, at least 1, got {:?}",
                self.ks
            ));
        }
        if self.samples == 0 || self.batch_size == 0 {
            return bad("samples and batch size must be at least 1".into());
        }
        if self.draws == 0 {
            return bad("draws must be at least 1 (the random units are the control)".into());
        }
        if !self.ablation_value.is_finite() {
            return bad(format!(
                "the ablation value {} is not finite",
                self.ablation_value
            ));
        }
        let [t, l, b, r] = self.region;
        if !(0.0 <= t && t < b && b <= 1.0 && 0.0 <= l && l < r && r <= 1.0) {
            return bad(format!(
                "region {:?} is not [top, left, bottom, right] with 0 <= top < bottom <= 1 and \
                 0 <= left < right <= 1",
                self.region
            ));
        }
        Ok(())
    }
}

/// The artifacts a score artifact of a generator's dissection was made from.
struct Chain {
    generated: nd_store::Artifact,
    thresholds: nd_store::Artifact,
}

fn chain(store: &nd_store::Store, scores: &nd_store::Artifact) -> Result<Chain> {
    scores.expect_stage("score")?;
    let input = |artifact: &nd_store::Artifact, role: &str, stage: &str| {
        let key = artifact.manifest.inputs.get(role).ok_or_else(|| {
            Error::Input(format!(
                "{}: the manifest names no `{role}` input{}",
                artifact.dir.display(),
                if role == "masks" {
                    " (a merge of image shards: give the score artifact of one run)"
                } else {
                    ""
                }
            ))
        })?;
        store.get_key(stage, *key)?.ok_or_else(|| {
            Error::Input(format!(
                "the {stage} artifact {} that {} was made from is not in the cache {}",
                key.short(),
                artifact.dir.display(),
                store.root().display()
            ))
        })
    };
    let masks = input(scores, "masks", "segment")?;
    let thresholds = input(&masks, "thresholds", "quantile")?;
    let key = masks.manifest.inputs.get("activations").copied();
    let generated = match key.map(|k| store.get_key("generate", k)).transpose()? {
        Some(Some(artifact)) => artifact,
        _ => {
            return Err(Error::Input(format!(
                "{} is not the dissection of a generator: its activations are no generate \
                 artifact (intervening needs a generator's samples)",
                scores.dir.display()
            )));
        }
    };
    Ok(Chain {
        generated,
        thresholds,
    })
}

/// The store spec of an intervention on the dissection `scores`.
pub fn spec(scores: &nd_store::Artifact, config: &Config) -> Result<nd_store::Spec> {
    config.validate()?;
    Ok(nd_store::Spec::new(
        STAGE,
        SCHEMA,
        json!({
            "layer": config.layer,
            "concepts": config.concepts,
            "ks": config.ks,
            "samples": config.samples,
            "ablation_value": config.ablation_value,
            "region": config.region,
            "draws": config.draws,
            "seed": config.seed,
        }),
    )
    .input("scores", scores.key()))
}

pub use nd_store::Outcome;

/// One row of `interventions.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub concept: String,
    pub layer: String,
    /// `ablate` or `insert`.
    pub mode: &'static str,
    /// `top` (by IoU with the concept) or `random`.
    pub choice: &'static str,
    pub k: u32,
    /// 0 for the top units; the draw for random ones.
    pub draw: u32,
    pub units: Vec<u32>,
    /// The concept's share of the pixels: over whole samples for ablations, inside the
    /// region for insertions.
    pub before: f64,
    pub after: f64,
    /// Insertions: the share outside the region.
    pub outside_before: Option<f64>,
    pub outside_after: Option<f64>,
}

/// A concept's pixels: in how many of the samples' label-map pixels it is, inside the
/// region and outside it.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    inside: u64,
    outside: u64,
    pixels_inside: u64,
    pixels_outside: u64,
}

impl Counts {
    fn whole(&self) -> f64 {
        (self.inside + self.outside) as f64
            / (self.pixels_inside + self.pixels_outside).max(1) as f64
    }
    fn inside(&self) -> f64 {
        self.inside as f64 / self.pixels_inside.max(1) as f64
    }
    fn outside(&self) -> f64 {
        self.outside as f64 / self.pixels_outside.max(1) as f64
    }
}

/// Whether cell (y, x) of an `h × w` grid lies in the region (its centre does).
fn in_region(region: [f64; 4], h: usize, w: usize, y: usize, x: usize) -> bool {
    let (cy, cx) = ((y as f64 + 0.5) / h as f64, (x as f64 + 0.5) / w as f64);
    cy >= region[0] && cy < region[2] && cx >= region[1] && cx < region[3]
}

/// The stage's models and the samples' activations at the layer.
struct Work<'a> {
    config: &'a Config,
    generator: Generator,
    segmenter: Segmenter,
    /// Per batch: the layer's activations `(n, C, h, w)`, on the CPU.
    batches: Vec<Tensor>,
    /// The first samples' images, for the grids.
    first: Vec<image::RgbImage>,
    /// For each concept: the (category, label) pairs that name it.
    concepts: Vec<Vec<(usize, u16)>>,
}

const GRID_SAMPLES: usize = 8;

impl Work<'_> {
    /// Each concept's counts over the samples drawn from the layer's activations as
    /// `change` leaves them (none: as generated), and the first samples' images.
    #[allow(clippy::needless_range_loop)] // p indexes every category's map at once
    fn measure(
        &self,
        change: Option<&dyn Fn(&Tensor) -> Tensor>,
    ) -> Result<(Vec<Counts>, Vec<image::RgbImage>)> {
        let mut counts = vec![Counts::default(); self.concepts.len()];
        let mut first = Vec::new();
        for a in &self.batches {
            let images = match change {
                Some(f) => self.generator.render(&self.config.layer, &f(a))?,
                None => self.generator.render(&self.config.layer, a)?,
            };
            let segmented = self.segmenter.segment(&images)?;
            let [h, w] = segmented.size.map(|s| s as usize);
            for maps in &segmented.maps {
                for (c, names) in self.concepts.iter().enumerate() {
                    for p in 0..h * w {
                        let inside = in_region(self.config.region, h, w, p / w, p % w);
                        let hit = names
                            .iter()
                            .any(|&(category, label)| maps[category][p] == label);
                        let n = &mut counts[c];
                        if inside {
                            n.pixels_inside += 1;
                            n.inside += u64::from(hit);
                        } else {
                            n.pixels_outside += 1;
                            n.outside += u64::from(hit);
                        }
                    }
                }
            }
            for image in images {
                if first.len() < GRID_SAMPLES {
                    first.push(image);
                }
            }
        }
        Ok((counts, first))
    }
}

/// Intervenes through the store: the cached artifact when there is one, else computes and
/// commits it.
pub fn run(
    store: &nd_store::Store,
    scores: &nd_store::Artifact,
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(scores, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let chain = chain(store, scores)?;
    let g = &chain.generated.manifest;
    // The files must be the ones the samples were made with.
    for (role, path) in [
        ("generator", &config.generator),
        ("segmenter", &config.segmenter),
        ("segmenter_labels", &config.segmenter_labels),
    ] {
        let digest = store
            .file_hash(path)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        if g.digests.get(role) != Some(&digest) {
            return Err(Error::Input(format!(
                "{} is not the {} the dissection's samples were generated with (generate \
                 artifact {}): give that file",
                path.display(),
                role.replace('_', " "),
                g.key.short()
            )));
        }
    }
    let layers: Vec<String> =
        serde_json::from_value(g.params["layers"].clone()).unwrap_or_default();
    if !layers.contains(&config.layer) {
        return Err(Error::Config(format!(
            "layer `{}` was not dissected (the generate artifact has {})",
            config.layer,
            layers.join(", ")
        )));
    }
    let generated = g.params["samples"].as_u64().unwrap_or(0) as usize;
    if config.samples > generated {
        return Err(Error::Config(format!(
            "{} samples asked for, but the dissection generated {generated}",
            config.samples
        )));
    }
    let seed = g.params["seed"].as_u64().unwrap_or(0);
    let preprocess: Preprocess = serde_json::from_value(g.params["segmenter_preprocess"].clone())
        .map_err(|e| {
        Error::Input(format!(
            "{}: segmenter_preprocess: {e}",
            chain.generated.dir.display()
        ))
    })?;

    // Units by IoU with each concept.
    let mut ious: BTreeMap<String, BTreeMap<u32, f64>> = BTreeMap::new();
    nd_tables::scores::for_each_row(&scores.dir.join("scores.parquet"), |row| -> Result<()> {
        if row.layer == config.layer {
            let best = ious
                .entry(row.name.to_owned())
                .or_default()
                .entry(row.unit)
                .or_insert(0.0);
            *best = best.max(row.iou);
        }
        Ok(())
    })?;
    let thresholds: Vec<f64> =
        nd_tables::thresholds::read_rows(&chain.thresholds.dir.join(nd_tables::thresholds::FILE))?
            .into_iter()
            .filter(|r| r.layer == config.layer)
            .map(|r| r.threshold)
            .collect();
    let units = thresholds.len();

    if config.threads > 0 {
        nd_torch::set_threads(config.threads)?;
    }
    let device = nd_torch::resolve_device(config.device)?;
    let generator = Generator::load(&config.generator, device)?;
    generator
        .model()
        .require_intervention(&config.layer, "intervening")?;
    let segmenter = Segmenter::load(
        &config.segmenter,
        &config.segmenter_labels,
        preprocess,
        device,
    )?;
    let vocabulary = &segmenter.labels().vocabulary;
    let mut concepts = Vec::new();
    for name in &config.concepts {
        let Some(i) = vocabulary.labels.iter().position(|(n, _)| n == name) else {
            let names: Vec<&str> = vocabulary.labels.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Config(format!(
                "concept `{name}` is not one the segmenter names ({})",
                names.join(", ")
            )));
        };
        let categories = &vocabulary.labels[i].1;
        concepts.push(
            categories
                .iter()
                .map(|&c| (c, i as u16 + 1))
                .collect::<Vec<_>>(),
        );
    }

    let _guard = tch::no_grad_guard();
    let mut batches = Vec::new();
    for start in (0..config.samples).step_by(config.batch_size) {
        let rows = start..(start + config.batch_size).min(config.samples);
        let outputs = generator.forward(&generator.latents(seed, rows))?;
        let a = outputs
            .into_iter()
            .find(|(n, _)| *n == config.layer)
            .map(|(_, t)| t.to_device(tch::Device::Cpu))
            .ok_or_else(|| Error::Input(format!("the generator returns no `{}`", config.layer)))?;
        batches.push(a);
    }
    let dims = batches[0].size();
    if dims.len() != 4 || dims[1] as usize != units {
        return Err(Error::Input(format!(
            "layer `{}` is {} now but had {units} units when dissected",
            config.layer,
            nd_torch::shape(&dims)
        )));
    }
    let (h, w) = (dims[2] as usize, dims[3] as usize);
    let mut work = Work {
        config,
        generator,
        segmenter,
        batches,
        first: Vec::new(),
        concepts,
    };
    let (before, first) = work.measure(None)?;
    work.first = first;

    let ablate = |chosen: &[u32]| {
        let chosen = chosen.to_vec();
        let value = config.ablation_value;
        move |a: &Tensor| {
            let out = a.copy();
            for &u in &chosen {
                let _ = out.narrow(1, i64::from(u), 1).fill_(value);
            }
            out
        }
    };
    let region: Vec<f32> = (0..h * w)
        .map(|p| f32::from(u8::from(in_region(config.region, h, w, p / w, p % w))))
        .collect();
    let region = Tensor::from_slice(&region).view([1, 1, h as i64, w as i64]);
    let insert = |chosen: &[u32]| {
        let chosen = chosen.to_vec();
        let region = region.shallow_clone();
        let values: Vec<f64> = chosen.iter().map(|&u| thresholds[u as usize]).collect();
        move |a: &Tensor| {
            let out = a.copy();
            for (&u, &v) in chosen.iter().zip(&values) {
                let mut unit = out.narrow(1, i64::from(u), 1);
                // Inside the region the unit takes its top-quantile value; outside it
                // keeps its own.
                let changed = &unit * (1.0 - &region) + &region * v;
                unit.copy_(&changed);
            }
            out
        }
    };

    let pending = store.begin(&spec)?;
    let grids = pending.dir().join("grids");
    std::fs::create_dir_all(&grids).map_err(|e| Error::Write {
        path: grids.clone(),
        message: e.to_string(),
    })?;
    let mut rows: Vec<Row> = Vec::new();
    let mut summary = Vec::new();
    let mut grid_files = Vec::new();
    for (c, name) in config.concepts.iter().enumerate() {
        let ranked = rng::ranked(units, ious.get(name));
        let ks: Vec<usize> = config.ks.iter().copied().filter(|&k| k <= units).collect();
        for mode in ["ablate", "insert"] {
            let mut grid_rows = vec![work.first.clone()];
            for (i, &k) in ks.iter().enumerate() {
                let mut choices = vec![("top", 0u32, ranked[..k].to_vec())];
                for draw in 0..config.draws {
                    let units = rng::draw(config.seed, c as u64, k, draw as u64, units);
                    choices.push(("random", draw as u32 + 1, units));
                }
                let mut changes = Vec::new();
                for (choice, draw, chosen) in choices {
                    let (counts, first) = if mode == "ablate" {
                        work.measure(Some(&ablate(&chosen)))?
                    } else {
                        work.measure(Some(&insert(&chosen)))?
                    };
                    let (b, a) = (before[c], counts[c]);
                    let row = if mode == "ablate" {
                        Row {
                            concept: name.clone(),
                            layer: config.layer.clone(),
                            mode: "ablate",
                            choice,
                            k: k as u32,
                            draw,
                            units: chosen,
                            before: b.whole(),
                            after: a.whole(),
                            outside_before: None,
                            outside_after: None,
                        }
                    } else {
                        Row {
                            concept: name.clone(),
                            layer: config.layer.clone(),
                            mode: "insert",
                            choice,
                            k: k as u32,
                            draw,
                            units: chosen,
                            before: b.inside(),
                            after: a.inside(),
                            outside_before: Some(b.outside()),
                            outside_after: Some(a.outside()),
                        }
                    };
                    changes.push(row.after - row.before);
                    rows.push(row);
                    // The grid shows the largest k: top, then the first random draw.
                    if i + 1 == ks.len() && draw <= 1 {
                        grid_rows.push(first);
                    }
                }
                let random = &changes[1..];
                let mean = random.iter().sum::<f64>() / random.len() as f64;
                let sd = (random.iter().map(|x| (x - mean).powi(2)).sum::<f64>()
                    / (random.len().max(2) - 1) as f64)
                    .sqrt();
                // The top units' row: the share before (the same samples for every
                // choice), and for an insertion the change outside the region.
                let top = &rows[rows.len() - changes.len()];
                let outside = match (top.outside_before, top.outside_after) {
                    (Some(b), Some(a)) => json!(a - b),
                    _ => serde_json::Value::Null,
                };
                summary.push(json!({
                    "concept": name, "layer": config.layer, "mode": mode, "k": k,
                    "before": top.before, "top": changes[0], "top_outside": outside,
                    "random_mean": mean, "random_sd": sd,
                    "draws": random.len(),
                }));
            }
            let file = format!("grids/{}-{mode}.png", grid::file_stem(name));
            grid::write(&pending.dir().join(&file), &grid_rows)?;
            if let Some(&k) = ks.last() {
                grid_files.push((name.clone(), mode.to_owned(), file, k));
            }
        }
    }
    write_rows(&pending.dir().join(FILE), &rows, &pending.table_metadata())?;
    let summary = json!({
        "layer": config.layer,
        "samples": config.samples,
        "region": config.region,
        "changes": summary,
    });
    for (file, text) in [
        (SUMMARY_FILE, nd_store::canonical::to_pretty(&summary)),
        ("index.html", page::write(&summary, &grid_files)),
    ] {
        let path = pending.dir().join(file);
        std::fs::write(&path, text).map_err(|e| Error::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
    }
    let outputs = json!({
        "interventions": FILE,
        "summary": SUMMARY_FILE,
        "grids": "grids",
        "page": "index.html",
        "units": units,
    });
    let mut versions = nd_store::versions();
    versions.insert("libtorch".to_owned(), nd_torch::LIBTORCH_VERSION.to_owned());
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

fn write_rows(path: &Path, rows: &[Row], metadata: &[(String, String)]) -> Result<()> {
    let mut units = ListBuilder::new(UInt32Builder::new());
    for r in rows {
        units.values().append_slice(&r.units);
        units.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        (
            "concept",
            nd_tables::dictionary(rows.iter().map(|r| r.concept.as_str())),
        ),
        (
            "layer",
            nd_tables::dictionary(rows.iter().map(|r| r.layer.as_str())),
        ),
        ("mode", nd_tables::dictionary(rows.iter().map(|r| r.mode))),
        (
            "choice",
            nd_tables::dictionary(rows.iter().map(|r| r.choice)),
        ),
        (
            "k",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.k))) as ArrayRef,
        ),
        (
            "draw",
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.draw))),
        ),
        ("units", Arc::new(units.finish())),
        (
            "before",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.before),
            )),
        ),
        (
            "after",
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.after))),
        ),
        (
            "outside_before",
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.outside_before),
            )),
        ),
        (
            "outside_after",
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.outside_after),
            )),
        ),
    ])?;
    Ok(nd_tables::write(path, &batch, metadata)?)
}

/// The summary of an intervene artifact as a table: per concept, mode and k, the change of
/// the concept's share with the top units and with random ones (mean ± sd over draws).
pub fn format_summary(artifact: &nd_store::Artifact) -> Result<String> {
    let path = artifact.dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let mut out = format!(
        "interventions in {} over {} samples: the concept's pixel share before, and its \
         change with the top units by IoU and with random units (ablate: whole samples; \
         insert: inside the region, and outside it with the top units)\n",
        value["layer"].as_str().unwrap_or("?"),
        value["samples"]
    );
    out.push_str(&format!(
        "{:<16} {:<7} {:>3} {:>8} {:>9} {:>19} {:>9}\n",
        "concept", "mode", "k", "before", "top", "random (mean ± sd)", "outside"
    ));
    for c in value["changes"].as_array().into_iter().flatten() {
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        let outside = match c["top_outside"].as_f64() {
            Some(v) => format!("{v:+.4}"),
            None => String::new(),
        };
        let line = format!(
            "{:<16} {:<7} {:>3} {:>8.4} {:>+9.4} {:>+10.4} ± {:.4} {:>9}",
            c["concept"].as_str().unwrap_or("?"),
            c["mode"].as_str().unwrap_or("?"),
            c["k"].as_u64().unwrap_or(0),
            f("before"),
            f("top"),
            f("random_mean"),
            f("random_sd"),
            outside,
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}
