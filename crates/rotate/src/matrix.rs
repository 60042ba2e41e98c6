//! Seeded random rotations and their fractional powers.
//!
//! [`random_rotation`] draws `Q`, uniformly distributed over SO(n) (Haar measure): the QR
//! decomposition of an n×n matrix of independent standard normal draws, each column of
//! `Q` multiplied by the sign of `R`'s diagonal entry (which makes `Q` uniform over O(n)),
//! then the first column negated when `det Q = −1` (a measure-preserving map of the other
//! half of O(n) onto SO(n)).
//!
//! Reproducibility: the normal draws are bit-stable across machines, since they use only
//! IEEE-754 arithmetic that every CPU rounds alike: a SplitMix64 stream, Marsaglia's polar
//! method (no sine or cosine) and our own logarithm ([`ln`], a fixed series) instead of the
//! platform's libm, whose last bit may differ between systems. The QR step is nalgebra's
//! Householder decomposition in f64, whose products may use fused multiply-adds on CPUs
//! that have them: `Q` is the same to about 1e-15 everywhere, bit for bit on one machine.
//! [`power`] of a fraction goes through libm's `atan2`, `sin` and `cos` too, so it is
//! stable to about 1e-15. The store keys the artifact by the seed and the power, and the
//! artifact holds the matrix it applied.
//!
//! [`power`] computes `Q^α` through the real Schur form `Q = Z T Zᵀ`: `Q` is normal, so `T`
//! is block diagonal, with 2×2 rotation blocks (angle θ in (−π, π]) and ±1 entries. Each
//! block turns by `αθ`; the −1 entries pair up (their number is even when `det Q = +1`)
//! into planes turned by `απ`. Every `Q^α` is thus real and orthogonal, `Q^0 = I`,
//! `Q^1 = Q`, and `Q^a Q^b = Q^(a+b)` while `a + b ≤ 1`.

use nalgebra::DMatrix;

/// A SplitMix64 stream (Steele, Lea and Flood 2014): 64 random bits a step, the same on
/// every machine.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on [−1, 1), a multiple of 2⁻⁵².
    fn symmetric(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 52) as f64) - 1.0
    }

    /// Two independent standard normal draws (Marsaglia's polar method).
    pub fn normal_pair(&mut self) -> (f64, f64) {
        loop {
            let (u, v) = (self.symmetric(), self.symmetric());
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * ln(s) / s).sqrt();
                return (u * f, v * f);
            }
        }
    }
}

/// The natural logarithm of a positive, finite, normal `x`, from IEEE arithmetic alone
/// (so bit-identical on every machine): `x = m·2^e` with `m` in [√½, √2), and
/// `ln m = 2 atanh t = 2(t + t³/3 + t⁵/5 + …)` with `t = (m − 1)/(m + 1)`, `|t| < 0.172`,
/// summed to the 25th power (the next term is below 1e-20). Accurate to a few ulps.
pub fn ln(x: f64) -> f64 {
    debug_assert!(x.is_normal() && x > 0.0, "ln of {x}");
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let mut series = 0.0;
    for k in (0..13).rev() {
        series = series * t2 + 1.0 / (2 * k + 1) as f64;
    }
    e as f64 * std::f64::consts::LN_2 + 2.0 * t * series
}

/// An n×n matrix of independent standard normal draws from `seed`, filled row by row.
pub fn gaussian(n: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = SplitMix64::new(seed);
    let mut values = Vec::with_capacity(n * n + 1);
    while values.len() < n * n {
        let (a, b) = rng.normal_pair();
        values.push(a);
        values.push(b);
    }
    values.truncate(n * n);
    DMatrix::from_row_slice(n, n, &values)
}

/// The random rotation of `n` dimensions that `seed` names, uniform over SO(n).
pub fn random_rotation(n: usize, seed: u64) -> DMatrix<f64> {
    if n == 0 {
        return DMatrix::zeros(0, 0);
    }
    let qr = gaussian(n, seed).qr();
    let r = qr.r();
    let mut q = qr.q();
    for (j, mut column) in q.column_iter_mut().enumerate() {
        if r[(j, j)] < 0.0 {
            column.neg_mut();
        }
    }
    if q.clone().lu().determinant() < 0.0 {
        q.column_mut(0).neg_mut();
    }
    q
}

/// `Q^α` of a rotation `q` (orthogonal, `det q = +1`) for `α` in [0, 1]: `I` at 0, `q`
/// itself at 1, and in between the rotation that turns each of `q`'s planes by the fraction
/// `α` of its angle (see the module's documentation).
pub fn power(q: &DMatrix<f64>, alpha: f64) -> DMatrix<f64> {
    let n = q.nrows();
    if alpha == 0.0 {
        return DMatrix::identity(n, n);
    }
    if alpha == 1.0 {
        return q.clone();
    }
    let (z, t) = nalgebra::linalg::Schur::new(q.clone()).unpack();
    let mut turned = DMatrix::<f64>::zeros(n, n);
    let set_plane = |turned: &mut DMatrix<f64>, i: usize, j: usize, angle: f64| {
        let (s, c) = (alpha * angle).sin_cos();
        turned[(i, i)] = c;
        turned[(i, j)] = -s;
        turned[(j, i)] = s;
        turned[(j, j)] = c;
    };
    let mut reflected = Vec::new();
    let mut i = 0;
    while i < n {
        if i + 1 < n && t[(i + 1, i)] != 0.0 {
            // A 2×2 block [[a, b], [c, d]], ideally [[cos θ, −sin θ], [sin θ, cos θ]].
            let (a, b, c, d) = (t[(i, i)], t[(i, i + 1)], t[(i + 1, i)], t[(i + 1, i + 1)]);
            set_plane(&mut turned, i, i + 1, (0.5 * (c - b)).atan2(0.5 * (a + d)));
            i += 2;
        } else {
            if t[(i, i)] < 0.0 {
                reflected.push(i);
            } else {
                turned[(i, i)] = 1.0;
            }
            i += 1;
        }
    }
    assert!(
        reflected.len().is_multiple_of(2),
        "a rotation has an even number of −1 eigenvalues (det = +1), got {}",
        reflected.len()
    );
    for pair in reflected.chunks_exact(2) {
        set_plane(&mut turned, pair[0], pair[1], std::f64::consts::PI);
    }
    &z * turned * z.transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest entry of `QᵀQ − I`.
    fn orthogonality_error(q: &DMatrix<f64>) -> f64 {
        let n = q.nrows();
        (q.transpose() * q - DMatrix::<f64>::identity(n, n)).amax()
    }

    fn determinant(q: &DMatrix<f64>) -> f64 {
        q.clone().lu().determinant()
    }

    #[test]
    fn ln_matches_the_platform_logarithm() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..100_000 {
            let x = (rng.symmetric() + 1.0) * 0.5 + 1e-300;
            let (ours, libm) = (ln(x), x.ln());
            assert!(
                (ours - libm).abs() <= 4.0 * f64::EPSILON * libm.abs().max(1.0),
                "ln {x}: {ours} against {libm}"
            );
        }
        assert_eq!(ln(1.0), 0.0);
        assert!((ln(2f64.powi(-104)) - 2f64.powi(-104).ln()).abs() < 1e-13);
    }

    #[test]
    fn normal_draws_have_mean_zero_and_variance_one() {
        let g = gaussian(300, 11);
        let n = (300 * 300) as f64;
        let mean = g.sum() / n;
        let variance = g.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((variance - 1.0).abs() < 0.01, "{variance}");
    }

    /// The stream's first values, fixed: a change of them changes every rotation (and
    /// should bump the stage's schema).
    #[test]
    fn the_normal_stream_is_fixed() {
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        let g = gaussian(2, 7);
        let bits: Vec<u64> = g.iter().map(|v| v.to_bits()).collect();
        let again: Vec<u64> = gaussian(2, 7).iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, again);
    }

    #[test]
    fn a_random_rotation_is_orthogonal_with_determinant_one() {
        for n in [1, 2, 3, 7, 64, 512] {
            let q = random_rotation(n, 42);
            assert!(orthogonality_error(&q) < 1e-10, "n = {n}");
            assert!(
                (determinant(&q) - 1.0).abs() < 1e-9,
                "n = {n}: det {}",
                determinant(&q)
            );
        }
    }

    /// The size of a real layer (ResNet-50's layer4 has 2048 units).
    #[test]
    fn a_rotation_of_2048_units_is_orthogonal() {
        let q = random_rotation(2048, 1);
        assert!(orthogonality_error(&q) < 1e-10);
    }

    #[test]
    fn same_seed_same_rotation_other_seed_other_rotation() {
        let a = random_rotation(40, 5);
        assert_eq!(a, random_rotation(40, 5));
        assert!((a - random_rotation(40, 6)).amax() > 0.1);
    }

    #[test]
    fn powers_zero_and_one_are_the_identity_and_the_rotation() {
        let q = random_rotation(50, 9);
        assert_eq!(power(&q, 0.0), DMatrix::identity(50, 50));
        assert_eq!(power(&q, 1.0), q);
        // Through the Schur form too: just below 1 it is nearly q.
        assert!((power(&q, 1.0 - 1e-12) - &q).amax() < 1e-9);
    }

    #[test]
    fn fractional_powers_are_rotations_that_compose() {
        for n in [2, 5, 64, 512] {
            let q = random_rotation(n, 17);
            let (a, b) = (0.25, 0.5);
            let (qa, qb, qab) = (power(&q, a), power(&q, b), power(&q, a + b));
            for m in [&qa, &qb, &qab] {
                assert!(orthogonality_error(m) < 1e-10, "n = {n}");
                assert!((determinant(m) - 1.0).abs() < 1e-8, "n = {n}");
            }
            assert!((&qa * &qb - &qab).amax() < 1e-10, "n = {n}");
            assert!(
                (power(&q, 0.5) * power(&q, 0.5) - &q).amax() < 1e-10,
                "n = {n}"
            );
        }
    }

    /// A permutation with −1 eigenvalues (a product of swaps, det +1): they pair into
    /// planes turned by half a turn, so the square root squares back to it.
    #[test]
    fn powers_of_a_rotation_with_eigenvalues_minus_one() {
        let mut p = DMatrix::<f64>::zeros(4, 4);
        for (i, j) in [(0, 1), (1, 0), (2, 3), (3, 2)] {
            p[(i, j)] = 1.0;
        }
        let half = power(&p, 0.5);
        assert!(orthogonality_error(&half) < 1e-12);
        assert!((&half * &half - &p).amax() < 1e-12);
        let mut minus = -DMatrix::<f64>::identity(2, 2);
        let root = power(&minus, 0.5);
        assert!((&root * &root - &minus).amax() < 1e-12);
        minus[(0, 0)] = -1.0;
        assert!((power(&minus, 0.25).determinant() - 1.0).abs() < 1e-12);
    }
}
