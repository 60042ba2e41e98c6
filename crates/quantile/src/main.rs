//! `nd-quantile`: the quantile stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Computes every unit's activation threshold (exact top quantile) from an extract
/// artifact. Prints the quantile artifact's directory on stdout.
#[derive(Parser)]
#[command(name = "nd-quantile", version)]
struct Args {
    /// The extract artifact (a directory `<cache>/extract/<key>`).
    #[arg(long)]
    activations: PathBuf,
    /// The fraction of each unit's activations above its threshold.
    #[arg(long, default_value_t = 0.005)]
    top: f64,
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
        eprintln!("nd-quantile: error: {e:#}");
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
    let activations = nd_store::Artifact::open(&args.activations)?;
    activations.expect_stage("extract")?;
    let cache = match &args.cache {
        Some(dir) => dir.clone(),
        None => activations
            .cache_root()
            .context("the input artifact is not inside a cache")?
            .to_owned(),
    };
    let store = nd_store::Store::open(&cache)
        .with_context(|| format!("cannot open the cache {}", cache.display()))?;
    let config = nd_quantile::Config { top: args.top };
    if args.explain {
        eprintln!(
            "{}",
            store.explain(&nd_quantile::spec(&activations, &config)?)?
        );
    }
    let outcome = nd_quantile::run(&store, &activations, &config)?;
    eprintln!(
        "quantile: {} {}",
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
