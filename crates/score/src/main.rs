//! `nd-score`: the score stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Counts every unit's masks against the dataset's concept labels and writes the IoU
/// tables. Prints the score artifact's directory on stdout. `nd-score merge` sums the
/// counts of image shards into the tables of all their rows.
#[derive(Parser)]
#[command(name = "nd-score", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The segment artifact (a directory, or a record of one).
    #[arg(long)]
    masks: Option<PathBuf>,
    /// lite (NetDissect-Lite) or original (the original NetDissect).
    #[arg(long, default_value = "lite")]
    denominator: nd_score::Denominator,
    /// Reproduce the original's tally of at most N entries an image (2048 in its scripts),
    /// which drops the smallest intersections; with --denominator original. Default:
    /// exact counts.
    #[arg(long, value_name = "N")]
    tally_depth: Option<usize>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct Common {
    /// The dataset directory, or the record of a synthetic dataset in the cache.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Load only these categories (comma-separated).
    #[arg(long, value_delimiter = ',')]
    categories: Option<Vec<String>>,
    /// The cache directory (default: the one holding the input artifact; required when the
    /// inputs are records).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
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

#[derive(Subcommand)]
enum Command {
    /// Sum the counts of score artifacts of image shards (their masks thresholded alike)
    /// into the tables of all their rows: the same data a single run writes.
    Merge {
        /// The score artifacts (or records) of the shards, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

fn main() {
    share_arenas();
    if let Err(e) = run() {
        eprintln!("nd-score: error: {e:#}");
        std::process::exit(1);
    }
}

/// Gives the process two malloc arenas instead of glibc's one per thread (up to eight per
/// core). Scoring frees memory on other threads than allocated it (the reader's mask
/// blocks, the label maps decoded for a block), and every arena keeps its own high-water
/// mark of such blocks: with an arena per thread the peak memory varied by a quarter from
/// run to run and grew with the dataset (56-61 MiB on 2,000 images, 65-67 MiB on 8,000),
/// with two it is 42-51 and 45-47 MiB, at the same speed. Call before any thread starts.
fn share_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let common = match &args.command {
        Some(Command::Merge { common, .. }) => common,
        None => &args.common,
    };
    if common.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(common.threads)
            .build_global()?;
    }
    let cache = common.cache.as_deref();
    let inputs: Vec<nd_store::Artifact> = match &args.command {
        Some(Command::Merge { shards, .. }) => shards
            .iter()
            .map(|p| nd_store::locate(p, cache))
            .collect::<Result<_, _>>()?,
        None => vec![nd_store::locate(
            args.masks
                .as_deref()
                .context("--masks is required (or use `nd-score merge SHARD...`)")?,
            cache,
        )?],
    };
    let store = nd_store::Store::open_for(cache, &inputs[0])?;
    let dataset = common.dataset.as_deref().context("--dataset is required")?;
    let dir = nd_store::dataset_dir(dataset, Some(store.root()))?;
    let dataset = nd_broden::Dataset::open(
        &dir,
        &nd_broden::Config {
            categories: common.categories.clone(),
        },
    )
    .with_context(|| format!("cannot open the dataset {}", dir.display()))?;
    let outcome = match &args.command {
        Some(Command::Merge { .. }) => nd_score::merge(&store, &dataset, &inputs)?,
        None => {
            let masks = &inputs[0];
            masks.expect_stage("segment")?;
            let config = nd_score::Config {
                denominator: args.denominator,
                tally_depth: args.tally_depth,
            };
            if common.explain {
                eprintln!(
                    "{}",
                    store.explain(&nd_score::spec(&store, &dataset, masks, &config)?)?
                );
            }
            nd_score::run(&store, &dataset, masks, &config)?
        }
    };
    outcome.announce("score", common.record.as_deref())?;
    Ok(())
}
