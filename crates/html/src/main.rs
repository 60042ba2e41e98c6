//! `nd-html`: the browsable report as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Writes the HTML report of one model's dissection: an index, a page per layer with a
/// card per unit, a page per unit. The score, segment and extract artifacts are found
/// through the report's inputs in the same cache; with `--explanations`, the pages of the
/// model's explained predictions are added. Prints the artifact's directory (open its
/// index.html) on stdout. `nd-html index` writes the page comparing several models.
#[derive(Parser)]
#[command(name = "nd-html", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The dataset directory the activations were extracted from (for the images and the
    /// label maps), or the record of a synthetic dataset in the cache.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// The report artifact (a directory `<cache>/report/<key>`, or a record of one).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Top images shown per unit.
    #[arg(long, default_value_t = 10)]
    top_images: usize,
    /// Height in pixels of the images in a card's strip.
    #[arg(long, default_value_t = 84)]
    thumbnail_height: u32,
    /// The pages' title (a model's name).
    #[arg(long, default_value = "Network Dissection")]
    title: String,
    /// The cache directory (default: the one holding the report).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
    /// The explanations of the model's predictions by a layer of this report (an explain
    /// artifact `<cache>/explain/<key>`, or a record of one): adds the pages under
    /// `explain/` (`--explain` says why the stage computes).
    #[arg(long, value_name = "DIR")]
    explanations: Option<PathBuf>,
    /// The units' formulas of concepts (a formulas artifact of the same masks, or a record
    /// of one): shown on the cards and unit pages.
    #[arg(long, value_name = "DIR")]
    formulas: Option<PathBuf>,
    /// Copy the pages to this directory (replacing an earlier copy there).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Write `index.html` comparing models (what `netdissect run` writes in its output
    /// directory): their layers side by side, unique detectors by layer across them. A
    /// model whose pages are at `<out>/<name>/html/` is linked to them.
    Index {
        /// The directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// A model, as `NAME=REPORT` (the report's artifact directory or record), in the
        /// order to show them.
        #[arg(long = "model", required = true)]
        models: Vec<String>,
        /// The cache directory (required when the reports are records).
        #[arg(long, env = "NETDISSECT_CACHE")]
        cache: Option<PathBuf>,
        /// A model of --model that dissects another's rotated activations, as
        /// `NAME=MODEL:SEED:POWER` (the fraction POWER of the rotation SEED names): the
        /// page then plots unique detectors against the fraction.
        #[arg(long = "rotation")]
        rotations: Vec<String>,
    },
}

/// A `--rotation NAME=MODEL:SEED:POWER` read and checked.
fn parse_rotation(text: &str, names: &[&str]) -> anyhow::Result<(String, nd_html::RunRotation)> {
    let bad = || {
        anyhow::anyhow!("--rotation `{text}` is not NAME=MODEL:SEED:POWER (e.g. m-rot0.5=m:1:0.5)")
    };
    let (name, rest) = text.split_once('=').ok_or_else(bad)?;
    let mut parts = rest.rsplitn(3, ':');
    let (power, seed, of) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    let power: f64 = power.parse().map_err(|_| bad())?;
    if !(0.0..=1.0).contains(&power) {
        anyhow::bail!("--rotation `{text}`: POWER must be between 0 and 1, got {power}");
    }
    for named in [name, of] {
        if !names.contains(&named) {
            anyhow::bail!("--rotation `{text}`: `{named}` is not a --model");
        }
    }
    Ok((
        name.to_owned(),
        nd_html::RunRotation {
            of: of.to_owned(),
            seed: seed.parse().map_err(|_| bad())?,
            power,
        },
    ))
}

fn index(
    out: &std::path::Path,
    models: &[String],
    rotations: &[String],
    cache: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for model in models {
        let (name, report) = model
            .split_once('=')
            .with_context(|| format!("--model `{model}` is not NAME=REPORT"))?;
        let report = nd_store::locate(report.as_ref(), cache)?;
        report.expect_stage("report")?;
        reports.push((name.to_owned(), report));
    }
    let names: Vec<&str> = reports.iter().map(|(n, _)| n.as_str()).collect();
    let rotations = rotations
        .iter()
        .map(|r| parse_rotation(r, &names))
        .collect::<anyhow::Result<std::collections::BTreeMap<_, _>>>()?;
    let entries: Vec<nd_html::RunModel> = reports
        .iter()
        .map(|(name, report)| nd_html::RunModel {
            name,
            report,
            link: out
                .join(name)
                .join("html/index.html")
                .exists()
                .then(|| format!("{name}/html/index.html")),
            rotation: rotations.get(name.as_str()).cloned(),
        })
        .collect();
    let page = nd_html::write_run_index(out, &entries)?;
    println!("{}", page.display());
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-html: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Index {
        out,
        models,
        cache,
        rotations,
    }) = &args.command
    {
        return index(out, models, rotations, cache.as_deref());
    }
    let report = args
        .report
        .as_deref()
        .context("--report is required (or use `nd-html index`)")?;
    let dataset = args.dataset.as_deref().context("--dataset is required")?;
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()?;
    }
    let config = nd_html::Config {
        top_images: args.top_images,
        thumbnail_height: args.thumbnail_height,
        title: args.title,
        progress: !args.no_progress,
    };
    config.validate()?;
    let report = nd_store::locate(report, args.cache.as_deref())?;
    report.expect_stage("report")?;
    let store = nd_store::Store::open_for(args.cache.as_deref(), &report)?;
    let chain = nd_html::Chain::find(&store, &report)?;
    let dir = nd_store::dataset_dir(dataset, Some(store.root()))?;
    let dataset = nd_broden::Dataset::open(&dir, &Default::default())
        .with_context(|| format!("cannot open the dataset {}", dir.display()))?;
    let explanations = args
        .explanations
        .as_deref()
        .map(|path| {
            let artifact = nd_store::locate(path, Some(store.root()))?;
            artifact.expect_stage("explain")?;
            Ok::<_, anyhow::Error>(artifact)
        })
        .transpose()?;
    let formulas = args
        .formulas
        .as_deref()
        .map(|path| {
            let artifact = nd_store::locate(path, Some(store.root()))?;
            artifact.expect_stage("formulas")?;
            Ok::<_, anyhow::Error>(artifact)
        })
        .transpose()?;
    let mut inputs = chain.inputs(&dataset, &report);
    inputs.explain = explanations.as_ref();
    inputs.formulas = formulas.as_ref();
    if args.explain {
        eprintln!("{}", store.explain(&nd_html::spec(&inputs, &config)?)?);
    }
    let started = std::time::Instant::now();
    let outcome = nd_html::run(&store, &inputs, &config)?;
    eprintln!(
        "html: {} {} in {:.2}s",
        if outcome.computed {
            "wrote"
        } else {
            "fresh, nothing to do"
        },
        outcome.artifact.key().short(),
        started.elapsed().as_secs_f64()
    );
    if let Some(record) = &args.record {
        outcome.artifact.write_record(record)?;
    }
    if let Some(out) = &args.out {
        nd_html::export(&outcome.artifact, out)?;
        eprintln!("html: copied to {}", out.display());
    }
    println!("{}", outcome.artifact.dir.display());
    Ok(())
}
