//! `index.html` of an intervene artifact: the changes as a table and the grids, one page
//! that opens from the artifact's folder (or its copy) with nothing else.

use std::fmt::Write as _;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for the summary's changes; `grids` names each concept's and mode's grid file
/// (relative to the page) with the k it shows.
pub fn write(summary: &serde_json::Value, grids: &[(String, String, String, usize)]) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Interventions</title>\n\
         <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:72em}\
         table{border-collapse:collapse}td,th{padding:.2em .6em;text-align:right;border-bottom:1px solid #ddd}\
         td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}\
         .up{color:#060}.down{color:#a00}figure{margin:1.5em 0}img{image-rendering:pixelated;max-width:100%}</style>\n\
         </head><body>\n",
    );
    let _ = write!(
        out,
        "<h1>Interventions in {}</h1>\n<p>Over the first {} samples: the change of each concept's \
         share of the pixels (as the segmenter labels them) when its top units by IoU are \
         ablated (set to the ablation value everywhere; share over whole samples) or inserted \
         (set to their top-quantile value inside the region {}; share inside the region), \
         against as many random units of the layer (mean ± sd over the draws).</p>\n",
        escape(summary["layer"].as_str().unwrap_or("?")),
        summary["samples"],
        escape(&summary["region"].to_string()),
    );
    out.push_str(
        "<table><thead><tr><th>concept</th><th>mode</th><th>k</th><th>share before</th>\
         <th>top units</th><th>random units</th><th>outside the region (top units)</th>\
         </tr></thead><tbody>\n",
    );
    let class = |x: f64| {
        if x > 0.0 {
            "up"
        } else if x < 0.0 {
            "down"
        } else {
            ""
        }
    };
    for c in summary["changes"].as_array().into_iter().flatten() {
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        let outside = match c["top_outside"].as_f64() {
            Some(v) => format!("{v:+.4}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td class=\"{}\">{:+.4}</td>\
             <td>{:+.4} ± {:.4}</td><td>{outside}</td></tr>",
            escape(c["concept"].as_str().unwrap_or("?")),
            escape(c["mode"].as_str().unwrap_or("?")),
            c["k"],
            f("before"),
            class(f("top")),
            f("top"),
            f("random_mean"),
            f("random_sd"),
        );
    }
    out.push_str("</tbody></table>\n");
    for (concept, mode, file, k) in grids {
        let _ = writeln!(
            out,
            "<figure><img src=\"{}\" alt=\"{} {}\"><figcaption><b>{}</b>, {}: the first samples \
             as generated (top row), with its top {k} units {} (middle), with {k} random units {} \
             (bottom).</figcaption></figure>",
            escape(file),
            escape(concept),
            escape(mode),
            escape(concept),
            escape(mode),
            if mode == "ablate" {
                "ablated"
            } else {
                "inserted"
            },
            if mode == "ablate" {
                "ablated"
            } else {
                "inserted"
            },
        );
    }
    out.push_str("</body></html>\n");
    out
}
