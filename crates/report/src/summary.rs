//! Labelling units and counting a layer's detectors (METHOD §3.5).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// A unit's best label in one category.
#[derive(Debug, Clone, PartialEq)]
pub struct Best {
    pub category: String,
    pub label: String,
    pub iou: f64,
}

/// What the summary needs of a unit: its label, and its best label in each category.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitLabels {
    /// 1-based, as in tally.csv.
    pub unit: u32,
    /// The unit's label (the best of its categories' best labels, by the rules of the
    /// reference followed); `None` when the unit overlaps no concept, so it is never a
    /// detector.
    pub top: Option<Best>,
    /// In category order.
    pub categories: Vec<Best>,
}

/// Per-category figures of a layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategorySummary {
    /// Detector units whose label (top label) is in this category.
    pub detectors: usize,
    /// Distinct top labels among those units (top-label rule).
    pub unique_top_label: usize,
    /// Units whose best IoU in this category exceeds the threshold.
    pub category_detectors: usize,
    /// Distinct best labels among those units (per-category rule).
    pub unique_per_category: usize,
}

/// What formulas of concepts add in a layer (with the formulas stage's artifact).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormulaSummary {
    /// The IoU a formula must gain over the best single concept to count.
    pub gain: f64,
    /// Units whose best formula's IoU beats their best single concept's by at least the
    /// gain.
    pub better: usize,
    /// Mean over the layer's units of the best single concept's IoU (among the concepts
    /// the formulas may use), and of the best formula's.
    pub mean_concept_iou: f64,
    pub mean_formula_iou: f64,
}

/// The interpretability figures of one layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSummary {
    pub layer: String,
    pub units: usize,
    /// Units whose best IoU is at least the threshold.
    pub detectors: usize,
    /// Distinct labels among the detectors' top labels ("N/U units covering M concepts").
    pub unique_top_label: usize,
    /// For each category, distinct labels among units whose best IoU in that category
    /// exceeds the threshold, summed over categories (the paper's released statistics).
    pub unique_per_category: usize,
    pub categories: BTreeMap<String, CategorySummary>,
    /// With formulas: what they add (absent from summary.json without).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub formulas: Option<FormulaSummary>,
}

/// Summarises a layer's units at an IoU threshold.
///
/// A unit is a detector when it has a label and its IoU is ≥ the threshold; the
/// per-category rule counts best IoUs that exceed it (the two published wordings). Labels
/// are compared by name.
pub fn summarize(
    layer: &str,
    units: &[UnitLabels],
    categories: &[String],
    threshold: f64,
) -> LayerSummary {
    /// Detectors and their top labels; category detectors and their labels.
    type Tally<'a> = (usize, BTreeSet<&'a str>, usize, BTreeSet<&'a str>);
    let mut per: BTreeMap<String, Tally> = categories
        .iter()
        .map(|c| (c.clone(), Default::default()))
        .collect();
    let mut detectors = 0;
    let mut top_labels = BTreeSet::new();
    for unit in units {
        if let Some(top) = &unit.top
            && top.iou >= threshold
        {
            detectors += 1;
            top_labels.insert((top.category.as_str(), top.label.as_str()));
            if let Some(entry) = per.get_mut(&top.category) {
                entry.0 += 1;
                entry.1.insert(top.label.as_str());
            }
        }
        for best in &unit.categories {
            if best.iou > threshold
                && let Some(entry) = per.get_mut(&best.category)
            {
                entry.2 += 1;
                entry.3.insert(best.label.as_str());
            }
        }
    }
    let categories: BTreeMap<String, CategorySummary> = per
        .into_iter()
        .map(|(name, (detectors, top, category_detectors, labels))| {
            (
                name,
                CategorySummary {
                    detectors,
                    unique_top_label: top.len(),
                    category_detectors,
                    unique_per_category: labels.len(),
                },
            )
        })
        .collect();
    LayerSummary {
        layer: layer.to_owned(),
        units: units.len(),
        detectors,
        unique_top_label: top_labels.len(),
        unique_per_category: categories.values().map(|c| c.unique_per_category).sum(),
        categories,
        formulas: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit labelled with its first best of highest IoU (no ties in these tests).
    fn unit(n: u32, bests: &[(&str, &str, f64)]) -> UnitLabels {
        let categories: Vec<Best> = bests
            .iter()
            .map(|&(c, l, iou)| Best {
                category: c.into(),
                label: l.into(),
                iou,
            })
            .collect();
        let top = categories
            .iter()
            .filter(|b| b.iou > 0.0)
            .fold(None::<&Best>, |t, b| match t {
                Some(t) if t.iou >= b.iou => Some(t),
                _ => Some(b),
            })
            .cloned();
        UnitLabels {
            unit: n,
            top,
            categories,
        }
    }

    #[test]
    fn both_rules_by_hand() {
        let units = [
            unit(1, &[("object", "car", 0.10), ("texture", "striped", 0.05)]),
            unit(2, &[("object", "car", 0.07), ("texture", "dotted", 0.02)]),
            unit(3, &[("object", "tree", 0.01), ("texture", "dotted", 0.045)]),
            unit(4, &[("object", "tree", 0.03), ("texture", "striped", 0.04)]),
        ];
        let cats = ["object".to_owned(), "texture".to_owned()];
        let s = summarize("conv5", &units, &cats, 0.04);
        // Detectors (≥ 0.04): 1 (car), 2 (car), 3 (dotted), 4 (striped at exactly 0.04).
        assert_eq!(s.detectors, 4);
        // Top labels: car, dotted, striped.
        assert_eq!(s.unique_top_label, 3);
        // Per category (> 0.04): object {car}; texture {striped (unit 1), dotted (unit 3)}.
        assert_eq!(s.unique_per_category, 3);
        assert_eq!(s.categories["object"].unique_per_category, 1);
        assert_eq!(s.categories["texture"].category_detectors, 2);
        assert_eq!(s.categories["texture"].detectors, 2);
        let s = summarize("conv5", &units, &cats, 0.08);
        assert_eq!(
            (s.detectors, s.unique_top_label, s.unique_per_category),
            (1, 1, 1)
        );
    }

    #[test]
    fn units_without_a_label_are_never_detectors() {
        let units = [
            unit(1, &[("object", "", 0.0), ("texture", "", 0.0)]),
            unit(2, &[("object", "car", 0.05), ("texture", "", 0.0)]),
        ];
        let cats = ["object".to_owned(), "texture".to_owned()];
        // Even at a threshold of 0, a unit that overlaps nothing detects nothing.
        let s = summarize("conv5", &units, &cats, 0.0);
        assert_eq!((s.detectors, s.unique_top_label), (1, 1));
        assert_eq!(s.unique_per_category, 1);
    }
}
