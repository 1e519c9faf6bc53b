//! Reduction launchers: full sums (two deterministic passes, no atomics) and means over the
//! middle axis of `[outer, len, inner]`.

use super::memory::{check_len, u, CudaStorage};
use super::{elems, rows, BLOCK};
use crate::backend::cuda::kernels::reduce as k;
use crate::error::{Error, Result};

/// Blocks of a full sum's first pass: enough to fill the GPU, few enough for one block to add
/// up their partials in the second.
fn sum_blocks(n: usize) -> usize {
    n.div_ceil(BLOCK as usize).clamp(1, 1024)
}

/// `outer * len * inner`, or an error naming the op when it overflows.
fn volume(op: &'static str, outer: usize, len: usize, inner: usize) -> Result<usize> {
    outer
        .checked_mul(len)
        .and_then(|v| v.checked_mul(inner))
        .ok_or_else(|| Error::shape(op, format!("[{outer}, {len}, {inner}] overflows")))
}

impl CudaStorage {
    /// `scale * sum(self)` as a one-element buffer (deterministic two-pass reduction).
    pub fn sum_all(&self, scale: f32) -> Result<Self> {
        let n = self.len();
        if n == 0 {
            // Same as the CPU: 0 * scale (NaN for the mean of nothing).
            return CudaStorage::from_host(&[0.0 * scale], self.dev.ordinal);
        }
        let blocks = sum_blocks(n);
        let mut partial = self.empty(blocks)?;
        launch!(self.dev, k::SUM_PARTIAL, rows(blocks); &self.buf, &mut partial.buf, &u(n))?;
        let mut out = self.empty(1)?;
        launch!(self.dev, k::SUM_FINAL, rows(1);
            &partial.buf, &mut out.buf, &u(blocks), &scale)?;
        Ok(out)
    }

    /// Mean over the middle axis of `[outer, len, inner]`, giving `[outer, inner]`.
    pub fn mean_axis(&self, outer: usize, len: usize, inner: usize) -> Result<Self> {
        check_len(
            "mean_axis",
            "input",
            self,
            volume("mean_axis", outer, len, inner)?,
        )?;
        let m = outer * inner;
        let mut out = self.empty(m)?;
        if m > 0 {
            launch!(self.dev, k::MEAN_AXIS_FWD, elems(m);
                &self.buf, &mut out.buf, &u(outer), &u(len), &u(inner))?;
        }
        Ok(out)
    }

    /// The backward of [`mean_axis`](Self::mean_axis): `self` is the `[outer, inner]` gradient.
    pub fn mean_axis_backward(&self, outer: usize, len: usize, inner: usize) -> Result<Self> {
        let n = volume("mean_axis", outer, len, inner)?;
        check_len("mean_axis", "gradient", self, outer * inner)?;
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, k::MEAN_AXIS_BWD, elems(n);
                &self.buf, &mut out.buf, &u(outer), &u(len), &u(inner))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_partials_fit_one_block_of_the_final_pass() {
        assert_eq!(sum_blocks(1), 1);
        assert_eq!(sum_blocks(BLOCK as usize * 3), 3);
        assert_eq!(sum_blocks(usize::MAX / 2), 1024);
        assert!(volume("t", usize::MAX, 2, 1).is_err());
    }
}
