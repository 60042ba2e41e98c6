//! Plots as inline SVG: written here, so the pages need no plotting library.

use std::fmt::Write as _;

use crate::page::escape;

/// Colour-blind-safe colours (Okabe & Ito), one per category in category order.
const PALETTE: [&str; 8] = [
    "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#999999",
];

pub(crate) fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// A round axis maximum at or above `max`, with its tick step.
fn axis(max: f64) -> (f64, f64) {
    if max <= 0.0 {
        return (1.0, 1.0);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
        .max(1.0);
    ((max / step).ceil() * step, step)
}

fn y_axis(out: &mut String, left: f64, top: f64, height: f64, width: f64, max: f64, step: f64) {
    let mut v = 0.0;
    while v <= max + 1e-9 {
        let y = top + height - v / max * height;
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{tx}" y="{ty:.1}" class="tick" text-anchor="end">{v}</text>"##,
            x2 = left + width,
            tx = left - 4.0,
            ty = y + 4.0,
        );
        v += step;
    }
}

fn legend(out: &mut String, series: &[(String, usize)], x: f64, y: f64) {
    for (i, (name, colour_index)) in series.iter().enumerate() {
        let yy = y + i as f64 * 16.0;
        let _ = write!(
            out,
            r##"<rect x="{x}" y="{ry}" width="10" height="10" fill="{c}"/><text x="{tx}" y="{ty}" class="legend">{n}</text>"##,
            ry = yy,
            c = colour(*colour_index),
            tx = x + 14.0,
            ty = yy + 9.0,
            n = escape(name),
        );
    }
}

/// Stacked bars: one bar per group (a layer), one segment per series (a category).
/// `values[g][s]`; `y_max` shares a scale between several charts.
pub(crate) fn stacked_bars(
    title: &str,
    groups: &[String],
    series: &[String],
    values: &[Vec<usize>],
    y_max: Option<usize>,
) -> String {
    let total_max = values
        .iter()
        .map(|v| v.iter().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(y_max.unwrap_or(0));
    let (max, step) = axis(total_max as f64);
    let (left, top, plot_h) = (36.0, 28.0, 180.0);
    let bar = 34.0;
    let gap = 18.0;
    let plot_w = groups.len() as f64 * (bar + gap) + gap;
    let legend_x = left + plot_w + 16.0;
    let width = legend_x + 110.0;
    let height = top + plot_h + 44.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}"><text x="{left}" y="16" class="title">{t}</text>"##,
        t = escape(title),
    );
    y_axis(&mut out, left, top, plot_h, plot_w, max, step);
    for (g, group) in groups.iter().enumerate() {
        let x = left + gap + g as f64 * (bar + gap);
        let mut base = 0usize;
        for (s, name) in series.iter().enumerate() {
            let v = values[g].get(s).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let y = top + plot_h - (base + v) as f64 / max * plot_h;
            let h = v as f64 / max * plot_h;
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.1}" width="{bar}" height="{h:.1}" fill="{c}"><title>{gn}: {v} {sn}</title></rect>"##,
                c = colour(s),
                gn = escape(group),
                sn = escape(name),
            );
            base += v;
        }
        let _ = write!(
            out,
            r##"<text x="{cx:.1}" y="{ty:.1}" class="tick" text-anchor="middle">{total}</text><text x="{cx:.1}" y="{ly:.1}" class="axis" text-anchor="middle">{gn}</text>"##,
            cx = x + bar / 2.0,
            ty = top + plot_h - base as f64 / max * plot_h - 4.0,
            total = base,
            ly = top + plot_h + 16.0,
            gn = escape(&shorten(group, 10)),
        );
    }
    let named: Vec<(String, usize)> = series.iter().cloned().zip(0..).collect();
    legend(&mut out, &named, legend_x, top);
    out.push_str("</svg>");
    out
}

/// A bar per concept (detector units whose label it is), coloured by category, most
/// frequent first. `items`: (label, category index, count).
pub(crate) fn concept_bars(items: &[(String, usize, usize)], categories: &[String]) -> String {
    let max = items.iter().map(|i| i.2).max().unwrap_or(0);
    let (max_axis, step) = axis(max as f64);
    let (left, top, plot_h) = (32.0, 12.0, 120.0);
    let bar = 13.0;
    let gap = 3.0;
    let plot_w = (items.len() as f64 * (bar + gap) + gap).max(120.0);
    let width = left + plot_w + 10.0;
    let label_room = 110.0;
    let height = top + plot_h + label_room;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg class="chart concepts" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="detector units per concept">"##
    );
    y_axis(&mut out, left, top, plot_h, plot_w, max_axis, step);
    for (i, (name, category, count)) in items.iter().enumerate() {
        let x = left + gap + i as f64 * (bar + gap);
        let h = *count as f64 / max_axis * plot_h;
        let y = top + plot_h - h;
        let cat = categories.get(*category).map_or("", |c| c.as_str());
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{bar}" height="{h:.1}" fill="{c}"><title>{n} ({cn}): {count}</title></rect><text class="concept" transform="translate({tx:.1},{ty:.1}) rotate(-60)" text-anchor="end">{sn}</text>"##,
            c = colour(*category),
            n = escape(name),
            cn = escape(cat),
            tx = x + bar / 2.0 + 3.0,
            ty = top + plot_h + 8.0,
            sn = escape(&shorten(name, 18)),
        );
    }
    out.push_str("</svg>");
    out
}

/// One line per series (a model) over shared x positions (layers); `None` where a series
/// has no value.
pub(crate) fn lines(title: &str, xs: &[String], series: &[(String, Vec<Option<usize>>)]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0);
    let (max_axis, step) = axis(max as f64);
    let (left, top, plot_h): (f64, f64, f64) = (36.0, 28.0, 200.0);
    let dx = 80.0;
    let plot_w = (xs.len().max(2) - 1) as f64 * dx + 40.0;
    let legend_x = left + plot_w + 16.0;
    let width = legend_x + 150.0;
    let height = (top + plot_h + 40.0).max(top + series.len() as f64 * 16.0 + 10.0);
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}"><text x="{left}" y="16" class="title">{t}</text>"##,
        t = escape(title),
    );
    y_axis(&mut out, left, top, plot_h, plot_w, max_axis, step);
    let x_of = |i: usize| left + 20.0 + i as f64 * dx;
    let y_of = |v: usize| top + plot_h - v as f64 / max_axis * plot_h;
    for (i, x) in xs.iter().enumerate() {
        let _ = write!(
            out,
            r##"<text x="{cx:.1}" y="{ly:.1}" class="axis" text-anchor="middle">{n}</text>"##,
            cx = x_of(i),
            ly = top + plot_h + 16.0,
            n = escape(&shorten(x, 12)),
        );
    }
    for (s, (name, values)) in series.iter().enumerate() {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x_of(i), y_of(v))))
            .collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="{c}" stroke-width="2" points="{p}"/>"##,
            c = colour(s),
            p = points.join(" "),
        );
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    out,
                    r##"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{c}"><title>{n} {l}: {v}</title></circle>"##,
                    x = x_of(i),
                    y = y_of(*v),
                    c = colour(s),
                    n = escape(name),
                    l = escape(&xs[i]),
                );
            }
        }
    }
    let named: Vec<(String, usize)> = series.iter().map(|s| s.0.clone()).zip(0..).collect();
    legend(&mut out, &named, legend_x, top);
    out.push_str("</svg>");
    out
}

/// At most `n` characters, with an ellipsis when cut.
fn shorten(text: &str, n: usize) -> String {
    if text.chars().count() <= n {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(n - 1).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round() {
        assert_eq!(axis(0.0), (1.0, 1.0));
        assert_eq!(axis(3.0), (3.0, 1.0));
        assert_eq!(axis(14.0), (15.0, 5.0));
        assert_eq!(axis(97.0), (100.0, 20.0));
    }

    #[test]
    fn text_in_charts_is_escaped() {
        let svg = concept_bars(&[("<b>&".into(), 0, 2)], &["c<".into()]);
        assert!(svg.contains("&lt;b&gt;&amp;"), "{svg}");
        assert!(!svg.contains("<b>"));
        let svg = stacked_bars("t", &["l<1>".into()], &["s\"".into()], &[vec![1]], None);
        assert!(svg.contains("l&lt;1&gt;") && svg.contains("s&quot;"));
    }
}
