//! The report's pages of explained predictions (`explain/` in a model's pages), on the
//! planted classifier of `explain.rs` with the pages turned on, in headless Chromium
//! (`tests/python/check_html.py --explain`): the index lists every image and its filters
//! work, an image page shows its class activation map and its top units' masks with links
//! to their unit pages, a class page lists its concepts, and no link or image of any page
//! points to a missing file. The same for the pages of `netdissect explain --html` on two
//! dataset images, whose units' masks must be the segment artifact's and whose units link
//! the report's unit pages in the cache.

use std::collections::BTreeMap;

use crate::common::{netdissect, only_dir};
use crate::explain::{check_page_masks, explain_cli, setup};
use crate::html::check_in_browser;

/// The `n` scenes that are the true class of the most images (the first scene label of a
/// row, as the explain stage reads the truth), most first.
fn commonest_scenes(data: &std::path::Path, n: usize) -> Vec<String> {
    let dataset = nd_broden::Dataset::open(data, &Default::default()).unwrap();
    let scene = dataset.category_index("scene").unwrap();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for row in 0..dataset.len() {
        let truth = dataset.items(row).find_map(|(c, item)| match item {
            nd_broden::Item::Label(number) if c == scene && number != 0 => Some(number),
            _ => None,
        });
        if let Some(number) = truth {
            *counts
                .entry(dataset.label_name(number).to_owned())
                .or_default() += 1;
        }
    }
    let mut names: Vec<(String, usize)> = counts.into_iter().collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    names.into_iter().take(n).map(|(name, _)| name).collect()
}

#[test]
fn explained_predictions_have_pages_that_work_in_a_browser_offline() {
    let dir = tempfile::tempdir().unwrap();
    // The dataset first; then the three classes are named after its commonest scenes, so
    // that the images of those scenes have a known true class (right or wrong).
    setup(dir.path(), "classifier", &["a", "b", "c"], "");
    let mut classes = commonest_scenes(&dir.path().join("data"), 3);
    assert!(!classes.is_empty(), "the dataset names no scene");
    while classes.len() < 3 {
        classes.push(format!("unseen-{}", classes.len()));
    }
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    // Two classes per image: the second's link must not point to a page a class never
    // predicted first lacks.
    let pipeline = setup(dir.path(), "classifier", &names, "top_k = 2");
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("pages = false", "pages = true\ntop_images = 4");
    std::fs::write(&pipeline, text).unwrap();
    let run = netdissect(&pipeline, &[]);
    assert!(run.ok, "{}", run.stderr);

    // The pages' key holds the explanations it shows.
    let explain = only_dir(&dir.path().join("cache/explain"));
    let manifest = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
    };
    let pages = manifest(&only_dir(&dir.path().join("cache/html")));
    assert_eq!(pages["inputs"]["explain"], manifest(&explain)["key"]);
    assert_eq!(pages["outputs"]["explain"]["image_pages"], 60, "{pages}");

    let model_dir = dir.path().join("results/planted");
    let html = model_dir.join("html");
    let index = std::fs::read_to_string(html.join("index.html")).unwrap();
    assert!(index.contains(r#"href="explain/index.html""#));
    let image_pages = std::fs::read_dir(html.join("explain/images"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "html")
        })
        .count();
    assert_eq!(image_pages, 60);

    // Two dataset images explained alone, their pages linking the report's unit pages.
    let data = nd_broden::Dataset::open(&dir.path().join("data"), &Default::default()).unwrap();
    let rows = [3, 8];
    let images: Vec<String> = rows
        .iter()
        .map(|&r| {
            let path = dir.path().join("data").join(data.image_file(r));
            path.to_str().unwrap().to_owned()
        })
        .collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let single = dir.path().join("single");
    let out = explain_cli(
        &pipeline,
        "planted",
        &images,
        &["--top-n", "5", "--html", single.to_str().unwrap()],
    );
    assert!(out.0, "{}", out.2);
    assert!(
        out.1
            .ends_with(&format!("pages: {}\n", single.join("index.html").display())),
        "{}",
        out.1
    );
    let segment = only_dir(&dir.path().join("cache/segment"));
    let mut nonempty = 0;
    for (i, &row) in rows.iter().enumerate() {
        let page = single.join(format!("images/{:04}.html", i + 1));
        let (checked, n) = check_page_masks(&page, &segment, "colors", row, [32, 32]);
        assert_eq!(checked, 5, "{}", page.display());
        nonempty += n;
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(html.contains("href=\"file://"), "units link their pages");
        assert!(!html.contains("not linked"));
    }
    assert!(
        nonempty > 0,
        "every mask is empty: the check checks nothing"
    );

    let shots = dir.path().join("screenshots");
    let summary = check_in_browser(
        &model_dir,
        &shots,
        &["--explain", "--single", single.to_str().unwrap()],
    );
    let explained = &summary["explain"];
    assert_eq!(explained["images"], 60, "{summary}");
    // Choosing a class leaves its rows only (the checker compares them row by row).
    let filter = &explained["class_filter"];
    assert!(filter["shown"].as_u64().unwrap() > 0, "{summary}");
    assert!(filter["hidden"].as_u64().unwrap() > 0, "{summary}");
    assert!(
        explained["correct_filter"].is_object(),
        "no right/wrong filter: {summary}"
    );
    assert!(explained["concept_filter"]["shown"].as_u64().unwrap() > 0);
    // The image page: its map, and all 11 units with their masks; a unit's link opens its
    // page with its images.
    assert_eq!(explained["image"]["cam"], true, "{summary}");
    assert_eq!(explained["image"]["units"], 11, "{summary}");
    assert_eq!(explained["image"]["masks"], 11, "{summary}");
    assert_eq!(explained["image"]["classes"], 2, "{summary}");
    assert!(
        explained["image"]["unit_page_images"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(
        explained["class"]["concepts"].as_u64().unwrap() > 0,
        "{summary}"
    );
    assert!(
        explained["class"]["examples"].as_u64().unwrap() > 0,
        "{summary}"
    );
    // Every href and src of every page resolves to a file.
    assert!(
        explained["links_checked"].as_u64().unwrap() > 60 * 11,
        "{summary}"
    );
    // The pages of the two images: the predicted class, every unit and its mask, and a
    // unit's link into the report.
    let alone = &summary["single"];
    assert_eq!(alone["images"], 2, "{summary}");
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(single.join("explained.json")).unwrap())
            .unwrap();
    assert_eq!(
        alone["image"]["predicted"],
        listed["images"][0]["class_name"]
    );
    assert!(names.contains(&alone["image"]["predicted"].as_str().unwrap()));
    assert_eq!(alone["image"]["units"], 5, "{summary}");
    assert_eq!(alone["image"]["masks"], 5, "{summary}");
    assert_eq!(alone["image"]["classes"], 2, "{summary}");
    let labels: Vec<&str> = alone["image"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(labels.iter().any(|l| l.ends_with("-c")), "{labels:?}");
    assert!(
        alone["image"]["unit_page_images"].as_u64().unwrap() > 0,
        "{summary}"
    );
    for shot in [
        "explain-index",
        "explain-image",
        "explain-class",
        "single-index",
        "single-image",
    ] {
        let bytes = std::fs::read(shots.join(format!("{shot}.png"))).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot}");
    }
}
