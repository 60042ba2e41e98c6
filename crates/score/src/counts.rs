//! The integer counts of Network Dissection and how one image adds to them.

use nd_arrays::masks::Run;
use nd_broden::{LabelMap, RowLabels};
use serde::{Deserialize, Serialize};

/// Which pixels of a unit's mask count towards a category's activation (METHOD §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Denominator {
    /// NetDissect-Lite: an image's mask pixels count for a category when the mask overlaps a
    /// pixel label of that (primary) category, or the image has an image-level label of it.
    /// An image-level label 0 marks its primary category (the last one) as present.
    #[default]
    Lite,
    /// The original NetDissect: they count whenever the image carries any label of the
    /// category anywhere. Label 0 never marks a category as present.
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

/// The counts of one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCounts {
    pub name: String,
    pub units: usize,
    /// `inter[unit · n_labels + label]`: mask pixels of the unit carrying the label.
    pub inter: Vec<u64>,
    /// `act[unit · n_categories + category]`: mask pixels counting towards the category.
    pub act: Vec<u64>,
    /// All mask pixels of each unit.
    pub pixels: Vec<u64>,
    /// What the original's tally depth dropped (see [`Counter::with_tally_depth`]).
    pub dropped: Dropped,
}

/// What a tally depth dropped from one layer's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Images with more intersection entries than the depth left room for.
    pub images: u64,
    /// The (unit, label) intersection entries dropped.
    pub entries: u64,
    /// Their pixels: intersection counts lost.
    pub pixels: u64,
    /// Images whose entries other than intersections (truths, unit sizes, image-level
    /// items) already fill the depth: the original then drops some of those too, which
    /// these counts cannot reproduce, so scoring refuses them.
    pub overflows: u64,
}

impl Dropped {
    fn add(&mut self, other: &Dropped) {
        self.images += other.images;
        self.entries += other.entries;
        self.pixels += other.pixels;
        self.overflows += other.overflows;
    }
}

/// Everything scoring needs, summed over images in integers. Adding two `Counts` of
/// disjoint image sets gives the counts of their union, which is how shards combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub n_labels: usize,
    pub n_categories: usize,
    /// `truth[label]`: pixels labelled with the label (an image-level label adds the
    /// whole label map; a label in two layers of one pixel counts twice).
    pub truth: Vec<u64>,
    pub layers: Vec<LayerCounts>,
}

impl Counts {
    pub fn new(n_labels: usize, n_categories: usize, layers: &[(String, usize)]) -> Counts {
        Counts {
            n_labels,
            n_categories,
            truth: vec![0; n_labels],
            layers: layers
                .iter()
                .map(|(name, units)| LayerCounts {
                    name: name.clone(),
                    units: *units,
                    inter: vec![0; units * n_labels],
                    act: vec![0; units * n_categories],
                    pixels: vec![0; *units],
                    dropped: Dropped::default(),
                })
                .collect(),
        }
    }

    /// Adds the counts of other images.
    pub fn merge(&mut self, other: &Counts) {
        assert_eq!(
            (self.n_labels, self.n_categories),
            (other.n_labels, other.n_categories)
        );
        add(&mut self.truth, &other.truth);
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            assert_eq!((&a.name, a.units), (&b.name, b.units));
            add(&mut a.inter, &b.inter);
            add(&mut a.act, &b.act);
            add(&mut a.pixels, &b.pixels);
            a.dropped.add(&b.dropped);
        }
    }
}

fn add(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// The labels of every pixel of one image, as one code per pixel: pixels with the same
/// labels in every label map share a code. A mask's pixels are then counted in one pass
/// whatever the number of maps, and a code's labels are added once per code, not per pixel.
///
/// Codes are built map by map: the codes after map `m` are the distinct pairs (code after
/// map `m − 1`, label in map `m`), numbered in the order their first pixel comes. A code of
/// level `m` remembers its parent of level `m − 1` and its label, so the chain from a final
/// code back to level 0 gives a pixel's labels, one per map.
///
/// The codes are kept as runs of equal codes in row-major order, not pixel by pixel: label
/// maps are regions (runs of 12 pixels on average in the benchmark's images), so a pair is
/// looked up once per run a map splits, and a mask is counted run by run.
#[derive(Debug, Default)]
struct PixelCodes {
    /// Per level (map), per code of that level: `(parent code, label)`.
    levels: Vec<Vec<(u32, u16)>>,
    /// The maximal runs of equal codes after the last map, `(end, code)`: a run starts
    /// where the one before ends.
    spans: Vec<(u32, u32)>,
    /// `span_of[pixel]`: the index of the run holding the pixel.
    span_of: Vec<u32>,
    /// Scratch: the runs of the map being combined.
    next: Vec<(u32, u32)>,
    /// Scratch: label to its index among the current map's labels, `u32::MAX` if absent.
    local: Vec<u32>,
    /// Scratch: `table[local label · codes + code]`, the code of that pair.
    table: Vec<u32>,
    pairs: std::collections::HashMap<(u32, u16), u32>,
}

/// The largest (codes × labels of a map) table used to combine a map with the codes so far;
/// beyond it (thousands of labels in one map) a hash map does the same more slowly.
const DENSE_TABLE: usize = 1 << 20;

/// Splits the runs of codes `spans` where the labels of `pixels` change and calls
/// `f(code, end, label)` for each piece, in order (a piece ends at `end`, where the next
/// begins). Stops and returns `false` as soon as `f` does.
#[inline]
fn split(spans: &[(u32, u32)], pixels: &[u16], mut f: impl FnMut(u32, u32, u16) -> bool) -> bool {
    let mut start = 0u32;
    for &(end, code) in spans {
        let mut at = start as usize;
        while at < end as usize {
            let stop = label_run_end(pixels, at, end as usize);
            let label = pixels[at];
            if !f(code, stop as u32, label) {
                return false;
            }
            at = stop;
        }
        start = end;
    }
    true
}

/// The end of the run of pixels equal to `pixels[at]` that starts at `at`, at most `end`.
#[inline]
fn label_run_end(pixels: &[u16], at: usize, end: usize) -> usize {
    let label = pixels[at];
    let mut q = at + 1;
    #[cfg(target_arch = "x86_64")]
    {
        // Eight labels a comparison (SSE2, part of the x86-64 baseline): runs are a dozen
        // pixels long on average, and a pixel-by-pixel scan was most of combining maps.
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi16, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi16,
        };
        // SAFETY: SSE2 is part of the x86-64 baseline, and each load reads the eight labels
        // at `q .. q + 8`, inside the slice since `q + 8 <= end <= pixels.len()`.
        unsafe {
            let wanted = _mm_set1_epi16(label as i16);
            while q + 8 <= end {
                let block = _mm_loadu_si128(pixels.as_ptr().add(q).cast::<__m128i>());
                let same = _mm_movemask_epi8(_mm_cmpeq_epi16(block, wanted)) as u32;
                if same != 0xffff {
                    // Two bits a label: the first clear pair is the first other label.
                    return q + ((!same).trailing_zeros() / 2) as usize;
                }
                q += 8;
            }
        }
    }
    while q < end && pixels[q] == label {
        q += 1;
    }
    q
}

/// Appends the run `..end` of code `code` to `runs`, merging it with the run before when
/// that has the same code.
#[inline]
fn push_run(runs: &mut Vec<(u32, u32)>, end: u32, code: u32) {
    match runs.last_mut() {
        Some(last) if last.1 == code => last.0 = end,
        _ => runs.push((end, code)),
    }
}

impl PixelCodes {
    fn build(&mut self, maps: &[LabelMap], pixels: usize, n_labels: usize, dense_limit: usize) {
        self.levels.clear();
        self.spans.clear();
        if pixels > 0 {
            self.spans.push((pixels as u32, 0));
        }
        if self.local.len() < n_labels {
            self.local.resize(n_labels, u32::MAX);
        }
        for map in maps {
            let n_codes = self.n_codes();
            let level = self
                .combine_dense(map, n_codes, dense_limit)
                .unwrap_or_else(|| self.combine_hashed(map));
            std::mem::swap(&mut self.spans, &mut self.next);
            self.levels.push(level);
        }
        self.span_of.clear();
        let mut start = 0;
        for (k, &(end, _)) in self.spans.iter().enumerate() {
            let n = end as usize - start;
            self.span_of.extend(std::iter::repeat_n(k as u32, n));
            start = end as usize;
        }
    }

    /// Combines a map with the codes so far through a table of (label, code) pairs, which
    /// grows by one column of codes per label of the map, into `next`; `None` (nothing
    /// kept) when it would pass `dense_limit` entries.
    fn combine_dense(
        &mut self,
        map: &LabelMap,
        n_codes: usize,
        dense_limit: usize,
    ) -> Option<Vec<(u32, u16)>> {
        let mut level: Vec<(u32, u16)> = Vec::new();
        let mut labels: Vec<u16> = Vec::new();
        self.table.clear();
        self.next.clear();
        let (local, table, next) = (&mut self.local, &mut self.table, &mut self.next);
        let fits = split(&self.spans, &map.pixels, |code, end, p| {
            let mut index = local[p as usize];
            if index == u32::MAX {
                if (labels.len() + 1) * n_codes > dense_limit {
                    return false;
                }
                index = labels.len() as u32;
                local[p as usize] = index;
                labels.push(p);
                table.resize(labels.len() * n_codes, u32::MAX);
            }
            let slot = &mut table[index as usize * n_codes + code as usize];
            if *slot == u32::MAX {
                *slot = level.len() as u32;
                level.push((code, p));
            }
            push_run(next, end, *slot);
            true
        });
        for &p in &labels {
            self.local[p as usize] = u32::MAX;
        }
        fits.then_some(level)
    }

    /// The same as [`PixelCodes::combine_dense`] through a hash map of pairs.
    fn combine_hashed(&mut self, map: &LabelMap) -> Vec<(u32, u16)> {
        let mut level: Vec<(u32, u16)> = Vec::new();
        self.pairs.clear();
        self.next.clear();
        let (pairs, next) = (&mut self.pairs, &mut self.next);
        split(&self.spans, &map.pixels, |code, end, p| {
            let fresh = level.len() as u32;
            let slot = *pairs.entry((code, p)).or_insert(fresh);
            if slot == fresh {
                level.push((code, p));
            }
            push_run(next, end, slot);
            true
        });
        level
    }

    fn n_codes(&self) -> usize {
        self.levels.last().map_or(1, Vec::len)
    }

    /// Calls `f(code, n)` for each piece of `run` that lies in one run of equal codes:
    /// `n` pixels of the run have code `code`.
    #[inline]
    fn pieces(&self, run: &Run, mut f: impl FnMut(u32, u32)) {
        let (mut at, end) = (run.start, run.start + run.length);
        let mut k = self.span_of[at as usize] as usize;
        while at < end {
            let (span_end, code) = self.spans[k];
            let stop = span_end.min(end);
            f(code, stop - at);
            at = stop;
            k += 1;
        }
    }

    /// Calls `f(label)` for every map's label of final code `code` (0s included).
    fn labels(&self, mut code: u32, mut f: impl FnMut(u16)) {
        for level in self.levels.iter().rev() {
            let (parent, label) = level[code as usize];
            f(label);
            code = parent;
        }
    }
}

/// Counts images into dense [`Counts`], with the scratch buffers it reuses from one image
/// to the next (one counter per thread; counters of disjoint images merge exactly).
#[derive(Debug)]
pub struct Counter<'a> {
    pub counts: Counts,
    primary: &'a [usize],
    denominator: Denominator,
    codes: PixelCodes,
    hist: Vec<u32>,
    present: Vec<bool>,
    overlapped: Vec<bool>,
    /// The image's image-level labels as counted (see [`Counter::add_image`]).
    items: Vec<u32>,
    /// The original's tally depth, when reproduced.
    tally_depth: Option<usize>,
    /// With a tally depth: a unit's intersections with pixel labels in one image
    /// (`unit_inter[label]`, the labels in `touched`), and the image's entries
    /// `(count, unit, label)`.
    unit_inter: Vec<u64>,
    touched: Vec<u32>,
    entries: Vec<(u64, u32, u32)>,
    dense_limit: usize,
}

impl<'a> Counter<'a> {
    /// `primary[label]` is the category each label is scored in; `layers` the layers'
    /// names and numbers of units.
    pub fn new(
        primary: &'a [usize],
        n_categories: usize,
        layers: &[(String, usize)],
        denominator: Denominator,
    ) -> Counter<'a> {
        Counter {
            counts: Counts::new(primary.len(), n_categories, layers),
            primary,
            denominator,
            codes: PixelCodes::default(),
            hist: Vec::new(),
            present: vec![false; n_categories],
            overlapped: vec![false; n_categories],
            items: Vec::new(),
            tally_depth: None,
            unit_inter: Vec::new(),
            touched: Vec::new(),
            entries: Vec::new(),
            dense_limit: DENSE_TABLE,
        }
    }

    /// Counts as the original does with a tally of `depth` entries an image (its
    /// `tally_depth`, 2,048 in its scripts): per layer and image, its entries other than
    /// intersections come first (`((1 + S₁)(1 + S₂) − 1) + (1 + S₁)·P + (1 + S₂)·U` of them,
    /// for `S₁` units whose mask fills the image, `S₂` image-level items, `P` distinct
    /// pixel labels and `U` other units with a mask), and of the intersections of those `U`
    /// units with pixel labels only the largest fit in the rest; the others are dropped
    /// (on equal counts at the cut the smaller unit, then the smaller label, is kept: a
    /// stable sort's order, where NumPy's default sort is not stable). Drops are counted in
    /// each layer's [`Dropped`].
    pub fn with_tally_depth(mut self, depth: Option<usize>) -> Counter<'a> {
        self.tally_depth = depth;
        self.unit_inter = vec![0; self.counts.n_labels];
        self
    }

    /// Adds one image: its labels and, per layer (in the order of the counts' layers), its
    /// units' non-empty masks, `(unit, runs)`. Masks must lie inside the label maps.
    pub fn add_image<'m, M>(&mut self, labels: &RowLabels, masks: &[M])
    where
        M: IntoIterator<Item = (u32, &'m [Run])> + Clone,
    {
        let n_labels = self.counts.n_labels;
        let n_categories = self.counts.n_categories;
        let area = labels.height as usize * labels.width as usize;
        let primary = self.primary;
        let codes = &mut self.codes;
        codes.build(&labels.maps, area, n_labels, self.dense_limit);
        let n_codes = codes.n_codes();
        // Truth, and the categories present anywhere (the original denominator), from the
        // histogram of the whole image's codes.
        self.hist.clear();
        self.hist.resize(n_codes, 0);
        let mut start = 0;
        for &(end, c) in &codes.spans {
            self.hist[c as usize] += end - start;
            start = end;
        }
        self.present.iter_mut().for_each(|p| *p = false);
        // With a tally depth: the distinct pixel labels (unit_inter serves as the marks).
        let mut pixel_labels = 0usize;
        for (c, &n) in self.hist.iter().enumerate() {
            if n > 0 {
                codes.labels(c as u32, |label| {
                    if label != 0 {
                        self.counts.truth[label as usize] += u64::from(n);
                        self.present[primary[label as usize]] = true;
                        if self.tally_depth.is_some() && self.unit_inter[label as usize] == 0 {
                            self.unit_inter[label as usize] = 1;
                            self.touched.push(u32::from(label));
                            pixel_labels += 1;
                        }
                    }
                });
            }
        }
        for &label in &self.touched {
            self.unit_inter[label as usize] = 0;
        }
        self.touched.clear();
        self.hist.iter_mut().for_each(|n| *n = 0);
        // The image-level labels counted: the original sums an image's tally with NumPy's
        // `+=` over indices, which keeps one of repeated entries, so a label given in two
        // image-level categories of one image (a `0` for scene and for texture) counts
        // once there; NetDissect-Lite counts each.
        let items = &mut self.items;
        items.clear();
        for item in &labels.image_labels {
            if self.denominator == Denominator::Lite || !items.contains(&item.label) {
                items.push(item.label);
            }
        }
        for &label in items.iter() {
            self.counts.truth[label as usize] += area as u64;
            if label != 0 {
                self.present[primary[label as usize]] = true;
            }
        }
        let has_maps = !labels.maps.is_empty();
        for (layer, layer_masks) in self.counts.layers.iter_mut().zip(masks) {
            // With a tally depth, the intersections of the units whose masks do not fill
            // the image with pixel labels are held back as entries until the layer's
            // units are all counted.
            let (mut full_units, mut pixel_units) = (0usize, 0usize);
            self.entries.clear();
            for (unit, runs) in layer_masks.clone() {
                let unit = unit as usize;
                let size: u64 = runs.iter().map(|r| u64::from(r.length)).sum();
                layer.pixels[unit] += size;
                let held = self.tally_depth.is_some() && size < area as u64;
                if self.tally_depth.is_some() {
                    if held {
                        pixel_units += 1;
                    } else {
                        full_units += 1;
                    }
                }
                let unit_inter = &mut self.unit_inter;
                let touched = &mut self.touched;
                let inter = &mut layer.inter[unit * n_labels..(unit + 1) * n_labels];
                self.overlapped.iter_mut().for_each(|o| *o = false);
                if has_maps {
                    // The codes under the mask, run of codes by run of codes, then each
                    // code's labels once.
                    let hist = &mut self.hist;
                    for run in runs {
                        codes.pieces(run, |c, n| hist[c as usize] += n);
                    }
                    let mut add = |c: u32, n: u32| {
                        codes.labels(c, |label| {
                            if label != 0 {
                                if held {
                                    if unit_inter[label as usize] == 0 {
                                        touched.push(u32::from(label));
                                    }
                                    unit_inter[label as usize] += u64::from(n);
                                } else {
                                    inter[label as usize] += u64::from(n);
                                }
                                self.overlapped[primary[label as usize]] = true;
                            }
                        })
                    };
                    if (n_codes as u64) <= size {
                        // Fewer codes than mask pixels: read the histogram whole.
                        for (c, n) in self.hist.iter_mut().enumerate() {
                            if *n > 0 {
                                add(c as u32, std::mem::take(n));
                            }
                        }
                    } else {
                        // Read (and clear) only the codes the mask has.
                        for run in runs {
                            codes.pieces(run, |c, _| {
                                let n = std::mem::take(&mut self.hist[c as usize]);
                                if n > 0 {
                                    add(c, n);
                                }
                            });
                        }
                    }
                }
                // Image-level labels cover the whole mask; label 0 included, as both
                // references do.
                for &label in self.items.iter() {
                    inter[label as usize] += size;
                    self.overlapped[primary[label as usize]] = true;
                }
                let counted = match self.denominator {
                    Denominator::Lite => &self.overlapped,
                    Denominator::Original => &self.present,
                };
                for (category, _) in counted.iter().enumerate().filter(|(_, on)| **on) {
                    layer.act[unit * n_categories + category] += size;
                }
                // The unit's held intersections, as entries (row-major order: unit, label).
                self.touched.sort_unstable();
                for &label in &self.touched {
                    let n = std::mem::take(&mut self.unit_inter[label as usize]);
                    self.entries.push((n, unit as u32, label));
                }
                self.touched.clear();
            }
            if let Some(depth) = self.tally_depth {
                let items = labels.image_labels.len();
                let others = (1 + full_units) * (1 + items) - 1
                    + (1 + full_units) * pixel_labels
                    + (1 + items) * pixel_units;
                if others >= depth {
                    layer.dropped.overflows += 1;
                }
                let room = depth.saturating_sub(others);
                if self.entries.len() > room {
                    // The largest counts, the earlier entry on ties.
                    self.entries
                        .sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
                    layer.dropped.images += 1;
                    for &(n, _, _) in &self.entries[room..] {
                        layer.dropped.entries += 1;
                        layer.dropped.pixels += n;
                    }
                    self.entries.truncate(room);
                }
                for &(n, unit, label) in &self.entries {
                    layer.inter[unit as usize * n_labels + label as usize] += n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nd_broden::ImageLabel;

    /// The counts of one image by the definitions of METHOD §3.4, label map by label map
    /// and pixel by pixel: the reference the coded counter must equal.
    fn reference(
        labels: &RowLabels,
        masks: &[Vec<(u32, Vec<Run>)>],
        primary: &[usize],
        counts: &mut Counts,
        denominator: Denominator,
        tally_depth: Option<usize>,
    ) {
        let area = u64::from(labels.height) * u64::from(labels.width);
        let (n_labels, n_categories) = (counts.n_labels, counts.n_categories);
        let mut present = vec![false; n_categories];
        for map in &labels.maps {
            for &p in map.pixels.iter().filter(|&&p| p != 0) {
                counts.truth[p as usize] += 1;
                present[primary[p as usize]] = true;
            }
        }
        // The original counts a label given twice among an image's image-level items once.
        let mut items: Vec<u32> = Vec::new();
        for item in &labels.image_labels {
            if denominator == Denominator::Lite || !items.contains(&item.label) {
                items.push(item.label);
            }
        }
        for &label in &items {
            counts.truth[label as usize] += area;
            if label != 0 {
                present[primary[label as usize]] = true;
            }
        }
        // The original's tally, entry by entry, where a depth is given: the distinct pixel
        // labels, and per layer the intersections of units not filling the image.
        let mut distinct: Vec<u16> = labels
            .maps
            .iter()
            .flat_map(|m| m.pixels.iter().copied())
            .filter(|&p| p != 0)
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        for (layer, layer_masks) in counts.layers.iter_mut().zip(masks) {
            let mut entries: Vec<(u64, u32, u32)> = Vec::new();
            let (mut full_units, mut pixel_units) = (0, 0);
            for (unit, runs) in layer_masks {
                let unit = *unit as usize;
                let pixels: Vec<usize> = runs
                    .iter()
                    .flat_map(|r| r.start as usize..(r.start + r.length) as usize)
                    .collect();
                let size = pixels.len() as u64;
                layer.pixels[unit] += size;
                let held = tally_depth.is_some() && size < area;
                if held {
                    pixel_units += 1;
                } else {
                    full_units += 1;
                }
                let mut overlapped = vec![false; n_categories];
                let mut unit_inter = vec![0u64; n_labels];
                for map in &labels.maps {
                    for &p in &pixels {
                        let label = map.pixels[p] as usize;
                        if label != 0 {
                            unit_inter[label] += 1;
                            overlapped[primary[label]] = true;
                        }
                    }
                }
                for (label, &n) in unit_inter.iter().enumerate().filter(|(_, n)| **n > 0) {
                    if held {
                        entries.push((n, unit as u32, label as u32));
                    } else {
                        layer.inter[unit * n_labels + label] += n;
                    }
                }
                for &label in &items {
                    layer.inter[unit * n_labels + label as usize] += size;
                    overlapped[primary[label as usize]] = true;
                }
                let counted = match denominator {
                    Denominator::Lite => &overlapped,
                    Denominator::Original => &present,
                };
                for (c, _) in counted.iter().enumerate().filter(|(_, on)| **on) {
                    layer.act[unit * n_categories + c] += size;
                }
            }
            if let Some(depth) = tally_depth {
                let s2 = labels.image_labels.len();
                let others = (1 + full_units) * (1 + s2) - 1
                    + (1 + full_units) * distinct.len()
                    + (1 + s2) * pixel_units;
                if others >= depth {
                    layer.dropped.overflows += 1;
                }
                let room = depth.saturating_sub(others);
                // Keep the `room` largest; equal counts in entry order (a stable sort).
                entries.sort_by_key(|e| std::cmp::Reverse(e.0));
                if entries.len() > room {
                    layer.dropped.images += 1;
                    for e in &entries[room..] {
                        layer.dropped.entries += 1;
                        layer.dropped.pixels += e.0;
                    }
                    entries.truncate(room);
                }
                for (n, unit, label) in entries {
                    layer.inter[unit as usize * n_labels + label as usize] += n;
                }
            }
        }
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// The vector scan ends label runs where a pixel-by-pixel scan does: runs shorter
    /// and longer than a block, ending inside one, at its edge, or at `end`.
    #[test]
    fn label_runs_end_at_the_first_other_label() {
        let mut rng = Rng(5);
        for _ in 0..2000 {
            let len = 1 + rng.below(70) as usize;
            let mut pixels = Vec::with_capacity(len);
            let mut current = 0u16;
            for _ in 0..len {
                if rng.below(12) == 0 {
                    current = rng.below(3) as u16 * 300;
                }
                pixels.push(current);
            }
            let at = rng.below(len as u64) as usize;
            let end = at + 1 + rng.below((len - at) as u64) as usize;
            let expected = (at + 1..end)
                .find(|&q| pixels[q] != pixels[at])
                .unwrap_or(end);
            assert_eq!(
                label_run_end(&pixels, at, end),
                expected,
                "{pixels:?} from {at} to {end}"
            );
        }
    }

    /// A `0` given for scene and for texture of one image, and a label given twice: the
    /// original counts each once (NumPy's `+=` over repeated indices), NetDissect-Lite twice.
    #[test]
    fn repeated_image_level_items_count_once_in_the_original() {
        let primary = vec![2, 0, 1];
        let layers = vec![("conv".to_owned(), 1)];
        let labels = RowLabels {
            height: 2,
            width: 3,
            maps: vec![],
            image_labels: [(1, 0), (2, 0), (1, 2), (2, 2)]
                .map(|(category, label)| ImageLabel { category, label })
                .to_vec(),
        };
        let runs = [Run {
            start: 1,
            length: 4,
        }];
        let counted = |denominator| {
            let mut counter = Counter::new(&primary, 3, &layers, denominator);
            counter.add_image(&labels, &[vec![(0, &runs[..])]]);
            let layer = &counter.counts.layers[0];
            (
                counter.counts.truth.clone(),
                layer.inter.clone(),
                layer.act.clone(),
            )
        };
        // Truth: 6 pixels an item; intersection: the mask's 4 pixels an item. Label 2 marks
        // its category (1) present, label 0 never does in the original.
        assert_eq!(
            counted(Denominator::Lite),
            (vec![12, 0, 12], vec![8, 0, 8], vec![0, 4, 4])
        );
        assert_eq!(
            counted(Denominator::Original),
            (vec![6, 0, 6], vec![4, 0, 4], vec![0, 4, 0])
        );
    }

    /// Random images (0 to 4 label maps, blobs of few labels or noise of many, image-level
    /// labels including 0, masks of runs that wrap rows) give the reference's counts, for
    /// both denominators and with the dense and the hashed way of combining maps (and a
    /// table too small for some maps, which falls back to hashing half way through one).
    #[test]
    fn coded_counts_equal_the_per_map_counts() {
        let mut rng = Rng(17);
        let n_labels = 300;
        let n_categories = 4;
        let primary: Vec<usize> = (0..n_labels).map(|l| l % n_categories).collect();
        let layers = vec![("a".to_owned(), 5), ("b".to_owned(), 3)];
        for (denominator, tally_depth) in [
            (Denominator::Lite, None),
            (Denominator::Original, None),
            (Denominator::Original, Some(40)),
            (Denominator::Original, Some(80)),
        ] {
            for dense_limit in [DENSE_TABLE, 50, 0] {
                let mut counter = Counter::new(&primary, n_categories, &layers, denominator)
                    .with_tally_depth(tally_depth);
                counter.dense_limit = dense_limit;
                let mut expected = Counts::new(n_labels, n_categories, &layers);
                for _ in 0..60 {
                    let (h, w) = (1 + rng.below(20) as u32, 1 + rng.below(20) as u32);
                    let area = (h * w) as usize;
                    let maps: Vec<LabelMap> = (0..rng.below(5))
                        .map(|m| {
                            let palette: Vec<u16> =
                                (0..1 + rng.below(if m == 3 { 200 } else { 6 }))
                                    .map(|_| rng.below(n_labels as u64) as u16)
                                    .collect();
                            let mut pixels = Vec::with_capacity(area);
                            let mut current = palette[0];
                            for _ in 0..area {
                                if rng.below(4) == 0 {
                                    current = palette[rng.below(palette.len() as u64) as usize];
                                }
                                pixels.push(if rng.below(5) == 0 { 0 } else { current });
                            }
                            LabelMap {
                                category: m as usize,
                                pixels,
                            }
                        })
                        .collect();
                    let image_labels: Vec<ImageLabel> = (0..rng.below(3))
                        .map(|_| ImageLabel {
                            category: 3,
                            label: rng.below(n_labels as u64) as u32 * rng.below(2) as u32,
                        })
                        .collect();
                    let labels = RowLabels {
                        height: h,
                        width: w,
                        maps,
                        image_labels,
                    };
                    let masks: Vec<Vec<(u32, Vec<Run>)>> = layers
                        .iter()
                        .map(|(_, units)| {
                            (0..*units as u32)
                                .filter_map(|unit| {
                                    if rng.below(2) == 0 {
                                        return None;
                                    }
                                    let mut runs = Vec::new();
                                    let mut at = rng.below(area as u64) as u32;
                                    while (at as usize) < area {
                                        let length =
                                            1 + rng.below((area as u64 - at as u64).min(30)) as u32;
                                        runs.push(Run { start: at, length });
                                        at += length + 1 + rng.below(40) as u32;
                                    }
                                    (!runs.is_empty()).then_some((unit, runs))
                                })
                                .collect()
                        })
                        .collect();
                    let views: Vec<Vec<(u32, &[Run])>> = masks
                        .iter()
                        .map(|m| m.iter().map(|(u, r)| (*u, r.as_slice())).collect())
                        .collect();
                    counter.add_image(&labels, &views);
                    reference(
                        &labels,
                        &masks,
                        &primary,
                        &mut expected,
                        denominator,
                        tally_depth,
                    );
                }
                assert_eq!(
                    counter.counts, expected,
                    "{denominator:?}, depth {tally_depth:?}, dense limit {dense_limit}"
                );
                assert!(expected.truth.iter().sum::<u64>() > 0);
                // Both depths drop intersections; the smaller also overflows (entries other
                // than intersections fill it).
                let dropped: u64 = expected.layers.iter().map(|l| l.dropped.entries).sum();
                let overflows: u64 = expected.layers.iter().map(|l| l.dropped.overflows).sum();
                match tally_depth {
                    None => assert_eq!((dropped, overflows), (0, 0)),
                    Some(40) => assert!(dropped > 0 && overflows > 0, "{dropped} {overflows}"),
                    Some(_) => assert!(dropped > 0 && overflows == 0, "{dropped} {overflows}"),
                }
            }
        }
    }
}
