//! The formulas stage's labels on the pages: a unit's best formula of concepts on its card
//! (when it says more than the unit's single label), and on its page every length's best
//! formula with its IoU and counts.

use std::collections::HashMap;
use std::fmt::Write;

use nd_tables::formulas::{FILE, Row};

use crate::page::{escape, iou};
use crate::{Error, Result};

/// What the pages are made with, in their key.
pub(crate) const SOURCES: [&str; 1] = [include_str!("formulas.rs")];

/// Every unit's rows of `formulas.parquet`, by layer and unit, lengths ascending.
#[derive(Debug, Default)]
pub(crate) struct Formulas {
    by_unit: HashMap<(String, u32), Vec<Row>>,
}

impl Formulas {
    pub(crate) fn read(artifact: &nd_store::Artifact) -> Result<Formulas> {
        artifact.expect_stage("formulas")?;
        let rows = nd_tables::formulas::read_rows(&artifact.dir.join(FILE))
            .map_err(|e| Error::Input(format!("{}: {e}", artifact.dir.display())))?;
        let mut by_unit: HashMap<(String, u32), Vec<Row>> = HashMap::new();
        for row in rows {
            by_unit
                .entry((row.layer.clone(), row.unit))
                .or_default()
                .push(row);
        }
        for rows in by_unit.values_mut() {
            rows.sort_by_key(|r| r.length);
        }
        Ok(Formulas { by_unit })
    }

    pub(crate) fn of(&self, layer: &str, unit: u32) -> &[Row] {
        self.by_unit
            .get(&(layer.to_owned(), unit))
            .map_or(&[], Vec::as_slice)
    }
}

/// The unit's best formula, when it is longer than one concept.
fn best_compound(rows: &[Row]) -> Option<&Row> {
    rows.iter()
        .find(|r| r.best)
        .filter(|r| r.length > 1 && r.formula.is_some())
}

/// The unit's best formula when it is longer than one concept (what the pages draw).
pub(crate) fn best_formula(rows: &[Row]) -> Option<&nd_tables::formulas::Formula> {
    best_compound(rows).and_then(|r| r.formula.as_ref())
}

/// Where a formula holds in one image: a concept holds at a pixel where a label map gives
/// its number, or everywhere when the image carries it as an image-level label; the
/// formula is evaluated left to right (`(c1 op c2) op c3`).
pub(crate) fn mask(
    formula: &nd_tables::formulas::Formula,
    labels: &nd_broden::RowLabels,
) -> Vec<bool> {
    let n = labels.height as usize * labels.width as usize;
    let concept = |c: u32| -> Vec<bool> {
        if labels.image_labels.iter().any(|l| l.label == c) {
            return vec![true; n];
        }
        let mut m = vec![false; n];
        for map in &labels.maps {
            for (x, &p) in m.iter_mut().zip(&map.pixels) {
                *x |= u32::from(p) == c;
            }
        }
        m
    };
    let Some(&first) = formula.labels.first() else {
        return vec![false; n];
    };
    let mut out = concept(first);
    for (op, &c) in formula.ops.iter().zip(&formula.labels[1..]) {
        let other = concept(c);
        for (x, y) in out.iter_mut().zip(other) {
            *x = match op.as_str() {
                "and" => *x && y,
                "or" => *x || y,
                _ => *x && !y,
            };
        }
    }
    out
}

/// The words a card's filter finds the unit by.
pub(crate) fn search_text(rows: &[Row]) -> String {
    best_compound(rows)
        .and_then(|r| r.formula.as_ref())
        .map(|f| format!(" {}", f.names.join(" ")))
        .unwrap_or_default()
}

/// A line for the unit's card: its best formula and IoU, or nothing.
pub(crate) fn card(rows: &[Row]) -> String {
    match best_compound(rows) {
        Some(row) => format!(
            "<p class=\"formula\" title=\"the unit's best formula of concepts (IoU)\">{} <span class=\"iou\">{}</span></p>\n",
            escape(row.formula.as_ref().map_or("", |f| f.text.as_str())),
            iou(row.iou)
        ),
        None => String::new(),
    }
}

/// The unit page's section: the best formula of each length.
pub(crate) fn section(rows: &[Row]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Formulas</h2>\n<p>The best logical formula of concepts of each length (beam search over AND, OR and AND NOT), scored like the labels: intersection over union with the unit's masks over the whole dataset.</p>\n<table class=\"stats\"><thead><tr><th>length</th><th>formula</th><th>IoU</th><th>intersection</th><th>formula's pixels</th></tr></thead><tbody>",
    );
    for row in rows {
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if row.best { " class=\"over\"" } else { "" },
            row.length,
            row.formula
                .as_ref()
                .map_or("<em>none overlaps the unit</em>".to_owned(), |f| escape(
                    &f.text
                )),
            iou(row.iou),
            row.intersect,
            row.truth
        );
    }
    out.push_str("</tbody></table>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nd_tables::formulas::Formula;

    fn row(length: u32, text: Option<&str>, iou: f64, best: bool) -> Row {
        Row {
            layer: "conv5".into(),
            unit: 3,
            length,
            formula: text.map(|t| Formula {
                labels: vec![1; length as usize],
                names: t.split(' ').map(str::to_owned).collect(),
                ops: vec!["or".into(); length as usize - 1],
                text: t.into(),
            }),
            iou,
            intersect: 10,
            activation: 20,
            truth: 30,
            best,
        }
    }

    #[test]
    fn cards_show_a_formula_only_when_it_is_the_best_and_compound() {
        let rows = vec![
            row(1, Some("water"), 0.1, false),
            row(2, Some("water OR <river>"), 0.2, true),
        ];
        let card = card(&rows);
        assert!(
            card.contains("water OR &lt;river&gt;") && card.contains("0.2000"),
            "{card}"
        );
        assert!(!card.contains("<river>"));
        let single = vec![
            row(1, Some("water"), 0.3, true),
            row(2, Some("a OR b"), 0.2, false),
        ];
        assert_eq!(super::card(&single), "");
        assert_eq!(super::card(&[]), "");
        let page = section(&[row(1, None, 0.0, false), row(2, Some("a OR b"), 0.2, true)]);
        assert!(
            page.contains("none overlaps the unit")
                && page.contains("<tr class=\"over\"><td>2</td>")
        );
        assert_eq!(section(&[]), "");
    }

    #[test]
    fn masks_follow_the_formula_left_to_right() {
        let labels = nd_broden::RowLabels {
            height: 1,
            width: 4,
            maps: vec![
                nd_broden::LabelMap {
                    category: 0,
                    pixels: vec![1, 1, 2, 0],
                },
                nd_broden::LabelMap {
                    category: 1,
                    pixels: vec![3, 0, 3, 3],
                },
            ],
            image_labels: vec![nd_broden::ImageLabel {
                category: 2,
                label: 9,
            }],
        };
        let f = |labels: Vec<u32>, ops: Vec<&str>| Formula {
            labels,
            names: vec![],
            ops: ops.into_iter().map(str::to_owned).collect(),
            text: String::new(),
        };
        // (1 OR 2) AND NOT 3
        assert_eq!(
            mask(&f(vec![1, 2, 3], vec!["or", "and_not"]), &labels),
            [false, true, false, false]
        );
        // 3 AND 9 (image-level)
        assert_eq!(
            mask(&f(vec![3, 9], vec!["and"]), &labels),
            [true, false, true, true]
        );
        assert_eq!(mask(&f(vec![4], vec![]), &labels), [false; 4]);
    }
}
