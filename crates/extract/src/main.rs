//! `nd-extract`: the extract stage as a command.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use nd_extract::{Config, DeviceChoice};

/// Runs a TorchScript model over a Broden-format dataset and stores the activations of the
/// requested layers in the cache (Zarr). Prints the artifact's directory on stdout.
#[derive(Parser)]
#[command(name = "nd-extract", version)]
struct Args {
    /// The dataset directory (Broden layout), or the record of a synthetic one in the cache.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// The TorchScript model file.
    #[arg(long)]
    model: PathBuf,
    /// Layers to extract, comma-separated, as the model's forward names them.
    #[arg(long, value_delimiter = ',')]
    layers: Vec<String>,
    /// Names of the tensors of a tuple output, in order, comma-separated.
    #[arg(long, value_delimiter = ',')]
    output_names: Option<Vec<String>>,
    #[command(flatten)]
    preprocess: nd_torch::PreprocessArgs,
    /// Rows of index.csv to use, `START..END` (default: all).
    #[arg(long)]
    images: Option<String>,
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
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// List what the model's forward returns and exit.
    #[arg(long)]
    list_layers: bool,
    /// Time the forward passes alone (images decoded and normalised in memory first, same
    /// batches, threads and device), print the seconds and exit: the floor for benchmarks.
    #[arg(long)]
    floor: bool,
    /// Input size for --list-layers without a dataset: `N` or `H,W`.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    input_size: Option<Vec<u32>>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("nd-extract: error: {e:#}{}", hint(&e));
        std::process::exit(1);
    }
}

/// What to change when the library's error cannot know the flag: a forward pass that
/// fails is most often a model made for images of another size.
fn hint(error: &anyhow::Error) -> String {
    let forward = match error.downcast_ref::<nd_extract::Error>() {
        Some(nd_extract::Error::Torch(e)) => Some(e),
        _ => error.downcast_ref::<nd_torch::Error>(),
    };
    match forward {
        Some(nd_torch::Error::Forward { input, .. }) => format!(
            "; if the model expects images of another size than {}×{}, resize them with \
             --resize H,W",
            input[2], input[3]
        ),
        _ => String::new(),
    }
}

/// What `forward` returns, one line a tensor, aligned whatever the names' lengths; outputs
/// that are not `(N, C, H, W)` maps are flagged, since they cannot be dissected.
/// Map layers show their receptive fields where the model file holds them.
fn print_layers(layers: &[(String, Vec<i64>)], fields: Option<&nd_arrays::fields::ModelFields>) {
    let rows: Vec<(&str, String, Option<String>)> = layers
        .iter()
        .map(|(name, shape)| {
            let per_image = if shape.len() > 1 {
                nd_extract::shape(&shape[1..])
            } else {
                "a scalar".to_owned()
            };
            let note = match (nd_extract::not_a_map(shape), fields) {
                (Some(_), _) => Some("not (N, C, H, W): cannot be dissected".to_owned()),
                (None, None) => None,
                (None, Some(fields)) => Some(match fields.layers.get(name) {
                    Some(field) => format!("field {}", field.describe()),
                    None => "field unknown".to_owned(),
                }),
            };
            (name.as_str(), per_image, note)
        })
        .collect();
    let name_width = rows
        .iter()
        .map(|(n, _, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let shape_width = rows
        .iter()
        .map(|(_, s, _)| s.chars().count())
        .max()
        .unwrap_or(0);
    for (name, shape, flag) in rows {
        match flag {
            Some(flag) => println!("  {name:<name_width$}  {shape:<shape_width$}  {flag}"),
            None => println!("  {name:<name_width$}  {shape}"),
        }
    }
    if fields.is_none() {
        println!(
            "(the file holds no receptive fields, which receptive-field upsampling needs: \
             python/export_torchvision.py stores them, or give them in the pipeline file)"
        );
    }
}

fn size_pair(values: &[u32], what: &str) -> anyhow::Result<[u32; 2]> {
    Ok(nd_torch::size_pair(values, what)?)
}

fn parse_range(text: &str) -> anyhow::Result<std::ops::Range<usize>> {
    let (a, b) = text
        .split_once("..")
        .with_context(|| format!("--images `{text}` is not START..END"))?;
    Ok(a.parse().context("--images start")?..b.parse().context("--images end")?)
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    nd_extract::set_threads(args.threads)?;
    if args.device == DeviceChoice::Cuda {
        nd_extract::resolve_device(args.device).context("--device cuda")?;
    }
    let preprocess = args.preprocess.resolve()?;

    let dataset = match &args.dataset {
        Some(path) => {
            let dir = nd_store::dataset_dir(path, Some(&args.cache))?;
            Some(
                nd_broden::Dataset::open(&dir, &Default::default())
                    .with_context(|| format!("cannot open the dataset {}", dir.display()))?,
            )
        }
        None => None,
    };

    if args.list_layers {
        let size = match (&args.input_size, &preprocess.resize, &dataset) {
            (Some(s), _, _) => size_pair(s, "--input-size")?,
            (None, Some(r), _) => *r,
            (None, None, Some(ds)) if !ds.is_empty() => {
                [ds.rows()[0].image_height, ds.rows()[0].image_width]
            }
            _ => [224, 224],
        };
        let layers =
            nd_extract::list_layers(&args.model, args.output_names.clone(), size, args.device)?;
        let fields = nd_extract::model_fields(&args.model)?;
        println!(
            "{} returns, for one {}×{} image:",
            args.model.display(),
            size[0],
            size[1]
        );
        print_layers(&layers, fields.as_ref());
        return Ok(());
    }

    let Some(dataset) = dataset else {
        bail!("--dataset is required (except with --list-layers)");
    };
    if args.layers.is_empty() {
        bail!("--layers is required: name the layers to extract (see --list-layers)");
    }
    let config = Config {
        model: args.model.clone(),
        layers: args.layers.clone(),
        output_names: args.output_names.clone(),
        preprocess,
        images: args.images.as_deref().map(parse_range).transpose()?,
        batch_size: args.batch_size,
        device: args.device,
        threads: args.threads,
        progress: !args.no_progress,
    };
    if args.floor {
        let floor = nd_extract::floor(&dataset, &config)?;
        println!(
            "floor: {} images in {} batches: forward {:.3} s ({:.1} images/s); decoding first took {:.3} s",
            floor.images,
            floor.batches,
            floor.forward_seconds,
            floor.images as f64 / floor.forward_seconds,
            floor.decode_seconds
        );
        println!(
            "floor: CPU seconds: forward {:.3}, decoding {:.3}, compressing {:.3} (one thread, {} bytes)",
            floor.forward_cpu_seconds,
            floor.decode_cpu_seconds,
            floor.compress_cpu_seconds,
            floor.compressed_bytes
        );
        return Ok(());
    }
    let store = nd_store::Store::open(&args.cache)
        .with_context(|| format!("cannot open the cache {}", args.cache.display()))?;
    if args.explain {
        let spec = nd_extract::spec(&store, &dataset, &config)?;
        eprintln!("{}", store.explain(&spec)?);
    }
    let outcome = nd_extract::run(&store, &dataset, &config)?;
    if outcome.computed {
        eprintln!("extract: wrote {}", outcome.artifact.key().short());
    } else {
        eprintln!(
            "extract: fresh, nothing to do ({})",
            outcome.artifact.key().short()
        );
    }
    if let Some(record) = &args.record {
        outcome.artifact.write_record(record)?;
    }
    println!("{}", outcome.artifact.dir.display());
    Ok(())
}
