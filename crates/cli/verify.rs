//! `netdissect verify`: checks every artifact of a cache against its manifest, and with
//! `--repair` moves the damaged ones aside so that the next run recomputes them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nd_store::integrity::{Entry, Level, listed_bytes};
use nd_store::{Artifact, Store};

pub struct Options {
    pub repair: bool,
    pub progress: bool,
}

/// What is wrong with one artifact directory.
struct Damage {
    stage: String,
    name: String,
    dir: PathBuf,
    problems: Vec<String>,
}

/// The problems shown on an artifact's line; the rest are counted.
const SHOWN: usize = 3;

/// Checks every artifact of the cache at `cache`, printing a line per damaged one on
/// stdout; fails when any is damaged (after moving them aside with `repair`).
pub fn verify(cache: &Path, options: &Options) -> anyhow::Result<()> {
    if !cache.join("tmp").is_dir() {
        anyhow::bail!(
            "{} is not a netdissect cache (it has no tmp/ directory)",
            cache.display()
        );
    }
    let store =
        Store::open(cache).with_context(|| format!("cannot open the cache {}", cache.display()))?;
    let entries = store.entries()?;
    let artifacts: Vec<&Artifact> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Artifact(a) => Some(a.as_ref()),
            _ => None,
        })
        .collect();
    let total: u64 = artifacts.iter().map(|a| listed_bytes(a)).sum();
    let bar = progress_bar(options.progress, total);

    let mut damaged = Vec::new();
    let (mut whole, mut old) = (0usize, 0usize);
    for entry in &entries {
        match entry {
            Entry::Artifact(artifact) => {
                bar.set_message(format!(
                    "{} {}",
                    artifact.manifest.stage,
                    artifact.key().short()
                ));
                let checker = nd_arrays::verify::ChunkChecker::new(&artifact.dir);
                let check = |file: &str, bytes: &[u8]| checker.check(file, bytes);
                let problems =
                    artifact.problems(Level::Full, Some(&check), &|bytes| bar.inc(bytes));
                if problems.is_empty() {
                    whole += 1;
                } else {
                    damaged.push(Damage {
                        stage: artifact.manifest.stage.clone(),
                        name: artifact.key().short(),
                        dir: artifact.dir.clone(),
                        problems: problems.iter().map(ToString::to_string).collect(),
                    });
                }
            }
            Entry::Broken {
                stage,
                dir,
                message,
            } => damaged.push(Damage {
                stage: stage.clone(),
                name: short_name(dir),
                dir: dir.clone(),
                problems: vec![message.clone()],
            }),
            Entry::Old { .. } => old += 1,
        }
    }
    bar.finish_and_clear();

    for damage in &damaged {
        let mut problems = damage.problems[..damage.problems.len().min(SHOWN)].join("; ");
        if damage.problems.len() > SHOWN {
            problems.push_str(&format!(" (and {} more)", damage.problems.len() - SHOWN));
        }
        println!(
            "damaged {} {} {}: {problems}",
            damage.stage,
            damage.name,
            damage.dir.display()
        );
    }
    let mut moved = 0;
    if options.repair {
        for damage in &damaged {
            let to = store.move_aside(&damage.dir)?;
            println!("moved aside {} -> {}", damage.dir.display(), to.display());
            moved += 1;
        }
    }
    println!(
        "verify: {} artifacts ({}) in {}: {} whole, {} damaged{}",
        artifacts.len(),
        bytes(total),
        store.root().display(),
        whole,
        damaged.len(),
        if moved > 0 {
            format!(
                ", moved aside to {}",
                store.root().join("damaged").display()
            )
        } else {
            String::new()
        }
    );
    if old > 0 {
        println!(
            "verify: {old} artifacts of an older netdissect, written before checksums: this \
             version never reads them (delete them to free their space)"
        );
    }
    if damaged.is_empty() {
        Ok(())
    } else if options.repair {
        anyhow::bail!(
            "{} damaged artifacts moved aside; the next run recomputes them",
            damaged.len()
        )
    } else {
        anyhow::bail!(
            "{} damaged artifacts; run `netdissect verify --repair --cache {}` to move them \
             aside, then rerun to recompute them",
            damaged.len(),
            store.root().display()
        )
    }
}

/// A directory's name shortened as keys are in messages.
fn short_name(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.chars().take(12).collect()
}

fn bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n as f64 >= 1024.0 * MIB {
        format!("{:.1} GiB", n as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

fn progress_bar(progress: bool, total: u64) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "verify {bar:32} {bytes}/{total_bytes}, {bytes_per_sec}, eta {eta} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}
