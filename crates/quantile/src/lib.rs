//! The quantile stage: for every unit of every layer, the exact threshold `T_k` that only
//! the top fraction `top` (default 0.005) of the unit's activations exceeds, over every
//! spatial position of every image of the raw, not upsampled, activations.
//!
//! Convention: `T_k` is the rank-interpolated empirical quantile at level `1 − top` (NumPy's
//! default "linear" method): with the unit's `n` activations sorted as `v`,
//! `pos = (1 − top)(n − 1)` and `T_k = v[⌊pos⌋] + (pos − ⌊pos⌋)(v[⌊pos⌋+1] − v[⌊pos⌋])`.
//! Both reference implementations estimate it with a sampling sketch instead (and read it
//! at level 994/999); ours is exact and reproducible.
//!
//! It takes two passes over each block of units ([`select`]): a 65,536-bin histogram of the
//! high 16 bits of an order-preserving integer key, then one of the low 16 bits inside the
//! bins that hold the two wanted ranks. Memory is 256 KiB per unit being processed and
//! does not depend on the number of images. Blocks of units (columns of Zarr chunks) run in
//! parallel.
//!
//! ```no_run
//! let store = nd_store::Store::open("cache".as_ref())?;
//! let extract = store.list("extract")?.remove(0);
//! let outcome = nd_quantile::run(&store, &extract, &nd_quantile::Config::default())?;
//! let rows = nd_tables::thresholds::read_rows(&outcome.artifact.dir.join(nd_tables::thresholds::FILE))?;
//! println!("unit 0 of {}: threshold {}", rows[0].layer, rows[0].threshold);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod select;

use nd_arrays::{ActivationGroup, LayerReader};
use nd_tables::thresholds::{self, Row};
use rayon::prelude::*;
use serde_json::json;

use select::{Selector, Target};

pub const STAGE: &str = "quantile";
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
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The fraction of each unit's activations above its threshold, in (0, 1).
    pub top: f64,
}

impl Default for Config {
    fn default() -> Config {
        Config { top: 0.005 }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        if !(self.top > 0.0 && self.top < 1.0) {
            return Err(Error::Config(format!(
                "top must be between 0 and 1 (exclusive), got {}",
                self.top
            )));
        }
        Ok(())
    }
}

/// The thresholds of every unit of one layer.
pub fn layer_thresholds(layer: &LayerReader, name: &str, top: f64) -> Result<Vec<Row>> {
    let shape = layer.shape();
    let (chunk_images, chunk_units) = layer.chunk_extent();
    let per_map = shape.per_map();
    let level = 1.0 - top;
    let columns: Vec<u64> = (0..shape.units).step_by(chunk_units as usize).collect();
    let blocks: Vec<Vec<Row>> = columns
        .into_par_iter()
        .map(|u0| -> Result<Vec<Row>> {
            let units = u0..(u0 + chunk_units).min(shape.units);
            let n_units = (units.end - units.start) as usize;
            let mut selectors: Vec<Selector> = (0..n_units).map(|_| Selector::new()).collect();
            // The same sweep over the column twice: count, then refine.
            let sweep = |selectors: &mut Vec<Selector>, refine: bool| -> Result<()> {
                for i0 in (0..shape.images).step_by(chunk_images as usize) {
                    let images = i0..(i0 + chunk_images).min(shape.images);
                    let n_images = (images.end - images.start) as usize;
                    let data = layer.read(images, units.clone())?;
                    selectors.par_iter_mut().enumerate().for_each(|(j, s)| {
                        for i in 0..n_images {
                            let start = (i * n_units + j) * per_map;
                            let map = &data[start..start + per_map];
                            if refine { s.refine(map) } else { s.count(map) }
                        }
                    });
                }
                Ok(())
            };
            sweep(&mut selectors, false)?;
            let target = Target::new(shape.images * per_map as u64, level);
            selectors.par_iter_mut().for_each(|s| s.locate(target));
            sweep(&mut selectors, true)?;
            Ok(selectors
                .iter()
                .zip(units)
                .map(|(s, unit)| {
                    let (a, b) = s.values();
                    let (a, b) = (f64::from(a), f64::from(b));
                    Row {
                        layer: name.to_owned(),
                        unit: unit as u32,
                        threshold: a + target.fraction * (b - a),
                        top,
                        n_values: s.count,
                        min: s.min,
                        max: s.max,
                        zero_fraction: s.zeros as f64 / s.count.max(1) as f64,
                    }
                })
                .collect())
        })
        .collect::<Result<_>>()?;
    Ok(blocks.into_iter().flatten().collect())
}

/// The store spec of the thresholds of an extract artifact.
pub fn spec(activations: &nd_store::Artifact, config: &Config) -> Result<nd_store::Spec> {
    config.validate()?;
    Ok(
        nd_store::Spec::new(STAGE, SCHEMA, json!({ "top": config.top }))
            .input("activations", activations.key()),
    )
}

pub use nd_store::Outcome;

/// Computes the thresholds of every layer of an extract artifact through the store.
pub fn run(
    store: &nd_store::Store,
    activations: &nd_store::Artifact,
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(activations, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let group = ActivationGroup::open(&activations.dir.join(nd_arrays::ACTIVATIONS_DIR))?;
    let layers = group.layers()?;
    let mut rows = Vec::new();
    for name in &layers {
        rows.extend(layer_thresholds(
            &group.open_layer(name)?,
            name,
            config.top,
        )?);
    }
    let pending = store.begin(&spec)?;
    let metadata = pending.table_metadata();
    thresholds::write_rows(&pending.dir().join(thresholds::FILE), &rows, &metadata)?;
    let outputs = json!({ "table": thresholds::FILE, "layers": layers, "units": rows.len() });
    let versions = nd_store::versions();
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nd_arrays::LayerShape;

    /// A 2-image, 3-unit layer of 2×2 maps whose thresholds are worked out by hand.
    fn cube(dir: &std::path::Path) -> ActivationGroup {
        let group = ActivationGroup::create(&dir.join(nd_arrays::ACTIVATIONS_DIR)).unwrap();
        let shape = LayerShape {
            images: 2,
            units: 3,
            height: 2,
            width: 2,
        };
        let mut w = group.create_layer("conv", shape).unwrap();
        #[rustfmt::skip]
        w.push(&[
            // image 0: unit 0, unit 1, unit 2
            0.0, 1.0, 2.0, 3.0,   5.0, 5.0, 5.0, 5.0,   -1.0, 0.0, 0.0, 0.0,
            // image 1
            4.0, 5.0, 6.0, 7.0,   5.0, 5.0, 5.0, 9.0,    0.0, 0.0, 0.0, 8.0,
        ]).unwrap();
        w.finish().unwrap();
        group.set_layers(&["conv".to_owned()]).unwrap();
        group
    }

    #[test]
    fn hand_computed_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let group = cube(dir.path());
        let layer = group.open_layer("conv").unwrap();
        // 8 values per unit. top = 0.25: pos = 0.75 · 7 = 5.25.
        // unit 0 sorted 0..7: 5 + 0.25 · (6 − 5) = 5.25
        // unit 1 sorted 5,5,5,5,5,5,5,9: 5 + 0.25 · 0 = 5
        // unit 2 sorted −1,0,0,0,0,0,0,8: 0
        let rows = layer_thresholds(&layer, "conv", 0.25).unwrap();
        let t: Vec<f64> = rows.iter().map(|r| r.threshold).collect();
        assert_eq!(t, [5.25, 5.0, 0.0]);
        assert_eq!(rows[2].min, -1.0);
        assert_eq!(rows[2].max, 8.0);
        assert_eq!(rows[2].zero_fraction, 6.0 / 8.0);
        assert_eq!(rows[0].n_values, 8);
        // top = 0.1: pos = 6.3; unit 0: 6 + 0.3 · 1 = 6.3; unit 1: 5 + 0.3 · 4 = 6.2.
        let rows = layer_thresholds(&layer, "conv", 0.1).unwrap();
        assert!((rows[0].threshold - 6.3).abs() < 1e-12);
        assert!((rows[1].threshold - 6.2).abs() < 1e-12);
        assert!((rows[2].threshold - 2.4).abs() < 1e-12);
    }

    #[test]
    fn matches_a_full_sort_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let group = ActivationGroup::create(&dir.path().join("a.zarr")).unwrap();
        // 150 images: three rows of chunks; 5 units of 3×3 maps.
        let shape = LayerShape {
            images: 150,
            units: 5,
            height: 3,
            width: 3,
        };
        let values: Vec<f32> = (0..150 * 45u64)
            .map(|i| {
                let x = (i.wrapping_mul(2_654_435_761) % 10_007) as f32 / 1000.0 - 2.0;
                x.max(0.0)
            })
            .collect();
        let mut w = group.create_layer("l", shape).unwrap();
        w.push(&values).unwrap();
        w.finish().unwrap();
        let rows = layer_thresholds(&group.open_layer("l").unwrap(), "l", 0.005).unwrap();
        for unit in 0..5 {
            let mut v: Vec<f64> = (0..150)
                .flat_map(|i| {
                    values[i * 45 + unit * 9..i * 45 + unit * 9 + 9]
                        .iter()
                        .map(|&x| f64::from(x))
                })
                .collect();
            v.sort_by(f64::total_cmp);
            let pos = 0.995 * (v.len() - 1) as f64;
            let lo = pos.floor() as usize;
            let expected = v[lo] + (pos - lo as f64) * (v[lo + 1] - v[lo]);
            assert_eq!(rows[unit].threshold, expected, "unit {unit}");
        }
    }

    #[test]
    fn second_run_is_cached_and_top_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = nd_store::Store::open(&dir.path().join("cache")).unwrap();
        let spec = nd_store::Spec::new("extract", 1, json!({}));
        let pending = store.begin(&spec).unwrap();
        cube(pending.dir());
        let activations = pending.commit(Default::default(), json!({})).unwrap();
        let config = Config { top: 0.25 };
        let first = run(&store, &activations, &config).unwrap();
        assert!(first.computed);
        let second = run(&store, &activations, &config).unwrap();
        assert!(!second.computed);
        assert_eq!(first.artifact.dir, second.artifact.dir);
        let rows = thresholds::read_rows(&first.artifact.dir.join(thresholds::FILE)).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].layer, "conv");
        let meta = nd_tables::metadata(&first.artifact.dir.join(thresholds::FILE)).unwrap();
        assert_eq!(meta["netdissect.params"], r#"{"top":0.25}"#);
        for top in [0.0, 1.0, -0.1, f64::NAN] {
            let err = run(&store, &activations, &Config { top })
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("top must be between 0 and 1"), "{err}");
        }
    }
}
