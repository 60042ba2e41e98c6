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

/// The mask of one map: calls `run(y, x0, x1)` for every maximal run of output pixels
/// `x0..x1` of row `y` whose upsampled value exceeds `threshold`, in row order.
///
/// It computes the same values as [`upsample_rows`], with the same operations in the same
/// order (so the masks are identical), but only where they can exceed the threshold: a
/// blend never exceeds all of its inputs, so an output row is skipped when neither of its
/// input rows has a cell above the threshold, and an output pixel when none of its four
/// cells does. Most of a map is below its unit's top-0.5 % threshold.
pub fn hot_runs(
    map: &[f32],
    width: usize,
    rows: &[Tap],
    columns: &[Tap],
    threshold: f64,
    mut run: impl FnMut(usize, usize, usize),
) {
    let hot: Vec<bool> = map.iter().map(|&v| f64::from(v) > threshold).collect();
    let hot_row: Vec<bool> = hot.chunks_exact(width).map(|r| r.contains(&true)).collect();
    // The output columns that read each input column.
    let mut spans = vec![(usize::MAX, 0); width];
    for (x, tx) in columns.iter().enumerate() {
        for c in [tx.lo, tx.hi] {
            spans[c] = (spans[c].0.min(x), spans[c].1.max(x + 1));
        }
    }
    // For the pair of input rows of the current output row: the output columns that can
    // exceed the threshold (disjoint ranges, in order) and, there, the horizontal blends
    // of both input rows, which every output row reading the same pair shares.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let (mut h_lo, mut h_hi) = (vec![0f64; columns.len()], vec![0f64; columns.len()]);
    let mut above: Vec<bool> = Vec::with_capacity(columns.len());
    let mut cached = (usize::MAX, usize::MAX);
    for (y, ty) in rows.iter().enumerate() {
        if !hot_row[ty.lo] && !hot_row[ty.hi] {
            continue;
        }
        if cached != (ty.lo, ty.hi) {
            cached = (ty.lo, ty.hi);
            let (a, b) = (
                &hot[ty.lo * width..][..width],
                &hot[ty.hi * width..][..width],
            );
            ranges.clear();
            for c in (0..width).filter(|&c| a[c] || b[c]) {
                let (start, end) = spans[c];
                if start >= end {
                    continue;
                }
                match ranges.last_mut() {
                    Some(last) if start <= last.1 => last.1 = last.1.max(end),
                    _ => ranges.push((start, end)),
                }
            }
            let (lo, hi) = (
                &map[ty.lo * width..][..width],
                &map[ty.hi * width..][..width],
            );
            for &(start, end) in &ranges {
                for x in start..end {
                    let tx = &columns[x];
                    h_lo[x] =
                        (1.0 - tx.weight) * f64::from(lo[tx.lo]) + tx.weight * f64::from(lo[tx.hi]);
                    h_hi[x] =
                        (1.0 - tx.weight) * f64::from(hi[tx.lo]) + tx.weight * f64::from(hi[tx.hi]);
                }
            }
        }
        let (w0, w1) = (1.0 - ty.weight, ty.weight);
        for &(start, end) in &ranges {
            // The comparisons first, in a loop the compiler vectorises, then the runs.
            above.clear();
            above.extend(
                h_lo[start..end]
                    .iter()
                    .zip(&h_hi[start..end])
                    .map(|(&a, &b)| w0 * a + w1 * b > threshold),
            );
            let mut x = 0;
            while let Some(first) = above[x..].iter().position(|&a| a) {
                let x0 = x + first;
                let x1 = above[x0..]
                    .iter()
                    .position(|&a| !a)
                    .map_or(above.len(), |n| x0 + n);
                run(y, start + x0, start + x1);
                x = x1;
            }
        }
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

    /// The fast path gives exactly the pixels of the full upsampling above the threshold,
    /// for both modes and for scales above, below and at one.
    #[test]
    fn hot_runs_match_the_full_upsampling() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 1.0
        };
        for mode in [Upsample::Bilinear, Upsample::ReceptiveField] {
            for (h, w, sh, sw) in [(7, 7, 112, 112), (5, 3, 16, 9), (9, 12, 8, 5), (4, 4, 4, 4)] {
                let map: Vec<f32> = (0..h * w).map(|_| next()).collect();
                for threshold in [-2.0, 0.5, 1.5, 2.9, 5.0] {
                    let full = upsample(mode, &map, h, w, sh, sw);
                    let (rows, cols) = (taps(mode, h, sh), taps(mode, w, sw));
                    let mut fast = vec![false; sh * sw];
                    hot_runs(&map, w, &rows, &cols, threshold, |y, x0, x1| {
                        fast[y * sw + x0..y * sw + x1]
                            .iter_mut()
                            .for_each(|p| *p = true)
                    });
                    let expected: Vec<bool> = full.iter().map(|&v| v > threshold).collect();
                    assert_eq!(
                        fast, expected,
                        "{mode:?} {h}×{w} → {sh}×{sw} at {threshold}"
                    );
                }
            }
        }
    }
}
