//! A generator: samples from latent vectors, and again from modified activations.

use std::ops::Range;
use std::path::Path;

use tch::{Device, Tensor};

use crate::error::{Error, Result};
use crate::model::{GeneratorRecord, Model, model_generator};

/// A loaded generator with its record ([`GeneratorRecord`]).
pub struct Generator {
    model: Model,
    record: GeneratorRecord,
}

impl Generator {
    /// Loads a generator; an error says how to give a file its record when it has none.
    pub fn load(path: &Path, device: Device) -> Result<Generator> {
        let record = model_generator(path)?.ok_or_else(|| Error::Model {
            path: path.to_owned(),
            message: format!(
                "the file has no generator record ({}): a generator's forward(z) takes latent \
                 vectors (N, z_dim) and returns a dict with its image (N, 3, H, W) and its \
                 layers, and its archive's extra file says so, e.g. {{\"format\": 1, \
                 \"z_dim\": 128, \"image\": \"image\", \"range\": [-1, 1], \"layers\": \
                 [\"layer4\"]}} (python/train_gan_demo.py writes one)",
                crate::model::GENERATOR_EXTRA_FILE
            ),
        })?;
        let model = Model::load(path, device, None)?;
        Ok(Generator { model, record })
    }

    pub fn record(&self) -> &GeneratorRecord {
        &self.record
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The latent vectors of `rows` for `seed`, `(rows, z_dim)` ([`crate::latent`]).
    pub fn latents(&self, seed: u64, rows: Range<usize>) -> Tensor {
        let n = rows.len() as i64;
        Tensor::from_slice(&crate::latent::latents(seed, rows, self.record.z_dim))
            .view([n, self.record.z_dim as i64])
    }

    /// `forward(z)`: every named output (the image and the layers).
    pub fn forward(&self, z: &Tensor) -> Result<Vec<(String, Tensor)>> {
        self.model.forward(z).map_err(|e| match e {
            Error::Forward { message, input, .. } => self.error(format!(
                "forward failed on latent vectors of {} (z_dim {} by its record): {message}",
                crate::error::shape(&input),
                self.record.z_dim
            )),
            other => other,
        })
    }

    /// The samples among `forward`'s outputs, as 8-bit images (`n` of them).
    pub fn images(&self, outputs: &[(String, Tensor)], n: usize) -> Result<Vec<image::RgbImage>> {
        let Some((_, image)) = outputs.iter().find(|(name, _)| *name == self.record.image) else {
            let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
            return Err(self.error(format!(
                "forward returns no image `{}`, which its record names (it returns {})",
                self.record.image,
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        };
        self.to_images(image, n, "forward")
    }

    /// The intervention: the images the generator draws from `layer`'s `activations` (as
    /// given: a unit set to zero is that unit ablated).
    pub fn render(&self, layer: &str, activations: &Tensor) -> Result<Vec<image::RgbImage>> {
        let image = self.model.forward_from(layer, activations)?;
        let n = activations.size().first().copied().unwrap_or(0) as usize;
        self.to_images(&image, n, "forward_from")
    }

    /// An image batch `(n, 3, H, W)` clamped to the record's range and mapped onto 0..=255,
    /// rounded to nearest.
    fn to_images(&self, image: &Tensor, n: usize, what: &str) -> Result<Vec<image::RgbImage>> {
        let dims = image.size();
        if dims.len() != 4 || dims[0] != n as i64 || dims[1] != 3 || dims[2] < 1 || dims[3] < 1 {
            return Err(self.error(format!(
                "{what} gives an image of {}, not (N, 3, H, W) for the {n} samples",
                crate::error::shape(&dims)
            )));
        }
        let (h, w) = (dims[2] as usize, dims[3] as usize);
        let [lo, hi] = self.record.range;
        crate::input::with_values(image, |values| {
            if values.iter().any(|v| !v.is_finite()) {
                return Err(self.error(format!("{what} gives an image that is not finite")));
            }
            Ok((0..n)
                .map(|i| {
                    let plane = |c: usize| &values[(i * 3 + c) * h * w..(i * 3 + c + 1) * h * w];
                    let (r, g, b) = (plane(0), plane(1), plane(2));
                    let byte = |v: f32| {
                        let t = ((f64::from(v) - lo) / (hi - lo)).clamp(0.0, 1.0);
                        (t * 255.0).round() as u8
                    };
                    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                        let p = y as usize * w + x as usize;
                        image::Rgb([byte(r[p]), byte(g[p]), byte(b[p])])
                    })
                })
                .collect())
        })
    }

    fn error(&self, message: String) -> Error {
        Error::Model {
            path: self.model.path().to_owned(),
            message,
        }
    }
}
