//! `nd-train`: the train stage as a command.

use std::path::PathBuf;

use clap::Parser;

/// Trains a variant of the demo network (a recipe of python/train_variants.py, `--list`
/// shows them) on a synthetic training set into the cache, once per recipe, seed and
/// training set; prints the artifact's directory, whose model.pt nd-extract reads.
#[derive(Parser)]
#[command(name = "nd-train", version)]
struct Args {
    /// The training set: a synth artifact (a directory `<cache>/synth/<key>`, or a record
    /// of one, as `nd-synth --record` writes).
    #[arg(long, required_unless_present = "list")]
    data: Option<PathBuf>,
    /// The recipe.
    #[arg(long, required_unless_present = "list")]
    recipe: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Epochs (default: the script's).
    #[arg(long)]
    epochs: Option<u32>,
    /// Torch's threads (in the key: float sums may follow them).
    #[arg(long, default_value_t = nd_train::DEFAULT_THREADS)]
    threads: usize,
    /// Also keep the network before training and after each epoch (snapshots/epoch-<k>.pt
    /// in the artifact), for comparisons over training iterations.
    #[arg(long)]
    snapshots: bool,
    /// The Python to train with (default: NETDISSECT_PYTHON, else the project's .venv).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Print the recipes (and the torch version) as JSON and exit.
    #[arg(long)]
    list: bool,
    /// The cache directory (default: the one holding the input artifact).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-train: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let python = match &args.python {
        Some(p) => p.clone(),
        None => nd_train::python()?,
    };
    if args.list {
        println!("{:#}", nd_train::recipes(&python)?);
        return Ok(());
    }
    let (Some(data), Some(recipe)) = (&args.data, &args.recipe) else {
        unreachable!("clap requires them");
    };
    let data = nd_store::locate(data, args.cache.as_deref())?;
    let store = nd_store::Store::open_for(args.cache.as_deref(), &data)?;
    let config = nd_train::Config {
        recipe: recipe.clone(),
        seed: args.seed,
        epochs: args.epochs,
        threads: args.threads,
        python: Some(python),
        snapshots: args.snapshots,
    };
    if args.explain {
        eprintln!("{}", store.explain(&nd_train::spec(&data, &config)?)?);
    }
    let outcome = nd_train::run(&store, &data, &config)?;
    outcome.announce("train", args.record.as_deref())?;
    Ok(())
}
