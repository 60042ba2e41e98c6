//! `nd-explain`: the explain stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nd_torch::DeviceChoice;

/// Explains a classifier's predictions on a Broden-format dataset by the units of a
/// dissected layer (gradient × activation, joined with the dissection's labels) and tests
/// the explanations by ablating units. Prints the faithfulness table and then the artifact's
/// directory on stdout. `nd-explain merge` joins the explanations of image shards
/// (`--images`) into those of all their rows.
#[derive(Parser)]
#[command(name = "nd-explain", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The TorchScript model file (forward returns the layer and the class scores; the
    /// method forward_from runs it on from the layer).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The dissected layer whose units explain the predictions.
    #[arg(long)]
    layer: Option<String>,
    /// The report artifact of the same model's dissection (a directory
    /// `<cache>/report/<key>`, or a record of one).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Explain only the dataset rows START..END (an image shard; join shards with
    /// `nd-explain merge`). Default: every row.
    #[arg(long, value_name = "START..END")]
    images: Option<String>,
    /// The name under which forward returns the class scores.
    #[arg(long, default_value = "logits")]
    logits: String,
    /// The class names: one per line, in the order of the class scores (default: numbered).
    #[arg(long)]
    classes: Option<PathBuf>,
    /// Names of the tensors of a tuple output, in order, comma-separated.
    #[arg(long, value_delimiter = ',')]
    output_names: Option<Vec<String>>,
    /// The preprocessing, as the dissection's extraction had it.
    #[command(flatten)]
    preprocess: nd_torch::PreprocessArgs,
    /// Classes explained per image (the highest scores).
    #[arg(long, default_value_t = 1)]
    top_k: usize,
    /// Units kept per image and class, and per class in the class tables.
    #[arg(long, default_value_t = 10)]
    top_n: usize,
    /// Numbers of units the faithfulness check ablates, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    ablate: Vec<usize>,
    /// Seeded draws of random units per number.
    #[arg(long, default_value_t = 5)]
    random_draws: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The dataset category that names each image's true class ("" for none).
    #[arg(long, default_value = "scene")]
    truth_category: String,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(clap::Args)]
struct Common {
    /// The dataset directory (Broden layout), or the record of a synthetic one in the cache.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// The cache directory (default: the one holding the input artifact).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
    /// Copy the artifact's tables and summary to this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Join the explanations of image shards (nd-explain --images) into the explanation of
    /// all their rows: the same tables one run over those rows writes.
    Merge {
        /// The explain artifacts (or records) of the shards, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-explain: error: {e:#}");
        std::process::exit(1);
    }
}

fn parse_range(text: &str) -> anyhow::Result<std::ops::Range<usize>> {
    let (a, b) = text
        .split_once("..")
        .with_context(|| format!("--images `{text}` is not START..END"))?;
    Ok(a.trim().parse().context("--images start")?..b.trim().parse().context("--images end")?)
}

fn open_dataset(common: &Common, store: &nd_store::Store) -> anyhow::Result<nd_broden::Dataset> {
    let dataset = common.dataset.as_deref().context("--dataset is required")?;
    let dir = nd_store::dataset_dir(dataset, Some(store.root()))?;
    nd_broden::Dataset::open(&dir, &Default::default())
        .with_context(|| format!("cannot open the dataset {}", dir.display()))
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let (outcome, common) = match &args.command {
        Some(Command::Merge { shards, common }) => {
            let cache = common.cache.as_deref();
            let shards: Vec<nd_store::Artifact> = shards
                .iter()
                .map(|p| nd_store::locate(p, cache))
                .collect::<Result<_, _>>()?;
            let store = nd_store::Store::open_for(cache, &shards[0])?;
            let dataset = open_dataset(common, &store)?;
            (nd_explain::merge(&store, &dataset, &shards)?, common)
        }
        None => (explain(&args)?, &args.common),
    };
    if outcome.computed {
        eprintln!("explain: wrote {}", outcome.artifact.key().short());
    } else {
        eprintln!(
            "explain: fresh, nothing to do ({})",
            outcome.artifact.key().short()
        );
    }
    print!(
        "{}",
        nd_explain::ablation_table(&nd_explain::read_ablation(&outcome.artifact)?)
    );
    // Last, as every stage binary ends: the artifact's directory.
    println!("{}", outcome.artifact.dir.display());
    if let Some(out) = &common.out {
        // Copies, not links: these tables get opened, and sometimes rewritten, in notebooks.
        outcome.artifact.export(out, nd_store::Transfer::Copy)?;
    }
    if let Some(record) = &common.record {
        outcome.artifact.write_record(record)?;
    }
    Ok(())
}

/// One explanation: of every row, or of an image shard.
fn explain(args: &Args) -> anyhow::Result<nd_explain::Outcome> {
    let common = &args.common;
    let required =
        |name: &str| format!("--{name} is required (or use `nd-explain merge SHARD...`)");
    let model = args.model.clone().with_context(|| required("model"))?;
    let layer = args.layer.clone().with_context(|| required("layer"))?;
    let report = args.report.as_deref().with_context(|| required("report"))?;
    let rows = args.images.as_deref().map(parse_range).transpose()?;
    nd_torch::set_threads(args.threads)?;
    let preprocess = args.preprocess.resolve()?;
    let report = nd_store::locate(report, common.cache.as_deref())?;
    report.expect_stage("report")?;
    let store = nd_store::Store::open_for(common.cache.as_deref(), &report)?;
    let dataset = open_dataset(common, &store)?;
    let mut config = nd_explain::Config::new(model, layer, preprocess);
    config.logits = args.logits.clone();
    config.classes = args
        .classes
        .as_deref()
        .map(nd_explain::read_classes)
        .transpose()?;
    config.output_names = args.output_names.clone();
    config.top_k = args.top_k;
    config.top_n = args.top_n;
    config.ablate = args.ablate.clone();
    config.random_draws = args.random_draws;
    config.seed = args.seed;
    config.truth_category = Some(args.truth_category.clone()).filter(|c| !c.is_empty());
    config.batch_size = args.batch_size;
    config.rows = rows;
    config.device = args.device;
    config.progress = !args.no_progress;
    if common.explain {
        let spec = nd_explain::spec(&store, &dataset, &report, &config)?;
        eprintln!("{}", store.explain(&spec)?);
    }
    Ok(nd_explain::run(&store, &dataset, &report, &config)?)
}
