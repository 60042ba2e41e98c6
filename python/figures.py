"""Small SVG charts for EXPERIMENTS.md (python/findings.py): grouped bars or lines of
counts over seeds, each mark the mean with a bar of ± one sample standard deviation and
each seed's value as a dot. Plain SVG with no dependency, the same bytes for the same
numbers, so that the committed figures change only when the results do.
"""

import statistics
from xml.sax.saxutils import escape

# Distinguishable in colour and in grey (the Okabe-Ito palette without yellow).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000"]
PANEL_W, PANEL_H = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 34, 44
LEGEND_H = 22


def _f(x):
    return f"{x:.1f}"


def _stats(values):
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, sd


def _nice_top(peak):
    """The smallest of 1, 2, 5 × 10^k at or above ``peak`` (at least 5)."""
    peak = max(peak, 5)
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= peak:
                return m * step
        step *= 10


def _ticks(top):
    step = top / 5 if top % 5 == 0 else top / 4
    return [i * step for i in range(int(round(top / step)) + 1)]


def panel(title, kind, x_labels, series, x_title="", y_title="unique detectors"):
    """A panel: ``kind`` "bars" or "lines"; ``series`` [(name, [[seed values] per x])]
    (an empty list where a series has no value at that x)."""
    return {"title": title, "kind": kind, "x": list(x_labels), "series": series,
            "x_title": x_title, "y_title": y_title}


def _draw_panel(p, ox, oy, colours):
    out = []
    w, h = PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM
    x0, y0 = ox + LEFT, oy + TOP
    peak = max((max(_stats(v)[0] + _stats(v)[1], max(v)) for _, vals in p["series"]
                for v in vals if v), default=1)
    top = _nice_top(peak)

    def y(v):
        return y0 + h - h * v / top

    out.append(f'<text x="{_f(ox + PANEL_W / 2)}" y="{_f(oy + 18)}" text-anchor="middle" '
               f'font-weight="bold">{escape(p["title"])}</text>')
    for t in _ticks(top):
        out.append(f'<line x1="{_f(x0)}" y1="{_f(y(t))}" x2="{_f(x0 + w)}" y2="{_f(y(t))}" '
                   f'stroke="#e0e0e0"/>')
        label = f"{t:g}"
        out.append(f'<text x="{_f(x0 - 6)}" y="{_f(y(t) + 4)}" text-anchor="end">{label}</text>')
    out.append(f'<line x1="{_f(x0)}" y1="{_f(y0 + h)}" x2="{_f(x0 + w)}" y2="{_f(y0 + h)}" '
               f'stroke="#444"/>')
    out.append(f'<text x="{_f(ox + 12)}" y="{_f(y0 + h / 2)}" text-anchor="middle" '
               f'transform="rotate(-90 {_f(ox + 12)} {_f(y0 + h / 2)})">'
               f'{escape(p["y_title"])}</text>')
    n = len(p["x"])
    slot = w / n
    for i, label in enumerate(p["x"]):
        out.append(f'<text x="{_f(x0 + slot * (i + 0.5))}" y="{_f(y0 + h + 16)}" '
                   f'text-anchor="middle">{escape(str(label))}</text>')
    if p["x_title"]:
        out.append(f'<text x="{_f(x0 + w / 2)}" y="{_f(y0 + h + 34)}" text-anchor="middle">'
                   f'{escape(p["x_title"])}</text>')
    k = len(p["series"])
    for s, (name, values) in enumerate(p["series"]):
        colour = colours[name]
        points = []
        for i, v in enumerate(values):
            if not v:
                continue
            mean, sd = _stats(v)
            if p["kind"] == "bars":
                bw = slot * 0.8 / k
                cx = x0 + slot * 0.1 + slot * i + bw * (s + 0.5)
                out.append(f'<rect x="{_f(cx - bw * 0.45)}" y="{_f(y(mean))}" '
                           f'width="{_f(bw * 0.9)}" height="{_f(y(0) - y(mean))}" '
                           f'fill="{colour}" fill-opacity="0.55"/>')
            else:
                cx = x0 + slot * (i + 0.5) + (s - (k - 1) / 2) * 3
                points.append((cx, y(mean)))
            if sd > 0:
                out.append(f'<line x1="{_f(cx)}" y1="{_f(y(mean - sd))}" x2="{_f(cx)}" '
                           f'y2="{_f(y(mean + sd))}" stroke="{colour}" stroke-width="1.5"/>')
            for value in v if len(v) > 1 else []:
                out.append(f'<circle cx="{_f(cx)}" cy="{_f(y(value))}" r="2" '
                           f'fill="{colour}" fill-opacity="0.6"/>')
        if points:
            path = " ".join(f"{_f(a)},{_f(b)}" for a, b in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                       f'stroke-width="2"/>')
            for a, b in points:
                out.append(f'<circle cx="{_f(a)}" cy="{_f(b)}" r="3.5" fill="{colour}"/>')
    return out


def figure(panels, caption=""):
    """An SVG of ``panels`` side by side, with one legend of their series' names (the
    panels share their series) and a caption line."""
    width = PANEL_W * len(panels)
    height = PANEL_H + LEGEND_H + (18 if caption else 0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    names = []
    for p in panels:
        for name, _ in p["series"]:
            if name not in names:
                names.append(name)
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    for i, p in enumerate(panels):
        out += _draw_panel(p, PANEL_W * i, 0, colours)
    x = LEFT
    for name in names:
        colour = colours[name]
        out.append(f'<rect x="{x}" y="{PANEL_H + 4}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 16}" y="{PANEL_H + 14}">{escape(name)}</text>')
        x += 28 + 7 * len(name)
    if caption:
        out.append(f'<text x="{LEFT}" y="{PANEL_H + LEGEND_H + 12}" fill="#555">'
                   f'{escape(caption)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
