//! `nd-generate`: the generate stage as a command.

use std::path::PathBuf;

use clap::Parser;
use nd_generate::{Config, Segmenter};
use nd_torch::DeviceChoice;

/// Draws samples from a generator, labels them with a segmenter and stores both as a
/// Broden-format dataset, with the generator's activations in the extract stage's layout,
/// in the cache. Prints the artifact's directory on stdout: quantile and segment take it as
/// activations, and its `dataset/` is the dataset of every later stage.
#[derive(Parser)]
#[command(name = "nd-generate", version)]
struct Args {
    /// The generator (TorchScript with a netdissect-generator.json record).
    #[arg(long)]
    generator: PathBuf,
    /// The segmenter (TorchScript: images to class scores (N, K, h, w)).
    #[arg(long)]
    segmenter: PathBuf,
    /// The segmenter's label file: `class,name,category`, one row per output channel.
    #[arg(long)]
    segmenter_labels: PathBuf,
    #[command(flatten)]
    preprocess: nd_torch::PreprocessArgs,
    /// The generator's layers to dissect, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    layers: Vec<String>,
    /// How many samples to draw.
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// The seed of the latent vectors (sample i's z depends on the seed and i alone).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The cache directory.
    #[arg(long, env = "NETDISSECT_CACHE", default_value = ".netdissect/cache")]
    cache: PathBuf,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-generate: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let store = nd_store::Store::open(&args.cache)?;
    let config = Config {
        generator: args.generator,
        segmenter: Segmenter {
            model: args.segmenter,
            labels: args.segmenter_labels,
            preprocess: args.preprocess.resolve()?,
        },
        layers: args.layers,
        samples: args.samples,
        seed: args.seed,
        batch_size: args.batch_size,
        device: args.device,
        threads: args.threads,
    };
    if args.explain {
        eprintln!("{}", store.explain(&nd_generate::spec(&store, &config)?)?);
    }
    let outcome = nd_generate::run(&store, &config)?;
    outcome.announce("generate", args.record.as_deref())?;
    Ok(())
}
