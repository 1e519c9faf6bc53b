//! Views that change the shape but not the data (reshape, flatten), and row ranges.

use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::pool;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Values per row (per index of the first dimension) of `x`.
fn row_len(x: &Tensor) -> usize {
    x.shape()[1..].iter().product()
}

/// Rows `start..start + len` of `x` (along the first dimension), on `x`'s device: a copy of
/// one contiguous range.
pub fn narrow_rows(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let rows = x.shape().first().copied().unwrap_or(0);
    if x.rank() == 0 || !matches!(start.checked_add(len), Some(end) if end <= rows) {
        return Err(Error::shape(
            "narrow_rows",
            format!("rows {start}..{start}+{len} of shape {:?}", x.shape()),
        ));
    }
    let per = row_len(x);
    let mut shape = x.shape().to_vec();
    shape[0] = len;
    match x.storage() {
        Storage::Cuda(s) => Ok(Tensor::from_cuda(s.range(start * per, len * per)?, shape)),
        Storage::Cpu(d) => {
            let mut out = pool::take(len * per)?;
            out.copy_from_slice(&d[start * per..(start + len) * per]);
            Ok(Tensor::cpu(out, shape))
        }
    }
}

/// The gradient of rows `start..` of a tensor of shape `full`: `g` in those rows, zeros
/// elsewhere.
fn place_rows(g: &Tensor, full: &[usize], start: usize) -> Result<Tensor> {
    let total: usize = full.iter().product();
    let offset = start * full[1..].iter().product::<usize>();
    match g.storage() {
        Storage::Cuda(s) => Ok(Tensor::from_cuda(s.placed(total, offset)?, full.to_vec())),
        Storage::Cpu(d) => {
            let mut out = pool::zeroed(total)?;
            out[offset..offset + d.len()].copy_from_slice(d);
            Ok(Tensor::cpu(out, full.to_vec()))
        }
    }
}

struct NarrowRowsBackward {
    start: usize,
}
impl BackwardOp for NarrowRowsBackward {
    fn name(&self) -> &'static str {
        "narrow_rows"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(place_rows(
            c.grad,
            c.inputs[0].shape(),
            self.start,
        )?)])
    }
}

struct ReshapeBackward;
impl BackwardOp for ReshapeBackward {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(c.grad.reshape(c.inputs[0].shape())?)])
    }
}

impl Tape {
    /// Same data, new shape; one dimension may be `usize::MAX` to infer it.
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let out = self.value(x).reshape(shape)?;
        Ok(self.push(out, &[x], || Box::new(ReshapeBackward)))
    }

    /// Collapses every dimension after the first: `[N, ...] -> [N, prod(...)]`.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let n = self.value(x).shape().first().copied().unwrap_or(1);
        self.reshape(x, &[n, usize::MAX])
    }

    /// Rows `start..start + len` of `x` along the first dimension (a copy); the gradient
    /// flows back into those rows only. One batch evaluated in one pass splits into its
    /// parts with it.
    pub fn narrow_rows(&mut self, x: Var, start: usize, len: usize) -> Result<Var> {
        let out = narrow_rows(self.value(x), start, len)?;
        Ok(self.push(out, &[x], || Box::new(NarrowRowsBackward { start })))
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::gradcheck::{check_gradients, GradCheck};
    use crate::tensor::Tensor;

    #[test]
    fn flatten_and_reshape_gradients() {
        check_gradients(&[&[2, 3, 4]], GradCheck::default(), |t, v| t.flatten(v[0]));
        check_gradients(&[&[6, 5]], GradCheck::default(), |t, v| {
            t.reshape(v[0], &[3, 10])
        });
    }

    #[test]
    fn narrow_rows_gradients() {
        // Leading, middle and trailing ranges, of vectors and of higher-rank tensors.
        check_gradients(&[&[5]], GradCheck::default(), |t, v| {
            t.narrow_rows(v[0], 0, 2)
        });
        check_gradients(&[&[5, 3]], GradCheck::default(), |t, v| {
            t.narrow_rows(v[0], 1, 3)
        });
        check_gradients(&[&[4, 2, 3]], GradCheck::default(), |t, v| {
            t.narrow_rows(v[0], 2, 2)
        });
        // Both halves of one tensor, recombined: every row gets its gradient exactly once.
        check_gradients(&[&[6, 2]], GradCheck::default(), |t, v| {
            let a = t.narrow_rows(v[0], 0, 4)?;
            let b = t.narrow_rows(v[0], 4, 2)?;
            let a = t.mean(a)?;
            let b = t.square(b)?;
            let b = t.mean(b)?;
            t.add(a, b)
        });
    }

    #[test]
    fn narrow_rows_values_and_bounds() {
        let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[4, 3]).unwrap();
        let r = super::narrow_rows(&x, 1, 2).unwrap();
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(r.to_vec().unwrap(), [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!(super::narrow_rows(&x, 4, 0).unwrap().shape(), &[0, 3]);
        assert!(super::narrow_rows(&x, 3, 2).is_err());
        assert!(super::narrow_rows(&x, usize::MAX, 2).is_err());
        assert!(super::narrow_rows(&Tensor::scalar(1.0), 0, 1).is_err());
    }
}
