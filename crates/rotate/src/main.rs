//! `nd-rotate`: the rotate stage as a command.

use std::path::PathBuf;

use clap::Parser;

/// Writes the activations of an extract artifact in a random rotation of each layer's basis
/// of units (`Q^power` of the rotation that `--seed` names), the paper's control for axis
/// alignment. Prints the rotate artifact's directory on stdout (the extract artifact's
/// own for `--power 0`); quantile, segment, score, report and html take it where they take
/// an extract artifact.
#[derive(Parser)]
#[command(name = "nd-rotate", version)]
struct Args {
    /// The extract artifact (a directory `<cache>/extract/<key>`, or a record of one).
    #[arg(long)]
    activations: PathBuf,
    /// The seed of the random rotation (the same seed, the same rotation everywhere).
    #[arg(long)]
    seed: u64,
    /// The fraction of the rotation applied, in [0, 1]: 1 the whole random rotation, 0
    /// none (the extract artifact itself).
    #[arg(long, default_value_t = 1.0)]
    power: f64,
    /// Only these layers, comma-separated (default: every layer of the artifact).
    #[arg(long, value_delimiter = ',')]
    layers: Option<Vec<String>>,
    /// The cache directory (default: the one holding the input artifact; required when the
    /// input is a record).
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
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-rotate: error: {e:#}");
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
    let activations = nd_store::locate(&args.activations, args.cache.as_deref())?;
    let store = nd_store::Store::open_for(args.cache.as_deref(), &activations)?;
    let config = nd_rotate::Config {
        rotation: nd_rotate::Rotation::Random {
            seed: args.seed,
            power: args.power,
        },
        layers: args.layers,
        progress: !args.no_progress,
    };
    if args.explain && args.power == 0.0 {
        eprintln!("rotate: power 0 is the identity, which is the extract artifact itself");
    } else if args.explain {
        eprintln!(
            "{}",
            store.explain(&nd_rotate::spec(&activations, &config)?)?
        );
    }
    let outcome = nd_rotate::run(&store, &activations, &config)?;
    outcome.announce("rotate", args.record.as_deref())?;
    Ok(())
}
