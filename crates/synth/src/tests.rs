use std::collections::BTreeMap;
use std::path::Path;

use nd_broden::{Config as ReadConfig, Dataset, Item};

use crate::{Config, ImageFormat, generate};

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn small(seed: u64) -> Config {
    Config {
        seed,
        images: 40,
        image_size: 48,
        ..Config::default()
    }
}

#[test]
fn same_seed_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    generate(&dir.path().join("a"), &small(7)).unwrap();
    generate(&dir.path().join("b"), &small(7)).unwrap();
    generate(&dir.path().join("c"), &small(8)).unwrap();
    let (a, b, c) = (
        files(&dir.path().join("a")),
        files(&dir.path().join("b")),
        files(&dir.path().join("c")),
    );
    assert!(a.len() > 40 * 3);
    assert!(a == b, "same seed wrote different files");
    assert_ne!(a.get("index.csv"), c.get("index.csv"));
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let err = generate(dir.path(), &small(1)).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn reader_accepts_it_at_odd_sizes_and_in_png() {
    let dir = tempfile::tempdir().unwrap();
    for (name, size, format) in [("a", 227, ImageFormat::Jpeg), ("b", 32, ImageFormat::Png)] {
        let out = dir.path().join(name);
        let config = Config {
            images: 6,
            image_size: size,
            format,
            ..Config::default()
        };
        generate(&out, &config).unwrap();
        let ds = Dataset::open(&out, &ReadConfig::default()).unwrap();
        ds.validate().unwrap();
        assert_eq!(ds.rows()[0].label_height, size / 2);
    }
}

/// Recounts every frequency and coverage of the CSVs from the label maps through the reader.
#[test]
fn statistics_match_the_label_maps() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    generate(
        &out,
        &Config {
            images: 120,
            image_size: 40,
            ..Config::default()
        },
    )
    .unwrap();
    let ds = Dataset::open(&out, &ReadConfig::default()).unwrap();
    ds.validate().unwrap();
    let n_cat = ds.categories().len();
    let mut freq = vec![vec![0u64; ds.n_labels()]; n_cat];
    let mut cov = vec![vec![0.0f64; ds.n_labels()]; n_cat];
    let mut pixel_labels = vec![0u64; n_cat];
    let mut image_labels = vec![0u64; n_cat];
    let mut zero_items = 0;
    let mut splits = std::collections::BTreeSet::new();
    for row in 0..ds.len() {
        let labels = ds.read_labels(row).unwrap();
        splits.insert(ds.split(row).to_owned());
        let area = (labels.height * labels.width) as f64;
        let mut per: BTreeMap<(usize, u32), f64> = BTreeMap::new();
        for map in &labels.maps {
            for &p in map.pixels.iter().filter(|&&p| p != 0) {
                *per.entry((map.category, u32::from(p))).or_default() += 1.0 / area;
                pixel_labels[map.category] += 1;
            }
        }
        for item in &labels.image_labels {
            if item.label == 0 {
                zero_items += 1;
                continue;
            }
            *per.entry((item.category, item.label)).or_default() += 1.0;
            image_labels[item.category] += 1;
        }
        for ((c, l), f) in per {
            freq[c][l as usize] += 1;
            cov[c][l as usize] += f;
        }
    }
    for (c, category) in ds.categories().iter().enumerate() {
        for code in ds.category_codes(c) {
            let n = code.number as usize;
            assert_eq!(
                code.frequency, freq[c][n],
                "{} {}",
                category.name, code.name
            );
            let expected = if freq[c][n] == 0 {
                0.0
            } else {
                cov[c][n] / freq[c][n] as f64
            };
            assert!(
                (code.coverage - expected).abs() < 1e-6,
                "{} {}: {} vs {expected}",
                category.name,
                code.name,
                code.coverage
            );
            let (_, count) = ds
                .label(code.number)
                .unwrap()
                .categories
                .iter()
                .find(|(name, _)| name == &category.name)
                .unwrap();
            assert_eq!(*count, freq[c][n]);
        }
        let images = (0..ds.len())
            .filter(|&r| {
                let l = ds.read_labels(r).unwrap();
                l.maps
                    .iter()
                    .any(|m| m.category == c && m.pixels.iter().any(|&p| p != 0))
                    || l.image_labels
                        .iter()
                        .any(|i| i.category == c && i.label != 0)
            })
            .count() as u64;
        assert_eq!(category.frequency, images, "{}", category.name);
        // Every category is exercised.
        assert!(
            pixel_labels[c] + image_labels[c] > 0,
            "{} is never used",
            category.name
        );
        assert!(
            ds.category_codes(c)
                .iter()
                .filter(|code| code.frequency > 0)
                .count()
                >= 2,
            "{}",
            category.name
        );
    }
    let [color, object, part, material, scene, texture] = [0, 1, 2, 3, 4, 5];
    for c in [color, object, part, material] {
        assert!(pixel_labels[c] > 0 && image_labels[c] == 0);
    }
    for c in [scene, texture] {
        assert!(image_labels[c] > 0 && pixel_labels[c] == 0);
    }
    assert!(zero_items > 0, "no label-0 image-level item");
    assert_eq!(splits.into_iter().collect::<Vec<_>>(), ["train", "val"]);
    // Several part layers in one cell, and a label in two categories.
    assert!((0..ds.len()).any(|row| {
        ds.items(row)
            .filter(|&(c, i)| c == part && matches!(i, Item::Map(_)))
            .count()
            == 2
    }));
    let paper = ds
        .label(
            ds.category_codes(object)
                .iter()
                .find(|c| c.name == "paper")
                .unwrap()
                .number,
        )
        .unwrap();
    assert_eq!(
        paper
            .categories
            .iter()
            .map(|(c, _)| c.as_str())
            .collect::<Vec<_>>(),
        ["object", "material"]
    );
    // Fifteen kinds of objects all appear.
    assert_eq!(
        ds.category_codes(object)
            .iter()
            .filter(|c| c.frequency > 0)
            .count(),
        15
    );
}

/// A unit's mask covers `q_top` = 0.5 % of all label pixels, and an image-level label all
/// of its images' pixels, so a label on more than an eighth of the images could never
/// reach IoU 0.04: scenes and textures must each stay well below that, and all appear.
#[test]
fn image_level_labels_leave_room_for_detectors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    let images = 1500;
    generate(
        &out,
        &Config {
            images,
            image_size: 16,
            ..Config::default()
        },
    )
    .unwrap();
    let ds = Dataset::open(&out, &ReadConfig::default()).unwrap();
    for name in ["scene", "texture"] {
        let c = ds.categories().iter().position(|c| c.name == name).unwrap();
        let codes = ds.category_codes(c);
        assert!(codes.len() >= 12, "{name}: {} labels", codes.len());
        for code in codes {
            let share = code.frequency as f64 / images as f64;
            assert!(
                (0.01..0.1).contains(&share),
                "{name} {} labels {:.1} % of the images",
                code.name,
                share * 100.0
            );
        }
    }
}

/// The bytes a small config writes, pinned: a change to the generator must bump
/// `GENERATOR_VERSION` (so caches keyed on the config do not serve the old world) and
/// update this digest.
#[test]
fn output_is_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d");
    generate(&out, &small(3)).unwrap();
    let mut hasher = blake3::Hasher::new();
    for (name, bytes) in files(&out) {
        hasher.update(name.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    assert_eq!(
        (
            crate::GENERATOR_VERSION,
            hasher.finalize().to_hex().to_string()
        ),
        (
            2,
            String::from("e3cedbccb98b989791a6c8da874a27301ebb77f6c23b2f368503c435c0f6f76c")
        ),
        "the generator's output changed: bump GENERATOR_VERSION and update this test"
    );
}
