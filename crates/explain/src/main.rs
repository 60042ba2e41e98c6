//! `nd-explain`: the explain stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use nd_torch::DeviceChoice;

/// Explains a classifier's predictions on a Broden-format dataset by the units of a
/// dissected layer (gradient × activation, joined with the dissection's labels) and tests
/// the explanations by ablating units. Prints the faithfulness table and then the artifact's
/// directory on stdout.
#[derive(Parser)]
#[command(name = "nd-explain", version)]
struct Args {
    /// The dataset directory (Broden layout), or the record of a synthetic one in the cache.
    #[arg(long)]
    dataset: PathBuf,
    /// The TorchScript model file (forward returns the layer and the class scores; the
    /// method forward_from runs it on from the layer).
    #[arg(long)]
    model: PathBuf,
    /// The dissected layer whose units explain the predictions.
    #[arg(long)]
    layer: String,
    /// The report artifact of the same model's dissection (a directory
    /// `<cache>/report/<key>`, or a record of one).
    #[arg(long)]
    report: PathBuf,
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
    /// The cache directory (default: the one holding the report artifact).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Copy the artifact's tables and summary to this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-explain: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    nd_torch::set_threads(args.threads)?;
    let preprocess = args.preprocess.resolve()?;
    let report = nd_store::locate(&args.report, args.cache.as_deref())?;
    report.expect_stage("report")?;
    let store = nd_store::Store::open_for(args.cache.as_deref(), &report)?;
    let dir = nd_store::dataset_dir(&args.dataset, Some(store.root()))?;
    let dataset = nd_broden::Dataset::open(&dir, &Default::default())
        .with_context(|| format!("cannot open the dataset {}", dir.display()))?;
    let mut config = nd_explain::Config::new(args.model, args.layer, preprocess);
    config.logits = args.logits;
    config.classes = args
        .classes
        .as_deref()
        .map(nd_explain::read_classes)
        .transpose()?;
    config.output_names = args.output_names;
    config.top_k = args.top_k;
    config.top_n = args.top_n;
    config.ablate = args.ablate;
    config.random_draws = args.random_draws;
    config.seed = args.seed;
    config.truth_category = Some(args.truth_category).filter(|c| !c.is_empty());
    config.batch_size = args.batch_size;
    config.device = args.device;
    config.progress = !args.no_progress;
    if args.explain {
        let spec = nd_explain::spec(&store, &dataset, &report, &config)?;
        eprintln!("{}", store.explain(&spec)?);
    }
    let outcome = nd_explain::run(&store, &dataset, &report, &config)?;
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
    if let Some(out) = &args.out {
        // Copies, not links: these tables get opened, and sometimes rewritten, in notebooks.
        outcome.artifact.export(out, nd_store::Transfer::Copy)?;
    }
    if let Some(record) = &args.record {
        outcome.artifact.write_record(record)?;
    }
    Ok(())
}
