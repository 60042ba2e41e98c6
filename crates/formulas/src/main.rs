//! `nd-formulas`: the formulas stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Finds each unit's best logical formula of concepts (AND, OR, AND NOT) by beam search,
/// scored by IoU against its masks over the whole dataset, and writes formulas.parquet.
/// Prints the artifact's directory on stdout.
#[derive(Parser)]
#[command(name = "nd-formulas", version)]
struct Args {
    /// The segment artifact (a directory, or a record of one); several: the image shards
    /// of one dissection, in any order.
    #[arg(long, required = true, num_args = 1..)]
    masks: Vec<PathBuf>,
    /// The dataset directory, or the record of a synthetic dataset in the cache.
    #[arg(long)]
    dataset: PathBuf,
    /// Load only these categories (comma-separated), as the score stage did.
    #[arg(long, value_delimiter = ',')]
    categories: Option<Vec<String>>,
    /// The longest formula, in concepts.
    #[arg(long, default_value_t = 3)]
    max_length: usize,
    /// Formulas kept from one step to the next.
    #[arg(long, default_value_t = 10)]
    beam: usize,
    /// Operators (comma-separated): and, or, and_not.
    #[arg(long, value_delimiter = ',', default_value = "and,or,and_not")]
    ops: Vec<String>,
    /// Only concepts of these categories in formulas (comma-separated; default: every
    /// loaded category).
    #[arg(long, value_delimiter = ',')]
    only_categories: Option<Vec<String>>,
    /// Only these layers (comma-separated; default: every layer of the masks).
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<String>>,
    /// Leave out concepts present in fewer images.
    #[arg(long, default_value_t = 0)]
    min_images: u64,
    /// lite (NetDissect-Lite) or original (the original NetDissect).
    #[arg(long, default_value = "lite")]
    denominator: nd_formulas::Denominator,
    /// The cache directory (default: the one holding the input artifact).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Also copy formulas.parquet into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-formulas: error: {e:#}");
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
    let ops = args
        .ops
        .iter()
        .map(|o| {
            nd_formulas::Op::parse(o)
                .with_context(|| format!("--ops: unknown operator `{o}` (and, or, and_not)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache = args.cache.as_deref();
    let masks: Vec<nd_store::Artifact> = args
        .masks
        .iter()
        .map(|m| nd_store::locate(m, cache))
        .collect::<Result<_, _>>()?;
    let store = nd_store::Store::open_for(cache, &masks[0])?;
    let dir = nd_store::dataset_dir(&args.dataset, Some(store.root()))?;
    let dataset = nd_broden::Dataset::open(
        &dir,
        &nd_broden::Config {
            categories: args.categories.clone(),
        },
    )
    .with_context(|| format!("cannot open the dataset {}", dir.display()))?;
    let config = nd_formulas::Config {
        max_length: args.max_length,
        beam: args.beam,
        ops,
        categories: args.only_categories.clone(),
        min_images: args.min_images,
        denominator: args.denominator,
        layers: args.layers.clone(),
    };
    if args.explain {
        eprintln!(
            "{}",
            store.explain(&nd_formulas::spec(&store, &dataset, &masks, &config)?)?
        );
    }
    let outcome = nd_formulas::run(&store, &dataset, &masks, &config)?;
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        let file = nd_tables::formulas::FILE;
        let to = out.join(file);
        std::fs::copy(outcome.artifact.dir.join(file), &to)
            .with_context(|| format!("cannot write {}", to.display()))?;
    }
    outcome.announce("formulas", args.record.as_deref())?;
    Ok(())
}
