//! Inverted dropout: in training, each element is zeroed with probability `p` and the
//! survivors are scaled by `1 / (1 - p)`, so the expected value is unchanged and evaluation
//! needs no rescaling.
//!
//! The mask is drawn from the caller's [`Rng`]: each 64-bit draw decides two elements (low
//! 32 bits first, then high), an element being dropped when its 32-bit word is below
//! `round(p * 2^32)`. The same seed therefore gives the same mask on every platform.
//!
//! On CUDA the mask is not stored: one 64-bit draw from the [`Rng`] seeds the stateless hash
//! of [`crate::backend::cuda::dropout_keep`], which the forward and backward kernels evaluate alike. It is a
//! different mask from the CPU's for the same seed, but just as reproducible.

use super::host;
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::pool::try_alloc;
use crate::backend::cpu::simd;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

fn check_p(p: f32) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid(format!(
            "dropout: p must be in [0, 1), got {p}"
        )));
    }
    Ok(())
}

/// `n` mask values, each `0` (dropped, probability `p`) or `1 / (1 - p)`.
pub fn dropout_mask(n: usize, p: f32, rng: &mut Rng) -> Result<Vec<f32>> {
    check_p(p)?;
    let threshold = (p as f64 * 4_294_967_296.0).round() as u64;
    let keep = 1.0 / (1.0 - p);
    let value = |word: u64| if word < threshold { 0.0 } else { keep };
    let mut mask = try_alloc(n, "a dropout mask")?;
    for _ in 0..n / 2 {
        let r = rng.next_u64();
        mask.push(value(r & 0xffff_ffff));
        mask.push(value(r >> 32));
    }
    if n % 2 == 1 {
        mask.push(value(rng.next_u64() & 0xffff_ffff));
    }
    Ok(mask)
}

/// Plain (tape-free) dropout; returns `x` itself (sharing its buffer) when not training or
/// when `p == 0`, and then draws nothing from `rng`.
pub fn dropout(x: &Tensor, p: f32, training: bool, rng: &mut Rng) -> Result<Tensor> {
    Ok(apply(x, p, training, rng)?.map_or_else(|| x.clone(), |(out, _)| out))
}

/// How the mask of one application is reproduced for the backward pass.
enum Mask {
    /// 0 or 1 / (1 - p) per element: the output's derivative with respect to the input.
    Cpu(Vec<f32>),
    /// The arguments of the stateless CUDA kernel.
    Cuda { p: f32, seed: u64 },
}

/// The output and mask when dropout is active, `None` when it is the identity.
fn apply(x: &Tensor, p: f32, training: bool, rng: &mut Rng) -> Result<Option<(Tensor, Mask)>> {
    check_p(p)?;
    if !training || p == 0.0 {
        return Ok(None);
    }
    if let Storage::Cuda(s) = x.storage() {
        let seed = rng.next_u64();
        let out = Tensor::from_cuda(s.dropout(p, seed)?, x.shape().to_vec());
        return Ok(Some((out, Mask::Cuda { p, seed })));
    }
    let d = host(x, "dropout")?;
    let mask = dropout_mask(d.len(), p, rng)?;
    let mut out = crate::backend::cpu::pool::take(d.len())?;
    simd::mul(d, &mask, &mut out);
    Ok(Some((
        Tensor::cpu(out, x.shape().to_vec()),
        Mask::Cpu(mask),
    )))
}

struct DropoutBackward {
    mask: Mask,
}

impl BackwardOp for DropoutBackward {
    fn name(&self) -> &'static str {
        "dropout"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let mask = match (&self.mask, c.grad.storage()) {
            (Mask::Cpu(m), _) => m,
            // The same hash scales the gradient exactly as the forward scaled the input.
            (&Mask::Cuda { p, seed }, Storage::Cuda(g)) => {
                let out = Tensor::from_cuda(g.dropout(p, seed)?, c.grad.shape().to_vec());
                return Ok(vec![Some(out)]);
            }
            (Mask::Cuda { .. }, Storage::Cpu(_)) => {
                return Err(Error::invalid(
                    "dropout: a host gradient for a CUDA forward pass",
                ))
            }
        };
        let g = host(c.grad, "dropout")?;
        let mut out = crate::backend::cpu::pool::take(g.len())?;
        simd::mul(g, mask, &mut out);
        Ok(vec![Some(Tensor::cpu(out, c.grad.shape().to_vec()))])
    }
}

impl Tape {
    /// Inverted dropout: in training, zero each element with probability `p` and scale the
    /// rest by `1 / (1 - p)`, the mask drawn from `rng` so the same seed gives the same mask;
    /// `p` must be in `[0, 1)` (checked in every mode).
    ///
    /// Not training, or `p == 0`: the identity, returning `x` itself; nothing is recorded
    /// and `rng` is not advanced.
    pub fn dropout(&mut self, x: Var, p: f32, training: bool, rng: &mut Rng) -> Result<Var> {
        match apply(self.value(x), p, training, rng)? {
            None => Ok(x),
            Some((out, mask)) => Ok(self.push(out, &[x], || Box::new(DropoutBackward { mask }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, GradCheck};

    #[test]
    fn same_seed_same_mask_and_inverted_scaling() {
        let x = Tensor::full(&[13, 7], 1.0);
        let a = dropout(&x, 0.25, true, &mut Rng::new(42)).unwrap();
        let b = dropout(&x, 0.25, true, &mut Rng::new(42)).unwrap();
        let c = dropout(&x, 0.25, true, &mut Rng::new(43)).unwrap();
        let (a, b, c) = (
            a.to_vec().unwrap(),
            b.to_vec().unwrap(),
            c.to_vec().unwrap(),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Survivors of a ones tensor read exactly 1 / (1 - 0.25).
        assert!(a.iter().all(|&v| v == 0.0 || v == 1.0 / 0.75), "{a:?}");
        assert!(a.contains(&0.0) && a.contains(&(1.0 / 0.75)));

        // Values, not just the mask: y = x * mask.
        let mut rng = Rng::new(9);
        let x = Tensor::randn(&[3, 5], 1.0, &mut rng);
        let mask = dropout_mask(15, 0.5, &mut Rng::new(1)).unwrap();
        let y = dropout(&x, 0.5, true, &mut Rng::new(1)).unwrap();
        for ((&yv, &xv), &m) in y
            .to_vec()
            .unwrap()
            .iter()
            .zip(x.as_slice().unwrap())
            .zip(&mask)
        {
            assert_eq!(yv, xv * m);
        }
    }

    #[test]
    fn dropped_fraction_is_close_to_p() {
        let n = 100_003;
        let x = Tensor::full(&[n], 1.0);
        for p in [0.1f32, 0.5, 0.9] {
            let y = dropout(&x, p, true, &mut Rng::new(7))
                .unwrap()
                .to_vec()
                .unwrap();
            let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
            // The standard error is at most 0.0016; 0.01 is over six of them.
            assert!((zeros - p as f64).abs() < 0.01, "p {p}: dropped {zeros}");
            // Inverted scaling keeps the mean near 1.
            let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            assert!((mean - 1.0).abs() < 0.1, "p {p}: mean {mean}");
        }
    }

    #[test]
    fn identity_when_not_training_or_p_zero() {
        let mut rng = Rng::new(5);
        let x = Tensor::randn(&[4, 3], 1.0, &mut rng);
        let mut tape = Tape::new();
        let xv = tape.var(x.clone(), 0);
        let mut r = Rng::new(77);
        let y1 = tape.dropout(xv, 0.5, false, &mut r).unwrap();
        let y2 = tape.dropout(xv, 0.0, true, &mut r).unwrap();
        assert_eq!(tape.value(y1).to_vec().unwrap(), x.to_vec().unwrap());
        assert_eq!(tape.value(y2).to_vec().unwrap(), x.to_vec().unwrap());
        // No randomness was consumed.
        assert_eq!(r.next_u64(), Rng::new(77).next_u64());
        let y = dropout(&x, 0.3, false, &mut r).unwrap();
        assert_eq!(y.to_vec().unwrap(), x.to_vec().unwrap());
    }

    #[test]
    fn bad_p_is_refused() {
        let mut tape = Tape::new();
        let x = tape.var(Tensor::zeros(&[3]), 0);
        let mut rng = Rng::new(0);
        for p in [1.0f32, 1.5, -0.1, f32::NAN] {
            for training in [true, false] {
                let e = tape
                    .dropout(x, p, training, &mut rng)
                    .unwrap_err()
                    .to_string();
                assert!(e.contains("[0, 1)"), "{e}");
            }
        }
        assert!(dropout_mask(4, 1.0, &mut rng).is_err());
    }

    #[test]
    fn gradient_is_mask_times_scale() {
        let p = 0.4;
        let mut tape = Tape::new();
        let mut rng = Rng::new(3);
        let x = tape.var(Tensor::randn(&[5, 9], 1.0, &mut rng), 0);
        let y = tape.dropout(x, p, true, &mut Rng::new(123)).unwrap();
        let seed = Tensor::randn(&[5, 9], 1.0, &mut rng);
        let grads = tape.backward_with_seed(y, seed.clone()).unwrap();
        let mask = dropout_mask(45, p, &mut Rng::new(123)).unwrap();
        let g = grads.get(0).unwrap().to_vec().unwrap();
        for ((&gv, &sv), &m) in g.iter().zip(seed.as_slice().unwrap()).zip(&mask) {
            assert_eq!(gv, sv * m);
        }
        // Finite differences agree when every evaluation redraws the same mask.
        for shape in [&[1usize][..], &[7], &[3, 11]] {
            check_gradients(&[shape], GradCheck::default(), |t, v| {
                t.dropout(v[0], p, true, &mut Rng::new(8))
            });
        }
    }
}
