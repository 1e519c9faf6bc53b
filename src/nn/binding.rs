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

    /// Copies the bound buffers into tensors (every parameter must be bound, with the right
    /// length and finite values).
    pub fn read(&self, model: &Model) -> Result<Vec<Tensor>> {
        for (name, _) in &self.entries {
            if model.param_index(name).is_none() {
                return Err(Error::Binding(format!(
                    "`{name}` is not a parameter of the model"
                )));
            }
        }
        read_params(model, |name| {
            self.entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, b)| &**b)
        })
    }

    /// Writes `weights` into the bound buffers. Everything is checked before the first buffer
    /// is touched, so an error leaves them all unchanged.
    pub fn write(&mut self, model: &Model, weights: &[Tensor]) -> Result<()> {
        let mut values = param_values(model, weights)?;
        let mut targets = Vec::with_capacity(self.entries.len());
        for (name, buf) in &mut self.entries {
            let i = model.param_index(name).ok_or_else(|| {
                Error::Binding(format!("`{name}` is not a parameter of the model"))
            })?;
            check_len(name, buf.len(), values[i].len())?;
            targets.push((i, buf));
        }
        for (i, buf) in targets {
            buf.copy_from_slice(&values[i]);
            values[i] = Vec::new();
        }
        Ok(())
    }
}

/// The weights of `model` read from caller buffers: `lookup` gives the buffer bound to a
/// parameter name. Every parameter must be bound, with its exact length and finite values.
/// Shared by [`Bindings`] and the C ABI's lent buffers.
pub(crate) fn read_params<'b>(
    model: &Model,
    lookup: impl Fn(&str) -> Option<&'b [f32]>,
) -> Result<Vec<Tensor>> {
    read_params_checked(model, lookup, true)
}

/// [`read_params`], with the scan for NaN and infinity optional: a read call can skip it,
/// because non-finite weights show up as non-finite outputs, which are refused anyway, and
/// the scan cost as much as the copy on every single-sample prediction.
pub(crate) fn read_params_checked<'b>(
    model: &Model,
    lookup: impl Fn(&str) -> Option<&'b [f32]>,
    check_finite: bool,
) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(model.params().len());
    for p in model.params() {
        let buf = lookup(&p.name).ok_or_else(|| {
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
        if let Some(i) = buf.iter().position(|v| check_finite && !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "parameter `{}` holds NaN or infinity at index {i}",
                p.name
            )));
        }
        out.push(Tensor::from_vec(copy_lent(buf)?, &p.shape)?);
    }
    Ok(out)
}

/// A copy of a host buffer that a publish may overwrite later, made without calling `memcpy`.
/// The copy runs under the model's shared lock and a publish under its exclusive one, but
/// that lock is a Rust `RwLock` waiting on futexes, which ThreadSanitizer (run on the C tests)
/// cannot see. Through `memcpy`, which it intercepts, it recorded the read; once its history
/// of the reading thread had moved on it could no longer name the read's stack, so the
/// suppression of this copy (tests/c/tsan.supp) no longer matched, and it reported the
/// publish as a race. Copied here in fixed 64-byte pieces, which the compiler emits as
/// vector moves (`black_box` keeps it from merging them back into one `memcpy` call).
fn copy_lent(buf: &[f32]) -> Result<Vec<f32>> {
    const PIECE: usize = 16;
    let mut out = crate::tensor::try_alloc(buf.len(), "a copy of the bound weights")?;
    let dst = out.as_mut_ptr();
    let (whole, tail) = buf.split_at(buf.len() / PIECE * PIECE);
    for (i, s) in whole.chunks_exact(PIECE).enumerate() {
        let piece: [f32; PIECE] =
            *<&[f32; PIECE]>::try_from(std::hint::black_box(s)).expect("a whole piece");
        // SAFETY: `out` has capacity for buf.len() values; this piece lies below that.
        unsafe {
            dst.add(i * PIECE)
                .cast::<[f32; PIECE]>()
                .write_unaligned(piece)
        };
    }
    for (i, &v) in tail.iter().enumerate() {
        // SAFETY: as above.
        unsafe { dst.add(whole.len() + i).write(v) };
    }
    // SAFETY: the two loops wrote every one of the first buf.len() values.
    unsafe { out.set_len(buf.len()) };
    Ok(out)
}

/// The host-side values of every parameter, in spec order, after checking that `weights`
/// fit the model. Computed in full before any caller buffer is written.
pub(crate) fn param_values(model: &Model, weights: &[Tensor]) -> Result<Vec<Vec<f32>>> {
    model.check_weights(weights)?;
    weights.iter().map(Tensor::to_vec).collect()
}

/// A buffer of `buf_len` values about to receive `values` values for parameter `name`.
pub(crate) fn check_len(name: &str, buf_len: usize, values: usize) -> Result<()> {
    if buf_len == values {
        Ok(())
    } else {
        Err(Error::Binding(format!(
            "`{name}`: {values} values for a buffer of {buf_len}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::copy_lent;

    #[test]
    fn lent_copies_are_exact_at_every_length() {
        for n in [0usize, 1, 15, 16, 17, 33, 1000] {
            let buf: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let copy = copy_lent(&buf).unwrap();
            assert_eq!(copy.len(), n);
            assert!(
                copy.iter()
                    .zip(&buf)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{n}"
            );
        }
    }
}
