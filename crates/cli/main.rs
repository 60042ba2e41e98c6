//! `netdissect`: the command users start from. It ties the stages together; each stage is
//! also its own binary (`nd-extract`, ...) for Make and Snakemake.

mod explain;
mod explain_html;
mod pipeline;
mod run;
mod verify;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "netdissect",
    version,
    about = "Network Dissection: label the units of a CNN with the concepts they detect"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every stage for every model of a pipeline file, through the cache: a stage runs
    /// only when its result is not cached already.
    Run {
        /// The pipeline file.
        #[arg(default_value = "pipeline.toml")]
        pipeline: PathBuf,
        /// Say why each stage computes (or that it is fresh) on stderr.
        #[arg(long)]
        explain: bool,
        /// Worker threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Do not draw progress bars.
        #[arg(long)]
        no_progress: bool,
    },
    /// Explain a model's prediction for one image (or a few) by the labelled units of its
    /// dissection (run `netdissect run` first): the top classes, and each one's units by
    /// contribution with their labels and shares. Uses the pipeline's [explain] settings.
    Explain {
        /// The pipeline file.
        #[arg(default_value = "pipeline.toml")]
        pipeline: PathBuf,
        /// The [[model]] to explain (it must name its `logits`).
        #[arg(long)]
        model: String,
        /// The image files (JPEG, PNG, ...), or directories of them, resized to the
        /// dissection's input size.
        #[arg(long = "image", required = true)]
        images: Vec<PathBuf>,
        /// Classes explained per image (default: [explain] top_k, else 1).
        #[arg(long)]
        top_k: Option<usize>,
        /// Units shown per class (default: [explain] top_n, else 10).
        #[arg(long)]
        top_n: Option<usize>,
        /// Also write a page per image into this folder (and index.html listing them): its
        /// classes, class activation map and top units, each unit's mask in the image as
        /// the dissection segments and a link to its page in the model's report. The
        /// folder must be new, empty, or one an earlier --html wrote (it is replaced).
        #[arg(long, value_name = "DIR")]
        html: Option<PathBuf>,
        /// Worker threads (default: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Check every artifact of the cache against its manifest (files present, sizes,
    /// blake3 digests, every Zarr chunk's crc32c): a line per damaged artifact, and a
    /// non-zero exit when any is.
    Verify {
        /// The pipeline file whose `[cache] dir` to check (default: pipeline.toml, unless
        /// --cache is given).
        pipeline: Option<PathBuf>,
        /// The cache directory to check.
        #[arg(long, conflicts_with = "pipeline")]
        cache: Option<PathBuf>,
        /// Move damaged artifacts aside (to <cache>/damaged/), so that the next run
        /// recomputes them; nothing is deleted.
        #[arg(long)]
        repair: bool,
        /// Do not draw a progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Check a Broden-format dataset: every table, every referenced file, and with --deep
    /// every image and label map decoded.
    Check {
        /// The dataset directory.
        dataset: PathBuf,
        /// Decode every image and label map (slow on the real Broden: minutes).
        #[arg(long)]
        deep: bool,
        /// Load only these categories (comma-separated).
        #[arg(long, value_delimiter = ',')]
        categories: Option<Vec<String>>,
    },
    /// Print a pipeline file as the Snakemake workflow reads it (JSON: defaults filled in,
    /// paths absolute, preprocessing resolved, the dataset's row count), after the checks
    /// `run` makes.
    Config {
        /// The pipeline file.
        #[arg(default_value = "pipeline.toml")]
        pipeline: PathBuf,
    },
    /// Write a synthetic dataset in the Broden layout (same seed, same bytes).
    Synth {
        /// The directory to create (it must not exist).
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        images: usize,
        /// Image side in pixels; label maps are half of it.
        #[arg(long, default_value_t = 224)]
        size: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// jpg (as Broden) or png.
        #[arg(long, default_value = "jpg", value_parser = ["jpg", "png"])]
        format: String,
    },
}

/// A path as the user would type it: relative to the working directory when it lies
/// under it (the store resolves its paths to absolute ones).
fn shown(path: &std::path::Path) -> std::path::PathBuf {
    std::env::current_dir()
        .and_then(|cwd| cwd.canonicalize())
        .ok()
        .and_then(|cwd| {
            path.strip_prefix(cwd)
                .ok()
                .map(std::path::Path::to_path_buf)
        })
        .unwrap_or_else(|| path.to_path_buf())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("netdissect: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run {
            pipeline,
            explain,
            threads,
            no_progress,
        } => {
            let options = run::Options {
                explain,
                threads,
                progress: !no_progress,
            };
            let result = run::run(&pipeline, &options)?;
            let loaded_formulas = &result.formulas;
            let mut all = Vec::new();
            for m in &result.models {
                let (model, report, copy) = (&m.name, &m.report, &m.copy);
                let (categories, summaries) = nd_report::read_summaries(report)?;
                all.push((model.clone(), summaries.clone()));
                let threshold = report.manifest.params["iou_threshold"]
                    .as_f64()
                    .unwrap_or(0.04);
                println!("{model}");
                print!(
                    "{}",
                    nd_report::format_table(&summaries, &categories, threshold)
                );
                match copy {
                    Some(dir) => println!(
                        "report: {} (cached in {})",
                        dir.display(),
                        shown(&report.dir).display()
                    ),
                    None => println!("report: {}", shown(&report.dir).display()),
                }
                if let Some((pages, copy)) = &m.html {
                    let at = copy.as_ref().unwrap_or(&pages.dir);
                    println!("pages:  {}", at.join("index.html").display());
                }
                if let (Some((artifact, copy)), Some(section)) = (&m.formulas, &loaded_formulas) {
                    let rows = nd_tables::formulas::read_rows(
                        &artifact.dir.join(nd_tables::formulas::FILE),
                    )?;
                    let gain = section.1;
                    let summary = nd_formulas::summarise(&rows, gain);
                    println!();
                    print!(
                        "{}",
                        nd_formulas::format_summary(&m.name, &section.0, gain, &summary)
                    );
                    let at = copy
                        .clone()
                        .unwrap_or_else(|| artifact.dir.join(nd_tables::formulas::FILE));
                    println!("formulas: {}", shown(&at).display());
                }
                if let Some((explained, copy)) = &m.explain {
                    let layer = explained.manifest.params["layer"].as_str().unwrap_or("?");
                    println!(
                        "\nexplain: predictions by the units of {layer}; mean drop of the predicted \
                         class's score when n units are zeroed"
                    );
                    print!(
                        "{}",
                        nd_explain::ablation_table(&nd_explain::read_ablation(explained)?)
                    );
                    let at = copy.as_ref().unwrap_or(&explained.dir);
                    println!("explanations: {}", shown(at).display());
                }
                println!();
            }
            if all.len() > 1 {
                print!("{}", nd_report::format_comparison(&all));
            }
            // The rotation control: each rotated model's unique detectors against α.
            for (i, m) in result.models.iter().enumerate() {
                let variants: Vec<usize> = (0..result.models.len())
                    .filter(|&j| {
                        result.models[j]
                            .rotation
                            .as_ref()
                            .is_some_and(|r| r.model == m.name)
                    })
                    .collect();
                let Some(first) = variants.first() else {
                    continue;
                };
                let seed = result.models[*first]
                    .rotation
                    .as_ref()
                    .map_or(0, |r| r.seed);
                let mut rows = vec![(0.0, all[i].1.clone())];
                for j in variants {
                    let power = result.models[j].rotation.as_ref().map_or(0.0, |r| r.power);
                    rows.push((power, all[j].1.clone()));
                }
                println!();
                print!("{}", nd_report::format_rotation(&m.name, seed, &rows));
            }
            if let Some((artifact, copy)) = &result.intervened {
                println!();
                print!("{}", nd_intervene::format_summary(artifact)?);
                let at = copy.as_ref().unwrap_or(&artifact.dir);
                println!("interventions: {}", shown(at).display());
            }
            // The index compares every model report in the output folder; it links pages
            // only where they were written.
            if let Some(index) = &result.index {
                if result.models.iter().any(|m| m.html.is_some()) {
                    println!("open {} to browse the models' pages", index.display());
                } else {
                    println!(
                        "index:  {} (no pages: [html] pages = false)",
                        index.display()
                    );
                }
            }
            Ok(())
        }
        Command::Explain {
            pipeline,
            model,
            images,
            top_k,
            top_n,
            html,
            threads,
        } => {
            nd_extract::set_threads(threads)?;
            print!(
                "{}",
                explain::explain(&explain::Request {
                    pipeline: &pipeline,
                    model: &model,
                    images: &images,
                    top_k,
                    top_n,
                    html: html.as_deref(),
                })?
            );
            Ok(())
        }
        Command::Config { pipeline } => {
            let loaded = pipeline::load(&pipeline)?;
            let value = pipeline::describe(&loaded)?;
            println!("{}", nd_store::canonical::to_pretty(&value));
            Ok(())
        }
        Command::Check {
            dataset,
            deep,
            categories,
        } => check(&dataset, deep, categories),
        Command::Verify {
            pipeline,
            cache,
            repair,
            no_progress,
        } => {
            let cache = match cache {
                Some(cache) => cache,
                None => {
                    let path = pipeline.unwrap_or_else(|| PathBuf::from("pipeline.toml"));
                    let loaded = pipeline::load(&path)?;
                    loaded.resolve(&loaded.pipeline.cache.dir)
                }
            };
            let options = verify::Options {
                repair,
                progress: !no_progress,
            };
            verify::verify(&cache, &options)
        }
        Command::Synth {
            out,
            images,
            size,
            seed,
            format,
        } => {
            let config = nd_synth::Config {
                seed,
                images,
                image_size: size,
                format: format.parse().map_err(anyhow::Error::msg)?,
                ..Default::default()
            };
            let summary = nd_synth::generate(&out, &config)
                .with_context(|| format!("cannot write the dataset {}", out.display()))?;
            println!(
                "wrote {} images and {} labels to {}",
                summary.images,
                summary.labels,
                out.display()
            );
            Ok(())
        }
    }
}

fn check(dir: &std::path::Path, deep: bool, categories: Option<Vec<String>>) -> anyhow::Result<()> {
    let config = nd_broden::Config { categories };
    let dataset = nd_broden::Dataset::open(dir, &config)
        .with_context(|| format!("the dataset {} is not valid", dir.display()))?;
    dataset
        .check_files()
        .with_context(|| format!("the dataset {} is incomplete", dir.display()))?;
    if deep {
        dataset
            .validate()
            .with_context(|| format!("the dataset {} has a bad file", dir.display()))?;
    }
    let rows = dataset.rows();
    let train = (0..rows.len())
        .filter(|&row| dataset.split(row) == "train")
        .count();
    let mut sizes: Vec<(u32, u32, u32, u32)> = rows
        .iter()
        .map(|r| (r.image_height, r.image_width, r.label_height, r.label_width))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    println!(
        "{}: {} images ({} train, {} other), {} labels",
        dir.display(),
        rows.len(),
        train,
        rows.len() - train,
        (1..dataset.n_labels() as u32)
            .filter(|&n| dataset.label(n).is_some())
            .count()
    );
    for (ih, iw, sh, sw) in sizes {
        println!("  images {ih}×{iw}, label maps {sh}×{sw}");
    }
    for (c, category) in dataset.categories().iter().enumerate() {
        let primary = (1..dataset.n_labels() as u32)
            .filter(|&n| dataset.label(n).is_some() && dataset.primary_category(n) == c)
            .count();
        println!(
            "  {:<10} {:>5} labels ({} scored here), in {} images",
            category.name,
            dataset.category_codes(c).len(),
            primary,
            category.frequency
        );
    }
    println!(
        "{}",
        if deep {
            "every image and label map decodes and matches index.csv"
        } else {
            "every referenced file exists (use --deep to decode them all)"
        }
    );
    Ok(())
}
