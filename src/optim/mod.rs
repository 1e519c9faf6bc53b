//! Optimizers over a list of parameter tensors, addressed by index (the key a parameter was
//! put on the tape with), plus learning-rate schedules and gradient clipping.
//!
//! Optimizers only use the public tensor API and the SIMD update kernels; they never reach
//! into the autograd tape.

mod adam;
mod clip;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use clip::clip_grad_norm;
pub use schedule::LrSchedule;
pub use sgd::{Sgd, SgdConfig};

use crate::autograd::Gradients;
use crate::error::Result;
use crate::tensor::Tensor;

/// A first-order optimizer.
pub trait Optimizer {
    /// Applies one update to `params` from `grads` (keyed by parameter index). Parameters
    /// without a gradient are left alone (their state does not advance).
    fn step(&mut self, params: &mut [Tensor], grads: &Gradients) -> Result<()>;
    /// The base learning rate.
    fn lr(&self) -> f32;
    /// Changes the learning rate (schedules call this before each step).
    fn set_lr(&mut self, lr: f32);
}

/// The parameter a gradient belongs to, checked: it must exist and have the gradient's shape.
pub(crate) fn param_for<'p>(
    params: &'p mut [Tensor],
    key: usize,
    grad: &Tensor,
    op: &'static str,
) -> Result<&'p mut Tensor> {
    let p = params.get_mut(key).ok_or_else(|| {
        crate::error::Error::invalid(format!(
            "gradient for parameter {key}, which does not exist"
        ))
    })?;
    if p.shape() != grad.shape() {
        return Err(crate::error::Error::shape(
            op,
            format!(
                "parameter {key}: {:?} vs gradient {:?}",
                p.shape(),
                grad.shape()
            ),
        ));
    }
    Ok(p)
}
