//! `pipeline.toml`: what `netdissect run` dissects and with which parameters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nd_arrays::fields::{ASSUME_CENTRED, Field, FieldChoice, Fields};
use nd_extract::{ChannelOrder, DeviceChoice, Preprocess};
use nd_score::Denominator;
use nd_segment::Upsample;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The dataset the models are dissected on (a generator's is its own samples).
    pub dataset: Option<DatasetSection>,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(rename = "model", default)]
    pub models: Vec<ModelSection>,
    /// Generators (GAN dissection): each dissected on its own samples, labelled by a
    /// segmenter (the generate stage).
    #[serde(rename = "generator", default)]
    pub generators: Vec<GeneratorSection>,
    #[serde(default)]
    pub quantile: QuantileSection,
    #[serde(default)]
    pub segment: SegmentSection,
    #[serde(default)]
    pub score: ScoreSection,
    #[serde(default)]
    pub report: ReportSection,
    #[serde(default)]
    pub html: HtmlSection,
    /// Explaining predictions by labelled units: run only when the section is given.
    pub explain: Option<ExplainSection>,
    /// Where the models with `train = { recipe, seed }` are trained (the train stage).
    pub train: Option<TrainSection>,
    /// Compositional labels: each unit's best formula of concepts (run when given).
    pub formulas: Option<FormulasSection>,
    /// GAN dissection's interventions on a generator's units (run when given).
    pub intervene: Option<Spanned<IntervenSection>>,
    #[serde(default)]
    pub output: OutputSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// A Broden-format directory.
    pub path: Option<PathBuf>,
    /// A synthetic dataset, generated into the cache once.
    pub synth: Option<SynthSection>,
    /// Load only these categories.
    pub categories: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSection {
    pub images: usize,
    #[serde(default = "default_synth_size")]
    pub size: u32,
    #[serde(default = "default_synth_seed")]
    pub seed: u64,
    /// `jpg` (as Broden) or `png` (lossless).
    #[serde(default = "default_synth_format")]
    pub format: String,
}

impl SynthSection {
    /// The generator's settings (the format checked when the pipeline was loaded).
    pub fn config(&self) -> anyhow::Result<nd_synth::Config> {
        Ok(nd_synth::Config {
            seed: self.seed,
            images: self.images,
            image_size: self.size,
            format: self.format.parse().map_err(anyhow::Error::msg)?,
            ..Default::default()
        })
    }
}

fn default_synth_format() -> String {
    "jpg".into()
}

fn default_synth_size() -> u32 {
    224
}

fn default_synth_seed() -> u64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    #[serde(default = "default_cache")]
    pub dir: PathBuf,
}

fn default_cache() -> PathBuf {
    PathBuf::from(".netdissect/cache")
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            dir: default_cache(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub name: String,
    /// A TorchScript file whose forward returns the layers (spanned: a missing or
    /// unloadable file is reported against its line). Exactly one of `file` and `train`;
    /// a trained model's file is set to its artifact's `model.pt` once trained
    /// ([`crate::run::train_models`]).
    pub file: Option<Spanned<PathBuf>>,
    /// A variant of the demo network trained by the train stage: a recipe of
    /// `python/train_variants.py` and a seed, on `[train]`'s training set.
    pub train: Option<Spanned<TrainRequest>>,
    pub layers: Spanned<Vec<String>>,
    #[serde(default)]
    pub preprocess: PreprocessSpec,
    pub output_names: Option<Vec<String>>,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_device")]
    pub device: Spanned<DeviceChoice>,
    /// The receptive fields `receptive-field` upsampling uses, where the model file's are
    /// missing or to be overridden: `"assume-centred"`, or a table from layer name to
    /// `{ offset = [y, x], size = [y, x], stride = [y, x] }` or `"assume-centred"`
    /// (see [`ModelSection::fields`]).
    pub fields: Option<Spanned<toml::Value>>,
    /// The name under which forward returns the class scores (for `[explain]`).
    pub logits: Option<String>,
    /// A file of class names, one per line in the order of the class scores (relative to
    /// the pipeline file); without it the classes are numbered.
    pub classes: Option<Spanned<PathBuf>>,
    /// The rotation control (the paper's §3.2): also dissect each layer's activations in
    /// these fractions α of a random rotation of its unit basis, `Q^α` (0 the model
    /// itself, 1 the whole rotation), each as a dissection named `<name>-rot<α>`.
    pub rotations: Option<Spanned<Vec<f64>>>,
    /// The seed of the random rotation `Q` (the same seed, the same rotation).
    pub rotation_seed: Option<Spanned<u64>>,
}

/// A `[[generator]]`: a generator dissected on its own samples, which a segmenter labels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSection {
    pub name: String,
    /// TorchScript with a generator record (`nd_torch::Generator`).
    pub file: Spanned<PathBuf>,
    /// TorchScript: images to class scores `(N, K, h, w)`.
    pub segmenter: Spanned<PathBuf>,
    /// `class,name,category`, one row per output channel of the segmenter.
    pub segmenter_labels: Spanned<PathBuf>,
    /// How the segmenter's input is normalised from the samples' pixels.
    #[serde(default)]
    pub segmenter_preprocess: PreprocessSpec,
    pub layers: Spanned<Vec<String>>,
    #[serde(default = "default_samples")]
    pub samples: Spanned<usize>,
    /// The seed of the latent vectors.
    #[serde(default = "default_generator_seed")]
    pub seed: u64,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_device")]
    pub device: Spanned<DeviceChoice>,
}

fn default_samples() -> Spanned<usize> {
    Spanned::new(0..0, 1000)
}

fn default_generator_seed() -> u64 {
    1
}

impl GeneratorSection {
    /// The generate stage's settings, paths resolved against the pipeline file.
    pub fn config(&self, l: &Loaded) -> anyhow::Result<nd_generate::Config> {
        Ok(nd_generate::Config {
            generator: l.resolve(self.file.get_ref()),
            segmenter: nd_generate::Segmenter {
                model: l.resolve(self.segmenter.get_ref()),
                labels: l.resolve(self.segmenter_labels.get_ref()),
                preprocess: self.segmenter_preprocess.resolve()?,
            },
            layers: self.layers.get_ref().clone(),
            samples: *self.samples.get_ref(),
            seed: self.seed,
            batch_size: self.batch_size,
            device: *self.device.get_ref(),
            threads: 0,
        })
    }
}

/// `[intervene]`: ablate and insert a concept's units of a generator's layer, against random
/// units (the intervene stage).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervenSection {
    /// The `[[generator]]` (default: the only one).
    pub generator: Option<String>,
    pub layer: String,
    pub concepts: Vec<String>,
    pub ks: Option<Vec<usize>>,
    pub samples: Option<usize>,
    pub ablation_value: Option<f64>,
    pub region: Option<[f64; 4]>,
    pub draws: Option<usize>,
    pub seed: Option<u64>,
}

impl IntervenSection {
    /// The `[[generator]]` it intervenes on.
    pub fn chosen<'a>(&self, generators: &'a [GeneratorSection]) -> Option<&'a GeneratorSection> {
        match &self.generator {
            Some(name) => generators.iter().find(|g| &g.name == name),
            None if generators.len() == 1 => generators.first(),
            None => None,
        }
    }

    /// The stage's settings for generator `g`.
    pub fn config(&self, l: &Loaded, g: &GeneratorSection) -> nd_intervene::Config {
        let d = nd_intervene::Config::new(
            l.resolve(g.file.get_ref()),
            l.resolve(g.segmenter.get_ref()),
            l.resolve(g.segmenter_labels.get_ref()),
            self.layer.clone(),
            self.concepts.clone(),
        );
        nd_intervene::Config {
            ks: self.ks.clone().unwrap_or(d.ks.clone()),
            samples: self.samples.unwrap_or(d.samples),
            ablation_value: self.ablation_value.unwrap_or(d.ablation_value),
            region: self.region.unwrap_or(d.region),
            draws: self.draws.unwrap_or(d.draws),
            seed: self.seed.unwrap_or(d.seed),
            batch_size: g.batch_size,
            device: *g.device.get_ref(),
            ..d
        }
    }
}

/// `train = { recipe = "bn", seed = 2 }` in a `[[model]]`, with `epoch = k` for the
/// network after k epochs of that training (0: as initialised).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    pub recipe: String,
    pub seed: u64,
    /// A snapshot of the training rather than its end: the training keeps them all.
    pub epoch: Option<u32>,
}

/// `[train]`: the training set and settings of the models that name a `train` recipe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// A synthetic training set, generated into the cache once.
    pub data: SynthSection,
    /// Epochs (default: the training script's).
    pub epochs: Option<u32>,
    /// Torch's threads while training (in the key: float sums may follow them).
    #[serde(default = "default_train_threads")]
    pub threads: usize,
}

fn default_train_threads() -> usize {
    nd_train::DEFAULT_THREADS
}

/// A dissection of rotated activations that a model's `rotations` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RotatedVariant {
    /// `<model>-rot<α>`, its name in the cache's runs, the output folder and the tables.
    pub name: String,
    /// The model whose activations are turned.
    pub model: String,
    pub seed: u64,
    /// α, in (0, 1].
    pub power: f64,
}

/// The seed of the rotation when `rotation_seed` is not given.
pub const DEFAULT_ROTATION_SEED: u64 = 1;

/// The name of a model's dissection in the fraction `power` of its random rotation.
pub fn rotated_name(model: &str, power: f64) -> String {
    format!("{model}-rot{power}")
}

impl ModelSection {
    /// The model's file: given, or set once the model is trained.
    pub fn file(&self) -> anyhow::Result<&Spanned<PathBuf>> {
        self.file.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "model `{}` is trained by the pipeline and has no file yet",
                self.name
            )
        })
    }

    /// The rotated dissections `rotations` asks for, by increasing α; α = 0 is the model
    /// itself (always dissected), so it adds none.
    pub fn rotated(&self) -> Vec<RotatedVariant> {
        let seed = self
            .rotation_seed
            .as_ref()
            .map_or(DEFAULT_ROTATION_SEED, |s| *s.get_ref());
        let mut powers: Vec<f64> = self
            .rotations
            .as_ref()
            .map(|r| r.get_ref().iter().copied().filter(|&a| a > 0.0).collect())
            .unwrap_or_default();
        powers.sort_by(f64::total_cmp);
        powers
            .into_iter()
            .map(|power| RotatedVariant {
                name: rotated_name(&self.name, power),
                model: self.name.clone(),
                seed,
                power,
            })
            .collect()
    }

    /// The fields chosen in the pipeline file, checked; errors name the line.
    pub fn fields(&self, l: &Loaded) -> anyhow::Result<Fields> {
        let Some(spec) = &self.fields else {
            return Ok(Fields::Model);
        };
        let bad = |what: String| {
            anyhow::anyhow!(
                "{}: model `{}`: fields: {what}",
                l.location(spec.span()),
                self.name
            )
        };
        let shape = "{ offset = [y, x], size = [y, x], stride = [y, x] } (the original's field map in input pixels; an integer gives both axes)";
        match spec.get_ref() {
            toml::Value::String(s) if s == ASSUME_CENTRED => Ok(Fields::AssumeCentred),
            toml::Value::Table(table) => {
                let mut choices = BTreeMap::new();
                for (layer, value) in table {
                    if !self.layers.get_ref().contains(layer) {
                        return Err(bad(format!(
                            "`{layer}` is not one of the model's layers ({})",
                            self.layers.get_ref().join(", ")
                        )));
                    }
                    let choice = match value {
                        toml::Value::String(s) if s == ASSUME_CENTRED => FieldChoice::AssumeCentred,
                        toml::Value::Table(field) => FieldChoice::Field(
                            parse_field(field).map_err(|e| bad(format!("layer `{layer}`: {e}")))?,
                        ),
                        _ => {
                            return Err(bad(format!(
                                "layer `{layer}`: give {shape} or \"{ASSUME_CENTRED}\""
                            )));
                        }
                    };
                    choices.insert(layer.clone(), choice);
                }
                Ok(Fields::Overrides(choices))
            }
            _ => Err(bad(format!(
                "give \"{ASSUME_CENTRED}\" or a table from layer name to {shape}"
            ))),
        }
    }
}

/// A field map from its pipeline table; the message says what is wrong.
fn parse_field(table: &toml::Table) -> Result<Field, String> {
    if let Some(key) = table
        .keys()
        .find(|k| !["offset", "size", "stride"].contains(&k.as_str()))
    {
        return Err(format!("unknown key `{key}` (use offset, size and stride)"));
    }
    let pair = |key: &str| -> Result<[i64; 2], String> {
        match table.get(key) {
            None => Err(format!("`{key}` is missing")),
            Some(toml::Value::Integer(v)) => Ok([*v, *v]),
            Some(toml::Value::Array(a)) => match a.as_slice() {
                [toml::Value::Integer(y), toml::Value::Integer(x)] => Ok([*y, *x]),
                _ => Err(format!("`{key}` must be an integer or [y, x] integers")),
            },
            Some(_) => Err(format!("`{key}` must be an integer or [y, x] integers")),
        }
    };
    let field = Field {
        offset: pair("offset")?,
        size: pair("size")?,
        stride: pair("stride")?,
    };
    field.validate()?;
    Ok(field)
}

/// The fields as `netdissect config` gives them to the workflow: `null` (the model's),
/// `"assume-centred"`, or a map from layer to choice, as `nd-segment --fields` takes it.
pub fn fields_json(fields: &Fields) -> serde_json::Value {
    match fields {
        Fields::Model => serde_json::Value::Null,
        Fields::AssumeCentred => serde_json::json!(ASSUME_CENTRED),
        Fields::Overrides(map) => serde_json::json!(map),
    }
}

fn default_batch() -> usize {
    32
}

fn default_device() -> Spanned<DeviceChoice> {
    Spanned::new(0..0, DeviceChoice::Auto)
}

/// A preset name, or a table of settings over an optional preset.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PreprocessSpec {
    Preset(String),
    Table(PreprocessTable),
}

impl Default for PreprocessSpec {
    fn default() -> Self {
        PreprocessSpec::Preset("torchvision".into())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessTable {
    pub preset: Option<String>,
    pub scale: Option<f64>,
    pub mean: Option<[f64; 3]>,
    pub std: Option<[f64; 3]>,
    pub channel_order: Option<ChannelOrder>,
    pub resize: Option<[u32; 2]>,
}

impl PreprocessSpec {
    pub fn resolve(&self) -> anyhow::Result<Preprocess> {
        let p = match self {
            PreprocessSpec::Preset(name) => Preprocess::preset(name)?,
            PreprocessSpec::Table(t) => {
                let mut p = Preprocess::preset(t.preset.as_deref().unwrap_or("torchvision"))?;
                if let Some(v) = t.scale {
                    p.scale = v;
                }
                if let Some(v) = t.mean {
                    p.mean = v;
                }
                if let Some(v) = t.std {
                    p.std = v;
                }
                if let Some(v) = t.channel_order {
                    p.channel_order = v;
                }
                if t.resize.is_some() {
                    p.resize = t.resize;
                }
                p
            }
        };
        p.validate()?;
        Ok(p)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuantileSection {
    #[serde(default = "default_top")]
    pub top: Spanned<f64>,
}

fn default_top() -> Spanned<f64> {
    Spanned::new(0..0, 0.005)
}

impl Default for QuantileSection {
    fn default() -> Self {
        QuantileSection { top: default_top() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSection {
    #[serde(default)]
    pub upsample: Upsample,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSection {
    #[serde(default)]
    pub denominator: Denominator,
    /// The original's tally depth, reproduced (`denominator = "original"` only).
    pub tally_depth: Option<Spanned<usize>>,
}

impl ScoreSection {
    pub fn config(&self) -> nd_score::Config {
        nd_score::Config {
            denominator: self.denominator,
            tally_depth: self.tally_depth.as_ref().map(|d| *d.get_ref()),
        }
    }
}

/// `[formulas]`: each unit's best logical formula of concepts (AND, OR, AND NOT), found by
/// beam search and scored by the score stage's IoU (the formulas stage).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormulasSection {
    /// The longest formula, in concepts.
    #[serde(default = "default_max_length")]
    pub max_length: Spanned<usize>,
    /// Formulas kept from one step to the next.
    #[serde(default = "default_beam")]
    pub beam: Spanned<usize>,
    /// The operators: `and`, `or`, `and_not` (default all three).
    pub ops: Option<Spanned<Vec<String>>>,
    /// Only concepts of these categories in formulas (default: every loaded category).
    pub categories: Option<Spanned<Vec<String>>>,
    /// Leave out concepts present in fewer images (default 0: none left out).
    #[serde(default)]
    pub min_images: u64,
    /// A unit counts as better explained by a formula when its best formula's IoU beats
    /// its best single concept's by at least this much.
    #[serde(default = "default_gain")]
    pub gain: Spanned<f64>,
}

fn default_max_length() -> Spanned<usize> {
    Spanned::new(0..0, 3)
}

fn default_beam() -> Spanned<usize> {
    Spanned::new(0..0, 10)
}

fn default_gain() -> Spanned<f64> {
    Spanned::new(0..0, 0.01)
}

impl FormulasSection {
    /// The stage's settings, the denominator being the score stage's.
    pub fn config(&self, score: &ScoreSection) -> anyhow::Result<nd_formulas::Config> {
        let ops = match &self.ops {
            None => nd_formulas::Op::ALL.to_vec(),
            Some(ops) => ops
                .get_ref()
                .iter()
                .map(|o| {
                    nd_formulas::Op::parse(o).ok_or_else(|| {
                        anyhow::anyhow!("unknown operator `{o}` (use and, or, and_not)")
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(nd_formulas::Config {
            max_length: *self.max_length.get_ref(),
            beam: *self.beam.get_ref(),
            ops,
            categories: self.categories.as_ref().map(|c| c.get_ref().clone()),
            min_images: self.min_images,
            denominator: match score.denominator {
                Denominator::Lite => nd_formulas::Denominator::Lite,
                Denominator::Original => nd_formulas::Denominator::Original,
            },
            layers: None,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSection {
    #[serde(default = "default_iou")]
    pub iou_threshold: Spanned<f64>,
}

fn default_iou() -> Spanned<f64> {
    Spanned::new(0..0, 0.04)
}

impl Default for ReportSection {
    fn default() -> Self {
        ReportSection {
            iou_threshold: default_iou(),
        }
    }
}

/// `[explain]`: explain the predictions of the models that give class scores (`logits`)
/// by the units of one dissected layer, and test the explanations by ablation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainSection {
    /// The models to explain (default: every model that names its `logits`).
    pub models: Option<Spanned<Vec<String>>>,
    /// The layer whose units explain (default: each model's last layer).
    pub layer: Option<String>,
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    #[serde(default = "default_top_n")]
    pub top_n: usize,
    #[serde(default = "default_ablate")]
    pub ablate: Vec<usize>,
    #[serde(default = "default_draws")]
    pub random_draws: usize,
    #[serde(default)]
    pub seed: u64,
    /// The dataset category naming each image's true class ("" for none).
    #[serde(default = "default_truth")]
    pub truth_category: String,
}

impl Default for ExplainSection {
    fn default() -> Self {
        ExplainSection {
            models: None,
            layer: None,
            top_k: default_top_k(),
            top_n: default_top_n(),
            ablate: default_ablate(),
            random_draws: default_draws(),
            seed: 0,
            truth_category: default_truth(),
        }
    }
}

impl ExplainSection {
    /// The models `[explain]` explains, in pipeline order.
    pub fn chosen<'a>(&self, models: &'a [ModelSection]) -> Vec<&'a ModelSection> {
        match &self.models {
            Some(names) => models
                .iter()
                .filter(|m| names.get_ref().contains(&m.name))
                .collect(),
            None => models.iter().filter(|m| m.logits.is_some()).collect(),
        }
    }

    /// The explain stage's settings for one chosen model (the class names read).
    pub fn config(&self, l: &Loaded, model: &ModelSection) -> anyhow::Result<nd_explain::Config> {
        let layer = self
            .layer
            .clone()
            .or_else(|| model.layers.get_ref().last().cloned())
            .unwrap_or_default();
        // A model still to be trained is checked with an empty path; `run` explains it
        // once its file is set.
        let file = model
            .file
            .as_ref()
            .map(|f| l.resolve(f.get_ref()))
            .unwrap_or_default();
        let mut config = nd_explain::Config::new(file, layer, model.preprocess.resolve()?);
        config.output_names = model.output_names.clone();
        if let Some(logits) = &model.logits {
            config.logits = logits.clone();
        }
        config.classes = match &model.classes {
            Some(file) => Some(
                nd_explain::read_classes(&l.resolve(file.get_ref())).with_context(|| {
                    format!(
                        "{}: model `{}`: classes",
                        l.location(file.span()),
                        model.name
                    )
                })?,
            ),
            None => None,
        };
        config.top_k = self.top_k;
        config.top_n = self.top_n;
        config.ablate = self.ablate.clone();
        config.random_draws = self.random_draws;
        config.seed = self.seed;
        config.truth_category = Some(self.truth_category.clone()).filter(|c| !c.is_empty());
        config.batch_size = model.batch_size;
        config.device = *model.device.get_ref();
        Ok(config)
    }
}

/// `[explain]` names models that exist and give class scores, and a layer they dissect.
fn check_explain(l: &Loaded, explain: &ExplainSection) -> anyhow::Result<()> {
    let p = &l.pipeline;
    if let Some(names) = &explain.models {
        for name in names.get_ref() {
            let Some(model) = p.models.iter().find(|m| &m.name == name) else {
                bail!(
                    "{}: explain.models names `{name}`, which is no [[model]] of this file",
                    l.location(names.span())
                );
            };
            if model.logits.is_none() {
                bail!(
                    "{}: explain.models names `{name}`, whose [[model]] has no `logits`: name the \
                     output under which its forward returns the class scores (logits = \"logits\"; \
                     python/export_torchvision.py --logits exports them)",
                    l.location(names.span())
                );
            }
        }
    }
    let chosen = explain.chosen(&p.models);
    if chosen.is_empty() {
        bail!(
            "{}: [explain] has no model to explain: give a [[model]] the name of its class \
             scores (logits = \"logits\")",
            l.path.display()
        );
    }
    for model in chosen {
        let config = explain
            .config(l, model)
            .with_context(|| format!("model `{}`", model.name))?;
        if !model.layers.get_ref().contains(&config.layer) {
            bail!(
                "{}: explain.layer `{}` is not among model `{}`'s layers ({})",
                l.path.display(),
                config.layer,
                model.name,
                model.layers.get_ref().join(", ")
            );
        }
        config
            .validate()
            .with_context(|| format!("{}: [explain]", l.path.display()))?;
    }
    Ok(())
}

fn default_top_k() -> usize {
    1
}

fn default_top_n() -> usize {
    10
}

fn default_ablate() -> Vec<usize> {
    vec![1, 2, 4, 8, 16]
}

fn default_draws() -> usize {
    5
}

fn default_truth() -> String {
    "scene".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtmlSection {
    /// Whether to write the browsable report (pages and images) of each model.
    #[serde(default = "default_pages")]
    pub pages: bool,
    #[serde(default = "default_top_images")]
    pub top_images: Spanned<usize>,
    #[serde(default = "default_thumbnail_height")]
    pub thumbnail_height: Spanned<u32>,
}

fn default_pages() -> bool {
    true
}

fn default_top_images() -> Spanned<usize> {
    Spanned::new(0..0, nd_html::Config::default().top_images)
}

fn default_thumbnail_height() -> Spanned<u32> {
    Spanned::new(0..0, nd_html::Config::default().thumbnail_height)
}

impl Default for HtmlSection {
    fn default() -> Self {
        HtmlSection {
            pages: default_pages(),
            top_images: default_top_images(),
            thumbnail_height: default_thumbnail_height(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Where to copy each model's report (`<dir>/<model>/`), for stable paths.
    pub dir: Option<PathBuf>,
}

/// A pipeline file read and checked, with paths resolved against its directory.
pub struct Loaded {
    pub path: PathBuf,
    pub text: String,
    pub pipeline: Pipeline,
    pub base: PathBuf,
}

impl Loaded {
    /// `file:line:column` of a byte offset in the pipeline file.
    pub fn location(&self, span: std::ops::Range<usize>) -> String {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        format!("{}:{line}:{column}", self.path.display())
    }

    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || self.base == Path::new(".") {
            path.to_owned()
        } else {
            tidy(&self.base.join(path))
        }
    }
}

/// A path without `.` and with each `dir/..` pair dropped (`experiments/../results` is
/// `results`), as users write and read it; a leading `..` stays, and so does a pair whose
/// `dir` is a symbolic link (its `..` is the link target's parent).
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.last(), Some(Component::Normal(_)))
                    && !out
                        .iter()
                        .collect::<PathBuf>()
                        .symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

pub fn load(path: &Path) -> anyhow::Result<Loaded> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let pipeline: Pipeline = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                format!(":{}", before.matches('\n').count() + 1)
            })
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: {}", path.display(), e.message())
    })?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let loaded = Loaded {
        path: path.to_owned(),
        text,
        pipeline,
        base,
    };
    check(&loaded)?;
    Ok(loaded)
}

/// A model's `rotations`: fractions in [0, 1], each once, whose dissections' names are
/// free; a `rotation_seed` only with them.
fn check_rotations(l: &Loaded, m: &ModelSection) -> anyhow::Result<()> {
    let Some(rotations) = &m.rotations else {
        if let Some(seed) = &m.rotation_seed {
            bail!(
                "{}: model `{}`: rotation_seed is given without rotations; list the fractions \
                 of the rotation to dissect, e.g. rotations = [0.0, 0.25, 0.5, 0.75, 1.0]",
                l.location(seed.span()),
                m.name
            );
        }
        return Ok(());
    };
    let at = l.location(rotations.span());
    for (i, &power) in rotations.get_ref().iter().enumerate() {
        if !(0.0..=1.0).contains(&power) {
            bail!(
                "{at}: model `{}`: rotations[{i}] = {power}: each fraction of the rotation must \
                 be between 0 (the model's own units) and 1 (the whole random rotation)",
                m.name
            );
        }
        if rotations.get_ref()[..i].contains(&power) {
            bail!("{at}: model `{}`: rotations gives {power} twice", m.name);
        }
    }
    for variant in m.rotated() {
        if l.pipeline.models.iter().any(|o| o.name == variant.name) {
            bail!(
                "{at}: model `{}`: the dissection of rotation {} is named `{}`, which another \
                 [[model]] already is; rename that model",
                m.name,
                variant.power,
                variant.name
            );
        }
    }
    Ok(())
}

/// The `[[generator]]`s: names free (of models and rotations too), files present, layers
/// and samples given; receptive-field upsampling needs fields that generators do not have.
fn check_generators(l: &Loaded) -> anyhow::Result<()> {
    let p = &l.pipeline;
    let taken = |name: &str| {
        p.models
            .iter()
            .any(|m| m.name == name || m.rotated().iter().any(|v| v.name == name))
    };
    for (i, g) in p.generators.iter().enumerate() {
        if g.name.is_empty() || g.name.contains(['/', '\\']) {
            bail!(
                "{}: generator[{i}].name `{}` must be a non-empty name without slashes",
                l.path.display(),
                g.name
            );
        }
        if taken(&g.name) || p.generators[..i].iter().any(|o| o.name == g.name) {
            bail!(
                "{}: two dissections are named `{}`",
                l.path.display(),
                g.name
            );
        }
        for (what, path) in [
            ("file", &g.file),
            ("segmenter", &g.segmenter),
            ("segmenter_labels", &g.segmenter_labels),
        ] {
            let resolved = l.resolve(path.get_ref());
            if !resolved.is_file() {
                bail!(
                    "{}: generator `{}`: {what} {} does not exist (no such file); paths are \
                     relative to {}",
                    l.location(path.span()),
                    g.name,
                    resolved.display(),
                    l.path.display()
                );
            }
        }
        if g.layers.get_ref().is_empty() {
            bail!(
                "{}: generator `{}`: layers is empty",
                l.location(g.layers.span()),
                g.name
            );
        }
        if *g.samples.get_ref() == 0 || g.batch_size == 0 {
            bail!(
                "{}: generator `{}`: samples and batch_size must be at least 1",
                l.location(g.samples.span()),
                g.name
            );
        }
        g.segmenter_preprocess.resolve().with_context(|| {
            format!(
                "{}: generator `{}`: segmenter_preprocess",
                l.path.display(),
                g.name
            )
        })?;
        if p.segment.upsample == Upsample::ReceptiveField {
            bail!(
                "{}: generator `{}`: segment.upsample = \"receptive-field\" needs receptive \
                 fields, which a generator's layers do not have (they map onto the image by \
                 upsampling); use bilinear",
                l.path.display(),
                g.name
            );
        }
    }
    Ok(())
}

fn check(l: &Loaded) -> anyhow::Result<()> {
    let p = &l.pipeline;
    if p.models.is_empty() && p.generators.is_empty() {
        bail!(
            "{}: no [[model]] or [[generator]] to dissect",
            l.path.display()
        );
    }
    match &p.dataset {
        Some(dataset) => {
            if let Some(synth) = &dataset.synth
                && !["jpg", "png"].contains(&synth.format.as_str())
            {
                bail!(
                    "{}: dataset.synth.format must be jpg or png, got `{}`",
                    l.path.display(),
                    synth.format
                );
            }
            match (&dataset.path, &dataset.synth) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => bail!(
                    "{}: [dataset] needs exactly one of `path` and `synth`",
                    l.path.display()
                ),
            }
        }
        None if !p.models.is_empty() => bail!(
            "{}: no [dataset] to dissect the [[model]]s on; add one, e.g.\n[dataset]\nsynth = \
             {{ images = 1000 }}",
            l.path.display()
        ),
        None => {}
    }
    check_generators(l)?;
    if let Some(section) = &p.intervene {
        let at = l.location(section.span());
        let i = section.get_ref();
        let Some(g) = i.chosen(&p.generators) else {
            bail!(
                "{at}: [intervene] needs the [[generator]] to intervene on: {}",
                match &i.generator {
                    Some(name) => format!("there is none named `{name}`"),
                    None if p.generators.is_empty() => "the file has none".to_owned(),
                    None => "name one with `generator = \"...\"`".to_owned(),
                }
            );
        };
        if !g.layers.get_ref().contains(&i.layer) {
            bail!(
                "{at}: intervene.layer `{}` is not a layer of generator `{}` ({})",
                i.layer,
                g.name,
                g.layers.get_ref().join(", ")
            );
        }
        let config = i.config(l, g);
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{at}: [intervene]: {e}"))?;
        if config.samples > *g.samples.get_ref() {
            bail!(
                "{at}: intervene.samples {} is more than generator `{}`'s {} samples",
                config.samples,
                g.name,
                g.samples.get_ref()
            );
        }
    }
    for (i, m) in p.models.iter().enumerate() {
        if m.name.is_empty() || m.name.contains(['/', '\\']) {
            bail!(
                "{}: model[{i}].name `{}` must be a non-empty name without slashes",
                l.path.display(),
                m.name
            );
        }
        if p.models[..i].iter().any(|o| o.name == m.name) {
            bail!("{}: two models are named `{}`", l.path.display(), m.name);
        }
        if m.layers.get_ref().is_empty() {
            bail!(
                "{}: model `{}`: layers is empty",
                l.location(m.layers.span()),
                m.name
            );
        }
        if m.batch_size == 0 {
            bail!(
                "{}: model `{}`: batch_size must be at least 1",
                l.path.display(),
                m.name
            );
        }
        m.preprocess
            .resolve()
            .with_context(|| format!("{}: model `{}`: preprocess", l.path.display(), m.name))?;
        m.fields(l)?;
        check_rotations(l, m)?;
        match (&m.file, &m.train) {
            (Some(_), None) => {}
            (None, Some(train)) => {
                let epochs = p.train.as_ref().and_then(|t| t.epochs);
                if let (Some(epoch), Some(epochs)) = (train.get_ref().epoch, epochs)
                    && epoch > epochs
                {
                    bail!(
                        "{}: model `{}`: epoch {epoch} is past the training's {epochs} epochs \
                         ([train] epochs)",
                        l.location(train.span()),
                        m.name
                    );
                }
                if p.train.is_none() {
                    bail!(
                        "{}: model `{}` is trained (train = {{ recipe, seed }}) but the file has \
                         no [train] section giving the training set, e.g.\n[train]\ndata = \
                         {{ images = 6000, size = 112, seed = 2 }}",
                        l.location(train.span()),
                        m.name
                    );
                }
            }
            (Some(file), Some(_)) => bail!(
                "{}: model `{}` gives both `file` and `train`: give one",
                l.location(file.span()),
                m.name
            ),
            (None, None) => bail!(
                "{}: model `{}` needs `file` (a TorchScript file) or `train` (a recipe and seed \
                 of python/train_variants.py)",
                l.path.display(),
                m.name
            ),
        }
    }
    if let Some(train) = &p.train {
        let config = nd_train::Config {
            epochs: train.epochs,
            threads: train.threads,
            ..nd_train::Config::new("-", 0)
        };
        config
            .validate()
            .with_context(|| format!("{}: [train]", l.path.display()))?;
        if !["jpg", "png"].contains(&train.data.format.as_str()) {
            bail!(
                "{}: train.data.format must be jpg or png, got `{}`",
                l.path.display(),
                train.data.format
            );
        }
    }
    if let Some(f) = &p.formulas {
        let at = |span: std::ops::Range<usize>| {
            if span.is_empty() {
                format!("{}: [formulas]", l.path.display())
            } else {
                l.location(span)
            }
        };
        let config = f.config(&p.score).map_err(|e| {
            anyhow::anyhow!(
                "{}: formulas.ops: {e}",
                at(f.ops.as_ref().map_or(0..0, |o| o.span()))
            )
        })?;
        if let Err(e) = config.validate() {
            let e = e.to_string();
            let span = if e.starts_with("max_length") {
                f.max_length.span()
            } else if e.starts_with("beam") {
                f.beam.span()
            } else if e.starts_with("ops") {
                f.ops.as_ref().map_or(0..0, |o| o.span())
            } else {
                f.categories.as_ref().map_or(0..0, |c| c.span())
            };
            bail!("{}: formulas.{e}", at(span));
        }
        let gain = *f.gain.get_ref();
        if !(0.0..=1.0).contains(&gain) {
            bail!(
                "{}: formulas.gain must be between 0 and 1 (an IoU difference), got {gain}",
                at(f.gain.span())
            );
        }
    }
    let top = *p.quantile.top.get_ref();
    if !(top > 0.0 && top < 1.0) {
        bail!(
            "{}: quantile.top must be between 0 and 1 (exclusive), got {top}",
            l.location(p.quantile.top.span())
        );
    }
    if let (Err(e), Some(depth)) = (p.score.config().validate(), &p.score.tally_depth) {
        bail!("{}: score.tally_depth: {e}", l.location(depth.span()));
    }
    let iou = *p.report.iou_threshold.get_ref();
    if !(0.0..=1.0).contains(&iou) {
        bail!(
            "{}: report.iou_threshold must be between 0 and 1 (an IoU is at most 1), got {iou}",
            l.location(p.report.iou_threshold.span())
        );
    }
    if let Some(explain) = &p.explain {
        check_explain(l, explain)?;
    }
    let defaults = nd_html::Config::default();
    let top_images = nd_html::Config {
        top_images: *p.html.top_images.get_ref(),
        ..defaults.clone()
    };
    if let Err(e) = top_images.validate() {
        bail!(
            "{}: html.top_images: {e}",
            l.location(p.html.top_images.span())
        );
    }
    let thumbnails = nd_html::Config {
        thumbnail_height: *p.html.thumbnail_height.get_ref(),
        ..defaults
    };
    if let Err(e) = thumbnails.validate() {
        bail!(
            "{}: html.thumbnail_height: {e}",
            l.location(p.html.thumbnail_height.span())
        );
    }
    Ok(())
}

/// The pipeline as the Snakemake workflow reads it (`netdissect config`): defaults filled
/// in, paths absolute, preprocessing resolved to its values, and the dataset's row count
/// (which the workflow splits into image shards). One parser and one set of checks, so the
/// workflow and `netdissect run` cannot read a pipeline differently.
pub fn describe(loaded: &Loaded) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;
    let p = &loaded.pipeline;
    let absolute = |path: &Path| -> anyhow::Result<String> {
        let path = loaded.resolve(path);
        let path = if path.is_absolute() {
            path
        } else {
            std::env::current_dir()?.join(path)
        };
        Ok(path.to_string_lossy().into_owned())
    };
    let dataset = match &p.dataset {
        None => None,
        Some(section) => {
            let mut d = match (&section.path, &section.synth) {
                (Some(path), _) => {
                    let dir = loaded.resolve(path);
                    let config = nd_broden::Config {
                        categories: section.categories.clone(),
                    };
                    let rows = nd_broden::Dataset::open(&dir, &config)
                        .with_context(|| {
                            format!(
                                "{}: cannot open the dataset {}",
                                loaded.path.display(),
                                dir.display()
                            )
                        })?
                        .len();
                    json!({ "path": absolute(path)?, "synth": null, "rows": rows })
                }
                (None, Some(s)) => json!({
                    "path": null,
                    "synth": { "images": s.images, "size": s.size, "seed": s.seed, "format": s.format },
                    "rows": s.images,
                }),
                (None, None) => unreachable!("checked when loading"),
            };
            d["categories"] = json!(section.categories);
            Some(d)
        }
    };
    let explained: Vec<&str> = p
        .explain
        .as_ref()
        .map(|e| {
            e.chosen(&p.models)
                .iter()
                .map(|m| m.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut models = Vec::new();
    for m in &p.models {
        // The layer [explain] uses for this model, when it explains it.
        let explain_layer = match &p.explain {
            Some(e) if explained.contains(&m.name.as_str()) => Some(
                e.layer
                    .clone()
                    .or_else(|| m.layers.get_ref().last().cloned()),
            ),
            _ => None,
        };
        models.push(json!({
            "name": m.name,
            "file": m.file.as_ref().map(|f| absolute(f.get_ref())).transpose()?,
            "train": m.train.as_ref().map(|t| json!({
                "recipe": t.get_ref().recipe,
                "seed": t.get_ref().seed,
                "epoch": t.get_ref().epoch,
            })),
            "layers": m.layers.get_ref(),
            "output_names": m.output_names,
            "preprocess": m.preprocess.resolve()?,
            "batch_size": m.batch_size,
            "device": m.device.get_ref(),
            "fields": fields_json(&m.fields(loaded)?),
            "logits": m.logits,
            "classes": m.classes.as_ref().map(|c| absolute(c.get_ref())).transpose()?,
            "explain_layer": explain_layer,
            "rotations": m.rotated().iter().map(|v| json!({
                "name": v.name,
                "seed": v.seed,
                "power": v.power,
            })).collect::<Vec<_>>(),
        }));
    }
    let mut generators = Vec::new();
    for g in &p.generators {
        let c = g.config(loaded)?;
        generators.push(json!({
            "name": g.name,
            "file": absolute(&c.generator)?,
            "segmenter": absolute(&c.segmenter.model)?,
            "segmenter_labels": absolute(&c.segmenter.labels)?,
            "segmenter_preprocess": c.segmenter.preprocess,
            "layers": c.layers,
            "samples": c.samples,
            "seed": c.seed,
            "batch_size": c.batch_size,
            "device": g.device.get_ref(),
        }));
    }
    let intervene = match &p.intervene {
        None => None,
        Some(section) => {
            let i = section.get_ref();
            let g = i.chosen(&p.generators).expect("checked when loading");
            let c = i.config(loaded, g);
            Some(json!({
                "generator": g.name,
                "layer": c.layer,
                "concepts": c.concepts,
                "ks": c.ks,
                "samples": c.samples,
                "ablation_value": c.ablation_value,
                "region": c.region,
                "draws": c.draws,
                "seed": c.seed,
            }))
        }
    };
    Ok(json!({
        "pipeline": absolute(&loaded.path)?,
        "dataset": dataset,
        "generators": generators,
        "intervene": intervene,
        "cache": absolute(&p.cache.dir)?,
        "models": models,
        "quantile": { "top": p.quantile.top.get_ref() },
        "segment": { "upsample": p.segment.upsample },
        "score": {
            "denominator": p.score.denominator,
            "tally_depth": p.score.tally_depth.as_ref().map(|d| *d.get_ref()),
        },
        "report": { "iou_threshold": p.report.iou_threshold.get_ref() },
        "formulas": p.formulas.as_ref().map(|f| -> anyhow::Result<serde_json::Value> {
            let config = f.config(&p.score)?;
            Ok(json!({
                "max_length": config.max_length,
                "beam": config.beam,
                "ops": config.ops.iter().map(|o| o.name()).collect::<Vec<_>>(),
                "categories": config.categories,
                "min_images": config.min_images,
                "gain": f.gain.get_ref(),
            }))
        }).transpose()?,
        "html": {
            "pages": p.html.pages,
            "top_images": p.html.top_images.get_ref(),
            "thumbnail_height": p.html.thumbnail_height.get_ref(),
        },
        "train": p.train.as_ref().map(|t| json!({
            "data": { "images": t.data.images, "size": t.data.size, "seed": t.data.seed, "format": t.data.format },
            "epochs": t.epochs,
            "threads": t.threads,
        })),
        "explain": p.explain.as_ref().map(|e| json!({
            "models": explained,
            "top_k": e.top_k,
            "top_n": e.top_n,
            "ablate": e.ablate,
            "random_draws": e.random_draws,
            "seed": e.seed,
            "truth_category": e.truth_category,
        })),
        "output": { "dir": p.output.dir.as_deref().map(absolute).transpose()? },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_drops_dot_and_dir_dotdot_pairs() {
        assert_eq!(
            tidy(Path::new("experiments/../results")),
            Path::new("results")
        );
        assert_eq!(tidy(Path::new("a/./b/../c")), Path::new("a/c"));
        assert_eq!(tidy(Path::new("../a/b/..")), Path::new("../a"));
        assert_eq!(tidy(Path::new("a/..")), Path::new("."));
        assert_eq!(tidy(Path::new("/x/y/../z")), Path::new("/x/z"));
    }

    #[test]
    fn tidy_keeps_the_dotdot_after_a_symbolic_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("deep/inner")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("deep/inner"), dir.path().join("link")).unwrap();
        let through = dir.path().join("link/../x");
        assert_eq!(tidy(&through), through);
        assert_eq!(
            tidy(&dir.path().join("deep/inner/../x")),
            dir.path().join("deep/x")
        );
    }
}
