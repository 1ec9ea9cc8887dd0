//! Arrival-rate profiles: the request rate over time (`steady`, `singles-day`), its integral
//! and inverse, and the exact arrival times of a Poisson process with that rate.
//!
//! The traffic's timestamps are the arrival times of an inhomogeneous Poisson process
//! conditioned on exactly `requests` arrivals in `[0, T]`, where `T` is the instant at which the
//! expected count reaches `requests`: given the count, the arrivals are independent draws from
//! the density `rate(t) / requests`, so their sorted values are `cum_inv(U(i) * requests)` for
//! sorted uniforms `U(i)`. Sorted uniforms are made without sorting, from exponential spacings
//! (`U(i) = S(i) / S(n + 1)` with `S` the running sum of exponentials), chunk by chunk in
//! parallel with one PRNG stream per chunk, so the result does not depend on the thread count.

use rayon::prelude::*;

use super::sample::Rng;

/// Requests per chunk when drawing arrival times in parallel (one PRNG stream each).
const ARRIVAL_CHUNK: usize = 1 << 16;
/// PRNG domain of the arrival-time chunks.
const DOMAIN_ARRIVALS: u64 = 0x61_72_72_69_76_61_6c; // "arrival"

/// The shape of the request rate over time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// A constant rate.
    Steady,
    /// Singles' Day (11 November) in China: a quiet evening at the base rate, then at
    /// midnight the rate jumps to `peak_factor` times the base and decays back exponentially,
    /// `rate(x) = base * (1 + (peak_factor - 1) * exp(-x / decay_s))`, `x` seconds after
    /// midnight.
    SinglesDay {
        /// Length of the quiet part before the jump, seconds.
        quiet_s: f64,
        /// The rate just after the jump, as a multiple of the base rate (at least 1).
        peak_factor: f64,
        /// Time constant of the decay back to the base rate, seconds.
        decay_s: f64,
    },
}

/// A request rate over time, from the start of the traffic: `rate(t)` requests per second
/// at `t` seconds after the start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateCurve {
    /// The base rate, requests per second.
    pub base_per_s: f64,
    /// How the rate varies around the base.
    pub shape: Shape,
}

impl RateCurve {
    /// Requests per second at `t_s` seconds after the start.
    pub fn rate(&self, t_s: f64) -> f64 {
        match self.shape {
            Shape::Steady => self.base_per_s,
            Shape::SinglesDay {
                quiet_s,
                peak_factor,
                decay_s,
            } => {
                if t_s < quiet_s {
                    self.base_per_s
                } else {
                    let x = t_s - quiet_s;
                    self.base_per_s * (1.0 + (peak_factor - 1.0) * (-x / decay_s).exp())
                }
            }
        }
    }

    /// Expected requests in `[0, t_s]`: the integral of [`RateCurve::rate`].
    pub fn cum(&self, t_s: f64) -> f64 {
        match self.shape {
            Shape::Steady => self.base_per_s * t_s,
            Shape::SinglesDay {
                quiet_s,
                peak_factor,
                decay_s,
            } => {
                if t_s < quiet_s {
                    self.base_per_s * t_s
                } else {
                    let x = t_s - quiet_s;
                    let a = (peak_factor - 1.0) * decay_s;
                    self.base_per_s * (quiet_s + x + a * -(-x / decay_s).exp_m1())
                }
            }
        }
    }

    /// The instant (seconds after the start) at which [`RateCurve::cum`] reaches `y`.
    pub fn cum_inv(&self, y: f64) -> f64 {
        let z = y / self.base_per_s;
        match self.shape {
            Shape::Steady => z,
            Shape::SinglesDay {
                quiet_s,
                peak_factor,
                decay_s,
            } => {
                if z < quiet_s {
                    return z;
                }
                // Solve g(x) = x + a (1 - e^(-x/d)) = z - quiet for x >= 0. g is increasing
                // and concave, so Newton's method from a lower bound climbs monotonically to
                // the root; both `w / peak` and `w - a` are lower bounds (g(x) <= peak x and
                // g(x) <= x + a).
                let w = z - quiet_s;
                let a = (peak_factor - 1.0) * decay_s;
                let mut x = (w / peak_factor).max(w - a).max(0.0);
                for _ in 0..64 {
                    let e = (-x / decay_s).exp();
                    let g = x + a * (1.0 - e) - w;
                    let step = g / (1.0 + a / decay_s * e);
                    x -= step;
                    if step.abs() <= 1e-10 * (1.0 + x) {
                        break;
                    }
                }
                quiet_s + x
            }
        }
    }
}

/// The arrival times (seconds after the start, non-decreasing) of `n` requests of a Poisson
/// process with rate `curve`, conditioned on all `n` arriving by the instant at which the
/// expected count is `n`. Same `seed`, same result, on any number of threads.
pub fn arrival_times_s(curve: &RateCurve, n: usize, seed: u64) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    // Running sums of n + 1 exponentials, chunk by chunk: each chunk's sum first (parallel),
    // then the offsets (in order), then the values (parallel).
    let spacings = n + 1;
    let chunks = spacings.div_ceil(ARRIVAL_CHUNK);
    let chunk_len = |c: usize| ARRIVAL_CHUNK.min(spacings - c * ARRIVAL_CHUNK);
    let sums: Vec<f64> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut rng = Rng::stream(seed, DOMAIN_ARRIVALS, c as u64);
            (0..chunk_len(c)).map(|_| rng.exp1()).sum()
        })
        .collect();
    let mut offsets = Vec::with_capacity(chunks);
    let mut total = 0.0;
    for s in &sums {
        offsets.push(total);
        total += s;
    }
    let expected = n as f64;
    let mut times = vec![0.0; spacings];
    times
        .par_chunks_mut(ARRIVAL_CHUNK)
        .enumerate()
        .for_each(|(c, out)| {
            let mut rng = Rng::stream(seed, DOMAIN_ARRIVALS, c as u64);
            let mut acc = offsets[c];
            for t in out.iter_mut() {
                acc += rng.exp1();
                *t = curve.cum_inv(acc / total * expected);
            }
        });
    // The last running sum is the total itself (the end of the period), not an arrival.
    times.truncate(n);
    // Rounding can reorder neighbours by an ulp; arrivals must not go backwards.
    for i in 1..times.len() {
        if times[i] < times[i - 1] {
            times[i] = times[i - 1];
        }
    }
    times
}

#[cfg(test)]
mod tests {
    use super::*;

    fn singles() -> RateCurve {
        RateCurve {
            base_per_s: 100.0,
            shape: Shape::SinglesDay {
                quiet_s: 50.0,
                peak_factor: 10.0,
                decay_s: 30.0,
            },
        }
    }

    #[test]
    fn cum_inv_inverts_cum() {
        for curve in [
            RateCurve {
                base_per_s: 7.5,
                shape: Shape::Steady,
            },
            singles(),
        ] {
            for t in [0.0, 1.0, 49.9, 50.0, 50.001, 60.0, 123.4, 1e4] {
                let y = curve.cum(t);
                let back = curve.cum_inv(y);
                assert!((back - t).abs() < 1e-6 * (1.0 + t), "{t} -> {y} -> {back}");
            }
        }
    }

    #[test]
    fn singles_day_jumps_tenfold_and_decays() {
        let c = singles();
        assert_eq!(c.rate(49.0), 100.0);
        assert!((c.rate(50.0) - 1000.0).abs() < 1e-9);
        assert!((c.rate(80.0) - 100.0 * (1.0 + 9.0 / std::f64::consts::E)).abs() < 1e-9);
    }

    #[test]
    fn arrivals_are_sorted_and_span_the_period() {
        let c = RateCurve {
            base_per_s: 1000.0,
            shape: Shape::Steady,
        };
        let t = arrival_times_s(&c, 200_000, 5);
        assert_eq!(t.len(), 200_000);
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
        assert!(t[0] >= 0.0 && t[t.len() - 1] <= 200.0);
        // Counts per 0.1 s of a Poisson process: mean 100, variance the mean (2000 buckets
        // give the ratio within 0.13 at 4 standard deviations).
        let mut counts = vec![0f64; 2000];
        for x in &t {
            counts[((x * 10.0) as usize).min(1999)] += 1.0;
        }
        let mean = counts.iter().sum::<f64>() / 2000.0;
        let var = counts.iter().map(|c| (c - mean).powi(2)).sum::<f64>() / 1999.0;
        assert!((mean - 100.0).abs() < 1e-9);
        assert!(
            (0.87..1.13).contains(&(var / mean)),
            "dispersion {}",
            var / mean
        );
    }
}
