//! Gradient clipping by global L2 norm (PyTorch's `clip_grad_norm_`).

use crate::autograd::Gradients;
use crate::backend::cpu::simd;
use crate::backend::cuda::{BinaryOp, CudaStorage};
use crate::backend::Storage;
use crate::error::Result;
use crate::tensor::Tensor;

/// Scales all gradients so their joint L2 norm is at most `max_norm`; returns the norm before
/// clipping. Non-finite norms are returned unchanged and leave the gradients alone, so the
/// caller can detect and reject the step.
///
/// CUDA gradients are reduced on their device (sum of the elementwise square), the partial
/// sums added up there, so each device costs one copy to the host, not one per tensor.
pub fn clip_grad_norm(grads: &mut Gradients, max_norm: f32) -> Result<f32> {
    let mut sq = 0.0f64;
    // Per device ordinal: the running sum of squares, one value on that device.
    let mut device_sums: Vec<(usize, CudaStorage)> = Vec::new();
    for (_, g) in grads.iter() {
        match g.storage() {
            Storage::Cpu(d) => sq += simd::dot(d, d) as f64,
            Storage::Cuda(d) => {
                let shape = g.shape();
                let part = d
                    .binary(d, BinaryOp::Mul, shape, shape, shape)?
                    .sum_all(1.0)?;
                match device_sums.iter_mut().find(|(o, _)| *o == d.ordinal()) {
                    Some((_, acc)) => acc.add_assign(&part)?,
                    None => device_sums.push((d.ordinal(), part)),
                }
            }
        }
    }
    for (_, acc) in &device_sums {
        sq += acc.to_vec()?[0] as f64;
    }
    let norm = sq.sqrt() as f32;
    if !norm.is_finite() {
        return Ok(norm);
    }
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for (_, g) in grads.iter_mut() {
            if let Storage::Cuda(d) = g.storage() {
                *g = Tensor::from_cuda(d.unary("scale", coef)?, g.shape().to_vec());
                continue;
            }
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
