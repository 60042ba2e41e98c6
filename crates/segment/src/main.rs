//! `nd-segment`: the segment stage as a command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Upsamples every unit's maps to the label resolution and keeps the pixels above the
/// unit's threshold. Prints the segment artifact's directory on stdout.
#[derive(Parser)]
#[command(name = "nd-segment", version)]
struct Args {
    /// The dataset directory the activations were extracted from (for the label sizes).
    #[arg(long)]
    dataset: PathBuf,
    /// The extract artifact (or a rotate artifact of one).
    #[arg(long)]
    activations: PathBuf,
    /// The quantile artifact.
    #[arg(long)]
    thresholds: PathBuf,
    /// bilinear (NetDissect-Lite) or receptive-field (the original NetDissect).
    #[arg(long, default_value = "bilinear")]
    upsample: nd_segment::Upsample,
    /// With receptive-field upsampling, where the layers' fields come from: by default
    /// the model's (the extract artifact records those its file holds); `assume-centred`
    /// places every layer's centres mid-cell (not the original's geometry); or a JSON file
    /// `{"<layer>": {"offset": [y, x], "size": [y, x], "stride": [y, x]} | "assume-centred"}`
    /// (or that JSON itself) choosing some layers' fields (the original's field maps, in
    /// input pixels).
    #[arg(long)]
    fields: Option<String>,
    /// The cache directory (default: the one holding the input artifacts).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
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

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-segment: error: {e:#}");
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
    activations.expect_activations()?;
    let thresholds = nd_store::locate(&args.thresholds, args.cache.as_deref())?;
    thresholds.expect_stage("quantile")?;
    let store = nd_store::Store::open_for(args.cache.as_deref(), &activations)?;
    let dir = nd_store::dataset_dir(&args.dataset, Some(store.root()))?;
    let dataset = nd_broden::Dataset::open(&dir, &Default::default())
        .with_context(|| format!("cannot open the dataset {}", dir.display()))?;
    let fields =
        match args.fields.as_deref() {
            None => nd_arrays::fields::Fields::Model,
            Some(nd_arrays::fields::ASSUME_CENTRED) => nd_arrays::fields::Fields::AssumeCentred,
            Some(path) => {
                // Inline JSON (as the workflow passes it), or a file holding it.
                let text = if path.trim_start().starts_with('{') {
                    path.to_owned()
                } else {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("--fields: cannot read {path}"))?
                };
                nd_arrays::fields::Fields::Overrides(serde_json::from_str(&text).with_context(
                    || format!("--fields: {path} is not a map from layer to field"),
                )?)
            }
        };
    let config = nd_segment::Config {
        upsample: args.upsample,
        fields,
        progress: !args.no_progress,
    };
    if args.explain {
        eprintln!(
            "{}",
            store.explain(&nd_segment::spec(
                &dataset,
                &activations,
                &thresholds,
                &config
            )?)?
        );
    }
    let outcome = nd_segment::run(&store, &dataset, &activations, &thresholds, &config)?;
    outcome.announce("segment", args.record.as_deref())?;
    Ok(())
}
