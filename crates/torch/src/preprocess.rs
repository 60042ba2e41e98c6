//! Turning a decoded image into the model's input.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The order of the input's colour channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    #[default]
    Rgb,
    Bgr,
}

/// How a model wants its input: `value = (pixel / 255 · scale − mean[c]) / std[c]`, in
/// float32, channels in `channel_order`, optionally resized first.
///
/// The two published settings are [`Preprocess::torchvision`] (scale 1) and
/// [`Preprocess::lite_caffe`] (scale 255, NetDissect-Lite's setting for Caffe-trained
/// models).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocess {
    /// The value range pixels are mapped to before the mean is subtracted: 1 or 255.
    pub scale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    #[serde(default)]
    pub channel_order: ChannelOrder,
    /// Resize every image to `[height, width]` before normalising (antialiased bilinear, as
    /// `torch.nn.functional.interpolate(mode="bilinear", antialias=True)`); `None` keeps
    /// Broden's images at their size, which is what both reference implementations do.
    #[serde(default)]
    pub resize: Option<[u32; 2]>,
}

impl Preprocess {
    /// torchvision's ImageNet normalisation: RGB in 0..1, mean (0.485, 0.456, 0.406),
    /// std (0.229, 0.224, 0.225).
    pub fn torchvision() -> Preprocess {
        Preprocess {
            scale: 1.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            channel_order: ChannelOrder::Rgb,
            resize: None,
        }
    }

    /// NetDissect-Lite's setting for Caffe-style Places/ImageNet models: RGB in 0..255,
    /// minus (124.6901, 118.6897, 109.5388), divided by 57.12 (255 · 0.224).
    pub fn lite_caffe() -> Preprocess {
        Preprocess {
            scale: 255.0,
            mean: [124.6901, 118.6897, 109.5388],
            std: [57.12, 57.12, 57.12],
            channel_order: ChannelOrder::Rgb,
            resize: None,
        }
    }

    /// A named preset: `torchvision` or `lite-caffe`.
    pub fn preset(name: &str) -> Result<Preprocess> {
        match name {
            "torchvision" => Ok(Preprocess::torchvision()),
            "lite-caffe" => Ok(Preprocess::lite_caffe()),
            other => Err(Error::Config(format!(
                "unknown preprocessing preset `{other}` (use torchvision or lite-caffe)"
            ))),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let finite = |v: f64| v.is_finite();
        if !finite(self.scale) || self.scale <= 0.0 {
            return Err(Error::Config(format!(
                "preprocess scale must be positive, got {}",
                self.scale
            )));
        }
        if !self.mean.iter().copied().all(finite) {
            return Err(Error::Config("preprocess mean must be finite".into()));
        }
        if !self.std.iter().all(|&s| finite(s) && s > 0.0) {
            return Err(Error::Config(format!(
                "preprocess std must be positive, got {:?}",
                self.std
            )));
        }
        if let Some([h, w]) = self.resize
            && (h == 0 || w == 0)
        {
            return Err(Error::Config(
                "preprocess resize must be at least 1×1".into(),
            ));
        }
        Ok(())
    }

    /// Writes the normalised CHW float32 planes of an image (before any resize) into `out`,
    /// which holds three values per pixel.
    pub fn normalise_into(&self, image: &image::RgbImage, out: &mut [f32]) {
        let scale = self.scale as f32;
        let order: [usize; 3] = match self.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let raw = image.as_raw();
        let pixels = raw.len() / 3;
        assert_eq!(out.len(), 3 * pixels, "one value per channel and pixel");
        for ((plane, &source), out) in order
            .iter()
            .enumerate()
            .zip(out.chunks_exact_mut(pixels.max(1)))
        {
            let (mean, std) = (self.mean[plane] as f32, self.std[plane] as f32);
            // (p · scale) / 255 is exact for scale 255 and equals torchvision's p / 255 for
            // scale 1, so inputs match PyTorch bit for bit in both published settings.
            for (value, px) in out.iter_mut().zip(raw.chunks_exact(3)) {
                *value = ((f32::from(px[source]) * scale) / 255.0 - mean) / std;
            }
        }
    }
}

/// The command-line flags of a preprocessing setting, shared by the binaries that run a
/// model (`nd-extract`, `nd-explain`): a preset and overrides of its values.
#[derive(Debug, Clone, clap::Args)]
pub struct PreprocessArgs {
    /// Preprocessing preset: torchvision or lite-caffe.
    #[arg(long, default_value = "torchvision")]
    pub preprocess: String,
    /// Override the preset's per-channel mean (three comma-separated numbers).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub mean: Option<Vec<f64>>,
    /// Override the preset's per-channel std.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub std: Option<Vec<f64>>,
    /// Override the preset's pixel scale (1 or 255).
    #[arg(long)]
    pub scale: Option<f64>,
    /// Feed channels in BGR order.
    #[arg(long)]
    pub bgr: bool,
    /// Resize images before the model: `N` or `H,W`.
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub resize: Option<Vec<u32>>,
}

impl PreprocessArgs {
    /// The setting the flags give, checked.
    pub fn resolve(&self) -> Result<Preprocess> {
        let mut preprocess = Preprocess::preset(&self.preprocess)?;
        let triple = |values: &[f64], flag: &str| -> Result<[f64; 3]> {
            values.try_into().map_err(|_| {
                Error::Config(format!(
                    "{flag} takes three comma-separated numbers, got {}",
                    values.len()
                ))
            })
        };
        if let Some(mean) = &self.mean {
            preprocess.mean = triple(mean, "--mean")?;
        }
        if let Some(std) = &self.std {
            preprocess.std = triple(std, "--std")?;
        }
        if let Some(scale) = self.scale {
            preprocess.scale = scale;
        }
        if self.bgr {
            preprocess.channel_order = ChannelOrder::Bgr;
        }
        if let Some(resize) = &self.resize {
            preprocess.resize = Some(size_pair(resize, "--resize")?);
        }
        preprocess.validate()?;
        Ok(preprocess)
    }
}

/// `N` or `H,W` as `[height, width]`; `flag` names the setting in the error.
pub fn size_pair(values: &[u32], flag: &str) -> Result<[u32; 2]> {
    match values {
        [n] => Ok([*n, *n]),
        [h, w] => Ok([*h, *w]),
        _ => Err(Error::Config(format!("{flag} takes N or H,W"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_and_caffe_settings() {
        let img = image::RgbImage::from_raw(1, 1, vec![255, 0, 128]).unwrap();
        let mut out = vec![0.0; 3];
        Preprocess::torchvision().normalise_into(&img, &mut out);
        assert_eq!(
            out,
            [
                (1.0 - 0.485f32) / 0.229,
                (0.0 - 0.456f32) / 0.224,
                (128.0f32 / 255.0 - 0.406) / 0.225
            ]
        );
        out.fill(f32::NAN);
        let mut caffe = Preprocess::lite_caffe();
        caffe.normalise_into(&img, &mut out);
        assert_eq!(
            out,
            [
                (255.0 - 124.6901f32) / 57.12,
                (0.0 - 118.6897f32) / 57.12,
                (128.0 - 109.5388f32) / 57.12
            ]
        );
        out.fill(f32::NAN);
        caffe.channel_order = ChannelOrder::Bgr;
        caffe.normalise_into(&img, &mut out);
        assert_eq!(out[0], (128.0 - 124.6901f32) / 57.12);
    }

    #[test]
    fn rejects_nonsense() {
        let mut p = Preprocess::torchvision();
        p.std[1] = 0.0;
        assert!(
            p.validate()
                .unwrap_err()
                .to_string()
                .contains("std must be positive")
        );
        assert!(Preprocess::preset("caffe").is_err());
    }
}
