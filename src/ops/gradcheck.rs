//! Finite-difference checking of backward rules, used by every op's tests (and available to
//! anyone adding an op).
//!
//! The output is projected onto fixed random weights `w`, so one backward pass with seed `w`
//! gives the exact gradient of the scalar `sum(w * f(x))`, which is then compared with the
//! central difference `(S(x + eps) - S(x - eps)) / 2 eps` for every input element, the sum
//! taken in f64.

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Tolerances and inputs of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Step of the central difference.
    pub eps: f32,
    /// Relative tolerance.
    pub rtol: f32,
    /// Absolute tolerance.
    pub atol: f32,
    /// Seed for inputs and projection weights.
    pub seed: u64,
    /// Keep generated inputs at least this far from zero (for kinks such as ReLU at 0).
    pub min_abs: f32,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 3e-3,
            rtol: 2e-2,
            atol: 2e-3,
            seed: 1234,
            min_abs: 0.0,
        }
    }
}

/// Generates normal inputs of the given shapes and checks `f`'s gradients; panics on mismatch.
pub fn check_gradients<F>(shapes: &[&[usize]], cfg: GradCheck, f: F)
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    let mut rng = Rng::new(cfg.seed);
    let inputs: Vec<Tensor> = shapes
        .iter()
        .map(|s| {
            let mut t = Tensor::randn(s, 1.0, &mut rng);
            for v in t.data_mut().unwrap() {
                if v.abs() < cfg.min_abs {
                    *v = if *v < 0.0 {
                        *v - cfg.min_abs
                    } else {
                        *v + cfg.min_abs
                    };
                }
            }
            t
        })
        .collect();
    check_gradients_at(&inputs, cfg, f);
}

fn projected(out: &Tensor, w: &[f32]) -> f64 {
    out.to_vec()
        .unwrap()
        .iter()
        .zip(w)
        .map(|(&o, &w)| o as f64 * w as f64)
        .sum()
}

/// Checks `f`'s gradients at the given inputs; panics with the offending element on mismatch.
pub fn check_gradients_at<F>(inputs: &[Tensor], cfg: GradCheck, f: F)
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    let eval = |xs: &[Tensor]| -> Tensor {
        let mut tape = Tape::no_grad();
        let vars: Vec<Var> = xs.iter().map(|x| tape.constant(x.clone())).collect();
        let out = f(&mut tape, &vars).expect("forward failed");
        tape.value(out).clone()
    };
    let out0 = eval(inputs);
    let mut rng = Rng::new(cfg.seed ^ 0x5eed);
    let w: Vec<f32> = (0..out0.numel()).map(|_| rng.normal()).collect();

    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| tape.var(x.clone(), i))
        .collect();
    let out = f(&mut tape, &vars).expect("forward failed");
    let seed = Tensor::from_vec(w.clone(), tape.value(out).shape()).unwrap();
    let grads = tape.backward_with_seed(out, seed).expect("backward failed");

    for (i, x) in inputs.iter().enumerate() {
        let analytic = match grads.get(i) {
            Some(g) => g.to_vec().unwrap(),
            None => vec![0.0; x.numel()],
        };
        assert_eq!(analytic.len(), x.numel(), "gradient {i} has the wrong size");
        for k in 0..x.numel() {
            let mut xs = inputs.to_vec();
            let base = x.to_vec().unwrap();
            let mut plus = base.clone();
            plus[k] += cfg.eps;
            xs[i] = Tensor::from_vec(plus, x.shape()).unwrap();
            let sp = projected(&eval(&xs), &w);
            let mut minus = base;
            minus[k] -= cfg.eps;
            xs[i] = Tensor::from_vec(minus, x.shape()).unwrap();
            let sm = projected(&eval(&xs), &w);
            let numeric = ((sp - sm) / (2.0 * cfg.eps as f64)) as f32;
            let a = analytic[k];
            let tol = cfg.atol + cfg.rtol * a.abs().max(numeric.abs());
            assert!(
                (a - numeric).abs() <= tol,
                "input {i} (shape {:?}) element {k}: analytic {a} vs numeric {numeric}",
                x.shape()
            );
        }
    }
}
