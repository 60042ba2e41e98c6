//! The decode → forward → write pipeline.

use std::ops::Range;
use std::path::Path;

use crossbeam_channel::bounded;
use indicatif::ProgressBar;
use nd_arrays::{ActivationGroup, LayerShape, LayerWriter};
use nd_broden::Dataset;
use tch::{Device, Tensor};

use crate::Config;
use crate::error::{Error, Result};
use nd_torch::input::{Batch, batch_ranges, decode_batch, with_values};
use nd_torch::{DeviceChoice, Model, resolve_device};

/// A layer as the model returns it for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub name: String,
    pub units: u64,
    pub height: u64,
    pub width: u64,
}

/// Runs the model once on a blank batch of one image of `input_size` (`[height, width]`)
/// and lists every tensor its `forward` returns with its shape, batch dimension included
/// (see [`not_a_map`] for those that cannot be dissected).
pub fn list_layers(
    model: &Path,
    output_names: Option<Vec<String>>,
    input_size: [u32; 2],
    device: DeviceChoice,
) -> Result<Vec<(String, Vec<i64>)>> {
    let device = resolve_device(device)?;
    Ok(Model::load(model, device, output_names)?.output_shapes(input_size)?)
}

/// Why an output of this shape (batch dimension included) cannot be dissected, or `None`
/// when it is an `(N, C, H, W)` map. A ViT block's tokens `(N, 197, 768)` and a pooled
/// `(N, C)` vector have no spatial positions to threshold and compare with label maps.
pub fn not_a_map(shape: &[i64]) -> Option<String> {
    if shape.len() == 4 {
        return None;
    }
    let per_image = if shape.len() > 1 {
        crate::error::shape(&shape[1..])
    } else {
        "a scalar".to_owned()
    };
    Some(format!(
        "it is {per_image} for one image, not a map (N, C, H, W); dissection needs a \
         convolutional layer's (C, H, W) output (transformer tokens must be reshaped into a \
         map by the model)"
    ))
}

/// A batch's activations, one buffer per requested layer, on their way to Zarr.
struct WriteJob {
    rows: Range<usize>,
    /// The batch's outputs, which the writer thread reads in libtorch's memory
    /// ([`with_values`]): the main thread only runs forward passes.
    layers: Vec<Tensor>,
}

/// Picks the requested layers from a forward's outputs, checking rank and batch size.
fn select(
    outputs: Vec<(String, Tensor)>,
    layers: &[String],
    batch: usize,
    model: &Path,
) -> Result<Vec<(LayerInfo, Tensor)>> {
    let available: Vec<String> = outputs.iter().map(|(n, _)| n.clone()).collect();
    let mut outputs: std::collections::HashMap<String, Tensor> = outputs.into_iter().collect();
    layers
        .iter()
        .map(|layer| {
            let Some(t) = outputs.remove(layer) else {
                return Err(Error::Model {
                    path: model.to_owned(),
                    message: format!(
                        "forward does not return layer `{layer}`; it returns: {}",
                        available.join(", ")
                    ),
                });
            };
            let size = t.size();
            if size.len() != 4 {
                return Err(Error::Layer {
                    layer: layer.clone(),
                    message: format!(
                        "the model returns shape {size:?}; a layer must be (images, units, height, width)"
                    ),
                });
            }
            if size[0] != batch as i64 {
                return Err(Error::Layer {
                    layer: layer.clone(),
                    message: format!("the model returns {} maps for a batch of {batch} images", size[0]),
                });
            }
            if !t.is_floating_point() {
                return Err(Error::Layer {
                    layer: layer.clone(),
                    message: format!("activations are {:?}, not floating point", t.kind()),
                });
            }
            let info = LayerInfo {
                name: layer.clone(),
                units: size[1] as u64,
                height: size[2] as u64,
                width: size[3] as u64,
            };
            Ok((info, t))
        })
        .collect()
}

fn progress_bar(config: &Config, n: usize) -> ProgressBar {
    nd_store::progress::bar(
        config.progress,
        n as u64,
        "extract {bar:32} {pos}/{len} images, {rate}, eta {eta}",
    )
}

/// Checks a batch of one layer for NaN and infinity, naming the first offending image.
fn check_finite(
    dataset: &Dataset,
    info: &LayerInfo,
    rows: &Range<usize>,
    values: &[f32],
) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        let per_image = (info.units * info.height * info.width) as usize;
        let row = rows.start + i / per_image;
        let unit = (i % per_image) / (info.height * info.width) as usize;
        return Err(Error::Layer {
            layer: info.name.clone(),
            message: format!(
                "the model returned {} for unit {unit} on image {} (index.csv line {})",
                values[i],
                dataset.image_file(row),
                dataset.rows()[row].line
            ),
        });
    }
    Ok(())
}

/// The loaded model and the input size (the resize, or the first image's size)
/// of an extraction over `rows`.
fn load(dataset: &Dataset, config: &Config, rows: &Range<usize>) -> Result<(Model, [u32; 2])> {
    let device = resolve_device(config.device)?;
    let model = Model::load(&config.model, device, config.output_names.clone())?;
    Ok((model, input_size(dataset, config, rows)))
}

/// The model's input size (`[height, width]`) in an extraction over `rows`: the resize, or
/// the first image's size (every image must have it).
pub(crate) fn input_size(dataset: &Dataset, config: &Config, rows: &Range<usize>) -> [u32; 2] {
    nd_torch::input::input_size(dataset, &config.preprocess, rows)
}

/// Runs the pipeline over `rows` and writes every layer into a new Zarr group at `out`.
pub(crate) fn extract(
    dataset: &Dataset,
    config: &Config,
    rows: Range<usize>,
    out: &Path,
) -> Result<Vec<LayerInfo>> {
    let (model, input_size) = load(dataset, config, &rows)?;
    let n_images = rows.len();
    let group = ActivationGroup::create(out)?;
    let bar = progress_bar(config, n_images);

    let result = std::thread::scope(|scope| -> Result<Vec<LayerInfo>> {
        let (batch_tx, batch_rx) = bounded::<Result<Batch>>(2);
        let batches = batch_ranges(&rows, config.batch_size);
        let preprocess = &config.preprocess;
        scope.spawn(move || {
            for range in batches {
                let batch =
                    decode_batch(dataset, range, preprocess, input_size).map_err(Error::from);
                let failed = batch.is_err();
                if batch_tx.send(batch).is_err() || failed {
                    break;
                }
            }
        });

        let mut infos: Vec<LayerInfo> = Vec::new();
        let mut write_tx = None;
        let mut writer = None;
        for batch in batch_rx {
            let batch = batch?;
            let n = batch.rows.len();
            let outputs = model.forward(&batch.input)?;
            let selected = select(outputs, &config.layers, n, &config.model)?;
            if infos.is_empty() {
                infos = selected.iter().map(|(info, _)| info.clone()).collect();
                let writers: Vec<LayerWriter> = infos
                    .iter()
                    .map(|info| {
                        let shape = LayerShape {
                            images: n_images as u64,
                            units: info.units,
                            height: info.height,
                            width: info.width,
                        };
                        group.create_layer(&info.name, shape)
                    })
                    .collect::<nd_arrays::Result<_>>()?;
                let (tx, rx) = bounded::<WriteJob>(2);
                write_tx = Some(tx);
                let infos = infos.clone();
                writer = Some(scope.spawn(move || -> Result<()> {
                    let mut writers = writers;
                    for job in rx {
                        for ((info, writer), tensor) in
                            infos.iter().zip(&mut writers).zip(&job.layers)
                        {
                            with_values(tensor, |values| -> Result<()> {
                                check_finite(dataset, info, &job.rows, values)?;
                                writer.push(values)?;
                                Ok(())
                            })?;
                        }
                    }
                    for writer in writers {
                        writer.finish()?;
                    }
                    Ok(())
                }));
            }
            for ((info, _), first) in selected.iter().zip(&infos) {
                if info != first {
                    return Err(Error::Layer {
                        layer: info.name.clone(),
                        message: format!(
                            "shape changed between batches: {}×{}×{} after {}×{}×{}",
                            info.units,
                            info.height,
                            info.width,
                            first.units,
                            first.height,
                            first.width
                        ),
                    });
                }
            }
            let layers: Vec<Tensor> = selected.into_iter().map(|(_, t)| t).collect();
            let tx = write_tx
                .as_ref()
                .expect("the writer starts with the first batch");
            if tx
                .send(WriteJob {
                    rows: batch.rows,
                    layers,
                })
                .is_err()
            {
                // The writer stopped on an error; it is reported below.
                break;
            }
            bar.inc(n as u64);
        }
        drop(write_tx);
        match writer {
            Some(handle) => handle.join().expect("the writer thread does not panic")?,
            None => return Err(Error::Config("no images were extracted".into())),
        }
        group.set_layers(&config.layers)?;
        Ok(infos)
    });
    bar.finish_and_clear();
    result
}

/// What the forward passes alone cost: the floor an extraction is measured against.
#[derive(Debug, Clone)]
pub struct Floor {
    pub images: usize,
    pub batches: usize,
    /// Seconds spent in the forward passes (and, on CUDA, in waiting for them).
    pub forward_seconds: f64,
    /// Seconds spent decoding and normalising the images first (not part of the floor).
    pub decode_seconds: f64,
    /// CPU seconds of the process (every thread) in the forward passes and in decoding.
    pub forward_cpu_seconds: f64,
    pub decode_cpu_seconds: f64,
    /// CPU seconds (one thread) that laying out and compressing the outputs chunk by chunk
    /// takes, as the writer stores them, without writing: what an extraction must spend
    /// besides the forward passes and decoding; and the bytes it gives.
    pub compress_cpu_seconds: f64,
    pub compressed_bytes: u64,
}

/// CPU seconds used so far by every thread of the process.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the struct it is given, which is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Times the model's forward passes over `rows` with the images already decoded and
/// normalised in memory, in the batches, threads and device of `config`: what libtorch
/// alone needs, which no extraction can beat. Nothing is written.
pub(crate) fn floor(dataset: &Dataset, config: &Config, rows: Range<usize>) -> Result<Floor> {
    let (model, input_size) = load(dataset, config, &rows)?;
    let started = std::time::Instant::now();
    let cpu = process_cpu_seconds();
    let batches: Vec<Tensor> = batch_ranges(&rows, config.batch_size)
        .into_iter()
        .map(|range| Ok(decode_batch(dataset, range, &config.preprocess, input_size)?.input))
        .collect::<Result<_>>()?;
    let decode_seconds = started.elapsed().as_secs_f64();
    let decode_cpu_seconds = process_cpu_seconds() - cpu;
    let (mut forward_seconds, mut forward_cpu_seconds) = (0.0, 0.0);
    let (mut compress_cpu_seconds, mut compressed_bytes) = (0.0, 0);
    for input in &batches {
        let (started, cpu) = (std::time::Instant::now(), process_cpu_seconds());
        let outputs = model.forward(input)?;
        let selected = select(
            outputs,
            &config.layers,
            input.size()[0] as usize,
            &config.model,
        )?;
        if let Device::Cuda(i) = model.device() {
            tch::Cuda::synchronize(i as i64);
        }
        forward_seconds += started.elapsed().as_secs_f64();
        forward_cpu_seconds += process_cpu_seconds() - cpu;
        // Outside the floor: the outputs laid out and compressed on this thread alone,
        // timed.
        for (info, tensor) in selected {
            let shape = nd_arrays::LayerShape {
                images: input.size()[0] as u64,
                units: info.units,
                height: info.height,
                width: info.width,
            };
            let started = std::time::Instant::now();
            compressed_bytes += with_values(&tensor, |v| nd_arrays::compress_in_memory(v, shape))?;
            compress_cpu_seconds += started.elapsed().as_secs_f64();
        }
    }
    Ok(Floor {
        images: rows.len(),
        batches: batches.len(),
        forward_seconds,
        decode_seconds,
        forward_cpu_seconds,
        decode_cpu_seconds,
        compress_cpu_seconds,
        compressed_bytes,
    })
}
