//! The one pass over the dataset: every pixel's set of labels, counted by set.
//!
//! A formula's value at a pixel depends only on the pixel's label set (its nonzero pixel
//! labels in every map and its image's nonzero image-level labels), so everything the
//! search needs is a histogram over label sets: the dataset's pixels per set (for the
//! truth of any formula) and, per unit, its mask pixels per set (for the intersection),
//! plus, per unit, its mask pixels per set of *present categories* (for the denominator).
//! A single concept is also counted as the score stage counts it (a pixel once per label
//! map and image-level item giving the label), so that its IoU is the score stage's.
//! Label maps are regions, so an image has a few dozen distinct sets, and the whole
//! dataset far fewer sets than pixels.

use std::collections::HashMap;
use std::ops::Range;

use nd_arrays::masks::{MaskBlock, MaskReader, Run};
use rayon::prelude::*;

use crate::{Denominator, Error, Result};

/// Images read and counted at a time.
const BLOCK: usize = 64;

/// One unit's histograms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitTally {
    /// `(set, mask pixels)`, sets ascending.
    pub sets: Vec<(u32, u64)>,
    /// `(present categories as bits, mask pixels)`: the unit's pixels of images where
    /// those categories count (the [`Denominator`] rule), bit patterns ascending.
    pub presence: Vec<(u64, u64)>,
    /// Every mask pixel of the unit.
    pub pixels: u64,
    /// `(label, mask pixels)` as the score stage counts them (a pixel once per map or
    /// image-level item giving the label), labels ascending.
    pub single: Vec<(u32, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerTally {
    pub name: String,
    pub units: Vec<UnitTally>,
}

/// The dataset's label sets and every unit's histograms over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    /// The distinct label sets, each ascending, in the order first met (row order).
    pub sets: Vec<Box<[u32]>>,
    /// Pixels of the dataset with each set.
    pub set_pixels: Vec<u64>,
    /// Images where each label occurs (in some pixel's set).
    pub images_with: Vec<u64>,
    /// Pixels of each label as the score stage counts them (its `truth`).
    pub single_truth: Vec<u64>,
    pub layers: Vec<LayerTally>,
}

/// What one image adds.
#[derive(Default)]
struct ImageTally {
    /// Its distinct label sets and their pixels.
    sets: Vec<(Vec<u32>, u64)>,
    /// `(label, pixels)` as the score stage counts them.
    single: Vec<(u32, u64)>,
    /// Per layer: its units with a mask.
    layers: Vec<Vec<UnitImage>>,
}

/// What one unit's mask in one image adds.
struct UnitImage {
    unit: u32,
    /// `(local set, mask pixels)`.
    sets: Vec<(u32, u64)>,
    /// `(label, mask pixels)` as the score stage counts them.
    single: Vec<(u32, u64)>,
    /// The categories that count for the mask's pixels, as bits.
    present: u64,
}

/// The dataset's view the tally needs: each label's primary category as a bit.
pub struct Labels<'a> {
    pub dataset: &'a nd_broden::Dataset,
    pub denominator: Denominator,
    bits: Vec<u64>,
    zero_bit: u64,
}

impl<'a> Labels<'a> {
    pub fn new(dataset: &'a nd_broden::Dataset, denominator: Denominator) -> Result<Labels<'a>> {
        if dataset.categories().len() > 64 {
            return Err(Error::Input(format!(
                "the dataset loads {} categories; formulas handle at most 64 (load fewer)",
                dataset.categories().len()
            )));
        }
        let bits = (0..dataset.n_labels() as u32)
            .map(|l| 1u64 << dataset.primary_category(l))
            .collect();
        Ok(Labels {
            dataset,
            denominator,
            bits,
            zero_bit: 1u64 << dataset.primary_category(0),
        })
    }

    /// The bit of a label's primary category.
    pub fn bit(&self, label: u32) -> u64 {
        self.bits[label as usize]
    }
}

fn image_tally<'m>(
    labels: &Labels,
    row: usize,
    masks: &[impl Iterator<Item = (u32, &'m [Run])> + Clone],
    names: &[String],
) -> Result<ImageTally> {
    let dataset = labels.dataset;
    let read = dataset.read_labels(row)?;
    let area = read.height as usize * read.width as usize;
    let mut items: Vec<u32> = read
        .image_labels
        .iter()
        .map(|i| i.label)
        .filter(|&l| l != 0)
        .collect();
    items.sort_unstable();
    items.dedup();
    let zero_item = read.image_labels.iter().any(|i| i.label == 0);
    // The items as the score stage counts them: each (lite), or each label once (original).
    let mut counted_items: Vec<u32> = read
        .image_labels
        .iter()
        .map(|i| i.label)
        .filter(|&l| l != 0)
        .collect();
    if labels.denominator == Denominator::Original {
        counted_items.sort_unstable();
        counted_items.dedup();
    }
    // Each pixel's code: pixels with the same labels in every map share one.
    let n_maps = read.maps.len();
    let mut codes: HashMap<Vec<u16>, u32> = HashMap::new();
    let mut code_of = vec![0u32; area];
    let mut key: Vec<u16> = vec![0; n_maps];
    let mut last: Option<(Vec<u16>, u32)> = None;
    for (p, code) in code_of.iter_mut().enumerate() {
        for (k, map) in key.iter_mut().zip(&read.maps) {
            *k = map.pixels[p];
        }
        *code = match &last {
            Some((previous, c)) if *previous == key => *c,
            _ => {
                let n = codes.len() as u32;
                let c = *codes.entry(key.clone()).or_insert(n);
                last = Some((key.clone(), c));
                c
            }
        };
    }
    // Each code's label set; codes with equal sets share a local set.
    let mut by_code: Vec<(&Vec<u16>, u32)> = codes.iter().map(|(k, &c)| (k, c)).collect();
    by_code.sort_unstable_by_key(|&(_, c)| c);
    let mut local: HashMap<Vec<u32>, u32> = HashMap::new();
    let mut out = ImageTally::default();
    let mut set_of_code = vec![0u32; by_code.len().max(1)];
    // Each code's labels with the times they are given (maps, then items).
    let mut given: Vec<Vec<(u32, u64)>> = vec![Vec::new(); by_code.len().max(1)];
    for (k, c) in by_code {
        let mut times: Vec<(u32, u64)> = Vec::new();
        for l in k
            .iter()
            .map(|&l| u32::from(l))
            .chain(counted_items.iter().copied())
        {
            if l == 0 {
                continue;
            }
            match times.iter_mut().find(|(x, _)| *x == l) {
                Some(t) => t.1 += 1,
                None => times.push((l, 1)),
            }
        }
        given[c as usize] = times;
        let mut set: Vec<u32> = k
            .iter()
            .filter(|&&l| l != 0)
            .map(|&l| u32::from(l))
            .collect();
        set.extend(&items);
        set.sort_unstable();
        set.dedup();
        let n = local.len() as u32;
        let s = *local.entry(set.clone()).or_insert_with(|| {
            out.sets.push((set, 0));
            n
        });
        set_of_code[c as usize] = s;
    }
    let mut code_pixels = vec![0u64; given.len()];
    for &c in &code_of {
        code_pixels[c as usize] += 1;
    }
    let mut single: Vec<(u32, u64)> = Vec::new();
    for (c, &n) in code_pixels.iter().enumerate() {
        if n > 0 {
            out.sets[set_of_code[c] as usize].1 += n;
            single.extend(given[c].iter().map(|&(l, t)| (l, t * n)));
        }
    }
    compact(&mut single);
    out.single = single;
    let everywhere: u64 = out
        .sets
        .iter()
        .flat_map(|(set, _)| set.iter())
        .fold(0, |bits, &l| bits | labels.bit(l));
    let mut hist = vec![0u64; given.len()];
    let mut set_hist = vec![0u64; out.sets.len()];
    for (layer, layer_masks) in names.iter().zip(masks) {
        let mut units = Vec::new();
        for (unit, runs) in layer_masks.clone() {
            for run in runs {
                let end = run.start as usize + run.length as usize;
                if end > area {
                    return Err(Error::Input(format!(
                        "layer `{layer}` unit {unit}: the mask of {} (index.csv line {}) is larger than its \
                         {}×{} label map: were the masks made for this dataset?",
                        dataset.image_file(row),
                        dataset.rows()[row].line,
                        read.height,
                        read.width
                    )));
                }
                for &c in &code_of[run.start as usize..end] {
                    hist[c as usize] += 1;
                }
            }
            let mut single = Vec::new();
            for (c, n) in hist.iter_mut().enumerate() {
                if *n > 0 {
                    let n = std::mem::take(n);
                    set_hist[set_of_code[c] as usize] += n;
                    single.extend(given[c].iter().map(|&(l, t)| (l, t * n)));
                }
            }
            let mut sets = Vec::new();
            let mut overlapped = if zero_item { labels.zero_bit } else { 0 };
            for (s, n) in set_hist.iter_mut().enumerate() {
                if *n > 0 {
                    sets.push((s as u32, std::mem::take(n)));
                    for &l in &out.sets[s].0 {
                        overlapped |= labels.bit(l);
                    }
                }
            }
            if sets.is_empty() {
                continue;
            }
            compact(&mut single);
            let present = match labels.denominator {
                Denominator::Lite => overlapped,
                Denominator::Original => everywhere,
            };
            units.push(UnitImage {
                unit,
                sets,
                single,
                present,
            });
        }
        out.layers.push(units);
    }
    Ok(out)
}

/// Sorts a unit's `(key, count)` entries and adds those of equal keys.
fn compact<K: Ord + Copy>(entries: &mut Vec<(K, u64)>) {
    entries.sort_unstable_by_key(|&(k, _)| k);
    let mut out: Vec<(K, u64)> = Vec::with_capacity(entries.len());
    for &(k, n) in entries.iter() {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1 += n,
            _ => out.push((k, n)),
        }
    }
    *entries = out;
}

/// Counts images shard after shard into one [`Tally`].
pub struct Tallier<'a> {
    labels: &'a Labels<'a>,
    names: Vec<String>,
    tally: Tally,
    /// A unit's entries are compacted when they pass its limit, then the limit doubles, so
    /// they stay within about twice the distinct sets and labels it touches.
    limits: Vec<Vec<usize>>,
    interned: HashMap<Box<[u32]>, u32>,
}

impl<'a> Tallier<'a> {
    pub fn new(labels: &'a Labels<'a>, layers: &[(String, usize)]) -> Tallier<'a> {
        let n_labels = labels.dataset.n_labels();
        Tallier {
            labels,
            names: layers.iter().map(|(n, _)| n.clone()).collect(),
            tally: Tally {
                sets: Vec::new(),
                set_pixels: Vec::new(),
                images_with: vec![0; n_labels],
                single_truth: vec![0; n_labels],
                layers: layers
                    .iter()
                    .map(|(name, units)| LayerTally {
                        name: name.clone(),
                        units: vec![UnitTally::default(); *units],
                    })
                    .collect(),
            },
            limits: layers.iter().map(|(_, u)| vec![64; *u]).collect(),
            interned: HashMap::new(),
        }
    }

    /// Counts the dataset's `rows`, whose masks are the readers' images `0..rows.len()`
    /// (one reader per layer, in the layers' order).
    pub fn add(&mut self, rows: Range<usize>, readers: &[MaskReader]) -> Result<()> {
        let (labels, names) = (self.labels, &self.names);
        let tally = &mut self.tally;
        let interned = &mut self.interned;
        let limits = &mut self.limits;
        let n = rows.len() as u64;
        for start in (0..n).step_by(BLOCK) {
            let images = start..(start + BLOCK as u64).min(n);
            let blocks: Vec<MaskBlock> = readers
                .iter()
                .map(|r| r.read_block(images.clone()))
                .collect::<nd_arrays::Result<_>>()?;
            let counted: Vec<Result<ImageTally>> = (0..images.end - images.start)
                .into_par_iter()
                .map(|i| {
                    let masks: Vec<_> = blocks.iter().map(|b| b.image(i as usize)).collect();
                    image_tally(labels, rows.start + (start + i) as usize, &masks, names)
                })
                .collect();
            for image in counted {
                let image = image?;
                let mut global = Vec::with_capacity(image.sets.len());
                let mut seen: Vec<u32> = Vec::new();
                for (set, pixels) in image.sets {
                    seen.extend(&set);
                    let next = tally.sets.len() as u32;
                    let id = *interned
                        .entry(set.clone().into_boxed_slice())
                        .or_insert_with(|| {
                            tally.sets.push(set.into_boxed_slice());
                            tally.set_pixels.push(0);
                            next
                        });
                    tally.set_pixels[id as usize] += pixels;
                    global.push(id);
                }
                seen.sort_unstable();
                seen.dedup();
                for l in seen {
                    tally.images_with[l as usize] += 1;
                }
                for (l, n) in image.single {
                    tally.single_truth[l as usize] += n;
                }
                for ((layer, units), limits) in tally
                    .layers
                    .iter_mut()
                    .zip(image.layers)
                    .zip(limits.iter_mut())
                {
                    for UnitImage {
                        unit,
                        sets,
                        single,
                        present,
                    } in units
                    {
                        let u = &mut layer.units[unit as usize];
                        let size: u64 = sets.iter().map(|&(_, n)| n).sum();
                        u.pixels += size;
                        u.sets
                            .extend(sets.iter().map(|&(s, n)| (global[s as usize], n)));
                        u.single.extend(single);
                        match u.presence.iter_mut().find(|(bits, _)| *bits == present) {
                            Some(entry) => entry.1 += size,
                            None => u.presence.push((present, size)),
                        }
                        let limit = &mut limits[unit as usize];
                        if u.sets.len() + u.single.len() > *limit {
                            compact(&mut u.sets);
                            compact(&mut u.single);
                            *limit = (2 * (u.sets.len() + u.single.len())).max(64);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn finish(mut self) -> Tally {
        for layer in &mut self.tally.layers {
            for unit in &mut layer.units {
                compact(&mut unit.sets);
                compact(&mut unit.single);
                compact(&mut unit.presence);
            }
        }
        self.tally
    }
}
