//! Reductions: sum and mean over everything, and mean over one axis (e.g. tokens).

use super::host;
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::simd;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Sum of all elements, as a scalar tensor.
pub fn sum(x: &Tensor) -> Result<Tensor> {
    if let Storage::Cuda(s) = x.storage() {
        return Ok(Tensor::from_cuda(s.sum_all(1.0)?, vec![]));
    }
    Ok(Tensor::scalar(simd::sum(host(x, "sum")?)))
}

/// Mean of all elements (NaN for an empty tensor, as in PyTorch).
pub fn mean(x: &Tensor) -> Result<Tensor> {
    if let Storage::Cuda(s) = x.storage() {
        return Ok(Tensor::from_cuda(
            s.sum_all(1.0 / x.numel() as f32)?,
            vec![],
        ));
    }
    Ok(Tensor::scalar(
        simd::sum(host(x, "mean")?) / x.numel() as f32,
    ))
}

/// (outer, axis length, inner) sizes around `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Mean over `axis`, which is removed from the shape.
pub fn mean_axis(x: &Tensor, axis: usize) -> Result<Tensor> {
    if axis >= x.rank() {
        return Err(Error::shape(
            "mean_axis",
            format!("axis {axis} out of range for shape {:?}", x.shape()),
        ));
    }
    let (outer, len, inner) = split(x.shape(), axis);
    if len == 0 {
        return Err(Error::shape(
            "mean_axis",
            "cannot average over an empty axis",
        ));
    }
    let mut shape = x.shape().to_vec();
    shape.remove(axis);
    if let Storage::Cuda(s) = x.storage() {
        return Ok(Tensor::from_cuda(s.mean_axis(outer, len, inner)?, shape));
    }
    let d = host(x, "mean_axis")?;
    let mut out = crate::backend::cpu::pool::zeroed(outer * inner)?;
    for o in 0..outer {
        let dst = &mut out[o * inner..(o + 1) * inner];
        for t in 0..len {
            let base = (o * len + t) * inner;
            simd::add_assign(dst, &d[base..base + inner]);
        }
        let inv = 1.0 / len as f32;
        for v in dst.iter_mut() {
            *v *= inv;
        }
    }
    Ok(Tensor::cpu(out, shape))
}

enum Kind {
    Sum,
    Mean,
    MeanAxis(usize),
}

struct ReduceBackward(Kind);
impl BackwardOp for ReduceBackward {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Sum => "sum",
            Kind::Mean => "mean",
            Kind::MeanAxis(_) => "mean_axis",
        }
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let x = c.inputs[0];
        if let Storage::Cuda(g) = c.grad.storage() {
            let n = x.numel();
            let out = match self.0 {
                Kind::Sum => g.broadcast_scalar(n, 1.0)?,
                Kind::Mean => g.broadcast_scalar(n, 1.0 / n as f32)?,
                Kind::MeanAxis(axis) => {
                    let (outer, len, inner) = split(x.shape(), axis);
                    g.mean_axis_backward(outer, len, inner)?
                }
            };
            return Ok(vec![Some(Tensor::from_cuda(out, x.shape().to_vec()))]);
        }
        let g = host(c.grad, self.name())?;
        let out = match self.0 {
            Kind::Sum => vec![g[0]; x.numel()],
            Kind::Mean => vec![g[0] / x.numel() as f32; x.numel()],
            Kind::MeanAxis(axis) => {
                let (outer, len, inner) = split(x.shape(), axis);
                let inv = 1.0 / len as f32;
                let mut out = crate::backend::cpu::pool::zeroed(x.numel())?;
                for o in 0..outer {
                    let src = &g[o * inner..(o + 1) * inner];
                    for t in 0..len {
                        let base = (o * len + t) * inner;
                        simd::scale(src, inv, &mut out[base..base + inner]);
                    }
                }
                out
            }
        };
        Ok(vec![Some(Tensor::cpu(out, x.shape().to_vec()))])
    }
}

impl Tape {
    /// Sum of all elements.
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        let out = sum(self.value(x))?;
        Ok(self.push(out, &[x], || Box::new(ReduceBackward(Kind::Sum))))
    }

    /// Mean of all elements.
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        let out = mean(self.value(x))?;
        Ok(self.push(out, &[x], || Box::new(ReduceBackward(Kind::Mean))))
    }

    /// Mean over one axis, removing it (`[B, T, D]` with axis 1 gives `[B, D]`).
    pub fn mean_axis(&mut self, x: Var, axis: usize) -> Result<Var> {
        let out = mean_axis(self.value(x), axis)?;
        Ok(self.push(out, &[x], || Box::new(ReduceBackward(Kind::MeanAxis(axis)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, GradCheck};

    #[test]
    fn forward_hand_values() {
        let x = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[1, 3, 2]).unwrap();
        assert_eq!(sum(&x).unwrap().item().unwrap(), 21.0);
        assert_eq!(mean(&x).unwrap().item().unwrap(), 3.5);
        let m = mean_axis(&x, 1).unwrap();
        assert_eq!(m.shape(), &[1, 2]);
        assert_eq!(m.to_vec().unwrap(), vec![3.0, 4.0]);
        assert!(mean_axis(&x, 3).is_err());
    }

    #[test]
    fn gradients_match_finite_differences() {
        for shape in [&[1usize][..], &[9], &[3, 5, 7]] {
            check_gradients(&[shape], GradCheck::default(), |t, v| t.sum(v[0]));
            check_gradients(&[shape], GradCheck::default(), |t, v| t.mean(v[0]));
        }
        for axis in 0..3 {
            check_gradients(&[&[2, 3, 5]], GradCheck::default(), |t, v| {
                t.mean_axis(v[0], axis)
            });
        }
    }
}
