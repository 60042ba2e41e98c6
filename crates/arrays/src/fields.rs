//! The geometry of a layer's receptive fields, which the original NetDissect's upsampling
//! needs: where the field of each cell of a layer's map sits in the model's input.
//!
//! Per axis (`[y, x]`) a [`Field`] is the original's field map `(offset, size, stride)`:
//! cell `j`'s field covers input pixels `offset + stride·j .. offset + stride·j + size`.
//! It is composed along the path from the input (a convolution or pooling with kernel `k`,
//! stride `s`, padding `p` and dilation `d` is `(−p, d·(k − 1) + 1, s)`; stacking a lower
//! `(o₁, z₁, s₁)` and a higher `(o₂, z₂, s₂)` gives `(o₂·s₁ + o₁, (z₂ − 1)·s₁ + z₁, s₁·s₂)`).
//! `python/export_torchvision.py` computes it from the model's graph and stores it in the
//! TorchScript archive as the extra file [`MODEL_EXTRA_FILE`]; a pipeline file can give
//! or override it (`[[model]] fields`).
//!
//! ```
//! use nd_arrays::fields::Field;
//! // ResNet-18 layer4 (offset −217, field 435 pixels, stride 32), labels at half size.
//! let field = Field { offset: [-217, -217], size: [435, 435], stride: [32, 32] };
//! assert_eq!(field.centre(0), 0);
//! assert_eq!(field.label_centres(0, 224, 112), (0.0, 16.0));
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The extra file of a TorchScript archive that holds its layers' fields
/// (`<root>/extra/netdissect-fields.json` in the zip).
pub const MODEL_EXTRA_FILE: &str = "netdissect-fields.json";

/// The `format` of that file.
pub const FORMAT: &str = "netdissect-fields/1";

/// One layer's field map, per axis `[y, x]`, in input pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// The first input pixel of cell 0's field (negative where the field reaches into the
    /// padding).
    pub offset: [i64; 2],
    /// The field's extent.
    pub size: [i64; 2],
    /// The distance between the fields of neighbouring cells.
    pub stride: [i64; 2],
}

impl Field {
    /// Fails unless sizes and strides are positive.
    pub fn validate(&self) -> Result<(), String> {
        for axis in 0..2 {
            if self.size[axis] < 1 {
                return Err(format!("size {} is not positive", self.size[axis]));
            }
            if self.stride[axis] < 1 {
                return Err(format!("stride {} is not positive", self.stride[axis]));
            }
        }
        Ok(())
    }

    /// The field in words, one value per quantity where both axes agree:
    /// `offset -217, size 435, stride 32: centres at 0 + 32·j px`.
    pub fn describe(&self) -> String {
        let pair = |v: [i64; 2]| {
            if v[0] == v[1] {
                v[0].to_string()
            } else {
                format!("{}×{}", v[0], v[1])
            }
        };
        let centre = [self.centre(0), self.centre(1)];
        format!(
            "offset {}, size {}, stride {}: centres at {} + {}·j px",
            pair(self.offset),
            pair(self.size),
            pair(self.stride),
            pair(centre),
            pair(self.stride)
        )
    }

    /// Cell 0's centre on one axis, in input pixels, as the original places it:
    /// `offset + ⌊size / 2⌋` (for the odd sizes of most networks, the exact centre).
    pub fn centre(&self, axis: usize) -> i64 {
        self.offset[axis] + self.size[axis].div_euclid(2)
    }

    /// The centres of the cells on one axis in the pixels of a label map of `label` pixels
    /// for an input of `input` pixels: `(first, step)`, cell `j` at `first + step·j`.
    ///
    /// The original divides by the integer reduction `r = round(input / label)` with
    /// floor division (`(offset + size // 2) // r`, `stride // r`): so does this, to give
    /// its masks. A stride under `r`, where the original would divide by zero, is scaled
    /// exactly instead (`stride · label / input`, the centre likewise).
    pub fn label_centres(&self, axis: usize, input: usize, label: usize) -> (f64, f64) {
        let ratio = input as f64 / label.max(1) as f64;
        // Python's round: half to even.
        let r = (ratio.round_ties_even() as i64).max(1);
        let step = self.stride[axis].div_euclid(r);
        if step >= 1 {
            (self.centre(axis).div_euclid(r) as f64, step as f64)
        } else {
            (
                self.centre(axis) as f64 / ratio,
                self.stride[axis] as f64 / ratio,
            )
        }
    }
}

/// What a layer's upsampling centres come from, where the user chooses: a given field, or
/// the assumption that centres sit mid-cell (`s/2 + j·s` label pixels with `s` the label
/// size over the map size), which is not where real networks put them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FieldChoice {
    Field(Field),
    #[serde(with = "assume_centred")]
    AssumeCentred,
}

/// The keyword of [`FieldChoice::AssumeCentred`] in pipeline files, options and keys.
pub const ASSUME_CENTRED: &str = "assume-centred";

mod assume_centred {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::ASSUME_CENTRED)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        let text = String::deserialize(d)?;
        if text == super::ASSUME_CENTRED {
            Ok(())
        } else {
            Err(serde::de::Error::custom(format!(
                "unknown field choice `{text}` (use {} or a table of offset, size and stride)",
                super::ASSUME_CENTRED
            )))
        }
    }
}

/// What to do when `layer` has no field and receptive-field upsampling needs one: the
/// three ways to give it, as the messages of `netdissect run` and `nd-segment` say them.
pub fn how_to_give(layer: &str) -> String {
    format!(
        "export the model with python/export_torchvision.py (which stores them), give them in the model's \
         pipeline section (fields = {{ {layer} = {{ offset = [y, x], size = [y, x], stride = [y, x] }} }}, the original's \
         field map in input pixels), or set fields = \"{ASSUME_CENTRED}\" to place the centres mid-cell (not the original's geometry)"
    )
}

/// Where the segment stage takes each layer's field from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fields {
    /// The model's own geometry (recorded by the extract stage from the model file), with
    /// per-layer choices given by the user taking precedence.
    #[default]
    Model,
    /// The model's geometry, with these layers' fields chosen by the user.
    Overrides(BTreeMap<String, FieldChoice>),
    /// Every layer assumed centred (today's shortcut; a warning says it is not the
    /// original's geometry).
    AssumeCentred,
}

impl Fields {
    /// The user's choice for a layer, if any.
    pub fn choice(&self, layer: &str) -> Option<FieldChoice> {
        match self {
            Fields::Model => None,
            Fields::Overrides(map) => map.get(layer).copied(),
            Fields::AssumeCentred => Some(FieldChoice::AssumeCentred),
        }
    }

    /// Every field given fails unless valid; the message names the layer.
    pub fn validate(&self) -> Result<(), String> {
        if let Fields::Overrides(map) = self {
            for (layer, choice) in map {
                if let FieldChoice::Field(field) = choice {
                    field
                        .validate()
                        .map_err(|e| format!("field of layer `{layer}`: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// The contents of [`MODEL_EXTRA_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFields {
    pub format: String,
    /// The input size the geometry was computed at (`[height, width]`); informative, the
    /// fields of convolutions and poolings do not depend on it.
    pub input_size: [u64; 2],
    pub layers: BTreeMap<String, Field>,
}

impl ModelFields {
    /// Parses the extra file's text; the message says what is wrong.
    pub fn parse(text: &str) -> Result<ModelFields, String> {
        let fields: ModelFields =
            serde_json::from_str(text).map_err(|e| format!("not a field map: {e}"))?;
        if fields.format != FORMAT {
            return Err(format!(
                "field map format `{}` is not `{FORMAT}` (export the model again with this version's python/export_torchvision.py)",
                fields.format
            ));
        }
        for (layer, field) in &fields.layers {
            field
                .validate()
                .map_err(|e| format!("field of layer `{layer}`: {e}"))?;
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(offset: i64, size: i64, stride: i64) -> Field {
        Field {
            offset: [offset; 2],
            size: [size; 2],
            stride: [stride; 2],
        }
    }

    #[test]
    fn centres_follow_the_originals_integer_arithmetic() {
        // torchvision AlexNet conv5 at 227 px, labels at 113: (15 // 2, 16 // 2).
        assert_eq!(field(-66, 163, 16).label_centres(0, 227, 113), (7.0, 8.0));
        // The demo network's conv5: centre 0, stride 16, labels at half size.
        assert_eq!(field(-79, 159, 16).label_centres(1, 224, 112), (0.0, 8.0));
        // Floor division of a negative centre, as Python's `//`.
        assert_eq!(field(-5, 3, 4).label_centres(0, 224, 112), (-2.0, 2.0));
        // Same size: no reduction.
        assert_eq!(field(-1, 3, 1).label_centres(0, 64, 64), (0.0, 1.0));
        // An even field: the original's centre is offset + size // 2.
        assert_eq!(field(0, 4, 2).centre(0), 2);
        // Python's round halves to even: 5 / 2 reduces by 2, 7 / 2 by 4.
        assert_eq!(field(0, 9, 8).label_centres(0, 5, 2), (2.0, 4.0));
        assert_eq!(field(0, 9, 8).label_centres(0, 7, 2), (1.0, 2.0));
    }

    #[test]
    fn descriptions_give_one_value_where_the_axes_agree() {
        assert_eq!(
            field(-217, 435, 32).describe(),
            "offset -217, size 435, stride 32: centres at 0 + 32·j px"
        );
        let skewed = Field {
            offset: [-3, -5],
            size: [7, 5],
            stride: [4, 4],
        };
        assert_eq!(
            skewed.describe(),
            "offset -3×-5, size 7×5, stride 4: centres at 0×-3 + 4·j px"
        );
    }

    #[test]
    fn a_stride_under_the_reduction_is_scaled_exactly() {
        // Stride 1 at half size: the original's step would be 0.
        assert_eq!(field(-1, 3, 1).label_centres(0, 224, 112), (0.0, 0.5));
        assert_eq!(field(0, 3, 1).label_centres(0, 224, 112), (0.5, 0.5));
    }

    #[test]
    fn the_model_file_parses_and_bad_ones_are_named() {
        let text = r#"{"format":"netdissect-fields/1","input_size":[224,224],"layers":{"conv5":{"offset":[-79,-79],"size":[159,159],"stride":[16,16]}}}"#;
        let parsed = ModelFields::parse(text).unwrap();
        assert_eq!(parsed.layers["conv5"], field(-79, 159, 16));
        let other = text.replace("netdissect-fields/1", "netdissect-fields/9");
        assert!(
            ModelFields::parse(&other)
                .unwrap_err()
                .contains("`netdissect-fields/9`")
        );
        let zero = text.replace("[16,16]", "[16,0]");
        assert_eq!(
            ModelFields::parse(&zero).unwrap_err(),
            "field of layer `conv5`: stride 0 is not positive"
        );
    }

    #[test]
    fn a_choice_is_a_field_or_the_assumption() {
        let choices: BTreeMap<String, FieldChoice> = serde_json::from_str(
            r#"{"a":"assume-centred","b":{"offset":[0,0],"size":[1,1],"stride":[2,2]}}"#,
        )
        .unwrap();
        assert_eq!(choices["a"], FieldChoice::AssumeCentred);
        assert_eq!(choices["b"], FieldChoice::Field(field(0, 1, 2)));
        assert_eq!(
            serde_json::to_string(&choices).unwrap(),
            r#"{"a":"assume-centred","b":{"offset":[0,0],"size":[1,1],"stride":[2,2]}}"#
        );
        assert!(serde_json::from_str::<FieldChoice>(r#""centred""#).is_err());
    }
}
