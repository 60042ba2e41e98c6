//! The latent vectors: sample `row` of seed `seed` is the same `z` whatever the batch, the
//! shard or the machine's thread count (its own random stream, SplitMix64, then
//! Box–Muller), so shards and the intervene stage draw exactly what one run drew.

/// SplitMix64's output function.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Stream(u64);

impl Stream {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in (0, 1]: 53 random bits, never 0 (its logarithm is taken).
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// Sample `row`'s latent vector: `dim` standard normal values.
pub fn latent(seed: u64, row: u64, dim: usize) -> Vec<f32> {
    let mut stream = Stream(mix(seed ^ mix(row.wrapping_add(0x6a09_e667_f3bc_c909))));
    let mut out = Vec::with_capacity(dim + 1);
    while out.len() < dim {
        let (u1, u2) = (stream.uniform(), stream.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(dim);
    out
}

/// The latent vectors of `rows`, row after row (`rows.len() × dim`).
pub fn latents(seed: u64, rows: std::ops::Range<usize>, dim: usize) -> Vec<f32> {
    rows.flat_map(|row| latent(seed, row as u64, dim)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_their_own_and_standard_normal() {
        assert_eq!(latent(3, 7, 5), latent(3, 7, 5));
        assert_ne!(latent(3, 7, 5), latent(3, 8, 5));
        assert_ne!(latent(3, 7, 5), latent(4, 7, 5));
        // A shorter vector is the start of a longer one.
        assert_eq!(latent(3, 7, 5)[..], latent(3, 7, 6)[..5]);
        let batch = latents(3, 6..8, 5);
        assert_eq!(&batch[5..], &latent(3, 7, 5)[..]);
        let values: Vec<f64> = (0..2000)
            .flat_map(|r| latent(1, r, 64))
            .map(f64::from)
            .collect();
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        // 128,000 draws: the mean's sd is 0.003, the variance's 0.004.
        assert!(mean.abs() < 0.015, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        let beyond = values.iter().filter(|v| v.abs() > 1.96).count() as f64 / n;
        assert!((beyond - 0.05).abs() < 0.005, "{beyond}");
    }
}
