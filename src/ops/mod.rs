//! Differentiable ops. Each file holds a family of ops: the forward computation (dispatching
//! on the input's device), the op's method on [`Tape`](crate::autograd::Tape), and its
//! backward rule. Ops are also usable without a tape through the plain functions each file
//! exports, which is what evaluation code does.

pub mod activation;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod gradcheck;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod shape;

pub use elementwise::{accumulate, ones_like};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Host data of `t` for `op`, or the "not implemented on this device" error.
pub(crate) fn host<'a>(t: &'a Tensor, op: &'static str) -> Result<&'a [f32]> {
    t.cpu_data(op)
}

/// Fails unless `t` has exactly `rank` dimensions.
pub(crate) fn expect_rank(t: &Tensor, rank: usize, op: &'static str, what: &str) -> Result<()> {
    if t.rank() != rank {
        return Err(Error::shape(
            op,
            format!(
                "{what} must have {rank} dimensions, got shape {:?}",
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Fails unless two tensors live on the same device.
pub(crate) fn same_device(a: &Tensor, b: &Tensor, op: &'static str) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::invalid(format!(
            "{op}: inputs on different devices ({} and {})",
            a.device(),
            b.device()
        )));
    }
    Ok(())
}
