//! The Universal Scalability Law (Gunther): fit `X(N) = λN / (1 + σ(N−1) + κN(N−1))` to
//! measured (shards, throughput) points by nonlinear least squares, say how well it fits, and
//! evaluate the curve for sizing.
//!
//! - `λ` is the throughput of one shard with no contention, `σ` the contention coefficient
//!   (the serial share: queueing for something shared), `κ` the coherency coefficient (the
//!   cost of keeping shared state consistent, growing with N²). With `κ > 0` throughput peaks
//!   at `N* = sqrt((1 − σ) / κ)` and falls beyond it.
//! - When the points include N = 1, `λ` is its measured throughput (Gunther's normalisation)
//!   and only `σ` and `κ` are fitted; otherwise all three are. Either way at least 3 distinct
//!   N are required: with fewer, any curve through the points is invented, and [`fit`] says
//!   so instead.
//! - The fit minimises the squared throughput residuals (Levenberg–Marquardt, started from
//!   the linearised least-squares solution and from a small grid, best result kept), with
//!   `σ, κ ≥ 0` and `λ > 0`. Its quality is R² over the throughputs and the residual of
//!   every point, with the residual degrees of freedom (points − fitted parameters): with
//!   none left, R² is 1 by construction and says nothing.

use serde::{Deserialize, Serialize};

/// Fewest distinct shard counts a fit needs.
pub const DISTINCT_N_MIN: usize = 3;
/// Most iterations of one Levenberg–Marquardt descent.
const ITERATIONS_MAX: usize = 2_000;

/// A fitted curve and how well it fits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// Throughput of one shard without contention, per second.
    pub lambda: f64,
    /// Contention coefficient.
    pub sigma: f64,
    /// Coherency coefficient.
    pub kappa: f64,
    /// Whether `lambda` was fitted (`false`: taken from the measured N = 1 throughput).
    pub lambda_fitted: bool,
    /// Coefficient of determination over the throughputs; `None` when they are all equal.
    pub r_squared: Option<f64>,
    /// Points minus fitted parameters; 0 means the curve passes through every point by
    /// construction, and R² tells nothing.
    pub degrees_of_freedom: usize,
    /// Root mean square of the residuals, per second.
    pub rmse: f64,
    /// Each point, its fitted value and the residual.
    pub residuals: Vec<Residual>,
    /// The shard count where the curve peaks (`sqrt((1 − σ) / κ)`), if `κ > 0`.
    pub peak_n: Option<f64>,
}

/// One point of a fit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Residual {
    /// Shards.
    pub n: f64,
    /// Measured throughput, per second.
    pub measured: f64,
    /// The curve's throughput at `n`.
    pub fitted: f64,
    /// `measured − fitted`.
    pub residual: f64,
}

/// `X(N)` for the given coefficients.
pub fn throughput(lambda: f64, sigma: f64, kappa: f64, n: f64) -> f64 {
    lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

impl UslFit {
    /// The fitted curve at `n` shards.
    pub fn at(&self, n: f64) -> f64 {
        throughput(self.lambda, self.sigma, self.kappa, n)
    }
}

/// Fit the law to `(shards, throughput per second)` points; `Err` explains why there is no
/// fit (too few distinct shard counts, or a point that is not a positive finite number).
pub fn fit(points: &[(f64, f64)]) -> Result<UslFit, String> {
    for &(n, x) in points {
        if !(n.is_finite() && n >= 1.0 && x.is_finite() && x > 0.0) {
            return Err(format!(
                "the point ({n}, {x}) is not a shard count >= 1 with a positive throughput"
            ));
        }
    }
    let mut distinct: Vec<f64> = points.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < DISTINCT_N_MIN {
        return Err(format!(
            "no fit possible with {} point{} (distinct shard counts): the law has 3 \
             coefficients, a fit needs at least {DISTINCT_N_MIN}",
            distinct.len(),
            if distinct.len() == 1 { "" } else { "s" }
        ));
    }
    let ones: Vec<f64> = points.iter().filter(|p| p.0 == 1.0).map(|p| p.1).collect();
    let lambda_fixed = (!ones.is_empty()).then(|| ones.iter().sum::<f64>() / ones.len() as f64);

    // Starting points: the linearised solution and a small grid.
    let lambda0 = lambda_fixed.unwrap_or_else(|| {
        // The smallest N's throughput per shard, a little above: contention only lowers it.
        let (n, x) = points
            .iter()
            .copied()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("at least 3 points");
        x / n
    });
    let mut starts = vec![linearised(points, lambda0)];
    for sigma in [0.0, 0.01, 0.1, 0.5] {
        for kappa in [0.0, 1e-4, 1e-3, 1e-2] {
            starts.push((lambda0, sigma, kappa));
        }
    }
    let best = starts
        .into_iter()
        .map(|s| descend(points, s, lambda_fixed.is_none()))
        .min_by(|a, b| sse(points, *a).total_cmp(&sse(points, *b)))
        .expect("at least one start");
    let (lambda, sigma, kappa) = best;

    let residuals: Vec<Residual> = points
        .iter()
        .map(|&(n, x)| {
            let fitted = throughput(lambda, sigma, kappa, n);
            Residual {
                n,
                measured: x,
                fitted,
                residual: x - fitted,
            }
        })
        .collect();
    let sse = sse(points, best);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let sst: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let params = if lambda_fixed.is_some() { 2 } else { 3 };
    Ok(UslFit {
        lambda,
        sigma,
        kappa,
        lambda_fitted: lambda_fixed.is_none(),
        r_squared: (sst > 0.0).then(|| 1.0 - sse / sst),
        degrees_of_freedom: points.len().saturating_sub(params),
        rmse: (sse / points.len() as f64).sqrt(),
        residuals,
        peak_n: (kappa > 0.0).then(|| ((1.0 - sigma).max(0.0) / kappa).sqrt()),
    })
}

fn sse(points: &[(f64, f64)], (lambda, sigma, kappa): (f64, f64, f64)) -> f64 {
    points
        .iter()
        .map(|&(n, x)| (x - throughput(lambda, sigma, kappa, n)).powi(2))
        .sum()
}

/// `N·λ/X − 1 = σ(N−1) + κN(N−1)` is linear in σ and κ: solve it by least squares.
fn linearised(points: &[(f64, f64)], lambda: f64) -> (f64, f64, f64) {
    let (mut aa, mut ab, mut bb, mut ay, mut by) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(n, x) in points {
        let (a, b, y) = (n - 1.0, n * (n - 1.0), n * lambda / x - 1.0);
        aa += a * a;
        ab += a * b;
        bb += b * b;
        ay += a * y;
        by += b * y;
    }
    let det = aa * bb - ab * ab;
    if det.abs() < f64::EPSILON * aa * bb || det == 0.0 {
        return (lambda, 0.0, 0.0);
    }
    let sigma = (ay * bb - by * ab) / det;
    let kappa = (aa * by - ab * ay) / det;
    (lambda, sigma.max(0.0), kappa.max(0.0))
}

/// Levenberg–Marquardt from `start`; `lambda` moves only when `fit_lambda`.
fn descend(points: &[(f64, f64)], start: (f64, f64, f64), fit_lambda: bool) -> (f64, f64, f64) {
    let k = if fit_lambda { 3 } else { 2 };
    let mut p = start;
    let mut cost = sse(points, p);
    let mut mu = 1e-3;
    for _ in 0..ITERATIONS_MAX {
        // Normal equations J^T J and J^T r, parameters ordered (sigma, kappa, lambda).
        let mut jtj = [[0.0f64; 3]; 3];
        let mut jtr = [0.0f64; 3];
        for &(n, x) in points {
            let (lambda, sigma, kappa) = p;
            let d = 1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0);
            let f = lambda * n / d;
            let r = x - f;
            let grad = [
                -lambda * n * (n - 1.0) / (d * d),
                -lambda * n * n * (n - 1.0) / (d * d),
                n / d,
            ];
            for i in 0..k {
                jtr[i] += grad[i] * r;
                for j in 0..k {
                    jtj[i][j] += grad[i] * grad[j];
                }
            }
        }
        let mut improved = false;
        for _ in 0..40 {
            let mut a = jtj;
            for (i, row) in a.iter_mut().enumerate().take(k) {
                row[i] += mu * jtj[i][i].max(1e-300);
            }
            let Some(step) = solve(&a, &jtr, k) else {
                mu *= 10.0;
                continue;
            };
            let next = (
                if fit_lambda {
                    (p.0 + step[2]).max(f64::MIN_POSITIVE)
                } else {
                    p.0
                },
                (p.1 + step[0]).max(0.0),
                (p.2 + step[1]).max(0.0),
            );
            let next_cost = sse(points, next);
            if next_cost < cost {
                let gain = cost - next_cost;
                p = next;
                cost = next_cost;
                mu = (mu / 3.0).max(1e-12);
                improved = gain > cost * 1e-15 && gain > 0.0;
                break;
            }
            mu *= 2.0;
        }
        if !improved {
            break;
        }
    }
    p
}

/// Solve the `k`×`k` system `a x = b` by Gaussian elimination with partial pivoting.
fn solve(a: &[[f64; 3]; 3], b: &[f64; 3], k: usize) -> Option<[f64; 3]> {
    let mut m = *a;
    let mut v = *b;
    for col in 0..k {
        let pivot = (col..k).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 || !m[pivot][col].is_finite() {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        let pivot_row = m[col];
        for row in col + 1..k {
            let f = m[row][col] / pivot_row[col];
            for (x, p) in m[row].iter_mut().zip(pivot_row).take(k).skip(col) {
                *x -= f * p;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..k).rev() {
        let s: f64 = (row + 1..k).map(|c| m[row][c] * x[c]).sum();
        x[row] = (v[row] - s) / m[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(lambda: f64, sigma: f64, kappa: f64, ns: &[f64], noise: &[f64]) -> Vec<(f64, f64)> {
        ns.iter()
            .enumerate()
            .map(|(i, &n)| {
                let e = noise.get(i % noise.len().max(1)).copied().unwrap_or(0.0);
                (n, throughput(lambda, sigma, kappa, n) * (1.0 + e))
            })
            .collect()
    }

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol
    }

    #[test]
    fn recovers_exact_coefficients_with_lambda_from_n1() {
        let p = points(
            10_000.0,
            0.05,
            0.002,
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
            &[],
        );
        let f = fit(&p).unwrap();
        assert!(!f.lambda_fitted);
        assert!(close(f.lambda, 10_000.0, 1e-6));
        assert!(close(f.sigma, 0.05, 1e-7), "{f:?}");
        assert!(close(f.kappa, 0.002, 1e-8), "{f:?}");
        assert!(f.r_squared.unwrap() > 1.0 - 1e-12);
        assert_eq!(f.degrees_of_freedom, 4);
        let peak = f.peak_n.unwrap();
        assert!(close(peak, (0.95f64 / 0.002).sqrt(), 1e-3));
    }

    #[test]
    fn recovers_exact_coefficients_with_lambda_fitted() {
        let p = points(2_500.0, 0.1, 0.0005, &[2.0, 3.0, 6.0, 12.0, 24.0], &[]);
        let f = fit(&p).unwrap();
        assert!(f.lambda_fitted);
        assert!(close(f.lambda, 2_500.0, 1e-3), "{f:?}");
        assert!(close(f.sigma, 0.1, 1e-6), "{f:?}");
        assert!(close(f.kappa, 0.0005, 1e-8), "{f:?}");
    }

    #[test]
    fn recovers_coefficients_through_noise() {
        // ±2% multiplicative noise (a fixed, sign-alternating pattern, so the test is
        // deterministic), over a range of N where both effects show: the coefficients come
        // back within a few hundredths (σ) and a fifth (κ), and the fit says it is good.
        let noise = [0.02, -0.015, 0.01, -0.02, 0.015, -0.01, 0.005, -0.005];
        let ns = [1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0];
        let p = points(10_000.0, 0.03, 0.0008, &ns, &noise);
        let f = fit(&p).unwrap();
        assert!(close(f.sigma, 0.03, 0.02), "{f:?}");
        assert!(close(f.kappa, 0.0008, 0.0008 * 0.2), "{f:?}");
        assert!(f.r_squared.unwrap() > 0.98, "{f:?}");
        let worst = f.residuals.iter().map(|r| (r.residual / r.measured).abs());
        assert!(worst.fold(0.0, f64::max) < 0.05, "{f:?}");
    }

    #[test]
    fn linear_scaling_fits_zero_coefficients() {
        let p: Vec<(f64, f64)> = [1.0, 2.0, 4.0].iter().map(|&n| (n, 1000.0 * n)).collect();
        let f = fit(&p).unwrap();
        assert!(f.sigma < 1e-9 && f.kappa < 1e-9, "{f:?}");
        assert_eq!(f.peak_n, None);
        assert_eq!(f.degrees_of_freedom, 1);
    }

    #[test]
    fn too_few_points_is_no_fit() {
        let two = [(1.0, 100.0), (2.0, 180.0), (2.0, 185.0)];
        let why = fit(&two).unwrap_err();
        assert!(why.contains("no fit possible with 2 points"), "{why}");
        assert!(fit(&[(1.0, 100.0)]).unwrap_err().contains("1 point "));
        assert!(fit(&[(1.0, 100.0), (2.0, f64::NAN), (3.0, 1.0)]).is_err());
        assert!(fit(&[(0.0, 100.0), (2.0, 1.0), (3.0, 1.0)]).is_err());
    }

    #[test]
    fn retrograde_points_give_a_peak() {
        let p = points(1_000.0, 0.2, 0.05, &[1.0, 2.0, 3.0, 4.0, 6.0, 8.0], &[]);
        let f = fit(&p).unwrap();
        let peak = f.peak_n.unwrap();
        assert!(close(peak, (0.8f64 / 0.05).sqrt(), 1e-3), "{f:?}");
        assert!(f.at(8.0) < f.at(4.0));
    }
}
