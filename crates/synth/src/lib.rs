//! Writes synthetic datasets in the Broden layout, deterministically from a seed.
//!
//! Each image is one of twelve scenes (`street-s`, `park-s`, ...: a background layout,
//! the objects likely in it and where they stand) or, one time in eight, a random layout
//! no scene names (image-level item 0); its background may carry a pattern (image-level
//! texture labels from fourteen, sometimes two, and item 0 for a plain background, like
//! the concepts Broden's frequency filter dropped); up to four objects from a vocabulary of
//! fifteen are drawn at varied sizes and positions over one another. Objects carry materials (pixel labels, each with its own look), composite
//! objects carry parts on two label layers (a door lies on a wall), and every label pixel
//! is named by the nearest of Broden's eleven colours from the rendered RGB. `paper` is
//! both an object and a material. Every frequency and coverage in the CSVs is counted from
//! the label maps written.
//!
//! Same config, same bytes: the random stream of image `i` depends only on the seed and
//! `i`, rendering is analytic, and images are encoded by fixed encoders.
//!
//! ```no_run
//! let config = nd_synth::Config { images: 100, ..Default::default() };
//! nd_synth::generate("synth-dataset".as_ref(), &config)?;
//! # Ok::<(), nd_synth::Error>(())
//! ```

mod render;
pub mod vocab;

use std::path::{Path, PathBuf};

use nd_broden::write::{
    IndexRow, Occurrence, Vocabulary, occurrences, write_image, write_label_png, write_tables,
};
use rayon::prelude::*;

use render::{Composition, Rng, nearest_color};
use vocab::*;

/// Errors while writing a synthetic dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode {}: {message}", path.display())]
    Encode { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] nd_store::Error),
    #[error(transparent)]
    Broden(#[from] nd_broden::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The version of what the generator writes. A cache keyed on a config must include it:
/// bump it whenever the same config would write different bytes (the test
/// `output_is_pinned` fails until it is bumped and its digest updated).
pub const GENERATOR_VERSION: u32 = 2;

/// How images are stored. Broden uses JPEG; PNG gives lossless images, for tests that
/// compare decoded pixels across decoders.
pub use nd_broden::write::ImageFormat;

#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub images: usize,
    /// Image side in pixels; label maps are `image_size / 2` (integer division), as in Broden.
    pub image_size: u32,
    pub format: ImageFormat,
    /// The share of images in the `val` split.
    pub val_fraction: f32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: 1,
            images: 1000,
            image_size: 224,
            format: ImageFormat::Jpeg,
            val_fraction: 0.2,
        }
    }
}

/// The store spec of a dataset generated into a cache: everything that changes its bytes.
pub fn spec(config: &Config) -> nd_store::Spec {
    let mut params = serde_json::json!({
        "images": config.images,
        "size": config.image_size,
        "seed": config.seed,
        "format": config.format.extension(),
        "generator": GENERATOR_VERSION,
    });
    // Absent at its default, so the keys of datasets made before it was a setting hold.
    if config.val_fraction != Config::default().val_fraction {
        params["val_fraction"] = serde_json::json!(config.val_fraction);
    }
    nd_store::Spec::new("synth", 1, params)
}

/// Generates the dataset into the cache as a `synth` artifact (once: the same config finds
/// it there), under its `dataset/` directory.
pub fn generate_cached(store: &nd_store::Store, config: &Config) -> Result<nd_store::Outcome> {
    let spec = spec(config);
    if let Some(artifact) = store.get(&spec)? {
        return Ok(nd_store::Outcome {
            artifact,
            computed: false,
        });
    }
    let pending = store.begin(&spec)?;
    generate(&pending.dir().join("dataset"), config)?;
    let artifact = pending.commit(
        nd_store::versions(),
        serde_json::json!({ "dataset": "dataset" }),
    )?;
    Ok(nd_store::Outcome {
        artifact,
        computed: true,
    })
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Summary {
    pub images: usize,
    pub labels: usize,
    pub label_size: u32,
}

/// One image's rendering and labels.
struct Rendered {
    rgb: image::RgbImage,
    /// Pixel label layers per category: color, object, part (two layers), material.
    color: Vec<u16>,
    object: Vec<u16>,
    part: Vec<u16>,
    overlay_part: Vec<u16>,
    material: Vec<u16>,
    scene: Option<Scene>,
    textures: Vec<Texture>,
    val: bool,
}

fn render(config: &Config, index: usize) -> Rendered {
    let mut rng = Rng::new(config.seed, index as u64);
    let size = config.image_size;
    let label_size = size / 2;
    let composition = Composition::random(&mut rng, size);
    let val = rng.chance(config.val_fraction);
    let rgb = image::RgbImage::from_fn(size, size, |x, y| {
        let (u, v) = (
            (x as f32 + 0.5) / size as f32,
            (y as f32 + 0.5) / size as f32,
        );
        image::Rgb(composition.sample(u, v).rgb.map(|c| c.round() as u8))
    });
    let n = (label_size * label_size) as usize;
    let mut out = Rendered {
        color: Vec::with_capacity(n),
        object: Vec::with_capacity(n),
        part: Vec::with_capacity(n),
        overlay_part: Vec::with_capacity(n),
        material: Vec::with_capacity(n),
        scene: composition.scene,
        textures: composition.textures.clone(),
        val,
        rgb,
    };
    let span = |l: u32| {
        let lo = l * size / label_size;
        let hi = ((l + 1) * size / label_size).max(lo + 1);
        lo..hi
    };
    for ly in 0..label_size {
        for lx in 0..label_size {
            let (u, v) = (
                (lx as f32 + 0.5) / label_size as f32,
                (ly as f32 + 0.5) / label_size as f32,
            );
            let sample = composition.sample(u, v);
            out.object.push(sample.object);
            out.part.push(sample.part);
            out.overlay_part.push(sample.overlay_part);
            out.material.push(sample.material);
            // The colour name comes from the rendered pixels under the label cell.
            let mut sum = [0.0f32; 3];
            let mut count = 0.0;
            for y in span(ly) {
                for x in span(lx) {
                    let p = out.rgb.get_pixel(x, y).0;
                    for k in 0..3 {
                        sum[k] += p[k] as f32;
                    }
                    count += 1.0;
                }
            }
            out.color
                .push(color_label(nearest_color(sum.map(|s| s / count))));
        }
    }
    out
}

/// Per-image label statistics.
type Occurrences = Vec<Occurrence>;

/// Writes one image and its label maps; returns its `index.csv` row and its occurrences.
fn write_one(root: &Path, config: &Config, index: usize) -> Result<(IndexRow, Occurrences)> {
    let r = render(config, index);
    let size = config.image_size;
    let label_size = size / 2;
    let stem = format!("synth/{index:06}");
    let images = root.join("images");
    write_image(
        &images.join(format!("{stem}.{}", config.format.extension())),
        config.format,
        &r.rgb,
    )?;
    let mut occ = Occurrences::new();
    let mut cells: Vec<String> = vec![String::new(); CATEGORIES.len()];
    let layers: [(usize, &str, &[u16]); 5] = [
        (COLOR, "color", &r.color),
        (OBJECT, "object", &r.object),
        (PART, "part_1", &r.part),
        (PART, "part_2", &r.overlay_part),
        (MATERIAL, "material", &r.material),
    ];
    for (category, suffix, pixels) in layers {
        // Like Broden, a category without labels in an image has no map for it.
        if category != COLOR && pixels.iter().all(|&p| p == 0) {
            continue;
        }
        let name = format!("{stem}_{suffix}.png");
        write_label_png(&images.join(&name), [label_size, label_size], pixels)?;
        occurrences(category, pixels, &mut occ);
        if !cells[category].is_empty() {
            cells[category].push(';');
        }
        cells[category].push_str(&name);
    }
    // An image no scene describes carries the image-level item 0, as Broden's do for
    // concepts its frequency filter dropped.
    cells[SCENE] = match r.scene {
        Some(scene) => {
            occ.push(image_level(SCENE, scene_label(scene)));
            scene_label(scene).to_string()
        }
        None => "0".to_owned(),
    };
    cells[TEXTURE] = if r.textures.is_empty() {
        "0".to_owned()
    } else {
        let numbers: Vec<String> = r
            .textures
            .iter()
            .map(|&t| {
                occ.push(image_level(TEXTURE, texture_label(t)));
                texture_label(t).to_string()
            })
            .collect();
        numbers.join(";")
    };
    let row = IndexRow {
        image: format!("{stem}.{}", config.format.extension()),
        split: if r.val { "val" } else { "train" }.to_owned(),
        image_size: [size, size],
        label_size: [label_size, label_size],
        cells,
    };
    Ok((row, occ))
}

fn image_level(category: usize, label: u16) -> Occurrence {
    Occurrence {
        category,
        label: u32::from(label),
        fraction: 1.0,
    }
}

/// Writes a dataset into `out`, which must not exist yet. The dataset appears there
/// complete or not at all: it is written next to it and renamed into place.
pub fn generate(out: &Path, config: &Config) -> Result<Summary> {
    if config.images == 0 {
        return Err(Error::Config("images must be at least 1".into()));
    }
    if config.image_size < 8 {
        return Err(Error::Config(format!(
            "image size {} is too small (at least 8, label maps are half of it)",
            config.image_size
        )));
    }
    if !(0.0..=1.0).contains(&config.val_fraction) {
        return Err(Error::Config("val fraction must be between 0 and 1".into()));
    }
    if out.exists() {
        return Err(Error::Config(format!(
            "{} already exists; choose a new directory",
            out.display()
        )));
    }
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Config(format!("{} is not a directory name", out.display())))?;
    let tmp = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = write_all(&tmp, config).and_then(|summary| {
        std::fs::rename(&tmp, out).map_err(|source| Error::Io {
            path: out.to_owned(),
            source,
        })?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_all(root: &Path, config: &Config) -> Result<Summary> {
    let synth = root.join("images/synth");
    std::fs::create_dir_all(&synth).map_err(|source| Error::Io {
        path: synth.clone(),
        source,
    })?;
    let rows: Vec<(IndexRow, Occurrences)> = (0..config.images)
        .into_par_iter()
        .map(|i| write_one(root, config, i))
        .collect::<Result<_>>()?;
    let vocabulary = Vocabulary {
        categories: CATEGORIES.iter().map(|c| c.to_string()).collect(),
        labels: (1..N_LABELS as u16)
            .map(|n| (label_name(n).to_owned(), label_categories(n).to_vec()))
            .collect(),
    };
    // Counted in image order so the float sums, and the files, are the same every time.
    write_tables(root, &vocabulary, &rows)?;
    Ok(Summary {
        images: config.images,
        labels: N_LABELS - 1,
        label_size: config.image_size / 2,
    })
}

#[cfg(test)]
mod tests;
