//! `nd-report`: the report stage as a command, and `summarize` for published result files.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Labels every unit and summarises each layer from a score artifact; prints the per-layer
/// table on stdout and the report artifact's directory on stderr, and with --out copies the
/// report there. `nd-report summarize FILE...` summarises published NetDissect result files
/// (tally.csv / <layer>-result.csv) instead.
#[derive(Parser)]
#[command(name = "nd-report", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The score artifact (a directory `<cache>/score/<key>`, or a record of one).
    #[arg(long)]
    scores: Option<PathBuf>,
    /// A unit is a detector when its best IoU reaches this.
    #[arg(long, default_value_t = 0.04)]
    iou_threshold: f64,
    /// The formulas artifact of the same masks (a directory `<cache>/formulas/<key>`, or a
    /// record of one): each layer's figures then count the units a formula of concepts
    /// explains better than one concept.
    #[arg(long)]
    formulas: Option<PathBuf>,
    /// With --formulas: the IoU a unit's best formula must gain over its best single
    /// concept to count.
    #[arg(long, default_value_t = 0.01, requires = "formulas")]
    formula_gain: f64,
    /// The cache directory (default: the one holding the input artifact).
    #[arg(long, env = "NETDISSECT_CACHE")]
    cache: Option<PathBuf>,
    /// Say why the stage computes (or that it is fresh) on stderr.
    #[arg(long)]
    explain: bool,
    /// Also write the artifact's manifest to this file (a record, for workflow engines).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Copy the report's files (tables, summary.json, tally CSVs) to this directory.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer statistics of published result files (any column order).
    Summarize {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, default_value_t = 0.04)]
        iou_threshold: f64,
        /// Print the summaries as JSON (one object per file) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-report: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Summarize {
        files,
        iou_threshold,
        json,
    }) = args.command
    {
        return summarize(&files, iou_threshold, json);
    }
    let scores = args
        .scores
        .context("--scores is required (or use `nd-report summarize FILE...`)")?;
    let scores = nd_store::locate(&scores, args.cache.as_deref())?;
    scores.expect_stage("score")?;
    let store = nd_store::Store::open_for(args.cache.as_deref(), &scores)?;
    let formulas = match &args.formulas {
        Some(path) => {
            let artifact = nd_store::locate(path, args.cache.as_deref())?;
            artifact.expect_stage("formulas")?;
            Some(artifact)
        }
        None => None,
    };
    let config = nd_report::Config {
        iou_threshold: args.iou_threshold,
        formula_gain: args.formula_gain,
    };
    if args.explain {
        eprintln!(
            "{}",
            store.explain(&nd_report::spec(&scores, formulas.as_ref(), &config)?)?
        );
    }
    let outcome = nd_report::run(&store, &scores, formulas.as_ref(), &config)?;
    let (categories, summaries) = nd_report::read_summaries(&outcome.artifact)?;
    eprintln!(
        "report: {} {} in {}",
        if outcome.computed {
            "wrote"
        } else {
            "fresh, nothing to do"
        },
        outcome.artifact.key().short(),
        outcome.artifact.dir.display()
    );
    if let Some(record) = &args.record {
        outcome.artifact.write_record(record)?;
    }
    if let Some(out) = &args.out {
        nd_report::export(&outcome.artifact, formulas.as_ref(), out)?;
        eprintln!("report: copied to {}", out.display());
    }
    print!(
        "{}",
        nd_report::format_table(&summaries, &categories, config.iou_threshold)
    );
    Ok(())
}

fn summarize(files: &[PathBuf], threshold: f64, json: bool) -> anyhow::Result<()> {
    nd_report::Config {
        iou_threshold: threshold,
        ..Default::default()
    }
    .validate()?;
    let mut summaries = Vec::new();
    let mut all_categories: Vec<String> = Vec::new();
    for file in files {
        let (categories, rows) = nd_report::tally::read(file)?;
        for c in &categories {
            if !all_categories.contains(c) {
                all_categories.push(c.clone());
            }
        }
        let units: Vec<_> = rows.iter().map(|r| r.labels()).collect();
        let name = file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        summaries.push(nd_report::summarize(&name, &units, &categories, threshold));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
    } else {
        print!(
            "{}",
            nd_report::format_table(&summaries, &all_categories, threshold)
        );
    }
    Ok(())
}
