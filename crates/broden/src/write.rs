//! Writing datasets in the Broden layout: what the stages that make datasets (the synthetic
//! world, generated images labelled by a segmenter) share, so that every reader of the
//! project opens what they write.
//!
//! A writer gives each image's files itself ([`write_label_png`], [`write_image`]) and
//! hands [`write_tables`] one [`IndexRow`] per image, with what the image holds
//! ([`Occurrence`]); the tables' frequencies and coverages are counted from those, in row
//! order, so the same rows give the same bytes.

use std::fmt::Write as _;
use std::io::BufWriter;
use std::path::Path;

use image::ImageEncoder;

use crate::error::{Error, Result};

/// The concepts a dataset names: its categories in `category.csv` order (pixel-level
/// categories have label maps, the others image-level numbers in `index.csv`) and its
/// labels, numbered from 1 in order, each with the categories it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    pub categories: Vec<String>,
    /// `labels[i]` is label `i + 1`: its name and its categories (indices into
    /// `categories`, ascending).
    pub labels: Vec<(String, Vec<usize>)>,
}

impl Vocabulary {
    /// The labels of a category, by number, ascending.
    pub fn members(&self, category: usize) -> Vec<u32> {
        self.labels
            .iter()
            .enumerate()
            .filter(|(_, (_, cats))| cats.contains(&category))
            .map(|(i, _)| i as u32 + 1)
            .collect()
    }
}

/// A row of `index.csv`: the image's path under `images/`, its split, the image's and the
/// label maps' `[height, width]`, and one cell per category (label map files separated by
/// `;`, or image-level label numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    pub image: String,
    pub split: String,
    pub image_size: [u32; 2],
    pub label_size: [u32; 2],
    pub cells: Vec<String>,
}

/// An image holds a label of a category on this fraction of its label map (1 for an
/// image-level label).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Occurrence {
    pub category: usize,
    pub label: u32,
    pub fraction: f64,
}

/// The occurrences of the labels in one category's label map (label 0, no label, is left
/// out).
pub fn occurrences(category: usize, pixels: &[u16], into: &mut Vec<Occurrence>) {
    let top = pixels.iter().copied().max().unwrap_or(0) as usize;
    let mut counts = vec![0u32; top + 1];
    for &p in pixels {
        counts[p as usize] += 1;
    }
    for (label, &count) in counts.iter().enumerate().skip(1) {
        if count > 0 {
            into.push(Occurrence {
                category,
                label: label as u32,
                fraction: f64::from(count) / pixels.len() as f64,
            });
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

/// A label map as Broden stores it: RGB, label = R + 256·G, `[height, width]` pixels in
/// row-major order.
pub fn write_label_png(path: &Path, size: [u32; 2], pixels: &[u16]) -> Result<()> {
    let [height, width] = size;
    assert_eq!(
        pixels.len(),
        height as usize * width as usize,
        "label map size"
    );
    let raw: Vec<u8> = pixels
        .iter()
        .flat_map(|&p| [(p & 0xff) as u8, (p >> 8) as u8, 0])
        .collect();
    let file = std::fs::File::create(path).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })?;
    image::codecs::png::PngEncoder::new(BufWriter::new(file))
        .write_image(&raw, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Encode {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// How images are stored: JPEG (Broden's, quality 92) or PNG (lossless).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    #[default]
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }
}

impl std::str::FromStr for ImageFormat {
    type Err = String;

    /// `jpg` or `png`, as the image files' extension.
    fn from_str(text: &str) -> std::result::Result<ImageFormat, String> {
        match text {
            "jpg" => Ok(ImageFormat::Jpeg),
            "png" => Ok(ImageFormat::Png),
            other => Err(format!("unknown image format `{other}` (use jpg or png)")),
        }
    }
}

/// Writes an image by fixed encoders (same pixels, same bytes).
pub fn write_image(path: &Path, format: ImageFormat, rgb: &image::RgbImage) -> Result<()> {
    let encode_error = |e: image::ImageError| Error::Encode {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    match format {
        ImageFormat::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92)
            .encode_image(rgb)
            .map_err(encode_error)?,
        ImageFormat::Png => image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(
                rgb.as_raw(),
                rgb.width(),
                rgb.height(),
                image::ExtendedColorType::Rgb8,
            )
            .map_err(encode_error)?,
    }
    write_file(path, &bytes)
}

/// Writes `index.csv`, `label.csv`, `category.csv` and a `c_<category>.csv` per category
/// into `root`, from every image's row and occurrences, in row order.
///
/// A label's frequency is the number of images that hold it (in a category: in that
/// category), its coverage the mean fraction over those images (over its categories: the
/// largest of an image's); a category's frequency the images holding any of its labels.
pub fn write_tables(
    root: &Path,
    vocabulary: &Vocabulary,
    rows: &[(IndexRow, Vec<Occurrence>)],
) -> Result<()> {
    let n_labels = vocabulary.labels.len() + 1;
    let n_cat = vocabulary.categories.len();
    let mut index = String::from("image,split,ih,iw,sh,sw,");
    index.push_str(&vocabulary.categories.join(","));
    index.push('\n');
    let mut freq = vec![vec![0u64; n_labels]; n_cat];
    let mut cov = vec![vec![0.0f64; n_labels]; n_cat];
    let mut freq_any = vec![0u64; n_labels];
    let mut cov_any = vec![0.0f64; n_labels];
    let mut category_images = vec![0u64; n_cat];
    for (row, occ) in rows {
        let _ = writeln!(
            index,
            "{},{},{},{},{},{},{}",
            row.image,
            row.split,
            row.image_size[0],
            row.image_size[1],
            row.label_size[0],
            row.label_size[1],
            row.cells.join(",")
        );
        let mut best = vec![0.0f64; n_labels];
        let mut seen_category = vec![false; n_cat];
        for o in occ {
            let label = o.label as usize;
            freq[o.category][label] += 1;
            cov[o.category][label] += o.fraction;
            best[label] = best[label].max(o.fraction);
            seen_category[o.category] = true;
        }
        for (label, &fraction) in best.iter().enumerate() {
            if fraction > 0.0 {
                freq_any[label] += 1;
                cov_any[label] += fraction;
            }
        }
        for (count, seen) in category_images.iter_mut().zip(seen_category) {
            *count += u64::from(seen);
        }
    }
    let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum / n as f64 };

    let mut labels = String::from("number,name,category,frequency,coverage,syns\n");
    for (i, (name, cats)) in vocabulary.labels.iter().enumerate() {
        let number = i + 1;
        let cats: Vec<String> = cats
            .iter()
            .map(|&c| format!("{}({})", vocabulary.categories[c], freq[c][number]))
            .collect();
        let _ = writeln!(
            labels,
            "{number},{name},{},{},{:.6},",
            cats.join(";"),
            freq_any[number],
            mean(cov_any[number], freq_any[number])
        );
    }
    let mut categories = String::from("name,first,last,count,frequency\n");
    for (c, name) in vocabulary.categories.iter().enumerate() {
        let members = vocabulary.members(c);
        let _ = writeln!(
            categories,
            "{name},{},{},{},{}",
            members.first().copied().unwrap_or(0),
            members.last().copied().unwrap_or(0),
            members.len(),
            category_images[c]
        );
        let mut codes = String::from("code,number,name,frequency,coverage\n");
        for (code, &n) in members.iter().enumerate() {
            let n = n as usize;
            let _ = writeln!(
                codes,
                "{},{n},{},{},{:.6}",
                code + 1,
                vocabulary.labels[n - 1].0,
                freq[c][n],
                mean(cov[c][n], freq[c][n])
            );
        }
        write_file(&root.join(format!("c_{name}.csv")), codes.as_bytes())?;
    }
    write_file(&root.join("index.csv"), index.as_bytes())?;
    write_file(&root.join("label.csv"), labels.as_bytes())?;
    write_file(&root.join("category.csv"), categories.as_bytes())?;
    Ok(())
}
