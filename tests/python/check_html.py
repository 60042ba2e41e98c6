"""Opens a model's browsable report (nd-html) in headless Chromium and checks it as a user
would: pages load with no console error, no failed load and no request that leaves the
report's files; a layer page holds one card per unit; sorting by score reorders the cards;
filtering by category and by text hides the others; a unit's page shows its images.
With --explain, the pages of explained predictions too: the index lists every image and
filters them by class, right or wrong and concept; an image page shows its class activation
map and its top units' masks, and a unit's link opens its page; a class page lists its
concepts; and every href and src of every page of the report resolves to a file.
With --single DIR, the pages `netdissect explain --html DIR` wrote too: the index lists its
images, an image page shows the predicted class, its class activation map and every top
unit with its mask, a unit's link (when the units have pages) opens the unit's page, and
every href and src resolves to a file.
Saves screenshots. Prints a JSON summary on stdout; exits non-zero on the first failure.

usage: check_html.py RESULTS_MODEL_DIR SCREENSHOT_DIR [--layer NAME] [--expect-text TEXT]
                     [--run-index PATH] [--explain] [--single DIR]

RESULTS_MODEL_DIR is a model's `[output] dir/<model>/` (its summary.json and html/).
"""

import argparse
import collections
import html.parser
import json
import os
import pathlib
import sys
import urllib.parse

from playwright.sync_api import sync_playwright


def fail(message):
    print(f"check_html: {message}", file=sys.stderr)
    sys.exit(1)


def loaded(page, selector):
    """Whether every image the selector finds has loaded (and how many there are)."""
    states = page.eval_on_selector_all(
        selector, "is => is.map(i => i.complete && i.naturalWidth > 0)"
    )
    return all(states), len(states)


def check_explain(page, pages, args, visit, check_scripts):
    """The explained predictions' pages, reached from the model's index."""
    explained = json.loads((args.model_dir / "explain" / "summary.json").read_text())
    result = {}
    visit((pages / "index.html").resolve().as_uri())
    page.locator("a[href='explain/index.html']").first.click()
    page.wait_for_load_state("networkidle")
    check_scripts(page.url, ("report.js", "explain.js"))
    rows = page.eval_on_selector_all(
        "tr.image",
        "rs => rs.map(r => [r.dataset.row, r.dataset.class, r.dataset.correct,"
        " JSON.parse(r.dataset.concepts)])",
    )
    want = min(explained["images"], 1000)
    if len(rows) != want:
        fail(f"explain index: {len(rows)} images listed, want {want}")
    result["images"] = len(rows)
    page.wait_for_function(
        "() => [...document.querySelectorAll('tr.image img')].slice(0, 4)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(args.screenshots / "explain-index.png"))

    def visible():
        return page.eval_on_selector_all(
            "tr.image:not([hidden])", "rs => rs.map(r => r.dataset.row)"
        )

    def check_filter(name, select, value, keep):
        page.select_option(select, value)
        shown = visible()
        expected = [r[0] for r in rows if keep(r)]
        if shown != expected:
            fail(f"explain index: filtering by {name} {value!r} shows {len(shown)} rows, want {len(expected)}")
        counted = page.locator("#shown").inner_text()
        if not counted.startswith(f"{len(expected)} of {len(rows)}"):
            fail(f"explain index: the count says {counted!r}")
        page.select_option(select, "")
        return {"value": value, "shown": len(shown), "hidden": len(rows) - len(shown)}

    # A class that not every image is predicted as, when there is one.
    counts = collections.Counter(r[1] for r in rows)
    partial = [c for c, n in counts.most_common() if n < len(rows)]
    chosen = (partial or list(counts))[0]
    result["class_filter"] = check_filter("class", "#class", chosen, lambda r: r[1] == chosen)
    if page.locator("#correct").count():
        judged = [v for v in ("wrong", "right") if any(r[2] == v for r in rows)]
        if not judged:
            fail("explain index: a right/wrong filter but no image judged")
        result["correct_filter"] = check_filter(
            "prediction", "#correct", judged[0], lambda r: r[2] == judged[0]
        )
    concepts = page.eval_on_selector_all("#concept option", "os => os.map(o => o.value)")
    concepts = [c for c in concepts if c]
    if not concepts:
        fail("explain index: no concept to filter by")
    result["concept_filter"] = check_filter(
        "concept", "#concept", concepts[0], lambda r: concepts[0] in r[3]
    )
    if len(visible()) != len(rows):
        fail("explain index: clearing the filters does not show every image")

    # An image's page, from its row.
    page.locator("tr.image a").first.click()
    page.wait_for_load_state("networkidle")
    check_scripts(page.url)
    ok, count = loaded(page, "img")
    if not ok:
        fail(f"{page.url}: an image did not load")
    cam, cams = loaded(page, "img.cam")
    units = page.locator("tr.unit-row").count()
    masks = page.locator("figure.unit-mask").count()
    if cams != 1 or not cam or units == 0 or masks != units:
        fail(f"{page.url}: {cams} maps, {units} units, {masks} masks")
    classes = page.locator("table.classes tbody tr").count()
    result["image"] = {"cam": cam, "units": units, "masks": masks, "classes": classes}
    page.screenshot(path=str(args.screenshots / "explain-image.png"), full_page=True)
    image_page = page.url

    # A top unit's link opens the unit's page in the report.
    page.locator("tr.unit-row a").first.click()
    page.wait_for_load_state("networkidle")
    if "/unit-" not in page.url:
        fail(f"a unit's link led to {page.url}")
    ok, count = loaded(page, ".pair img")
    if not ok or count == 0:
        fail(f"{page.url}: the unit's images did not load")
    result["image"]["unit_page_images"] = count

    # The predicted class's page, from the image's page.
    page.goto(image_page, wait_until="load")
    page.locator("p.lede a").first.click()
    page.wait_for_load_state("networkidle")
    if "/explain/classes/" not in page.url:
        fail(f"the class link led to {page.url}")
    concepts = page.locator("table.concepts tbody tr").count()
    ok, examples = loaded(page, ".thumbs img")
    if not ok:
        fail(f"{page.url}: an example image did not load")
    result["class"] = {
        "concepts": concepts,
        "units": page.locator("tr.unit-row").count(),
        "examples": examples,
    }
    page.screenshot(path=str(args.screenshots / "explain-class.png"), full_page=True)

    checked, broken = check_links(pages)
    if broken:
        fail(f"links to missing files: {broken[:5]}")
    result["links_checked"] = checked
    return result


def check_single(page, args, visit, check_scripts):
    """The pages of `netdissect explain --html DIR`, from their index."""
    listed = json.loads((args.single / "explained.json").read_text())
    result = {}
    visit((args.single / "index.html").resolve().as_uri())
    rows = page.locator("tr.image").count()
    if rows != len(listed["images"]):
        fail(f"single index: {rows} images listed, want {len(listed['images'])}")
    ok, thumbs = loaded(page, "tr.image img")
    if not ok or thumbs != rows:
        fail(f"single index: {thumbs} thumbnails for {rows} images, or one did not load")
    result["images"] = rows
    page.screenshot(path=str(args.screenshots / "single-index.png"), full_page=True)

    page.locator("tr.image a").first.click()
    page.wait_for_load_state("networkidle")
    check_scripts(page.url)
    ok, _ = loaded(page, "img")
    if not ok:
        fail(f"{page.url}: an image did not load")
    cam, cams = loaded(page, "img.cam")
    units = page.locator("tr.unit-row").count()
    masks = page.locator("figure.unit-mask").count()
    if cams != 1 or not cam or units == 0 or masks != units:
        fail(f"{page.url}: {cams} maps, {units} units, {masks} masks")
    predicted = listed["images"][0]["class_name"]
    lede = page.locator("p.lede").inner_text()
    if f"Predicted {predicted} (" not in lede:
        fail(f"{page.url}: the lede {lede!r} does not name the predicted class {predicted!r}")
    labels = page.eval_on_selector_all(
        "tr.unit-row td:nth-child(3)", "ts => ts.map(t => t.innerText)"
    )
    result["image"] = {
        "cam": cam,
        "units": units,
        "masks": masks,
        "predicted": predicted,
        "labels": labels,
        "classes": page.locator("table.classes tbody tr").count(),
    }
    page.screenshot(path=str(args.screenshots / "single-image.png"), full_page=True)

    if listed["unit_pages"]:
        page.locator("tr.unit-row a").first.click()
        page.wait_for_load_state("networkidle")
        if "/unit-" not in page.url:
            fail(f"a unit's link led to {page.url}")
        ok, count = loaded(page, ".pair img")
        if not ok or count == 0:
            fail(f"{page.url}: the unit's images did not load")
        result["image"]["unit_page_images"] = count
    elif page.locator("tr.unit-row a").count():
        fail("single pages: units link pages that explained.json says there are none of")

    checked, broken = check_links(args.single, outside=True)
    if broken:
        fail(f"links to missing files: {broken[:5]}")
    result["links_checked"] = checked
    return result


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


def check_links(pages, outside=False):
    """Every href and src of every page that names a file: (how many, those missing).
    With outside, a page may link a file:// URL (a report's page in the cache), which must
    exist too; otherwise every link stays within the pages' folder."""
    checked, broken = 0, []
    for path in sorted(pages.rglob("*.html")):
        parser = Links()
        parser.feed(path.read_text())
        for target in parser.targets:
            if target.startswith(("data:", "#")):
                continue
            parts = urllib.parse.urlsplit(target)
            if outside and parts.scheme == "file" and not parts.netloc:
                checked += 1
                if not pathlib.Path(urllib.parse.unquote(parts.path)).is_file():
                    broken.append(f"{path.relative_to(pages)}: {target}")
                continue
            if parts.scheme or parts.netloc:
                broken.append(f"{path}: {target} (not a file of the report)")
                continue
            checked += 1
            if not (path.parent / urllib.parse.unquote(parts.path)).resolve().is_file():
                broken.append(f"{path.relative_to(pages)}: {target}")
    return checked, broken


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=pathlib.Path)
    parser.add_argument("screenshots", type=pathlib.Path)
    parser.add_argument("--layer", help="the layer page to check (default: the last)")
    parser.add_argument("--expect-text", help="text that a layer page must show as text")
    parser.add_argument("--run-index", type=pathlib.Path, help="the run's index.html")
    parser.add_argument(
        "--explain", action="store_true", help="also check the explained predictions' pages"
    )
    parser.add_argument(
        "--single", type=pathlib.Path, help="also check the pages netdissect explain --html wrote here"
    )
    args = parser.parse_args()

    summary = json.loads((args.model_dir / "summary.json").read_text())
    layers = {l["layer"]: l for l in summary["layers"]}
    layer_name = args.layer or summary["layers"][-1]["layer"]
    units = layers[layer_name]["units"]
    pages = args.model_dir / "html"
    args.screenshots.mkdir(parents=True, exist_ok=True)

    chromium = os.environ.get("NETDISSECT_CHROMIUM", "/usr/bin/chromium")
    if not pathlib.Path(chromium).exists():
        fail(f"no Chromium at {chromium} (install Debian's chromium, or set NETDISSECT_CHROMIUM)")

    requests, errors, failed, dialogs = [], [], [], []
    result = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                # Any host name resolves to nothing: a page that reaches out fails loudly.
                "--host-resolver-rules=MAP * ~NOTFOUND",
            ],
        )
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.on("request", lambda r: requests.append(r.url))
        page = context.new_page()
        page.on(
            "console",
            lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))

        def on_dialog(dialog):
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)

        def check_scripts(url, want=("report.js",)):
            scripts = page.eval_on_selector_all("script", "s => s.map(x => x.src)")
            if len(scripts) != len(want) or not all(
                s.endswith(w) for s, w in zip(scripts, want)
            ):
                fail(f"{url}: unexpected scripts {scripts}")

        def visit(url):
            page.goto(url, wait_until="load")
            page.wait_for_load_state("networkidle")
            check_scripts(url)

        if args.run_index:
            visit(args.run_index.resolve().as_uri())
            page.screenshot(path=str(args.screenshots / "run.png"), full_page=True)

        # The model's index: statistics and plots.
        visit((pages / "index.html").resolve().as_uri())
        rows = page.locator("table.stats tbody tr").count()
        if rows != len(summary["layers"]):
            fail(f"index: {rows} table rows for {len(summary['layers'])} layers")
        if page.locator("svg.chart").count() < 2:
            fail("index: the plots are missing")
        page.screenshot(path=str(args.screenshots / "index.png"), full_page=True)
        result["index"] = {"layers": rows}

        # The layer page.
        link = page.get_by_role("link", name=layer_name, exact=True).first
        link.click()
        page.wait_for_load_state("networkidle")
        cards = page.locator("article.card")
        if cards.count() != units:
            fail(f"layer {layer_name}: {cards.count()} cards for {units} units")

        def order():
            return page.eval_on_selector_all(
                "article.card:not([hidden])",
                "cs => cs.map(c => [Number(c.dataset.unit), Number(c.dataset.iou), c.dataset.category])",
            )

        before = order()
        if [u for u, _, _ in before] != list(range(units)):
            fail("layer: the cards do not start in unit order")
        # Every strip in the first screenful loads.
        page.wait_for_function(
            "() => [...document.querySelectorAll('article.card img')].slice(0, 4)"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        page.screenshot(path=str(args.screenshots / "layer.png"))

        page.select_option("#sort", "iou")
        after = order()
        ious = [i for _, i, _ in after]
        if ious != sorted(ious, reverse=True):
            fail("layer: sorting by score does not order the cards by IoU")
        reordered = [u for u, _, _ in after] != [u for u, _, _ in before]
        already = [i for _, i, _ in before] == ious
        if not reordered and not already:
            fail("layer: sorting by score did not reorder the cards")
        result["sort_reordered"] = reordered
        if sorted(after) != sorted(before):
            fail("layer: sorting lost or duplicated cards")
        result["sorted_first_units"] = [u for u, _, _ in after[:5]]

        # Filtering by the category of the best unit.
        category = after[0][2]
        page.select_option("#category", category)
        shown = order()
        want = sum(1 for _, _, c in before if c == category)
        if len(shown) != want or any(c != category for _, _, c in shown):
            fail(f"layer: filtering by {category} shows {len(shown)} cards, want {want}")
        hidden = page.locator("article.card[hidden]").count()
        if hidden != units - want:
            fail(f"layer: {hidden} hidden cards, want {units - want}")
        result["category_filter"] = {"category": category, "shown": len(shown), "hidden": hidden}
        page.screenshot(path=str(args.screenshots / "layer-filtered.png"))
        page.select_option("#category", "")

        # Filtering by text: a label of the best unit.
        label = page.locator("article.card:not([hidden]) .label").first.inner_text()
        page.fill("#filter", label)
        shown = page.eval_on_selector_all(
            "article.card:not([hidden])", "cs => cs.map(c => c.dataset.search)"
        )
        if not shown or any(label.lower() not in s for s in shown):
            fail(f"layer: the text filter {label!r} shows cards without it")
        result["text_filter"] = {"text": label, "shown": len(shown)}
        page.fill("#filter", "")

        if args.expect_text is not None:
            # The first card holding the text, scrolled into view, shows it as text.
            shown = page.evaluate(
                """(t) => {
                    const c = [...document.querySelectorAll('article.card')]
                        .find(c => c.textContent.includes(t));
                    if (!c) return false;
                    c.scrollIntoView();
                    return c.innerText.includes(t);
                }""",
                args.expect_text,
            )
            if not shown:
                fail(f"layer: the text {args.expect_text!r} is not shown")
            result["expected_text_shown"] = True

        # A unit's page, from its card.
        best = after[0][0]
        page.locator(f"#unit-{best} a.unit").click()
        page.wait_for_load_state("networkidle")
        images = page.eval_on_selector_all(
            ".pair img", "is => is.map(i => i.complete && i.naturalWidth > 0)"
        )
        if not images or not all(images):
            fail(f"unit {best}: {images.count(False)} of {len(images)} images did not load")
        page.screenshot(path=str(args.screenshots / "unit.png"), full_page=False)
        result["unit"] = {"unit": best, "images": len(images)}

        if args.explain:
            result["explain"] = check_explain(page, pages, args, visit, check_scripts)
        if args.single:
            result["single"] = check_single(page, args, visit, check_scripts)
        browser.close()

    outside = [u for u in requests if not (u.startswith("file://") or u.startswith("data:"))]
    if outside:
        fail(f"requests left the report's files: {outside[:5]}")
    if errors:
        fail(f"console errors: {errors[:5]}")
    if failed:
        fail(f"failed loads: {failed[:5]}")
    if dialogs:
        fail(f"dialogs opened (script ran from data?): {dialogs}")
    result["requests"] = len(requests)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
