//! Loss launchers: fused softmax cross-entropy and the per-sample regression losses (MSE,
//! BCE with logits), forward and backward. Row kernels run one block per sample.

use super::memory::{all_same_dev, check_len, same_dev, u, CudaStorage};
use super::{elems, rows};
use crate::backend::cuda::kernels::loss as k;
use crate::backend::cuda::RegressionLoss;
use crate::error::{Error, Result};

fn check_labels(labels: &[u32], n: usize) -> Result<()> {
    if labels.len() != n {
        return Err(Error::shape(
            "cross_entropy",
            format!("{} labels for {n} samples", labels.len()),
        ));
    }
    Ok(())
}

impl CudaStorage {
    /// Fused softmax cross-entropy of logits `[n, c]`: (per-sample loss `[n]`, probabilities
    /// `[n, c]`). Labels must already be checked against `c`.
    pub fn cross_entropy(&self, labels: &[u32], n: usize, c: usize) -> Result<(Self, Self)> {
        check_len("cross_entropy", "logits", self, n * c)?;
        check_labels(labels, n)?;
        let mut loss = self.empty(n)?;
        let mut probs = self.empty(n * c)?;
        if n > 0 && c > 0 {
            let l = self.dev.upload_u32(labels)?;
            launch!(self.dev, k::SOFTMAX_XENT_FWD, rows(n);
                &self.buf, &l, &mut loss.buf, &mut probs.buf, &u(n), &u(c))?;
        }
        Ok((loss, probs))
    }

    /// The logits' gradient from the saved probabilities `self` and the loss gradient `[n]`.
    pub fn cross_entropy_backward(
        &self,
        labels: &[u32],
        grad: &Self,
        n: usize,
        c: usize,
    ) -> Result<Self> {
        same_dev("cross_entropy", self, grad)?;
        check_len("cross_entropy", "probabilities", self, n * c)?;
        check_len("cross_entropy", "gradient", grad, n)?;
        check_labels(labels, n)?;
        let mut out = self.empty(n * c)?;
        if n > 0 && c > 0 {
            let l = self.dev.upload_u32(labels)?;
            launch!(self.dev, k::SOFTMAX_XENT_BWD, elems(n * c);
                &self.buf, &l, &grad.buf, &mut out.buf, &u(n), &u(c))?;
        }
        Ok(out)
    }

    /// Per-sample MSE or BCE-with-logits of `[n, d]` predictions against `target`.
    pub fn regression_loss(
        &self,
        target: &Self,
        n: usize,
        d: usize,
        kind: RegressionLoss,
    ) -> Result<Self> {
        same_dev("loss", self, target)?;
        check_len("loss", "prediction", self, n * d)?;
        check_len("loss", "target", target, n * d)?;
        let mut out = self.empty(n)?;
        if n > 0 {
            let kernel = match kind {
                RegressionLoss::Mse => k::MSE_FWD,
                RegressionLoss::BceWithLogits => k::BCE_FWD,
            };
            launch!(self.dev, kernel, rows(n);
                &self.buf, &target.buf, &mut out.buf, &u(n), &u(d))?;
        }
        Ok(out)
    }

    /// Gradients (prediction, target) of the per-sample loss given its gradient `[n]`.
    pub fn regression_loss_backward(
        &self,
        target: &Self,
        grad: &Self,
        n: usize,
        d: usize,
        kind: RegressionLoss,
    ) -> Result<(Self, Self)> {
        all_same_dev("loss", self, &[target, grad])?;
        check_len("loss", "prediction", self, n * d)?;
        check_len("loss", "target", target, n * d)?;
        check_len("loss", "gradient", grad, n)?;
        let mut gp = self.empty(n * d)?;
        let mut gt = self.empty(n * d)?;
        if n * d > 0 {
            let kernel = match kind {
                RegressionLoss::Mse => k::MSE_BWD,
                RegressionLoss::BceWithLogits => k::BCE_BWD,
            };
            launch!(self.dev, kernel, elems(n * d);
                &self.buf, &target.buf, &grad.buf, &mut gp.buf, &mut gt.buf, &u(n), &u(d))?;
        }
        Ok((gp, gt))
    }
}
