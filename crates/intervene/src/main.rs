//! `nd-intervene`: the intervene stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use nd_torch::DeviceChoice;

/// Ablates and inserts the units of a generator's layer that the dissection labels with a
/// concept, draws its samples again from the changed layer, and measures with the
/// segmenter how much of the concept they show, against as many random units. Prints the
/// changes on stdout and the artifact's directory on stderr.
#[derive(Parser)]
#[command(name = "nd-intervene", version)]
struct Args {
    /// The score artifact of the generator's dissection (a directory, or a record of one).
    #[arg(long)]
    scores: PathBuf,
    /// The generator, segmenter and label file the samples were generated with.
    #[arg(long)]
    generator: PathBuf,
    #[arg(long)]
    segmenter: PathBuf,
    #[arg(long)]
    segmenter_labels: PathBuf,
    #[arg(long)]
    layer: String,
    /// Concepts, comma-separated, as the segmenter's label file names them.
    #[arg(long, value_delimiter = ',', required = true)]
    concepts: Vec<String>,
    /// Numbers of units to change, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    ks: Vec<usize>,
    /// The first samples of the dissection to measure on.
    #[arg(long, default_value_t = 100)]
    samples: usize,
    /// The value ablated units are set to.
    #[arg(long, default_value_t = 0.0)]
    ablation_value: f64,
    /// Where units are inserted: top,left,bottom,right as fractions of the layer's grid.
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 1,
        default_value = "0.25,0.25,0.75,0.75"
    )]
    region: Vec<f64>,
    /// Draws of random units per number of units (the control).
    #[arg(long, default_value_t = 3)]
    draws: usize,
    /// The seed of the random units.
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
    /// The cache directory (default: the one holding the score artifact).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Also copy the artifact (tables, grids, index.html) to this directory, replacing it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-intervene: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let scores = nd_store::locate(&args.scores, args.cache.as_deref())?;
    let store = nd_store::Store::open_for(args.cache.as_deref(), &scores)?;
    let region: [f64; 4] = args
        .region
        .as_slice()
        .try_into()
        .ok()
        .context("--region takes four comma-separated fractions: top,left,bottom,right")?;
    let config = nd_intervene::Config {
        ks: args.ks,
        samples: args.samples,
        ablation_value: args.ablation_value,
        region,
        draws: args.draws,
        seed: args.seed,
        batch_size: args.batch_size,
        device: args.device,
        threads: args.threads,
        ..nd_intervene::Config::new(
            args.generator,
            args.segmenter,
            args.segmenter_labels,
            args.layer,
            args.concepts,
        )
    };
    if args.explain {
        eprintln!("{}", store.explain(&nd_intervene::spec(&scores, &config)?)?);
    }
    let outcome = nd_intervene::run(&store, &scores, &config)?;
    print!("{}", nd_intervene::format_summary(&outcome.artifact)?);
    eprintln!(
        "intervene: {} {} in {}",
        if outcome.computed {
            "wrote"
        } else {
            "fresh, nothing to do"
        },
        outcome.artifact.key().short(),
        outcome.artifact.dir.display()
    );
    if let Some(out) = &args.out {
        outcome
            .artifact
            .export(out, nd_store::Transfer::Copy)
            .with_context(|| format!("copying the artifact to {}", out.display()))?;
    }
    if let Some(record) = &args.record {
        outcome.artifact.write_record(record)?;
    }
    Ok(())
}
