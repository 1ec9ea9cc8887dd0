//! Randomness for the traffic generator: a seeded PRNG with independent per-chunk streams, and
//! the samplers the traffic model draws from (uniform, exponential, normal, log-normal,
//! bounded Zipf by rejection-inversion).
//!
//! Everything is a pure function of the seed and the stream index, so a chunk of work gives the
//! same numbers on any thread and any thread count.

/// SplitMix64 (Steele, Lea, Flood 2014): one 64-bit word of state, every seed a full-period
/// stream, and good enough statistics for synthetic traffic (it passes BigCrush).
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// The SplitMix64 output function: a bijective 64-bit mixer.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 2^-53, the spacing of the uniform doubles [`Rng::unit`] returns.
const UNIT_STEP: f64 = 1.0 / (1u64 << 53) as f64;

impl Rng {
    /// The stream for chunk `index` of the work called `domain`, under `seed`.
    ///
    /// Streams of different (domain, index) pairs start at unrelated states: the three inputs
    /// go through the mixer one after another, so neighbouring indexes do not overlap.
    pub fn stream(seed: u64, domain: u64, index: u64) -> Rng {
        let a = mix64(seed ^ 0x7061_7961_7574_6831); // "payauth1"
        let b = mix64(a ^ domain.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Rng(mix64(b ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below `n / 2^64`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`, on a grid of 2^-53.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * UNIT_STEP
    }

    /// Uniform in `(0, 1)`: never 0, so its logarithm is finite.
    pub fn open_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * UNIT_STEP
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Exponential with mean 1.
    pub fn exp1(&mut self) -> f64 {
        -self.open_unit().ln()
    }

    /// Standard normal (Box-Muller, one of the pair: simple and branch-free).
    pub fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.open_unit().ln()).sqrt();
        r * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// Log-normal with the given median and shape `sigma` (the standard deviation of the
    /// logarithm): `median * exp(sigma * N(0, 1))`.
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// An index drawn with probability proportional to `weights[i]`.
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Zipf's law on `1..=n`: `P(k) = k^-s / H(n, s)`, sampled in constant expected time by
/// Hörmann and Derflinger's rejection-inversion ("Rejection-inversion to generate variates
/// from monotone discrete distributions", ACM TOMACS 6(3), 1996), for any `s > 0`.
///
/// The method inverts the integral `H` of the hat function `h(x) = x^-s`, which bounds the
/// probability of each `k` by the area under `h` over `[k - 1/2, k + 1/2]`, and rejects the
/// rare points that fall outside; no table of `n` entries is needed, so `n` can be huge.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    /// `H(3/2) - 1`: the top of the inversion range (k = 1 takes `[H(1/2).. ]` folded in).
    h_x1: f64,
    /// `H(n + 1/2)`: the bottom of the inversion range.
    h_n: f64,
    /// Points with `k - x <= cut` are accepted without evaluating `H` again.
    cut: f64,
}

impl Zipf {
    /// Zipf on `1..=n` with exponent `s`; `None` unless `n >= 1` and `s` is finite and `> 0`.
    pub fn new(n: u64, s: f64) -> Option<Zipf> {
        if n == 0 || !(s.is_finite() && s > 0.0) {
            return None;
        }
        let mut z = Zipf {
            n: n as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            cut: 0.0,
        };
        z.h_x1 = z.big_h(1.5) - 1.0;
        z.h_n = z.big_h(z.n + 0.5);
        z.cut = 2.0 - z.big_h_inv(z.big_h(2.5) - z.hat(2.0));
        Some(z)
    }

    /// The number of values.
    pub fn n(&self) -> u64 {
        self.n as u64
    }

    /// The exponent.
    pub fn exponent(&self) -> f64 {
        self.s
    }

    /// One draw in `1..=n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.big_h_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.cut || u >= self.big_h(k + 0.5) - self.hat(k) {
                return k as u64;
            }
        }
    }

    /// The exact probability of `k`, for tests and reports: `k^-s / H(n, s)` (sums `n` terms).
    pub fn pmf(&self, k: u64) -> f64 {
        let norm: f64 = (1..=self.n() as usize)
            .map(|i| (i as f64).powf(-self.s))
            .sum();
        (k as f64).powf(-self.s) / norm
    }

    /// The hat function `h(x) = x^-s`.
    fn hat(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// `H(x) = (x^(1-s) - 1) / (1 - s)`, and `ln x` at `s = 1`, written so that it is
    /// accurate for `s` near 1: `H(x) = expm1_over((1 - s) ln x) * ln x`.
    fn big_h(&self, x: f64) -> f64 {
        let log_x = x.ln();
        expm1_over_x((1.0 - self.s) * log_x) * log_x
    }

    /// The inverse of `H`.
    fn big_h_inv(&self, y: f64) -> f64 {
        let t = (y * (1.0 - self.s)).max(-1.0);
        (log1p_over_x(t) * y).exp()
    }
}

/// `(e^x - 1) / x`, continuous at 0.
fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + x * 0.25))
    }
}

/// `ln(1 + x) / x`, continuous at 0.
fn log1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson's chi-square of observed counts against expected probabilities.
    fn chi_square(counts: &[u64], probs: &[f64]) -> f64 {
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .zip(probs)
            .map(|(&c, &p)| {
                let e = p * total as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum()
    }

    #[test]
    fn zipf_matches_its_pmf() {
        // 50 bins, 49 degrees of freedom: the 99.9% point of chi-square(49) is 85.4.
        for s in [0.6, 1.0, 1.0 + 1e-12, 1.3, 2.5] {
            let z = Zipf::new(50, s).unwrap();
            let mut rng = Rng::stream(9, 1, 0);
            let mut counts = vec![0u64; 50];
            for _ in 0..200_000 {
                let k = z.sample(&mut rng);
                assert!((1..=50).contains(&k));
                counts[k as usize - 1] += 1;
            }
            let probs: Vec<f64> = (1..=50).map(|k| z.pmf(k)).collect();
            let chi2 = chi_square(&counts, &probs);
            assert!(chi2 < 85.4, "s = {s}: chi-square {chi2:.1} over 49 dof");
        }
    }

    #[test]
    fn zipf_edge_cases() {
        assert!(Zipf::new(0, 1.0).is_none());
        assert!(Zipf::new(10, 0.0).is_none());
        assert!(Zipf::new(10, f64::NAN).is_none());
        let one = Zipf::new(1, 1.0).unwrap();
        let mut rng = Rng::stream(1, 2, 3);
        assert!((0..1000).all(|_| one.sample(&mut rng) == 1));
        let huge = Zipf::new(u64::MAX >> 12, 1.1).unwrap();
        assert!((0..1000).all(|_| (1..=huge.n()).contains(&huge.sample(&mut rng))));
    }

    #[test]
    fn log_normal_median_and_normal_moments() {
        let mut rng = Rng::stream(3, 0, 0);
        let mut xs: Vec<f64> = (0..100_001).map(|_| rng.log_normal(80.0, 0.9)).collect();
        xs.sort_by(f64::total_cmp);
        let median = xs[50_000];
        assert!((median / 80.0 - 1.0).abs() < 0.02, "median {median}");
        let zs: Vec<f64> = (0..100_000).map(|_| rng.normal()).collect();
        let mean = zs.iter().sum::<f64>() / zs.len() as f64;
        let var = zs.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / zs.len() as f64;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(1, 2, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        let mut firsts: Vec<u64> = (0..1000)
            .map(|i| Rng::stream(1, 2, i).next_u64())
            .chain((0..1000).map(|d| Rng::stream(1, d, 0).next_u64()))
            .collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts.len(), 1999); // (domain 2, index 0) appears in both lists
    }
}
