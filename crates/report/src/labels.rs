//! Choosing each unit's labels from a score artifact, by the rules of the reference
//! implementation the dissection follows (METHOD §3.5 and §3.6).
//!
//! Both references compute, per category, `argmax` over every label number of the IoUs
//! masked to the category's labels (`pciou`), then take the category whose best IoU is
//! largest through `argsort()[::-1]`. So:
//!
//! - in a category, the label with the highest IoU wins, the smallest label number on ties;
//!   where the unit overlaps no label of the category every IoU is 0, and `argmax` returns
//!   label 0 (the empty name), whatever category it is;
//! - across categories, the largest IoU wins, the *later* category on ties: NumPy of the
//!   references' time sorted six values by insertion sort, which is stable, and the order
//!   is reversed (NumPy's SIMD `argsort`, since 1.25 on AVX-512 and 2.0 on AVX2, is not
//!   stable, so the same code there picks either); a unit that overlaps nothing gets the
//!   last category;
//! - NetDissect-Lite ranks by `inter / (act + truth − inter + 1e-10)` in float64, not by
//!   the exact IoU: among equal IoUs a larger denominator comes out higher where `1e-10`
//!   is above float64's rounding (denominators under about a million). [`Rank`] breaks ties
//!   of the IoU by that value in lite mode. The original adds `1e-20`, which never changes
//!   a float64 ratio of counts, so its ranking is the IoU's.
//!
//! The report's tables keep a clearer convention than "label 0" for a unit, or a unit's
//! category, that overlaps no concept: no label at all ([`UnitChoices`] holds `None`);
//! only `tally-<layer>.csv` writes label 0's name and counts there, as the references do.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::{Error, Result};

/// The published implementation whose rules choose the labels, from the score stage's
/// denominator (`lite` or `original`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reference {
    Lite,
    Original,
}

/// How well a label fits a unit, for choosing labels: the IoU, then, in lite mode,
/// NetDissect-Lite's own value of it (with its `1e-10`), which orders some equal IoUs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rank {
    pub iou: f64,
    lite: f64,
}

impl Rank {
    /// Nothing overlapped: below every label that overlaps the unit.
    pub const NONE: Rank = Rank {
        iou: 0.0,
        lite: 0.0,
    };

    pub fn new(reference: Reference, inter: u64, act: u64, truth: u64, iou: f64) -> Rank {
        let lite = match reference {
            // `iou = tally_both / (tally_units_cat + tally_labels - tally_both + 1e-10)`,
            // float64 arrays of counts, evaluated left to right.
            Reference::Lite => inter as f64 / (act as f64 + truth as f64 - inter as f64 + 1e-10),
            Reference::Original => 0.0,
        };
        Rank { iou, lite }
    }

    pub fn cmp(&self, other: &Rank) -> Ordering {
        self.iou
            .total_cmp(&other.iou)
            .then(self.lite.total_cmp(&other.lite))
    }
}

/// A unit's best label in one category, among the labels that overlap it.
#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub row: nd_tables::scores::Row,
    pub rank: Rank,
}

/// What the report knows of one unit.
#[derive(Debug, Clone)]
pub(crate) struct UnitChoices {
    /// Per category, in category order: the best label, `None` where the unit overlaps no
    /// label of the category (every IoU there is 0).
    pub categories: Vec<Option<Choice>>,
    /// The unit's activation count in each category.
    pub activation: Vec<u64>,
    /// Mask pixels carrying label 0 (an image-level item): label 0's intersection, which
    /// tally.csv writes for a category the unit does not overlap.
    pub label0_intersect: u64,
}

impl UnitChoices {
    /// The category of the unit's label: the best of its categories, the later one on
    /// ties; `None` when it overlaps no concept.
    pub fn top(&self) -> Option<usize> {
        let mut top: Option<(usize, Rank)> = None;
        for (c, choice) in self.categories.iter().enumerate() {
            if let Some(choice) = choice
                && top.is_none_or(|(_, t)| choice.rank.cmp(&t).is_ge())
            {
                top = Some((c, choice.rank));
            }
        }
        top.map(|(c, _)| c)
    }

    /// The rank of the unit's label, which orders tally.csv's rows.
    pub fn rank(&self) -> Rank {
        self.top()
            .and_then(|c| self.categories[c].as_ref())
            .map_or(Rank::NONE, |c| c.rank)
    }
}

/// Every unit of every layer of a score artifact, with its choices.
pub(crate) struct Choices {
    pub categories: Vec<String>,
    /// Whose rules the score artifact's denominator names.
    pub reference: Reference,
    /// Label 0's truth (pixels of image-level `0` items).
    pub label0_truth: u64,
    /// Per layer: its name and units.
    pub layers: Vec<(String, Vec<UnitChoices>)>,
}

/// Reads a score artifact's tables and chooses every unit's labels.
pub(crate) fn choose(scores: &nd_store::Artifact) -> Result<Choices> {
    let not_score = |what: &str| {
        Error::Input(format!(
            "{}: not a score artifact (no {what} in its manifest)",
            scores.dir.display()
        ))
    };
    let categories: Vec<String> =
        serde_json::from_value(scores.manifest.outputs["categories"].clone())
            .map_err(|_| not_score("categories"))?;
    if categories.is_empty() {
        return Err(not_score("categories"));
    }
    let reference = match scores.manifest.params["denominator"].as_str() {
        Some("lite") => Reference::Lite,
        Some("original") => Reference::Original,
        _ => return Err(not_score("denominator")),
    };
    let layer_units: Vec<(String, usize)> = scores.manifest.outputs["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| {
                    Some((
                        l["name"].as_str()?.to_owned(),
                        l["units"].as_u64()? as usize,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut layers: Vec<(String, Vec<UnitChoices>)> = layer_units
        .iter()
        .map(|(name, units)| {
            let unit = UnitChoices {
                categories: vec![None; categories.len()],
                activation: vec![0; categories.len()],
                label0_intersect: 0,
            };
            (name.clone(), vec![unit; *units])
        })
        .collect();
    let layer_index: BTreeMap<&str, usize> = layer_units
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    let locate = |layer: &str, unit: u32, category: &str| -> Result<(usize, usize, usize)> {
        let (Some(&l), Some(c)) = (
            layer_index.get(layer),
            categories.iter().position(|c| c == category),
        ) else {
            return Err(Error::Input(format!(
                "{}: row for layer `{layer}` category `{category}` not in the manifest",
                scores.dir.display(),
            )));
        };
        let units = layer_units[l].1;
        if unit as usize >= units {
            return Err(Error::Input(format!(
                "{}: a row for unit {unit} of layer `{layer}`, which has {units} units",
                scores.dir.display(),
            )));
        }
        Ok((l, unit as usize, c))
    };

    let truth = nd_tables::scores::read_truth(&scores.dir.join(nd_tables::scores::TRUTH_FILE))?;
    let label0_truth = truth.first().copied().unwrap_or(0);
    let path = scores.dir.join(nd_tables::scores::ACTIVATION_FILE);
    for row in nd_tables::scores::read_activation(&path)? {
        let (l, u, c) = locate(&row.layer, row.unit, &row.category)?;
        layers[l].1[u].activation[c] = row.activation;
    }

    // The table streams past (it has a row per unit and overlapping label: millions for a
    // deep layer on Broden); only each unit's best rows are kept. Rows without an
    // intersection (the score stage's best of a category the unit does not overlap) are
    // not candidates: such a category gets no label.
    let path = scores.dir.join(nd_tables::scores::FILE);
    nd_tables::scores::for_each_row(&path, |row| -> Result<()> {
        let (l, u, c) = locate(row.layer, row.unit, row.category)?;
        let unit = &mut layers[l].1[u];
        if row.label == 0 {
            unit.label0_intersect = row.intersect;
        }
        if row.intersect == 0 {
            return Ok(());
        }
        let rank = Rank::new(reference, row.intersect, row.activation, row.truth, row.iou);
        let slot = &mut unit.categories[c];
        // The highest rank, the smallest label number on ties (argmax's first maximum).
        let better = slot
            .as_ref()
            .is_none_or(|current| match rank.cmp(&current.rank) {
                Ordering::Greater => true,
                Ordering::Equal => row.label < current.row.label,
                Ordering::Less => false,
            });
        if better {
            *slot = Some(Choice {
                row: row.to_owned(),
                rank,
            });
        }
        Ok(())
    })?;
    Ok(Choices {
        categories,
        reference,
        label0_truth,
        layers,
    })
}

/// The order of tally.csv's rows: by descending rank of the unit's label, and among equal
/// ranks by descending unit.
///
/// The references sort with NumPy's default `argsort()[::-1]`, whose order of equal values
/// depends on the NumPy version and on the processor (since NumPy dispatches to SIMD
/// sorting networks, an AVX2 or AVX-512 machine orders them otherwise than one without), so
/// no rule reproduces it everywhere; a stable sort reversed, which this is, is the one
/// that the same code gives with `kind="stable"`.
pub(crate) fn tally_order(units: &[UnitChoices]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..units.len()).collect();
    let ranks: Vec<Rank> = units.iter().map(UnitChoices::rank).collect();
    order.sort_by(|&a, &b| ranks[b].cmp(&ranks[a]).then(b.cmp(&a)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(category: &str, label: u32, inter: u64, act: u64, truth: u64) -> Choice {
        let iou = inter as f64 / (act + truth - inter) as f64;
        Choice {
            row: nd_tables::scores::Row {
                layer: "conv".into(),
                unit: 0,
                label,
                name: format!("l{label}"),
                category: category.into(),
                truth,
                activation: act,
                intersect: inter,
                iou,
            },
            rank: Rank::new(Reference::Lite, inter, act, truth, iou),
        }
    }

    fn unit(categories: Vec<Option<Choice>>) -> UnitChoices {
        let n = categories.len();
        UnitChoices {
            categories,
            activation: vec![0; n],
            label0_intersect: 0,
        }
    }

    #[test]
    fn ties_between_categories_go_to_the_later_one() {
        // A part and a material on the same pixels: the same counts, the same IoU.
        let u = unit(vec![
            None,
            Some(choice("part", 5, 10, 40, 20)),
            Some(choice("material", 9, 10, 40, 20)),
            Some(choice("scene", 12, 1, 40, 20)),
        ]);
        assert_eq!(u.top(), Some(2));
    }

    #[test]
    fn a_unit_that_overlaps_nothing_has_no_label_and_ranks_last() {
        let dead = unit(vec![None, None]);
        assert_eq!(dead.top(), None);
        let live = unit(vec![None, Some(choice("texture", 3, 1, 1000, 1000))]);
        // Dead units after the others, and among themselves by descending unit.
        let order = tally_order(&[dead.clone(), live, dead]);
        assert_eq!(order, [1, 2, 0]);
    }

    #[test]
    fn lite_ranks_equal_ious_by_its_own_float_value() {
        // 1/2 and 2/4 are equal IoUs; Lite's 1e-10 makes the larger denominator higher.
        let small = choice("object", 1, 1, 1, 2);
        let large = choice("object", 2, 2, 2, 4);
        assert_eq!(small.row.iou, large.row.iou);
        assert!(large.rank.cmp(&small.rank).is_gt());
        // With large counts 1e-10 vanishes in the rounding: an exact tie again.
        let a = choice("object", 1, 1 << 30, 1 << 30, 1 << 31);
        let b = choice("object", 2, 1 << 31, 1 << 31, 1 << 32);
        assert_eq!(a.rank.cmp(&b.rank), Ordering::Equal);
        // The original's ranking is the IoU's.
        let o = |inter, act, truth| {
            let iou = inter as f64 / (act + truth - inter) as f64;
            Rank::new(Reference::Original, inter, act, truth, iou)
        };
        assert_eq!(o(1, 1, 2).cmp(&o(2, 2, 4)), Ordering::Equal);
    }
}
