//! The formulas stage: each unit's best logical formula of concepts (compositional
//! explanations, Mu & Andreas 2020), found by beam search over the segment stage's masks
//! and the dataset's label maps, scored by the score stage's IoU.
//!
//! Definitions (the test reference, `tests/python/formulas_ref.py`, is written from them):
//!
//! - **Pixels and concepts.** Every label-map pixel of every image the masks cover has a
//!   label set: its nonzero labels in every map and its image's nonzero image-level labels
//!   (a set: a label given twice counts once). Concept `c` holds where `c` is in the set,
//!   so an image-level concept (scene, texture) covers its whole image.
//! - **Formulas** are left-deep, `((c1 op2 c2) op3 c3) …`, with `op` one of AND, OR and
//!   AND NOT (`F ∧ ¬c`), distinct concepts, in a canonical spelling ([`Formula::canonical`]).
//! - **IoU** over the whole dataset: `inter = |M ∧ F|`, `truth = |F|`, and `act` the
//!   unit's mask pixels in the images where one of the formula's categories (the primary
//!   categories of all its concepts, negated ones too) counts by the [`Denominator`] rule;
//!   `IoU = inter / (act + truth − inter)`. A formula of one concept is counted as the
//!   score stage counts it, a pixel once per label map and image-level item giving the
//!   label (Broden lists some labels in two categories, and a pixel can carry one in both
//!   maps), so that length 1 is the score stage's IoU and label exactly; a longer formula
//!   counts each pixel once.
//! - **Search** ([`search::unit_formulas`]): every allowed concept is scored; the beam is
//!   the `beam` best; each step extends every formula of the beam by every allowed
//!   concept it lacks through every op, and the beam becomes the `beam` best of itself
//!   and those (duplicates once); after `max_length − 1` steps, the best formula of each
//!   length and the best of all are kept. Better: higher IoU, then shorter, then the
//!   smaller sequence of concept numbers and ops (AND < OR < AND NOT).
//!
//! How this relates to compexp (the authors' code): the same beam search, operators and
//! IoU over every pixel of the dataset, but compexp's denominator is `|M ∨ F|` over all
//! images (no per-category activation term), it extends only by concepts whose own IoU
//! with the unit is nonzero (here every allowed concept: `F AND NOT c` can gain from a `c`
//! the unit never touches), and it materialises each candidate's mask, where this stage
//! counts by label set (see [`search`]).
//!
//! Speed: one pass over the dataset reads each image's masks and label maps once and
//! counts pixels by label set ([`tally`]); the search then never touches a pixel. Memory:
//! the dataset's distinct label sets and, per unit, the sets its mask touches.

pub mod formula;
pub mod search;
pub mod tally;

use nd_arrays::masks::{MASKS_DIR, MaskGroup, MaskReader};
use nd_tables::formulas as table;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use formula::{Formula, MAX_LENGTH, Op};

pub const STAGE: &str = "formulas";
pub const SCHEMA: u32 = 1;

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
    Config(String),
    #[error("{0}")]
    Input(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which of a unit's mask pixels count towards a category (the score stage's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Denominator {
    /// NetDissect-Lite: an image's mask pixels count for the categories of the labels the
    /// mask overlaps and of the image's image-level labels (label 0: the last category).
    #[default]
    Lite,
    /// The original NetDissect: for every category with a label anywhere in the image.
    Original,
}

impl std::str::FromStr for Denominator {
    type Err = String;
    fn from_str(s: &str) -> Result<Denominator, String> {
        match s {
            "lite" => Ok(Denominator::Lite),
            "original" => Ok(Denominator::Original),
            other => Err(format!(
                "unknown denominator `{other}` (use lite or original)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The longest formula, in concepts (1 to [`MAX_LENGTH`]).
    pub max_length: usize,
    /// Formulas kept from one step to the next.
    pub beam: usize,
    /// The operators a formula may use.
    pub ops: Vec<Op>,
    /// The categories whose concepts a formula may use (by each label's primary category);
    /// `None`: every loaded category.
    pub categories: Option<Vec<String>>,
    /// Concepts present in fewer images are left out of formulas (0: none is).
    pub min_images: u64,
    pub denominator: Denominator,
    /// Only these layers of the masks (`None`: every layer).
    pub layers: Option<Vec<String>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_length: 3,
            beam: 10,
            ops: Op::ALL.to_vec(),
            categories: None,
            min_images: 0,
            denominator: Denominator::Lite,
            layers: None,
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_LENGTH).contains(&self.max_length) {
            return Err(Error::Config(format!(
                "max_length must be 1 to {MAX_LENGTH}, got {}",
                self.max_length
            )));
        }
        if self.beam == 0 {
            return Err(Error::Config("beam must be at least 1".into()));
        }
        if self.ops.is_empty() {
            return Err(Error::Config(
                "ops: give at least one of and, or, and_not".into(),
            ));
        }
        let mut ops = self.ops.clone();
        ops.sort();
        ops.dedup();
        if ops.len() != self.ops.len() {
            return Err(Error::Config("ops: an operator is given twice".into()));
        }
        if self.categories.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::Config(
                "categories: give at least one (or leave it out for all)".into(),
            ));
        }
        Ok(())
    }

    /// The operators in a fixed order (the key does not follow the order given).
    fn ops_sorted(&self) -> Vec<Op> {
        let mut ops = self.ops.clone();
        ops.sort();
        ops
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

/// The concepts a formula may use: labels with a `label.csv` row whose primary category is
/// allowed.
fn allowed_categories(dataset: &nd_broden::Dataset, config: &Config) -> Result<Vec<bool>> {
    let loaded = dataset.categories();
    match &config.categories {
        None => Ok(vec![true; loaded.len()]),
        Some(names) => {
            let mut allowed = vec![false; loaded.len()];
            for name in names {
                let Some(i) = dataset.category_index(name) else {
                    return Err(Error::Config(format!(
                        "categories: `{name}` is not a loaded category ({})",
                        loaded
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                };
                allowed[i] = true;
            }
            Ok(allowed)
        }
    }
}

/// The segment artifacts in row order (image shards of one dissection, or one), checked:
/// contiguous rows inside the dataset, the same layers.
fn shards<'a>(
    dataset: &nd_broden::Dataset,
    masks: &'a [nd_store::Artifact],
) -> Result<Vec<(std::ops::Range<usize>, &'a nd_store::Artifact)>> {
    if masks.is_empty() {
        return Err(Error::Input("no segment artifact given".into()));
    }
    for m in masks {
        m.expect_stage("segment")?;
    }
    let ordered = nd_store::in_row_order(masks)?;
    let end = ordered.last().map_or(0, |(r, _)| r.end);
    if end > dataset.len() {
        return Err(Error::Input(format!(
            "the masks cover rows up to {end} but the dataset has {} rows: is it the same dataset?",
            dataset.len()
        )));
    }
    let layers = masks_layers(ordered[0].1)?;
    for (_, m) in &ordered[1..] {
        if masks_layers(m)? != layers {
            return Err(Error::Input(format!(
                "{} and {} have different layers: shards of one dissection have the same",
                ordered[0].1.dir.display(),
                m.dir.display()
            )));
        }
    }
    Ok(ordered)
}

/// The masks' layers the search covers, with their units.
fn chosen_layers(masks: &nd_store::Artifact, config: &Config) -> Result<Vec<(String, usize)>> {
    let all = masks_layers(masks)?;
    let Some(wanted) = &config.layers else {
        return Ok(all);
    };
    if wanted.is_empty() {
        return Err(Error::Config(
            "layers: give at least one (or leave it out for all)".into(),
        ));
    }
    for name in wanted {
        if !all.iter().any(|(n, _)| n == name) {
            return Err(Error::Config(format!(
                "layers: `{name}` is not a layer of the masks ({})",
                all.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|(n, _)| wanted.contains(n))
        .collect())
}

/// The store spec: the masks (one segment artifact, or the image shards of one
/// dissection), the search settings, the loaded categories, and the content of the label
/// maps and tables of the rows searched.
pub fn spec(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    masks: &[nd_store::Artifact],
    config: &Config,
) -> Result<nd_store::Spec> {
    config.validate()?;
    allowed_categories(dataset, config)?;
    let ordered = shards(dataset, masks)?;
    let mut files: Vec<String> = dataset.metadata_files().to_vec();
    for (rows, _) in &ordered {
        for row in rows.clone() {
            files.extend(dataset.label_map_files(row));
        }
    }
    let digest = store.digest_files(dataset.root(), &files)?;
    let loaded: Vec<&str> = dataset
        .categories()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let params = json!({
        "max_length": config.max_length,
        "beam": config.beam,
        "ops": config.ops_sorted(),
        "categories": config.categories,
        "min_images": config.min_images,
        "denominator": config.denominator,
        "loaded": loaded,
        "layers": config.layers,
    });
    chosen_layers(ordered[0].1, config)?;
    let mut spec = nd_store::Spec::new(STAGE, SCHEMA, params).digest("labels", digest);
    if let [(_, one)] = ordered.as_slice() {
        spec = spec.input("masks", one.key());
    } else {
        for (i, (_, shard)) in ordered.iter().enumerate() {
            spec = spec.input(&format!("masks.{i:04}"), shard.key());
        }
    }
    Ok(spec)
}

/// The search's result for every layer, best formulas by length.
pub struct Found {
    pub layers: Vec<(String, Vec<search::UnitFormulas>)>,
    /// What it took: images counted, concepts allowed, and the seconds of the pass over
    /// the dataset and of the search.
    pub images: usize,
    pub concepts: usize,
    pub count_seconds: f64,
    pub search_seconds: f64,
}

/// Counts the dataset and searches every unit (no store).
pub fn find(
    dataset: &nd_broden::Dataset,
    masks: &[nd_store::Artifact],
    config: &Config,
) -> Result<Found> {
    config.validate()?;
    let ordered = shards(dataset, masks)?;
    let layers = chosen_layers(ordered[0].1, config)?;
    let labels = tally::Labels::new(dataset, config.denominator)?;
    let started = std::time::Instant::now();
    let images: usize = ordered.iter().map(|(r, _)| r.len()).sum();
    let mut tallier = tally::Tallier::new(&labels, &layers);
    for (rows, masks) in ordered {
        let group = MaskGroup::open(&masks.dir.join(MASKS_DIR))?;
        let readers: Vec<MaskReader> = layers
            .iter()
            .map(|(n, _)| group.open_layer(n))
            .collect::<nd_arrays::Result<_>>()?;
        for (reader, (name, _)) in readers.iter().zip(&layers) {
            if reader.images() != rows.len() as u64 {
                return Err(Error::Input(format!(
                    "{}: layer `{name}` has masks of {} images, the artifact covers {} rows",
                    masks.dir.display(),
                    reader.images(),
                    rows.len()
                )));
            }
        }
        tallier.add(rows, &readers)?;
    }
    let counted = tallier.finish();
    let count_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let allowed = allowed_categories(dataset, config)?;
    let concepts: Vec<u32> = (1..dataset.n_labels() as u32)
        .filter(|&l| {
            dataset.label(l).is_some()
                && allowed[dataset.primary_category(l)]
                && counted.images_with[l as usize] >= config.min_images
        })
        .collect();
    let n_concepts = concepts.len();
    let search = search::Search {
        max_length: config.max_length,
        beam: config.beam,
        ops: config.ops_sorted(),
        concepts,
    };
    let mut out = Vec::new();
    let shared = search::Shared::new(&counted, &labels);
    for layer in &counted.layers {
        // The formulas' truths are kept for the units of one layer at a time.
        shared.forget();
        out.push((
            layer.name.clone(),
            search::layer_formulas(&shared, &layer.units, &search),
        ));
    }
    Ok(Found {
        layers: out,
        images,
        concepts: n_concepts,
        count_seconds,
        search_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The table's rows: a row per layer, unit and length.
pub fn rows(dataset: &nd_broden::Dataset, found: &Found) -> Vec<table::Row> {
    let mut rows = Vec::new();
    for (layer, units) in &found.layers {
        for (unit, result) in units.iter().enumerate() {
            for (i, scored) in result.by_length.iter().enumerate() {
                let length = i as u32 + 1;
                let row = match scored {
                    Some(s) => table::Row {
                        layer: layer.clone(),
                        unit: unit as u32,
                        length,
                        formula: Some(table::Formula {
                            labels: s.formula.concepts().to_vec(),
                            names: s
                                .formula
                                .concepts()
                                .iter()
                                .map(|&c| dataset.label_name(c).to_owned())
                                .collect(),
                            ops: s
                                .formula
                                .ops()
                                .iter()
                                .map(|o| o.name().to_owned())
                                .collect(),
                            text: s.formula.text(|c| dataset.label_name(c).to_owned()),
                        }),
                        iou: s.iou,
                        intersect: s.inter,
                        activation: s.act,
                        truth: s.truth,
                        best: result.best == Some(i + 1),
                    },
                    None => table::Row {
                        layer: layer.clone(),
                        unit: unit as u32,
                        length,
                        formula: None,
                        iou: 0.0,
                        intersect: 0,
                        activation: 0,
                        truth: 0,
                        best: false,
                    },
                };
                rows.push(row);
            }
        }
    }
    rows
}

pub use nd_store::Outcome;

/// Searches through the store: the cached table when the cache holds this search.
pub fn run(
    store: &nd_store::Store,
    dataset: &nd_broden::Dataset,
    masks: &[nd_store::Artifact],
    config: &Config,
) -> Result<Outcome> {
    let spec = spec(store, dataset, masks, config)?;
    if let Some(artifact) = store.get(&spec)? {
        return Ok(Outcome {
            artifact,
            computed: false,
        });
    }
    let found = find(dataset, masks, config)?;
    let units: usize = found.layers.iter().map(|(_, u)| u.len()).sum();
    eprintln!(
        "formulas: counted {} images in {:.2} s; searched {units} units over {} concepts in {:.2} s",
        found.images, found.count_seconds, found.concepts, found.search_seconds
    );
    let rows = rows(dataset, &found);
    let pending = store.begin(&spec)?;
    table::write_rows(
        &pending.dir().join(table::FILE),
        &rows,
        &pending.table_metadata(),
    )?;
    let ordered = shards(dataset, masks)?;
    let (start, end) = (ordered[0].0.start, ordered[ordered.len() - 1].0.end);
    let outputs = json!({
        "formulas": table::FILE,
        "rows": [start, end],
        "layers": found.layers.iter().map(|(name, units)| json!({
            "name": name,
            "units": units.len(),
        })).collect::<Vec<_>>(),
    });
    let artifact = pending.commit(nd_store::versions(), outputs)?;
    Ok(Outcome {
        artifact,
        computed: true,
    })
}

pub use table::{LayerSummary, summarise};

/// The summary as `netdissect run` prints it.
pub fn format_summary(name: &str, config: &Config, gain: f64, layers: &[LayerSummary]) -> String {
    let mut out = format!(
        "formulas of {name} (length ≤ {}, beam {}): units whose best formula beats their best \
         single concept by ≥ {gain} IoU\n",
        config.max_length, config.beam
    );
    let width = layers
        .iter()
        .map(|s| s.layer.len())
        .max()
        .unwrap_or(5)
        .max(5);
    out.push_str(&format!(
        "{:<width$}  units  better  mean IoU: concept  formula\n",
        "layer"
    ));
    for s in layers {
        out.push_str(&format!(
            "{:<width$}  {:>5}  {:>6}  {:>17.3}  {:>7.3}\n",
            s.layer, s.units, s.better, s.mean_concept, s.mean_formula
        ));
    }
    out
}
