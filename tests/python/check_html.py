"""Opens a model's browsable report (nd-html) in headless Chromium and checks it as a user
would: pages load with no console error, no failed load and no request that leaves the
report's files; a layer page holds one card per unit; sorting by score reorders the cards;
filtering by category and by text hides the others; a unit's page shows its images.
Saves screenshots. Prints a JSON summary on stdout; exits non-zero on the first failure.

usage: check_html.py RESULTS_MODEL_DIR SCREENSHOT_DIR [--layer NAME] [--expect-text TEXT]

RESULTS_MODEL_DIR is a model's `[output] dir/<model>/` (its summary.json and html/).
"""

import argparse
import json
import os
import pathlib
import sys

from playwright.sync_api import sync_playwright


def fail(message):
    print(f"check_html: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=pathlib.Path)
    parser.add_argument("screenshots", type=pathlib.Path)
    parser.add_argument("--layer", help="the layer page to check (default: the last)")
    parser.add_argument("--expect-text", help="text that a layer page must show as text")
    parser.add_argument("--run-index", type=pathlib.Path, help="the run's index.html")
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

        def visit(url):
            page.goto(url, wait_until="load")
            page.wait_for_load_state("networkidle")
            scripts = page.eval_on_selector_all("script", "s => s.map(x => x.src)")
            if len(scripts) != 1 or not scripts[0].endswith("report.js"):
                fail(f"{url}: unexpected scripts {scripts}")

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
