//! The report's images: each unit's strip of top images with its mask drawn over them, and
//! for its page, overlays of its mask and of its best concept's label map.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use image::{ImageEncoder, Rgb, RgbImage};
use nd_arrays::masks::{MaskReader, Run};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::{Context, Error, Layer, Result};

/// Units drawn together: their top images are decoded once per block, and the block's
/// thumbnails are the only ones in memory.
const UNIT_BLOCK: usize = 64;
const STRIP_GAP: u32 = 2;
const JPEG_QUALITY: u8 = 75;
/// The outline of a unit's mask, and of a concept's pixels.
pub(crate) const UNIT_COLOUR: [u8; 3] = [255, 214, 0];
const CONCEPT_COLOUR: [u8; 3] = [0, 214, 255];
/// How much of a pixel's brightness is kept outside the mask, in 256ths.
const DIM_256: u32 = 77;

/// What one top image of a unit shows, in label-map pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Shown {
    /// The dataset row (line of index.csv minus 2).
    pub row: usize,
    /// The unit's spatial maximum in this image.
    pub max: f32,
    /// Pixels of the unit's mask.
    pub mask: u64,
    /// Pixels of the unit's best concept (every pixel for an image-level label).
    pub concept: u64,
    /// Pixels in both.
    pub both: u64,
}

/// One unit's drawings: what each top image shows, the strip's width, and for each image
/// the overlays of the unit's mask and of its concept (base64 PNGs, which the unit's page
/// embeds instead of thousands of small files).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UnitDrawn {
    pub shown: Vec<Shown>,
    pub strip_width: u32,
    pub overlays: Vec<(String, String)>,
    /// With formulas: per image, the overlay of the unit's best formula and its pixels
    /// (empty when the unit has no formula longer than one concept).
    pub formula: Vec<(String, u64)>,
}

/// What was drawn for a layer: `<stem>/units.json` in the images artifact.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Drawn {
    pub thumbnail_height: u32,
    pub units: Vec<UnitDrawn>,
}

impl Drawn {
    pub fn to_json(&self) -> Value {
        let units: Vec<Value> = self
            .units
            .iter()
            .map(|u| {
                let shown: Vec<Value> = u
                    .shown
                    .iter()
                    .zip(&u.overlays)
                    .enumerate()
                    .map(|(i, (s, (mask, concept)))| {
                        let mut entry = json!({
                            "row": s.row, "max": s.max, "mask": s.mask, "concept": s.concept,
                            "both": s.both, "mask_png": mask, "concept_png": concept,
                        });
                        if let Some((png, pixels)) = u.formula.get(i) {
                            entry["formula_png"] = json!(png);
                            entry["formula"] = json!(pixels);
                        }
                        entry
                    })
                    .collect();
                json!({ "strip_width": u.strip_width, "shown": shown })
            })
            .collect();
        json!({ "thumbnail_height": self.thumbnail_height, "units": units })
    }

    pub fn from_json(value: &Value) -> Option<Drawn> {
        let units = value["units"]
            .as_array()?
            .iter()
            .map(|u| {
                let mut shown = Vec::new();
                let mut overlays = Vec::new();
                let mut formula = Vec::new();
                for s in u["shown"].as_array()? {
                    if let (Some(png), Some(n)) = (s["formula_png"].as_str(), s["formula"].as_u64())
                    {
                        formula.push((png.to_owned(), n));
                    }
                    shown.push(Shown {
                        row: s["row"].as_u64()? as usize,
                        max: s["max"].as_f64()? as f32,
                        mask: s["mask"].as_u64()?,
                        concept: s["concept"].as_u64()?,
                        both: s["both"].as_u64()?,
                    });
                    overlays.push((
                        s["mask_png"].as_str()?.to_owned(),
                        s["concept_png"].as_str()?.to_owned(),
                    ));
                }
                Some(UnitDrawn {
                    shown,
                    strip_width: u["strip_width"].as_u64()? as u32,
                    overlays,
                    formula,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Drawn {
            thumbnail_height: value["thumbnail_height"].as_u64()? as u32,
            units,
        })
    }
}

/// A file name relative to the report's root.
pub(crate) fn strip_file(stem: &str, unit: u32) -> String {
    format!("{stem}/strip-{unit:04}.jpg")
}
/// Top images are shared by the layers (and units) that show them.
pub(crate) fn image_file(row: usize) -> String {
    format!("images/{row:06}.jpg")
}

/// A decoded top image: its pixels at full size and at thumbnail size, its label maps.
struct Decoded {
    image: RgbImage,
    thumb: RgbImage,
    labels: nd_broden::RowLabels,
}

/// Images of masks read at once in the pass that collects the top images' masks.
const MASK_BLOCK: u64 = 512;

/// The masks of every (row, unit) pair shown, in one sequential pass over the layer's
/// masks of each image shard (each compressed chunk is read once).
fn shown_masks(
    layer: &Layer,
    shards: &[(MaskReader, usize)],
) -> Result<HashMap<(usize, u32), Vec<Run>>> {
    let mut wanted: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
    for (u, top) in layer.top.iter().enumerate() {
        for &(row, _) in top {
            wanted.entry(row).or_default().insert(layer.units[u].unit);
        }
    }
    read_masks(&wanted, shards)
}

/// The masks of the wanted units of each wanted dataset row, in one sequential pass over a
/// layer's masks of each image shard (`(reader, first row)`); a pair with no mask (the unit
/// never passed its threshold there) is left out.
pub(crate) fn read_masks(
    wanted: &BTreeMap<usize, BTreeSet<u32>>,
    shards: &[(MaskReader, usize)],
) -> Result<HashMap<(usize, u32), Vec<Run>>> {
    let mut out = HashMap::new();
    for (masks, first_row) in shards {
        let images = masks.images();
        let mut start = 0;
        while start < images {
            let end = (start + MASK_BLOCK).min(images);
            let rows = first_row + start as usize..first_row + end as usize;
            if wanted.range(rows.clone()).next().is_some() {
                let block = masks.read_images(start..end)?;
                for (&row, units) in wanted.range(rows.clone()) {
                    for (unit, runs) in &block[row - rows.start] {
                        if units.contains(unit) {
                            out.insert((row, *unit), runs.clone());
                        }
                    }
                }
            }
            start = end;
        }
    }
    Ok(out)
}

/// Draws every unit's strip (written as a file) and overlays (handed to `page`, which
/// writes the unit's page), a block of units at a time.
/// Draws every unit's strip and the images they show (written as files) and its overlays
/// (returned), a block of units at a time.
pub(crate) fn layer_images(
    ctx: &Context,
    layer: &Layer,
    masks: &[(MaskReader, usize)],
    written_images: &mut BTreeSet<usize>,
) -> Result<Drawn> {
    let (dir, dataset, config) = (ctx.dir, ctx.dataset, ctx.config);
    for path in [dir.join(&layer.stem), dir.join("images")] {
        std::fs::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
    }
    let runs = shown_masks(layer, masks)?;
    let mut units = Vec::with_capacity(layer.units.len());
    let th = config.thumbnail_height;
    for block in (0..layer.units.len())
        .collect::<Vec<_>>()
        .chunks(UNIT_BLOCK)
    {
        let rows: BTreeSet<usize> = block
            .iter()
            .flat_map(|&u| layer.top[u].iter().map(|&(row, _)| row))
            .collect();
        let decoded: BTreeMap<usize, Decoded> = rows
            .par_iter()
            .map(|&row| {
                let image = dataset.read_image(row)?;
                let (w, h) = thumb_size(&image, th);
                let thumb = shrink(&image, w, h);
                let labels = dataset.read_labels(row)?;
                Ok((
                    row,
                    Decoded {
                        image,
                        thumb,
                        labels,
                    },
                ))
            })
            .collect::<Result<_>>()?;
        let fresh: Vec<usize> = rows
            .iter()
            .copied()
            .filter(|r| !written_images.contains(r))
            .collect();
        fresh.par_iter().try_for_each(|&row| {
            let path = dir.join(image_file(row));
            let mut bytes = Vec::new();
            encode_jpeg(&mut bytes, &decoded[&row].image, &path)?;
            write_file(&path, &bytes)
        })?;
        written_images.extend(fresh);
        let drawn: Vec<UnitDrawn> = block
            .par_iter()
            .map(|&u| draw_unit(ctx, layer, u, &decoded, &runs))
            .collect::<Result<_>>()?;
        units.extend(drawn);
        ctx.progress.inc(block.len() as u64);
    }
    Ok(Drawn {
        thumbnail_height: th,
        units,
    })
}

pub(crate) fn thumb_size(image: &RgbImage, height: u32) -> (u32, u32) {
    let w = (image.width() as u64 * height as u64).div_ceil(image.height().max(1) as u64);
    ((w as u32).max(1), height)
}

/// Draws one unit's strip and overlays.
fn draw_unit(
    ctx: &Context,
    layer: &Layer,
    u: usize,
    decoded: &BTreeMap<usize, Decoded>,
    runs: &HashMap<(usize, u32), Vec<Run>>,
) -> Result<UnitDrawn> {
    let (dir, dataset, config) = (ctx.dir, ctx.dataset, ctx.config);
    let unit = &layer.units[u];
    let mut shown = Vec::new();
    let mut overlays = Vec::new();
    let mut formula_overlays = Vec::new();
    let formula = crate::formulas::best_formula(ctx.formulas.of(&layer.name, unit.unit));
    let mut thumbs = Vec::new();
    for &(row, max) in &layer.top[u] {
        let d = &decoded[&row];
        let (lh, lw) = (d.labels.height as usize, d.labels.width as usize);
        let mut mask = vec![false; lh * lw];
        for run in runs
            .get(&(row, unit.unit))
            .map_or(&[][..], |r| r.as_slice())
        {
            let (a, b) = (run.start as usize, run.start as usize + run.length as usize);
            if b > mask.len() {
                return Err(Error::Input(format!(
                    "layer `{}` unit {}: a mask run of image row {row} leaves its {lh}×{lw} label map",
                    layer.name, unit.unit
                )));
            }
            mask[a..b].fill(true);
        }
        let concept = match &unit.top {
            Some(top) => concept_mask(dataset, &d.labels, top),
            None => vec![false; lh * lw],
        };
        let both = mask
            .iter()
            .zip(&concept)
            .filter(|(a, b)| **a && **b)
            .count();
        shown.push(Shown {
            row,
            max,
            mask: mask.iter().filter(|m| **m).count() as u64,
            concept: concept.iter().filter(|m| **m).count() as u64,
            both: both as u64,
        });

        let (tw, th) = (d.thumb.width() as usize, d.thumb.height() as usize);
        thumbs.push(dimmed(
            &d.thumb,
            &upscale(&mask, lh, lw, th, tw),
            UNIT_COLOUR,
        ));
        // At the label maps' resolution, where masks and concepts are scored; the page
        // scales them to the image without smoothing.
        let what = |m: &[bool], colour| {
            overlay_png(m, lw as u32, lh as u32, colour, &dir.join(&layer.stem))
        };
        overlays.push((
            base64(&what(&mask, UNIT_COLOUR)?),
            base64(&what(&concept, CONCEPT_COLOUR)?),
        ));
        if let Some(f) = formula {
            let m = crate::formulas::mask(f, &d.labels);
            let pixels = m.iter().filter(|x| **x).count() as u64;
            formula_overlays.push((base64(&what(&m, CONCEPT_COLOUR)?), pixels));
        }
    }
    let width = thumbs
        .iter()
        .map(|t| t.width() + STRIP_GAP)
        .sum::<u32>()
        .max(1);
    let mut strip = RgbImage::from_pixel(width, config.thumbnail_height, Rgb([24, 24, 24]));
    let mut x = 0;
    for t in &thumbs {
        image::imageops::replace(&mut strip, t, x as i64, 0);
        x += t.width() + STRIP_GAP;
    }
    let path = dir.join(strip_file(&layer.stem, unit.unit));
    let mut bytes = Vec::new();
    encode_jpeg(&mut bytes, &strip, &path)?;
    write_file(&path, &bytes)?;
    Ok(UnitDrawn {
        shown,
        strip_width: width,
        overlays,
        formula: formula_overlays,
    })
}

/// The pixels of a concept in one image's label maps: where a map of its category holds
/// its number, or everywhere when the image carries it as an image-level label.
fn concept_mask(
    dataset: &nd_broden::Dataset,
    labels: &nd_broden::RowLabels,
    top: &crate::CategoryBest,
) -> Vec<bool> {
    let n = labels.height as usize * labels.width as usize;
    let Some(category) = dataset.category_index(&top.category) else {
        return vec![false; n];
    };
    if labels
        .image_labels
        .iter()
        .any(|l| l.category == category && l.label == top.label)
    {
        return vec![true; n];
    }
    let mut mask = vec![false; n];
    for map in labels.maps.iter().filter(|m| m.category == category) {
        for (m, &p) in mask.iter_mut().zip(&map.pixels) {
            *m |= u32::from(p) == top.label;
        }
    }
    mask
}

/// Nearest-neighbour upsampling of a label-resolution mask to the image's size.
fn upscale(mask: &[bool], lh: usize, lw: usize, ih: usize, iw: usize) -> Vec<bool> {
    if (lh, lw) == (ih, iw) {
        return mask.to_vec();
    }
    let mut out = vec![false; ih * iw];
    for y in 0..ih {
        let ly = y * lh / ih;
        for x in 0..iw {
            out[y * iw + x] = mask[ly * lw + x * lw / iw];
        }
    }
    out
}

/// Whether a pixel lies on the mask's boundary: it differs from one of its four
/// neighbours, or it is in the mask at the image's edge. Both sides of a boundary are
/// marked, so the outline is two pixels wide.
fn on_edge(mask: &[bool], w: usize, h: usize, x: usize, y: usize) -> bool {
    let at = |x: usize, y: usize| mask[y * w + x];
    let m = at(x, y);
    if m && (x == 0 || y == 0 || x + 1 == w || y + 1 == h) {
        return true;
    }
    (x > 0 && at(x - 1, y) != m)
        || (y > 0 && at(x, y - 1) != m)
        || (x + 1 < w && at(x + 1, y) != m)
        || (y + 1 < h && at(x, y + 1) != m)
}

/// The image dimmed outside the mask, the mask's outline drawn in `colour`.
fn dimmed(image: &RgbImage, mask: &[bool], colour: [u8; 3]) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut out = image.clone();
    for (i, p) in out.pixels_mut().enumerate() {
        let (x, y) = (i % w, i / w);
        if on_edge(mask, w, h, x, y) {
            *p = Rgb(colour);
        } else if !mask[i] {
            p.0 = p.0.map(|v| ((v as u32 * DIM_256 + 128) >> 8) as u8);
        }
    }
    out
}

/// A transparent layer that dims what is outside the mask and outlines it, to lay over the
/// image in the browser: a 2-bit indexed PNG (clear, dim, outline).
pub(crate) fn overlay_png(
    mask: &[bool],
    w: u32,
    h: u32,
    colour: [u8; 3],
    path: &Path,
) -> Result<Vec<u8>> {
    let (wu, hu) = (w as usize, h as usize);
    let row_bytes = wu.div_ceil(4);
    let mut data = vec![0u8; row_bytes * hu];
    for y in 0..hu {
        for x in 0..wu {
            let index: u8 = if on_edge(mask, wu, hu, x, y) {
                2
            } else if mask[y * wu + x] {
                0
            } else {
                1
            };
            data[y * row_bytes + x / 4] |= index << (6 - 2 * (x % 4));
        }
    }
    let error = |e: png::EncodingError| Error::Encode {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Two);
    encoder.set_palette(vec![0, 0, 0, 0, 0, 0, colour[0], colour[1], colour[2]]);
    encoder.set_trns(vec![0, (255 - DIM_256) as u8, 255]);
    encoder.set_compression(png::Compression::Balanced);
    let mut writer = encoder.write_header().map_err(error)?;
    writer.write_image_data(&data).map_err(error)?;
    writer.finish().map_err(error)?;
    Ok(out)
}

pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn encode_jpeg(out: &mut Vec<u8>, image: &RgbImage, path: &Path) -> Result<()> {
    image::codecs::jpeg::JpegEncoder::new_with_quality(out, JPEG_QUALITY)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Encode {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// For each output position along one axis, the source positions it averages and their
/// weights: the source interval the output pixel covers (a box filter), so shrinking
/// keeps every source pixel's contribution.
fn box_taps(from: usize, to: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = from as f64 / to as f64;
    (0..to)
        .map(|o| {
            let (a, b) = (o as f64 * scale, ((o + 1) as f64 * scale).min(from as f64));
            let mut taps = Vec::new();
            let mut i = a.floor() as usize;
            while (i as f64) < b && i < from {
                let cover = (b.min(i as f64 + 1.0) - a.max(i as f64)) / (b - a);
                if cover > 0.0 {
                    taps.push((i, cover as f32));
                }
                i += 1;
            }
            taps
        })
        .collect()
}

/// Shrinks (or stretches) an image to `w × h` with a box filter, one axis at a time.
pub(crate) fn shrink(image: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (sw, sh) = (image.width() as usize, image.height() as usize);
    let (w, h) = (w as usize, h as usize);
    let xs = box_taps(sw, w);
    let ys = box_taps(sh, h);
    let src = image.as_raw();
    let mut rows = vec![0f32; w * sh * 3];
    for y in 0..sh {
        for (x, taps) in xs.iter().enumerate() {
            let mut acc = [0f32; 3];
            for &(sx, weight) in taps {
                let p = (y * sw + sx) * 3;
                for c in 0..3 {
                    acc[c] += src[p + c] as f32 * weight;
                }
            }
            rows[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
    let mut out = vec![0u8; w * h * 3];
    for (y, taps) in ys.iter().enumerate() {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for &(sy, weight) in taps {
                let p = (sy * w + x) * 3;
                for c in 0..3 {
                    acc[c] += rows[p + c] * weight;
                }
            }
            for c in 0..3 {
                out[(y * w + x) * 3 + c] = (acc[c] + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).expect("sized buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_filter_averages_whole_pixels_and_keeps_flat_colour() {
        // 4 → 2: each output is the mean of two inputs.
        let image = RgbImage::from_fn(4, 1, |x, _| Rgb([x as u8 * 10, 100, 200]));
        let small = shrink(&image, 2, 1);
        assert_eq!(small.get_pixel(0, 0).0, [5, 100, 200]);
        assert_eq!(small.get_pixel(1, 0).0, [25, 100, 200]);
        // 224 → 96 (7/3): weights of each output sum to one.
        for taps in box_taps(224, 96) {
            let sum: f32 = taps.iter().map(|t| t.1).sum();
            assert!((sum - 1.0).abs() < 1e-5, "{taps:?}");
        }
        let flat = RgbImage::from_pixel(224, 224, Rgb([7, 77, 177]));
        assert!(shrink(&flat, 96, 96).pixels().all(|p| p.0 == [7, 77, 177]));
    }

    #[test]
    fn outlines_follow_the_mask_and_the_image_edge() {
        // A 4×4 mask with a 2×2 block in the top-left corner.
        let mut mask = vec![false; 16];
        for i in [0, 1, 4, 5] {
            mask[i] = true;
        }
        let edges: Vec<bool> = (0..16)
            .map(|i| on_edge(&mask, 4, 4, i % 4, i / 4))
            .collect();
        // Inside pixels on the image's edge or next to the outside, outside pixels next to
        // the mask; the far corner is neither.
        assert!(edges[0] && edges[5] && edges[2] && edges[8]);
        assert!(!edges[15] && !edges[10]);
        let image = RgbImage::from_pixel(4, 4, Rgb([200, 200, 200]));
        let d = dimmed(&image, &mask, UNIT_COLOUR);
        assert_eq!(d.get_pixel(3, 3).0, [60, 60, 60]);
        assert_eq!(d.get_pixel(0, 0).0, UNIT_COLOUR);
    }

    #[test]
    fn drawings_survive_their_json() {
        let drawn = Drawn {
            thumbnail_height: 84,
            units: vec![UnitDrawn {
                shown: vec![Shown {
                    row: 7,
                    max: 0.1 + 0.2,
                    mask: 3,
                    concept: 4,
                    both: 2,
                }],
                strip_width: 86,
                overlays: vec![("AAA=".into(), "BBB=".into())],
                formula: vec![],
            }],
        };
        let text = drawn.to_json().to_string();
        let back = Drawn::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, drawn);
        // With a formula's overlay too.
        let mut with = drawn.clone();
        with.units[0].formula = vec![("CCC=".into(), 5)];
        let text = with.to_json().to_string();
        assert_eq!(
            Drawn::from_json(&serde_json::from_str(&text).unwrap()).unwrap(),
            with
        );
        assert!(Drawn::from_json(&json!({ "units": [{}] })).is_none());
    }

    #[test]
    fn upscaling_repeats_label_pixels() {
        let mask = [true, false, false, true];
        let big = upscale(&mask, 2, 2, 4, 4);
        assert!(big[0] && big[1] && big[4] && big[5]);
        assert!(!big[2] && !big[3] && big[15]);
    }
}
