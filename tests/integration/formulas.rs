//! The formulas stage: planted units get exactly their formulas; the stage agrees with an
//! independent brute-force NumPy reference (`tests/python/formulas_ref.py`, every formula
//! materialised) on the beam search and on every formula up to length 2; length 1 is the
//! score stage's best label.

use std::path::Path;

use nd_arrays::masks::{MASKS_DIR, MaskGroup, Run, encode_runs};
use nd_formulas::{Config, Denominator, Op};
use serde_json::json;

const SIZE: u32 = 16;
const IMAGES: usize = 12;

/// A small deterministic generator (no dependency): the dataset only needs variety.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u16) -> u16 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % u64::from(n)) as u16
    }
}

// Labels: 1 red-c, 2 blue-c, 3 green-c (color); 4 dog, 5 cat, 6 car (object);
// 7 striped, 8 dotted (texture, image-level).
const NAMES: [&str; 9] = [
    "", "red-c", "blue-c", "green-c", "dog", "cat", "car", "striped", "dotted",
];
const DOG: u16 = 4;
const CAT: u16 = 5;
const RED: u16 = 1;

fn label_png(path: &Path, labels: &[u16]) {
    let img = image::RgbImage::from_fn(SIZE, SIZE, |x, y| {
        let l = labels[(y * SIZE + x) as usize];
        image::Rgb([(l & 0xff) as u8, (l >> 8) as u8, 0])
    });
    img.save(path).unwrap();
}

/// Blocky random maps: colour in 4×4 blocks everywhere, objects in 4×4 blocks shifted by
/// two pixels (or none), a texture per image. Returns each image's (colour, object) maps.
fn write_dataset(root: &Path) -> Vec<(Vec<u16>, Vec<u16>)> {
    std::fs::create_dir_all(root.join("images")).unwrap();
    let files = [
        (
            "category.csv",
            "name,first,last,count,frequency\ncolor,1,3,3,12\nobject,4,6,3,12\ntexture,7,8,2,12\n",
        ),
        (
            "label.csv",
            "number,name,category,frequency,coverage,syns\n1,red-c,color(12),12,0.3,\n\
             2,blue-c,color(12),12,0.3,\n3,green-c,color(12),12,0.3,\n4,dog,object(12),12,0.2,\n\
             5,cat,object(12),12,0.2,\n6,car,object(12),12,0.2,\n7,striped,texture(6),6,1.0,\n\
             8,dotted,texture(6),6,1.0,\n",
        ),
        (
            "c_color.csv",
            "code,number,name,frequency,coverage\n1,1,red-c,12,0.3\n2,2,blue-c,12,0.3\n3,3,green-c,12,0.3\n",
        ),
        (
            "c_object.csv",
            "code,number,name,frequency,coverage\n1,4,dog,12,0.2\n2,5,cat,12,0.2\n3,6,car,12,0.2\n",
        ),
        (
            "c_texture.csv",
            "code,number,name,frequency,coverage\n1,7,striped,6,1.0\n2,8,dotted,6,1.0\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(root.join(name), text).unwrap();
    }
    let mut rng = Lcg(7);
    let mut index = String::from("image,split,ih,iw,sh,sw,color,object,texture\n");
    let mut maps = Vec::new();
    for i in 0..IMAGES {
        let block = |rng: &mut Lcg, choices: &[u16], shift: u32| {
            let cells: Vec<u16> = (0..25)
                .map(|_| choices[rng.next(choices.len() as u16) as usize])
                .collect();
            (0..SIZE * SIZE)
                .map(|p| {
                    let (y, x) = ((p / SIZE + shift) / 4, (p % SIZE + shift) / 4);
                    cells[(y * 5 + x) as usize]
                })
                .collect::<Vec<u16>>()
        };
        let color = block(&mut rng, &[1, 2, 3], 0);
        let object = block(&mut rng, &[0, 0, 4, 5, 6], 2);
        label_png(&root.join(format!("images/{i}_color.png")), &color);
        label_png(&root.join(format!("images/{i}_object.png")), &object);
        image::RgbImage::new(SIZE, SIZE)
            .save(root.join(format!("images/{i}.png")))
            .unwrap();
        let texture = 7 + (i % 2);
        index.push_str(&format!(
            "{i}.png,train,{SIZE},{SIZE},{SIZE},{SIZE},{i}_color.png,{i}_object.png,{texture}\n"
        ));
        maps.push((color, object));
    }
    std::fs::write(root.join("index.csv"), index).unwrap();
    maps
}

/// A segment artifact whose layer `planted` has one unit per predicate on (colour,
/// object) pixel labels.
fn write_masks(
    store: &nd_store::Store,
    maps: &[(Vec<u16>, Vec<u16>)],
    units: &[&dyn Fn(u16, u16) -> bool],
) -> nd_store::Artifact {
    let spec = nd_store::Spec::new("segment", 1, json!({"planted": units.len()}));
    let pending = store.begin(&spec).unwrap();
    let group = MaskGroup::create(&pending.dir().join(MASKS_DIR)).unwrap();
    let mut writer = group.create_layer("planted").unwrap();
    for (color, object) in maps {
        let mut masks: Vec<(u32, Vec<Run>)> = Vec::new();
        for (u, holds) in units.iter().enumerate() {
            let mut runs = Vec::new();
            encode_runs(
                color.iter().zip(object).map(|(&c, &o)| holds(c, o)),
                &mut runs,
            );
            if !runs.is_empty() {
                masks.push((u as u32, runs));
            }
        }
        writer.push(&masks).unwrap();
    }
    writer.finish().unwrap();
    pending
        .commit(
            nd_store::versions(),
            json!({"layers": [{"name": "planted", "units": units.len()}], "rows": [0, maps.len()]}),
        )
        .unwrap()
}

#[test]
fn planted_units_get_exactly_their_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dataset");
    let maps = write_dataset(&root);
    let dataset = nd_broden::Dataset::open(&root, &Default::default()).unwrap();
    for (n, name) in NAMES.iter().enumerate().skip(1) {
        assert_eq!(dataset.label_name(n as u32), *name);
    }
    let store = nd_store::Store::open(&dir.path().join("cache")).unwrap();
    let a_or_b = |_: u16, o: u16| o == DOG || o == CAT;
    let a_not_c = |c: u16, o: u16| o == DOG && c != RED;
    let or_not = |c: u16, o: u16| (o == DOG || o == CAT) && c != RED;
    let single = |_: u16, o: u16| o == CAT;
    let masks = write_masks(
        &store,
        &maps,
        &[&a_or_b, &a_not_c, &or_not, &single, &|_, _| false],
    );
    for denominator in [Denominator::Lite, Denominator::Original] {
        let config = Config {
            denominator,
            ..Config::default()
        };
        let outcome =
            nd_formulas::run(&store, &dataset, std::slice::from_ref(&masks), &config).unwrap();
        assert!(outcome.computed);
        let rows =
            nd_tables::formulas::read_rows(&outcome.artifact.dir.join(nd_tables::formulas::FILE))
                .unwrap();
        assert_eq!(rows.len(), 5 * 3);
        let best = |unit: u32| {
            let row = rows.iter().find(|r| r.unit == unit && r.best).unwrap();
            (row.formula.as_ref().unwrap().text.clone(), row.iou)
        };
        assert_eq!(best(0), ("dog OR cat".to_owned(), 1.0));
        assert_eq!(best(1), ("dog AND NOT red-c".to_owned(), 1.0));
        assert_eq!(best(2), ("(dog OR cat) AND NOT red-c".to_owned(), 1.0));
        assert_eq!(best(3), ("cat".to_owned(), 1.0));
        // The planted formula's row has its parts, and shorter lengths do worse.
        let row = rows.iter().find(|r| r.unit == 2 && r.length == 3).unwrap();
        let f = row.formula.as_ref().unwrap();
        assert_eq!(f.labels, [4, 5, 1]);
        assert_eq!(f.ops, ["or", "and_not"]);
        assert_eq!(f.names, ["dog", "cat", "red-c"]);
        assert_eq!(row.intersect, row.truth);
        for length in [1, 2] {
            let r = rows
                .iter()
                .find(|r| r.unit == 2 && r.length == length)
                .unwrap();
            assert!(r.iou < 1.0 && !r.best, "{r:?}");
        }
        // A dead unit has no formula at any length.
        assert!(
            rows.iter()
                .filter(|r| r.unit == 4)
                .all(|r| r.formula.is_none() && r.iou == 0.0)
        );
        // Again: fresh.
        let again =
            nd_formulas::run(&store, &dataset, std::slice::from_ref(&masks), &config).unwrap();
        assert!(!again.computed);
    }
    // Without OR, "dog OR cat" cannot be said; with only OR, "dog AND NOT red-c" cannot.
    let config = Config {
        ops: vec![Op::And, Op::AndNot],
        ..Config::default()
    };
    let found = nd_formulas::find(&dataset, std::slice::from_ref(&masks), &config).unwrap();
    let unit0 = &found.layers[0].1[0];
    let best = unit0.by_length[unit0.best.unwrap() - 1].unwrap();
    assert!(best.iou < 1.0);
    assert!(best.formula.ops().iter().all(|&o| o != Op::Or));
}

#[test]
fn bad_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dataset");
    let maps = write_dataset(&root);
    let dataset = nd_broden::Dataset::open(&root, &Default::default()).unwrap();
    let store = nd_store::Store::open(&dir.path().join("cache")).unwrap();
    let masks = write_masks(&store, &maps, &[&|_, o| o == DOG]);
    let err = |config: Config| {
        nd_formulas::run(&store, &dataset, std::slice::from_ref(&masks), &config)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(Config {
            max_length: 0,
            ..Config::default()
        })
        .contains("max_length must be 1 to 10, got 0")
    );
    assert!(
        err(Config {
            max_length: 11,
            ..Config::default()
        })
        .contains("max_length must be 1 to 10")
    );
    assert!(
        err(Config {
            beam: 0,
            ..Config::default()
        })
        .contains("beam must be at least 1")
    );
    assert!(
        err(Config {
            ops: vec![],
            ..Config::default()
        })
        .contains("ops: give at least one")
    );
    assert!(
        err(Config {
            ops: vec![Op::Or, Op::Or],
            ..Config::default()
        })
        .contains("given twice")
    );
    let e = err(Config {
        categories: Some(vec!["scene".into()]),
        ..Config::default()
    });
    assert!(
        e.contains("categories: `scene` is not a loaded category (color, object, texture)"),
        "{e}"
    );
    assert!(!dir.path().join("cache/formulas").exists());
}

/// A small dissection of the demo model's first two layers (96 units) on a synthetic
/// dataset; returns (cache, dataset dir, segment artifact dir, score artifact dir).
type Dissection = (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
);

fn dissected(dir: &Path) -> Dissection {
    dissected_with(dir, "[html]\npages = false\n")
}

fn dissected_with(dir: &Path, extra: &str) -> Dissection {
    let demo = crate::common::repo().join("models/demo/demo-trained.pt");
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"
[dataset]
synth = {{ images = 40, size = 64, seed = 5 }}

[cache]
dir = "cache"

[[model]]
name = "demo"
file = "{}"
layers = ["conv1", "conv2"]
preprocess = "torchvision"

[quantile]
top = 0.02

{extra}

[output]
dir = "results"
"#,
            demo.display()
        ),
    )
    .unwrap();
    let run = crate::common::netdissect(&pipeline, &[]);
    assert!(run.ok, "{}", run.stderr);
    let cache = dir.join("cache");
    let only = crate::common::only_dir;
    let dataset = only(&cache.join("synth")).join("dataset");
    (
        cache.clone(),
        dataset,
        only(&cache.join("segment")),
        only(&cache.join("score")),
    )
}

/// `nd-formulas ARGS`; the artifact's directory.
fn nd_formulas(args: &[&str]) -> std::path::PathBuf {
    let output = std::process::Command::new(crate::workflow::bin_dir().join("nd-formulas"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "nd-formulas {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Every row of our table against the reference's, exactly (counts) and to 1e-9 (IoU).
fn agree(ours: &Path, reference: &Path) -> usize {
    let rows = nd_tables::formulas::read_rows(&ours.join(nd_tables::formulas::FILE)).unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reference).unwrap()).unwrap();
    let mut compared = 0;
    let mut longer = 0;
    for row in &rows {
        let unit = &theirs["layers"][&row.layer][row.unit as usize];
        assert_eq!(unit["unit"], row.unit);
        let f = &unit["formulas"][row.length as usize - 1];
        assert_eq!(f["length"], row.length);
        let what = format!("{} unit {} length {}", row.layer, row.unit, row.length);
        match &row.formula {
            None => assert!(f["labels"].is_null(), "{what}: ours none, theirs {f}"),
            Some(formula) => {
                assert_eq!(f["labels"], json!(formula.labels), "{what}: {f}");
                assert_eq!(f["ops"], json!(formula.ops), "{what}: {f}");
                assert_eq!(f["text"], json!(formula.text), "{what}");
                assert_eq!(f["inter"], row.intersect, "{what}");
                assert_eq!(f["act"], row.activation, "{what}");
                assert_eq!(f["truth"], row.truth, "{what}");
                let iou = f["iou"].as_f64().unwrap();
                assert!(
                    (iou - row.iou).abs() <= 1e-9 * iou.max(1e-300),
                    "{what}: {iou} {}",
                    row.iou
                );
                if row.length > 1 {
                    longer += 1;
                }
            }
        }
        assert_eq!(
            unit["best"].as_u64() == Some(u64::from(row.length)),
            row.best,
            "{what}: best"
        );
        compared += 1;
    }
    assert!(
        longer > 0,
        "no formula longer than one concept was compared"
    );
    compared
}

#[test]
fn the_search_agrees_with_a_brute_force_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, dataset, masks, scores) = dissected(dir.path());
    let (cache, dataset, masks) = (
        cache.to_str().unwrap(),
        dataset.to_str().unwrap(),
        masks.to_str().unwrap(),
    );
    let reference = |name: &str, args: &[&str]| {
        let out = dir.path().join(name);
        let mut all = vec![
            "tests/python/formulas_ref.py",
            "--dataset",
            dataset,
            "--masks",
            masks,
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend(args);
        crate::common::python(&all);
        out
    };
    // The beam search to length 3 (beam 10), by both denominators.
    for denominator in ["lite", "original"] {
        let ours = nd_formulas(&[
            "--masks",
            masks,
            "--dataset",
            dataset,
            "--cache",
            cache,
            "--denominator",
            denominator,
        ]);
        let theirs = reference(
            &format!("beam-{denominator}.json"),
            &["--denominator", denominator],
        );
        assert_eq!(agree(&ours, &theirs), 96 * 3);
    }
    // Every formula up to length 2: the beam at least as wide as the concepts.
    let ours = nd_formulas(&[
        "--masks",
        masks,
        "--dataset",
        dataset,
        "--cache",
        cache,
        "--max-length",
        "2",
        "--beam",
        "10000",
    ]);
    let theirs = reference("exhaustive.json", &["--max-length", "2", "--exhaustive"]);
    assert_eq!(agree(&ours, &theirs), 96 * 2);
    // A narrow beam over two operators, on object and colour concepts of 2+ images.
    let ours = nd_formulas(&[
        "--masks",
        masks,
        "--dataset",
        dataset,
        "--cache",
        cache,
        "--beam",
        "3",
        "--ops",
        "or,and_not",
        "--only-categories",
        "object,color",
        "--min-images",
        "2",
    ]);
    let theirs = reference(
        "narrow.json",
        &[
            "--beam",
            "3",
            "--ops",
            "or,and_not",
            "--categories",
            "object,color",
            "--min-images",
            "2",
        ],
    );
    agree(&ours, &theirs);

    // Length 1 is the score stage's best label: the same IoU, and the same label unless
    // two labels tie.
    let lite = nd_formulas(&["--masks", masks, "--dataset", dataset, "--cache", cache]);
    let rows = nd_tables::formulas::read_rows(&lite.join(nd_tables::formulas::FILE)).unwrap();
    let mut best: std::collections::BTreeMap<(String, u32), Vec<(f64, u32)>> = Default::default();
    nd_tables::scores::for_each_row(
        &scores.join(nd_tables::scores::FILE),
        |r| -> nd_tables::Result<()> {
            if r.label != 0 {
                best.entry((r.layer.to_owned(), r.unit))
                    .or_default()
                    .push((r.iou, r.label));
            }
            Ok(())
        },
    )
    .unwrap();
    let mut checked = 0;
    for row in rows.iter().filter(|r| r.length == 1) {
        let scored = best
            .get(&(row.layer.clone(), row.unit))
            .cloned()
            .unwrap_or_default();
        let top = scored.iter().map(|s| s.0).fold(0.0f64, f64::max);
        assert_eq!(row.iou, top, "{} unit {}", row.layer, row.unit);
        if top > 0.0 {
            let at_top: Vec<u32> = scored.iter().filter(|s| s.0 == top).map(|s| s.1).collect();
            let label = row.formula.as_ref().unwrap().labels[0];
            assert!(
                at_top.contains(&label),
                "{} unit {}: {label} not in {at_top:?}",
                row.layer,
                row.unit
            );
            checked += 1;
        }
    }
    assert!(checked > 48, "only {checked} units overlap a concept");
}

/// The reference's own test: planted formulas, hand-counted denominators, exhaustive
/// against a wide beam (`tests/python/test_formulas_ref.py`).
#[test]
fn the_reference_passes_its_own_test() {
    let out = crate::common::python(&["tests/python/test_formulas_ref.py"]);
    assert!(out.contains("test_formulas_ref: ok"), "{out}");
}

/// `[formulas]` mistakes fail before any work, naming their line.
#[test]
fn pipeline_mistakes_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[dataset]\nsynth = { images = 4, size = 32, seed = 1 }\n\n[cache]\ndir = \"cache\"\n\n\
                [[model]]\nname = \"m\"\nfile = \"m.pt\"\nlayers = [\"conv1\"]\n\n[formulas]\n";
    for (line, want) in [
        (
            "max_length = 0",
            "pipeline.toml:13:14: formulas.max_length must be 1 to 10, got 0",
        ),
        (
            "beam = 0",
            "pipeline.toml:13:8: formulas.beam must be at least 1",
        ),
        (
            "ops = [\"and\", \"xor\"]",
            "pipeline.toml:13:7: formulas.ops: unknown operator `xor`",
        ),
        (
            "gain = 2.0",
            "pipeline.toml:13:8: formulas.gain must be between 0 and 1",
        ),
        (
            "categories = []",
            "pipeline.toml:13:14: formulas.categories: give at least one",
        ),
        ("depth = 3", "unknown field `depth`"),
    ] {
        let path = dir.path().join("pipeline.toml");
        std::fs::write(&path, format!("{base}{line}\n")).unwrap();
        let run = crate::common::netdissect(&path, &[]);
        assert!(!run.ok, "{line}");
        assert!(run.stderr.contains(want), "{line}: {}", run.stderr);
        assert!(!dir.path().join("cache").exists(), "{line}");
    }
}

/// With `[formulas]` and pages, `netdissect run` prints the per-layer summary, copies the
/// table, and the pages show each unit's best formula: on its card, in a table on its page,
/// and drawn beside its mask on the top images.
#[test]
fn pipelines_print_and_pages_show_the_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    dissected_with(
        d,
        "[formulas]\nmax_length = 2\nbeam = 5\n\n[html]\npages = true\ntop_images = 3\n",
    );
    let run = crate::common::netdissect(&d.join("pipeline.toml"), &[]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stdout.contains("formulas of demo (length ≤ 2, beam 5): units whose best formula beats their best single concept by ≥ 0.01 IoU"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("layer  units  better  mean IoU: concept  formula\nconv1     32"),
        "{}",
        run.stdout
    );
    let rows = nd_tables::formulas::read_rows(&d.join("results/demo/formulas.parquet")).unwrap();
    assert_eq!(rows.len(), 96 * 2);

    // The report's per-layer figures count the units whose best formula beats the report's
    // own label (the score stage's best single concept) by the gain, 0.01.
    let units = nd_tables::read(&d.join("results/demo/units.parquet")).unwrap();
    let layers = nd_tables::strings(&units, "layer").unwrap();
    let unit_numbers = nd_tables::values::<arrow::datatypes::UInt32Type>(&units, "unit").unwrap();
    let label_iou = nd_tables::values::<arrow::datatypes::Float64Type>(&units, "iou").unwrap();
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("results/demo/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["formula_gain"], 0.01);
    let mut total = 0;
    for layer in summary["layers"].as_array().unwrap() {
        let name = layer["layer"].as_str().unwrap();
        let better = (0..layers.len())
            .filter(|&i| layers[i] == name)
            .filter(|&i| {
                let best = rows
                    .iter()
                    .filter(|r| r.layer == name && r.unit == unit_numbers[i])
                    .map(|r| r.iou)
                    .fold(0.0, f64::max);
                best - label_iou[i] >= 0.01
            })
            .count();
        assert_eq!(layer["formulas"]["better"], better, "{name}");
        total += better;
    }
    assert!(total > 0, "some unit is better explained by a formula");
    let table = nd_tables::read(&d.join("results/demo/layers.parquet")).unwrap();
    assert_eq!(
        nd_tables::values::<arrow::datatypes::UInt32Type>(&table, "formula_better")
            .unwrap()
            .iter()
            .sum::<u32>() as usize,
        total
    );
    assert!(
        run.stdout
            .contains("by formula: units whose best formula of concepts beats"),
        "{}",
        run.stdout
    );
    // A unit whose best formula is two concepts long: its card and page show it.
    let row = rows
        .iter()
        .find(|r| r.best && r.length == 2 && r.layer == "conv2")
        .expect("some conv2 unit is best explained by a formula");
    let text = row.formula.as_ref().unwrap().text.replace('&', "&amp;");
    let html = d.join("results/demo/html");
    let files: Vec<std::path::PathBuf> = walk(&html);
    let index = std::fs::read_to_string(html.join("index.html")).unwrap();
    assert!(
        index.contains("better by formula</th>"),
        "the layer table counts the units a formula explains better"
    );
    let layer_page = files
        .iter()
        .find(|p| {
            p.extension().is_some_and(|e| e == "html")
                && p.parent() == Some(html.as_path())
                && std::fs::read_to_string(p)
                    .unwrap()
                    .contains("<section id=\"cards\"")
                && p.to_string_lossy().contains("conv2")
        })
        .unwrap();
    let layer_page = std::fs::read_to_string(layer_page).unwrap();
    let card = layer_page
        .split("<article")
        .find(|c| c.contains(&format!("data-unit=\"{}\"", row.unit)))
        .unwrap();
    assert!(
        card.contains("class=\"formula\"") && card.contains(&text),
        "{card}"
    );
    let unit_page = files
        .iter()
        .find(|p| {
            p.to_string_lossy().contains("conv2")
                && p.file_name().unwrap().to_string_lossy() == format!("unit-{:04}.html", row.unit)
        })
        .unwrap();
    let page = std::fs::read_to_string(unit_page).unwrap();
    assert!(
        page.contains("<h2>Formulas</h2>") && page.contains(&text),
        "{page}"
    );
    assert!(page.contains(&format!(
        "right: where its best formula, <b>{text}</b>, holds"
    )));
    // Three panels per top image: the unit's mask, the label, the formula.
    let figure = page.split("<figure class=\"pair\">").nth(1).unwrap();
    assert_eq!(figure.matches("class=\"panel\"").count(), 3, "{figure}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}
