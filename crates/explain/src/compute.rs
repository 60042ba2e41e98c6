//! The forward and backward passes: contributions, class activation maps and ablations.

use std::ops::Range;

use nd_broden::Dataset;
use nd_torch::Model;
use nd_torch::input::{batch_ranges, decode_batch, input_size};
use tch::{Device, Kind, Tensor};

use crate::{Config, Error, Result};

/// One explained (image, class) pair: the class, its score and probability, the top units
/// by contribution and the class activation map.
#[derive(Debug, Clone)]
pub(crate) struct Explained {
    /// The dataset row.
    pub row: usize,
    /// 0 for the predicted class, 1 for the next, ...
    pub class_rank: usize,
    pub class: usize,
    pub score: f32,
    pub probability: f32,
    /// The sum of every unit's contribution (the class score less the head's bias, for a
    /// head linear after pooling): the denominator of the shares.
    pub total: f64,
    /// The top units: `(unit, contribution)`, largest contribution first.
    pub top: Vec<(usize, f32)>,
}

/// The faithfulness tallies of one way of choosing units and one number of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faithfulness {
    /// Images counted.
    pub images: u64,
    /// Sum of the predicted class's score drops (before − after).
    pub drop_sum: f64,
    /// Images whose predicted class changed.
    pub flips: u64,
}

impl Faithfulness {
    fn add(&mut self, drop: f64, flipped: bool) {
        self.images += 1;
        self.drop_sum += drop;
        self.flips += u64::from(flipped);
    }

    pub fn mean_drop(&self) -> f64 {
        self.drop_sum / self.images.max(1) as f64
    }

    pub fn flip_rate(&self) -> f64 {
        self.flips as f64 / self.images.max(1) as f64
    }
}

/// What the passes over the dataset found.
pub(crate) struct Explanation {
    pub units: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub explained: Vec<Explained>,
    pub totals: Totals,
}

/// The numbers of units the faithfulness check ablates, with their index in
/// `config.ablate`: those the layer has (n ≤ units).
pub(crate) fn ablated(config: &Config, units: usize) -> Vec<(usize, usize)> {
    config
        .ablate
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, n)| n <= units)
        .collect()
}

/// One image's predicted class, as the class tables and the faithfulness check count it:
/// what an image shard keeps (`merge_images.parquet`) so that shards merge into exactly
/// the tables of one run over all their rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageRecord {
    /// The dataset row.
    pub row: usize,
    /// The predicted class and its score.
    pub class: usize,
    pub score: f32,
    /// Every unit's contribution to the predicted class's score.
    pub contributions: Vec<f32>,
    /// How far the image's summed gradient was from the class weights, relative to the
    /// largest weight (0 for a head linear after pooling).
    pub head_deviation: f32,
    /// The ablations' outcomes, `(drop, flipped)`: per number of [`ablated`], the top units,
    /// each random draw, then the weights.
    pub outcomes: Vec<(f64, bool)>,
}

/// The tallies over images that the class tables and the faithfulness check report, each
/// summed in row order (so that merged shards give the same bits as one run).
pub(crate) struct Totals {
    /// Per class: images predicted as the class, and the sum of each unit's contribution
    /// over them.
    pub class_images: Vec<u64>,
    pub class_sums: Vec<Vec<f64>>,
    /// Sum of the predicted classes' scores (for the mean).
    pub score_sum: f64,
    /// Per number in `config.ablate`: the top units, each random draw, the weights.
    pub top: Vec<Faithfulness>,
    pub random: Vec<Vec<Faithfulness>>,
    pub weight: Vec<Faithfulness>,
    /// Whether the summed gradient of every image's predicted class equalled the class's
    /// weights (a head linear after pooling), so that the weight baseline applies.
    pub linear_head: bool,
    /// The largest relative difference seen between a summed gradient and the class weights.
    pub linear_head_deviation: f64,
    /// The largest difference between the intervention's class scores and forward's,
    /// relative to the largest score.
    pub intervention_deviation: f64,
}

impl Totals {
    pub fn new(config: &Config, units: usize, classes: usize) -> Totals {
        let n = config.ablate.len();
        Totals {
            class_images: vec![0; classes],
            class_sums: vec![vec![0.0; units]; classes],
            score_sum: 0.0,
            top: vec![Faithfulness::default(); n],
            random: vec![vec![Faithfulness::default(); config.random_draws]; n],
            weight: vec![Faithfulness::default(); n],
            linear_head: true,
            linear_head_deviation: 0.0,
            intervention_deviation: 0.0,
        }
    }

    /// Counts one image; images must come in row order.
    pub fn add(&mut self, config: &Config, record: &ImageRecord) -> Result<()> {
        let units = self.class_sums.first().map_or(0, Vec::len);
        let ablated = ablated(config, units);
        let expected = ablated.len() * (config.random_draws + 2);
        if record.class >= self.class_images.len()
            || record.contributions.len() != units
            || record.outcomes.len() != expected
        {
            return Err(Error::Config(format!(
                "row {}: {} contributions, {} ablation outcomes and class {}, where the \
                 explanation has {units} units, {expected} outcomes per image and {} classes",
                record.row,
                record.contributions.len(),
                record.outcomes.len(),
                record.class,
                self.class_images.len()
            )));
        }
        let c = record.class;
        self.score_sum += f64::from(record.score);
        self.class_images[c] += 1;
        for (sum, &v) in self.class_sums[c].iter_mut().zip(&record.contributions) {
            *sum += f64::from(v);
        }
        self.linear_head_deviation = self
            .linear_head_deviation
            .max(f64::from(record.head_deviation));
        if record.head_deviation > 1e-4 {
            self.linear_head = false;
        }
        let mut outcomes = record.outcomes.iter().copied();
        let mut next = || outcomes.next().expect("counted above");
        for &(j, _) in &ablated {
            let (drop, flip) = next();
            self.top[j].add(drop, flip);
            for tally in &mut self.random[j] {
                let (drop, flip) = next();
                tally.add(drop, flip);
            }
            let (drop, flip) = next();
            self.weight[j].add(drop, flip);
        }
        Ok(())
    }
}

/// A float32 tensor's values, on the CPU, flattened.
fn values(t: &Tensor) -> Result<Vec<f32>> {
    let t = t
        .detach()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous()
        .view([-1]);
    Ok(Vec::<f32>::try_from(&t)?)
}

fn take(
    outputs: &mut Vec<(String, Tensor)>,
    name: &str,
    what: &str,
    model: &Model,
) -> Result<Tensor> {
    match outputs.iter().position(|(n, _)| n == name) {
        Some(i) => Ok(outputs.swap_remove(i).1),
        None => Err(Error::Model {
            path: model.path().to_owned(),
            message: format!(
                "forward returns no `{name}` ({what}); it returns {}",
                outputs
                    .iter()
                    .map(|(n, _)| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// A SplitMix64 stream: the random draws depend on the seed, the draw and the image's row
/// only, never on batching or threads.
struct SplitMix(u64);

impl SplitMix {
    fn new(seed: u64, draw: u64, row: u64) -> SplitMix {
        let mut s = SplitMix(seed ^ 0x9e37_79b9_7f4a_7c15);
        s.0 ^= s
            .next()
            .wrapping_add(draw.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        s.0 ^= s
            .next()
            .wrapping_add(row.wrapping_mul(0x94d0_49bb_1331_11eb));
        s
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The first `n` of a uniform random permutation of `0..len` (partial Fisher–Yates).
    fn prefix(&mut self, len: usize, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..len).collect();
        for i in 0..n.min(len) {
            let j = i + (self.next() % (len - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(n.min(len));
        all
    }
}

/// The units of each image in the order an ablation takes them.
type Orders = Vec<Vec<usize>>;

/// Zeroes, for image `i`, the first `n` units of `orders[i]`, runs the network on and
/// returns, per image, the drop of `classes[i]`'s score and whether the top class changed.
fn ablate(
    model: &Model,
    layer: &str,
    activations: &Tensor,
    orders: &Orders,
    n: usize,
    classes: &[i64],
    scores: &[f32],
) -> Result<Vec<(f64, bool)>> {
    let size = activations.size();
    let (images, units) = (size[0] as usize, size[1] as usize);
    let mut keep = vec![1f32; images * units];
    for (i, order) in orders.iter().enumerate() {
        for &u in order.iter().take(n) {
            keep[i * units + u] = 0.0;
        }
    }
    let keep = Tensor::from_slice(&keep)
        .view([images as i64, units as i64, 1, 1])
        .to_device(activations.device());
    let _guard = tch::no_grad_guard();
    let logits = model.forward_from(layer, &(activations * keep))?;
    let after = values(&logits)?;
    let top = values(&logits.argmax(1, false).to_kind(Kind::Float))?;
    let width = after.len() / images.max(1);
    Ok((0..images)
        .map(|i| {
            let c = classes[i] as usize;
            let drop = f64::from(scores[i]) - f64::from(after[i * width + c]);
            (drop, top[i] as i64 != classes[i])
        })
        .collect())
}

/// The class weights `W[c][u] = Σ_p ∂y_c/∂A_u(p)` at one image's activations: for a head
/// linear after pooling, the same at every image (the weights of the unit's pooled value).
fn class_weights(
    model: &Model,
    layer: &str,
    one: &Tensor,
    classes: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut weights = Vec::with_capacity(classes);
    let chunk = 64usize;
    let mut start = 0;
    while start < classes {
        let n = chunk.min(classes - start);
        let copies = one
            .detach()
            .repeat([n as i64, 1, 1, 1])
            .set_requires_grad(true);
        let logits = model.forward_from(layer, &copies)?;
        let index = Tensor::arange_start(
            start as i64,
            (start + n) as i64,
            (Kind::Int64, logits.device()),
        )
        .view([n as i64, 1]);
        let picked = logits.gather(1, &index, false).sum(Kind::Float);
        let grads = Tensor::f_run_backward(&[&picked], &[&copies], false, false)?;
        // Contiguous first, as in `explain_batch`: the sum must not follow the layout.
        let summed = values(&grads[0].contiguous().sum_dim_intlist(
            [2i64, 3].as_slice(),
            false,
            Kind::Float,
        ))?;
        let units = summed.len() / n;
        weights.extend(summed.chunks(units).map(<[f32]>::to_vec));
        start += n;
    }
    Ok(weights)
}

/// One image's explanation of one class: every unit's contribution and the class
/// activation map.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassExplanation {
    pub class: usize,
    pub score: f32,
    pub probability: f32,
    /// Per unit: `Σ_p ∂y_c/∂A_u(p) · A_u(p)`.
    pub contributions: Vec<f32>,
    /// Per position, row-major: `Σ_u ∂y_c/∂A_u(p) · A_u(p)`.
    pub cam: Vec<f32>,
}

impl ClassExplanation {
    /// The units by contribution, largest first (equal contributions by unit number).
    pub fn order(&self) -> Vec<usize> {
        let c = &self.contributions;
        let mut order: Vec<usize> = (0..c.len()).collect();
        order.sort_by(|&x, &y| c[y].total_cmp(&c[x]).then(x.cmp(&y)));
        order
    }

    /// The sum of every unit's contribution: the denominator of the shares.
    pub fn total(&self) -> f64 {
        self.contributions.iter().map(|&v| f64::from(v)).sum()
    }
}

/// A batch explained: per image, its top-k classes' explanations.
pub(crate) struct BatchExplanation {
    /// The layer's activations (on the model's device), for the ablations.
    pub activations: Tensor,
    pub units: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// `images[i][r]`: image i's class of rank r.
    pub images: Vec<Vec<ClassExplanation>>,
    /// Per image, `Σ_p ∂y_c/∂A_u(p)` for its predicted class, `units` values each.
    pub summed: Vec<f32>,
    /// How far the intervention's class scores were from forward's, relative to the
    /// largest score.
    pub deviation: f32,
}

/// Checks that the model can explain with `config`: its intervention offers the layer and
/// recomputes the class scores that `config.logits` names.
fn check_model(model: &Model, config: &Config) -> Result<()> {
    let record = model.require_intervention(&config.layer, "explaining predictions")?;
    if record.output != config.logits {
        return Err(Error::Model {
            path: config.model.clone(),
            message: format!(
                "its intervention method {} recomputes `{}`, but the class scores were named \
                 `{}`; set logits = \"{}\" or re-export the model",
                record.method, record.output, config.logits, record.output
            ),
        });
    }
    Ok(())
}

/// Runs the model on a normalised batch and explains each image's top-k classes.
pub(crate) fn explain_batch(
    model: &Model,
    config: &Config,
    input: &Tensor,
) -> Result<BatchExplanation> {
    let n_images = input.size()[0] as usize;
    let mut outputs = model.forward(input)?;
    let activations = take(
        &mut outputs,
        &config.layer,
        "the layer to explain with",
        model,
    )?
    .to_kind(Kind::Float)
    .contiguous();
    let logits =
        take(&mut outputs, &config.logits, "the class scores", model)?.to_kind(Kind::Float);
    let (a_size, l_size) = (activations.size(), logits.size());
    if a_size.len() != 4 || a_size[0] != n_images as i64 {
        return Err(Error::Model {
            path: config.model.clone(),
            message: format!(
                "layer `{}` is {} for a batch of {n_images}, not (N, C, H, W)",
                config.layer,
                nd_torch::shape(&a_size)
            ),
        });
    }
    if l_size.len() != 2 || l_size[0] != n_images as i64 {
        return Err(Error::Model {
            path: config.model.clone(),
            message: format!(
                "the class scores `{}` are {} for a batch of {n_images}, not (N, classes)",
                config.logits,
                nd_torch::shape(&l_size)
            ),
        });
    }
    let (units, height, width) = (a_size[1] as usize, a_size[2] as usize, a_size[3] as usize);
    let classes = l_size[1] as usize;
    if let Some(names) = &config.classes
        && names.len() != classes
    {
        return Err(Error::Config(format!(
            "{} class names were given but the model's class scores `{}` have {classes} \
             classes; give one name per class, in the order of the scores",
            names.len(),
            config.logits
        )));
    }
    let k = config.top_k.min(classes);
    let probabilities = values(&logits.softmax(1, Kind::Float))?;
    let scores = values(&logits)?;
    let (_, top_classes) = logits.topk(k as i64, 1, true, true);
    let top_classes: Vec<i64> =
        Vec::<i64>::try_from(&top_classes.to_device(Device::Cpu).contiguous().view([-1]))?;

    // Gradients through the intervention method, which must give forward's scores.
    let a = activations.detach().set_requires_grad(true);
    let tail = model.forward_from(&config.layer, &a)?;
    let tail_values = values(&tail)?;
    let largest = scores.iter().fold(1f32, |m, v| m.max(v.abs()));
    let deviation = scores
        .iter()
        .zip(&tail_values)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / largest;
    if tail_values.len() != scores.len() || deviation > 1e-3 {
        return Err(Error::Model {
            path: config.model.clone(),
            message: format!(
                "its intervention method does not reproduce forward's class scores from layer \
                 `{}` (they differ by {:.3} % of the largest score); it must run the rest of \
                 the network unchanged",
                config.layer,
                100.0 * deviation
            ),
        });
    }
    let mut images: Vec<Vec<ClassExplanation>> = vec![Vec::with_capacity(k); n_images];
    let mut summed = Vec::new();
    for r in 0..k {
        let classes_r: Vec<i64> = (0..n_images).map(|i| top_classes[i * k + r]).collect();
        let index = Tensor::from_slice(&classes_r)
            .view([n_images as i64, 1])
            .to_device(tail.device());
        let picked = tail.gather(1, &index, false).sum(Kind::Float);
        let grads = Tensor::f_run_backward(&[&picked], &[&a], r + 1 < k, false)?;
        // Both in the default (NCHW) layout: the gradient's layout follows the TorchScript
        // executor's state (channels-last on a module's first run, contiguous once it has
        // profiled the graph), and the sums below add in memory order, so without this a
        // batch's contributions would depend on how many batches the process ran before it.
        let g = &grads[0].contiguous();
        let map = g * &activations;
        let contributions = values(&map.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float))?;
        let cams = values(&map.sum_dim_intlist([1i64].as_slice(), false, Kind::Float))?;
        if r == 0 {
            summed = values(&g.sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Float))?;
        }
        for (i, image) in images.iter_mut().enumerate() {
            let c = classes_r[i] as usize;
            image.push(ClassExplanation {
                class: c,
                score: scores[i * classes + c],
                probability: probabilities[i * classes + c],
                contributions: contributions[i * units..(i + 1) * units].to_vec(),
                cam: cams[i * height * width..(i + 1) * height * width].to_vec(),
            });
        }
    }
    Ok(BatchExplanation {
        activations,
        units,
        height,
        width,
        classes,
        images,
        summed,
        deviation,
    })
}

/// The layer's map size, `[height, width]`, with each image's explanations: the model run
/// on images outside any dataset (normalised by `config.preprocess`, resized to `size`
/// first when they have another size). For `netdissect explain --image`.
pub fn explain_images(
    config: &Config,
    images: &[image::RgbImage],
    size: [u32; 2],
) -> Result<([usize; 2], Vec<Vec<ClassExplanation>>)> {
    let explained = explain_images_with_activations(config, images, size)?;
    Ok((explained.map_size, explained.images))
}

/// Images outside any dataset explained, with the layer's activations that the
/// explanations were computed from (for their units' masks, as the dissection draws them).
#[derive(Debug, Clone, PartialEq)]
pub struct ImagesExplained {
    /// The layer's map size, `[height, width]`.
    pub map_size: [usize; 2],
    /// Per image, its top-k classes' explanations.
    pub images: Vec<Vec<ClassExplanation>>,
    /// Per image, the layer's activations: `units × height × width` values, row-major, as
    /// forward gave them (float32).
    pub activations: Vec<Vec<f32>>,
}

/// [`explain_images`], with each image's activations of the layer.
pub fn explain_images_with_activations(
    config: &Config,
    images: &[image::RgbImage],
    size: [u32; 2],
) -> Result<ImagesExplained> {
    config.validate()?;
    let device = nd_torch::resolve_device(config.device)?;
    let model = Model::load(&config.model, device, config.output_names.clone())?;
    check_model(&model, config)?;
    let [h, w] = size;
    let per_image = 3 * h as usize * w as usize;
    let mut values = vec![0f32; per_image * images.len()];
    for (image, slot) in images.iter().zip(values.chunks_mut(per_image)) {
        let (ih, iw) = (image.height(), image.width());
        let mut own = vec![0f32; 3 * ih as usize * iw as usize];
        config.preprocess.normalise_into(image, &mut own);
        if [ih, iw] == size {
            slot.copy_from_slice(&own);
        } else {
            slot.copy_from_slice(&nd_torch::input::resize(&own, [ih, iw], size));
        }
    }
    let input =
        Tensor::from_slice(&values).view([images.len() as i64, 3, i64::from(h), i64::from(w)]);
    let batch = explain_batch(&model, config, &input)?;
    let per_image = batch.units * batch.height * batch.width;
    let all = self::values(&batch.activations)?;
    let activations = (0..images.len())
        .map(|i| all[i * per_image..(i + 1) * per_image].to_vec())
        .collect();
    Ok(ImagesExplained {
        map_size: [batch.height, batch.width],
        images: batch.images,
        activations,
    })
}

/// The layer's activations `(1, C, H, W)` of the dataset's first image, run alone: the point
/// at which the class weights are taken, the same for every image shard and batch size.
fn first_activations(
    model: &Model,
    dataset: &Dataset,
    config: &Config,
    input_size: [u32; 2],
) -> Result<Tensor> {
    let batch = decode_batch(dataset, 0..1, &config.preprocess, input_size)?;
    let _guard = tch::no_grad_guard();
    let mut outputs = model.forward(&batch.input)?;
    Ok(take(
        &mut outputs,
        &config.layer,
        "the layer to explain with",
        model,
    )?
    .to_kind(Kind::Float))
}

/// Runs the model over `rows` and explains every image.
///
/// The class activation maps go to `cams` a batch at a time, and so do the images' records
/// to `part` for an image shard; the rest is kept (the top units of each image and class,
/// and the totals) for the tables.
pub(crate) fn explain(
    dataset: &Dataset,
    config: &Config,
    rows: Range<usize>,
    cams: &mut crate::tables::CamSink,
    mut part: Option<&mut crate::part::PartSink>,
) -> Result<Explanation> {
    let device = nd_torch::resolve_device(config.device)?;
    let model = Model::load(&config.model, device, config.output_names.clone())?;
    check_model(&model, config)?;
    // The input size and the class weights come from the dataset's first row, whichever
    // rows this run explains, so that image shards agree.
    let input_size = input_size(dataset, &config.preprocess, &(0..dataset.len()));
    let bar = nd_store::progress::bar(
        config.progress,
        rows.len() as u64,
        "explain {bar:32} {pos}/{len} images, {rate}, eta {eta}",
    );
    let max_n = config.ablate.iter().copied().max().unwrap_or(0);
    let mut out: Option<Explanation> = None;
    let mut weights: Vec<Vec<f32>> = Vec::new();
    for range in batch_ranges(&rows, config.batch_size) {
        let batch = decode_batch(dataset, range.clone(), &config.preprocess, input_size)?;
        let n_images = range.len();
        let b = explain_batch(&model, config, &batch.input)?;
        let (units, height, width, classes) = (b.units, b.height, b.width, b.classes);
        let state = out.get_or_insert_with(|| Explanation {
            units,
            height,
            width,
            classes,
            explained: Vec::new(),
            totals: Totals::new(config, units, classes),
        });
        if [units, height, width, classes]
            != [state.units, state.height, state.width, state.classes]
        {
            return Err(Error::Model {
                path: config.model.clone(),
                message: "the layer's or the class scores' shape changed between batches".into(),
            });
        }
        state.totals.intervention_deviation = state
            .totals
            .intervention_deviation
            .max(f64::from(b.deviation));
        if weights.is_empty() {
            let first = first_activations(&model, dataset, config, input_size)?;
            weights = class_weights(&model, &config.layer, &first, classes)?;
        }
        let maps: Vec<crate::tables::Cam> = b
            .images
            .iter()
            .enumerate()
            .flat_map(|(i, explanations)| {
                explanations
                    .iter()
                    .enumerate()
                    .map(move |(r, e)| crate::tables::Cam {
                        row: range.start + i,
                        class_rank: r,
                        class: e.class,
                        values: &e.cam,
                    })
            })
            .collect();
        cams.push(&maps, height, width)?;
        drop(maps);
        let mut records = Vec::with_capacity(n_images);
        let mut orders_top: Orders = Vec::with_capacity(n_images);
        for (i, explanations) in b.images.iter().enumerate() {
            let row = range.start + i;
            for (r, e) in explanations.iter().enumerate() {
                let order = e.order();
                state.explained.push(Explained {
                    row,
                    class_rank: r,
                    class: e.class,
                    score: e.score,
                    probability: e.probability,
                    total: e.total(),
                    top: order
                        .iter()
                        .take(config.top_n)
                        .map(|&u| (u, e.contributions[u]))
                        .collect(),
                });
                if r > 0 {
                    continue;
                }
                let g = &b.summed[i * units..(i + 1) * units];
                let w = &weights[e.class];
                let scale = w
                    .iter()
                    .fold(0f32, |m, v| m.max(v.abs()))
                    .max(f32::MIN_POSITIVE);
                let deviation =
                    g.iter().zip(w).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
                records.push(ImageRecord {
                    row,
                    class: e.class,
                    score: e.score,
                    contributions: e.contributions.clone(),
                    head_deviation: deviation,
                    outcomes: Vec::new(),
                });
                orders_top.push(order);
            }
        }
        let predicted: Vec<i64> = records.iter().map(|r| r.class as i64).collect();
        let predicted_scores: Vec<f32> = records.iter().map(|r| r.score).collect();

        // Ablations of the predicted class: the units of each image in the order each way
        // takes them, the first n zeroed.
        let random: Vec<Orders> = (0..config.random_draws)
            .map(|d| {
                (0..n_images)
                    .map(|i| {
                        SplitMix::new(config.seed, d as u64, (range.start + i) as u64)
                            .prefix(units, max_n)
                    })
                    .collect()
            })
            .collect();
        let by_weight: Orders = predicted
            .iter()
            .map(|&c| {
                let w = &weights[c as usize];
                let mut order: Vec<usize> = (0..units).collect();
                order.sort_by(|&x, &y| w[y].total_cmp(&w[x]).then(x.cmp(&y)));
                order
            })
            .collect();
        let run = |orders: &Orders, n: usize, records: &mut [ImageRecord]| -> Result<()> {
            let outcomes = ablate(
                &model,
                &config.layer,
                &b.activations,
                orders,
                n,
                &predicted,
                &predicted_scores,
            )?;
            for (record, outcome) in records.iter_mut().zip(outcomes) {
                record.outcomes.push(outcome);
            }
            Ok(())
        };
        for (_, n) in ablated(config, units) {
            run(&orders_top, n, &mut records)?;
            for orders in &random {
                run(orders, n, &mut records)?;
            }
            run(&by_weight, n, &mut records)?;
        }
        for record in &records {
            state.totals.add(config, record)?;
        }
        if let Some(part) = part.as_deref_mut() {
            part.push(&records)?;
        }
        bar.inc(n_images as u64);
    }
    bar.finish_and_clear();
    out.ok_or_else(|| Error::Config("no images were explained".into()))
}
