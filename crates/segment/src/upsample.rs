//! The two published ways of bringing an `h × w` map to the `sh × sw` label resolution.

use serde::{Deserialize, Serialize};

/// How a unit's map is upsampled before thresholding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Upsample {
    /// NetDissect-Lite: bilinear with half-pixel centres and edge clamping, the geometry of
    /// `interpolate(mode="bilinear", align_corners=False)`: output pixel `y` reads input
    /// coordinate `(y + 0.5) / s − 0.5`, clamped to `[0, h − 1]`, with `s = sh / h`.
    #[default]
    Bilinear,
    /// The original NetDissect: piecewise bilinear through the centres of the units'
    /// receptive fields, constant beyond the outermost centres. With the field offset
    /// unknown, input cell `j` is centred at `s/2 + j·s` (in label pixels) and output pixel
    /// `y` is sampled at `y`.
    ReceptiveField,
}

impl std::str::FromStr for Upsample {
    type Err = String;
    fn from_str(s: &str) -> Result<Upsample, String> {
        match s {
            "bilinear" => Ok(Upsample::Bilinear),
            "receptive-field" => Ok(Upsample::ReceptiveField),
            other => Err(format!(
                "unknown upsampling `{other}` (use bilinear or receptive-field)"
            )),
        }
    }
}

/// For one output coordinate: the two input cells to blend and the weight of the second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tap {
    pub lo: usize,
    pub hi: usize,
    pub weight: f64,
}

/// The taps of every output coordinate along one axis (`input` cells to `output` pixels).
pub fn taps(mode: Upsample, input: usize, output: usize) -> Vec<Tap> {
    let last = input - 1;
    let s = output as f64 / input as f64;
    (0..output)
        .map(|y| {
            let position = match mode {
                Upsample::Bilinear => ((y as f64 + 0.5) / s - 0.5).max(0.0),
                Upsample::ReceptiveField => (y as f64 - s / 2.0) / s,
            };
            if position <= 0.0 {
                return Tap {
                    lo: 0,
                    hi: 0,
                    weight: 0.0,
                };
            }
            let lo = (position.floor() as usize).min(last);
            if lo >= last {
                return Tap {
                    lo: last,
                    hi: last,
                    weight: 0.0,
                };
            }
            Tap {
                lo,
                hi: lo + 1,
                weight: position - lo as f64,
            }
        })
        .collect()
}

/// Upsamples a row-major `h × w` map with precomputed taps and calls `visit` with the row
/// index and the upsampled values of every output row that can exceed `threshold`; rows
/// whose two input rows are both at or below it are skipped (a blend never exceeds both
/// of its inputs).
pub fn upsample_rows(
    map: &[f32],
    width: usize,
    rows: &[Tap],
    columns: &[Tap],
    threshold: f64,
    mut visit: impl FnMut(usize, &[f64]),
) {
    let hot: Vec<bool> = map
        .chunks_exact(width)
        .map(|r| r.iter().any(|&v| f64::from(v) > threshold))
        .collect();
    let horizontal = |row: usize, out: &mut Vec<f64>| {
        out.clear();
        let r = &map[row * width..(row + 1) * width];
        out.extend(columns.iter().map(|t| {
            let (a, b) = (f64::from(r[t.lo]), f64::from(r[t.hi]));
            (1.0 - t.weight) * a + t.weight * b
        }));
    };
    let (mut lo, mut hi, mut line) = (Vec::new(), Vec::new(), Vec::with_capacity(columns.len()));
    let mut cached = (usize::MAX, usize::MAX);
    for (y, t) in rows.iter().enumerate() {
        if !hot[t.lo] && !hot[t.hi] {
            continue;
        }
        if cached != (t.lo, t.hi) {
            horizontal(t.lo, &mut lo);
            horizontal(t.hi, &mut hi);
            cached = (t.lo, t.hi);
        }
        line.clear();
        line.extend(
            lo.iter()
                .zip(&hi)
                .map(|(&a, &b)| (1.0 - t.weight) * a + t.weight * b),
        );
        visit(y, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsample(mode: Upsample, map: &[f32], h: usize, w: usize, sh: usize, sw: usize) -> Vec<f64> {
        let (rows, cols) = (taps(mode, h, sh), taps(mode, w, sw));
        let mut out = vec![f64::NAN; sh * sw];
        upsample_rows(map, w, &rows, &cols, f64::NEG_INFINITY, |y, line| {
            out[y * sw..(y + 1) * sw].copy_from_slice(line)
        });
        out
    }

    #[test]
    fn bilinear_half_pixel_geometry() {
        // 2 cells to 4 pixels (s = 2): sources −0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped).
        let out = upsample(Upsample::Bilinear, &[0.0, 4.0], 1, 2, 1, 4);
        assert_eq!(out, [0.0, 1.0, 3.0, 4.0]);
        // 2×2 to 4×4: the centre pixel (1, 1) blends all four with weights 0.75·0.75, ...
        let out = upsample(Upsample::Bilinear, &[0.0, 4.0, 8.0, 12.0], 2, 2, 4, 4);
        assert_eq!(
            out[5],
            0.75 * (0.75 * 0.0 + 0.25 * 4.0) + 0.25 * (0.75 * 8.0 + 0.25 * 12.0)
        );
        assert_eq!(out[0], 0.0);
        assert_eq!(out[15], 12.0);
    }

    #[test]
    fn receptive_field_centres() {
        // 2 cells to 8 pixels (s = 4): centres at 2 and 6; pixels 0..2 hold cell 0,
        // pixels 6..8 hold cell 1, and 3, 4, 5 blend at 1/4, 2/4, 3/4.
        let out = upsample(Upsample::ReceptiveField, &[0.0, 8.0], 1, 2, 1, 8);
        assert_eq!(out, [0.0, 0.0, 0.0, 2.0, 4.0, 6.0, 8.0, 8.0]);
    }

    #[test]
    fn one_cell_maps_are_constant() {
        for mode in [Upsample::Bilinear, Upsample::ReceptiveField] {
            assert_eq!(upsample(mode, &[3.0], 1, 1, 2, 2), [3.0; 4]);
        }
    }

    #[test]
    fn cold_rows_are_skipped() {
        let (rows, cols) = (
            taps(Upsample::Bilinear, 4, 8),
            taps(Upsample::Bilinear, 1, 1),
        );
        let mut visited = Vec::new();
        upsample_rows(&[0.0, 0.0, 0.0, 5.0], 1, &rows, &cols, 1.0, |y, _| {
            visited.push(y)
        });
        // Only output rows that read input row 3: y ≥ 5.
        assert_eq!(visited, [5, 6, 7]);
    }
}
