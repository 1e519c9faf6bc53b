//! Binary elementwise ops with NumPy broadcasting (add, mul), scaling, and the gradient
//! accumulation used by the tape.

use super::{host, same_device};
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::pool::{try_alloc, try_vec};
use crate::backend::cpu::simd;
use crate::backend::cuda::BinaryOp;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A tensor of ones shaped like `t`, on its device.
pub fn ones_like(t: &Tensor) -> Result<Tensor> {
    t.ones_like()
}

/// `acc += g` in place (same shape, same device); see [`Tensor::add_assign`].
pub fn accumulate(acc: &mut Tensor, g: &Tensor) -> Result<()> {
    acc.add_assign(g)
}

/// The broadcast shape of two shapes (NumPy rules: align right, 1 stretches).
pub fn broadcast_shape(a: &[usize], b: &[usize], op: &'static str) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("shapes {a:?} and {b:?} do not broadcast"),
                ))
            }
        };
    }
    Ok(out)
}

/// For every element of `out_shape`, the flat index of the element of `in_shape` that
/// broadcasting maps onto it.
fn broadcast_indices(out_shape: &[usize], in_shape: &[usize]) -> Result<Vec<usize>> {
    let n = out_shape.len();
    let offset = n - in_shape.len();
    let mut in_strides = vec![0usize; n];
    let mut s = 1;
    for i in (0..in_shape.len()).rev() {
        in_strides[i + offset] = if in_shape[i] == 1 { 0 } else { s };
        s *= in_shape[i];
    }
    let total: usize = out_shape.iter().product();
    // One index per output element: as large as the output itself, twice over in bytes.
    let mut idx = try_vec(total, "broadcast indices")?;
    idx.resize(total, 0usize);
    let mut counter = vec![0usize; n];
    let mut cur = 0usize;
    for slot in idx.iter_mut() {
        *slot = cur;
        for d in (0..n).rev() {
            counter[d] += 1;
            cur += in_strides[d];
            if counter[d] < out_shape[d] {
                break;
            }
            cur -= in_strides[d] * counter[d];
            counter[d] = 0;
        }
    }
    Ok(idx)
}

/// How `b` relates to `a` in a binary op, picked for speed.
enum Pattern {
    Same,
    /// `b` repeats along the leading dims of the output: `out[i, j] = f(a[i, j], b[j])`.
    RowSuffix(usize),
    General,
}

fn pattern(a: &[usize], b: &[usize], out: &[usize]) -> Pattern {
    if a == b {
        return Pattern::Same;
    }
    if a == out && b.len() <= a.len() && a[a.len() - b.len()..] == *b {
        return Pattern::RowSuffix(b.iter().product());
    }
    Pattern::General
}

/// One binary op: its CUDA kernel family, its SIMD kernel and its scalar rule.
fn binary_forward(
    a: &Tensor,
    b: &Tensor,
    kernel: BinaryOp,
    vec_fn: fn(&[f32], &[f32], &mut [f32]),
    scalar_fn: fn(f32, f32) -> f32,
) -> Result<Tensor> {
    let op = kernel.kernel_prefix();
    same_device(a, b, op)?;
    let out_shape = broadcast_shape(a.shape(), b.shape(), op)?;
    if let (Storage::Cuda(x), Storage::Cuda(y)) = (a.storage(), b.storage()) {
        let out = x.binary(y, kernel, a.shape(), b.shape(), &out_shape)?;
        return Ok(Tensor::from_cuda(out, out_shape));
    }
    let (x, y) = (host(a, op)?, host(b, op)?);
    let n: usize = out_shape.iter().product();
    let mut out = crate::backend::cpu::pool::take(n)?;
    match pattern(a.shape(), b.shape(), &out_shape) {
        Pattern::Same => vec_fn(x, y, &mut out),
        Pattern::RowSuffix(w) if w > 0 => {
            for (o, xr) in out.chunks_exact_mut(w).zip(x.chunks_exact(w)) {
                vec_fn(xr, y, o);
            }
        }
        _ => {
            let ia = broadcast_indices(&out_shape, a.shape())?;
            let ib = broadcast_indices(&out_shape, b.shape())?;
            for ((o, &i), &j) in out.iter_mut().zip(&ia).zip(&ib) {
                *o = scalar_fn(x[i], y[j]);
            }
        }
    }
    Ok(Tensor::cpu(out, out_shape))
}

/// Sums `g` (shaped like the broadcast output) down to `shape`.
pub fn reduce_to_shape(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    if let Storage::Cuda(s) = g.storage() {
        return Ok(Tensor::from_cuda(
            s.reduce_to_shape(g.shape(), shape)?,
            shape.to_vec(),
        ));
    }
    let gd = host(g, "reduce_to_shape")?;
    let n: usize = shape.iter().product();
    let mut out = crate::backend::cpu::pool::zeroed(n)?;
    match pattern(g.shape(), shape, g.shape()) {
        Pattern::RowSuffix(w) if w > 0 => {
            for row in gd.chunks_exact(w) {
                simd::add_assign(&mut out, row);
            }
        }
        _ => {
            let idx = broadcast_indices(g.shape(), shape)?;
            for (&v, &i) in gd.iter().zip(&idx) {
                out[i] += v;
            }
        }
    }
    Ok(Tensor::cpu(out, shape.to_vec()))
}

/// `a + b` with broadcasting.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_forward(a, b, BinaryOp::Add, simd::add, |x, y| x + y)
}

/// `a * b` (elementwise) with broadcasting.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary_forward(a, b, BinaryOp::Mul, simd::mul, |x, y| x * y)
}

/// `s * x`.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    if let Storage::Cuda(st) = x.storage() {
        return Ok(Tensor::from_cuda(st.unary("scale", s)?, x.shape().to_vec()));
    }
    let d = host(x, "scale")?;
    let mut out = crate::backend::cpu::pool::take(d.len())?;
    simd::scale(d, s, &mut out);
    Ok(Tensor::cpu(out, x.shape().to_vec()))
}

/// `x + c` for a constant `c`.
pub fn add_scalar(x: &Tensor, c: f32) -> Result<Tensor> {
    if let Storage::Cuda(st) = x.storage() {
        return Ok(Tensor::from_cuda(
            st.unary("add_scalar", c)?,
            x.shape().to_vec(),
        ));
    }
    let d = host(x, "add_scalar")?;
    let mut out = try_alloc(d.len(), "add_scalar")?;
    out.extend(d.iter().map(|v| v + c));
    Ok(Tensor::cpu(out, x.shape().to_vec()))
}

struct AddBackward;
impl BackwardOp for AddBackward {
    fn name(&self) -> &'static str {
        "add"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let mut out = Vec::with_capacity(2);
        for (i, input) in c.inputs.iter().enumerate() {
            out.push(if c.needs[i] {
                Some(reduce_to_shape(c.grad, input.shape())?)
            } else {
                None
            });
        }
        Ok(out)
    }
}

struct MulBackward;
impl BackwardOp for MulBackward {
    fn name(&self) -> &'static str {
        "mul"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let (a, b) = (c.inputs[0], c.inputs[1]);
        let ga = if c.needs[0] {
            Some(reduce_to_shape(&mul(c.grad, b)?, a.shape())?)
        } else {
            None
        };
        let gb = if c.needs[1] {
            Some(reduce_to_shape(&mul(c.grad, a)?, b.shape())?)
        } else {
            None
        };
        Ok(vec![ga, gb])
    }
}

struct ScaleBackward(f32);
impl BackwardOp for ScaleBackward {
    fn name(&self) -> &'static str {
        "scale"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(scale(c.grad, self.0)?)])
    }
}

struct PassThrough(&'static str);
impl BackwardOp for PassThrough {
    fn name(&self) -> &'static str {
        self.0
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(c.grad.clone())])
    }
}

impl Tape {
    /// `a + b` with broadcasting (bias terms, residual connections).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let out = add(self.value(a), self.value(b))?;
        Ok(self.push(out, &[a, b], || Box::new(AddBackward)))
    }

    /// `a * b` elementwise with broadcasting.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        let out = mul(self.value(a), self.value(b))?;
        Ok(self.push(out, &[a, b], || Box::new(MulBackward)))
    }

    /// `s * x` for a constant `s`.
    pub fn scale(&mut self, x: Var, s: f32) -> Result<Var> {
        let out = scale(self.value(x), s)?;
        Ok(self.push(out, &[x], || Box::new(ScaleBackward(s))))
    }

    /// `x + c` for a constant `c`.
    pub fn add_scalar(&mut self, x: Var, c: f32) -> Result<Var> {
        let out = add_scalar(self.value(x), c)?;
        Ok(self.push(out, &[x], || Box::new(PassThrough("add_scalar"))))
    }

    /// `x * x` elementwise.
    pub fn square(&mut self, x: Var) -> Result<Var> {
        self.mul(x, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, GradCheck};

    fn t(v: &[f32], s: &[usize]) -> Tensor {
        Tensor::from_slice(v, s).unwrap()
    }

    #[test]
    fn forward_hand_values() {
        let a = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let b = t(&[10.0, 20.0, 30.0], &[3]);
        assert_eq!(
            add(&a, &b).unwrap().to_vec().unwrap(),
            vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
        );
        let col = t(&[1.0, -1.0], &[2, 1]);
        assert_eq!(
            mul(&a, &col).unwrap().to_vec().unwrap(),
            vec![1.0, 2.0, 3.0, -4.0, -5.0, -6.0]
        );
        assert_eq!(
            scale(&b, 0.5).unwrap().to_vec().unwrap(),
            vec![5.0, 10.0, 15.0]
        );
        assert!(add(&a, &t(&[1.0, 2.0], &[2])).is_err());
        assert_eq!(
            broadcast_shape(&[4, 1, 3], &[2, 1], "t").unwrap(),
            vec![4, 2, 3]
        );
        let g = reduce_to_shape(&Tensor::full(&[4, 2, 3], 1.0), &[2, 1]).unwrap();
        assert_eq!(g.to_vec().unwrap(), vec![12.0, 12.0]);
    }

    #[test]
    fn gradients_match_finite_differences() {
        let shapes: &[(&[usize], &[usize])] = &[
            (&[5], &[5]),
            (&[3, 7], &[7]),
            (&[2, 3, 4, 5], &[3, 1, 1]),
            (&[4, 1, 3], &[2, 1]),
            (&[9, 17], &[9, 17]),
        ];
        for &(sa, sb) in shapes {
            check_gradients(&[sa, sb], GradCheck::default(), |tape, v| {
                tape.add(v[0], v[1])
            });
            check_gradients(&[sa, sb], GradCheck::default(), |tape, v| {
                tape.mul(v[0], v[1])
            });
            check_gradients(&[sa], GradCheck::default(), |tape, v| {
                tape.scale(v[0], -2.5)
            });
            check_gradients(&[sa], GradCheck::default(), |tape, v| tape.square(v[0]));
        }
    }
}
