//! The generate stage of GAN dissection (Bau et al., ICLR 2019): a generator's samples,
//! labelled by a semantic segmenter, written as a Broden-format dataset, with the
//! generator's activations for those samples in the extract stage's layout, so that
//! quantile, segment, score, report and html dissect a generator exactly as a classifier.
//!
//! The contracts:
//! - the generator is TorchScript whose `forward(z)` takes latent vectors `(N, z_dim)` and
//!   returns a dict holding its image `(N, 3, H, W)` and the layers to dissect; the extra
//!   file `netdissect-generator.json` gives `z_dim`, the image's name and value range
//!   ([`nd_torch::GeneratorRecord`]);
//! - the segmenter is TorchScript whose `forward(images)` maps a batch of images,
//!   normalised as its preprocessing says, to class scores `(N, K, h, w)`; its label file
//!   names the `K` channels' concepts and categories ([`nd_torch::segmenter`]).
//!
//! Sample `i` is the image of `z_i` ([`latent`]: standard normal, from the seed and
//! `i` alone), quantised to 8 bits and stored losslessly (PNG) as `images/gen/<i>.png`; the
//! segmenter sees exactly those pixels, and its label maps, at its output's resolution,
//! are stored beside it (`<i>_<category>.png`, for the categories it finds there). The
//! artifact holds the dataset under `dataset/` and the activations under
//! `activations.zarr/`, and its manifest's outputs are an extract artifact's (layers,
//! shapes, images) plus `dataset`, `z_dim` and `image_size`.
//!
//! Invariants: the key covers the generator's, the segmenter's and the label file's
//! content, the layers, the samples and seed, and the segmenter's preprocessing, never the
//! device, batch size or threads (a generator whose samples depend on their batch, through
//! batch statistics, breaks this: export it in evaluation mode); a non-finite activation,
//! image or score fails the stage before anything is committed.

use std::ops::Range;
use std::path::{Path, PathBuf};

use nd_arrays::{ACTIVATIONS_DIR, ActivationGroup, LayerShape, LayerWriter};
use nd_broden::write::{ImageFormat, IndexRow, Occurrence, occurrences, write_image};
use nd_torch::{DeviceChoice, Generator, Preprocess, Segmenter as SegmenterModel};
use serde_json::json;

pub use nd_torch::latent::{latent, latents};

pub const STAGE: &str = "generate";
pub const SCHEMA: u32 = 1;
/// The dataset's directory inside the artifact.
pub const DATASET_DIR: &str = "dataset";
/// The folder of the samples under the dataset's `images/`.
const SAMPLES: &str = "gen";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Arrays(#[from] nd_arrays::Error),
    #[error(transparent)]
    Broden(#[from] nd_broden::Error),
    #[error(transparent)]
    Torch(#[from] nd_torch::Error),
    #[error("generator {}: {message}", path.display())]
    Generator { path: PathBuf, message: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The segmenter that labels the samples.
#[derive(Debug, Clone)]
pub struct Segmenter {
    pub model: PathBuf,
    /// Its label file (see [`segmenter`]).
    pub labels: PathBuf,
    /// How its input is normalised from the samples' 8-bit pixels.
    pub preprocess: Preprocess,
}

/// What to generate, and how.
#[derive(Debug, Clone)]
pub struct Config {
    pub generator: PathBuf,
    pub segmenter: Segmenter,
    /// The generator's layers to dissect, as its `forward` names them.
    pub layers: Vec<String>,
    pub samples: usize,
    /// The seed of the latent vectors.
    pub seed: u64,
    pub batch_size: usize,
    pub device: DeviceChoice,
    /// Worker threads for torch; 0 means one per core.
    pub threads: usize,
}

impl Config {
    pub fn new(generator: PathBuf, segmenter: Segmenter, layers: Vec<String>) -> Config {
        Config {
            generator,
            segmenter,
            layers,
            samples: 1000,
            seed: 1,
            batch_size: 32,
            device: DeviceChoice::Auto,
            threads: 0,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.layers.is_empty() {
            return Err(Error::Config("no layers requested".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for layer in &self.layers {
            if !seen.insert(layer) {
                return Err(Error::Config(format!("layer `{layer}` is requested twice")));
            }
        }
        if self.samples == 0 {
            return Err(Error::Config("samples must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        self.segmenter.preprocess.validate()?;
        for (what, path) in [
            ("generator", &self.generator),
            ("segmenter", &self.segmenter.model),
            ("segmenter label file", &self.segmenter.labels),
        ] {
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "the {what} {} does not exist",
                    path.display()
                )));
            }
        }
        Ok(())
    }
}

pub use nd_store::Outcome;

/// The store spec of a generation: everything that determines its samples, labels and
/// activations.
pub fn spec(store: &nd_store::Store, config: &Config) -> Result<nd_store::Spec> {
    config.validate()?;
    let digest = |path: &Path| -> Result<String> {
        store.file_hash(path).map_err(|e| Error::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
    };
    let mut layers = config.layers.clone();
    layers.sort();
    let params = json!({
        "layers": layers,
        "samples": config.samples,
        "seed": config.seed,
        "latents": "splitmix64-box-muller",
        "segmenter_preprocess": config.segmenter.preprocess,
        "dtype": "float32",
    });
    Ok(nd_store::Spec::new(STAGE, SCHEMA, params)
        .digest("generator", digest(&config.generator)?)
        .digest("segmenter", digest(&config.segmenter.model)?)
        .digest("segmenter_labels", digest(&config.segmenter.labels)?))
}

/// Generates through the store: the cached artifact when there is one, else computes and
/// commits it.
pub fn run(store: &nd_store::Store, config: &Config) -> Result<Outcome> {
    let spec = spec(store, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    if config.threads > 0 {
        nd_torch::set_threads(config.threads)?;
    }
    let device = nd_torch::resolve_device(config.device)?;
    let generator = Generator::load(&config.generator, device)?;
    let record = generator.record().clone();
    for layer in &config.layers {
        if !record.layers.contains(layer) {
            return Err(Error::Generator {
                path: config.generator.clone(),
                message: format!(
                    "has no layer `{layer}` (its record names {})",
                    record.layers.join(", ")
                ),
            });
        }
    }
    let segmenter = SegmenterModel::load(
        &config.segmenter.model,
        &config.segmenter.labels,
        config.segmenter.preprocess.clone(),
        device,
    )?;

    let pending = store.begin(&spec)?;
    let root = pending.dir().join(DATASET_DIR);
    let images_dir = root.join("images").join(SAMPLES);
    std::fs::create_dir_all(&images_dir).map_err(|source| nd_broden::Error::Write {
        path: images_dir.clone(),
        source,
    })?;
    let group = ActivationGroup::create(&pending.dir().join(ACTIVATIONS_DIR))?;
    let mut writers: Vec<LayerWriter> = Vec::new();
    let mut rows: Vec<(IndexRow, Vec<Occurrence>)> = Vec::with_capacity(config.samples);
    let mut image_size = None;
    let _guard = tch::no_grad_guard();
    for batch in batches(0..config.samples, config.batch_size) {
        let z = generator.latents(config.seed, batch.clone());
        let outputs = generator.forward(&z)?;
        let images = generator.images(&outputs, batch.len())?;
        image_size.get_or_insert([images[0].height(), images[0].width()]);
        // The segmenter sees the stored pixels.
        let segmented = segmenter.segment(&images)?;
        for (i, row) in batch.clone().enumerate() {
            rows.push(write_sample(
                &root,
                row,
                &images[i],
                segmenter.labels(),
                &segmented.maps[i],
                segmented.size,
            )?);
        }
        for (l, layer) in config.layers.iter().enumerate() {
            let Some((_, t)) = outputs.iter().find(|(name, _)| name == layer) else {
                let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                return Err(Error::Generator {
                    path: config.generator.clone(),
                    message: format!(
                        "forward returns no `{layer}` (it returns {})",
                        names.join(", ")
                    ),
                });
            };
            let dims = t.size();
            if dims.len() != 4 || dims[0] != batch.len() as i64 {
                return Err(Error::Generator {
                    path: config.generator.clone(),
                    message: format!(
                        "layer `{layer}` is {}, not a map (N, C, h, w) of the {} samples",
                        nd_torch::shape(&dims),
                        batch.len()
                    ),
                });
            }
            if writers.len() == l {
                let shape = LayerShape {
                    images: config.samples as u64,
                    units: dims[1] as u64,
                    height: dims[2] as u64,
                    width: dims[3] as u64,
                };
                writers.push(group.create_layer(layer, shape)?);
            }
            nd_torch::input::with_values(t, |values| -> Result<()> {
                if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                    let per = writers[l].shape().per_image();
                    return Err(Error::Generator {
                        path: config.generator.clone(),
                        message: format!(
                            "layer `{layer}` is not finite for sample {}",
                            batch.start + at / per.max(1)
                        ),
                    });
                }
                Ok(writers[l].push(values)?)
            })?;
        }
    }
    let mut layer_shapes = Vec::new();
    for writer in writers {
        layer_shapes.push(writer.finish()?);
    }
    group.set_layers(&config.layers)?;
    nd_broden::write::write_tables(&root, &segmenter.labels().vocabulary, &rows)?;
    // What every reader opens: the dataset must load as any other.
    nd_broden::Dataset::open(&root, &Default::default())?;
    let image_size = image_size.expect("at least one sample");
    let outputs = json!({
        "dataset": DATASET_DIR,
        "activations": ACTIVATIONS_DIR,
        "images": config.samples,
        "rows": [0, config.samples],
        "input_size": image_size,
        "image_size": image_size,
        "z_dim": record.z_dim,
        "fields": {},
        "layers": config.layers.iter().zip(&layer_shapes).map(|(name, s)| json!({
            "name": name,
            "node": nd_arrays::node_name(name),
            "shape": [s.images, s.units, s.height, s.width],
        })).collect::<Vec<_>>(),
    });
    let mut versions = nd_store::versions();
    versions.insert("libtorch".to_owned(), nd_torch::LIBTORCH_VERSION.to_owned());
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// The dataset a generate artifact holds.
pub fn dataset_dir(artifact: &nd_store::Artifact) -> PathBuf {
    artifact.dir.join(DATASET_DIR)
}

fn batches(rows: Range<usize>, size: usize) -> Vec<Range<usize>> {
    rows.clone()
        .step_by(size)
        .map(|start| start..(start + size).min(rows.end))
        .collect()
}

/// Writes sample `row` (its image and label maps, `size` pixels each) and returns its
/// index row and occurrences.
fn write_sample(
    root: &Path,
    row: usize,
    image: &image::RgbImage,
    labels: &nd_torch::Labels,
    maps: &[Vec<u16>],
    size: [u32; 2],
) -> Result<(IndexRow, Vec<Occurrence>)> {
    let stem = format!("{SAMPLES}/{row:06}");
    let images = root.join("images");
    write_image(&images.join(format!("{stem}.png")), ImageFormat::Png, image)?;
    let mut occ = Vec::new();
    let mut cells = Vec::with_capacity(maps.len());
    for (c, map) in maps.iter().enumerate() {
        // As Broden: a category without labels in an image has no map for it.
        if map.iter().all(|&p| p == 0) {
            cells.push(String::new());
            continue;
        }
        let category = &labels.vocabulary.categories[c];
        let name = format!("{stem}_{category}.png");
        nd_broden::write::write_label_png(&images.join(&name), size, map)?;
        occurrences(c, map, &mut occ);
        cells.push(name);
    }
    Ok((
        IndexRow {
            image: format!("{stem}.png"),
            split: "val".to_owned(),
            image_size: [image.height(), image.width()],
            label_size: size,
            cells,
        },
        occ,
    ))
}
