//! `nd-quantile`: the quantile stage as a command.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// Computes every unit's activation threshold (exact top quantile) from an extract
/// artifact, or from image shards of one. Prints the quantile artifact's directory on
/// stdout. `nd-quantile merge BLOCK...` joins blocks of units into the whole table.
#[derive(Parser)]
#[command(name = "nd-quantile", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The extract artifact (a directory `<cache>/extract/<key>`, or a record of one; or a
    /// rotate artifact of one), or several image shards of one extraction, in any order.
    #[arg(long, num_args = 1.., required = true)]
    activations: Vec<PathBuf>,
    /// The fraction of each unit's activations above its threshold.
    #[arg(long, default_value_t = 0.005)]
    top: f64,
    /// Only these units of each layer: `START..END`, or `K/N` for block K (from 0) of N
    /// nearly equal blocks. Join the blocks with `nd-quantile merge`.
    #[arg(long)]
    units: Option<nd_quantile::Units>,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct Common {
    /// The cache directory (default: the one holding the input artifact; required when the
    /// inputs are records).
    #[arg(long, env = "NETDISSECT_CACHE", global = true)]
    cache: Option<PathBuf>,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long, global = true)]
    record: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long, global = true)]
    explain: bool,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0, global = true)]
    threads: usize,
    /// Do not draw a progress bar.
    #[arg(long, global = true)]
    no_progress: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Join the thresholds of blocks of units (`--units`) into the table a run over every
    /// unit writes (same key, same bytes); fails unless every unit is in exactly one block.
    Merge {
        /// The quantile artifacts (or records) of the blocks.
        #[arg(required = true)]
        blocks: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-quantile: error: {e:#}");
        std::process::exit(1);
    }
}

fn locate(paths: &[PathBuf], cache: Option<&Path>) -> anyhow::Result<Vec<nd_store::Artifact>> {
    paths
        .iter()
        .map(|p| nd_store::locate(p, cache).map_err(anyhow::Error::from))
        .collect()
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let (outcome, common) = match &args.command {
        Some(Command::Merge { blocks, common }) => {
            threads(common.threads)?;
            let blocks = locate(blocks, common.cache.as_deref())?;
            let store = nd_store::Store::open_for(common.cache.as_deref(), &blocks[0])?;
            (nd_quantile::merge(&store, &blocks)?, common)
        }
        None => {
            let common = &args.common;
            threads(common.threads)?;
            let activations = locate(&args.activations, common.cache.as_deref())?;
            let store = nd_store::Store::open_for(common.cache.as_deref(), &activations[0])?;
            let config = nd_quantile::Config {
                top: args.top,
                units: args.units,
                progress: !common.no_progress,
            };
            if common.explain {
                eprintln!(
                    "{}",
                    store.explain(&nd_quantile::spec(&activations, &config)?)?
                );
            }
            (nd_quantile::run(&store, &activations, &config)?, common)
        }
    };
    outcome.announce("quantile", common.record.as_deref())?;
    Ok(())
}

fn threads(n: usize) -> anyhow::Result<()> {
    if n > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()?;
    }
    Ok(())
}
