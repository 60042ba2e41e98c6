use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Writes a synthetic dataset in the Broden layout (same seed, same bytes).
#[derive(Parser)]
#[command(name = "nd-synth", version)]
struct Args {
    /// The directory to create (it must not exist).
    out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    images: usize,
    /// Image side in pixels; label maps are half of it.
    #[arg(long, default_value_t = 224)]
    size: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Image encoding: jpg (as Broden) or png (lossless).
    #[arg(long, default_value = "jpg", value_parser = ["jpg", "png"])]
    format: String,
    /// Share of images in the val split.
    #[arg(long, default_value_t = 0.2)]
    val_fraction: f32,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-synth: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("cannot start the worker threads")?;
    }
    let config = nd_synth::Config {
        seed: args.seed,
        images: args.images,
        image_size: args.size,
        format: if args.format == "png" {
            nd_synth::ImageFormat::Png
        } else {
            nd_synth::ImageFormat::Jpeg
        },
        val_fraction: args.val_fraction,
    };
    let summary = nd_synth::generate(&args.out, &config)
        .with_context(|| format!("cannot write the dataset {}", args.out.display()))?;
    println!(
        "wrote {} images ({}×{}, labels {}×{}) and {} labels to {}",
        summary.images,
        args.size,
        args.size,
        summary.label_size,
        summary.label_size,
        summary.labels,
        args.out.display()
    );
    Ok(())
}
