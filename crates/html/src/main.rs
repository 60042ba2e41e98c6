//! `nd-html`: the browsable report as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Writes the HTML report of one model's dissection: an index, a page per layer with a
/// card per unit, a page per unit. The score, segment and extract artifacts are found
/// through the report's inputs in the same cache. Prints the artifact's directory (open
/// its index.html) on stdout.
#[derive(Parser)]
#[command(name = "nd-html", version)]
struct Args {
    /// The dataset directory the activations were extracted from (for the images and the
    /// label maps).
    #[arg(long)]
    dataset: PathBuf,
    /// The report artifact (a directory `<cache>/report/<key>`).
    #[arg(long)]
    report: PathBuf,
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
    /// Copy the pages to this directory (replacing an earlier copy there).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-html: error: {e:#}");
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
    let config = nd_html::Config {
        top_images: args.top_images,
        thumbnail_height: args.thumbnail_height,
        title: args.title,
    };
    config.validate()?;
    let report = nd_store::Artifact::open(&args.report)?;
    report.expect_stage("report")?;
    let cache = match &args.cache {
        Some(dir) => dir.clone(),
        None => report
            .cache_root()
            .context("the report artifact is not inside a cache")?
            .to_owned(),
    };
    let store = nd_store::Store::open(&cache)
        .with_context(|| format!("cannot open the cache {}", cache.display()))?;
    let input = |artifact: &nd_store::Artifact, role: &str, stage: &str| {
        let key = artifact.manifest.inputs.get(role).with_context(|| {
            format!(
                "{}: the manifest names no `{role}` input",
                artifact.dir.display()
            )
        })?;
        store.get_key(stage, *key)?.with_context(|| {
            format!(
                "the {stage} artifact {} that {} was made from is not in the cache {}",
                key.short(),
                artifact.dir.display(),
                cache.display()
            )
        })
    };
    let scores = input(&report, "scores", "score")?;
    let masks = input(&scores, "masks", "segment")?;
    let activations = input(&masks, "activations", "extract")?;
    let dataset = nd_broden::Dataset::open(&args.dataset, &Default::default())
        .with_context(|| format!("cannot open the dataset {}", args.dataset.display()))?;
    let inputs = nd_html::Inputs {
        dataset: &dataset,
        activations: &activations,
        masks: &masks,
        scores: &scores,
        report: &report,
    };
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
    if let Some(out) = &args.out {
        nd_html::export(&outcome.artifact, out)?;
        eprintln!("html: copied to {}", out.display());
    }
    println!("{}", outcome.artifact.dir.display());
    Ok(())
}
