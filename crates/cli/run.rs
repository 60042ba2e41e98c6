//! `netdissect run`: every stage for every model, through the store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use nd_arrays::fields::Fields;
use nd_store::{Artifact, Store};

use crate::pipeline::{self, Loaded, ModelSection};

pub struct Options {
    pub explain: bool,
    pub threads: usize,
    pub progress: bool,
}

/// What one stage did, printed as `stage <stage> <model> computed|fresh <key> <seconds>`
/// on stderr: a fixed shape that scripts and tests read.
fn log(stage: &str, model: &str, artifact: &Artifact, computed: bool, started: Instant) {
    eprintln!(
        "stage {stage:<8} {model} {} {} {:.2}s",
        if computed { "computed" } else { "fresh" },
        artifact.key().short(),
        started.elapsed().as_secs_f64()
    );
}

/// Says, with `--explain`, why a stage of a model runs: what differs from the artifact the
/// model's last run used for the stage.
fn explain(
    options: &Options,
    store: &Store,
    model: &str,
    last: Option<&BTreeMap<String, nd_store::Key>>,
    spec: anyhow::Result<nd_store::Spec>,
) -> anyhow::Result<()> {
    if options.explain {
        let spec = spec?;
        let previous = last.and_then(|keys| keys.get(&spec.stage).copied());
        eprintln!("{}", store.explain_run(&spec, model, previous)?);
    }
    Ok(())
}

/// The dataset: a directory, or a synthetic one generated into the cache once.
pub(crate) fn dataset(
    loaded: &Loaded,
    store: &Store,
) -> anyhow::Result<(PathBuf, nd_broden::Dataset)> {
    let Some(section) = &loaded.pipeline.dataset else {
        anyhow::bail!("{}: no [dataset]", loaded.path.display());
    };
    let config = nd_broden::Config {
        categories: section.categories.clone(),
    };
    let dir = match (&section.path, &section.synth) {
        (Some(path), _) => loaded.resolve(path),
        (None, Some(synth)) => {
            let started = Instant::now();
            let config = synth.config()?;
            let nd_store::Outcome { artifact, computed } =
                nd_synth::generate_cached(store, &config)?;
            log("synth", "-", &artifact, computed, started);
            artifact.dir.join("dataset")
        }
        (None, None) => unreachable!("checked when loading"),
    };
    let dataset = nd_broden::Dataset::open(&dir, &config).with_context(|| {
        format!(
            "{}: cannot open the dataset {}",
            loaded.path.display(),
            dir.display()
        )
    })?;
    Ok((dir, dataset))
}

/// What one model's run produced.
pub struct ModelResult {
    pub name: String,
    pub report: Artifact,
    /// The copy of the report's tables in `[output] dir`.
    pub copy: Option<PathBuf>,
    /// The browsable report: its artifact, and its copy in `[output] dir`.
    pub html: Option<(Artifact, Option<PathBuf>)>,
    /// The explanations of its predictions (`[explain]`), and their copy.
    pub explain: Option<(Artifact, Option<PathBuf>)>,
    /// For the dissection of a model's rotated activations (`rotations`): which.
    pub rotation: Option<pipeline::RotatedVariant>,
    /// Its units' formulas (`[formulas]`), and the table's copy.
    pub formulas: Option<(Artifact, Option<PathBuf>)>,
}

/// What one dissection (of a model, or of its rotated activations) produced.
struct Dissected {
    report: Artifact,
    html: Option<Artifact>,
    explained: Option<Artifact>,
    formulas: Option<Artifact>,
}

/// The reports of every model, in pipeline order.
pub struct RunResult {
    pub models: Vec<ModelResult>,
    /// The page comparing the models (`[output] dir/index.html`).
    pub index: Option<PathBuf>,
    /// `[formulas]`'s settings and gain, when given.
    pub formulas: Option<(nd_formulas::Config, f64)>,
    /// `[intervene]`'s artifact, and its copy in `[output] dir`.
    pub intervened: Option<(Artifact, Option<PathBuf>)>,
}

/// Trains (or finds in the cache) every model that names a `train` recipe, and sets its
/// `file` to the trained network; logs a `train` stage line per model.
pub(crate) fn train_models(loaded: &mut Loaded, store: &Store) -> anyhow::Result<()> {
    let Some(section) = &loaded.pipeline.train else {
        return Ok(());
    };
    if !loaded.pipeline.models.iter().any(|m| m.train.is_some()) {
        return Ok(());
    }
    let started = Instant::now();
    let config = section.data.config()?;
    let nd_store::Outcome { artifact, computed } = nd_synth::generate_cached(store, &config)
        .with_context(|| format!("{}: [train] data", loaded.path.display()))?;
    log("synth", "train", &artifact, computed, started);
    let (epochs, threads) = (section.epochs, section.threads);
    let mut trained = Vec::new();
    for model in &loaded.pipeline.models {
        let Some(request) = &model.train else {
            continue;
        };
        let started = Instant::now();
        let config = nd_train::Config {
            epochs,
            threads,
            snapshots: request.get_ref().epoch.is_some(),
            ..nd_train::Config::new(request.get_ref().recipe.clone(), request.get_ref().seed)
        };
        let context = || {
            format!(
                "{}: model `{}`: train",
                loaded.location(request.span()),
                model.name
            )
        };
        let outcome = nd_train::run(store, &artifact, &config).with_context(context)?;
        let file = match request.get_ref().epoch {
            Some(epoch) => nd_train::snapshot(&outcome.artifact, epoch).with_context(context)?,
            None => outcome.artifact.dir.join(nd_train::MODEL_FILE),
        };
        log(
            "train",
            &model.name,
            &outcome.artifact,
            outcome.computed,
            started,
        );
        trained.push((model.name.clone(), toml::Spanned::new(request.span(), file)));
    }
    for (name, file) in trained {
        if let Some(model) = loaded.pipeline.models.iter_mut().find(|m| m.name == name) {
            model.file = Some(file);
        }
    }
    Ok(())
}

pub fn run(path: &Path, options: &Options) -> anyhow::Result<RunResult> {
    let mut loaded = pipeline::load(path)?;
    nd_extract::set_threads(options.threads)?;
    let cache = loaded.resolve(&loaded.pipeline.cache.dir);
    let store = Store::open(&cache)
        .with_context(|| format!("cannot open the cache {}", cache.display()))?;
    let dataset = match &loaded.pipeline.dataset {
        Some(_) => Some(dataset(&loaded, &store)?.1),
        None => None,
    };
    train_models(&mut loaded, &store)?;
    let p = &loaded.pipeline;
    // Every model that needs an extraction is asked for its layers before any extraction
    // starts, so a bad layer, file or device of a later model fails in seconds rather than
    // after the earlier models' hours.
    let mut extractions = Vec::new();
    for model in &p.models {
        let dataset = dataset
            .as_ref()
            .expect("checked when loading: models need a dataset");
        let mut extraction = extract_config(&loaded, &store, dataset, model, options)
            .with_context(|| format!("model `{}`", model.name))?;
        extraction.explain = explain_config(&loaded, dataset, model, options)
            .with_context(|| format!("model `{}`", model.name))?;
        extractions.push(extraction);
    }
    let mut dissected = Vec::new();
    for (model, extraction) in p.models.iter().zip(extractions) {
        let dataset = dataset
            .as_ref()
            .expect("checked when loading: models need a dataset");
        let fields = extraction.fields.clone();
        let (activations, own) = run_model(&loaded, &store, dataset, model, extraction, options)
            .with_context(|| format!("model `{}`", model.name))?;
        dissected.push((model.name.clone(), None, own));
        for variant in model.rotated() {
            let own = run_rotated(
                &loaded,
                &store,
                dataset,
                &variant,
                &activations,
                fields.clone(),
                options,
            )
            .with_context(|| {
                format!(
                    "model `{}`, rotation {} (seed {})",
                    model.name, variant.power, variant.seed
                )
            })?;
            dissected.push((variant.name.clone(), Some(variant), own));
        }
    }
    let mut intervened = None;
    for generator in &p.generators {
        let own = run_generator(&loaded, &store, generator, options)
            .with_context(|| format!("generator `{}`", generator.name))?;
        if let Some(section) = &p.intervene
            && section.get_ref().chosen(&p.generators).map(|g| &g.name) == Some(&generator.name)
        {
            let artifact = run_intervene(&loaded, &store, generator, &own.report, options)
                .with_context(|| format!("{}: [intervene]", loaded.location(section.span())))?;
            intervened = Some(artifact);
        }
        dissected.push((generator.name.clone(), None, own));
    }
    let mut models = Vec::new();
    for (name, rotation, own) in dissected {
        let Dissected {
            report,
            html,
            explained,
            formulas,
        } = own;
        let out = p
            .output
            .dir
            .as_ref()
            .map(|dir| loaded.resolve(dir).join(&name));
        if let Some(to) = &out {
            nd_report::export(&report, formulas.as_ref(), to)?;
        }
        let html = match html {
            Some(pages) => {
                let copy = match &out {
                    Some(to) => {
                        let to = to.join("html");
                        nd_html::export(&pages, &to)?;
                        Some(to)
                    }
                    None => None,
                };
                Some((pages, copy))
            }
            None => None,
        };
        let explain = match explained {
            Some(artifact) => {
                let copy = match &out {
                    Some(to) => {
                        let to = to.join("explain");
                        artifact.export(&to, nd_store::Transfer::Copy)?;
                        Some(to)
                    }
                    None => None,
                };
                Some((artifact, copy))
            }
            None => None,
        };
        let formulas = match formulas {
            Some(artifact) => {
                // nd_report::export copied their table beside the report's.
                let copy = out.as_ref().map(|to| to.join(nd_tables::formulas::FILE));
                Some((artifact, copy))
            }
            None => None,
        };
        models.push(ModelResult {
            name,
            report,
            copy: out,
            html,
            explain,
            rotation,
            formulas,
        });
    }
    let index = match &p.output.dir {
        Some(dir) => {
            let entries: Vec<nd_html::RunModel> = models
                .iter()
                .map(|m| nd_html::RunModel {
                    name: &m.name,
                    report: &m.report,
                    link: m
                        .html
                        .as_ref()
                        .and_then(|(_, copy)| copy.as_ref())
                        .map(|_| format!("{}/html/index.html", m.name)),
                    rotation: m.rotation.as_ref().map(|r| nd_html::RunRotation {
                        of: r.model.clone(),
                        seed: r.seed,
                        power: r.power,
                    }),
                })
                .collect();
            Some(nd_html::write_run_index(&loaded.resolve(dir), &entries)?)
        }
        None => None,
    };
    let formulas = match &p.formulas {
        Some(f) => Some((f.config(&p.score)?, *f.gain.get_ref())),
        None => None,
    };
    let intervened = match intervened {
        Some(artifact) => {
            let copy = match (&p.output.dir, &p.intervene) {
                (Some(dir), Some(section)) => {
                    let name = &section
                        .get_ref()
                        .chosen(&p.generators)
                        .expect("checked")
                        .name;
                    let to = loaded.resolve(dir).join(name).join("intervene");
                    artifact.export(&to, nd_store::Transfer::Copy)?;
                    Some(to)
                }
                _ => None,
            };
            Some((artifact, copy))
        }
        None => None,
    };
    Ok(RunResult {
        models,
        index,
        formulas,
        intervened,
    })
}

/// A model's extraction settings and the key they give, checked against the model itself
/// (its file, device and layers, see [`check_model`]) when its activations are not cached
/// yet.
fn extract_config(
    loaded: &Loaded,
    store: &Store,
    dataset: &nd_broden::Dataset,
    model: &ModelSection,
    options: &Options,
) -> anyhow::Result<Extraction> {
    let file = loaded.resolve(model.file()?.get_ref());
    if !file.is_file() {
        anyhow::bail!(
            "{}: model file {} does not exist (no such file); give the path of a TorchScript \
             file, relative to {}",
            loaded.location(model.file()?.span()),
            file.display(),
            loaded.path.display()
        );
    }
    let mut config = nd_extract::Config::new(
        file,
        model.layers.get_ref().clone(),
        model.preprocess.resolve()?,
    );
    config.output_names = model.output_names.clone();
    config.batch_size = model.batch_size;
    config.device = *model.device.get_ref();
    config.threads = options.threads;
    config.progress = options.progress;
    let fields = check_fields(loaded, model, &config)?;
    let spec = nd_extract::spec(store, dataset, &config)?;
    let cached = store.get(&spec)?;
    if cached.is_none() {
        check_model(loaded, dataset, model, &config)?;
    }
    Ok(Extraction {
        config,
        spec,
        cached,
        fields,
        explain: None,
    })
}

/// A model's explain settings when `[explain]` chooses it, checked against the model
/// before any extraction: its forward must return the class scores (as many as the class
/// names) and it must run on from the layer (the intervention method).
fn explain_config(
    loaded: &Loaded,
    dataset: &nd_broden::Dataset,
    model: &ModelSection,
    options: &Options,
) -> anyhow::Result<Option<nd_explain::Config>> {
    let Some(section) = &loaded.pipeline.explain else {
        return Ok(None);
    };
    if !section
        .chosen(&loaded.pipeline.models)
        .iter()
        .any(|m| m.name == model.name)
    {
        return Ok(None);
    }
    let mut config = section.config(loaded, model)?;
    config.progress = options.progress;
    let file = loaded.location(model.file()?.span());
    if dataset.is_empty() {
        anyhow::bail!("the dataset has no images");
    }
    // What extraction feeds the model: the resize, or the first image's size.
    let size = nd_torch::input::input_size(dataset, &config.preprocess, &(0..dataset.len()));
    let device = nd_extract::resolve_device(config.device)?;
    let net = nd_extract::Model::load(&config.model, device, config.output_names.clone())
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    net.require_intervention(&config.layer, "[explain]")
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let returned = net
        .output_shapes(size)
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let Some((_, shape)) = returned.iter().find(|(n, _)| *n == config.logits) else {
        anyhow::bail!(
            "{file}: forward returns no `{}` (the class scores that logits names); it returns {}",
            config.logits,
            returned
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if shape.len() != 2 {
        anyhow::bail!(
            "{file}: `{}` is {} for one image, not (1, classes): name the class scores",
            config.logits,
            nd_extract::shape(shape)
        );
    }
    if let (Some(names), Some(classes)) = (&config.classes, &model.classes)
        && names.len() as i64 != shape[1]
    {
        anyhow::bail!(
            "{}: the class names file {} has {} names but the model's `{}` has {} classes; give \
             one name per line, in the order of the class scores",
            loaded.location(classes.span()),
            loaded.resolve(classes.get_ref()).display(),
            names.len(),
            config.logits,
            shape[1]
        );
    }
    Ok(Some(config))
}

/// The fields the pipeline file chooses for a model; with `receptive-field` upsampling,
/// checked before any extraction: every layer needs a field, from the model file or the
/// pipeline file (or the explicit assumption).
fn check_fields(
    loaded: &Loaded,
    model: &ModelSection,
    config: &nd_extract::Config,
) -> anyhow::Result<Fields> {
    let fields = model.fields(loaded)?;
    if loaded.pipeline.segment.upsample != nd_segment::Upsample::ReceptiveField {
        return Ok(fields);
    }
    let file = loaded.location(model.file()?.span());
    let recorded =
        nd_extract::model_fields(&config.model).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let missing: Vec<&str> = model
        .layers
        .get_ref()
        .iter()
        .filter(|layer| {
            fields.choice(layer).is_none()
                && !recorded
                    .as_ref()
                    .is_some_and(|r| r.layers.contains_key(*layer))
        })
        .map(String::as_str)
        .collect();
    if let Some(first) = missing.first() {
        anyhow::bail!(
            "{file}: segment.upsample = \"receptive-field\" needs the receptive fields of {}, and {} holds none{}: {}",
            missing.join(", "),
            config.model.display(),
            if recorded.is_some() { " for them" } else { "" },
            nd_arrays::fields::how_to_give(first)
        );
    }
    Ok(fields)
}

/// A model's extraction, as [`extract_config`] prepared it: its settings, its key, and its
/// artifact when the cache already holds it (opened and checked once).
struct Extraction {
    config: nd_extract::Config,
    spec: nd_store::Spec,
    cached: Option<Artifact>,
    /// The receptive fields the pipeline file chooses (the segment stage's setting).
    fields: Fields,
    /// The explain stage's settings, when `[explain]` chooses the model.
    explain: Option<nd_explain::Config>,
}

/// A model's extraction and dissection; returns its activations too (its rotations turn
/// them).
fn run_model(
    loaded: &Loaded,
    store: &Store,
    dataset: &nd_broden::Dataset,
    model: &ModelSection,
    extraction: Extraction,
    options: &Options,
) -> anyhow::Result<(Artifact, Dissected)> {
    let name = model.name.as_str();
    let last = store.last_run(name);

    let Extraction {
        config,
        spec,
        cached,
        fields,
        explain: explain_config,
    } = extraction;
    let started = Instant::now();
    explain(options, store, name, last.as_ref(), Ok(spec))?;
    let activations = match cached {
        Some(artifact) => {
            log("extract", name, &artifact, false, started);
            artifact
        }
        None => {
            let outcome = nd_extract::run(store, dataset, &config)?;
            log(
                "extract",
                name,
                &outcome.artifact,
                outcome.computed,
                started,
            );
            outcome.artifact
        }
    };
    let keys = BTreeMap::from([("extract".to_owned(), activations.key())]);
    let dissected = dissect(
        loaded,
        store,
        dataset,
        name,
        &activations,
        fields,
        explain_config,
        keys,
        options,
    )?;
    Ok((activations, dissected))
}

/// A generator's dissection: the generate stage (its samples, labelled by its segmenter,
/// and its activations), then the stages after extract on those, with the samples as the
/// dataset.
fn run_generator(
    loaded: &Loaded,
    store: &Store,
    generator: &pipeline::GeneratorSection,
    options: &Options,
) -> anyhow::Result<Dissected> {
    let name = generator.name.as_str();
    let last = store.last_run(name);
    let started = Instant::now();
    let mut config = generator.config(loaded)?;
    config.threads = options.threads;
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_generate::spec(store, &config).map_err(Into::into),
    )?;
    let outcome =
        nd_generate::run(store, &config).with_context(|| loaded.location(generator.file.span()))?;
    log(
        nd_generate::STAGE,
        name,
        &outcome.artifact,
        outcome.computed,
        started,
    );
    let generated = outcome.artifact;
    let dir = nd_generate::dataset_dir(&generated);
    let dataset = nd_broden::Dataset::open(&dir, &Default::default())?;
    let keys = BTreeMap::from([(nd_generate::STAGE.to_owned(), generated.key())]);
    dissect(
        loaded,
        store,
        &dataset,
        name,
        &generated,
        Fields::default(),
        None,
        keys,
        options,
    )
}

/// `[intervene]` on a generator's dissection (its report names the scores).
fn run_intervene(
    loaded: &Loaded,
    store: &Store,
    generator: &pipeline::GeneratorSection,
    report: &Artifact,
    options: &Options,
) -> anyhow::Result<Artifact> {
    let section = loaded
        .pipeline
        .intervene
        .as_ref()
        .expect("called with [intervene]");
    let name = generator.name.as_str();
    let last = store.last_run(name);
    let started = Instant::now();
    let key = report
        .manifest
        .inputs
        .get("scores")
        .context("the report names no scores")?;
    let scores = store
        .get_key("score", *key)?
        .context("the report's scores are not in the cache")?;
    let mut config = section.get_ref().config(loaded, generator);
    config.threads = options.threads;
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_intervene::spec(&scores, &config).map_err(Into::into),
    )?;
    let outcome = nd_intervene::run(store, &scores, &config)?;
    log(
        nd_intervene::STAGE,
        name,
        &outcome.artifact,
        outcome.computed,
        started,
    );
    Ok(outcome.artifact)
}

/// The dissection of a model's activations in the fraction `variant.power` of a random
/// rotation of each layer's unit basis: the rotate stage, then the stages after extract,
/// on the rotated activations (no explanations: the model computes in its own basis).
fn run_rotated(
    loaded: &Loaded,
    store: &Store,
    dataset: &nd_broden::Dataset,
    variant: &pipeline::RotatedVariant,
    activations: &Artifact,
    fields: Fields,
    options: &Options,
) -> anyhow::Result<Dissected> {
    let name = variant.name.as_str();
    let last = store.last_run(name);
    let started = Instant::now();
    let config = nd_rotate::Config {
        rotation: nd_rotate::Rotation::Random {
            seed: variant.seed,
            power: variant.power,
        },
        layers: None,
        progress: options.progress,
    };
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_rotate::spec(activations, &config).map_err(Into::into),
    )?;
    let outcome = nd_rotate::run(store, activations, &config)?;
    log("rotate", name, &outcome.artifact, outcome.computed, started);
    let rotated = outcome.artifact;
    let keys = BTreeMap::from([
        ("extract".to_owned(), activations.key()),
        (nd_rotate::STAGE.to_owned(), rotated.key()),
    ]);
    dissect(
        loaded, store, dataset, name, &rotated, fields, None, keys, options,
    )
}

/// The stages after extract (or rotate) for one dissection named `name`: quantile,
/// segment, score, report, explain (when configured) and html; records the run's keys
/// (`keys` holds those of the stages before) under the name.
#[allow(clippy::too_many_arguments)]
fn dissect(
    loaded: &Loaded,
    store: &Store,
    dataset: &nd_broden::Dataset,
    name: &str,
    activations: &Artifact,
    fields: Fields,
    explain_config: Option<nd_explain::Config>,
    mut keys: BTreeMap<String, nd_store::Key>,
    options: &Options,
) -> anyhow::Result<Dissected> {
    let p = &loaded.pipeline;
    let last = store.last_run(name);

    let started = Instant::now();
    let quantile = nd_quantile::Config {
        top: *p.quantile.top.get_ref(),
        units: None,
        progress: options.progress,
    };
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_quantile::spec(std::slice::from_ref(activations), &quantile).map_err(Into::into),
    )?;
    let outcome = nd_quantile::run(store, std::slice::from_ref(activations), &quantile)?;
    log(
        "quantile",
        name,
        &outcome.artifact,
        outcome.computed,
        started,
    );
    let thresholds = outcome.artifact;

    let started = Instant::now();
    let segment = nd_segment::Config {
        upsample: p.segment.upsample,
        fields,
        progress: options.progress,
    };
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_segment::spec(dataset, activations, &thresholds, &segment).map_err(Into::into),
    )?;
    let outcome = nd_segment::run(store, dataset, activations, &thresholds, &segment)?;
    log(
        "segment",
        name,
        &outcome.artifact,
        outcome.computed,
        started,
    );
    let masks = outcome.artifact;

    let started = Instant::now();
    let score = p.score.config();
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_score::spec(store, dataset, &masks, &score).map_err(Into::into),
    )?;
    let outcome = nd_score::run(store, dataset, &masks, &score)?;
    log("score", name, &outcome.artifact, outcome.computed, started);
    let scores = outcome.artifact;

    let formulas = match &p.formulas {
        Some(section) => {
            let started = Instant::now();
            let config = section.config(&p.score)?;
            let masks = std::slice::from_ref(&masks);
            explain(
                options,
                store,
                name,
                last.as_ref(),
                nd_formulas::spec(store, dataset, masks, &config).map_err(Into::into),
            )?;
            let outcome = nd_formulas::run(store, dataset, masks, &config)
                .with_context(|| format!("{}: [formulas]", loaded.path.display()))?;
            log(
                "formulas",
                name,
                &outcome.artifact,
                outcome.computed,
                started,
            );
            keys.insert("formulas".to_owned(), outcome.artifact.key());
            Some(outcome.artifact)
        }
        None => None,
    };

    let started = Instant::now();
    let report = nd_report::Config {
        iou_threshold: *p.report.iou_threshold.get_ref(),
        formula_gain: p.formulas.as_ref().map_or(0.01, |f| *f.gain.get_ref()),
    };
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_report::spec(&scores, formulas.as_ref(), &report).map_err(Into::into),
    )?;
    let outcome = nd_report::run(store, &scores, formulas.as_ref(), &report)?;
    log("report", name, &outcome.artifact, outcome.computed, started);
    let report = outcome.artifact;
    keys.extend(
        [
            ("quantile", &thresholds),
            ("segment", &masks),
            ("score", &scores),
            ("report", &report),
        ]
        .into_iter()
        .map(|(stage, artifact)| (stage.to_owned(), artifact.key())),
    );

    let explained = match explain_config {
        Some(config) => {
            let started = Instant::now();
            explain(
                options,
                store,
                name,
                last.as_ref(),
                nd_explain::spec(store, dataset, &report, &config).map_err(Into::into),
            )?;
            let outcome = nd_explain::run(store, dataset, &report, &config)?;
            log(
                "explain",
                name,
                &outcome.artifact,
                outcome.computed,
                started,
            );
            keys.insert("explain".to_owned(), outcome.artifact.key());
            Some(outcome.artifact)
        }
        None => None,
    };
    if !p.html.pages {
        store.record_run(name, &keys)?;
        return Ok(Dissected {
            report,
            html: None,
            explained,
            formulas,
        });
    }

    let started = Instant::now();
    let html = nd_html::Config {
        top_images: *p.html.top_images.get_ref(),
        thumbnail_height: *p.html.thumbnail_height.get_ref(),
        title: name.to_owned(),
        progress: options.progress,
    };
    let inputs = nd_html::Inputs {
        dataset,
        shards: vec![nd_html::Shard {
            activations,
            masks: &masks,
            scores: &scores,
        }],
        scores: &scores,
        report: &report,
        explain: explained.as_ref(),
        formulas: formulas.as_ref(),
    };
    explain(
        options,
        store,
        name,
        last.as_ref(),
        nd_html::spec(&inputs, &html).map_err(Into::into),
    )?;
    let outcome = nd_html::run(store, &inputs, &html)?;
    log("html", name, &outcome.artifact, outcome.computed, started);
    keys.insert("html".to_owned(), outcome.artifact.key());
    store.record_run(name, &keys)?;
    Ok(Dissected {
        report,
        html: Some(outcome.artifact),
        explained,
        formulas,
    })
}

/// Before a long extraction, runs the model once on a blank image of the size it will
/// be given: a device that is not there, a file that is not TorchScript, a model made for
/// another image size, a misspelt layer or one that is not an `(N, C, H, W)` map is
/// reported against its line of pipeline.toml.
fn check_model(
    loaded: &Loaded,
    dataset: &nd_broden::Dataset,
    model: &ModelSection,
    config: &nd_extract::Config,
) -> anyhow::Result<()> {
    if dataset.is_empty() {
        anyhow::bail!("the dataset has no images");
    }
    // What extraction feeds the model: the resize, or the first image's size.
    let size = nd_torch::input::input_size(dataset, &config.preprocess, &(0..dataset.len()));
    let device = nd_extract::resolve_device(config.device).with_context(|| {
        format!(
            "{}: device = \"{}\"",
            loaded.location(model.device.span()),
            config.device
        )
    })?;
    let file = loaded.location(model.file()?.span());
    let net = nd_extract::Model::load(&config.model, device, config.output_names.clone())
        .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
    let returned = net.output_shapes(size).map_err(|e| match e {
        nd_torch::Error::Forward { .. } => anyhow::anyhow!(
            "{file}: {e}; if the model expects images of another size than {}×{}, set it in \
             the model's preprocess: preprocess = {{ preset = \"...\", resize = [H, W] }}",
            size[0],
            size[1]
        ),
        other => anyhow::anyhow!("{file}: {other}"),
    })?;
    let names: Vec<&str> = returned.iter().map(|(n, _)| n.as_str()).collect();
    for layer in model.layers.get_ref() {
        let Some((_, shape)) = returned.iter().find(|(n, _)| n == layer) else {
            anyhow::bail!(
                "{}: layer `{layer}` is not returned by {} (it returns {})",
                loaded.location(model.layers.span()),
                config.model.display(),
                names.join(", ")
            );
        };
        if let Some(why) = nd_extract::not_a_map(shape) {
            anyhow::bail!(
                "{}: layer `{layer}` of {} cannot be dissected: {why}",
                loaded.location(model.layers.span()),
                config.model.display()
            );
        }
    }
    Ok(())
}
