//! A segmenter's label file and how its class scores become Broden label maps.
//!
//! The label file names every output channel of the segmenter, in channel order:
//!
//! ```text
//! class,name,category
//! 0,,object
//! 1,tree,object
//! 2,car,object
//! 3,red-c,color
//! ```
//!
//! Each category's label map takes, at every pixel, the channel of highest score among the
//! category's channels (the first on ties); a row with an empty name is its category's
//! "none" class, whose pixels get no label of that category (label 0). A category without
//! one labels every pixel. Concepts that overlap (parts on objects) go in categories of
//! their own. A name may appear in several categories (one label of the dataset, as
//! Broden's `paper` is an object and a material), never twice in one.
//!
//! [`Segmenter`] runs the segmenter on 8-bit images: its `forward(images)` takes them
//! normalised as its preprocessing says and returns the class scores `(N, K, h, w)`.

use std::path::{Path, PathBuf};

use nd_broden::write::Vocabulary;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::preprocess::Preprocess;

/// A segmenter's classes read from its label file.
#[derive(Debug, Clone, PartialEq)]
pub struct Labels {
    pub path: PathBuf,
    /// The dataset's categories (in order of first appearance) and labels (numbered from 1
    /// in order of first appearance).
    pub vocabulary: Vocabulary,
    /// Per category: its channels and the label each gives (0 for the none class).
    pub channels: Vec<Vec<(usize, u16)>>,
    /// Output channels the segmenter must return.
    pub classes: usize,
}

impl Labels {
    pub fn read(path: &Path) -> Result<Labels> {
        let fail = |line: u64, message: String| Error::Labels {
            path: path.to_owned(),
            line,
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| fail(1, e.to_string()))?
            .clone();
        let column = |name: &str| {
            headers
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| {
                    fail(
                        1,
                        format!(
                            "no `{name}` column (the header must name class, name and category)"
                        ),
                    )
                })
        };
        let (class_col, name_col, category_col) =
            (column("class")?, column("name")?, column("category")?);
        let mut vocabulary = Vocabulary {
            categories: Vec::new(),
            labels: Vec::new(),
        };
        let mut channels: Vec<Vec<(usize, u16)>> = Vec::new();
        let mut classes = 0;
        for (i, record) in reader.records().enumerate() {
            let line = i as u64 + 2;
            let record = record.map_err(|e| fail(line, e.to_string()))?;
            let field = |c: usize| record.get(c).unwrap_or("").trim();
            let class: usize = field(class_col).parse().map_err(|_| {
                fail(
                    line,
                    format!("class `{}` is not a channel number", field(class_col)),
                )
            })?;
            if class != classes {
                return Err(fail(
                    line,
                    format!(
                        "class {class} where {classes} was expected: list every output channel \
                         once, in order from 0"
                    ),
                ));
            }
            classes += 1;
            let category = field(category_col);
            if category.is_empty() {
                return Err(fail(line, "the category is empty".into()));
            }
            if category.contains([',', ';', '/', '\\']) {
                return Err(fail(
                    line,
                    format!("category `{category}` holds one of , ; / \\ (it names files)"),
                ));
            }
            let c = match vocabulary.categories.iter().position(|x| x == category) {
                Some(c) => c,
                None => {
                    vocabulary.categories.push(category.to_owned());
                    channels.push(Vec::new());
                    vocabulary.categories.len() - 1
                }
            };
            let name = field(name_col);
            let label = if name.is_empty() {
                if channels[c].iter().any(|&(_, l)| l == 0) {
                    return Err(fail(
                        line,
                        format!("category `{category}` has two none classes (empty names)"),
                    ));
                }
                0
            } else {
                if name.contains([',', ';']) {
                    return Err(fail(
                        line,
                        format!("name `{name}` holds a comma or a semicolon"),
                    ));
                }
                let number = match vocabulary.labels.iter().position(|(n, _)| n == name) {
                    Some(i) => {
                        let cats = &mut vocabulary.labels[i].1;
                        if cats.contains(&c) {
                            return Err(fail(
                                line,
                                format!("`{name}` is named twice in category `{category}`"),
                            ));
                        }
                        cats.push(c);
                        cats.sort_unstable();
                        i + 1
                    }
                    None => {
                        vocabulary.labels.push((name.to_owned(), vec![c]));
                        vocabulary.labels.len()
                    }
                };
                u16::try_from(number)
                    .map_err(|_| fail(line, "more than 65,535 labels".to_owned()))?
            };
            channels[c].push((class, label));
        }
        if classes == 0 {
            return Err(fail(
                1,
                "no classes: the file names no output channel".into(),
            ));
        }
        if vocabulary.labels.is_empty() {
            return Err(fail(
                1,
                "every class is a none class: nothing to label".into(),
            ));
        }
        Ok(Labels {
            path: path.to_owned(),
            vocabulary,
            channels,
            classes,
        })
    }

    /// One image's label map per category from its class scores (`classes × pixels`,
    /// channel-major).
    pub fn label_maps(&self, scores: &[f32], pixels: usize) -> Vec<Vec<u16>> {
        self.channels
            .iter()
            .map(|channels| {
                (0..pixels)
                    .map(|p| {
                        let mut best = (f32::NEG_INFINITY, 0u16);
                        for &(class, label) in channels {
                            let s = scores[class * pixels + p];
                            // The first channel of highest score; a NaN never wins.
                            if s > best.0 {
                                best = (s, label);
                            }
                        }
                        best.1
                    })
                    .collect()
            })
            .collect()
    }
}

/// A loaded segmenter and its label file.
pub struct Segmenter {
    model: Model,
    labels: Labels,
    preprocess: Preprocess,
}

/// A batch's label maps: per image, per category of the label file, `size` pixels.
pub struct Segmented {
    pub maps: Vec<Vec<Vec<u16>>>,
    /// `[height, width]` of every map: the segmenter's output's.
    pub size: [u32; 2],
}

impl Segmenter {
    pub fn load(
        model: &Path,
        labels: &Path,
        preprocess: Preprocess,
        device: Device,
    ) -> Result<Segmenter> {
        preprocess.validate()?;
        let labels = Labels::read(labels)?;
        let model = Model::load(model, device, None)?;
        Ok(Segmenter {
            model,
            labels,
            preprocess,
        })
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The label maps of a batch of images (all of one size).
    pub fn segment(&self, images: &[image::RgbImage]) -> Result<Segmented> {
        let fail = |message: String| Error::Model {
            path: self.model.path().to_owned(),
            message,
        };
        let input = self.normalise(images);
        let outputs = self.model.forward(&input)?;
        let scores = match outputs.len() {
            1 => outputs.into_iter().next().expect("one").1,
            n => {
                return Err(fail(format!(
                    "forward returns {n} tensors; a segmenter returns one, its class scores \
                     (N, K, h, w)"
                )));
            }
        };
        let dims = scores.size();
        let n = images.len() as i64;
        if dims.len() != 4 || dims[0] != n || dims[2] < 1 || dims[3] < 1 {
            return Err(fail(format!(
                "forward returns {}, not class scores (N, K, h, w) for the {n} images given",
                crate::error::shape(&dims)
            )));
        }
        if dims[1] as usize != self.labels.classes {
            return Err(fail(format!(
                "returns {} classes but its label file {} names {}; name every output channel, \
                 in order",
                dims[1],
                self.labels.path.display(),
                self.labels.classes
            )));
        }
        let size = [dims[2] as u32, dims[3] as u32];
        let pixels = (dims[2] * dims[3]) as usize;
        let scores = scores
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        crate::input::with_values(&scores, |values| {
            if values.iter().any(|v| v.is_nan()) {
                return Err(fail("its class scores are not numbers (NaN)".into()));
            }
            let per = self.labels.classes * pixels;
            Ok(Segmented {
                maps: values
                    .chunks_exact(per)
                    .map(|image| self.labels.label_maps(image, pixels))
                    .collect(),
                size,
            })
        })
    }

    /// The input: the images' pixels normalised (and resized, when the preprocessing says
    /// so), `(N, 3, H, W)`.
    fn normalise(&self, images: &[image::RgbImage]) -> Tensor {
        let from = [images[0].height(), images[0].width()];
        let to = self.preprocess.resize.unwrap_or(from);
        let per = 3 * to[0] as usize * to[1] as usize;
        let mut values = vec![0f32; images.len() * per];
        for (image, slot) in images.iter().zip(values.chunks_exact_mut(per)) {
            if to == from {
                self.preprocess.normalise_into(image, slot);
            } else {
                let mut full = vec![0f32; 3 * from[0] as usize * from[1] as usize];
                self.preprocess.normalise_into(image, &mut full);
                slot.copy_from_slice(&crate::input::resize(&full, from, to));
            }
        }
        Tensor::from_slice(&values)
            .view([images.len() as i64, 3, i64::from(to[0]), i64::from(to[1])])
            .to_device(self.model.device())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(text: &str) -> Result<Labels> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        std::fs::write(&path, text).unwrap();
        Labels::read(&path)
    }

    #[test]
    fn categories_labels_and_none_classes() {
        let l = labels(
            "class,name,category\n0,,object\n1,tree,object\n2,paper,object\n3,red-c,color\n\
             4,paper,material\n5,blue-c,color\n",
        )
        .unwrap();
        assert_eq!(l.vocabulary.categories, ["object", "color", "material"]);
        assert_eq!(
            l.vocabulary.labels,
            [
                ("tree".to_owned(), vec![0]),
                ("paper".to_owned(), vec![0, 2]),
                ("red-c".to_owned(), vec![1]),
                ("blue-c".to_owned(), vec![1]),
            ]
        );
        assert_eq!(l.channels[0], [(0, 0), (1, 1), (2, 2)]);
        assert_eq!(l.channels[1], [(3, 3), (5, 4)]);
        assert_eq!(l.channels[2], [(4, 2)]);
        // Two pixels: the first is mostly "none" of objects, the second a tree; colours
        // always have a label; the material's one class labels every pixel.
        let scores = [
            5.0, 0.0, // none
            1.0, 3.0, // tree
            1.0, 2.0, // paper
            0.0, 9.0, // red-c
            0.0, 0.0, // paper (material)
            1.0, 1.0, // blue-c
        ];
        let maps = l.label_maps(&scores, 2);
        assert_eq!(maps, [vec![0, 1], vec![4, 3], vec![2, 2]]);
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, line, says) in [
            ("class,name\n0,a\n", "line 1", "no `category` column"),
            (
                "class,name,category\n1,a,object\n",
                "line 2",
                "class 1 where 0",
            ),
            (
                "class,name,category\n0,a,object\n0,b,object\n",
                "line 3",
                "class 0 where 1",
            ),
            ("class,name,category\n0,a,\n", "line 2", "category is empty"),
            (
                "class,name,category\n0,a,object\n1,a,object\n",
                "line 3",
                "named twice",
            ),
            (
                "class,name,category\n0,,object\n1,,object\n",
                "line 3",
                "two none classes",
            ),
            (
                "class,name,category\n0,,object\n",
                "line 1",
                "nothing to label",
            ),
            ("class,name,category\n", "line 1", "no classes"),
            (
                "class,name,category\nx,a,object\n",
                "line 2",
                "not a channel number",
            ),
        ] {
            let err = labels(text).unwrap_err().to_string();
            assert!(
                err.contains("labels.csv") && err.contains(line) && err.contains(says),
                "{text:?}: {err}"
            );
        }
    }
}
