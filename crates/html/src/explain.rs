//! The pages of a model's explained predictions (the explain stage's artifact), under
//! `explain/` in the report:
//!
//! - `explain/index.html`: the explained images (all of them up to [`SAMPLE`], else a seeded
//!   sample of that many), each with its thumbnail, predicted class and probability, true
//!   class, right or wrong, and its top units' labels; filtered in the page by predicted
//!   class, right or wrong and concept (`explain.js`);
//! - `explain/images/<row>.html`: one image (its dataset row, as the report's `images/`
//!   numbers them): the predicted classes, the class activation map of the top one drawn
//!   over it, and its top units, each with its mask in this image and a link to its page;
//! - `explain/classes/<class>.html`: one predicted class: its images and accuracy, its top
//!   concepts and units, example images.
//!
//! The drawings (images, thumbnails, CAMs) are written with the pages: they are few (one
//! image per explained image), and their inputs are the explanations, not the scores.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{Float32Type, Float64Type, UInt32Type};
use arrow::record_batch::RecordBatch;
use image::{Rgb, RgbImage};
use nd_arrays::masks::{MaskGroup, Run};
use nd_tables::StrColumn;
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::page::{self, escape, foot_with, head, iou, label_name, unit_page};
use crate::{Context, Error, Report, Result, draw};

const JS: &str = include_str!("../assets/explain.js");
/// What the explanation pages are made with, in the pages' key when there are some.
pub(crate) const SOURCES: [&str; 2] = [include_str!("explain.rs"), JS];

/// Images paged at most: a larger dataset's pages show a seeded sample of this many.
pub(crate) const SAMPLE: usize = 1000;
/// The seed of that sample: the same images on every run and for every model.
const SAMPLE_SEED: u64 = 0x6e64_6578_706c_6169;
/// Top units named per image on the index.
const INDEX_UNITS: usize = 3;
/// Example images per class page.
const EXAMPLES: usize = 12;
/// How much of the colour map a pixel of the CAM image takes, in 256ths (the rest is the
/// image).
const CAM_ALPHA_256: u32 = 128;

/// The explanation tables' files (the explain stage's layout).
const EXPLANATIONS: &str = "explanations.parquet";
const CLASS_UNITS: &str = "class_units.parquet";
const CLASS_CONCEPTS: &str = "class_concepts.parquet";
const CAMS: &str = "cams.parquet";
const SUMMARY: &str = "summary.json";

/// One explained class of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScore {
    /// 1 = the predicted class.
    pub rank: u32,
    /// The class's index among the model's class scores.
    pub class: u32,
    /// The class's name (`class <n>` where the model's classes have none).
    pub name: String,
    /// The class's score (logit).
    pub score: f64,
    /// The class's probability (softmax over the scores).
    pub probability: f64,
}

/// One of an image's (or a class's) top units, with its dissection.
#[derive(Debug, Clone, PartialEq)]
pub struct TopUnit {
    /// 1 = the largest contribution.
    pub rank: u32,
    /// 0-based.
    pub unit: u32,
    /// The contribution to the class's score (the mean over the class's images on a class
    /// page).
    pub contribution: f64,
    /// The contribution over the sum of every unit's contribution (0 when that is 0).
    pub share: f64,
    /// The unit's label in the dissection; `None` when it overlaps no concept.
    pub label: Option<String>,
    /// The label's category.
    pub category: Option<String>,
    /// The label's IoU.
    pub iou: f64,
    /// Whether the IoU reaches the report's threshold.
    pub detector: bool,
}

/// A unit's mask in an image, drawn to lay over it: the overlay (a base64 PNG at the label
/// maps' resolution, see [`draw::overlay_png`]) and the mask's runs, which the page also
/// carries (`data-runs`) so that what it shows can be checked against the masks.
pub(crate) struct Overlay {
    pub png: String,
    pub runs: Vec<Run>,
}

/// Draws a `height × width` row-major mask as an [`Overlay`]; `page` names the page in
/// errors.
pub(crate) fn mask_overlay(
    mask: &[bool],
    height: usize,
    width: usize,
    page: &Path,
) -> Result<Overlay> {
    let png = draw::overlay_png(mask, width as u32, height as u32, draw::UNIT_COLOUR, page)?;
    let mut runs = Vec::new();
    nd_arrays::masks::encode_runs(mask.iter().copied(), &mut runs);
    Ok(Overlay {
        png: draw::base64(&png),
        runs,
    })
}

/// The files of one image's drawings, relative to its page.
pub(crate) struct Drawings {
    pub image: String,
    pub thumb: String,
    pub cam: String,
}

/// Draws an image for its page into `dir`: the image, its thumbnail `thumbnail_height`
/// pixels high and, given the class activation map (`height, width, values`), the image
/// under the map.
pub(crate) fn draw_image_files(
    dir: &Path,
    files: &Drawings,
    pixels: &RgbImage,
    cam: Option<(usize, usize, &[f32])>,
    thumbnail_height: u32,
) -> Result<()> {
    let jpeg = |file: &str, picture: &RgbImage| {
        let path = dir.join(file);
        let mut bytes = Vec::new();
        draw::encode_jpeg(&mut bytes, picture, &path)?;
        draw::write_file(&path, &bytes)
    };
    jpeg(&files.image, pixels)?;
    let (w, h) = draw::thumb_size(pixels, thumbnail_height);
    jpeg(&files.thumb, &draw::shrink(pixels, w, h))?;
    if let Some((ch, cw, values)) = cam {
        jpeg(&files.cam, &cam_over(pixels, values, ch, cw))?;
    }
    Ok(())
}

/// The prediction for one image: every explained image has one.
#[derive(Debug, Clone, PartialEq)]
struct Prediction {
    row: usize,
    class: u32,
    probability: f64,
    correct: Option<bool>,
}

/// A paged image: its classes, truth and its predicted class's top units and map.
#[derive(Debug, Default)]
struct Image {
    classes: Vec<ClassScore>,
    truth: Option<String>,
    correct: Option<bool>,
    units: Vec<TopUnit>,
    /// The predicted class's map: height, width, values (row-major).
    cam: Option<(usize, usize, Vec<f32>)>,
}

/// A concept of a class page (`class_concepts.parquet`).
struct Concept {
    rank: u32,
    label: String,
    category: String,
    units: u32,
    contribution: f64,
    share: f64,
    best_unit: u32,
}

/// What the explain pages wrote, for the model's index and the manifest.
pub(crate) struct Explained {
    layer: String,
    images: usize,
    paged: usize,
    classes: usize,
}

impl Explained {
    pub(crate) fn outputs(&self) -> Value {
        json!({
            "index": "explain/index.html",
            "layer": self.layer,
            "images": self.images,
            "image_pages": self.paged,
            "class_pages": self.classes,
        })
    }

    /// The paragraph of the model's index that links the explanations.
    pub(crate) fn index_link(&self) -> String {
        format!(
            "<p class=\"explained\"><a href=\"explain/index.html\">Explained predictions</a>: {} images, by the units of layer <b>{}</b>.</p>\n",
            self.images,
            escape(&self.layer)
        )
    }
}

/// Writes the pages under `explain/` from the explain artifact, with the masks of the
/// report's image shards (`(masks, first row)`).
pub(crate) fn write(
    ctx: &Context,
    report: &Report,
    artifact: &nd_store::Artifact,
    shards: &[(MaskGroup, usize)],
) -> Result<Explained> {
    let summary_path = artifact.dir.join(SUMMARY);
    let summary: Value = std::fs::read_to_string(&summary_path)
        .map_err(|source| Error::Io {
            path: summary_path.clone(),
            source,
        })
        .and_then(|t| {
            serde_json::from_str(&t)
                .map_err(|e| Error::Input(format!("{}: unreadable ({e})", summary_path.display())))
        })?;
    let layer_name = summary["layer"]
        .as_str()
        .ok_or_else(|| Error::Input(format!("{}: no `layer`", summary_path.display())))?;
    let layer = report
        .layers
        .iter()
        .find(|l| l.name == layer_name)
        .ok_or_else(|| {
            Error::Input(format!(
                "{}: explains layer `{layer_name}`, which the report does not dissect",
                artifact.dir.display()
            ))
        })?;

    let rows: HashMap<&str, usize> = (0..ctx.dataset.len())
        .rev()
        .map(|r| (ctx.dataset.image(r), r))
        .collect();
    let find_row = |name: &str| {
        rows.get(name).copied().ok_or_else(|| {
            Error::Input(format!(
                "{}: explains the image {name}, which the dataset does not list: is it the same dataset?",
                artifact.dir.display()
            ))
        })
    };

    // Every image's prediction, then the paged images' details and maps.
    let explanations = artifact.dir.join(EXPLANATIONS);
    let (predictions, class_names) = read_predictions(&explanations, &find_row)?;
    let paged = sample(predictions.keys().copied(), SAMPLE);
    let mut images: BTreeMap<usize, Image> = paged.iter().map(|&r| (r, Image::default())).collect();
    read_details(&explanations, &find_row, &mut images)?;
    read_cams(&artifact.dir.join(CAMS), &find_row, &mut images)?;
    let class_units = read_class_units(&artifact.dir.join(CLASS_UNITS))?;
    let class_concepts = read_class_concepts(&artifact.dir.join(CLASS_CONCEPTS))?;

    let explain_dir = ctx.dir.join("explain");
    for path in [
        explain_dir.clone(),
        explain_dir.join("images"),
        explain_dir.join("classes"),
    ] {
        std::fs::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
    }
    page::write_file(&explain_dir.join("explain.js"), JS)?;

    // The top units' masks of the paged images, in one pass over the layer's masks.
    let mut wanted: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
    for (&row, image) in &images {
        wanted
            .entry(row)
            .or_default()
            .extend(image.units.iter().map(|u| u.unit));
    }
    let readers = shards
        .iter()
        .map(|(group, first_row)| Ok((group.open_layer(&layer.name)?, *first_row)))
        .collect::<Result<Vec<_>>>()?;
    let masks = draw::read_masks(&wanted, &readers)?;

    let mut by_class: BTreeMap<u32, Vec<&Prediction>> = BTreeMap::new();
    for p in predictions.values() {
        by_class.entry(p.class).or_default().push(p);
    }
    let site = Site {
        ctx,
        layer_name,
        layer_stem: &layer.stem,
        class_names: &class_names,
        class_pages: by_class.keys().copied().collect(),
        paged: &paged,
    };
    let list: Vec<(usize, &Image)> = images.iter().map(|(&r, i)| (r, i)).collect();
    list.par_iter()
        .enumerate()
        .try_for_each(|(i, &(row, image))| {
            let overlays = draw_image(ctx, &explain_dir, row, image, &masks)?;
            site.write_image_page(i, row, image, &overlays)
        })?;
    site.write_index(&summary, &predictions, &images)?;
    let mut classes = 0;
    for (&class, predicted) in &by_class {
        let name = class_names.get(&class).map_or("", String::as_str);
        site.write_class_page(
            class,
            name,
            predicted,
            class_units.get(&class).map_or(&[][..], |u| u.as_slice()),
            class_concepts.get(&class).map_or(&[][..], |c| c.as_slice()),
        )?;
        classes += 1;
    }
    Ok(Explained {
        layer: layer_name.to_owned(),
        images: predictions.len(),
        paged: images.len(),
        classes,
    })
}

/// A string column's value or null (a null is no label, unlike label 0's empty name).
fn optional<'a>(column: &StrColumn<'a>, array: &ArrayRef, i: usize) -> Option<&'a str> {
    array.is_valid(i).then(|| column.get(i))
}

fn array<'a>(batch: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| Error::Input(format!("{}: no `{name}` column", path.display())))
}

fn booleans<'a>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
) -> Result<&'a arrow::array::BooleanArray> {
    array(batch, name, path)?
        .as_boolean_opt()
        .ok_or_else(|| Error::Input(format!("{}: `{name}` is not boolean", path.display())))
}

/// Every explained image's prediction (its rows of class rank 1 and unit rank 1), by
/// dataset row, and the names of the classes explained.
fn read_predictions(
    path: &Path,
    find_row: &dyn Fn(&str) -> Result<usize>,
) -> Result<(BTreeMap<usize, Prediction>, BTreeMap<u32, String>)> {
    let mut predictions = BTreeMap::new();
    let mut names = BTreeMap::new();
    nd_tables::for_each_batch(path, |batch| -> Result<()> {
        let image = StrColumn::of(batch, "image")?;
        let class_rank = nd_tables::primitives::<UInt32Type>(batch, "class_rank")?;
        let rank = nd_tables::primitives::<UInt32Type>(batch, "rank")?;
        let class = nd_tables::primitives::<UInt32Type>(batch, "class")?;
        let class_name = StrColumn::of(batch, "class_name")?;
        let probability = nd_tables::primitives::<Float64Type>(batch, "probability")?;
        let correct = booleans(batch, "correct", path)?;
        for i in 0..batch.num_rows() {
            names
                .entry(class[i])
                .or_insert_with(|| class_name.get(i).to_owned());
            if class_rank[i] == 1 && rank[i] == 1 {
                let row = find_row(image.get(i))?;
                predictions.insert(
                    row,
                    Prediction {
                        row,
                        class: class[i],
                        probability: probability[i],
                        correct: correct.is_valid(i).then(|| correct.value(i)),
                    },
                );
            }
        }
        Ok(())
    })?;
    Ok((predictions, names))
}

/// The details of the paged images: their classes (top-k), truth, and the predicted class's
/// top units.
fn read_details(
    path: &Path,
    find_row: &dyn Fn(&str) -> Result<usize>,
    images: &mut BTreeMap<usize, Image>,
) -> Result<()> {
    nd_tables::for_each_batch(path, |batch| -> Result<()> {
        let image = StrColumn::of(batch, "image")?;
        let class_rank = nd_tables::primitives::<UInt32Type>(batch, "class_rank")?;
        let class = nd_tables::primitives::<UInt32Type>(batch, "class")?;
        let class_name = StrColumn::of(batch, "class_name")?;
        let score = nd_tables::primitives::<Float64Type>(batch, "score")?;
        let probability = nd_tables::primitives::<Float64Type>(batch, "probability")?;
        let truth = StrColumn::of(batch, "truth")?;
        let truth_array = array(batch, "truth", path)?;
        let correct = booleans(batch, "correct", path)?;
        let rank = nd_tables::primitives::<UInt32Type>(batch, "rank")?;
        let unit = nd_tables::primitives::<UInt32Type>(batch, "unit")?;
        let contribution = nd_tables::primitives::<Float64Type>(batch, "contribution")?;
        let share = nd_tables::primitives::<Float64Type>(batch, "share")?;
        let label = StrColumn::of(batch, "label")?;
        let label_array = array(batch, "label", path)?;
        let category = StrColumn::of(batch, "category")?;
        let category_array = array(batch, "category", path)?;
        let iou = nd_tables::primitives::<Float64Type>(batch, "iou")?;
        let detector = booleans(batch, "detector", path)?;
        for i in 0..batch.num_rows() {
            let Some(shown) = images.get_mut(&find_row(image.get(i))?) else {
                continue;
            };
            if rank[i] == 1 {
                shown.classes.push(ClassScore {
                    rank: class_rank[i],
                    class: class[i],
                    name: class_name.get(i).to_owned(),
                    score: score[i],
                    probability: probability[i],
                });
                shown.truth = optional(&truth, truth_array, i).map(str::to_owned);
                shown.correct = correct.is_valid(i).then(|| correct.value(i));
            }
            if class_rank[i] == 1 {
                shown.units.push(TopUnit {
                    rank: rank[i],
                    unit: unit[i],
                    contribution: contribution[i],
                    share: share[i],
                    label: optional(&label, label_array, i).map(str::to_owned),
                    category: optional(&category, category_array, i).map(str::to_owned),
                    iou: iou[i],
                    detector: detector.is_valid(i) && detector.value(i),
                });
            }
        }
        Ok(())
    })?;
    for image in images.values_mut() {
        image.classes.sort_by_key(|c| c.rank);
        image.units.sort_by_key(|u| u.rank);
    }
    Ok(())
}

/// The predicted class's map of each paged image.
fn read_cams(
    path: &Path,
    find_row: &dyn Fn(&str) -> Result<usize>,
    images: &mut BTreeMap<usize, Image>,
) -> Result<()> {
    nd_tables::for_each_batch(path, |batch| -> Result<()> {
        let image = StrColumn::of(batch, "image")?;
        let class_rank = nd_tables::primitives::<UInt32Type>(batch, "class_rank")?;
        let height = nd_tables::primitives::<UInt32Type>(batch, "height")?;
        let width = nd_tables::primitives::<UInt32Type>(batch, "width")?;
        let cams = array(batch, "cam", path)?
            .as_fixed_size_list_opt()
            .ok_or_else(|| Error::Input(format!("{}: `cam` is not a list", path.display())))?;
        for i in (0..batch.num_rows()).filter(|&i| class_rank[i] == 1) {
            let Some(shown) = images.get_mut(&find_row(image.get(i))?) else {
                continue;
            };
            let values = cams.value(i);
            let values = values.as_primitive_opt::<Float32Type>().ok_or_else(|| {
                Error::Input(format!("{}: `cam` does not hold floats", path.display()))
            })?;
            let (h, w) = (height[i] as usize, width[i] as usize);
            if values.len() != h * w {
                return Err(Error::Input(format!(
                    "{}: a map of {} values for {h}×{w}",
                    path.display(),
                    values.len()
                )));
            }
            shown.cam = Some((h, w, values.values().to_vec()));
        }
        Ok(())
    })
}

/// `class_units.parquet` by class, in rank order.
fn read_class_units(path: &Path) -> Result<BTreeMap<u32, Vec<TopUnit>>> {
    let batch = nd_tables::read(path)?;
    let class = nd_tables::primitives::<UInt32Type>(&batch, "class")?;
    let rank = nd_tables::primitives::<UInt32Type>(&batch, "rank")?;
    let unit = nd_tables::primitives::<UInt32Type>(&batch, "unit")?;
    let contribution = nd_tables::primitives::<Float64Type>(&batch, "mean_contribution")?;
    let share = nd_tables::primitives::<Float64Type>(&batch, "share")?;
    let label = StrColumn::of(&batch, "label")?;
    let label_array = array(&batch, "label", path)?;
    let category = StrColumn::of(&batch, "category")?;
    let category_array = array(&batch, "category", path)?;
    let iou = nd_tables::primitives::<Float64Type>(&batch, "iou")?;
    let detector = booleans(&batch, "detector", path)?;
    let mut out: BTreeMap<u32, Vec<TopUnit>> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        out.entry(class[i]).or_default().push(TopUnit {
            rank: rank[i],
            unit: unit[i],
            contribution: contribution[i],
            share: share[i],
            label: optional(&label, label_array, i).map(str::to_owned),
            category: optional(&category, category_array, i).map(str::to_owned),
            iou: iou[i],
            detector: detector.is_valid(i) && detector.value(i),
        });
    }
    for units in out.values_mut() {
        units.sort_by_key(|u| u.rank);
    }
    Ok(out)
}

/// `class_concepts.parquet` by class, in rank order.
fn read_class_concepts(path: &Path) -> Result<BTreeMap<u32, Vec<Concept>>> {
    let batch = nd_tables::read(path)?;
    let class = nd_tables::primitives::<UInt32Type>(&batch, "class")?;
    let rank = nd_tables::primitives::<UInt32Type>(&batch, "rank")?;
    let label = StrColumn::of(&batch, "label")?;
    let category = StrColumn::of(&batch, "category")?;
    let units = nd_tables::primitives::<UInt32Type>(&batch, "units")?;
    let contribution = nd_tables::primitives::<Float64Type>(&batch, "mean_contribution")?;
    let share = nd_tables::primitives::<Float64Type>(&batch, "share")?;
    let best_unit = nd_tables::primitives::<UInt32Type>(&batch, "best_unit")?;
    let mut out: BTreeMap<u32, Vec<Concept>> = BTreeMap::new();
    for i in 0..batch.num_rows() {
        out.entry(class[i]).or_default().push(Concept {
            rank: rank[i],
            label: label.get(i).to_owned(),
            category: category.get(i).to_owned(),
            units: units[i],
            contribution: contribution[i],
            share: share[i],
            best_unit: best_unit[i],
        });
    }
    for concepts in out.values_mut() {
        concepts.sort_by_key(|c| c.rank);
    }
    Ok(out)
}

/// SplitMix64's output function: a well-mixed hash of a row.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rows paged, in row order: all when there are at most `keep`, else the `keep` with
/// the smallest seeded hash (a sample that depends on nothing but the rows).
fn sample(rows: impl Iterator<Item = usize>, keep: usize) -> Vec<usize> {
    let mut rows: Vec<usize> = rows.collect();
    if rows.len() > keep {
        let key = |r: &usize| mix(*r as u64 ^ SAMPLE_SEED);
        rows.select_nth_unstable_by_key(keep, key);
        rows.truncate(keep);
    }
    rows.sort_unstable();
    rows
}

fn image_file(row: usize) -> String {
    format!("{row:06}.jpg")
}
fn thumb_file(row: usize) -> String {
    format!("{row:06}-thumb.jpg")
}
fn cam_file(row: usize) -> String {
    format!("{row:06}-cam.jpg")
}
fn image_page(row: usize) -> String {
    format!("{row:06}.html")
}
fn drawings(row: usize) -> Drawings {
    Drawings {
        image: image_file(row),
        thumb: thumb_file(row),
        cam: cam_file(row),
    }
}
fn class_page(class: u32) -> String {
    format!("{class}.html")
}

/// Draws one paged image into `explain/images/`: the image, its thumbnail and its CAM;
/// returns the overlays of its top units' masks (at the label maps' resolution, as the
/// unit pages lay them over an image).
fn draw_image(
    ctx: &Context,
    dir: &Path,
    row: usize,
    image: &Image,
    masks: &HashMap<(usize, u32), Vec<Run>>,
) -> Result<Vec<Overlay>> {
    let dir = dir.join("images");
    let pixels = ctx.dataset.read_image(row)?;
    draw_image_files(
        &dir,
        &drawings(row),
        &pixels,
        image.cam.as_ref().map(|(h, w, v)| (*h, *w, v.as_slice())),
        ctx.config.thumbnail_height,
    )?;
    let shape = &ctx.dataset.rows()[row];
    let (lh, lw) = (shape.label_height as usize, shape.label_width as usize);
    image
        .units
        .iter()
        .map(|u| {
            let mut mask = vec![false; lh * lw];
            for run in masks.get(&(row, u.unit)).map_or(&[][..], |r| r.as_slice()) {
                let (a, b) = (run.start as usize, run.start as usize + run.length as usize);
                if b > mask.len() {
                    return Err(Error::Input(format!(
                        "unit {}: a mask run of image row {row} leaves its {lh}×{lw} label map",
                        u.unit
                    )));
                }
                mask[a..b].fill(true);
            }
            mask_overlay(&mask, lh, lw, &dir.join(image_page(row)))
        })
        .collect()
}

/// Upsamples an `h × w` map to `oh × ow` bilinearly, with half-pixel centres (as segment
/// upsamples activations), clamped at the edges.
fn upsample(map: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let taps = |from: usize, to: usize| -> Vec<(usize, usize, f32)> {
        (0..to)
            .map(|o| {
                let x = ((o as f64 + 0.5) * from as f64 / to as f64 - 0.5).max(0.0);
                let a = (x.floor() as usize).min(from - 1);
                let b = (a + 1).min(from - 1);
                (a, b, (x - a as f64).min(1.0) as f32)
            })
            .collect()
    };
    let (ys, xs) = (taps(h, oh), taps(w, ow));
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// A colour map from dark blue (0) through cyan, green and yellow to red (1), as the CAM
/// papers draw them ("jet").
fn colour(v: f32) -> [u8; 3] {
    const STOPS: [(f32, [f32; 3]); 5] = [
        (0.0, [0.0, 0.0, 128.0]),
        (0.25, [0.0, 128.0, 255.0]),
        (0.5, [64.0, 224.0, 96.0]),
        (0.75, [255.0, 220.0, 0.0]),
        (1.0, [200.0, 0.0, 0.0]),
    ];
    let v = v.clamp(0.0, 1.0);
    let i = STOPS
        .windows(2)
        .position(|s| v <= s[1].0)
        .unwrap_or(STOPS.len() - 2);
    let ((a, ca), (b, cb)) = (STOPS[i], STOPS[i + 1]);
    let t = (v - a) / (b - a);
    [0, 1, 2].map(|c| (ca[c] + (cb[c] - ca[c]) * t + 0.5) as u8)
}

/// The image with its class activation map over it: the map upsampled to the image, its
/// positive part divided by its maximum (a map with no positive value is all 0), coloured
/// and blended half and half with the image.
fn cam_over(image: &RgbImage, cam: &[f32], h: usize, w: usize) -> RgbImage {
    let (iw, ih) = (image.width() as usize, image.height() as usize);
    let big = upsample(cam, h, w, ih, iw);
    let max = big.iter().copied().fold(0.0f32, f32::max);
    let mut out = image.clone();
    for (p, &v) in out.pixels_mut().zip(&big) {
        let v = if max > 0.0 { v.max(0.0) / max } else { 0.0 };
        let c = colour(v);
        *p = Rgb([0, 1, 2].map(|k| {
            ((p.0[k] as u32 * (256 - CAM_ALPHA_256) + c[k] as u32 * CAM_ALPHA_256 + 128) >> 8) as u8
        }));
    }
    out
}

/// The table of top units (`what` names their contribution); `unit_link` names, and links
/// where it can, a unit.
pub(crate) fn units_table(
    out: &mut String,
    units: &[TopUnit],
    what: &str,
    unit_link: &dyn Fn(u32) -> String,
) {
    let _ = write!(
        out,
        "<div class=\"scroll\"><table class=\"stats units\"><thead><tr><th>rank</th><th>unit</th><th>label</th><th>category</th><th>IoU</th><th>{what}</th><th>share</th></tr></thead><tbody>"
    );
    for u in units {
        let _ = write!(
            out,
            "<tr class=\"unit-row{}\"><td>{}</td><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{:.4}</td><td>{}</td></tr>",
            if u.detector { " over" } else { "" },
            u.rank,
            unit_link(u.unit),
            unit_label(u.label.as_deref()),
            escape(u.category.as_deref().unwrap_or("")),
            iou(u.iou),
            u.contribution,
            percent(u.share),
        );
    }
    out.push_str("</tbody></table></div>\n<p class=\"note\">Bold: detectors (IoU at the threshold or above). A unit's share is its contribution over the sum of all units' contributions.</p>\n");
}

/// The links to the previous and the next image's pages (relative to this one).
pub(crate) fn pager(out: &mut String, previous: Option<&str>, next: Option<&str>) {
    let previous = previous
        .map(|p| format!(r#"<a href="{}">← previous image</a> "#, escape(p)))
        .unwrap_or_default();
    let next = next
        .map(|p| format!(r#"<a href="{}">next image →</a>"#, escape(p)))
        .unwrap_or_default();
    let _ = writeln!(out, "<p class=\"pager\">{previous}{next}</p>");
}

/// What an image's page shows below its heading, for an image of the dataset as for one
/// explained alone ([`crate::explain_single`]).
pub(crate) struct ImageBody<'a> {
    /// The explained classes, the predicted one first.
    pub classes: &'a [ClassScore],
    pub layer: &'a str,
    /// The image's drawings, relative to the page.
    pub files: &'a Drawings,
    /// The image's name, for its `alt` text.
    pub alt: &'a str,
    /// The size of the predicted class's map, when the image has one.
    pub cam: Option<(usize, usize)>,
    /// The predicted class's top units, and their masks in the image.
    pub units: &'a [TopUnit],
    pub overlays: &'a [Overlay],
    /// How the masks were made, in the sentence that introduces them (plain text).
    pub masks_note: &'a str,
    /// A class's name, linking its page where there is one.
    pub class_link: &'a dyn Fn(&ClassScore) -> String,
    /// A unit's name, linking its page where there is one.
    pub unit_link: &'a dyn Fn(u32) -> String,
}

/// Writes an image page's body: the explained classes, the image beside the predicted
/// class's activation map, the top units and each one's mask over the image.
pub(crate) fn image_body(out: &mut String, body: &ImageBody) {
    out.push_str("<h2>Predicted classes</h2>\n<table class=\"stats classes\"><thead><tr><th>rank</th><th>class</th><th>score</th><th>probability</th></tr></thead><tbody>");
    for c in body.classes {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"text\">{}</td><td>{:.4}</td><td>{}</td></tr>",
            c.rank,
            (body.class_link)(c),
            c.score,
            percent(c.probability)
        );
    }
    out.push_str("</tbody></table>\n");

    let class = body
        .classes
        .first()
        .map_or(String::new(), |p| p.name.clone());
    let _ = write!(
        out,
        "<h2>Where the evidence for {} lies</h2>\n<div class=\"panels\"><div class=\"panel\"><img src=\"{}\" alt=\"{}\"></div>",
        escape(&class),
        escape(&body.files.image),
        escape(body.alt)
    );
    match body.cam {
        Some((h, w)) => {
            let _ = write!(
                out,
                "<div class=\"panel\"><img class=\"cam\" src=\"{}\" alt=\"class activation map of {}\"></div></div>\n<p class=\"note\">The class activation map of <b>{}</b> at layer {} ({h}×{w}: each position's summed gradient × activation over the units), upsampled bilinearly to the image, its positive part scaled by its maximum, from blue (none) to red (the most).</p>\n",
                escape(&body.files.cam),
                escape(&class),
                escape(&class),
                escape(body.layer),
            );
        }
        None => out.push_str("</div>\n<p class=\"note\">No map was stored for this image.</p>\n"),
    }

    let _ = writeln!(
        out,
        "<h2>Top units of {}</h2>\n<p>By their contribution to the class's score (gradient × activation, summed over the unit's map). Below, each unit's mask in this image ({}), outlined in yellow; a unit with no mask here never passed its threshold in this image.</p>",
        escape(&class),
        escape(body.masks_note)
    );
    units_table(out, body.units, "contribution", body.unit_link);
    out.push_str("<div class=\"pairs units\">\n");
    for (u, overlay) in body.units.iter().zip(body.overlays) {
        // The runs as JSON, `[[start, length], ...]`: numbers only, nothing to escape.
        let runs: Vec<String> = overlay
            .runs
            .iter()
            .map(|r| format!("[{},{}]", r.start, r.length))
            .collect();
        let _ = write!(
            out,
            r#"<figure class="pair unit-mask" data-unit="{n}"><div class="panels"><div class="panel"><img src="{src}" alt=""><img class="over" src="data:image/png;base64,{png}" alt="mask of unit {n}" data-runs="[{runs}]"></div></div>
<figcaption>#{r} · {link} · {label} · contribution {c:.4} ({share})</figcaption></figure>
"#,
            src = escape(&body.files.image),
            png = overlay.png,
            n = u.unit,
            runs = runs.join(","),
            r = u.rank,
            link = (body.unit_link)(u.unit),
            label = unit_label(u.label.as_deref()),
            c = u.contribution,
            share = percent(u.share),
        );
    }
    out.push_str("</div>\n");
}

/// What every explanation page needs.
struct Site<'a> {
    ctx: &'a Context<'a>,
    layer_name: &'a str,
    layer_stem: &'a str,
    class_names: &'a BTreeMap<u32, String>,
    /// The classes with a page: those predicted for some image (a class only ever second
    /// or lower among the top-k has none).
    class_pages: BTreeSet<u32>,
    /// The paged rows, in order.
    paged: &'a [usize],
}

pub(crate) fn percent(p: f64) -> String {
    format!("{:.1} %", 100.0 * p)
}

fn verdict(correct: Option<bool>) -> (&'static str, &'static str) {
    match correct {
        Some(true) => ("right", "✓ right"),
        Some(false) => ("wrong", "✗ wrong"),
        None => ("", "–"),
    }
}

pub(crate) fn unit_label(label: Option<&str>) -> String {
    label.map_or("<em>no concept</em>".to_owned(), label_name)
}

impl Site<'_> {
    fn title(&self) -> &str {
        &self.ctx.config.title
    }

    /// Breadcrumbs from a page `depth` folders below the report's root.
    fn crumbs(&self, up: &str, last: Option<(String, String)>) -> Vec<(String, String)> {
        let mut crumbs = vec![
            (format!("{up}index.html"), self.title().to_owned()),
            (
                format!("{up}explain/index.html"),
                "explained predictions".to_owned(),
            ),
        ];
        crumbs.extend(last);
        crumbs
    }

    /// The class's name, linking its page when it has one.
    fn class_link(&self, class: u32, name: &str, up: &str) -> String {
        if !self.class_pages.contains(&class) {
            return escape(name);
        }
        format!(
            r#"<a href="{up}classes/{}">{}</a>"#,
            class_page(class),
            escape(name)
        )
    }

    /// The unit's page in the report, from a page under `explain/<folder>/`.
    fn unit_link(&self, unit: u32) -> String {
        format!(
            r#"<a href="../../{}">unit {unit}</a>"#,
            escape(&unit_page(self.layer_stem, unit))
        )
    }

    fn write_image_page(
        &self,
        index: usize,
        row: usize,
        image: &Image,
        overlays: &[Overlay],
    ) -> Result<()> {
        let name = self.ctx.dataset.image(row);
        let mut out = head(
            &format!("{} · {name}", self.title()),
            "../../",
            &self.crumbs("../../", Some((image_page(row), name.to_owned()))),
        );
        let predicted = image.classes.first();
        let _ = write!(
            out,
            "<h1><code>{}</code></h1>\n<p class=\"lede\">",
            escape(name)
        );
        if let Some(p) = predicted {
            let _ = write!(
                out,
                "Predicted <b>{}</b> ({})",
                self.class_link(p.class, &p.name, "../"),
                percent(p.probability)
            );
        }
        if let Some(truth) = &image.truth {
            let _ = write!(
                out,
                "; true class <b>{}</b>: {}",
                escape(truth),
                verdict(image.correct).1
            );
        }
        out.push_str(".</p>\n");
        let previous = index.checked_sub(1).map(|i| image_page(self.paged[i]));
        let next = self.paged.get(index + 1).map(|&r| image_page(r));
        pager(&mut out, previous.as_deref(), next.as_deref());

        image_body(
            &mut out,
            &ImageBody {
                classes: &image.classes,
                layer: self.layer_name,
                files: &drawings(row),
                alt: name,
                cam: image.cam.as_ref().map(|(h, w, _)| (*h, *w)),
                units: &image.units,
                overlays,
                masks_note: "above its threshold, as segmented and scored",
                class_link: &|c| self.class_link(c.class, &c.name, "../"),
                unit_link: &|u| self.unit_link(u),
            },
        );
        out.push_str(&page::foot_with("../../", &[]));
        page::write_file(
            &self.ctx.dir.join("explain/images").join(image_page(row)),
            &out,
        )
    }

    fn write_index(
        &self,
        summary: &Value,
        predictions: &BTreeMap<usize, Prediction>,
        images: &BTreeMap<usize, Image>,
    ) -> Result<()> {
        let mut out = head(
            &format!("{} · explained predictions", self.title()),
            "../",
            &self.crumbs("../", None),
        );
        let judged: Vec<bool> = predictions.values().filter_map(|p| p.correct).collect();
        let _ = write!(
            out,
            "<h1>Explained predictions</h1>\n<p class=\"lede\">{} images; each prediction explained by the units of layer <b>{}</b>",
            predictions.len(),
            escape(self.layer_name)
        );
        if !judged.is_empty() {
            let right = judged.iter().filter(|&&c| c).count();
            let _ = write!(
                out,
                "; accuracy {} ({right} of the {} images whose true class is known)",
                percent(right as f64 / judged.len() as f64),
                judged.len()
            );
        }
        out.push_str(".</p>\n");
        if images.len() < predictions.len() {
            let _ = writeln!(
                out,
                "<p class=\"note\">Shown: a seeded sample of {} of the {} images (the same images on every run), in dataset order; the tables in <code>explain/</code> of the model's results hold them all.</p>",
                images.len(),
                predictions.len()
            );
        }

        // Predicted classes, most images first.
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for p in predictions.values() {
            *counts.entry(p.class).or_default() += 1;
        }
        let mut classes: Vec<(u32, usize)> = counts.into_iter().collect();
        classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out.push_str("<h2>Predicted classes</h2>\n<p class=\"classes\">");
        let items: Vec<String> = classes
            .iter()
            .map(|&(c, n)| {
                format!(
                    "{} <small>({n})</small>",
                    self.class_link(c, &self.class_names[&c], "")
                )
            })
            .collect();
        out.push_str(&items.join(" · "));
        out.push_str("</p>\n");

        self.ablation_table(&mut out, summary);

        // Controls and the table of images.
        let mut concepts: BTreeSet<&str> = BTreeSet::new();
        for image in images.values() {
            concepts.extend(
                image
                    .units
                    .iter()
                    .take(INDEX_UNITS)
                    .filter_map(|u| u.label.as_deref()),
            );
        }
        let judged_paged = images.values().any(|i| i.correct.is_some());
        out.push_str("<h2>Images</h2>\n<form class=\"controls\" id=\"explain-controls\" autocomplete=\"off\">\n<label>Predicted <select id=\"class\"><option value=\"\">any class</option>");
        for &(c, n) in &classes {
            let _ = write!(
                out,
                r#"<option value="{c}">{} ({n})</option>"#,
                escape(&self.class_names[&c])
            );
        }
        out.push_str("</select></label>\n");
        if judged_paged {
            out.push_str("<label>Prediction <select id=\"correct\"><option value=\"\">right or wrong</option><option value=\"right\">right</option><option value=\"wrong\">wrong</option></select></label>\n");
        }
        let _ = write!(
            out,
            "<label>Concept <select id=\"concept\"><option value=\"\">any of the top {INDEX_UNITS} units</option>"
        );
        for c in &concepts {
            let _ = write!(
                out,
                r#"<option value="{0}">{1}</option>"#,
                escape(c),
                label_name(c)
            );
        }
        out.push_str("</select></label>\n<output id=\"shown\"></output>\n</form>\n");
        let _ = writeln!(
            out,
            "<div class=\"scroll\"><table class=\"stats images\" id=\"images\"><thead><tr><th>image</th><th>predicted</th><th>probability</th><th>true class</th><th>prediction</th><th>top {INDEX_UNITS} units</th></tr></thead><tbody>"
        );
        for (&row, image) in images {
            let Some(p) = image.classes.first() else {
                continue;
            };
            let top: Vec<&TopUnit> = image.units.iter().take(INDEX_UNITS).collect();
            let labels: Vec<&str> = top.iter().filter_map(|u| u.label.as_deref()).collect();
            let (correct, verdict_text) = verdict(image.correct);
            let units: Vec<String> = top
                .iter()
                .map(|u| {
                    format!(
                        "{} <small>(unit {})</small>",
                        unit_label(u.label.as_deref()),
                        u.unit
                    )
                })
                .collect();
            let name = self.ctx.dataset.image(row);
            let _ = writeln!(
                out,
                r#"<tr class="image {correct}" data-row="{row}" data-class="{class}" data-correct="{correct}" data-concepts="{concepts}"><td class="text"><a class="thumb" href="images/{page}"><img src="images/{thumb}" height="{h}" loading="lazy" alt="{name}"></a><br><a href="images/{page}"><code>{name}</code></a></td><td class="text">{class_link}</td><td>{probability}</td><td class="text">{truth}</td><td class="text">{verdict_text}</td><td class="text">{units}</td></tr>"#,
                class = p.class,
                concepts = escape(&Value::from(labels).to_string()),
                page = image_page(row),
                thumb = thumb_file(row),
                h = self.ctx.config.thumbnail_height,
                name = escape(name),
                class_link = self.class_link(p.class, &p.name, ""),
                probability = percent(p.probability),
                truth = image.truth.as_deref().map_or("–".to_owned(), escape),
                units = units.join("<br>"),
            );
        }
        out.push_str("</tbody></table></div>\n");
        out.push_str(&foot_with("../", &["explain.js"]));
        page::write_file(&self.ctx.dir.join("explain/index.html"), &out)
    }

    /// The faithfulness check of `summary.json`: the score's drop when an image's top units,
    /// random units or the highest-weight units are zeroed.
    fn ablation_table(&self, out: &mut String, summary: &Value) {
        let Some(rows) = summary["ablation"].as_array().filter(|r| !r.is_empty()) else {
            return;
        };
        let weights = rows.iter().any(|r| r["weight_drop"].is_number());
        out.push_str("<h2>Faithfulness</h2>\n<p>The predicted class's mean score drop, and how often the prediction changes, when n units of the layer are zeroed: each image's top n units by contribution, n random units, and (for a head linear after pooling) the n units with the largest weights for the class.</p>\n<table class=\"stats ablation\"><thead><tr><th>n</th><th>top-n drop</th><th>flips</th><th>random drop (sd)</th><th>flips</th>");
        if weights {
            out.push_str("<th>weights drop</th><th>flips</th>");
        }
        out.push_str("</tr></thead><tbody>");
        let number = |v: &Value| v.as_f64().map_or("–".to_owned(), |v| format!("{v:.3}"));
        let rate = |v: &Value| v.as_f64().map_or("–".to_owned(), percent);
        for r in rows {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td>",
                r["n"],
                number(&r["top_drop"]),
                rate(&r["top_flip_rate"]),
                number(&r["random_drop"]),
                number(&r["random_drop_sd"]),
                rate(&r["random_flip_rate"]),
            );
            if weights {
                let _ = write!(
                    out,
                    "<td>{}</td><td>{}</td>",
                    number(&r["weight_drop"]),
                    rate(&r["weight_flip_rate"])
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>\n");
    }

    fn write_class_page(
        &self,
        class: u32,
        name: &str,
        predicted: &[&Prediction],
        units: &[TopUnit],
        concepts: &[Concept],
    ) -> Result<()> {
        let mut out = head(
            &format!("{} · {name}", self.title()),
            "../../",
            &self.crumbs("../../", Some((class_page(class), name.to_owned()))),
        );
        let judged: Vec<bool> = predicted.iter().filter_map(|p| p.correct).collect();
        let _ = write!(
            out,
            "<h1>{}</h1>\n<p class=\"lede\">Predicted for {} images",
            escape(name),
            predicted.len()
        );
        if judged.is_empty() {
            out.push_str("; none of them has a known true class");
        } else {
            let right = judged.iter().filter(|&&c| c).count();
            let _ = write!(
                out,
                "; right for {right} of the {} whose true class is known ({})",
                judged.len(),
                percent(right as f64 / judged.len() as f64)
            );
        }
        out.push_str(".</p>\n");

        let _ = writeln!(
            out,
            "<h2>Top concepts</h2>\n<p>A concept's contribution is the sum of the mean contributions of its detectors in layer {} over the images predicted as {}.</p>",
            escape(self.layer_name),
            escape(name)
        );
        if concepts.is_empty() {
            out.push_str("<p>No detector of this layer contributes to this class.</p>\n");
        } else {
            out.push_str("<div class=\"scroll\"><table class=\"stats concepts\"><thead><tr><th>rank</th><th>concept</th><th>category</th><th>detectors</th><th>mean contribution</th><th>share</th><th>best unit</th></tr></thead><tbody>");
            for c in concepts {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
                    c.rank,
                    label_name(&c.label),
                    escape(&c.category),
                    c.units,
                    c.contribution,
                    percent(c.share),
                    self.unit_link(c.best_unit),
                );
            }
            out.push_str("</tbody></table></div>\n");
        }
        out.push_str("<h2>Top units</h2>\n<p>By their mean contribution over the images predicted as this class.</p>\n");
        units_table(&mut out, units, "mean contribution", &|u| self.unit_link(u));

        // Examples among the paged images: the most confident first.
        let mut examples: Vec<&&Prediction> = predicted
            .iter()
            .filter(|p| self.paged.binary_search(&p.row).is_ok())
            .collect();
        examples.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then(a.row.cmp(&b.row))
        });
        out.push_str("<h2>Example images</h2>\n");
        if examples.is_empty() {
            out.push_str("<p>None of the sampled images is predicted as this class.</p>\n");
        } else {
            out.push_str("<div class=\"thumbs\">\n");
            for p in examples.iter().take(EXAMPLES) {
                let file = self.ctx.dataset.image(p.row);
                let _ = writeln!(
                    out,
                    r#"<figure class="thumb {c}"><a href="../images/{page}"><img src="../images/{thumb}" height="{h}" loading="lazy" alt="{file}"></a><figcaption>{probability} · {verdict}</figcaption></figure>"#,
                    c = verdict(p.correct).0,
                    page = image_page(p.row),
                    thumb = thumb_file(p.row),
                    h = self.ctx.config.thumbnail_height,
                    file = escape(file),
                    probability = percent(p.probability),
                    verdict = verdict(p.correct).1,
                );
            }
            out.push_str("</div>\n");
        }
        out.push_str(&page::foot_with("../../", &[]));
        page::write_file(
            &self.ctx.dir.join("explain/classes").join(class_page(class)),
            &out,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_upsampling_keeps_flat_maps_and_interpolates_between_centres() {
        assert!(
            upsample(&[2.5; 4], 2, 2, 7, 5)
                .iter()
                .all(|&v| (v - 2.5).abs() < 1e-6)
        );
        // 1×2 → 1×4: with half-pixel centres the outputs sit at -0.25, 0.25, 0.75 and 1.25
        // in input cells (clamped to the first and last cell at the edges).
        let row = upsample(&[0.0, 4.0], 1, 2, 1, 4);
        assert_eq!(row, vec![0.0, 1.0, 3.0, 4.0]);
        // The same size is the identity.
        let map = [1.0, -2.0, 3.0, 0.5, 0.0, 7.0];
        assert_eq!(upsample(&map, 2, 3, 2, 3), map);
    }

    #[test]
    fn the_colour_map_runs_from_blue_to_red() {
        assert_eq!(colour(0.0), [0, 0, 128]);
        assert_eq!(colour(1.0), [200, 0, 0]);
        assert_eq!(colour(-3.0), colour(0.0));
        assert_eq!(colour(0.5), [64, 224, 96]);
    }

    #[test]
    fn the_cam_keeps_positive_evidence_scaled_by_its_maximum() {
        let image = RgbImage::from_pixel(2, 1, Rgb([100, 100, 100]));
        // Negative evidence shows as none; the maximum as the top of the map, whatever
        // its scale.
        let blended = cam_over(&image, &[-5.0, 0.001], 1, 2);
        let none = [0, 1, 2].map(|k| ((100 * 128 + colour(0.0)[k] as u32 * 128 + 128) >> 8) as u8);
        let most = [0, 1, 2].map(|k| ((100 * 128 + colour(1.0)[k] as u32 * 128 + 128) >> 8) as u8);
        assert_eq!(blended.get_pixel(0, 0).0, none);
        assert_eq!(blended.get_pixel(1, 0).0, most);
        // A map with nothing positive is all "none".
        let flat = cam_over(&image, &[-1.0, -2.0], 1, 2);
        assert!(flat.pixels().all(|p| p.0 == none));
    }

    #[test]
    fn the_sample_is_all_rows_up_to_its_size_else_a_fixed_subset() {
        assert_eq!(sample([5, 1, 3].into_iter(), 10), vec![1, 3, 5]);
        let big = sample(0..5000, 1000);
        assert_eq!(big.len(), 1000);
        assert!(big.windows(2).all(|w| w[0] < w[1]));
        // The same rows whatever the order they come in, and spread over the dataset.
        assert_eq!(sample((0..5000).rev(), 1000), big);
        assert!(big.iter().filter(|&&r| r < 2500).count() > 400);
        assert!(big.iter().filter(|&&r| r >= 2500).count() > 400);
    }
}
