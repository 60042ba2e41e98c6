//! `netdissect explain`: one image (or a few) explained by a model's labelled units, with
//! the dissection that `netdissect run` left in the cache.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nd_store::Store;

use crate::pipeline::{self, ExplainSection};

/// What to explain: a model of the pipeline file, images, and how many classes and units.
pub struct Request<'a> {
    pub pipeline: &'a Path,
    pub model: &'a str,
    pub images: &'a [PathBuf],
    pub top_k: Option<usize>,
    pub top_n: Option<usize>,
}

/// Explains each image and returns the plain tables to print.
pub fn explain(request: &Request) -> anyhow::Result<String> {
    let loaded = pipeline::load(request.pipeline)?;
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
        let (_, explained) = nd_explain::explain_images(&config, &decoded, size)?;
        for ((path, image), classes) in chunk.iter().zip(&decoded).zip(&explained) {
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
        }
    }
    Ok(out)
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
