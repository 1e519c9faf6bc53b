//! Elementwise launchers: broadcasting binary ops and the reduction of their gradients,
//! pointwise maps and activations (chosen by name within their signature family), gradient
//! accumulation, row repetition and dropout.

use super::elems;
use super::memory::{check_len, same_dev, u, CudaStorage};
use crate::backend::cuda::kernels::{self, dropout, elementwise as k};
use crate::backend::cuda::{BinaryOp, MAX_RANK};
use crate::error::{Error, Result};
use cudarc::driver::DeviceRepr;

/// Broadcast geometry passed to the kernels by value; mirrors `struct Dims` in common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Dims {
    rank: i32,
    out: [i32; MAX_RANK],
    sa: [i32; MAX_RANK],
    sb: [i32; MAX_RANK],
}
// SAFETY: plain #[repr(C)] integers, laid out as the C struct.
unsafe impl DeviceRepr for Dims {}

/// Strides of `shape` right-aligned in a rank-`rank` output, 0 on broadcast dimensions.
fn broadcast_strides(shape: &[usize], rank: usize) -> [i32; MAX_RANK] {
    let mut st = [0i32; MAX_RANK];
    let off = rank - shape.len();
    let mut s = 1usize;
    for i in (0..shape.len()).rev() {
        st[i + off] = if shape[i] == 1 { 0 } else { s as i32 };
        s *= shape[i];
    }
    st
}

/// The broadcast geometry of `a op b -> out`; every stride is below the element count,
/// which must fit the kernels' `int`s.
fn dims(op: &'static str, out: &[usize], a: &[usize], b: &[usize]) -> Result<Dims> {
    let n: usize = out.iter().product();
    if out.len() > MAX_RANK || n > i32::MAX as usize {
        return Err(Error::Unsupported {
            op,
            device: format!("cuda (general broadcasting of rank > {MAX_RANK} or > 2^31 elements)"),
        });
    }
    let mut d = Dims {
        rank: out.len() as i32,
        ..Default::default()
    };
    for (o, &v) in d.out.iter_mut().zip(out) {
        *o = v as i32;
    }
    d.sa = broadcast_strides(a, out.len());
    d.sb = broadcast_strides(b, out.len());
    Ok(d)
}

impl CudaStorage {
    /// `y = kernel(x; param)` for a pointwise kernel `(x, y, p, n)`: `relu_fwd`,
    /// `gelu_erf_fwd`, `gelu_tanh_fwd`, `tanh_fwd`, `sigmoid_fwd`, `scale`, `add_scalar`.
    pub fn unary(&self, kernel: &'static str, param: f32) -> Result<Self> {
        let kernel = kernels::pointwise(kernel).map_err(Error::Cuda)?;
        let n = self.len();
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, kernel, elems(n); &self.buf, &mut out.buf, &param, &u(n))?;
        }
        Ok(out)
    }

    /// The gradient of a pointwise op, `kernel(s, grad; param)` with `(s, g, out, p, n)`:
    /// `relu_bwd`, `gelu_erf_bwd`, `gelu_tanh_bwd` take the input as `self`; `tanh_bwd`,
    /// `sigmoid_bwd` the output.
    pub fn unary_backward(&self, grad: &Self, kernel: &'static str, param: f32) -> Result<Self> {
        let kernel = kernels::pointwise_backward(kernel).map_err(Error::Cuda)?;
        same_dev(kernel.name, self, grad)?;
        let n = self.len();
        check_len(kernel.name, "gradient", grad, n)?;
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, kernel, elems(n);
                &self.buf, &grad.buf, &mut out.buf, &param, &u(n))?;
        }
        Ok(out)
    }

    /// `self op rhs` with NumPy broadcasting; the shapes are the operands' and the result's.
    pub fn binary(
        &self,
        rhs: &Self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Self> {
        let name = op.kernel_prefix();
        same_dev(name, self, rhs)?;
        check_len(name, "left operand", self, lhs_shape.iter().product())?;
        check_len(name, "right operand", rhs, rhs_shape.iter().product())?;
        let n: usize = out_shape.iter().product();
        let mut out = self.empty(n)?;
        if n == 0 {
            return Ok(out);
        }
        let suffix = lhs_shape == out_shape
            && rhs_shape.len() <= lhs_shape.len()
            && lhs_shape[lhs_shape.len() - rhs_shape.len()..] == *rhs_shape;
        let add = op == BinaryOp::Add;
        let (a, b, cfg) = (&self.buf, &rhs.buf, elems(n));
        if lhs_shape == rhs_shape {
            let kernel = if add { k::ADD_SAME } else { k::MUL_SAME };
            launch!(self.dev, kernel, cfg; a, b, &mut out.buf, &u(n))?
        } else if suffix {
            let kernel = if add {
                k::ADD_ROWSUFFIX
            } else {
                k::MUL_ROWSUFFIX
            };
            launch!(self.dev, kernel, cfg; a, b, &mut out.buf, &u(n), &u(rhs.len()))?
        } else {
            let d = dims(name, out_shape, lhs_shape, rhs_shape)?;
            let kernel = if add { k::ADD_GENERAL } else { k::MUL_GENERAL };
            launch!(self.dev, kernel, cfg; a, b, &mut out.buf, &u(n), &d)?
        }
        Ok(out)
    }

    /// Sums a gradient shaped `from` (a broadcast result) down to the operand shape `to`.
    pub fn reduce_to_shape(&self, from: &[usize], to: &[usize]) -> Result<Self> {
        check_len("reduce_to_shape", "gradient", self, from.iter().product())?;
        let m: usize = to.iter().product();
        if from == to {
            return Ok(self.clone());
        }
        let n = self.len();
        if to.len() <= from.len() && from[from.len() - to.len()..] == *to && m > 0 {
            let mut out = self.empty(m)?;
            launch!(self.dev, k::SUM_ROWS, elems(m);
                &self.buf, &mut out.buf, &u(n / m), &u(m))?;
            return Ok(out);
        }
        let mut out = self.zeros_like_len(m)?;
        if n > 0 {
            let d = dims("reduce_to_shape", from, from, to)?;
            launch!(self.dev, k::REDUCE_GENERAL, elems(n); &self.buf, &mut out.buf, &u(n), &d)?;
        }
        Ok(out)
    }

    /// `self += rhs` elementwise (gradient accumulation).
    pub fn add_assign(&mut self, rhs: &Self) -> Result<()> {
        same_dev("accumulate", self, rhs)?;
        let n = self.len();
        check_len("accumulate", "addend", rhs, n)?;
        if n > 0 {
            let dev = self.dev.clone();
            launch!(dev, k::ADD_ASSIGN, elems(n); &mut self.buf, &rhs.buf, &u(n))?;
        }
        Ok(())
    }

    /// `self` (a row of `w` values) repeated `rows` times: `[rows, w]` (bias initialisation).
    pub fn repeat_rows(&self, rows: usize) -> Result<Self> {
        let w = self.len();
        let n = rows.checked_mul(w).ok_or_else(|| {
            Error::shape("repeat_rows", format!("{rows} rows of {w} values overflow"))
        })?;
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, k::REPEAT_ROWS, elems(n); &self.buf, &mut out.buf, &u(n), &u(w))?;
        }
        Ok(out)
    }

    /// `len` copies of `scale * self[0]` (the backward of sum / mean).
    pub fn broadcast_scalar(&self, len: usize, scale: f32) -> Result<Self> {
        check_len("broadcast_scalar", "scalar", self, 1)?;
        let mut out = self.empty(len)?;
        if len > 0 {
            launch!(self.dev, k::BROADCAST_SCALAR, elems(len);
                &self.buf, &mut out.buf, &scale, &u(len))?;
        }
        Ok(out)
    }

    /// Inverted dropout with the stateless mask of [`crate::backend::cuda::dropout_keep`];
    /// the backward is the same call on the gradient with the same `p` and `seed`.
    pub fn dropout(&self, p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "dropout probability {p} outside [0, 1)"
            )));
        }
        let n = self.len();
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, dropout::DROPOUT_APPLY, elems(n);
                &self.buf, &mut out.buf, &p, &seed, &u(n))?;
        }
        Ok(out)
    }
}
