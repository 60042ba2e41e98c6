//! `nd-score`: the score stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Counts every unit's masks against the dataset's concept labels and writes the IoU
/// tables. Prints the score artifact's directory on stdout.
#[derive(Parser)]
#[command(name = "nd-score", version)]
struct Args {
    /// The dataset directory.
    #[arg(long)]
    dataset: PathBuf,
    /// The segment artifact.
    #[arg(long)]
    masks: PathBuf,
    /// lite (NetDissect-Lite) or original (the original NetDissect).
    #[arg(long, default_value = "lite")]
    denominator: nd_score::Denominator,
    /// Load only these categories (comma-separated).
    #[arg(long, value_delimiter = ',')]
    categories: Option<Vec<String>>,
    /// The cache directory (default: the one holding the input artifact).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-score: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()?;
    }
    let masks = nd_store::Artifact::open(&args.masks)?;
    masks.expect_stage("segment")?;
    let dataset = nd_broden::Dataset::open(
        &args.dataset,
        &nd_broden::Config {
            categories: args.categories.clone(),
        },
    )
    .with_context(|| format!("cannot open the dataset {}", args.dataset.display()))?;
    let cache = match &args.cache {
        Some(dir) => dir.clone(),
        None => masks
            .cache_root()
            .context("the input artifact is not inside a cache")?
            .to_owned(),
    };
    let store = nd_store::Store::open(&cache)
        .with_context(|| format!("cannot open the cache {}", cache.display()))?;
    let config = nd_score::Config {
        denominator: args.denominator,
    };
    if args.explain {
        eprintln!(
            "{}",
            store.explain(&nd_score::spec(&store, &dataset, &masks, &config)?)?
        );
    }
    let outcome = nd_score::run(&store, &dataset, &masks, &config)?;
    eprintln!(
        "score: {} {}",
        if outcome.computed {
            "wrote"
        } else {
            "fresh, nothing to do"
        },
        outcome.artifact.key().short()
    );
    println!("{}", outcome.artifact.dir.display());
    Ok(())
}
