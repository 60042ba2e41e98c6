//! Exact order statistics of a unit's activations.
//!
//! Floats are mapped to `u32` keys whose order is the floats' order. Two ways to the value
//! at a rank:
//! - [`TopK`], one pass: when the rank is near the top (as `top = 0.005` puts it), keep
//!   every value not below the smallest of the `k` largest seen so far, cutting the buffer
//!   back to the `k` largest whenever it doubles; memory is 8 bytes per value above the
//!   rank.
//! - [`Selector`], two passes, for any rank: the first counts values by the key's high 16
//!   bits; the bins holding the wanted ranks are found from the counts; the second counts
//!   only the values of those bins by their low 16 bits, which pins down the exact key.
//!   Memory is two 65,536-bin histograms, whatever the number of values.

const BINS: usize = 1 << 16;

/// The order-preserving map from a float to a `u32` (negative floats reversed below
/// the positive ones; `-0.0` sorts just below `0.0`).
pub fn key(v: f32) -> u32 {
    let bits = v.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

pub fn value(key: u32) -> f32 {
    let bits = if key & 0x8000_0000 != 0 {
        key & 0x7fff_ffff
    } else {
        !key
    };
    f32::from_bits(bits)
}

/// The rank-interpolated empirical quantile at `level` (NumPy's default "linear" method):
/// with `n` sorted values `v`, `pos = level · (n − 1)` and the result is
/// `v[⌊pos⌋] + (pos − ⌊pos⌋) · (v[⌊pos⌋ + 1] − v[⌊pos⌋])`.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub lower: u64,
    pub upper: u64,
    pub fraction: f64,
}

impl Target {
    pub fn new(n: u64, level: f64) -> Target {
        let pos = level * (n.saturating_sub(1)) as f64;
        let lower = (pos.floor() as u64).min(n.saturating_sub(1));
        let upper = (lower + 1).min(n.saturating_sub(1));
        Target {
            lower,
            upper,
            fraction: pos - lower as f64,
        }
    }
}

/// Per-unit state across the two passes.
pub struct Selector {
    coarse: Vec<u32>,
    /// After the first pass: for each wanted rank, its high bin and its rank within the bin.
    wanted: [(u32, u64); 2],
    fine: [Vec<u32>; 2],
    pub count: u64,
    pub zeros: u64,
    pub min: f32,
    pub max: f32,
}

impl Default for Selector {
    fn default() -> Self {
        Selector::new()
    }
}

impl Selector {
    pub fn new() -> Selector {
        Selector {
            coarse: vec![0; BINS],
            wanted: [(0, 0); 2],
            fine: [Vec::new(), Vec::new()],
            count: 0,
            zeros: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }

    /// First pass: count every value.
    pub fn count(&mut self, values: &[f32]) {
        for &v in values {
            self.coarse[(key(v) >> 16) as usize] += 1;
            self.zeros += u64::from(v == 0.0);
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += values.len() as u64;
    }

    /// Between the passes: find the high bins of the two ranks of `target`.
    pub fn locate(&mut self, target: Target) {
        let mut seen = 0u64;
        let mut found = [None, None];
        for (bin, &c) in self.coarse.iter().enumerate() {
            let c = u64::from(c);
            for (slot, rank) in [target.lower, target.upper].into_iter().enumerate() {
                if found[slot].is_none() && rank < seen + c {
                    found[slot] = Some((bin as u32, rank - seen));
                }
            }
            seen += c;
            if found[1].is_some() {
                break;
            }
        }
        self.wanted = [
            found[0].expect("rank within the counted values"),
            found[1].expect("rank within the counted values"),
        ];
        // The coarse histogram is no longer needed; its memory becomes the first fine one.
        let mut coarse = std::mem::take(&mut self.coarse);
        coarse.iter_mut().for_each(|c| *c = 0);
        self.fine[0] = coarse;
        if self.wanted[1].0 != self.wanted[0].0 {
            self.fine[1] = vec![0; BINS];
        }
    }

    /// Second pass: count the values of the wanted high bins by their low bits.
    pub fn refine(&mut self, values: &[f32]) {
        let (a, b) = (self.wanted[0].0, self.wanted[1].0);
        for &v in values {
            let k = key(v);
            let high = k >> 16;
            if high == a {
                self.fine[0][(k & 0xffff) as usize] += 1;
            } else if high == b {
                self.fine[1][(k & 0xffff) as usize] += 1;
            }
        }
    }

    /// After the second pass: the exact values at the two ranks.
    pub fn values(&self) -> (f32, f32) {
        let pick = |slot: usize| -> f32 {
            let (high, mut rank) = self.wanted[slot];
            let fine = if slot == 1 && high != self.wanted[0].0 {
                &self.fine[1]
            } else {
                &self.fine[0]
            };
            for (low, &c) in fine.iter().enumerate() {
                let c = u64::from(c);
                if rank < c {
                    return value((high << 16) | low as u32);
                }
                rank -= c;
            }
            unreachable!("the fine histogram holds the bin's values")
        };
        (pick(0), pick(1))
    }
}

/// The values at two ranks near the top, exactly, in one pass (see the module's notes).
pub struct TopK {
    /// How many of the largest values the answer needs.
    keep: usize,
    /// Every value whose key is below this is not among the `keep` largest.
    bound: u32,
    keys: Vec<u32>,
    pub count: u64,
    pub zeros: u64,
    pub min: f32,
    pub max: f32,
}

impl TopK {
    /// For the ranks of `target` among `n` values.
    pub fn new(n: u64, target: Target) -> TopK {
        let keep = (n - target.lower) as usize;
        TopK {
            keep,
            bound: 0,
            keys: Vec::with_capacity(2 * keep.max(1024)),
            count: 0,
            zeros: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }

    /// The bytes the buffer holds at most, for choosing between the two methods.
    pub fn memory(n: u64, target: Target) -> u64 {
        2 * (n - target.lower).max(1024) * 4
    }

    pub fn push(&mut self, values: &[f32]) {
        let limit = 2 * self.keep.max(1024);
        for &v in values {
            let k = key(v);
            if k >= self.bound {
                self.keys.push(k);
                if self.keys.len() >= limit {
                    self.cut();
                }
            }
            self.zeros += u64::from(v == 0.0);
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += values.len() as u64;
    }

    /// Keeps the `keep` largest keys; the smallest of them becomes the bound.
    fn cut(&mut self) {
        let at = self.keys.len() - self.keep;
        self.keys.select_nth_unstable(at);
        self.keys.drain(..at);
        self.bound = self.keys.iter().copied().min().unwrap_or(0);
    }

    /// The values at the target's ranks (ascending, 0-based) once every value was pushed.
    pub fn values(&mut self, target: Target) -> (f32, f32) {
        self.keys.sort_unstable();
        let (kept, n) = (self.keys.len() as u64, self.count);
        let at = |rank: u64| value(self.keys[(kept - (n - rank)) as usize]);
        (at(target.lower), at(target.upper))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(values: &[f32], level: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f32::total_cmp);
        let t = Target::new(sorted.len() as u64, level);
        let (a, b) = (
            sorted[t.lower as usize] as f64,
            sorted[t.upper as usize] as f64,
        );
        a + t.fraction * (b - a)
    }

    fn select(values: &[f32], level: f64, chunk: usize) -> f64 {
        let mut s = Selector::new();
        for c in values.chunks(chunk) {
            s.count(c);
        }
        let t = Target::new(s.count, level);
        s.locate(t);
        for c in values.chunks(chunk) {
            s.refine(c);
        }
        let (a, b) = s.values();
        let two_passes = a as f64 + t.fraction * (b as f64 - a as f64);
        // The one-pass method gives the same answer, whatever the chunking.
        let mut top = TopK::new(values.len() as u64, t);
        for c in values.chunks(chunk) {
            top.push(c);
        }
        assert_eq!((top.count, top.zeros), (s.count, s.zeros));
        assert_eq!((top.min, top.max), (s.min, s.max));
        let (a, b) = top.values(t);
        assert_eq!(a as f64 + t.fraction * (b as f64 - a as f64), two_passes);
        two_passes
    }

    #[test]
    fn keys_preserve_order() {
        let mut v = [
            3.5f32,
            -0.0,
            0.0,
            -2.0,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-30,
            7.0,
            -1e30,
        ];
        let mut by_key = v;
        v.sort_by(f32::total_cmp);
        by_key.sort_by_key(|&x| key(x));
        assert_eq!(v.map(f32::to_bits), by_key.map(f32::to_bits));
        for x in v {
            assert_eq!(value(key(x)).to_bits(), x.to_bits());
        }
    }

    #[test]
    fn matches_sorting_on_awkward_data() {
        // Many zeros (ReLU), ties, negatives, values sharing high bits, and an interpolation.
        let mut data: Vec<f32> = (0..10_000)
            .map(|i| ((i * 7919) % 1013) as f32 * 0.001)
            .collect();
        data.extend(std::iter::repeat_n(0.0, 30_000));
        data.extend((0..500).map(|i| 1.0 + i as f32 * 1e-7));
        data.extend((0..50).map(|i| -(i as f32)));
        for level in [0.0, 0.5, 0.9, 0.995, 0.99999, 1.0] {
            assert_eq!(
                select(&data, level, 777),
                exact(&data, level),
                "level {level}"
            );
        }
        // Constant data and a single value.
        assert_eq!(select(&[2.5; 100], 0.995, 7), 2.5);
        assert_eq!(select(&[4.0], 0.995, 1), 4.0);
    }

    #[test]
    fn worked_example() {
        // 10 values, level 0.5: pos = 4.5 between the 5th and 6th smallest (4 and 5).
        let data = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 0.0];
        assert_eq!(select(&data, 0.5, 3), 4.5);
        // level 0.995: pos = 8.955, between 8 and 9.
        assert!((select(&data, 0.995, 4) - 8.955).abs() < 1e-12);
    }
}
