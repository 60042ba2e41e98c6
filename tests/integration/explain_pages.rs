//! The report's pages of explained predictions (`explain/` in a model's pages), on the
//! planted classifier of `explain.rs` with the pages turned on, in headless Chromium
//! (`tests/python/check_html.py --explain`): the index lists every image and its filters
//! work, an image page shows its class activation map and its top units' masks with links
//! to their unit pages, a class page lists its concepts, and no link or image of any page
//! points to a missing file.

use std::collections::BTreeMap;

use crate::common::{netdissect, only_dir};
use crate::explain::setup;
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

    let shots = dir.path().join("screenshots");
    let summary = check_in_browser(&model_dir, &shots, &["--explain"]);
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
    for shot in ["explain-index", "explain-image", "explain-class"] {
        let bytes = std::fs::read(shots.join(format!("{shot}.png"))).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{shot}");
    }
}
