//! The pages of `netdissect explain --html DIR`: images that need not be in the dataset,
//! explained by the units of a dissected layer, with the content of the report's
//! `explain/images/` pages (drawn by the same code, [`crate::explain`]):
//!
//! - `DIR/index.html`: the images explained, in the order given, each with its thumbnail,
//!   predicted class and probability and its top units' labels, linking its page;
//! - `DIR/images/<n>.html` (`n` from 0001, in that order): one image, its explained classes
//!   with their scores and probabilities, the predicted class's activation map over it,
//!   and the predicted class's top units (label, category, IoU, contribution, share), each
//!   with its mask in this image and a link to its page in the model's report where there
//!   is one;
//! - `DIR/explained.json` ([`IMAGE_PAGES_FILE`]): what the folder holds; it also marks the
//!   folder as one these pages wrote.
//!
//! The caller computes everything (the masks as the dissection segments them: this crate
//! knows nothing of models); this module draws and writes. Pages are written an image at a
//! time ([`ImagePages::add`]), so a folder of thousands of images is never held in memory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde_json::json;

use crate::explain::{
    ClassScore, Drawings, ImageBody, TopUnit, draw_image_files, image_body, mask_overlay, pager,
    percent, unit_label,
};
use crate::page::{self, escape, foot_with, head};
use crate::{Error, Result, draw};

/// The file that lists what a folder of image pages holds (and marks it as one).
pub const IMAGE_PAGES_FILE: &str = "explained.json";
/// The format of [`IMAGE_PAGES_FILE`].
const FORMAT: &str = "netdissect-explained-images/1";
/// Top units named per image on the index.
const INDEX_UNITS: usize = 3;
/// Images are drawn at most this many pixels on their longer side (a photo's 4,000 pixels
/// would make heavy pages; the maps are coarser than that anyway).
const MAX_SIDE: u32 = 1024;

/// What every page of a folder says: the model, its layer and its dissection.
#[derive(Debug, Clone)]
pub struct ImageSet<'a> {
    /// The model's name (the pages' title).
    pub model: &'a str,
    /// The layer whose units explain the predictions.
    pub layer: &'a str,
    /// The dissection that the units' labels and thresholds come from, as the pages name
    /// it (the report artifact's short key).
    pub dissection: &'a str,
    /// The label maps' size, `[height, width]`: the masks' resolution.
    pub mask_size: [usize; 2],
    /// The model's input size, `[height, width]`, to which images of another size were
    /// resized.
    pub input_size: [u32; 2],
    /// The number of images the folder will hold (the last page links no next one).
    pub images: usize,
    /// Why the units do not link to their pages, when they do not (said on every page).
    pub unlinked: Option<&'a str>,
    /// The thumbnails' height in pixels, on the index.
    pub thumbnail_height: u32,
}

/// One image explained, as plain data.
#[derive(Debug, Clone)]
pub struct ExplainedImage<'a> {
    /// The image's name as the user gave it (a path).
    pub name: &'a str,
    /// The image as decoded.
    pub pixels: &'a RgbImage,
    /// Its explained classes, the predicted one first (`rank` 1).
    pub classes: &'a [ClassScore],
    /// The predicted class's activation map: height, width and row-major values.
    pub cam: Option<(usize, usize, &'a [f32])>,
    /// The predicted class's top units, with their masks in this image.
    pub units: &'a [UnitInImage],
}

/// One of an image's top units, with its mask in the image.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitInImage {
    /// The unit, its contribution and its dissection.
    pub unit: TopUnit,
    /// The unit's mask at the label maps' resolution ([`ImageSet::mask_size`]), row-major:
    /// the pixels where its upsampled activation exceeds its threshold.
    pub mask: Vec<bool>,
    /// The unit's page in the model's report (a URL), where there is one.
    pub link: Option<String>,
}

/// One page written, for the index.
struct Written {
    name: String,
    page: String,
    thumb: String,
    predicted: Option<ClassScore>,
    /// The top units' `(unit, label)`.
    units: Vec<(u32, Option<String>)>,
}

/// A folder of image pages being written: [`ImagePages::create`], then
/// [`ImagePages::add`] for each image, then [`ImagePages::finish`] for the index.
pub struct ImagePages<'a> {
    dir: PathBuf,
    set: ImageSet<'a>,
    written: Vec<Written>,
}

/// The page of the `n`-th image (from 1), relative to the folder's `images/`.
fn page_file(n: usize) -> String {
    format!("{n:04}.html")
}

fn drawings(n: usize) -> Drawings {
    Drawings {
        image: format!("{n:04}.jpg"),
        thumb: format!("{n:04}-thumb.jpg"),
        cam: format!("{n:04}-cam.jpg"),
    }
}

/// The image, shrunk to fit [`MAX_SIDE`] when it is larger.
fn drawn(pixels: &RgbImage) -> Option<RgbImage> {
    let (w, h) = (pixels.width(), pixels.height());
    let side = w.max(h);
    if side <= MAX_SIDE {
        return None;
    }
    let scale = |v: u32| ((u64::from(v) * u64::from(MAX_SIDE)) / u64::from(side)).max(1) as u32;
    Some(draw::shrink(pixels, scale(w), scale(h)))
}

impl<'a> ImagePages<'a> {
    /// Starts writing the pages into `dir` (created if needed; the caller gives a fresh
    /// folder and moves it into place once [`ImagePages::finish`] returns).
    pub fn create(dir: &Path, set: ImageSet<'a>) -> Result<ImagePages<'a>> {
        let images = dir.join("images");
        std::fs::create_dir_all(&images).map_err(|source| Error::Io {
            path: images.clone(),
            source,
        })?;
        page::write_assets(dir)?;
        Ok(ImagePages {
            dir: dir.to_owned(),
            set,
            written: Vec::new(),
        })
    }

    /// Writes the next image's page and drawings; returns the page's path.
    pub fn add(&mut self, image: &ExplainedImage) -> Result<PathBuf> {
        let set = &self.set;
        let n = self.written.len() + 1;
        if n > set.images {
            return Err(Error::Input(format!(
                "image {n} ({}) is more than the {} the pages were started for",
                image.name, set.images
            )));
        }
        let [lh, lw] = set.mask_size;
        if let Some(u) = image.units.iter().find(|u| u.mask.len() != lh * lw) {
            return Err(Error::Input(format!(
                "{}: the mask of unit {} has {} pixels, not {lh}×{lw}",
                image.name,
                u.unit.unit,
                u.mask.len()
            )));
        }
        if let Some((h, w, values)) = image.cam
            && values.len() != h * w
        {
            return Err(Error::Input(format!(
                "{}: a class activation map of {} values for {h}×{w}",
                image.name,
                values.len()
            )));
        }
        let dir = self.dir.join("images");
        let files = drawings(n);
        let page_path = dir.join(page_file(n));
        let shrunk = drawn(image.pixels);
        let pixels = shrunk.as_ref().unwrap_or(image.pixels);
        draw_image_files(&dir, &files, pixels, image.cam, set.thumbnail_height)?;
        let overlays = image
            .units
            .iter()
            .map(|u| mask_overlay(&u.mask, lh, lw, &page_path))
            .collect::<Result<Vec<_>>>()?;
        let units: Vec<TopUnit> = image.units.iter().map(|u| u.unit.clone()).collect();

        // The file's name heads the page (a path can be too long for a heading), the path
        // as given follows.
        let file = Path::new(image.name)
            .file_name()
            .map_or(image.name.into(), |f| f.to_string_lossy());
        let title = format!("{} · explained images", set.model);
        let mut out = head(
            &format!("{} · {file}", set.model),
            "../",
            &[
                ("../index.html".to_owned(), title),
                (page_file(n), file.clone().into_owned()),
            ],
        );
        let _ = write!(
            out,
            "<h1><code>{}</code></h1>\n<p class=\"lede\">",
            escape(&file)
        );
        if let Some(p) = image.classes.first() {
            let _ = write!(
                out,
                "Predicted <b>{}</b> ({}) by model {}; explained by the units of layer <b>{}</b> (dissection: report {})",
                escape(&p.name),
                percent(p.probability),
                escape(set.model),
                escape(set.layer),
                escape(set.dissection)
            );
        }
        out.push_str(".</p>\n");
        let _ = writeln!(
            out,
            "<p class=\"note path\"><code>{}</code></p>",
            escape(image.name)
        );
        let size = [image.pixels.height(), image.pixels.width()];
        if size != set.input_size {
            let _ = writeln!(
                out,
                "<p class=\"note\">The model saw this {}×{} image resized to {}×{}, its input size; the maps and masks are drawn over the image stretched back as that resize stretched it.</p>",
                size[0], size[1], set.input_size[0], set.input_size[1]
            );
        }
        let previous = n.checked_sub(1).filter(|&p| p > 0).map(page_file);
        let next = (n < set.images).then(|| page_file(n + 1));
        pager(&mut out, previous.as_deref(), next.as_deref());
        let links: Vec<(u32, Option<&str>)> = image
            .units
            .iter()
            .map(|u| (u.unit.unit, u.link.as_deref()))
            .collect();
        let unit_link = |unit: u32| match links.iter().find(|(u, _)| *u == unit) {
            Some((_, Some(href))) => format!(r#"<a href="{}">unit {unit}</a>"#, escape(href)),
            _ => format!("unit {unit}"),
        };
        let masks_note = format!(
            "its activations upsampled to the label maps' {lh}×{lw} and kept above its threshold, as the dissection segments"
        );
        image_body(
            &mut out,
            &ImageBody {
                classes: image.classes,
                layer: set.layer,
                files: &files,
                alt: image.name,
                cam: image.cam.map(|(h, w, _)| (h, w)),
                units: &units,
                overlays: &overlays,
                masks_note: &masks_note,
                class_link: &|c| escape(&c.name),
                unit_link: &unit_link,
            },
        );
        if let Some(why) = set.unlinked {
            let _ = writeln!(
                out,
                "<p class=\"note unlinked\">The units are not linked to their pages: {}.</p>",
                escape(why)
            );
        }
        out.push_str(&foot_with("../", &[]));
        page::write_file(&page_path, &out)?;
        self.written.push(Written {
            name: image.name.to_owned(),
            page: format!("images/{}", page_file(n)),
            thumb: format!("images/{}", files.thumb),
            predicted: image.classes.first().cloned(),
            units: units
                .iter()
                .take(INDEX_UNITS)
                .map(|u| (u.unit, u.label.clone()))
                .collect(),
        });
        Ok(page_path)
    }

    /// Writes the index and [`IMAGE_PAGES_FILE`]; returns the index's path.
    pub fn finish(self) -> Result<PathBuf> {
        let set = &self.set;
        if self.written.len() != set.images {
            return Err(Error::Input(format!(
                "{} of the {} images were written",
                self.written.len(),
                set.images
            )));
        }
        let title = format!("{} · explained images", set.model);
        let mut out = head(&title, "", &[("index.html".to_owned(), title.clone())]);
        let [lh, lw] = set.mask_size;
        let _ = writeln!(
            out,
            "<h1>Explained images</h1>\n<p class=\"lede\">{} images explained by model <b>{}</b>, by the units of layer <b>{}</b> (dissection: report {}); each unit's mask drawn at the label maps' {lh}×{lw}.</p>",
            self.written.len(),
            escape(set.model),
            escape(set.layer),
            escape(set.dissection)
        );
        if let Some(why) = set.unlinked {
            let _ = writeln!(
                out,
                "<p class=\"note unlinked\">The units are not linked to their pages: {}.</p>",
                escape(why)
            );
        }
        let _ = writeln!(
            out,
            "<div class=\"scroll\"><table class=\"stats images\" id=\"images\"><thead><tr><th>image</th><th>predicted</th><th>probability</th><th>top {INDEX_UNITS} units</th></tr></thead><tbody>"
        );
        for w in &self.written {
            let units: Vec<String> = w
                .units
                .iter()
                .map(|(unit, label)| {
                    format!(
                        "{} <small>(unit {unit})</small>",
                        unit_label(label.as_deref())
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                r#"<tr class="image"><td class="text"><a class="thumb" href="{page}"><img src="{thumb}" height="{h}" alt="{name}"></a><br><a href="{page}"><code>{name}</code></a></td><td class="text">{class}</td><td>{probability}</td><td class="text">{units}</td></tr>"#,
                page = escape(&w.page),
                thumb = escape(&w.thumb),
                h = set.thumbnail_height,
                name = escape(&w.name),
                class = w
                    .predicted
                    .as_ref()
                    .map_or("–".to_owned(), |p| escape(&p.name)),
                probability = w
                    .predicted
                    .as_ref()
                    .map_or("–".to_owned(), |p| percent(p.probability)),
                units = units.join("<br>"),
            );
        }
        out.push_str("</tbody></table></div>\n");
        out.push_str(&foot_with("", &[]));
        let index = self.dir.join("index.html");
        page::write_file(&index, &out)?;

        let listed = json!({
            "format": FORMAT,
            "model": set.model,
            "layer": set.layer,
            "dissection": set.dissection,
            "mask_size": set.mask_size,
            "unit_pages": set.unlinked.is_none(),
            "images": self.written.iter().map(|w| json!({
                "name": w.name,
                "page": w.page,
                "class": w.predicted.as_ref().map(|p| p.class),
                "class_name": w.predicted.as_ref().map(|p| p.name.as_str()),
                "probability": w.predicted.as_ref().map(|p| p.probability),
            })).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&listed).expect("JSON values serialise");
        page::write_file(&self.dir.join(IMAGE_PAGES_FILE), &(text + "\n"))?;
        Ok(index)
    }
}

/// The page of `layer`'s unit `unit` in a pages artifact (the html stage's), as its
/// manifest lays the layers out; `None` when the artifact has no page of the layer.
pub fn unit_page(pages: &nd_store::Artifact, layer: &str, unit: u32) -> Result<Option<PathBuf>> {
    pages.expect_stage(crate::STAGE)?;
    let stem = pages.manifest.outputs["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["layer"] == layer)
        .and_then(|l| l["page"].as_str())
        .and_then(|p| p.strip_prefix("layer-")?.strip_suffix(".html"));
    Ok(stem
        .map(|stem| pages.dir.join(page::unit_page(stem, unit)))
        .filter(|path| path.is_file()))
}

/// A `file://` URL of an absolute path, for a link from a page to a file outside its
/// folder: every byte but letters, digits, `/` and `-._~` percent-encoded.
pub fn file_url(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(rank: u32, unit: u32, label: Option<&str>, mask: Vec<bool>) -> UnitInImage {
        UnitInImage {
            unit: TopUnit {
                rank,
                unit,
                contribution: 1.5 / f64::from(rank),
                share: 0.25 / f64::from(rank),
                label: label.map(str::to_owned),
                category: label.map(|_| "color".to_owned()),
                iou: 0.125,
                detector: rank == 1,
            },
            mask,
            link: None,
        }
    }

    /// A folder of two images: the pages hold the predicted class, every top unit with its
    /// mask's runs and its link (or the reason there is none), and the index lists both.
    #[test]
    fn image_pages_show_classes_units_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let pixels = RgbImage::from_pixel(8, 6, image::Rgb([10, 200, 30]));
        let classes = [
            ClassScore {
                rank: 1,
                class: 2,
                name: "<warm>".into(),
                score: 3.5,
                probability: 0.75,
            },
            ClassScore {
                rank: 2,
                class: 0,
                name: "dark".into(),
                score: 1.0,
                probability: 0.25,
            },
        ];
        // 3×4 masks: unit 5 covers the first row and one pixel of the last; unit 2 nothing.
        let mut first = vec![false; 12];
        first[..4].fill(true);
        first[9] = true;
        let mut units = vec![
            unit(1, 5, Some("red"), first),
            unit(2, 2, None, vec![false; 12]),
        ];
        units[0].link = Some("file:///cache/html/k/1-colors/unit-0005.html".into());
        let cam = [0.0f32, 1.0, 2.0, -1.0];
        let set = ImageSet {
            model: "planted",
            layer: "colors",
            dissection: "abcdef012345",
            mask_size: [3, 4],
            input_size: [6, 8],
            images: 2,
            unlinked: None,
            thumbnail_height: 16,
        };
        let mut pages = ImagePages::create(dir.path(), set.clone()).unwrap();
        let image = |name, units| ExplainedImage {
            name,
            pixels: &pixels,
            classes: &classes,
            cam: Some((2, 2, &cam[..])),
            units,
        };
        let page = pages.add(&image("photos/a.jpg", &units)).unwrap();
        pages.add(&image("b.png", &units[1..])).unwrap();
        // A third image is more than announced.
        assert!(pages.add(&image("c.png", &units)).is_err());
        let index = pages.finish().unwrap();

        assert_eq!(page, dir.path().join("images/0001.html"));
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(
            html.contains("Predicted <b>&lt;warm&gt;</b> (75.0 %)"),
            "{html}"
        );
        assert!(html.contains("<h1><code>a.jpg</code></h1>"));
        assert!(html.contains("<code>photos/a.jpg</code>"));
        assert!(html.contains("<td class=\"text\">dark</td><td>1.0000</td><td>25.0 %</td>"));
        assert!(html.contains(r#"<img class="cam" src="0001-cam.jpg""#));
        assert_eq!(html.matches("<tr class=\"unit-row").count(), 2);
        assert_eq!(html.matches("<figure class=\"pair unit-mask\"").count(), 2);
        // The first row of 4 and pixel 9, as runs; no run for the empty mask.
        assert!(html.contains(r#"alt="mask of unit 5" data-runs="[[0,4],[9,1]]""#));
        assert!(html.contains(r#"alt="mask of unit 2" data-runs="[]""#));
        assert!(
            html.contains(r#"<a href="file:///cache/html/k/1-colors/unit-0005.html">unit 5</a>"#)
        );
        assert!(html.contains("<td>unit 2</td>"), "no link, plain text");
        assert!(html.contains("label maps&#39; 3×4"));
        assert!(html.contains(r#"<a href="0002.html">next image →</a>"#));
        assert!(!html.contains("previous image"));
        assert!(!html.contains("resized"), "the image has the input size");
        assert!(!html.contains("not linked"));
        for file in ["0001.jpg", "0001-thumb.jpg", "0001-cam.jpg", "0002.html"] {
            assert!(dir.path().join("images").join(file).is_file(), "{file}");
        }
        let second = std::fs::read_to_string(dir.path().join("images/0002.html")).unwrap();
        assert!(second.contains(r#"<a href="0001.html">← previous image</a>"#));

        let index = std::fs::read_to_string(index).unwrap();
        assert_eq!(index.matches("<tr class=\"image\">").count(), 2);
        assert!(index.contains(r#"<a href="images/0001.html"><code>photos/a.jpg</code></a>"#));
        assert!(index.contains("red <small>(unit 5)</small><br><em>no concept</em>"));
        let listed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(IMAGE_PAGES_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(listed["images"][1]["page"], "images/0002.html");
        assert_eq!(listed["images"][0]["class_name"], "<warm>");
        assert!(dir.path().join("report.css").is_file());

        // Without unit pages: every page says why, and a mask of the wrong size is refused.
        let dir = tempfile::tempdir().unwrap();
        let set = ImageSet {
            unlinked: Some("the cache holds no pages"),
            input_size: [64, 64],
            images: 1,
            ..set
        };
        let mut pages = ImagePages::create(dir.path(), set).unwrap();
        let bad = [unit(1, 5, None, vec![true; 11])];
        assert!(
            pages
                .add(&image("a.jpg", &bad))
                .unwrap_err()
                .to_string()
                .contains("the mask of unit 5 has 11 pixels, not 3×4")
        );
        let page = pages.add(&image("a.jpg", &units[1..])).unwrap();
        let html = std::fs::read_to_string(page).unwrap();
        assert!(html.contains("not linked to their pages: the cache holds no pages."));
        assert!(html.contains("this 6×8 image resized to 64×64"));
        pages.finish().unwrap();
    }

    #[test]
    fn file_urls_encode_what_a_url_cannot_hold() {
        assert_eq!(
            file_url(Path::new("/tmp/a b/#1/ü.html")),
            "file:///tmp/a%20b/%231/%C3%BC.html"
        );
    }

    #[test]
    fn large_images_are_drawn_at_most_max_side() {
        assert!(drawn(&RgbImage::new(MAX_SIDE, 10)).is_none());
        let big = drawn(&RgbImage::new(4000, 3000)).unwrap();
        assert_eq!((big.width(), big.height()), (MAX_SIDE, 768));
    }
}
