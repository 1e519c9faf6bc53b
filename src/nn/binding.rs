//! Binding model parameters to buffers owned by the caller.
//!
//! The caller lends one `&mut [f32]` per parameter (by `state_dict` name). gradtau copies the
//! values in, works on its own tensors, and writes back only when the whole job succeeded,
//! so an error or a cancellation leaves the caller's buffers exactly as they were.

use super::model::Model;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Caller-owned parameter buffers, by name.
#[derive(Default)]
pub struct Bindings<'a> {
    entries: Vec<(String, &'a mut [f32])>,
}

impl<'a> Bindings<'a> {
    pub fn new() -> Self {
        Bindings {
            entries: Vec::new(),
        }
    }

    /// Lends `buf` as the parameter `name`; binding a name twice is an error.
    pub fn bind(&mut self, name: &str, buf: &'a mut [f32]) -> Result<()> {
        if self.entries.iter().any(|(n, _)| n == name) {
            return Err(Error::Binding(format!("`{name}` is bound twice")));
        }
        self.entries.push((name.to_string(), buf));
        Ok(())
    }

    /// Number of bound buffers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks the bindings against `model` (every parameter bound once with the right length,
    /// no unknown names, finite values) and copies the values into tensors.
    pub fn read(&self, model: &Model) -> Result<Vec<Tensor>> {
        for (name, _) in &self.entries {
            if model.param_index(name).is_none() {
                return Err(Error::Binding(format!(
                    "`{name}` is not a parameter of the model"
                )));
            }
        }
        let mut out = Vec::with_capacity(model.params().len());
        for p in model.params() {
            let buf = self
                .entries
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|(_, b)| &**b)
                .ok_or_else(|| {
                    Error::Binding(format!(
                        "parameter `{}` (shape {:?}) has no bound buffer",
                        p.name, p.shape
                    ))
                })?;
            if buf.len() != p.numel() {
                return Err(Error::Binding(format!(
                    "`{}` is bound to {} values, the model needs {} (shape {:?})",
                    p.name,
                    buf.len(),
                    p.numel(),
                    p.shape
                )));
            }
            if let Some(i) = buf.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "parameter `{}` holds NaN or infinity at index {i}",
                    p.name
                )));
            }
            out.push(Tensor::from_slice(buf, &p.shape)?);
        }
        Ok(out)
    }

    /// Writes `weights` back into the bound buffers (all lengths are checked first, so either
    /// every buffer is written or none is).
    pub fn write(&mut self, model: &Model, weights: &[Tensor]) -> Result<()> {
        model.check_weights(weights)?;
        let mut plan = Vec::with_capacity(self.entries.len());
        for (name, buf) in &self.entries {
            let i = model.param_index(name).ok_or_else(|| {
                Error::Binding(format!("`{name}` is not a parameter of the model"))
            })?;
            let src = weights[i].to_vec()?;
            if src.len() != buf.len() {
                return Err(Error::Binding(format!(
                    "`{name}`: {} values for a buffer of {}",
                    src.len(),
                    buf.len()
                )));
            }
            plan.push(src);
        }
        for ((_, buf), src) in self.entries.iter_mut().zip(plan) {
            buf.copy_from_slice(&src);
        }
        Ok(())
    }
}
