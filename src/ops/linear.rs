//! Matrix products: `matmul` and the fused `linear` layer, whose weight is stored `[out, in]`
//! (PyTorch's `nn.Linear`) or `[in, out]` (`x @ W + b`: ONNX `MatMul` + `Add`, and the dense
//! layers of most other frameworks). The layout only flips a GEMM transpose flag, so neither
//! layout copies its weight.

use super::{expect_rank, host, same_device};
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::{matmul as gemm, matmul_bias, Transpose};
use crate::backend::{cuda, Storage};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `op(a) @ op(b)` into a new `[m, n]` tensor of `shape`, on the operands' device: cuBLAS
/// for CUDA tensors, the CPU GEMM on the host. `init` (a bias row) is added to every row.
#[allow(clippy::too_many_arguments)]
fn product(
    op: &'static str,
    (m, k, n): (usize, usize, usize),
    a: &Tensor,
    ta: Transpose,
    b: &Tensor,
    tb: Transpose,
    init: Option<&Tensor>,
    shape: Vec<usize>,
) -> Result<Tensor> {
    if let (Storage::Cuda(x), Storage::Cuda(y)) = (a.storage(), b.storage()) {
        let (mut out, beta) = match init.map(|t| t.storage()) {
            Some(Storage::Cuda(bias)) => (bias.repeat_rows(m)?, 1.0),
            _ => (cuda::CudaStorage::zeros(m * n, x.ordinal())?, 0.0),
        };
        let (ta, tb) = (ta == Transpose::Yes, tb == Transpose::Yes);
        cuda::gemm(m, k, n, 1.0, x, ta, y, tb, beta, &mut out)?;
        return Ok(Tensor::from_cuda(out, shape));
    }
    // Written in full by the GEMM: β = 0 ignores C, and a bias replaces it.
    let mut out = crate::backend::cpu::pool::take(m * n)?;
    let (a, b) = (host(a, op)?, host(b, op)?);
    match init {
        Some(bias) => matmul_bias(m, k, n, a, ta, b, tb, host(bias, op)?, &mut out),
        None => gemm(m, k, n, 1.0, a, ta, b, tb, 0.0, &mut out),
    }
    Ok(Tensor::cpu(out, shape))
}

/// `a @ b` for `a: [m, k]`, `b: [k, n]`.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    expect_rank(a, 2, "matmul", "left operand")?;
    expect_rank(b, 2, "matmul", "right operand")?;
    same_device(a, b, "matmul")?;
    let (m, k, n) = (a.dim(0), a.dim(1), b.dim(1));
    if b.dim(0) != k {
        return Err(Error::shape(
            "matmul",
            format!("{:?} @ {:?}: inner dimensions differ", a.shape(), b.shape()),
        ));
    }
    product(
        "matmul",
        (m, k, n),
        a,
        Transpose::No,
        b,
        Transpose::No,
        None,
        vec![m, n],
    )
}

/// Splits `[..., in]` into (rows, in).
fn rows_of(x: &Tensor, in_features: usize) -> Result<usize> {
    if x.rank() == 0 || *x.shape().last().unwrap() != in_features {
        return Err(Error::shape(
            "linear",
            format!(
                "input of shape {:?} does not end in in_features = {in_features}",
                x.shape()
            ),
        ));
    }
    // The leading dimensions' product, not numel / in_features: in_features may be 0.
    Ok(x.shape()[..x.rank() - 1].iter().product())
}

/// How a linear layer stores its weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[out, in]`, as PyTorch's `nn.Linear`: `y = x @ w^T + b`.
    #[default]
    OutIn,
    /// `[in, out]`: `y = x @ w + b`.
    InOut,
}

impl WeightLayout {
    /// `(out, in)` of a weight of this layout.
    fn out_in(self, w: &Tensor) -> (usize, usize) {
        match self {
            WeightLayout::OutIn => (w.dim(0), w.dim(1)),
            WeightLayout::InOut => (w.dim(1), w.dim(0)),
        }
    }

    /// The transpose flag that makes the stored weight read as `[in, out]`.
    fn as_in_out(self) -> Transpose {
        match self {
            WeightLayout::OutIn => Transpose::Yes,
            WeightLayout::InOut => Transpose::No,
        }
    }
}

/// `y = x @ w^T + b` over the last dimension of `x`; `w: [out, in]`, `b: [out]`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    linear_with(x, w, b, WeightLayout::OutIn)
}

/// The linear layer with its weight stored in `layout`; `b: [out]`.
pub fn linear_with(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    layout: WeightLayout,
) -> Result<Tensor> {
    expect_rank(w, 2, "linear", "weight")?;
    same_device(x, w, "linear")?;
    let (out_f, in_f) = layout.out_in(w);
    let rows = rows_of(x, in_f)?;
    if let Some(b) = b {
        same_device(x, b, "linear")?;
        if b.shape() != [out_f] {
            return Err(Error::shape(
                "linear",
                format!("bias of shape {:?} for {out_f} outputs", b.shape()),
            ));
        }
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = out_f;
    product(
        "linear",
        (rows, in_f, out_f),
        x,
        Transpose::No,
        w,
        layout.as_in_out(),
        b,
        shape,
    )
}

struct MatmulBackward;
impl BackwardOp for MatmulBackward {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let (a, b, g) = (c.inputs[0], c.inputs[1], c.grad);
        let (m, k, n) = (a.dim(0), a.dim(1), b.dim(1));
        let ga = if c.needs[0] {
            let (mkn, no, yes) = ((m, n, k), Transpose::No, Transpose::Yes);
            Some(product("matmul", mkn, g, no, b, yes, None, vec![m, k])?)
        } else {
            None
        };
        let gb = if c.needs[1] {
            let (mkn, no, yes) = ((k, m, n), Transpose::No, Transpose::Yes);
            Some(product("matmul", mkn, a, yes, g, no, None, vec![k, n])?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

struct LinearBackward {
    has_bias: bool,
    layout: WeightLayout,
}
impl BackwardOp for LinearBackward {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let (x, w, g) = (c.inputs[0], c.inputs[1], c.grad);
        let (out_f, in_f) = self.layout.out_in(w);
        let rows = rows_of(x, in_f)?;
        let (no, yes) = (Transpose::No, Transpose::Yes);
        // dx = g @ w_io^T, where w_io is the weight read as [in, out].
        let gx = if c.needs[0] {
            let shape = x.shape().to_vec();
            let tw = match self.layout {
                WeightLayout::OutIn => no,
                WeightLayout::InOut => yes,
            };
            Some(product(
                "linear",
                (rows, out_f, in_f),
                g,
                no,
                w,
                tw,
                None,
                shape,
            )?)
        } else {
            None
        };
        // dw = g^T @ x ([out, in]) or x^T @ g ([in, out]), in the weight's own layout.
        let gw = if c.needs[1] {
            Some(match self.layout {
                WeightLayout::OutIn => product(
                    "linear",
                    (out_f, rows, in_f),
                    g,
                    yes,
                    x,
                    no,
                    None,
                    vec![out_f, in_f],
                )?,
                WeightLayout::InOut => product(
                    "linear",
                    (in_f, rows, out_f),
                    x,
                    yes,
                    g,
                    no,
                    None,
                    vec![in_f, out_f],
                )?,
            })
        } else {
            None
        };
        let mut result = vec![gx, gw];
        if self.has_bias {
            result.push(if c.needs[2] {
                Some(super::elementwise::reduce_to_shape(g, &[out_f])?)
            } else {
                None
            });
        }
        Ok(result)
    }
}

impl Tape {
    /// `a @ b` for 2-D operands.
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let out = matmul(self.value(a), self.value(b))?;
        Ok(self.push(out, &[a, b], || Box::new(MatmulBackward)))
    }

    /// `x @ w^T + b` over the last dimension of `x` (weight `[out, in]`, bias `[out]`).
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        self.linear_with(x, w, b, WeightLayout::OutIn)
    }

    /// The linear layer with its weight stored in `layout` (bias `[out]`).
    pub fn linear_with(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        layout: WeightLayout,
    ) -> Result<Var> {
        let out = linear_with(
            self.value(x),
            self.value(w),
            b.map(|b| self.value(b)),
            layout,
        )?;
        let has_bias = b.is_some();
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        Ok(self.push(out, &inputs, || {
            Box::new(LinearBackward { has_bias, layout })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, GradCheck};

    #[test]
    fn forward_hand_values() {
        let x = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        let w = Tensor::from_slice(&[1.0, 0.0, 1.0, 1.0, -1.0, 2.0], &[3, 2]).unwrap();
        let b = Tensor::from_slice(&[0.5, 0.0, -1.0], &[3]).unwrap();
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        assert_eq!(y.to_vec().unwrap(), vec![1.5, 3.0, 2.0, 3.5, 7.0, 4.0]);
        let m = matmul(
            &x,
            &Tensor::from_slice(&[1.0, 1.0, 0.0, 2.0], &[2, 2]).unwrap(),
        )
        .unwrap();
        assert_eq!(m.to_vec().unwrap(), vec![1.0, 5.0, 3.0, 11.0]);
        assert!(linear(&x, &Tensor::zeros(&[3, 3]), None).is_err());
        // The same layer with its weight stored [in, out]: the same outputs, to the bit.
        let wt: Vec<f32> = (0..6)
            .map(|k| w.to_vec().unwrap()[(k % 3) * 2 + k / 3])
            .collect();
        let wt = Tensor::from_vec(wt, &[2, 3]).unwrap();
        let yt = linear_with(&x, &wt, Some(&b), WeightLayout::InOut).unwrap();
        assert_eq!(yt.to_vec().unwrap(), y.to_vec().unwrap());
        assert!(linear_with(&x, &w, None, WeightLayout::InOut).is_err());
        assert!(linear(&x, &w, Some(&Tensor::zeros(&[2]))).is_err());
    }

    #[test]
    fn gradients_match_finite_differences() {
        for &(n, i, o) in &[(1, 1, 1), (3, 5, 2), (7, 9, 13), (4, 17, 3)] {
            check_gradients(&[&[n, i], &[o, i], &[o]], GradCheck::default(), |t, v| {
                t.linear(v[0], v[1], Some(v[2]))
            });
            check_gradients(&[&[n, i], &[o, i]], GradCheck::default(), |t, v| {
                t.linear(v[0], v[1], None)
            });
            check_gradients(&[&[n, i], &[i, o]], GradCheck::default(), |t, v| {
                t.matmul(v[0], v[1])
            });
            check_gradients(&[&[n, i], &[i, o], &[o]], GradCheck::default(), |t, v| {
                t.linear_with(v[0], v[1], Some(v[2]), WeightLayout::InOut)
            });
            check_gradients(&[&[n, i], &[i, o]], GradCheck::default(), |t, v| {
                t.linear_with(v[0], v[1], None, WeightLayout::InOut)
            });
        }
        // token-shaped input [batch, tokens, features]
        check_gradients(
            &[&[2, 3, 4], &[4, 5], &[5]],
            GradCheck::default(),
            |t, v| t.linear_with(v[0], v[1], Some(v[2]), WeightLayout::InOut),
        );
        check_gradients(
            &[&[2, 3, 4], &[5, 4], &[5]],
            GradCheck::default(),
            |t, v| t.linear(v[0], v[1], Some(v[2])),
        );
    }
}
