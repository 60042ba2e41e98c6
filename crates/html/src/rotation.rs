//! The run page's rotation control (the paper's §3.2): for each model whose activations
//! were also dissected in fractions α of a random rotation of every layer's unit basis,
//! unique detectors against α, as a table and as one curve per layer (and their total).

use std::fmt::Write as _;

use serde_json::Value;

use crate::page::{IndexedModel, count, escape};
use crate::svg;

/// A model's dissections by α: the model itself (α = 0) when present, then its rotations
/// by increasing α, all of one seed.
struct Curve<'a> {
    model: &'a str,
    seed: u64,
    points: Vec<(f64, &'a IndexedModel)>,
}

/// The rotation series among the index's entries, in the order their models appear.
fn curves(indexed: &[IndexedModel]) -> Vec<Curve<'_>> {
    let mut curves: Vec<Curve> = Vec::new();
    for entry in indexed.iter().filter(|m| !m.earlier) {
        let Some(rotation) = &entry.rotation else {
            continue;
        };
        let at = curves
            .iter()
            .position(|c| c.model == rotation.of && c.seed == rotation.seed);
        let curve = match at {
            Some(i) => &mut curves[i],
            None => {
                let mut points = Vec::new();
                if let Some(own) = indexed
                    .iter()
                    .find(|m| !m.earlier && m.rotation.is_none() && m.name == rotation.of)
                {
                    points.push((0.0, own));
                }
                curves.push(Curve {
                    model: &rotation.of,
                    seed: rotation.seed,
                    points,
                });
                curves.last_mut().expect("just pushed")
            }
        };
        if !curve.points.iter().any(|(a, _)| *a == rotation.power) {
            curve.points.push((rotation.power, entry));
        }
    }
    for curve in &mut curves {
        curve.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    curves
}

/// A layer's summary in a report summary, when the report has the layer.
fn layer<'a>(summary: &'a Value, name: &str) -> Option<&'a Value> {
    summary["layers"]
        .as_array()?
        .iter()
        .find(|l| l["layer"].as_str() == Some(name))
}

/// The section: empty when no entry is a rotation.
pub(crate) fn section(indexed: &[IndexedModel], layers: &[String]) -> String {
    let curves = curves(indexed);
    if curves.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>Rotation control: unique detectors against α</h2>\n");
    out.push_str(
        "<p class=\"note\">Each layer's activations turned by Q<sup>α</sup>, a fraction α of a \
         random rotation Q of its unit basis (α = 0: the model's own units; α = 1: the whole \
         rotation). A rotation changes nothing the layer can represent, only which directions \
         are units: where unique detectors fall as α grows, the layer's interpretability is \
         aligned with its units.</p>\n",
    );
    for curve in &curves {
        let _ = write!(
            out,
            "<h3>{} <small>(seed {})</small></h3>\n<div class=\"scroll\"><table class=\"stats\"><thead><tr><th>α</th>",
            escape(curve.model),
            curve.seed
        );
        let shown: Vec<&String> = layers
            .iter()
            .filter(|l| {
                curve
                    .points
                    .iter()
                    .any(|(_, m)| layer(&m.summary, l).is_some())
            })
            .collect();
        for l in &shown {
            let _ = write!(out, "<th>{}</th>", escape(l));
        }
        out.push_str("<th>total</th></tr></thead><tbody>");
        let mut series: Vec<(String, Vec<Option<usize>>)> = shown
            .iter()
            .map(|l| ((*l).clone(), Vec::new()))
            .chain([("total".to_owned(), Vec::new())])
            .collect();
        for (power, entry) in &curve.points {
            let name = match &entry.link {
                Some(href) => format!(r#"<a href="{}">{power}</a>"#, escape(href)),
                None => format!("{power}"),
            };
            let _ = write!(out, "<tr><th title=\"{}\">{name}</th>", escape(&entry.name));
            let (mut top, mut per_category) = (0, 0);
            for (i, l) in shown.iter().enumerate() {
                match layer(&entry.summary, l) {
                    Some(s) => {
                        let (t, p) = (
                            count(&s["unique_top_label"]),
                            count(&s["unique_per_category"]),
                        );
                        top += t;
                        per_category += p;
                        let _ = write!(out, "<td>{t} ({p})</td>");
                        series[i].1.push(Some(t));
                    }
                    None => {
                        out.push_str("<td>–</td>");
                        series[i].1.push(None);
                    }
                }
            }
            let _ = write!(out, "<td>{top} ({per_category})</td></tr>");
            series.last_mut().expect("total").1.push(Some(top));
        }
        out.push_str("</tbody></table></div>\n");
        let xs: Vec<String> = curve.points.iter().map(|(a, _)| format!("α={a}")).collect();
        out.push_str(&svg::lines(
            &format!(
                "{}: unique detectors (top-label rule) against α",
                curve.model
            ),
            &xs,
            &series,
        ));
    }
    out.push_str(
        "<p class=\"note\">Unique detectors by the top-label rule; in brackets, by the \
         per-category rule. Each row links to that dissection's pages.</p>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::RunRotation;

    fn entry(name: &str, conv1: usize, conv2: usize, rotation: Option<(f64, u64)>) -> IndexedModel {
        IndexedModel {
            name: name.to_owned(),
            summary: json!({ "layers": [
                { "layer": "conv1", "unique_top_label": conv1, "unique_per_category": conv1 + 1 },
                { "layer": "conv2", "unique_top_label": conv2, "unique_per_category": conv2 },
            ]}),
            link: None,
            earlier: false,
            rotation: rotation.map(|(power, seed)| RunRotation {
                of: "m".to_owned(),
                seed,
                power,
            }),
        }
    }

    #[test]
    fn no_rotation_no_section() {
        let indexed = [entry("m", 3, 4, None)];
        assert_eq!(section(&indexed, &["conv1".into(), "conv2".into()]), "");
    }

    #[test]
    fn rows_by_increasing_alpha_with_totals() {
        // Given out of order: the rows follow α, the model itself first.
        let indexed = [
            entry("m", 7, 9, None),
            entry("m-rot1", 1, 2, Some((1.0, 5))),
            entry("m-rot0.5", 4, 5, Some((0.5, 5))),
        ];
        let curves = curves(&indexed);
        assert_eq!(curves.len(), 1);
        let powers: Vec<f64> = curves[0].points.iter().map(|(a, _)| *a).collect();
        assert_eq!(powers, [0.0, 0.5, 1.0]);
        let html = section(&indexed, &["conv1".into(), "conv2".into()]);
        assert!(html.contains("m <small>(seed 5)</small>"));
        // α = 0: 7 + 9 = 16 (per category 8 + 9 = 17); α = 1: 1 + 2 = 3 (2 + 2 = 4).
        assert!(html.contains("<td>16 (17)</td>"), "{html}");
        assert!(html.contains("<td>3 (4)</td>"), "{html}");
        let zero = html.find("title=\"m\"").unwrap();
        let half = html.find("title=\"m-rot0.5\"").unwrap();
        let one = html.find("title=\"m-rot1\"").unwrap();
        assert!(zero < half && half < one);
        assert!(html.contains("<svg"));
    }

    #[test]
    fn seeds_make_separate_curves() {
        let indexed = [
            entry("m", 7, 9, None),
            entry("a", 1, 2, Some((1.0, 1))),
            entry("b", 4, 5, Some((1.0, 2))),
        ];
        let curves = curves(&indexed);
        assert_eq!(curves.len(), 2);
        assert!(curves.iter().all(|c| c.points.len() == 2));
    }
}
