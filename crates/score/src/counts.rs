//! The integer counts of Network Dissection and how one image adds to them.

use nd_arrays::masks::ImageMasks;
use nd_broden::RowLabels;
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
        }
    }
}

fn add(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// One image's contribution, kept sparse: it is merged into [`Counts`] in image order.
#[derive(Debug, Default)]
pub struct ImageCounts {
    pub truth: Vec<(u32, u64)>,
    pub layers: Vec<ImageLayerCounts>,
}

/// One image's contribution to one layer.
#[derive(Debug, Default)]
pub struct ImageLayerCounts {
    /// `(unit, label, pixels)`.
    pub inter: Vec<(u32, u32, u64)>,
    /// `(unit, category, pixels)`.
    pub act: Vec<(u32, u32, u64)>,
    /// `(unit, pixels)`: the size of each non-empty mask.
    pub pixels: Vec<(u32, u64)>,
}

impl ImageCounts {
    pub fn add_to(&self, counts: &mut Counts) {
        for &(label, n) in &self.truth {
            counts.truth[label as usize] += n;
        }
        let (n_labels, n_categories) = (counts.n_labels, counts.n_categories);
        for (layer, image) in counts.layers.iter_mut().zip(&self.layers) {
            for &(unit, label, n) in &image.inter {
                layer.inter[unit as usize * n_labels + label as usize] += n;
            }
            for &(unit, category, n) in &image.act {
                layer.act[unit as usize * n_categories + category as usize] += n;
            }
            for &(unit, n) in &image.pixels {
                layer.pixels[unit as usize] += n;
            }
        }
    }
}

/// Counts one image: its labels and, per layer, its units' masks.
///
/// `primary[label]` is the category each label is scored in.
pub fn count_image(
    labels: &RowLabels,
    masks: &[ImageMasks],
    primary: &[usize],
    n_categories: usize,
    denominator: Denominator,
) -> ImageCounts {
    let area = u64::from(labels.height) * u64::from(labels.width);
    let mut truth = std::collections::BTreeMap::<u32, u64>::new();
    // Categories present anywhere in the image, for the original denominator.
    let mut present = vec![false; n_categories];
    for map in &labels.maps {
        for &p in map.pixels.iter().filter(|&&p| p != 0) {
            *truth.entry(u32::from(p)).or_default() += 1;
            present[primary[p as usize]] = true;
        }
    }
    for item in &labels.image_labels {
        *truth.entry(item.label).or_default() += area;
        if item.label != 0 {
            present[primary[item.label as usize]] = true;
        }
    }
    let mut out = ImageCounts {
        truth: truth.into_iter().collect(),
        layers: Vec::with_capacity(masks.len()),
    };
    let mut hits: Vec<u64> = Vec::new();
    for layer_masks in masks {
        let (mut inter, mut act, mut pixels) = (Vec::new(), Vec::new(), Vec::new());
        for (unit, runs) in layer_masks {
            let size: u64 = runs.iter().map(|r| u64::from(r.length)).sum();
            pixels.push((*unit, size));
            // Pixel labels under the mask, layer by layer.
            hits.clear();
            for map in &labels.maps {
                for run in runs {
                    let (a, b) = (run.start as usize, (run.start + run.length) as usize);
                    for &p in &map.pixels[a..b] {
                        if p != 0 {
                            if hits.len() <= p as usize {
                                hits.resize(p as usize + 1, 0);
                            }
                            hits[p as usize] += 1;
                        }
                    }
                }
            }
            let mut overlapped = vec![false; n_categories];
            for (label, &n) in hits.iter().enumerate().filter(|(_, n)| **n > 0) {
                inter.push((*unit, label as u32, n));
                overlapped[primary[label]] = true;
            }
            // Image-level labels cover the whole mask; label 0 included, as both references do.
            for item in &labels.image_labels {
                inter.push((*unit, item.label, size));
                overlapped[primary[item.label as usize]] = true;
            }
            let counted = match denominator {
                Denominator::Lite => &overlapped,
                Denominator::Original => &present,
            };
            for (category, _) in counted.iter().enumerate().filter(|(_, on)| **on) {
                act.push((*unit, category as u32, size));
            }
        }
        out.layers.push(ImageLayerCounts { inter, act, pixels });
    }
    out
}
