use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;

/// Writes a synthetic dataset in the Broden layout (same seed, same bytes), to a directory
/// or, with --cache, into a netdissect cache (once; the stage binaries take its record as
/// their --dataset).
#[derive(Parser)]
#[command(name = "nd-synth", version)]
struct Args {
    /// The directory to create (it must not exist); omit it with --cache.
    out: Option<PathBuf>,
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
    /// Generate into this cache as a `synth` artifact (what `netdissect run` does for a
    /// `[dataset] synth` table) and print its dataset directory.
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// With --cache: also write the artifact's manifest to this file (a record).
    #[arg(long)]
    record: Option<PathBuf>,
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
        format: args.format.parse().map_err(anyhow::Error::msg)?,
        val_fraction: args.val_fraction,
    };
    let (out, cache) = match (&args.out, &args.cache) {
        (Some(out), _) => (out.clone(), None),
        (None, Some(cache)) => (PathBuf::new(), Some(cache)),
        (None, None) => bail!("give the directory to write, or --cache"),
    };
    if let Some(cache) = cache {
        let store = nd_store::Store::open(cache)
            .with_context(|| format!("cannot open the cache {}", cache.display()))?;
        let outcome = nd_synth::generate_cached(&store, &config)?;
        eprintln!(
            "synth: {} {}",
            if outcome.computed {
                "wrote"
            } else {
                "fresh, nothing to do"
            },
            outcome.artifact.key().short()
        );
        if let Some(record) = &args.record {
            outcome.artifact.write_record(record)?;
        }
        println!("{}", outcome.artifact.dir.join("dataset").display());
        return Ok(());
    }
    if args.record.is_some() {
        bail!("--record needs --cache (a dataset written to a directory is not an artifact)");
    }
    let summary = nd_synth::generate(&out, &config)
        .with_context(|| format!("cannot write the dataset {}", out.display()))?;
    println!(
        "wrote {} images ({}×{}, labels {}×{}) and {} labels to {}",
        summary.images,
        args.size,
        args.size,
        summary.label_size,
        summary.label_size,
        summary.labels,
        out.display()
    );
    Ok(())
}
