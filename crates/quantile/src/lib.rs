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
//! It reads each block of units once ([`select::TopK`]): the rank is near the top, so only
//! the values not below the smallest of the largest `n − rank` seen so far are kept (8
//! bytes per value above the threshold). Where that would pass 4 MiB per unit (`top` near
//! 0.5), it takes two passes instead ([`select::Selector`]): a 65,536-bin histogram of the
//! high 16 bits of an order-preserving integer key, then one of the low 16 bits inside the
//! bins that hold the two wanted ranks, in 256 KiB per unit whatever the number of images.
//! Blocks of units (columns of Zarr chunks) run in parallel.
//!
//! ```no_run
//! let store = nd_store::Store::open("cache".as_ref())?;
//! let extract = store.list("extract")?.remove(0);
//! let outcome = nd_quantile::run(&store, &[extract], &nd_quantile::Config::default())?;
//! let rows = nd_tables::thresholds::read_rows(&outcome.artifact.dir.join(nd_tables::thresholds::FILE))?;
//! println!("unit 0 of {}: threshold {}", rows[0].layer, rows[0].threshold);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod select;

use nd_arrays::{ActivationGroup, LayerReader};
use nd_tables::thresholds::{self, Row};
use rayon::prelude::*;
use serde_json::json;

use select::{Selector, Target, TopK};

/// Units whose one-pass buffer would exceed this take two passes instead (a rank far from
/// the top: `top` near 0.5, or billions of values).
const ONE_PASS_BYTES: u64 = 4 << 20;

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
    /// Only these units of each layer (a block of a sharded run); `None` is all of them.
    pub units: Option<Units>,
    /// Draw a progress bar on stderr (units done); changes no output.
    pub progress: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            top: 0.005,
            units: None,
            progress: false,
        }
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

/// The units of each layer one run of the stage covers, so that the units of a wide model
/// can be split over several jobs (and machines) and the blocks merged ([`merge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Units {
    /// Units `start..end` of every layer (clipped to the layer's width).
    Range(u64, u64),
    /// The `k`-th (from 0) of `n` nearly equal blocks of every layer.
    Block(u64, u64),
}

impl Units {
    /// The units of a layer of `width` units this selection covers.
    pub fn of(self, width: u64) -> std::ops::Range<u64> {
        match self {
            Units::Range(a, b) => a.min(width)..b.min(width),
            Units::Block(k, n) => k * width / n..(k + 1) * width / n,
        }
    }

    fn to_json(self) -> serde_json::Value {
        match self {
            Units::Range(a, b) => json!([a, b]),
            Units::Block(k, n) => json!(format!("{k}/{n}")),
        }
    }
}

impl std::str::FromStr for Units {
    type Err = String;

    /// `START..END` (unit numbers, the end excluded) or `K/N` (block K, from 0, of N).
    fn from_str(text: &str) -> Result<Units, String> {
        let number = |s: &str| {
            s.trim().parse::<u64>().map_err(|_| {
                format!("units `{text}`: `{s}` is not a number (use START..END or K/N)")
            })
        };
        if let Some((a, b)) = text.split_once("..") {
            let (a, b) = (number(a)?, number(b)?);
            if a >= b {
                return Err(format!("units `{text}`: the range is empty"));
            }
            Ok(Units::Range(a, b))
        } else if let Some((k, n)) = text.split_once('/') {
            let (k, n) = (number(k)?, number(n)?);
            if k >= n {
                return Err(format!(
                    "units `{text}`: block {k} of {n} does not exist (blocks count from 0)"
                ));
            }
            Ok(Units::Block(k, n))
        } else {
            Err(format!(
                "units `{text}`: use START..END (unit numbers) or K/N (block K of N, from 0)"
            ))
        }
    }
}

/// The thresholds of the units `units` of one layer, whose images are split over one or
/// more readers (image shards, in row order).
pub fn layer_thresholds(
    shards: &[LayerReader],
    name: &str,
    top: f64,
    units: std::ops::Range<u64>,
) -> Result<Vec<Row>> {
    thresholds_by(
        shards,
        name,
        top,
        units,
        ONE_PASS_BYTES,
        &indicatif::ProgressBar::hidden(),
    )
}

/// [`layer_thresholds`], in one pass when a unit's buffer fits in `one_pass_bytes`.
fn thresholds_by(
    shards: &[LayerReader],
    name: &str,
    top: f64,
    units: std::ops::Range<u64>,
    one_pass_bytes: u64,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Row>> {
    let shape = shards[0].shape();
    let (_, chunk_units) = shards[0].chunk_extent();
    let per_map = shape.per_map();
    let level = 1.0 - top;
    let images: u64 = shards.iter().map(|s| s.shape().images).sum();
    // Columns of chunks, cut at the selection's edges.
    let mut columns = Vec::new();
    let mut u = units.start;
    while u < units.end {
        let next = ((u / chunk_units + 1) * chunk_units).min(units.end);
        columns.push(u..next);
        u = next;
    }
    let target = Target::new(images * per_map as u64, level);
    let one_pass = TopK::memory(images * per_map as u64, target) <= one_pass_bytes;
    let blocks: Vec<Vec<Row>> = columns
        .into_par_iter()
        .map(|units| -> Result<Vec<Row>> {
            let n_units = (units.end - units.start) as usize;
            // One sweep over the column of chunks, handing each unit's maps to its state.
            fn sweep<S: Send>(
                shards: &[LayerReader],
                units: &std::ops::Range<u64>,
                states: &mut [S],
                f: impl Fn(&mut S, &[f32]) + Sync,
            ) -> Result<()> {
                debug_assert_eq!(states.len() as u64, units.end - units.start);
                // Whole chunks, each read straight into its buffer (shards of other sizes
                // have other chunk extents, so a column may span chunks of a shard).
                for layer in shards {
                    let (chunk_images, chunk_units) = layer.chunk_extent();
                    let unit_chunks = units.start / chunk_units..units.end.div_ceil(chunk_units);
                    for image_chunk in 0..layer.shape().images.div_ceil(chunk_images) {
                        for unit_chunk in unit_chunks.clone() {
                            let chunk = layer.read_chunk(image_chunk, unit_chunk)?;
                            let first = chunk.units.start.max(units.start);
                            let last = chunk.units.end.min(units.end);
                            let part = &mut states
                                [(first - units.start) as usize..(last - units.start) as usize];
                            part.par_iter_mut().enumerate().for_each(|(j, state)| {
                                let unit = first + j as u64;
                                for image in chunk.images.clone() {
                                    f(state, chunk.map(image, unit));
                                }
                            });
                        }
                    }
                }
                Ok(())
            }
            let row = |unit: u64, (a, b): (f32, f32), count: u64, zeros: u64, min, max| {
                let (a, b) = (f64::from(a), f64::from(b));
                Row {
                    layer: name.to_owned(),
                    unit: unit as u32,
                    threshold: a + target.fraction * (b - a),
                    top,
                    n_values: count,
                    min,
                    max,
                    zero_fraction: zeros as f64 / count.max(1) as f64,
                }
            };
            if one_pass {
                let n = images * per_map as u64;
                let mut tops: Vec<TopK> = (0..n_units).map(|_| TopK::new(n, target)).collect();
                sweep(shards, &units, &mut tops, |t, map| t.push(map))?;
                progress.inc(n_units as u64);
                return Ok(tops
                    .iter_mut()
                    .zip(units)
                    .map(|(t, unit)| {
                        let values = t.values(target);
                        row(unit, values, t.count, t.zeros, t.min, t.max)
                    })
                    .collect());
            }
            // Two sweeps: count, then refine.
            let mut selectors: Vec<Selector> = (0..n_units).map(|_| Selector::new()).collect();
            sweep(shards, &units, &mut selectors, |s, map| s.count(map))?;
            selectors.par_iter_mut().for_each(|s| s.locate(target));
            sweep(shards, &units, &mut selectors, |s, map| s.refine(map))?;
            progress.inc(n_units as u64);
            Ok(selectors
                .iter()
                .zip(units)
                .map(|(s, unit)| row(unit, s.values(), s.count, s.zeros, s.min, s.max))
                .collect())
        })
        .collect::<Result<_>>()?;
    Ok(blocks.into_iter().flatten().collect())
}

/// Puts image shards of one extraction in row order, and checks that they are shards of
/// one extraction (same model, layers and preprocessing) that follow one another.
fn order_shards(activations: &[nd_store::Artifact]) -> Result<Vec<&nd_store::Artifact>> {
    let Some(first) = activations.first() else {
        return Err(Error::Config("no extract artifact given".into()));
    };
    if activations.len() == 1 {
        first.expect_activations()?;
        return Ok(vec![first]);
    }
    for a in activations {
        a.expect_activations()?;
    }
    let shards = nd_store::in_row_order(activations)?;
    let without_rows = |a: &nd_store::Artifact| {
        let mut params = a.manifest.params.clone();
        params.as_object_mut().map(|p| p.remove("rows"));
        let mut digests = a.manifest.digests.clone();
        digests.remove("images");
        (a.manifest.schema, params, digests)
    };
    for pair in shards.windows(2) {
        let ((_, a0), (_, a1)) = (&pair[0], &pair[1]);
        if without_rows(a0) != without_rows(a1) {
            return Err(Error::Config(format!(
                "{} and {} are not image shards of one extraction (their model, layers or \
                 preprocessing differ)",
                a0.dir.display(),
                a1.dir.display()
            )));
        }
    }
    Ok(shards.into_iter().map(|(_, a)| a).collect())
}

/// The roles of extract artifacts in a quantile spec: `activations` for one (as before
/// sharding existed, so unsharded keys never change), `activations.0000`... for shards.
fn input_roles(n: usize) -> Vec<String> {
    if n == 1 {
        vec!["activations".to_owned()]
    } else {
        (0..n).map(|i| format!("activations.{i:04}")).collect()
    }
}

/// The store spec of the thresholds of an extract artifact, or of image shards of one.
pub fn spec(activations: &[nd_store::Artifact], config: &Config) -> Result<nd_store::Spec> {
    config.validate()?;
    let shards = order_shards(activations)?;
    let mut params = json!({ "top": config.top });
    if let Some(units) = config.units {
        params["units"] = units.to_json();
    }
    let mut spec = nd_store::Spec::new(STAGE, SCHEMA, params);
    for (role, shard) in input_roles(shards.len()).iter().zip(&shards) {
        spec = spec.input(role, shard.key());
    }
    Ok(spec)
}

pub use nd_store::Outcome;

/// Computes the thresholds of every layer of an extract artifact (or of image shards of
/// one, given in any order) through the store: of every unit, or of `config.units`.
pub fn run(
    store: &nd_store::Store,
    activations: &[nd_store::Artifact],
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(activations, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let shards = order_shards(activations)?;
    let groups: Vec<ActivationGroup> = shards
        .iter()
        .map(|a| ActivationGroup::open(&a.dir.join(nd_arrays::ACTIVATIONS_DIR)))
        .collect::<nd_arrays::Result<_>>()?;
    let layers = groups[0].layers()?;
    let mut total = 0;
    for name in &layers {
        let units = groups[0].open_layer(name)?.shape().units;
        let selected = config.units.map_or(0..units, |u| u.of(units));
        total += selected.end - selected.start;
    }
    let progress = nd_store::progress::bar(
        config.progress,
        total,
        "quantile {bar:32} {pos}/{len} units, {rate}, eta {eta}",
    );
    let mut rows = Vec::new();
    let (mut widths, mut selected) = (Vec::new(), Vec::new());
    for name in &layers {
        let readers: Vec<LayerReader> = groups
            .iter()
            .map(|g| g.open_layer(name))
            .collect::<nd_arrays::Result<_>>()?;
        let shape = readers[0].shape();
        for (reader, shard) in readers.iter().zip(&shards) {
            let s = reader.shape();
            if (s.units, s.height, s.width) != (shape.units, shape.height, shape.width) {
                return Err(Error::Config(format!(
                    "layer `{name}` has {}×{}×{} maps in {} but {}×{}×{} in {}",
                    s.units,
                    s.height,
                    s.width,
                    shard.dir.display(),
                    shape.units,
                    shape.height,
                    shape.width,
                    shards[0].dir.display()
                )));
            }
        }
        let units = config.units.map_or(0..shape.units, |u| u.of(shape.units));
        widths.push(shape.units);
        selected.push(json!([units.start, units.end]));
        rows.extend(thresholds_by(
            &readers,
            name,
            config.top,
            units,
            ONE_PASS_BYTES,
            &progress,
        )?);
    }
    progress.finish_and_clear();
    let pending = store.begin(&spec)?;
    let metadata = pending.table_metadata();
    thresholds::write_rows(&pending.dir().join(thresholds::FILE), &rows, &metadata)?;
    let mut outputs = json!({
        "table": thresholds::FILE,
        "layers": layers,
        "widths": widths,
        "units": rows.len(),
    });
    if config.units.is_some() {
        outputs["selected"] = json!(selected);
    }
    let versions = nd_store::versions();
    let artifact = pending.commit(versions, outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

/// Joins the thresholds of blocks of units (runs with [`Config::units`] over the same
/// activations and `top`) into the artifact a run over every unit would have written: the
/// same key, the same table, byte for byte. Fails unless the blocks cover every unit of
/// every layer exactly once.
pub fn merge(store: &nd_store::Store, blocks: &[nd_store::Artifact]) -> Result<Outcome> {
    let Some(first) = blocks.first() else {
        return Err(Error::Config("no quantile block given to merge".into()));
    };
    let whole = |a: &nd_store::Artifact| -> Result<nd_store::Spec> {
        a.expect_stage(STAGE)?;
        let mut params = a.manifest.params.clone();
        params.as_object_mut().map(|p| p.remove("units"));
        let mut spec = nd_store::Spec::new(STAGE, a.manifest.schema, params);
        spec.inputs = a.manifest.inputs.clone();
        Ok(spec)
    };
    let spec = whole(first)?;
    for block in blocks {
        if whole(block)? != spec {
            return Err(Error::Config(format!(
                "{} and {} are not blocks of one quantile run (their activations or `top` differ)",
                first.dir.display(),
                block.dir.display()
            )));
        }
    }
    let layers: Vec<String> =
        serde_json::from_value(first.manifest.outputs["layers"].clone()).unwrap_or_default();
    let widths: Vec<u64> = serde_json::from_value(first.manifest.outputs["widths"].clone())
        .map_err(|_| {
            Error::Config(format!(
                "{}: the manifest does not give the layers' widths (written by an older \
                 version; compute the block again)",
                first.dir.display()
            ))
        })?;
    let mut by_layer: std::collections::BTreeMap<String, Vec<(Row, usize)>> = Default::default();
    for (b, block) in blocks.iter().enumerate() {
        for row in thresholds::read_rows(&block.dir.join(thresholds::FILE))? {
            by_layer
                .entry(row.layer.clone())
                .or_default()
                .push((row, b));
        }
    }
    let mut rows = Vec::new();
    for (name, &width) in layers.iter().zip(&widths) {
        let mut units = by_layer.remove(name).unwrap_or_default();
        units.sort_by_key(|(r, _)| r.unit);
        for pair in units.windows(2) {
            if pair[0].0.unit == pair[1].0.unit {
                return Err(Error::Config(format!(
                    "unit {} of layer `{name}` is in two blocks: {} and {}",
                    pair[0].0.unit,
                    blocks[pair[0].1].dir.display(),
                    blocks[pair[1].1].dir.display()
                )));
            }
        }
        let missing: Vec<u64> = {
            let have: std::collections::BTreeSet<u64> =
                units.iter().map(|(r, _)| u64::from(r.unit)).collect();
            (0..width).filter(|u| !have.contains(u)).collect()
        };
        if let Some(&m) = missing.first() {
            return Err(Error::Config(format!(
                "the blocks leave {} of the {width} units of layer `{name}` without a \
                 threshold (unit {m} first): is a block missing?",
                missing.len()
            )));
        }
        rows.extend(units.into_iter().map(|(r, _)| r));
    }
    if let Some(name) = by_layer.keys().next() {
        return Err(Error::Config(format!(
            "a block has thresholds of layer `{name}`, which the first block does not have"
        )));
    }
    // Checked before the cache is asked, so that an incomplete set of blocks always fails.
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let pending = store.begin(&spec)?;
    let metadata = pending.table_metadata();
    thresholds::write_rows(&pending.dir().join(thresholds::FILE), &rows, &metadata)?;
    let outputs = json!({
        "table": thresholds::FILE,
        "layers": layers,
        "widths": widths,
        "units": rows.len(),
    });
    let artifact = pending.commit(nd_store::versions(), outputs)?;
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
        let rows = layer_thresholds(std::slice::from_ref(&layer), "conv", 0.25, 0..3).unwrap();
        let t: Vec<f64> = rows.iter().map(|r| r.threshold).collect();
        assert_eq!(t, [5.25, 5.0, 0.0]);
        assert_eq!(rows[2].min, -1.0);
        assert_eq!(rows[2].max, 8.0);
        assert_eq!(rows[2].zero_fraction, 6.0 / 8.0);
        assert_eq!(rows[0].n_values, 8);
        // top = 0.1: pos = 6.3; unit 0: 6 + 0.3 · 1 = 6.3; unit 1: 5 + 0.3 · 4 = 6.2.
        let rows = layer_thresholds(std::slice::from_ref(&layer), "conv", 0.1, 0..3).unwrap();
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
        let rows = layer_thresholds(&[group.open_layer("l").unwrap()], "l", 0.005, 0..5).unwrap();
        // Both methods, for any rank.
        for top in [0.005, 0.3, 0.999] {
            let layer = [group.open_layer("l").unwrap()];
            let one = thresholds_by(
                &layer,
                "l",
                top,
                0..5,
                u64::MAX,
                &indicatif::ProgressBar::hidden(),
            )
            .unwrap();
            let two = thresholds_by(&layer, "l", top, 0..5, 0, &indicatif::ProgressBar::hidden())
                .unwrap();
            assert_eq!(one, two, "top {top}");
        }
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
        let config = Config {
            top: 0.25,
            ..Default::default()
        };
        let first = run(&store, std::slice::from_ref(&activations), &config).unwrap();
        assert!(first.computed);
        let second = run(&store, std::slice::from_ref(&activations), &config).unwrap();
        assert!(!second.computed);
        assert_eq!(first.artifact.dir, second.artifact.dir);
        let rows = thresholds::read_rows(&first.artifact.dir.join(thresholds::FILE)).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].layer, "conv");
        let meta = nd_tables::metadata(&first.artifact.dir.join(thresholds::FILE)).unwrap();
        assert_eq!(meta["netdissect.params"], r#"{"top":0.25}"#);
        for top in [0.0, 1.0, -0.1, f64::NAN] {
            let err = run(
                &store,
                std::slice::from_ref(&activations),
                &Config {
                    top,
                    ..Config::default()
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("top must be between 0 and 1"), "{err}");
        }
    }

    /// An extract artifact of `images` rows starting at `first` of one 5-unit layer.
    fn shard(
        store: &nd_store::Store,
        values: &[f32],
        first: u64,
        images: u64,
    ) -> nd_store::Artifact {
        let spec = nd_store::Spec::new(
            "extract",
            1,
            json!({ "rows": [first, first + images], "layers": ["l"] }),
        );
        let pending = store.begin(&spec).unwrap();
        let group =
            ActivationGroup::create(&pending.dir().join(nd_arrays::ACTIVATIONS_DIR)).unwrap();
        let shape = LayerShape {
            images,
            units: 5,
            height: 3,
            width: 3,
        };
        let mut w = group.create_layer("l", shape).unwrap();
        w.push(&values[(first * 45) as usize..((first + images) * 45) as usize])
            .unwrap();
        w.finish().unwrap();
        group.set_layers(&["l".to_owned()]).unwrap();
        pending.commit(Default::default(), json!({})).unwrap()
    }

    #[test]
    fn shards_and_blocks_merge_into_the_whole_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = nd_store::Store::open(dir.path()).unwrap();
        let values: Vec<f32> = (0..150 * 45u64)
            .map(|i| ((i.wrapping_mul(2_654_435_761) % 10_007) as f32 / 1000.0 - 2.0).max(0.0))
            .collect();
        let whole = shard(&store, &values, 0, 150);
        let parts = [
            shard(&store, &values, 100, 50),
            shard(&store, &values, 0, 100),
        ];
        let read =
            |a: &nd_store::Artifact| thresholds::read_rows(&a.dir.join(thresholds::FILE)).unwrap();
        let all = run(&store, std::slice::from_ref(&whole), &Config::default()).unwrap();
        let config = |units| Config {
            units,
            ..Config::default()
        };
        let sharded = run(&store, &parts, &config(None)).unwrap();
        assert_eq!(read(&all.artifact), read(&sharded.artifact));
        let blocks: Vec<_> = (0..2)
            .map(|k| {
                run(&store, &parts, &config(Some(Units::Block(k, 2))))
                    .unwrap()
                    .artifact
            })
            .collect();
        assert_eq!(read(&blocks[0]).len(), 2);
        assert_eq!(read(&blocks[1]).len(), 3);
        // The merge is the artifact of the unblocked run: same key, same bytes.
        let merged = merge(&store, &blocks).unwrap();
        assert!(!merged.computed);
        assert_eq!(merged.artifact.dir, sharded.artifact.dir);
        let file = |a: &nd_store::Artifact| std::fs::read(a.dir.join(thresholds::FILE)).unwrap();
        let unblocked = file(&sharded.artifact);
        std::fs::remove_dir_all(&sharded.artifact.dir).unwrap();
        let merged = merge(&store, &[blocks[1].clone(), blocks[0].clone()]).unwrap();
        assert!(merged.computed);
        assert_eq!(file(&merged.artifact), unblocked);
        // Blocks that miss or repeat units are refused.
        let err = merge(&store, &blocks[..1]).unwrap_err().to_string();
        assert!(err.contains("leave 3 of the 5 units of layer `l`"), "{err}");
        let range = run(&store, &parts, &config(Some(Units::Range(1, 4))))
            .unwrap()
            .artifact;
        let err = merge(&store, &[blocks[0].clone(), range])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unit 1 of layer `l` is in two blocks"),
            "{err}"
        );
        let other_top = run(
            &store,
            &parts,
            &Config {
                top: 0.01,
                units: Some(Units::Block(1, 2)),
                progress: false,
            },
        )
        .unwrap()
        .artifact;
        let err = merge(&store, &[blocks[0].clone(), other_top])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not blocks of one quantile run"), "{err}");
        // Shards with a gap between them are refused.
        let gap = shard(&store, &values, 120, 30);
        let err = run(&store, &[parts[1].clone(), gap], &config(None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not follow one another"), "{err}");
    }

    #[test]
    fn unit_selections_parse_and_cover_layers() {
        assert_eq!("2..5".parse::<Units>().unwrap().of(4), 2..4);
        let blocks: Vec<_> = (0..3).map(|k| Units::Block(k, 3).of(10)).collect();
        assert_eq!(blocks, [0..3, 3..6, 6..10]);
        assert_eq!("1/3".parse::<Units>().unwrap(), Units::Block(1, 3));
        for bad in ["3/3", "5..5", "a..b", "7"] {
            assert!(bad.parse::<Units>().is_err(), "{bad}");
        }
    }
}
