//! Reading what a row points at: its image and its label maps.

use std::path::PathBuf;

use rayon::prelude::*;

use crate::dataset::{Dataset, Item};
use crate::error::{Error, Result};

/// A pixel-level label layer of one category: `label_height × label_width` label numbers,
/// row-major, 0 where unlabelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// An index into [`Dataset::categories`].
    pub category: usize,
    pub pixels: Vec<u16>,
}

/// An image-level label: it covers every pixel of the image. The number may be 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLabel {
    pub category: usize,
    pub label: u32,
}

/// Everything a row says about its image's concepts, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLabels {
    pub height: u32,
    pub width: u32,
    /// Every label map of every loaded category, in cell order (several per category when
    /// a cell holds several layers).
    pub maps: Vec<LabelMap>,
    pub image_labels: Vec<ImageLabel>,
}

impl Dataset {
    fn referenced(&self, row: usize, file: &str, message: impl Into<String>) -> Error {
        Error::Referenced {
            line: self.rows()[row].line,
            path: PathBuf::from(file),
            message: message.into(),
        }
    }

    fn read_referenced(&self, row: usize, file: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.read_referenced_into(row, file, &mut bytes)?;
        Ok(bytes)
    }

    /// Reads a file a row references into `bytes`, replacing what they held.
    fn read_referenced_into(&self, row: usize, file: &str, bytes: &mut Vec<u8>) -> Result<()> {
        use std::io::Read;
        bytes.clear();
        std::fs::File::open(self.root.join(file))
            .and_then(|mut f| f.read_to_end(bytes))
            .map(|_| ())
            .map_err(|e| self.referenced(row, file, e.to_string()))
    }

    /// Decodes the image of a row as 8-bit RGB and checks it has the size `index.csv` says.
    pub fn read_image(&self, row: usize) -> Result<image::RgbImage> {
        let file = self.image_file(row);
        let bytes = self.read_referenced(row, &file)?;
        let decoded = decode_image(&bytes).map_err(|e| self.referenced(row, &file, e))?;
        let r = &self.rows()[row];
        if decoded.height() != r.image_height || decoded.width() != r.image_width {
            return Err(self.referenced(
                row,
                &file,
                format!(
                    "image is {}×{} (height×width), index.csv says {}×{}",
                    decoded.height(),
                    decoded.width(),
                    r.image_height,
                    r.image_width
                ),
            ));
        }
        Ok(decoded)
    }

    /// Decodes every label map of a row (pixel label = R + 256·G) and collects its
    /// image-level labels, checking sizes and that every label number has a row in label.csv.
    pub fn read_labels(&self, row: usize) -> Result<RowLabels> {
        let r = &self.rows()[row];
        let mut maps = Vec::new();
        let mut image_labels = Vec::new();
        for (category, item) in self.items(row) {
            match item {
                Item::Label(label) => image_labels.push(ImageLabel { category, label }),
                Item::Map(path) => {
                    let file = format!("images/{path}");
                    let pixels = self.read_label_map(row, &file)?;
                    maps.push(LabelMap { category, pixels });
                }
            }
        }
        Ok(RowLabels {
            height: r.label_height,
            width: r.label_width,
            maps,
            image_labels,
        })
    }

    fn read_label_map(&self, row: usize, file: &str) -> Result<Vec<u16>> {
        // The file's bytes and the decoded RGB live in buffers each thread keeps from one
        // map to the next: a label map is small (tens of KB) and a dataset has many.
        thread_local! {
            static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        BUFFERS.with_borrow_mut(|(bytes, raw)| self.decode_label_map(row, file, bytes, raw))
    }

    fn decode_label_map(
        &self,
        row: usize,
        file: &str,
        bytes: &mut Vec<u8>,
        raw: &mut Vec<u8>,
    ) -> Result<Vec<u16>> {
        self.read_referenced_into(row, file, bytes)?;
        let cannot = |e: png::DecodingError| {
            self.referenced(row, file, format!("cannot decode label map: {e}"))
        };
        // The png crate directly, into one buffer: palettes expand to RGB, as the image
        // crate would decode them; grey or 16-bit maps cannot carry R + 256·G.
        let mut decoder = png::Decoder::new(std::io::Cursor::new(&bytes[..]));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().map_err(cannot)?;
        let (color, depth) = reader.output_color_type();
        let channels = match (color, depth) {
            (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
            (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
            other => {
                return Err(self.referenced(
                    row,
                    file,
                    format!(
                        "label map is {:?} with {:?} bits; label maps are 8-bit RGB (label = R + 256·G)",
                        other.0, other.1
                    ),
                ));
            }
        };
        let info = reader.info();
        let (height, width) = (info.height, info.width);
        let r = &self.rows()[row];
        if height != r.label_height || width != r.label_width {
            return Err(self.referenced(
                row,
                file,
                format!(
                    "label map is {height}×{width} (height×width), index.csv says {}×{}",
                    r.label_height, r.label_width
                ),
            ));
        }
        let size = reader.output_buffer_size().ok_or_else(|| {
            self.referenced(row, file, "label map too large to decode".to_owned())
        })?;
        raw.resize(size, 0);
        let frame = reader.next_frame(raw).map_err(cannot)?;
        let raw = &raw[..frame.buffer_size()];
        let (pixels, largest) = match channels {
            3 => labels_of::<3>(raw),
            _ => labels_of::<4>(raw),
        };
        // Every label must have a row in label.csv. When every number up to the largest has
        // one (as in Broden), the map's largest label says it; otherwise one check per
        // distinct run of labels.
        if self.dense_labels && usize::from(largest) < self.n_labels() {
            return Ok(pixels);
        }
        let mut last = 0u16;
        for (i, &label) in pixels.iter().enumerate() {
            if label != last && label != 0 && self.label(u32::from(label)).is_none() {
                let width = width as usize;
                return Err(self.referenced(
                    row,
                    file,
                    format!(
                        "pixel (y {}, x {}) has label {label}, which has no row in label.csv",
                        i / width,
                        i % width
                    ),
                ));
            }
            last = label;
        }
        Ok(pixels)
    }

    /// Checks that every image and label map the loaded rows reference exists, without
    /// decoding anything. The first missing file is reported with its `index.csv` line.
    pub fn check_files(&self) -> Result<()> {
        (0..self.len()).into_par_iter().try_for_each(|row| {
            let mut files = vec![self.image_file(row)];
            files.extend(self.label_map_files(row));
            for file in files {
                match std::fs::metadata(self.root.join(&file)) {
                    Ok(meta) if meta.is_file() => {}
                    Ok(_) => return Err(self.referenced(row, &file, "not a regular file")),
                    Err(e) => return Err(self.referenced(row, &file, e.to_string())),
                }
            }
            Ok(())
        })
    }

    /// Decodes every image and label map in parallel and checks each against `index.csv`
    /// and `label.csv`. Returns the first problem found in file order.
    pub fn validate(&self) -> Result<()> {
        let mut problems: Vec<(usize, Error)> = (0..self.len())
            .into_par_iter()
            .filter_map(|row| {
                self.read_image(row)
                    .and_then(|_| self.read_labels(row))
                    .err()
                    .map(|e| (row, e))
            })
            .collect();
        problems.sort_by_key(|(row, _)| *row);
        match problems.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

/// The label of every pixel of `C`-channel 8-bit RGB(A), R + 256·G, and the largest.
fn labels_of<const C: usize>(raw: &[u8]) -> (Vec<u16>, u16) {
    let labels: Vec<u16> = raw
        .chunks_exact(C)
        .map(|px| u16::from(px[0]) | (u16::from(px[1]) << 8))
        .collect();
    let largest = labels.iter().copied().fold(0, u16::max);
    (labels, largest)
}

/// Decodes an image file's bytes as 8-bit RGB, as the datasets' images are: JPEGs with
/// libjpeg-turbo as PIL does (CMYK and YCCK converted as PIL converts them), other formats
/// with the `image` crate. The error says what failed, without the file's name.
pub fn decode_image(bytes: &[u8]) -> std::result::Result<image::RgbImage, String> {
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Jpeg) => {
            crate::jpeg::decode(bytes).map_err(|e| format!("cannot decode JPEG: {e}"))
        }
        _ => image::load_from_memory(bytes)
            .map(image::DynamicImage::into_rgb8)
            .map_err(|e| format!("cannot decode image: {e}")),
    }
}
