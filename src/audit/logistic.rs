//! L2-regularised logistic regression with an unpenalised intercept: the objective of
//! scikit-learn's `LogisticRegression()` with its defaults (C = 1, raw features, no
//! standardisation),
//!
//! ```text
//! F(w, b) = Σ_i ln(1 + exp(-s_i (w·x_i + b)))  +  ‖w‖² / (2C),    s_i = ±1,
//! ```
//!
//! minimised by damped Newton steps. The attack feature is one number per sample, so the
//! (d+1)×(d+1) Hessian is tiny; Newton reaches the optimum to machine precision in a
//! dozen steps, where lbfgs stops at its tolerance (sklearn's `tol = 1e-4`).

use crate::error::{Error, Result};

/// A fitted model: predicts class 1 where `coef·x + intercept > 0` (sklearn's rule).
#[derive(Clone, Debug, PartialEq)]
pub struct LogisticFit {
    pub coef: Vec<f64>,
    pub intercept: f64,
    /// Newton steps taken.
    pub iterations: usize,
    /// Whether the gradient vanished to the tolerance within the step budget.
    pub converged: bool,
}

impl LogisticFit {
    /// `coef·x + intercept` for one sample.
    pub fn decision(&self, x: &[f64]) -> f64 {
        self.intercept + self.coef.iter().zip(x).map(|(w, v)| w * v).sum::<f64>()
    }

    /// The predicted class (true = 1).
    pub fn predict(&self, x: &[f64]) -> bool {
        self.decision(x) > 0.0
    }

    /// Fraction of the rows of `x` (`d` features each) whose prediction equals `y`.
    pub fn accuracy(&self, x: &[f64], y: &[bool]) -> f64 {
        let d = self.coef.len();
        let hits = x
            .chunks_exact(d.max(1))
            .zip(y)
            .filter(|(row, &yi)| self.predict(row) == yi)
            .count();
        hits as f64 / y.len().max(1) as f64
    }
}

const MAX_ITER: usize = 100;

/// ln(1 + e^t) without overflow.
fn softplus(t: f64) -> f64 {
    t.max(0.0) + (-t.abs()).exp().ln_1p()
}

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// Solves `a·x = b` for a symmetric positive-definite `a` (row-major k×k) by Cholesky;
/// `None` if `a` is not numerically positive definite.
fn cholesky_solve(a: &[f64], b: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum();
            if i == j {
                let v = a[i * k + i] - s;
                if v <= 0.0 || !v.is_finite() {
                    return None;
                }
                l[i * k + i] = v.sqrt();
            } else {
                l[i * k + j] = (a[i * k + j] - s) / l[j * k + j];
            }
        }
    }
    let mut y = vec![0.0; k];
    for i in 0..k {
        y[i] = (b[i] - (0..i).map(|p| l[i * k + p] * y[p]).sum::<f64>()) / l[i * k + i];
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        x[i] = (y[i] - (i + 1..k).map(|p| l[p * k + i] * x[p]).sum::<f64>()) / l[i * k + i];
    }
    Some(x)
}

struct Problem<'a> {
    x: &'a [f64],
    y: &'a [bool],
    d: usize,
    inv_c: f64,
}

impl Problem<'_> {
    /// θ = (w_0..w_{d-1}, b).
    fn margin(&self, theta: &[f64], i: usize) -> f64 {
        let row = &self.x[i * self.d..(i + 1) * self.d];
        theta[self.d] + row.iter().zip(theta).map(|(v, w)| v * w).sum::<f64>()
    }

    fn objective(&self, theta: &[f64]) -> f64 {
        let data: f64 = (0..self.y.len())
            .map(|i| {
                let z = self.margin(theta, i);
                softplus(if self.y[i] { -z } else { z })
            })
            .sum();
        data + 0.5 * self.inv_c * theta[..self.d].iter().map(|w| w * w).sum::<f64>()
    }

    /// Gradient and Hessian (row-major, k = d+1).
    fn derivatives(&self, theta: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let k = self.d + 1;
        let mut g = vec![0.0; k];
        let mut h = vec![0.0; k * k];
        let mut xi = vec![1.0; k];
        for i in 0..self.y.len() {
            xi[..self.d].copy_from_slice(&self.x[i * self.d..(i + 1) * self.d]);
            let p = sigmoid(self.margin(theta, i));
            let r = p - if self.y[i] { 1.0 } else { 0.0 };
            let wgt = p * (1.0 - p);
            for a in 0..k {
                g[a] += r * xi[a];
                for b in 0..=a {
                    h[a * k + b] += wgt * xi[a] * xi[b];
                }
            }
        }
        for a in 0..self.d {
            g[a] += self.inv_c * theta[a];
            h[a * k + a] += self.inv_c;
        }
        for a in 0..k {
            for b in a + 1..k {
                h[a * k + b] = h[b * k + a];
            }
        }
        (g, h)
    }
}

/// Fits the model to `n = y.len()` rows of `d` features (`x` row-major, `n·d` values),
/// labels `y` (true = class 1), inverse regularisation strength `c` (sklearn's `C`).
///
/// Errors: no rows, `x`/`y` length mismatch, a single class, non-finite features, `c ≤ 0`.
pub fn fit_logistic(x: &[f64], d: usize, y: &[bool], c: f64) -> Result<LogisticFit> {
    let n = y.len();
    if n == 0 {
        return Err(Error::invalid("logistic regression: no samples"));
    }
    if d == 0 || x.len() != n.saturating_mul(d) {
        return Err(Error::shape(
            "fit_logistic",
            format!("{} feature values for {n} samples of {d} features", x.len()),
        ));
    }
    if !(c > 0.0 && c.is_finite()) {
        return Err(Error::invalid(format!(
            "logistic regression: C must be positive and finite, got {c}"
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "logistic regression: feature {} of sample {} is {}",
            i % d,
            i / d,
            x[i]
        )));
    }
    let n1 = y.iter().filter(|&&v| v).count();
    if n1 == 0 || n1 == n {
        return Err(Error::invalid(
            "logistic regression needs samples of both classes",
        ));
    }
    let prob = Problem {
        x,
        y,
        d,
        inv_c: 1.0 / c,
    };
    let k = d + 1;
    // Start from the best intercept-only model.
    let mut theta = vec![0.0; k];
    theta[d] = (n1 as f64 / (n - n1) as f64).ln();
    let mut f = prob.objective(&theta);
    let mut iterations = 0;
    let mut converged = false;
    while iterations < MAX_ITER {
        let (g, mut h) = prob.derivatives(&theta);
        let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // The gradient sums n terms, so its rounding noise grows with n.
        if gmax <= 1e-10 * n as f64 {
            converged = true;
            break;
        }
        iterations += 1;
        let neg_g: Vec<f64> = g.iter().map(|v| -v).collect();
        // With every probability saturated the intercept's curvature can underflow to 0;
        // a tiny ridge keeps the Newton system solvable and the step a descent direction.
        let step = match cholesky_solve(&h, &neg_g, k) {
            Some(s) => s,
            None => {
                let jitter = 1e-12 * (1.0 + h.iter().fold(0.0f64, |m, v| m.max(v.abs())));
                for a in 0..k {
                    h[a * k + a] += jitter;
                }
                cholesky_solve(&h, &neg_g, k).unwrap_or_else(|| neg_g.clone())
            }
        };
        let slope: f64 = g.iter().zip(&step).map(|(a, b)| a * b).sum();
        // Backtracking (Armijo) line search: full Newton steps near the optimum, damped ones
        // far from it where the quadratic model overshoots.
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..60 {
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(a, s)| a + t * s).collect();
            let fc = prob.objective(&cand);
            if fc <= f + 1e-4 * t * slope {
                theta = cand;
                f = fc;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        let step_max = step.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let scale = 1.0 + theta.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if !accepted || t * step_max <= 1e-15 * scale {
            // No further decrease is representable in f64: this is the optimum.
            converged = true;
            break;
        }
    }
    Ok(LogisticFit {
        coef: theta[..d].to_vec(),
        intercept: theta[d],
        iterations,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Bisection for the root of an increasing function on [lo, hi].
    fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64) -> f64 {
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if f(mid) > 0.0 {
                hi = mid
            } else {
                lo = mid
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn uninformative_feature_gives_the_log_odds_intercept() {
        // x = 0 everywhere: the penalty pins w to 0 and b is the log-odds of the labels.
        let y: Vec<bool> = (0..10).map(|i| i < 3).collect();
        let fit = fit_logistic(&[0.0; 10], 1, &y, 1.0).unwrap();
        assert!(fit.converged);
        assert!(fit.coef[0].abs() < 1e-12);
        assert!((fit.intercept - (3.0f64 / 7.0).ln()).abs() < 1e-12);
    }

    #[test]
    fn symmetric_separable_data_matches_the_stationarity_equation() {
        // m points at x=+1 labelled 1, m at x=-1 labelled 0: by symmetry b = 0, and
        // dF/dw = -2m·σ(-w) + w/C = 0 fixes w; C bounds w even though the data separate.
        for (m, c) in [(5usize, 1.0), (50, 1.0), (20, 0.1), (3, 10.0)] {
            let x: Vec<f64> = (0..2 * m).map(|i| if i < m { 1.0 } else { -1.0 }).collect();
            let y: Vec<bool> = (0..2 * m).map(|i| i < m).collect();
            let fit = fit_logistic(&x, 1, &y, c).unwrap();
            let w = bisect(|w| w / c - 2.0 * m as f64 * sigmoid(-w), 0.0, 1e3);
            assert!(fit.converged);
            assert!(
                (fit.coef[0] - w).abs() < 1e-9,
                "m={m} C={c}: {} vs {w}",
                fit.coef[0]
            );
            assert!(fit.intercept.abs() < 1e-9);
            assert_eq!(fit.accuracy(&x, &y), 1.0);
        }
    }

    #[test]
    fn overlapping_data_reach_a_stationary_minimum() {
        let mut rng = Rng::new(3);
        let n = 400;
        let d = 3;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let yi = i % 3 == 0;
            y.push(yi);
            for j in 0..d {
                let shift = if yi { 0.5 * (j as f64 + 1.0) } else { 0.0 };
                x.push(rng.normal() as f64 * (j as f64 + 1.0) + shift + 4.0);
            }
        }
        let fit = fit_logistic(&x, d, &y, 1.0).unwrap();
        assert!(fit.converged && fit.iterations < 30, "{fit:?}");
        let prob = Problem {
            x: &x,
            y: &y,
            d,
            inv_c: 1.0,
        };
        let mut theta = fit.coef.clone();
        theta.push(fit.intercept);
        let (g, _) = prob.derivatives(&theta);
        assert!(g.iter().all(|v| v.abs() < 1e-7), "gradient {g:?}");
        let f0 = prob.objective(&theta);
        for a in 0..=d {
            for s in [-1e-3, 1e-3] {
                let mut t = theta.clone();
                t[a] += s;
                assert!(prob.objective(&t) > f0);
            }
        }
        // Every coefficient points towards class 1's larger mean.
        assert!(fit.coef.iter().all(|&w| w > 0.0), "{fit:?}");
        let acc = fit.accuracy(&x, &y);
        assert!(acc > 0.67 && acc < 0.95, "accuracy {acc}");
    }

    #[test]
    fn far_separated_large_features_stay_stable() {
        // Margins in the thousands saturate every probability; the fit must stay finite.
        let x: Vec<f64> = (0..40)
            .map(|i| {
                if i < 20 {
                    1000.0 + i as f64
                } else {
                    -1000.0 - i as f64
                }
            })
            .collect();
        let y: Vec<bool> = (0..40).map(|i| i < 20).collect();
        let fit = fit_logistic(&x, 1, &y, 1.0).unwrap();
        assert!(fit.coef[0].is_finite() && fit.intercept.is_finite() && fit.coef[0] > 0.0);
        assert_eq!(fit.accuracy(&x, &y), 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(fit_logistic(&[], 1, &[], 1.0).is_err());
        assert!(fit_logistic(&[1.0, 2.0], 1, &[true, true], 1.0).is_err());
        assert!(fit_logistic(&[1.0], 1, &[true, false], 1.0).is_err());
        assert!(fit_logistic(&[1.0, 2.0], 0, &[true, false], 1.0).is_err());
        assert!(fit_logistic(&[1.0, f64::NAN], 1, &[true, false], 1.0).is_err());
        assert!(fit_logistic(&[1.0, 2.0], 1, &[true, false], 0.0).is_err());
        assert!(fit_logistic(&[1.0, 2.0], 1, &[true, false], f64::INFINITY).is_err());
    }
}
