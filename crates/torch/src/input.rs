//! Images into a model's input, and tensors back into Rust slices.

use std::ops::Range;

use nd_broden::Dataset;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::preprocess::Preprocess;

/// A decoded, normalised batch: a `rows.len() × 3 × height × width` float32 tensor, which
/// the images were decoded straight into.
pub struct Batch {
    pub rows: Range<usize>,
    pub input: Tensor,
}

pub fn decode_batch(
    dataset: &Dataset,
    rows: Range<usize>,
    preprocess: &Preprocess,
    input_size: [u32; 2],
) -> Result<Batch> {
    let [height, width] = input_size;
    let per_image = 3 * height as usize * width as usize;
    // Each image is normalised into its place in the batch's tensor: no copy of the
    // batch (1.2 GB for 2,000 images at 224) between decoding and the forward pass.
    let mut input = Tensor::empty(
        [rows.len() as i64, 3, i64::from(height), i64::from(width)],
        (Kind::Float, Device::Cpu),
    );
    // SAFETY: the tensor was just created, contiguous float32 on the CPU, and only this
    // slice touches it until the slice is dropped below.
    let values = unsafe { values_mut(&mut input) };
    values
        .par_chunks_mut(per_image.max(1))
        .zip(rows.clone().into_par_iter())
        .try_for_each(|(slot, row)| -> Result<()> {
            let image = dataset.read_image(row)?;
            let (h, w) = (image.height(), image.width());
            match preprocess.resize {
                Some(size) if size != [h, w] => {
                    let mut values = vec![0f32; 3 * h as usize * w as usize];
                    preprocess.normalise_into(&image, &mut values);
                    slot.copy_from_slice(&resize(&values, [h, w], size));
                }
                _ if [h, w] == input_size => preprocess.normalise_into(&image, slot),
                _ => {
                    return Err(Error::Image {
                        line: dataset.rows()[row].line,
                        path: dataset.image_file(row).into(),
                        message: format!(
                            "image is {h}×{w} but the first image is {}×{}; set a resize in the preprocessing \
                             to give the model one input size",
                            input_size[0], input_size[1]
                        ),
                    });
                }
            }
            Ok(())
        })?;
    Ok(Batch { rows, input })
}

/// The values of a contiguous float32 CPU tensor, in its own storage.
///
/// # Safety
/// Nothing else may read or write the tensor's storage while the slice lives.
pub unsafe fn values_mut(t: &mut Tensor) -> &mut [f32] {
    assert!(t.kind() == Kind::Float && t.device() == Device::Cpu && t.is_contiguous());
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    // SAFETY: a contiguous float32 CPU tensor of `n > 0` elements has `n` values at its
    // data pointer; the caller guarantees exclusive access.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr().cast::<f32>(), n) }
}

/// Calls `f` with a tensor's values as float32 on the CPU: in place for a contiguous
/// float32 CPU tensor (a layer's output), else in a converted copy.
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> R {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let n = t.numel();
    if n == 0 {
        return f(&[]);
    }
    // SAFETY: `t` is a contiguous float32 CPU tensor of `n > 0` elements, which lives
    // until `f` returns; nothing writes it meanwhile (the forward pass that made it has
    // returned, and a layer's output is not an input of the next batch).
    f(unsafe { std::slice::from_raw_parts(t.data_ptr().cast::<f32>(), n) })
}

/// Antialiased bilinear resize of CHW planes, as torch's `interpolate(..., antialias=True)`.
pub fn resize(values: &[f32], from: [u32; 2], to: [u32; 2]) -> Vec<f32> {
    let _guard = tch::no_grad_guard();
    let input = Tensor::from_slice(values).view([1, 3, i64::from(from[0]), i64::from(from[1])]);
    let output = input.internal_upsample_bilinear2d_aa(
        [i64::from(to[0]), i64::from(to[1])],
        false,
        None,
        None,
    );
    with_values(&output, <[f32]>::to_vec)
}

/// The model's input size (`[height, width]`) for images of `dataset`'s `rows`: the
/// preprocessing's resize, or the first image's size (every image must then have it).
pub fn input_size(dataset: &Dataset, preprocess: &Preprocess, rows: &Range<usize>) -> [u32; 2] {
    let first = &dataset.rows()[rows.start];
    preprocess
        .resize
        .unwrap_or([first.image_height, first.image_width])
}

/// `rows` cut into batches of `batch_size` (the last may be shorter).
pub fn batch_ranges(rows: &Range<usize>, batch_size: usize) -> Vec<Range<usize>> {
    rows.clone()
        .step_by(batch_size)
        .map(|start| start..(start + batch_size).min(rows.end))
        .collect()
}
