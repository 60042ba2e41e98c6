//! Before/after grids: rows of samples side by side.

use std::path::Path;

use crate::{Error, Result};

/// A file name from a concept's name.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the rows of images (all of one size) as one PNG, 2 pixels apart.
pub fn write(path: &Path, rows: &[Vec<image::RgbImage>]) -> Result<()> {
    let (w, h) = rows
        .first()
        .and_then(|r| r.first())
        .map_or((1, 1), |i| (i.width(), i.height()));
    let columns = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as u32;
    let gap = 2;
    let mut out = image::RgbImage::from_pixel(
        columns * (w + gap) - gap,
        rows.len().max(1) as u32 * (h + gap) - gap,
        image::Rgb([255, 255, 255]),
    );
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            image::imageops::replace(
                &mut out,
                img,
                i64::from(c as u32 * (w + gap)),
                i64::from(r as u32 * (h + gap)),
            );
        }
    }
    out.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| Error::Write {
            path: path.to_owned(),
            message: e.to_string(),
        })
}
