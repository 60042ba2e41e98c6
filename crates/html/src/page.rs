//! The HTML pages. Every text that comes from the dataset, the model or the user goes
//! through [`escape`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::draw::{self, Drawn, UnitDrawn};
use crate::{Context, Error, Layer, Report, Result, svg};

const CSS: &str = include_str!("../assets/report.css");
const JS: &str = include_str!("../assets/report.js");

/// Text made safe for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// What the pages are made with, in their key: changed code never serves old pages.
pub(crate) const SOURCES: [&str; 5] = [
    include_str!("lib.rs"),
    include_str!("page.rs"),
    include_str!("svg.rs"),
    CSS,
    JS,
];

pub(crate) fn write_assets(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    write_file(&dir.join("report.css"), CSS)?;
    write_file(&dir.join("report.js"), JS)
}

/// The page's start: `root` is the relative path to the report's root ("" or "../").
pub(crate) fn head(title: &str, root: &str, crumbs: &[(String, String)]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t}</title>
<link rel="stylesheet" href="{root}report.css">
</head>
<body>
<header class="top"><nav>"#,
        t = escape(title),
    );
    for (i, (href, text)) in crumbs.iter().enumerate() {
        if i > 0 {
            out.push_str(" › ");
        }
        let _ = write!(out, r#"<a href="{}">{}</a>"#, escape(href), escape(text));
    }
    out.push_str("</nav></header>\n<main>\n");
    out
}

fn foot(root: &str) -> String {
    foot_with(root, &[])
}

/// The page's end, loading the report's script and `scripts` (paths relative to the page).
pub(crate) fn foot_with(root: &str, scripts: &[&str]) -> String {
    let mut out = format!(
        "</main>\n<footer>Made by netdissect {}: Network Dissection (Bau et al., CVPR 2017).</footer>\n<script src=\"{root}report.js\"></script>\n",
        env!("CARGO_PKG_VERSION")
    );
    for script in scripts {
        let _ = writeln!(out, "<script src=\"{}\"></script>", escape(script));
    }
    out.push_str("</body>\n</html>\n");
    out
}

pub(crate) fn iou(v: f64) -> String {
    format!("{v:.4}")
}

/// `name (category) IoU · ...`, escaped.
/// A label's name as HTML: label 0 (image-level `0` items, concepts Broden's frequency filter
/// dropped) has an empty name, so it is named by its number.
pub(crate) fn label_name(name: &str) -> String {
    if name.is_empty() {
        "<em>label 0</em>".to_owned()
    } else {
        escape(name)
    }
}

fn labels(bests: &[crate::CategoryBest]) -> String {
    let items: Vec<String> = bests
        .iter()
        .map(|n| {
            format!(
                "{} <small>({})</small> {}",
                label_name(&n.name),
                escape(&n.category),
                iou(n.iou)
            )
        })
        .collect();
    items.join(" · ")
}

pub(crate) fn count(v: &Value) -> usize {
    v.as_u64().unwrap_or(0) as usize
}

/// The per-layer statistics table (one row per layer).
/// With formulas (the report's `formulas` figures), a last column counts the units a formula
/// explains better than one concept.
fn layer_table(out: &mut String, categories: &[String], layers: &[(&Value, Option<String>)]) {
    let gain = layers
        .iter()
        .find_map(|(l, _)| l["formulas"]["gain"].as_f64());
    out.push_str(
        "<div class=\"scroll\"><table class=\"stats\"><thead><tr><th rowspan=\"2\">layer</th><th rowspan=\"2\">units</th><th rowspan=\"2\">detectors</th><th colspan=\"2\">unique detectors</th>",
    );
    for (i, c) in categories.iter().enumerate() {
        let _ = write!(
            out,
            r#"<th colspan="2" class="cat" style="--c:{}">{}</th>"#,
            svg::colour(i),
            escape(c)
        );
    }
    if let Some(gain) = gain {
        let _ = write!(
            out,
            "<th rowspan=\"2\" title=\"units whose best formula of concepts beats their best \
             single concept by at least {gain} IoU\">better by formula</th>"
        );
    }
    out.push_str("</tr><tr><th title=\"distinct labels among detectors (top-label rule)\">top label</th><th title=\"distinct best labels per category, summed (per-category rule)\">per category</th>");
    for _ in categories {
        out.push_str("<th title=\"detector units labelled in this category\">det.</th><th title=\"unique labels, per-category rule\">uniq.</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for (layer, link) in layers {
        let name = layer["layer"].as_str().unwrap_or("");
        let cell = match link {
            Some(href) => format!(r#"<a href="{}">{}</a>"#, escape(href), escape(name)),
            None => escape(name),
        };
        let _ = write!(
            out,
            "<tr><th>{cell}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            count(&layer["units"]),
            count(&layer["detectors"]),
            count(&layer["unique_top_label"]),
            count(&layer["unique_per_category"]),
        );
        for c in categories {
            let s = &layer["categories"][c];
            let _ = write!(
                out,
                "<td>{}</td><td>{}</td>",
                count(&s["detectors"]),
                count(&s["unique_per_category"])
            );
        }
        if gain.is_some() {
            match layer["formulas"]["better"].as_u64() {
                Some(n) => {
                    let _ = write!(out, "<td>{n}</td>");
                }
                None => out.push_str("<td>–</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
}

/// Per layer and category: (detector units by top label, unique labels per category).
fn category_values(categories: &[String], layers: &[&Value]) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    let detectors = layers
        .iter()
        .map(|l| {
            categories
                .iter()
                .map(|c| count(&l["categories"][c]["detectors"]))
                .collect()
        })
        .collect();
    let unique = layers
        .iter()
        .map(|l| {
            categories
                .iter()
                .map(|c| count(&l["categories"][c]["unique_per_category"]))
                .collect()
        })
        .collect();
    (detectors, unique)
}

pub(crate) fn layer_page(stem: &str) -> String {
    format!("layer-{stem}.html")
}

pub(crate) fn unit_page(stem: &str, unit: u32) -> String {
    format!("{stem}/unit-{unit:04}.html")
}

pub(crate) fn write_index(
    dir: &Path,
    report: &Report,
    title: &str,
    explained: Option<&crate::explain::Explained>,
) -> Result<()> {
    let mut out = head(title, "", &[("index.html".into(), title.into())]);
    let units: usize = report.layers.iter().map(|l| l.units.len()).sum();
    let _ = write!(
        out,
        "<h1>{}</h1>\n<p class=\"lede\">{} layers, {} units; a unit is a detector when its best IoU reaches {}.</p>\n",
        escape(title),
        report.layers.len(),
        units,
        report.iou_threshold
    );
    let rows: Vec<(&Value, Option<String>)> = report
        .layers
        .iter()
        .map(|l| (&l.summary, Some(layer_page(&l.stem))))
        .collect();
    if let Some(explained) = explained {
        out.push_str(&explained.index_link());
    }
    layer_table(&mut out, &report.categories, &rows);
    let names: Vec<String> = report.layers.iter().map(|l| l.name.clone()).collect();
    let summaries: Vec<&Value> = report.layers.iter().map(|l| &l.summary).collect();
    let (detectors, unique) = category_values(&report.categories, &summaries);
    out.push_str("<h2>Interpretability by layer</h2>\n<div class=\"charts\">");
    out.push_str(&svg::stacked_bars(
        "unique detectors per category (per-category rule)",
        &names,
        &report.categories,
        &unique,
        None,
    ));
    out.push_str(&svg::stacked_bars(
        "detector units by the category of their label",
        &names,
        &report.categories,
        &detectors,
        None,
    ));
    out.push_str("</div>\n");
    out.push_str(&foot(""));
    write_file(&dir.join("index.html"), &out)
}

pub(crate) fn write_layer(ctx: &Context, layer: &Layer, drawn: &Drawn) -> Result<()> {
    let (dir, categories, threshold) = (ctx.dir, ctx.categories, ctx.iou_threshold);
    let title = ctx.config.title.as_str();
    let s = &layer.summary;
    let page_title = format!("{title} · {}", layer.name);
    let mut out = head(
        &page_title,
        "",
        &[
            ("index.html".into(), title.into()),
            (layer_page(&layer.stem), layer.name.clone()),
        ],
    );
    let _ = write!(
        out,
        "<h1>{}</h1>\n<p class=\"lede\">{}/{} units covering {} concepts with IoU ≥ {}</p>\n",
        escape(&layer.name),
        count(&s["detectors"]),
        count(&s["units"]),
        count(&s["unique_top_label"]),
        threshold
    );

    // Detector units per concept.
    let mut concepts: Vec<(String, usize, usize)> = Vec::new();
    for unit in layer.units.iter().filter(|u| u.detector) {
        let Some(top) = &unit.top else { continue };
        let category = categories
            .iter()
            .position(|c| *c == top.category)
            .unwrap_or(categories.len());
        match concepts
            .iter_mut()
            .find(|c| c.0 == top.name && c.1 == category)
        {
            Some(c) => c.2 += 1,
            None => concepts.push((top.name.clone(), category, 1)),
        }
    }
    concepts.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    out.push_str("<h2>Detector units per concept</h2>\n");
    if concepts.is_empty() {
        out.push_str("<p>No unit of this layer is a detector.</p>\n");
    } else {
        out.push_str("<div class=\"scroll\">");
        out.push_str(&svg::concept_bars(&concepts, categories));
        out.push_str("</div>\n<p class=\"legend\">");
        for (i, c) in categories.iter().enumerate() {
            let _ = write!(
                out,
                r#"<span class="cat" style="--c:{}">{}</span> "#,
                svg::colour(i),
                escape(c)
            );
        }
        out.push_str("</p>\n");
    }

    // Controls and cards.
    out.push_str("<h2>Units</h2>\n<form class=\"controls\" id=\"controls\" autocomplete=\"off\">\n<label>Sort by <select id=\"sort\"><option value=\"unit\">unit</option><option value=\"iou\">score (IoU)</option><option value=\"label\">label</option><option value=\"category\">category</option></select></label>\n<label>Category <select id=\"category\"><option value=\"\">all</option>");
    for c in categories {
        let _ = write!(out, r#"<option value="{0}">{0}</option>"#, escape(c));
    }
    out.push_str("</select></label>\n<label>Find <input id=\"filter\" type=\"search\" placeholder=\"label, category or unit\"></label>\n<label><input id=\"detectors\" type=\"checkbox\"> detectors only</label>\n<output id=\"shown\"></output>\n</form>\n<section id=\"cards\" class=\"cards\">\n");
    for (u, unit) in layer.units.iter().enumerate() {
        let (label, category, iou_value) = match &unit.top {
            Some(t) => (t.name.as_str(), t.category.as_str(), t.iou),
            None => ("", "", 0.0),
        };
        let colour = categories
            .iter()
            .position(|c| c == category)
            .map_or("#bbb", svg::colour);
        let mut search = format!("unit {} {label} {category}", unit.unit);
        for n in &unit.next {
            let _ = write!(search, " {} {}", n.name, n.category);
        }
        let formulas = ctx.formulas.of(&layer.name, unit.unit);
        search.push_str(&crate::formulas::search_text(formulas));
        let _ = write!(
            out,
            r#"<article class="card{det}" id="unit-{n}" data-unit="{n}" data-iou="{iou}" data-label="{l}" data-category="{c}" data-search="{search}" style="--c:{colour}">
<header><a class="unit" href="{page}">unit {n}</a> <span class="label">{ld}</span> <span class="cat">{c}</span> <span class="iou" title="best IoU">{iou_text}</span></header>
"#,
            det = if unit.detector { " detector" } else { "" },
            n = unit.unit,
            iou = iou_value,
            l = escape(label),
            c = escape(category),
            search = escape(&search.to_lowercase()),
            page = escape(&unit_page(&layer.stem, unit.unit)),
            ld = match &unit.top {
                None => "<em>no concept</em>".to_owned(),
                Some(_) => label_name(label),
            },
            iou_text = iou(iou_value),
        );
        if !unit.next.is_empty() {
            let _ = writeln!(out, "<p class=\"next\">next: {}</p>", labels(&unit.next));
        }
        out.push_str(&crate::formulas::card(formulas));
        let _ = write!(
            out,
            r#"<a class="strip" href="{page}"><img src="{src}" width="{w}" height="{h}" loading="lazy" alt="top {k} images of unit {n}"></a>
</article>
"#,
            page = escape(&unit_page(&layer.stem, unit.unit)),
            src = escape(&draw::strip_file(&layer.stem, unit.unit)),
            w = drawn.units[u].strip_width,
            h = drawn.thumbnail_height,
            k = drawn.units[u].shown.len(),
            n = unit.unit,
        );
    }
    out.push_str("</section>\n");
    out.push_str(&foot(""));
    write_file(&dir.join(layer_page(&layer.stem)), &out)
}

fn png_uri(base64: &str) -> String {
    format!("data:image/png;base64,{base64}")
}

pub(crate) fn write_unit(ctx: &Context, layer: &Layer, u: usize, drawn: &UnitDrawn) -> Result<()> {
    let (dir, dataset, categories, threshold) =
        (ctx.dir, ctx.dataset, ctx.categories, ctx.iou_threshold);
    let title = ctx.config.title.as_str();
    let unit = &layer.units[u];
    let name = format!("unit {}", unit.unit);
    let mut out = head(
        &format!("{title} · {} · {name}", layer.name),
        "../",
        &[
            ("../index.html".into(), title.into()),
            (
                format!("../{}", layer_page(&layer.stem)),
                layer.name.clone(),
            ),
            (format!("unit-{:04}.html", unit.unit), name.clone()),
        ],
    );
    match &unit.top {
        Some(top) => {
            let _ = write!(
                out,
                "<h1>{} · {} <span class=\"cat\" style=\"--c:{}\">{}</span></h1>\n<p class=\"lede\">best IoU {} ({}).</p>\n",
                escape(&layer.name),
                label_name(&top.name),
                categories
                    .iter()
                    .position(|c| *c == top.category)
                    .map_or("#bbb", svg::colour),
                escape(&top.category),
                iou(top.iou),
                if unit.detector {
                    "a detector"
                } else {
                    "below the threshold: not a detector"
                }
            );
        }
        None => {
            let _ = write!(
                out,
                "<h1>{} · {name}</h1>\n<p class=\"lede\">No label overlaps this unit's masks.</p>\n",
                escape(&layer.name)
            );
        }
    }
    let _ = write!(
        out,
        "<p class=\"pager\">{}{}</p>",
        if u > 0 {
            format!(
                r#"<a href="unit-{:04}.html">← unit {}</a> "#,
                layer.units[u - 1].unit,
                layer.units[u - 1].unit
            )
        } else {
            String::new()
        },
        layer
            .units
            .get(u + 1)
            .map(|n| format!(r#"<a href="unit-{:04}.html">unit {} →</a>"#, n.unit, n.unit))
            .unwrap_or_default()
    );
    out.push_str("\n<table class=\"stats\"><thead><tr><th>category</th><th>best label</th><th>IoU</th></tr></thead><tbody>");
    // Every category; one none of whose labels overlaps the unit shows no concept.
    for category in categories {
        let best = unit.categories.iter().find(|b| &b.category == category);
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td class=\"text\">{}</td><td>{}</td></tr>",
            if best.is_some_and(|b| b.iou > threshold) {
                " class=\"over\""
            } else {
                ""
            },
            escape(category),
            best.map_or("<em>no concept</em>".to_owned(), |b| label_name(&b.name)),
            iou(best.map_or(0.0, |b| b.iou))
        );
    }
    out.push_str("</tbody></table>\n");
    if !unit.next.is_empty() {
        let _ = writeln!(out, "<p>Next-best labels: {}</p>", labels(&unit.next));
    }
    out.push_str(&crate::formulas::section(
        ctx.formulas.of(&layer.name, unit.unit),
    ));
    let concept = unit
        .top
        .as_ref()
        .map_or("the label".to_owned(), |t| t.name.clone());
    let formula_text = crate::formulas::best_formula(ctx.formulas.of(&layer.name, unit.unit))
        .map(|f| f.text.clone());
    let _ = write!(
        out,
        "<h2>Top images</h2>\n<p>By the unit's highest activation in the image. Left: the unit's mask (above its threshold, as scored); {}: where the label map names <b>{}</b>{}.</p>\n<div class=\"pairs\">\n",
        if formula_text.is_some() {
            "middle"
        } else {
            "right"
        },
        escape(&concept),
        formula_text.as_ref().map_or(String::new(), |t| format!(
            "; right: where its best formula, <b>{}</b>, holds",
            escape(t)
        ))
    );
    for (rank, (shown, (mask, concept_png))) in drawn.shown.iter().zip(&drawn.overlays).enumerate()
    {
        // With a formula: its mask beside the unit's and the label's.
        let (formula_panel, formula_caption) = match (&formula_text, drawn.formula.get(rank)) {
            (Some(text), Some((png, pixels))) => (
                format!(
                    r#"<div class="panel"><img src="{image}" alt=""><img class="over" src="{src}" alt="{t}"></div>"#,
                    image = escape(&format!("../{}", draw::image_file(shown.row))),
                    src = png_uri(png),
                    t = escape(text)
                ),
                format!(" · {} {pixels} px", escape(text)),
            ),
            _ => (String::new(), String::new()),
        };
        let image = format!("../{}", draw::image_file(shown.row));
        let file = dataset.image(shown.row);
        let union = shown.mask + shown.concept - shown.both;
        let here = if union == 0 {
            0.0
        } else {
            shown.both as f64 / union as f64
        };
        let _ = write!(
            out,
            r#"<figure class="pair"><div class="panels"><div class="panel"><img src="{image}" alt=""><img class="over" src="{mask}" alt="mask of unit {n}"></div><div class="panel"><img src="{image}" alt=""><img class="over" src="{concept_file}" alt="{c}"></div>{formula_panel}</div>
<figcaption>#{r} · <code>{file}</code> · max activation {max:.4} · mask {m} px · {c} {cp} px · IoU in this image {here:.3}{formula_caption}</figcaption></figure>
"#,
            image = escape(&image),
            mask = png_uri(mask),
            concept_file = png_uri(concept_png),
            n = unit.unit,
            c = escape(&concept),
            r = rank + 1,
            file = escape(file),
            max = shown.max,
            m = shown.mask,
            cp = shown.concept,
        );
    }
    out.push_str("</div>\n");
    out.push_str(&foot("../"));
    write_file(&dir.join(unit_page(&layer.stem, unit.unit)), &out)
}

/// The page comparing the models of a run. `models`: (name, summary.json, link to its
/// pages).
/// A model on the run index.
pub(crate) struct IndexedModel {
    pub name: String,
    pub summary: Value,
    /// Its pages, relative to the index (`None`: no pages).
    pub link: Option<String>,
    /// Found in the output folder from an earlier run, rather than run now.
    pub earlier: bool,
    /// A dissection of a model's rotated activations: which.
    pub rotation: Option<crate::RunRotation>,
}

pub(crate) fn write_run_index(
    dir: &Path,
    indexed: &[IndexedModel],
    skipped: &[(String, String)],
) -> Result<PathBuf> {
    let models: Vec<(&str, &Value, Option<String>)> = indexed
        .iter()
        .map(|m| (m.name.as_str(), &m.summary, m.link.clone()))
        .collect();
    let mut out = head("netdissect run", "", &[("index.html".into(), "run".into())]);
    out.push_str("<h1>Network Dissection</h1>\n");
    let now = indexed.iter().filter(|m| !m.earlier).count();
    let before = indexed.len() - now;
    let _ = writeln!(
        out,
        "<p class=\"note\">Every model report in this folder: {now} from the last run{}.</p>",
        if before > 0 {
            format!(", then {before} from earlier runs (marked *earlier*)")
        } else {
            String::new()
        }
    );
    for (name, why) in skipped {
        let _ = writeln!(
            out,
            "<p class=\"note\">Left out: <code>{}</code>: {}.</p>",
            escape(name),
            escape(why)
        );
    }
    // Layers in order of first appearance; categories likewise.
    let mut layers: Vec<String> = Vec::new();
    let mut categories: Vec<String> = Vec::new();
    for (_, summary, _) in &models {
        for l in summary["layers"].as_array().into_iter().flatten() {
            let name = l["layer"].as_str().unwrap_or("").to_owned();
            if !layers.contains(&name) {
                layers.push(name);
            }
        }
        for c in summary["categories"].as_array().into_iter().flatten() {
            let c = c.as_str().unwrap_or("").to_owned();
            if !categories.contains(&c) {
                categories.push(c);
            }
        }
    }
    let layer_of = |summary: &Value, name: &str| -> Option<Value> {
        summary["layers"]
            .as_array()?
            .iter()
            .find(|l| l["layer"].as_str() == Some(name))
            .cloned()
    };
    // Unique detectors (top-label rule) by layer and model.
    out.push_str("<h2>Unique detectors by layer</h2>\n<div class=\"scroll\"><table class=\"stats\"><thead><tr><th>model</th>");
    for l in &layers {
        let _ = write!(out, "<th>{}</th>", escape(l));
    }
    out.push_str("</tr></thead><tbody>");
    let mut series = Vec::new();
    for ((name, summary, link), model) in models.iter().zip(indexed) {
        let mut cell = match link {
            Some(href) => format!(r#"<a href="{}">{}</a>"#, escape(href), escape(name)),
            None => escape(name),
        };
        if model.earlier {
            cell.push_str(" <small>earlier</small>");
        }
        let _ = write!(out, "<tr><th>{cell}</th>");
        let mut values = Vec::new();
        for l in &layers {
            match layer_of(summary, l) {
                Some(s) => {
                    let _ = write!(
                        out,
                        "<td title=\"top-label rule (per-category rule)\">{} ({})</td>",
                        count(&s["unique_top_label"]),
                        count(&s["unique_per_category"])
                    );
                    values.push(Some(count(&s["unique_top_label"])));
                }
                None => {
                    out.push_str("<td>–</td>");
                    values.push(None);
                }
            }
        }
        out.push_str("</tr>");
        series.push((name.to_string(), values));
    }
    out.push_str("</tbody></table></div>\n<p class=\"note\">Unique detectors by the top-label rule; in brackets, by the per-category rule.</p>\n");
    out.push_str(&svg::lines(
        "unique detectors (top-label rule) by layer",
        &layers,
        &series,
    ));
    out.push_str(&crate::rotation::section(indexed, &layers));
    // Small multiples: unique detectors per category by layer, on one scale.
    let mut charts = Vec::new();
    for (name, summary, _) in &models {
        let own: Vec<Value> = layers
            .iter()
            .map(|l| layer_of(summary, l).unwrap_or(Value::Null))
            .collect();
        let refs: Vec<&Value> = own.iter().collect();
        let (_, unique) = category_values(&categories, &refs);
        charts.push((name, unique));
    }
    let y_max = charts
        .iter()
        .flat_map(|(_, u)| u.iter().map(|v| v.iter().sum::<usize>()))
        .max();
    out.push_str("<h2>Unique detectors per category by layer</h2>\n<div class=\"charts\">");
    for (name, unique) in &charts {
        out.push_str(&svg::stacked_bars(
            name,
            &layers,
            &categories,
            unique,
            y_max,
        ));
    }
    out.push_str("</div>\n");
    out.push_str(&foot(""));
    let path = dir.join("index.html");
    write_file(&path, &out)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("ünïcode ok"), "ünïcode ok");
    }
}
