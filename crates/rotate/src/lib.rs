//! The rotate stage: the paper's control for axis alignment. It turns the basis of a
//! layer's units by a random rotation `Q^α` and writes the activations in that basis,
//! `A'(image, :, y, x) = Q^α · A(image, :, y, x)` at every position of every image, as an
//! artifact that every later stage reads exactly as it reads an extract artifact. A random
//! rotation keeps everything a layer can represent (any linear read-out of the units reads
//! the rotated units through `Qᵀ`) but mixes its units: the dissection of the rotated layer
//! finds far fewer unique detectors, which says that interpretability is a property of the
//! layer's own basis (Bau et al., CVPR 2017, section 3.2; the original's `--rotation_seed`
//! and `--rotation_power`).
//!
//! Main types: [`Config`] (which [`Rotation`], which layers), [`run`] (through the store),
//! [`spec`] and the math in [`matrix`]: seeded rotations uniform over SO(n) and their
//! fractional powers, each `Q^α` a rotation (`α = 1` the whole of `Q`, `α = 0.5` half of
//! every one of its turns).
//!
//! Invariants:
//! - the artifact's key covers the extract artifact's key, the layers, the rotation (seed
//!   and power, or the given matrices' content) and [`SCHEMA`]; never a path or a thread
//!   count;
//! - the artifact's manifest carries the extract artifact's outputs (`layers`, `rows`,
//!   `input_size`, `fields`...) for the layers it holds, and its parameters and digests
//!   besides the rotation's, so that the quantile, segment, score, report and html stages
//!   take it where they take an extract artifact ([`nd_store::ACTIVATION_STAGES`]), and
//!   image shards of one extraction rotated alike are image shards of one rotation;
//! - the matrix applied to each layer is in the artifact, `matrices/<layer>.npy` (float64,
//!   `numpy.load` reads it), so anyone can check or reuse it;
//! - a rotation of power 0 is the identity: [`run`] returns the extract artifact itself
//!   (all its layers), so that the unrotated run and the rotation by 0 share every later
//!   artifact;
//! - memory is bounded by one row of Zarr chunks (at most 64 MiB of activations) and the
//!   n×n matrix, whatever the number of images.
//!
//! Cost: `n²` multiply-adds per position and image (float64 products, stored as float32),
//! over the images in parallel: the demo's conv5 (256 units, 14×14) on 1,000 images is 26
//! GFLOP, about 1.2 s of one core (ARCHITECTURE.md).
//!
//! ```no_run
//! let store = nd_store::Store::open("cache".as_ref())?;
//! let extract = store.list("extract")?.remove(0);
//! let config = nd_rotate::Config::random(1, 1.0);
//! let outcome = nd_rotate::run(&store, &extract, &config)?;
//! println!("rotated activations in {}", outcome.artifact.dir.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod matrix;
pub mod npy;

use std::collections::BTreeMap;

use nalgebra::DMatrix;
use nd_arrays::{ActivationGroup, LayerReader, LayerWriter};
use rayon::prelude::*;
use serde_json::json;

pub use nd_store::Outcome;

/// The stage's name in the store.
pub const STAGE: &str = "rotate";
/// Bumped when the artifact's layout or meaning changes (or the random stream does).
pub const SCHEMA: u32 = 1;
/// The folder of the matrices applied, one `<layer node>.npy` a layer.
pub const MATRICES_DIR: &str = "matrices";

/// Largest entry of `MᵀM − I` a given matrix may have.
const ORTHOGONAL_TOLERANCE: f64 = 1e-9;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Arrays(#[from] nd_arrays::Error),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The basis change the stage applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// `Q^power` of the random rotation `Q` that `seed` names (for each layer, of the
    /// layer's width): `power` in [0, 1], 1 the whole rotation, 0 none.
    Random { seed: u64, power: f64 },
    /// A given orthogonal matrix for each layer, the layer's width square (a permutation,
    /// a basis found elsewhere); keyed by content.
    Given(BTreeMap<String, DMatrix<f64>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub rotation: Rotation,
    /// Only these layers (the artifact then holds only them); `None` is every layer.
    pub layers: Option<Vec<String>>,
    /// Draw a progress bar on stderr (images done); changes no output.
    pub progress: bool,
}

impl Config {
    /// Every layer turned by `Q^power` of the rotation `seed` names.
    pub fn random(seed: u64, power: f64) -> Config {
        Config {
            rotation: Rotation::Random { seed, power },
            layers: None,
            progress: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if let Rotation::Random { power, .. } = self.rotation
            && !(0.0..=1.0).contains(&power)
        {
            return Err(Error::Config(format!(
                "power must be between 0 and 1 (the fraction of the rotation applied), got {power}"
            )));
        }
        if let Some(layers) = &self.layers {
            if layers.is_empty() {
                return Err(Error::Config("layers: no layer given".into()));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(twice) = layers.iter().find(|l| !seen.insert(*l)) {
                return Err(Error::Config(format!("layers: `{twice}` is given twice")));
            }
        }
        if let Rotation::Given(matrices) = &self.rotation {
            for (layer, m) in matrices {
                let n = m.nrows();
                if m.ncols() != n {
                    return Err(Error::Config(format!(
                        "the matrix given for layer `{layer}` is {}×{}, not square",
                        n,
                        m.ncols()
                    )));
                }
                let error = (m.transpose() * m - DMatrix::<f64>::identity(n, n)).amax();
                if error > ORTHOGONAL_TOLERANCE || !error.is_finite() {
                    return Err(Error::Config(format!(
                        "the matrix given for layer `{layer}` is not orthogonal (MᵀM is {error:e} from the identity)"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Whether the rotation is the identity by construction (power 0).
    fn is_identity(&self) -> bool {
        matches!(self.rotation, Rotation::Random { power, .. } if power == 0.0)
    }
}

/// The layers of the extract artifact the stage turns, in the artifact's order; fails
/// naming a requested layer it does not hold.
fn selected_layers(activations: &nd_store::Artifact, config: &Config) -> Result<Vec<String>> {
    let group = ActivationGroup::open(&activations.dir.join(nd_arrays::ACTIVATIONS_DIR))?;
    let all = group.layers()?;
    let wanted: Vec<&String> = match (&config.layers, &config.rotation) {
        (Some(layers), _) => layers.iter().collect(),
        (None, Rotation::Given(matrices)) => matrices.keys().collect(),
        (None, Rotation::Random { .. }) => all.iter().collect(),
    };
    if let Some(missing) = wanted.iter().find(|l| !all.contains(l)) {
        return Err(Error::Config(format!(
            "layers: `{missing}` is not in the activations {} (they hold {})",
            activations.dir.display(),
            all.join(", ")
        )));
    }
    if let Rotation::Given(matrices) = &config.rotation
        && let Some(bare) = wanted.iter().find(|l| !matrices.contains_key(**l))
    {
        return Err(Error::Config(format!(
            "no matrix is given for layer `{bare}`"
        )));
    }
    Ok(all.iter().filter(|l| wanted.contains(l)).cloned().collect())
}

/// Checks the input and the configuration, and returns the layers to turn.
fn check(activations: &nd_store::Artifact, config: &Config) -> Result<Vec<String>> {
    config.validate()?;
    activations.expect_stage("extract")?;
    selected_layers(activations, config)
}

/// The store spec of a rotation of an extract artifact.
pub fn spec(activations: &nd_store::Artifact, config: &Config) -> Result<nd_store::Spec> {
    let layers = check(activations, config)?;
    let rotation = match &config.rotation {
        Rotation::Random { seed, power } => json!({ "seed": seed, "power": power }),
        Rotation::Given(matrices) => {
            let digests: BTreeMap<&String, String> = matrices
                .iter()
                .filter(|(layer, _)| layers.contains(layer))
                .map(|(layer, m)| (layer, blake3::hash(&npy::to_bytes(m)).to_hex().to_string()))
                .collect();
            json!({ "given": digests })
        }
    };
    // The extraction's own parameters (less its rows, which a rotation of an image shard
    // records in its outputs) and digests, so that rotations of image shards of one
    // extraction are checked as shards of one run.
    let mut source = activations.manifest.params.clone();
    if let Some(params) = source.as_object_mut() {
        params.remove("rows");
    }
    let params = json!({ "layers": layers, "rotation": rotation, "source": source });
    let mut spec =
        nd_store::Spec::new(STAGE, SCHEMA, params).input("activations", activations.key());
    for (role, digest) in &activations.manifest.digests {
        spec = spec.digest(role, digest.clone());
    }
    Ok(spec)
}

/// The matrix applied to a layer of `units` units.
fn layer_matrix(rotation: &Rotation, layer: &str, units: usize) -> Result<DMatrix<f64>> {
    match rotation {
        Rotation::Random { seed, power } => Ok(matrix::power(
            &matrix::random_rotation(units, *seed),
            *power,
        )),
        Rotation::Given(matrices) => {
            let m = &matrices[layer];
            if m.nrows() != units {
                return Err(Error::Config(format!(
                    "the matrix given for layer `{layer}` is {}×{}, but the layer has {units} units",
                    m.nrows(),
                    m.ncols()
                )));
            }
            Ok(m.clone())
        }
    }
}

/// Turns one image's activations, `units × positions` row-major, by `m` (given as its
/// transpose `mt`), into `out`, in float64.
///
/// The image's values read as a column-major `positions × units` matrix are `Aᵀ`, and the
/// column-major data of `Aᵀ Mᵀ = (M A)ᵀ` is `M A` row-major: no transposition is copied.
pub fn rotate_image(values: &[f32], mt: &DMatrix<f64>, out: &mut [f32]) {
    let units = mt.nrows();
    let positions = values.len() / units.max(1);
    let a = DMatrix::from_iterator(positions, units, values.iter().map(|&v| f64::from(v)));
    let turned = a * mt;
    for (o, &v) in out.iter_mut().zip(turned.as_slice()) {
        *o = v as f32;
    }
}

/// Writes a layer's activations turned by `m`, a row of chunks of images at a time.
fn rotate_layer(
    reader: &LayerReader,
    mut writer: LayerWriter,
    m: &DMatrix<f64>,
    progress: &indicatif::ProgressBar,
) -> Result<()> {
    let shape = reader.shape();
    let per_image = shape.per_image();
    let mt = m.transpose();
    let (chunk_images, _) = reader.chunk_extent();
    let mut start = 0;
    while start < shape.images {
        let end = (start + chunk_images).min(shape.images);
        let block = reader.read(start..end, 0..shape.units)?;
        let mut turned = vec![0.0f32; block.len()];
        if per_image > 0 {
            turned
                .par_chunks_mut(per_image)
                .zip(block.par_chunks(per_image))
                .for_each(|(out, values)| rotate_image(values, &mt, out));
        }
        writer.push(&turned)?;
        progress.inc(end - start);
        start = end;
    }
    writer.finish()?;
    Ok(())
}

/// Rotates the layers of an extract artifact through the store; a rotation of power 0
/// returns the extract artifact itself.
pub fn run(
    store: &nd_store::Store,
    activations: &nd_store::Artifact,
    config: &Config,
) -> Result<Outcome> {
    if config.is_identity() {
        check(activations, config)?;
        return Ok(Outcome {
            artifact: activations.clone(),
            computed: false,
        });
    }
    let spec = spec(activations, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let layers = check(activations, config)?;
    let rows = activations.rows()?;
    let input = ActivationGroup::open(&activations.dir.join(nd_arrays::ACTIVATIONS_DIR))?;
    let readers: Vec<LayerReader> = layers
        .iter()
        .map(|l| input.open_layer(l))
        .collect::<nd_arrays::Result<_>>()?;
    let total = readers.iter().map(|r| r.shape().images).sum();
    let progress = nd_store::progress::bar(
        config.progress,
        total,
        "rotate {bar:32} {pos}/{len} images, {rate}, eta {eta}",
    );
    let pending = store.begin(&spec)?;
    let output = ActivationGroup::create(&pending.dir().join(nd_arrays::ACTIVATIONS_DIR))?;
    output.set_layers(&layers)?;
    let matrices = pending.dir().join(MATRICES_DIR);
    std::fs::create_dir_all(&matrices).map_err(|source| Error::Io {
        path: matrices.clone(),
        source,
    })?;
    let mut matrix_files = BTreeMap::new();
    for (layer, reader) in layers.iter().zip(&readers) {
        let shape = reader.shape();
        let m = layer_matrix(&config.rotation, layer, shape.units as usize)?;
        let file = format!("{MATRICES_DIR}/{}.npy", nd_arrays::node_name(layer));
        let path = pending.dir().join(&file);
        std::fs::write(&path, npy::to_bytes(&m)).map_err(|source| Error::Io { path, source })?;
        matrix_files.insert(layer.clone(), file);
        rotate_layer(reader, output.create_layer(layer, shape)?, &m, &progress)?;
    }
    progress.finish_and_clear();
    let outputs = outputs(activations, &layers, rows, &matrix_files);
    let artifact = pending.commit(nd_store::versions(), outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// The extract artifact's outputs for the layers turned, with the rows of the dataset it
/// covers and the matrices applied.
fn outputs(
    activations: &nd_store::Artifact,
    layers: &[String],
    rows: std::ops::Range<usize>,
    matrices: &BTreeMap<String, String>,
) -> serde_json::Value {
    let mut outputs = activations.manifest.outputs.clone();
    let kept = |name: Option<&str>| name.is_some_and(|n| layers.iter().any(|l| l == n));
    if let Some(entries) = outputs.get_mut("layers").and_then(|l| l.as_array_mut()) {
        entries.retain(|e| kept(e["name"].as_str()));
    }
    if let Some(fields) = outputs.get_mut("fields").and_then(|f| f.as_object_mut()) {
        fields.retain(|name, _| kept(Some(name)));
    }
    outputs["rows"] = json!([rows.start, rows.end]);
    outputs["matrices"] = json!(matrices);
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_turns_at_every_position() {
        // Two units, three positions; m swaps the units and negates the new second one.
        let m = DMatrix::from_row_slice(2, 2, &[0.0, 1.0, -1.0, 0.0]);
        let values = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0];
        let mut out = [0.0f32; 6];
        rotate_image(&values, &m.transpose(), &mut out);
        assert_eq!(out, [10.0, 20.0, 30.0, -1.0, -2.0, -3.0]);
    }

    #[test]
    fn power_outside_zero_one_is_refused_naming_it() {
        for power in [-0.1, 1.5, f64::NAN] {
            let err = Config::random(0, power).validate().unwrap_err().to_string();
            assert!(err.starts_with("power must be between 0 and 1"), "{err}");
        }
        assert!(Config::random(0, 0.0).validate().is_ok());
        assert!(Config::random(0, 1.0).validate().is_ok());
    }

    #[test]
    fn a_given_matrix_must_be_orthogonal() {
        let mut config = Config::random(0, 1.0);
        config.rotation = Rotation::Given(BTreeMap::from([(
            "conv".to_owned(),
            DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 0.0, 1.0]),
        )]));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("layer `conv` is not orthogonal"), "{err}");
    }
}
