//! `netdissect explain`: one image (or a few) explained by a model's labelled units, with
//! the dissection that `netdissect run` left in the cache; with `--html`, a page per image
//! too ([`crate::explain_html`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nd_store::Store;

use crate::explain_html::{Destination, Segmenter};
use crate::pipeline::{self, ExplainSection};

/// What to explain: a model of the pipeline file, images, and how many classes and units.
pub struct Request<'a> {
    pub pipeline: &'a Path,
    pub model: &'a str,
    pub images: &'a [PathBuf],
    pub top_k: Option<usize>,
    pub top_n: Option<usize>,
    /// Also write a page per image, and an index, into this folder.
    pub html: Option<&'a Path>,
}

/// Explains each image and returns the plain tables to print.
pub fn explain(request: &Request) -> anyhow::Result<String> {
    let mut loaded = pipeline::load(request.pipeline)?;
    {
        // A trained model's file is its train artifact's (found in the cache, or trained).
        let cache = loaded.resolve(&loaded.pipeline.cache.dir);
        let store = nd_store::Store::open(&cache)
            .with_context(|| format!("cannot open the cache {}", cache.display()))?;
        crate::run::train_models(&mut loaded, &store)?;
    }
    let p = &loaded.pipeline;
    let Some(model) = p.models.iter().find(|m| m.name == request.model) else {
        bail!(
            "{}: no [[model]] is named `{}`; it has {}",
            loaded.path.display(),
            request.model,
            p.models
                .iter()
                .map(|m| format!("`{}`", m.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if model.logits.is_none() {
        bail!(
            "{}: model `{}` has no `logits`: name the output under which its forward returns the \
             class scores (logits = \"logits\"; python/export_torchvision.py --logits exports them)",
            loaded.path.display(),
            model.name
        );
    }
    let default = ExplainSection::default();
    let section = p.explain.as_ref().unwrap_or(&default);
    let mut config = section
        .config(&loaded, model)
        .with_context(|| format!("model `{}`", model.name))?;
    if let Some(k) = request.top_k {
        config.top_k = k;
    }
    if let Some(n) = request.top_n {
        config.top_n = n;
    }
    config.progress = false;
    config.validate()?;
    // A folder that cannot take the pages fails before anything is computed.
    let mut destination = request.html.map(Destination::check).transpose()?;

    // The dissection of the model: its last run in this cache.
    let cache = loaded.resolve(&p.cache.dir);
    let store = Store::open(&cache)
        .with_context(|| format!("cannot open the cache {}", cache.display()))?;
    let missing = || {
        anyhow::anyhow!(
            "model `{}` has not been dissected in the cache {}: run `netdissect run {}` first",
            model.name,
            cache.display(),
            loaded.path.display()
        )
    };
    let keys = store.last_run(&model.name).ok_or_else(missing)?;
    let artifact = |stage: &str| -> anyhow::Result<nd_store::Artifact> {
        let key = keys.get(stage).ok_or_else(missing)?;
        store.get_key(stage, *key)?.ok_or_else(missing)
    };
    let report = artifact("report")?;
    let extract = artifact("extract")?;
    let units = nd_explain::unit_labels(&report, &config.layer)?;
    let size: [u32; 2] = serde_json::from_value(extract.manifest.outputs["input_size"].clone())
        .with_context(|| format!("{}: no input_size", extract.manifest_path().display()))?;

    let paths = expand(request.images)?;

    // For the pages: the run's segmentation of the layer (to draw each unit's mask in the
    // image as the dissection would), and its units' pages.
    let mut segmenter = None;
    let mut links = None;
    if request.html.is_some() {
        let (_, dataset) = crate::run::dataset(&loaded, &store)?;
        let found = Segmenter::from_run(&dataset, &artifact, &config.layer)
            .with_context(|| format!("model `{}`, layer `{}`", model.name, config.layer))?;
        if found.units() != units.len() {
            bail!(
                "layer `{}` has {} thresholds but {} units in the dissection (report {})",
                config.layer,
                found.units(),
                units.len(),
                report.key().short()
            );
        }
        links = Some(found.unit_pages(&store, keys.get(nd_html::STAGE).copied())?);
        segmenter = Some(found);
    }
    let dissection = report.key().short();
    let mut pages = None;
    if let (Some(destination), Some(segmenter), Some(links)) =
        (destination.as_mut(), &segmenter, &links)
    {
        let set = nd_html::ImageSet {
            model: &model.name,
            layer: &config.layer,
            dissection: &dissection,
            mask_size: segmenter.label_size(),
            input_size: size,
            images: paths.len(),
            unlinked: links.as_ref().err().map(String::as_str),
            thumbnail_height: *p.html.thumbnail_height.get_ref(),
        };
        pages = Some(nd_html::ImagePages::create(destination.start()?, set)?);
    }

    let mut out = String::new();
    // A batch of the model's batch size at a time: a folder may hold thousands.
    for chunk in paths.chunks(config.batch_size) {
        let mut decoded = Vec::new();
        for path in chunk {
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let image = nd_broden::decode_image(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            decoded.push(image);
        }
        let explained = nd_explain::explain_images_with_activations(&config, &decoded, size)?;
        let [h, w] = explained.map_size;
        if let Some(a) = explained.activations.first()
            && a.len() != units.len() * h * w
        {
            bail!(
                "layer `{}` has {} units in the model but {} in the dissection (report {}); \
                 explain with the dissection of the same model",
                config.layer,
                a.len() / (h * w).max(1),
                units.len(),
                report.key().short()
            );
        }
        for (i, ((path, image), classes)) in chunk
            .iter()
            .zip(&decoded)
            .zip(&explained.images)
            .enumerate()
        {
            let resized = if [image.height(), image.width()] == size {
                String::new()
            } else {
                format!(
                    " (resized from {}×{} to {}×{}, the dissection's input size)",
                    image.height(),
                    image.width(),
                    size[0],
                    size[1]
                )
            };
            let _ = writeln!(out, "{}{resized}", path.display());
            for (rank, class) in classes.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{} {}: {} (score {:.2}, probability {:.3}); units of {} by contribution \
                     (dissection: report {}):",
                    if rank == 0 { "  predicted" } else { "  then" },
                    rank + 1,
                    config.class_name(class.class),
                    class.score,
                    class.probability,
                    config.layer,
                    report.key().short()
                );
                out.push_str(&unit_table(class, &units, config.top_n));
            }
            if let (Some(pages), Some(segmenter), Some(links)) =
                (pages.as_mut(), segmenter.as_mut(), &links)
            {
                let name = path.display().to_string();
                let shown = Shown {
                    classes,
                    activations: &explained.activations[i],
                    map_size: explained.map_size,
                };
                let (scores, top) =
                    shown.page_data(&config, &units, segmenter, links.as_ref().ok());
                pages.add(&nd_html::ExplainedImage {
                    name: &name,
                    pixels: image,
                    classes: &scores,
                    cam: classes.first().map(|c| (h, w, c.cam.as_slice())),
                    units: &top,
                })?;
            }
        }
    }
    if let (Some(pages), Some(destination)) = (pages, destination) {
        pages.finish()?;
        let to = destination.commit()?;
        let _ = writeln!(out, "pages: {}", to.join("index.html").display());
    }
    Ok(out)
}

/// One image's explanations and the layer's activations for it.
struct Shown<'a> {
    classes: &'a [nd_explain::ClassExplanation],
    /// `units × height × width`, row-major.
    activations: &'a [f32],
    map_size: [usize; 2],
}

impl Shown<'_> {
    /// What its page shows: the explained classes, and the predicted class's top units,
    /// each with its label, its mask in the image and its page (`links`, by unit).
    fn page_data(
        &self,
        config: &nd_explain::Config,
        units: &[nd_explain::UnitLabel],
        segmenter: &mut Segmenter,
        links: Option<&Vec<String>>,
    ) -> (Vec<nd_html::ClassScore>, Vec<nd_html::UnitInImage>) {
        let scores = self
            .classes
            .iter()
            .enumerate()
            .map(|(rank, c)| nd_html::ClassScore {
                rank: rank as u32 + 1,
                class: c.class as u32,
                name: config.class_name(c.class),
                score: f64::from(c.score),
                probability: f64::from(c.probability),
            })
            .collect();
        let Some(predicted) = self.classes.first() else {
            return (scores, Vec::new());
        };
        let total = predicted.total();
        let cells = self.map_size[0] * self.map_size[1];
        let top = predicted
            .order()
            .into_iter()
            .take(config.top_n)
            .enumerate()
            .map(|(rank, u)| {
                let label = &units[u];
                let contribution = f64::from(predicted.contributions[u]);
                nd_html::UnitInImage {
                    unit: nd_html::TopUnit {
                        rank: rank as u32 + 1,
                        unit: u as u32,
                        contribution,
                        share: if total == 0.0 {
                            0.0
                        } else {
                            contribution / total
                        },
                        label: label.name.clone(),
                        category: label.category.clone(),
                        iou: label.iou,
                        detector: label.detector,
                    },
                    mask: segmenter.mask(
                        &self.activations[u * cells..(u + 1) * cells],
                        self.map_size,
                        u,
                    ),
                    link: links.map(|l| l[u].clone()),
                }
            })
            .collect();
        (scores, top)
    }
}

/// The images to explain: each file given, and the image files of each directory given (by
/// extension: JPEG, PNG, BMP, GIF, TIFF, WebP), in name order.
fn expand(given: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    const EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];
    let mut out = Vec::new();
    for path in given {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read the directory {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        if files.is_empty() {
            bail!(
                "{} holds no image file ({})",
                path.display(),
                EXTENSIONS.join(", ")
            );
        }
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// The top units of one class: rank, unit, label, category, IoU, contribution and share.
fn unit_table(
    class: &nd_explain::ClassExplanation,
    units: &[nd_explain::UnitLabel],
    n: usize,
) -> String {
    let total = class.total();
    let rows: Vec<[String; 7]> = class
        .order()
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(rank, u)| {
            let label = &units[u];
            let contribution = f64::from(class.contributions[u]);
            [
                (rank + 1).to_string(),
                u.to_string(),
                label.name.clone().unwrap_or_else(|| "-".into())
                    + if label.detector { "" } else { " ·" },
                label.category.clone().unwrap_or_else(|| "-".into()),
                format!("{:.3}", label.iou),
                format!("{contribution:.3}"),
                if total == 0.0 {
                    "-".into()
                } else {
                    format!("{:.1} %", 100.0 * contribution / total)
                },
            ]
        })
        .collect();
    let header = [
        "rank",
        "unit",
        "label",
        "category",
        "iou",
        "contribution",
        "share",
    ];
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: [&str; 7], out: &mut String| {
        let mut text = String::from("  ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            // Names left-aligned, numbers right-aligned.
            if (2..4).contains(&i) {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
            text.push_str("  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header, &mut out);
    for row in &rows {
        line(
            [
                &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
            ]
            .map(String::as_str),
            &mut out,
        );
    }
    out.push_str("  (· : not a detector: its IoU is under the report's threshold)\n");
    out
}
