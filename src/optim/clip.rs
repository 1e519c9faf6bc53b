//! Gradient clipping by global L2 norm (PyTorch's `clip_grad_norm_`).

use crate::autograd::Gradients;
use crate::backend::cpu::simd;
use crate::error::Result;

/// Scales all gradients so their joint L2 norm is at most `max_norm`; returns the norm before
/// clipping. Non-finite norms are returned unchanged and leave the gradients alone, so the
/// caller can detect and reject the step.
pub fn clip_grad_norm(grads: &mut Gradients, max_norm: f32) -> Result<f32> {
    let mut sq = 0.0f64;
    for (_, g) in grads.iter() {
        let d = g.cpu_data("clip_grad_norm")?;
        sq += simd::dot(d, d) as f64;
    }
    let norm = sq.sqrt() as f32;
    if !norm.is_finite() {
        return Ok(norm);
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for (_, g) in grads.iter_mut() {
            for v in g.data_mut()? {
                *v *= coef;
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn clips_to_the_global_norm() {
        let mut g = Gradients::default();
        g.set(0, Tensor::from_slice(&[3.0], &[1]).unwrap());
        g.set(2, Tensor::from_slice(&[0.0, 4.0], &[2]).unwrap());
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        assert!((g.get(0).unwrap().item().unwrap() - 0.6).abs() < 1e-5);
        assert!((g.get(2).unwrap().to_vec().unwrap()[1] - 0.8).abs() < 1e-5);
        // below the limit: untouched
        let n = clip_grad_norm(&mut g, 10.0).unwrap();
        assert!((n - 1.0).abs() < 1e-5);
        assert!((g.get(0).unwrap().item().unwrap() - 0.6).abs() < 1e-5);
    }
}
