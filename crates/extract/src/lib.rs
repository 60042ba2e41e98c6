//! The extract stage: run a TorchScript model over a Broden-format dataset and store every
//! requested layer's activations, `[image, unit, y, x]` float32, in a Zarr group, with the
//! per-image, per-unit spatial maximum beside each.
//!
//! Main types: [`Config`] (what to extract and how), [`Preprocess`] (the model's input
//! normalisation), [`run`] (through the content-addressed store: a cached artifact means no
//! work) and [`list_layers`].
//!
//! The work is a three-stage pipeline so that the forward pass never waits: a decoder
//! thread decodes and normalises the next batch (in parallel over its images) while the
//! model runs on the current one, and a writer thread checks, reduces and compresses the
//! previous batch's outputs into Zarr.
//!
//! Invariants:
//! - the artifact key covers the model file's content, the images' content and names, the
//!   layers, output names, preprocessing and row range; never the device, batch size,
//!   thread count or any path;
//! - a non-finite activation fails the stage before anything is committed.
//!
//! ```no_run
//! use nd_extract::{Config, Preprocess, run};
//! let store = nd_store::Store::open("cache".as_ref())?;
//! let dataset = nd_broden::Dataset::open("broden1_224".as_ref(), &Default::default())?;
//! let config = Config::new("resnet18.pt".into(), vec!["layer4".into()], Preprocess::torchvision());
//! let outcome = run(&store, &dataset, &config)?;
//! println!("activations in {}", outcome.artifact.dir.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod pipeline;

use std::ops::Range;
use std::path::PathBuf;

use serde_json::json;

pub use error::{Error, Result, shape};
pub use nd_torch::{
    ChannelOrder, DeviceChoice, Model, Preprocess, model_fields, resolve_device,
    retain_freed_memory, set_threads,
};
pub use pipeline::{Floor, LayerInfo, list_layers, not_a_map};

/// The stage's name in the store.
pub const STAGE: &str = "extract";
/// Bumped when the artifact's layout or meaning changes.
pub const SCHEMA: u32 = 2;
pub use nd_arrays::ACTIVATIONS_DIR;
pub use nd_torch::LIBTORCH_VERSION;

/// What to extract, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// A TorchScript file whose `forward` returns the layers (a dict, or a tuple named by
    /// `output_names`).
    pub model: PathBuf,
    pub layers: Vec<String>,
    pub output_names: Option<Vec<String>>,
    pub preprocess: Preprocess,
    /// The rows of `index.csv` to use; `None` is all of them.
    pub images: Option<Range<usize>>,
    pub batch_size: usize,
    pub device: DeviceChoice,
    /// Worker threads for torch and decoding; 0 means one per core.
    pub threads: usize,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

impl Config {
    pub fn new(model: PathBuf, layers: Vec<String>, preprocess: Preprocess) -> Config {
        Config {
            model,
            layers,
            output_names: None,
            preprocess,
            images: None,
            batch_size: 32,
            device: DeviceChoice::Auto,
            threads: 0,
            progress: true,
        }
    }

    fn validate(&self, dataset: &nd_broden::Dataset) -> Result<Range<usize>> {
        if self.layers.is_empty() {
            return Err(Error::Config("no layers requested".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for layer in &self.layers {
            if !seen.insert(layer) {
                return Err(Error::Config(format!("layer `{layer}` is requested twice")));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        self.preprocess.validate()?;
        let rows = self.images.clone().unwrap_or(0..dataset.len());
        if rows.start >= rows.end || rows.end > dataset.len() {
            return Err(Error::Config(format!(
                "image range {}..{} is empty or beyond the dataset's {} rows",
                rows.start,
                rows.end,
                dataset.len()
            )));
        }
        Ok(rows)
    }
}

pub use nd_store::Outcome;

/// The store spec of an extraction: everything that determines its activations.
pub fn spec(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    config: &Config,
) -> Result<nd_store::Spec> {
    let rows = config.validate(dataset)?;
    if !config.model.is_file() {
        return Err(Error::Model {
            path: config.model.clone(),
            message: "no such file".into(),
        });
    }
    let model_digest = store.file_hash(&config.model).map_err(|e| Error::Model {
        path: config.model.clone(),
        message: chain(&e),
    })?;
    let images: Vec<String> = rows.clone().map(|row| dataset.image_file(row)).collect();
    let images_digest = store.digest_files(dataset.root(), &images)?;
    let mut layers = config.layers.clone();
    layers.sort();
    let params = json!({
        "layers": layers,
        "output_names": config.output_names,
        "preprocess": config.preprocess,
        "rows": [rows.start, rows.end],
        "dtype": "float32",
    });
    Ok(nd_store::Spec::new(STAGE, SCHEMA, params)
        .digest("model", model_digest)
        .digest("images", images_digest))
}

/// An error and its causes, `: `-separated (a store error keeps the OS's reason in its
/// source, which `to_string` alone drops).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Extracts through the store: returns the cached artifact when there is one, computes and
/// commits it otherwise.
pub fn run(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(store, dataset, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let rows = config.validate(dataset)?;
    // The fields of the layers extracted, as the model file gives them: what the
    // receptive-field upsampling of the segment stage reads.
    let fields: std::collections::BTreeMap<&String, nd_arrays::fields::Field> =
        match nd_torch::model_fields(&config.model)? {
            Some(model) => config
                .layers
                .iter()
                .filter_map(|l| model.layers.get(l).map(|f| (l, *f)))
                .collect(),
            None => Default::default(),
        };
    let input_size = pipeline::input_size(dataset, config, &rows);
    let pending = store.begin(&spec)?;
    let layers = pipeline::extract(
        dataset,
        config,
        rows.clone(),
        &pending.dir().join(ACTIVATIONS_DIR),
    )?;
    let outputs = json!({
        "activations": ACTIVATIONS_DIR,
        "images": rows.len(),
        "input_size": input_size,
        "fields": fields,
        "layers": layers.iter().map(|l| json!({
            "name": l.name,
            "node": nd_arrays::node_name(&l.name),
            "shape": [rows.len(), l.units, l.height, l.width],
        })).collect::<Vec<_>>(),
    });
    let mut versions = nd_store::versions();
    versions.insert("libtorch".to_owned(), LIBTORCH_VERSION.to_owned());
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// Times the forward passes alone over the configured rows, images decoded and normalised
/// in memory first (see [`Floor`]): the benchmark's floor for [`run`]. Writes nothing.
pub fn floor(dataset: &nd_broden::Dataset, config: &Config) -> Result<Floor> {
    let rows = config.validate(dataset)?;
    pipeline::floor(dataset, config, rows)
}
