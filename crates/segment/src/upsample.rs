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
    /// receptive fields, constant beyond the outermost centres. The centres come from the
    /// layer's field ([`LayerPlacement::Field`]); where the user chooses to assume them
    /// mid-cell, input cell `j` is centred at `s/2 + j·s` (in label pixels) and output
    /// pixel `y` is sampled at `y`.
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

/// Where one axis of a map's cells sits over the label pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Placement {
    /// NetDissect-Lite's half-pixel bilinear geometry (see [`Upsample::Bilinear`]).
    Bilinear,
    /// Cell `j` centred at label pixel `first + step·j`; piecewise linear between the
    /// centres, constant beyond the outermost ones.
    Centres { first: f64, step: f64 },
}

impl Placement {
    /// The placement of `input` cells over `output` pixels when nothing is known of the
    /// fields: bilinear, or (receptive-field) centres assumed mid-cell at `s/2 + j·s`
    /// with `s = output / input`.
    pub fn assumed(mode: Upsample, input: usize, output: usize) -> Placement {
        match mode {
            Upsample::Bilinear => Placement::Bilinear,
            Upsample::ReceptiveField => {
                let s = output as f64 / input as f64;
                Placement::Centres {
                    first: s / 2.0,
                    step: s,
                }
            }
        }
    }
}

/// How a layer's maps are placed over the label maps, both axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerPlacement {
    /// Lite's bilinear, or the receptive-field centres assumed mid-cell.
    Assumed(Upsample),
    /// The receptive-field centres of the layer's true field for a model input of
    /// `input` pixels (`[height, width]`), scaled to the label maps as the original does
    /// ([`nd_arrays::fields::Field::label_centres`]).
    Field {
        field: nd_arrays::fields::Field,
        input: [usize; 2],
    },
}

impl LayerPlacement {
    /// The placement of one axis (0: rows, 1: columns) of `cells` cells over `label`
    /// pixels.
    pub fn axis(&self, axis: usize, cells: usize, label: usize) -> Placement {
        match *self {
            LayerPlacement::Assumed(mode) => Placement::assumed(mode, cells, label),
            LayerPlacement::Field { field, input } => {
                let (first, step) = field.label_centres(axis, input[axis], label);
                Placement::Centres { first, step }
            }
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
pub fn taps(placement: Placement, input: usize, output: usize) -> Vec<Tap> {
    let last = input - 1;
    let s = output as f64 / input as f64;
    (0..output)
        .map(|y| {
            let position = match placement {
                Placement::Bilinear => ((y as f64 + 0.5) / s - 0.5).max(0.0),
                Placement::Centres { first, step } => (y as f64 - first) / step,
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

/// The taps of one map size brought to one label size, with, for each input column, the
/// output columns that read it: everything [`hot_runs`] needs that does not depend on the
/// values, computed once per size.
#[derive(Debug, Clone)]
pub struct Geometry {
    rows: Vec<Tap>,
    /// Runs of output rows reading the same two input rows: `(y0, y1, lo, hi)`.
    bands: Vec<(usize, usize, usize, usize)>,
    columns: Vec<Tap>,
    /// `spans[c]`: the output columns `start..end` whose taps read input column `c`.
    spans: Vec<(usize, usize)>,
    /// Runs of output columns reading the same two input columns: `(x0, x1, lo, hi)`.
    segments: Vec<(usize, usize, usize, usize)>,
    /// `segment_of[x]`: the segment holding output column `x`.
    segment_of: Vec<usize>,
    /// The weights of every output column's two input columns: `1 − weight` and `weight`.
    w0: Vec<f64>,
    w1: Vec<f64>,
    width: usize,
}

impl Geometry {
    /// An `height × width` map upsampled to `label_height × label_width`.
    pub fn new(
        placement: &LayerPlacement,
        height: usize,
        width: usize,
        label_height: usize,
        label_width: usize,
    ) -> Geometry {
        let rows = taps(
            placement.axis(0, height, label_height),
            height,
            label_height,
        );
        let columns = taps(placement.axis(1, width, label_width), width, label_width);
        let mut spans = vec![(usize::MAX, 0); width];
        for (x, tx) in columns.iter().enumerate() {
            for c in [tx.lo, tx.hi] {
                spans[c] = (spans[c].0.min(x), spans[c].1.max(x + 1));
            }
        }
        let mut segments: Vec<(usize, usize, usize, usize)> = Vec::new();
        let mut segment_of = Vec::with_capacity(columns.len());
        for (x, tx) in columns.iter().enumerate() {
            match segments.last_mut() {
                Some(last) if (last.2, last.3) == (tx.lo, tx.hi) => last.1 = x + 1,
                _ => segments.push((x, x + 1, tx.lo, tx.hi)),
            }
            segment_of.push(segments.len() - 1);
        }
        let mut bands: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (y, ty) in rows.iter().enumerate() {
            match bands.last_mut() {
                Some(last) if (last.2, last.3) == (ty.lo, ty.hi) => last.1 = y + 1,
                _ => bands.push((y, y + 1, ty.lo, ty.hi)),
            }
        }
        Geometry {
            bands,
            w0: columns.iter().map(|t| 1.0 - t.weight).collect(),
            w1: columns.iter().map(|t| t.weight).collect(),
            rows,
            columns,
            spans,
            segments,
            segment_of,
            width,
        }
    }

    /// The output width (the label maps' width).
    pub fn label_width(&self) -> usize {
        self.columns.len()
    }
}

/// Buffers [`hot_runs`] reuses from one map to the next (one per thread).
#[derive(Debug, Default)]
pub struct Scratch {
    /// The cells above the threshold, a bit each, in the map's order.
    flat: Vec<u64>,
    /// The same bits row by row: `words` words a row.
    hot: Vec<u64>,
    hot_row: Vec<bool>,
    ranges: Vec<(usize, usize)>,
    /// Per range: the largest horizontal blends of its two input rows.
    peaks: Vec<(f64, f64)>,
    h_lo: Vec<f64>,
    h_hi: Vec<f64>,
}

/// The mask of one map: calls `run(y, x0, x1)` for every maximal run of output pixels
/// `x0..x1` of row `y` whose upsampled value exceeds `threshold`, in row order.
///
/// It computes the same values as [`upsample_rows`], with the same operations in the same
/// order (so the masks are identical), but only where they can exceed the threshold: a
/// blend never exceeds all of its inputs, so an output row is skipped when neither of its
/// input rows has a cell above the threshold, and an output pixel when none of its four
/// cells does. Most of a map is below its unit's top-0.5 % threshold.
///
/// The cells above the threshold are found as bits, eight compared an instruction, and the
/// output rows are taken band by band (the rows between one pair of input rows), so a cold
/// band costs one test and a hot one visits only the columns of its hot cells; within a hot
/// band, a row whose blend of the band's largest values is not above the threshold costs
/// one test too.
pub fn hot_runs(
    map: &[f32],
    geometry: &Geometry,
    threshold: f64,
    scratch: &mut Scratch,
    run: impl FnMut(usize, usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2, as just checked.
            unsafe { hot_runs_avx2(map, geometry, threshold, scratch, run) };
            return;
        }
        hot_runs_sse2(map, geometry, threshold, scratch, run);
    }
    #[cfg(not(target_arch = "x86_64"))]
    hot_runs_scalar(map, geometry, threshold, scratch, run);
}

/// [`hot_runs`] with the comparisons in SSE2, what an x86-64 processor without AVX2 runs.
/// A function of its own so that the tests run it on any x86-64 processor.
#[cfg(target_arch = "x86_64")]
fn hot_runs_sse2(
    map: &[f32],
    geometry: &Geometry,
    threshold: f64,
    scratch: &mut Scratch,
    run: impl FnMut(usize, usize, usize),
) {
    // SAFETY (both): SSE2 is part of the x86-64 baseline: every processor it runs on has it.
    let above = |lo: &[f64], hi: &[f64], w, t| unsafe { above_bits_sse2(lo, hi, w, t) };
    let cells = |row: &[f32], t| unsafe { cell_bits_sse2(row, t) };
    hot_runs_with(map, geometry, threshold, scratch, run, above, cells);
}

/// [`hot_runs`] with scalar comparisons: what other architectures run.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
fn hot_runs_scalar(
    map: &[f32],
    geometry: &Geometry,
    threshold: f64,
    scratch: &mut Scratch,
    run: impl FnMut(usize, usize, usize),
) {
    hot_runs_with(
        map, geometry, threshold, scratch, run, above_bits, cell_bits,
    );
}

/// [`hot_runs`] compiled for AVX2: the blends the compiler vectorises take four values an
/// instruction instead of two, and so do the comparisons. The same IEEE multiplies and
/// adds in the same order (no fused multiply-add), so the same masks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hot_runs_avx2(
    map: &[f32],
    geometry: &Geometry,
    threshold: f64,
    scratch: &mut Scratch,
    run: impl FnMut(usize, usize, usize),
) {
    // The closure has this function's AVX2 too.
    hot_runs_with(
        map,
        geometry,
        threshold,
        scratch,
        run,
        |lo, hi, w, t| above_bits_avx2(lo, hi, w, t),
        |row, t| cell_bits_avx2(row, t),
    );
}

/// The largest `f32` at or below `threshold`: for every `f32` value `v`,
/// `v > below_f32(t)` exactly when `f64::from(v) > t`, so a map's cells are compared with
/// the threshold in their own precision.
fn below_f32(threshold: f64) -> f32 {
    let t = threshold as f32;
    if f64::from(t) > threshold {
        t.next_down()
    } else {
        t
    }
}

/// The body of [`hot_runs`], with the comparisons of 64 values given: of blended pixels
/// (`above_bits`) and of cells (`cell_bits`).
#[inline(always)]
fn hot_runs_with(
    map: &[f32],
    geometry: &Geometry,
    threshold: f64,
    scratch: &mut Scratch,
    mut run: impl FnMut(usize, usize, usize),
    above_bits: impl Fn(&[f64], &[f64], (f64, f64), f64) -> u64,
    cell_bits: impl Fn(&[f32], f32) -> u64,
) {
    let width = geometry.width;
    let (columns, spans) = (&geometry.columns, &geometry.spans);
    let Scratch {
        flat,
        hot,
        hot_row,
        ranges,
        peaks,
        h_lo,
        h_hi,
    } = scratch;
    let words = width.div_ceil(64);
    let cell_threshold = below_f32(threshold);
    // The map's cells compared 64 at a time whatever its width (a row of a deep layer is
    // a handful of cells), then each row's bits cut out of those words.
    flat.clear();
    flat.extend(map.chunks(64).map(|cells| cell_bits(cells, cell_threshold)));
    hot.clear();
    hot_row.clear();
    for row in 0..map.len() / width {
        let first = hot.len();
        hot.extend((0..words).map(|k| {
            let start = row * width + k * 64;
            bits_at(flat, start, (width - k * 64).min(64))
        }));
        hot_row.push(hot[first..].iter().any(|&w| w != 0));
    }
    h_lo.resize(columns.len(), 0.0);
    h_hi.resize(columns.len(), 0.0);
    // Band by band (the output rows reading one pair of input rows): the output columns
    // that can exceed the threshold (disjoint ranges, in order) and, there, the horizontal
    // blends of both input rows, which every output row of the band shares.
    for &(y0, y1, row_lo, row_hi) in &geometry.bands {
        if !hot_row[row_lo] && !hot_row[row_hi] {
            continue;
        }
        let (a, b) = (
            &hot[row_lo * words..][..words],
            &hot[row_hi * words..][..words],
        );
        ranges.clear();
        for (k, (&a, &b)) in a.iter().zip(b).enumerate() {
            let mut columns = a | b;
            while columns != 0 {
                let c = k * 64 + columns.trailing_zeros() as usize;
                columns &= columns - 1;
                let (start, end) = spans[c];
                if start >= end {
                    continue;
                }
                match ranges.last_mut() {
                    Some(last) if start <= last.1 => last.1 = last.1.max(end),
                    _ => ranges.push((start, end)),
                }
            }
        }
        let (lo, hi) = (
            &map[row_lo * width..][..width],
            &map[row_hi * width..][..width],
        );
        // Segment by segment, so that the two input values of a segment are read
        // once and the blend over its columns is a loop the compiler vectorises.
        let (w0, w1) = (&geometry.w0, &geometry.w1);
        for &(start, end) in ranges.iter() {
            for &(x0, x1, c0, c1) in &geometry.segments[geometry.segment_of[start]..] {
                if x0 >= end {
                    break;
                }
                let xs = x0.max(start)..x1.min(end);
                let (a, b) = (f64::from(lo[c0]), f64::from(lo[c1]));
                for ((h, &u), &v) in h_lo[xs.clone()]
                    .iter_mut()
                    .zip(&w0[xs.clone()])
                    .zip(&w1[xs.clone()])
                {
                    *h = u * a + v * b;
                }
                let (a, b) = (f64::from(hi[c0]), f64::from(hi[c1]));
                for ((h, &u), &v) in h_hi[xs.clone()]
                    .iter_mut()
                    .zip(&w0[xs.clone()])
                    .zip(&w1[xs])
                {
                    *h = u * a + v * b;
                }
            }
        }
        // A row's pixels of a range are at most the blend of the range's largest values
        // (multiplying by a weight in [0, 1] and adding round monotonically), so a row
        // whose blend of those is not above the threshold has nothing there. Most rows of
        // a hot band are such rows: its hot cells are few.
        peaks.clear();
        peaks.extend(
            ranges
                .iter()
                .map(|&(start, end)| (largest(&h_lo[start..end]), largest(&h_hi[start..end]))),
        );
        for (y, ty) in geometry.rows[y0..y1].iter().enumerate() {
            let (y, w0, w1) = (y0 + y, 1.0 - ty.weight, ty.weight);
            for (&(start, end), &(peak_lo, peak_hi)) in ranges.iter().zip(peaks.iter()) {
                // Not `<=` is also true of a NaN bound (0 · ∞), which is then not trusted.
                if w0 * peak_lo + w1 * peak_hi <= threshold {
                    continue;
                }
                above_runs(
                    &h_lo[start..end],
                    &h_hi[start..end],
                    (w0, w1),
                    threshold,
                    &above_bits,
                    |x0, x1| run(y, start + x0, start + x1),
                );
            }
        }
    }
}

/// Bits `start .. start + len` of the bit string `words` (`len` at most 64), as the low
/// bits of a word; bits past the string's end read as zero.
#[inline(always)]
fn bits_at(words: &[u64], start: usize, len: usize) -> u64 {
    let (k, shift) = (start / 64, start % 64);
    let mut bits = words[k] >> shift;
    if shift != 0 && k + 1 < words.len() {
        bits |= words[k + 1] << (64 - shift);
    }
    if len < 64 {
        bits &= (1 << len) - 1;
    }
    bits
}

/// The largest of `values` that is not NaN (−∞ if there is none): a NaN blend is never
/// above a threshold, so it bounds nothing.
#[inline(always)]
fn largest(values: &[f64]) -> f64 {
    values
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Bit `i` is set when `w0 · lo[i] + w1 · hi[i] > threshold` (at most 64 pixels).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn above_bits_sse2(lo: &[f64], hi: &[f64], (w0, w1): (f64, f64), threshold: f64) -> u64 {
    // SSE2, which every x86-64 processor has: two pixels per multiply, add and compare
    // (the same IEEE operations as the scalar expression, so the same results), and the
    // two comparison bits moved out at once.
    use std::arch::x86_64::{
        _mm_add_pd, _mm_cmpgt_pd, _mm_movemask_pd, _mm_mul_pd, _mm_set_pd, _mm_set1_pd,
    };
    debug_assert!(lo.len() <= 64 && lo.len() == hi.len());
    let (v0, v1, t) = (_mm_set1_pd(w0), _mm_set1_pd(w1), _mm_set1_pd(threshold));
    let mut bits = 0u64;
    let pairs = lo.len() / 2;
    for p in 0..pairs {
        let i = 2 * p;
        let a = _mm_set_pd(lo[i + 1], lo[i]);
        let b = _mm_set_pd(hi[i + 1], hi[i]);
        let above = _mm_cmpgt_pd(_mm_add_pd(_mm_mul_pd(v0, a), _mm_mul_pd(v1, b)), t);
        bits |= (_mm_movemask_pd(above) as u64) << i;
    }
    if lo.len() % 2 == 1 {
        let i = lo.len() - 1;
        bits |= u64::from(w0 * lo[i] + w1 * hi[i] > threshold) << i;
    }
    bits
}

/// Bit `i` is set when `w0 · lo[i] + w1 · hi[i] > threshold` (at most 64 pixels).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn above_bits_avx2(lo: &[f64], hi: &[f64], (w0, w1): (f64, f64), threshold: f64) -> u64 {
    // Four pixels per multiply, add and compare; `>` is the ordered, quiet comparison,
    // false for NaN like the scalar one.
    use std::arch::x86_64::{
        _CMP_GT_OQ, _mm256_add_pd, _mm256_cmp_pd, _mm256_loadu_pd, _mm256_movemask_pd,
        _mm256_mul_pd, _mm256_set1_pd,
    };
    let n = lo.len();
    assert!(n <= 64 && hi.len() == n);
    let (v0, v1, t) = (
        _mm256_set1_pd(w0),
        _mm256_set1_pd(w1),
        _mm256_set1_pd(threshold),
    );
    let mut bits = 0u64;
    for i in (0..n / 4).map(|q| 4 * q) {
        // SAFETY: `i + 4 <= n`, the length of both slices.
        let (a, b) = unsafe {
            (
                _mm256_loadu_pd(lo.as_ptr().add(i)),
                _mm256_loadu_pd(hi.as_ptr().add(i)),
            )
        };
        let above = _mm256_cmp_pd::<_CMP_GT_OQ>(
            _mm256_add_pd(_mm256_mul_pd(v0, a), _mm256_mul_pd(v1, b)),
            t,
        );
        bits |= (_mm256_movemask_pd(above) as u64) << i;
    }
    for i in n / 4 * 4..n {
        bits |= u64::from(w0 * lo[i] + w1 * hi[i] > threshold) << i;
    }
    bits
}

/// Bit `i` is set when `cells[i] > threshold` (at most 64 cells).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn cell_bits_sse2(cells: &[f32], threshold: f32) -> u64 {
    use std::arch::x86_64::{_mm_cmpgt_ps, _mm_loadu_ps, _mm_movemask_ps, _mm_set1_ps};
    let n = cells.len();
    assert!(n <= 64);
    let t = _mm_set1_ps(threshold);
    let mut bits = 0u64;
    for i in (0..n / 4).map(|q| 4 * q) {
        // SAFETY: `i + 4 <= n`, the slice's length.
        let v = unsafe { _mm_loadu_ps(cells.as_ptr().add(i)) };
        bits |= (_mm_movemask_ps(_mm_cmpgt_ps(v, t)) as u64) << i;
    }
    for (i, &v) in cells.iter().enumerate().skip(n / 4 * 4) {
        bits |= u64::from(v > threshold) << i;
    }
    bits
}

/// Bit `i` is set when `cells[i] > threshold` (at most 64 cells).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn cell_bits_avx2(cells: &[f32], threshold: f32) -> u64 {
    use std::arch::x86_64::{
        _CMP_GT_OQ, _mm256_cmp_ps, _mm256_loadu_ps, _mm256_movemask_ps, _mm256_set1_ps,
    };
    let n = cells.len();
    assert!(n <= 64);
    let t = _mm256_set1_ps(threshold);
    let mut bits = 0u64;
    for i in (0..n / 8).map(|q| 8 * q) {
        // SAFETY: `i + 8 <= n`, the slice's length.
        let v = unsafe { _mm256_loadu_ps(cells.as_ptr().add(i)) };
        bits |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, t)) as u64) << i;
    }
    for (i, &v) in cells.iter().enumerate().skip(n / 8 * 8) {
        bits |= u64::from(v > threshold) << i;
    }
    bits
}

/// Bit `i` is set when `cells[i] > threshold` (at most 64 cells).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn cell_bits(cells: &[f32], threshold: f32) -> u64 {
    let mut bits = 0u64;
    for (i, &v) in cells.iter().enumerate() {
        bits |= u64::from(v > threshold) << i;
    }
    bits
}

/// Bit `i` is set when `w0 · lo[i] + w1 · hi[i] > threshold` (at most 64 pixels).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn above_bits(lo: &[f64], hi: &[f64], (w0, w1): (f64, f64), threshold: f64) -> u64 {
    let mut bits = 0u64;
    for (i, (&a, &b)) in lo.iter().zip(hi).enumerate() {
        bits |= u64::from(w0 * a + w1 * b > threshold) << i;
    }
    bits
}

/// Calls `emit(x0, x1)` for every maximal run of pixels `x0..x1` where the vertical blend
/// `w0 · lo[x] + w1 · hi[x]` exceeds `threshold`. The comparisons of 64 pixels at a time
/// go into the bits of a word (a loop the compiler vectorises), and the runs are read off
/// the word by counting zeros and ones: a run costs a few instructions, not a few per pixel.
#[inline(always)]
fn above_runs(
    lo: &[f64],
    hi: &[f64],
    (w0, w1): (f64, f64),
    threshold: f64,
    above_bits: impl Fn(&[f64], &[f64], (f64, f64), f64) -> u64,
    mut emit: impl FnMut(usize, usize),
) {
    let mut open: Option<usize> = None;
    for (k, (lo, hi)) in lo.chunks(64).zip(hi.chunks(64)).enumerate() {
        let base = k * 64;
        let n = lo.len();
        let bits = above_bits(lo, hi, (w0, w1), threshold);
        let mut i = 0;
        while i < n {
            match open {
                None => {
                    let rest = bits >> i;
                    if rest == 0 {
                        break;
                    }
                    i += rest.trailing_zeros() as usize;
                    open = Some(base + i);
                }
                Some(x0) => {
                    // Bits past `n` are zero, so a run reaching the word's end stops there.
                    i += (!bits >> i).trailing_zeros() as usize;
                    if i >= n {
                        break;
                    }
                    emit(x0, base + i);
                    open = None;
                }
            }
        }
    }
    if let Some(x0) = open {
        emit(x0, lo.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsample(mode: Upsample, map: &[f32], h: usize, w: usize, sh: usize, sw: usize) -> Vec<f64> {
        placed(&LayerPlacement::Assumed(mode), map, h, w, sh, sw)
    }

    fn placed(
        placement: &LayerPlacement,
        map: &[f32],
        h: usize,
        w: usize,
        sh: usize,
        sw: usize,
    ) -> Vec<f64> {
        let rows = taps(placement.axis(0, h, sh), h, sh);
        let cols = taps(placement.axis(1, w, sw), w, sw);
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
    fn true_field_centres() {
        use nd_arrays::fields::Field;
        // The demo network's conv5 (centre 0, stride 16) at 224 px, labels at 112: cells
        // centred at label pixels 0, 8, 16, ...; half a stride earlier than assumed.
        let field = Field {
            offset: [-79, -79],
            size: [159, 159],
            stride: [16, 16],
        };
        let placement = LayerPlacement::Field {
            field,
            input: [224, 224],
        };
        assert_eq!(
            placement.axis(0, 14, 112),
            Placement::Centres {
                first: 0.0,
                step: 8.0
            }
        );
        let map: Vec<f32> = (0..14).map(|v| 8.0 * v as f32).collect();
        let out = placed(&placement, &map, 1, 14, 1, 112);
        // Through the centres the ramp is the identity, up to the last centre (104).
        let expected: Vec<f64> = (0..112).map(|x| f64::from(x.min(104))).collect();
        assert_eq!(out, expected);
        // Rows and columns each follow their own axis: offsets differ.
        let skewed = LayerPlacement::Field {
            field: Field {
                offset: [0, -4],
                size: [1, 1],
                stride: [2, 2],
            },
            input: [4, 4],
        };
        let out = placed(&skewed, &[0.0, 4.0, 8.0, 12.0], 2, 2, 4, 4);
        // Rows: centres at 0 and 2; columns: centres at −4 and −2 (all beyond: cell 1).
        assert_eq!(
            out,
            [
                4.0, 4.0, 4.0, 4.0, 8.0, 8.0, 8.0, 8.0, 12.0, 12.0, 12.0, 12.0, 12.0, 12.0, 12.0,
                12.0
            ]
        );
    }

    /// The runs read off words of comparisons are those of a plain scan, for runs that
    /// start, end or continue at word boundaries and a short last word.
    #[test]
    fn runs_are_read_off_the_comparisons() {
        let mut state = 3u64;
        for len in [1, 7, 63, 64, 65, 127, 128, 129, 200] {
            for density in [0.0, 0.1, 0.5, 0.9, 1.0] {
                let flags: Vec<bool> = (0..len)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        ((state >> 33) as f64 / (1u64 << 31) as f64) < density
                    })
                    .collect();
                let mut expected = Vec::new();
                let mut x = 0;
                while x < len {
                    if flags[x] {
                        let x0 = x;
                        while x < len && flags[x] {
                            x += 1;
                        }
                        expected.push((x0, x));
                    } else {
                        x += 1;
                    }
                }
                // w0 · lo + w1 · hi is the flag itself.
                let lo: Vec<f64> = flags.iter().map(|&f| if f { 1.0 } else { 0.0 }).collect();
                let hi = vec![0.0; len];
                let mut found = Vec::new();
                above_runs(&lo, &hi, (1.0, 0.0), 0.5, above_bits, |x0, x1| {
                    found.push((x0, x1))
                });
                assert_eq!(found, expected, "{len} pixels at density {density}");
            }
        }
    }

    /// The vector comparisons give the scalar expression's bits, at every length.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_comparisons_equal_the_scalar_ones() {
        let avx2 = has_avx2("vector_comparisons_equal_the_scalar_ones");
        let mut state = 5u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for len in 0..=64 {
            let lo: Vec<f64> = (0..len).map(|_| next()).collect();
            let hi: Vec<f64> = (0..len).map(|_| next()).collect();
            let w1 = next();
            let weights = (1.0 - w1, w1);
            for threshold in [0.2, 0.5, 0.8] {
                let scalar = above_bits(&lo, &hi, weights, threshold);
                // SAFETY: SSE2 is part of the x86-64 baseline.
                let vector = unsafe { above_bits_sse2(&lo, &hi, weights, threshold) };
                assert_eq!(vector, scalar, "SSE2, {len} pixels");
                if avx2 {
                    // SAFETY: the processor has AVX2, as `has_avx2` found.
                    let vector = unsafe { above_bits_avx2(&lo, &hi, weights, threshold) };
                    assert_eq!(vector, scalar, "AVX2, {len} pixels");
                }
            }
        }
    }

    /// The vector comparisons of cells give the scalar ones' bits, at every length and for
    /// NaN, infinite and signed-zero cells.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_cell_comparisons_equal_the_scalar_ones() {
        let avx2 = has_avx2("vector_cell_comparisons_equal_the_scalar_ones");
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 0.5];
        let mut state = 9u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (state >> 40) as usize;
            if k.is_multiple_of(5) {
                special[k % special.len()]
            } else {
                (state >> 11) as f32 / (1u64 << 53) as f32
            }
        };
        for len in 0..=64 {
            let cells: Vec<f32> = (0..len).map(|_| next()).collect();
            for threshold in [0.0, 0.25, 0.5, f32::INFINITY, f32::NEG_INFINITY] {
                let scalar = cell_bits(&cells, threshold);
                // SAFETY: SSE2 is part of the x86-64 baseline.
                let vector = unsafe { cell_bits_sse2(&cells, threshold) };
                assert_eq!(vector, scalar, "SSE2, {len} cells");
                if avx2 {
                    // SAFETY: the processor has AVX2, as `has_avx2` found.
                    let vector = unsafe { cell_bits_avx2(&cells, threshold) };
                    assert_eq!(vector, scalar, "AVX2, {len} cells");
                }
            }
        }
    }

    /// Cells compared with the threshold in `f32` are above it exactly when they are in
    /// `f64`: for thresholds between two `f32` values, on one, and beyond their range.
    #[test]
    fn cells_compare_in_their_own_precision() {
        let one = 1.0f32;
        let thresholds = [
            f64::from(one),
            f64::from(one) + 1e-12,
            f64::from(one) - 1e-12,
            f64::from(one.next_up()),
            f64::from(-one) + 1e-12,
            0.0,
            -0.0,
            f64::from(f32::MAX) * 2.0,
            -f64::from(f32::MAX) * 2.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-50,
            -1e-50,
        ];
        let cells = [
            one,
            one.next_up(),
            one.next_down(),
            -one,
            -one.next_down(),
            0.0,
            -0.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            -f32::from_bits(1),
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        for t in thresholds {
            let below = below_f32(t);
            for v in cells {
                assert_eq!(v > below, f64::from(v) > t, "{v:e} against {t:e}");
            }
        }
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
            taps(Placement::Bilinear, 4, 8),
            taps(Placement::Bilinear, 1, 1),
        );
        let mut visited = Vec::new();
        upsample_rows(&[0.0, 0.0, 0.0, 5.0], 1, &rows, &cols, 1.0, |y, _| {
            visited.push(y)
        });
        // Only output rows that read input row 3: y ≥ 5.
        assert_eq!(visited, [5, 6, 7]);
    }

    /// Whether the processor has AVX2; says so on stderr when it has not, since the
    /// tests of the AVX2 code then check nothing of it.
    #[cfg(target_arch = "x86_64")]
    fn has_avx2(test: &str) -> bool {
        let has = std::arch::is_x86_feature_detected!("avx2");
        if !has {
            eprintln!("{test}: this processor has no AVX2: the AVX2 code is not tested here");
        }
        has
    }

    /// A compiled form of [`hot_runs`], as a function pointer.
    type HotRuns = fn(&[f32], &Geometry, f64, &mut Scratch, &mut dyn FnMut(usize, usize, usize));

    /// Every form of [`hot_runs`] this processor can run, named: the one [`hot_runs`]
    /// picks here, the scalar one (other architectures), SSE2 (x86-64 without AVX2) and
    /// AVX2.
    fn hot_runs_variants(test: &str) -> Vec<(&'static str, HotRuns)> {
        let mut variants: Vec<(&'static str, HotRuns)> = vec![
            ("dispatched", |m, g, t, s, r| hot_runs(m, g, t, s, r)),
            ("scalar", |m, g, t, s, r| hot_runs_scalar(m, g, t, s, r)),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            variants.push(("SSE2", |m, g, t, s, r| hot_runs_sse2(m, g, t, s, r)));
            if has_avx2(test) {
                // SAFETY: listed only where the processor has AVX2, as just checked.
                variants.push(("AVX2", |m, g, t, s, r| unsafe {
                    hot_runs_avx2(m, g, t, s, r)
                }));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = test;
        variants
    }

    /// The fast path gives exactly the pixels of the full upsampling above the threshold,
    /// for both modes and for scales above, below and at one, in every compiled form
    /// (SSE2 and scalar even where the processor has AVX2, and AVX2 where it has it).
    #[test]
    fn hot_runs_match_the_full_upsampling() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 4.0 - 1.0
        };
        let variants = hot_runs_variants("hot_runs_match_the_full_upsampling");
        // One scratch per form for every map, as a thread of the stage uses it.
        let mut scratches: Vec<Scratch> = variants.iter().map(|_| Scratch::default()).collect();
        // A true field, its centres off mid-cell and different on the two axes: at twice
        // the label size rows are centred at 0 + 2j, columns at −1 + 3j, some beyond the
        // maps' edges.
        let field = nd_arrays::fields::Field {
            offset: [-3, -5],
            size: [7, 5],
            stride: [4, 6],
        };
        for (mode, fielded) in [
            (Upsample::Bilinear, false),
            (Upsample::ReceptiveField, false),
            (Upsample::ReceptiveField, true),
        ] {
            for (h, w, sh, sw) in [
                (7, 7, 112, 112),
                (5, 3, 16, 9),
                (9, 12, 8, 5),
                (4, 4, 4, 4),
                (28, 28, 113, 113),
                (3, 70, 6, 140),
                // Rows of 64 and of 129 cells: words of cells and of pixels end with rows,
                // and do not.
                (2, 64, 5, 128),
                (3, 129, 7, 200),
            ] {
                let map: Vec<f32> = (0..h * w).map(|_| next()).collect();
                // The same values rounded to halves: cells and blends of equal cells that
                // equal the threshold exactly, where `>` and `>=` part.
                let halves: Vec<f32> = map.iter().map(|v| (v * 2.0).round() / 2.0).collect();
                let placement = match (mode, fielded) {
                    (Upsample::ReceptiveField, true) => LayerPlacement::Field {
                        field,
                        input: [2 * sh, 2 * sw],
                    },
                    _ => LayerPlacement::Assumed(mode),
                };
                let geometry = Geometry::new(&placement, h, w, sh, sw);
                for (map, threshold) in [-2.0, 0.5, 1.5, 2.9, 5.0]
                    .into_iter()
                    .map(|t| (&map, t))
                    .chain([0.0, 0.5, 1.5, 3.0].into_iter().map(|t| (&halves, t)))
                {
                    let full = placed(&placement, map, h, w, sh, sw);
                    let expected: Vec<bool> = full.iter().map(|&v| v > threshold).collect();
                    for ((name, hot_runs), scratch) in variants.iter().zip(&mut scratches) {
                        let mut fast = vec![false; sh * sw];
                        hot_runs(map, &geometry, threshold, scratch, &mut |y, x0, x1| {
                            assert!(x0 < x1 && x1 <= sw, "{name}: run {x0}..{x1} of row {y}");
                            let row = &mut fast[y * sw..(y + 1) * sw];
                            // Runs are maximal: none touches another of the same row.
                            assert!(x0 == 0 || !row[x0 - 1], "{name}");
                            row[x0..x1].iter_mut().for_each(|p| *p = true)
                        });
                        assert_eq!(
                            fast, expected,
                            "{name}: {placement:?} {h}×{w} → {sh}×{sw} at {threshold}"
                        );
                    }
                }
            }
        }
    }
}
