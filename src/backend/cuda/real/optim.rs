//! Optimizer launchers: fused SGD (plain, momentum, Nesterov) and Adam/AdamW steps, one pass
//! over each parameter, in place.

use super::elems;
use super::memory::{all_same_dev, check_len, same_dev, u, CudaStorage};
use crate::backend::cuda::kernels::optim as k;
use crate::backend::cuda::{AdamParams, SgdParams};
use crate::error::{Error, Result};

impl CudaStorage {
    /// One SGD step on the parameter `self` in place; `momentum_buf` is required when
    /// `p.momentum != 0`.
    pub fn sgd_step(
        &mut self,
        grad: &Self,
        momentum_buf: Option<&mut Self>,
        p: SgdParams,
    ) -> Result<()> {
        same_dev("sgd", self, grad)?;
        let n = self.len();
        check_len("sgd", "gradient", grad, n)?;
        if let Some(buf) = momentum_buf.as_deref() {
            same_dev("sgd", self, buf)?;
            check_len("sgd", "momentum buffer", buf, n)?;
        }
        if n == 0 {
            return Ok(());
        }
        let dev = self.dev.clone();
        match momentum_buf {
            _ if p.momentum == 0.0 => launch!(dev, k::SGD_PLAIN, elems(n);
                &mut self.buf, &grad.buf, &u(n), &p.lr, &p.weight_decay),
            Some(buf) => launch!(dev, k::SGD_MOMENTUM, elems(n);
                &mut self.buf, &grad.buf, &mut buf.buf, &u(n), &p.lr, &p.momentum,
                &p.dampening, &p.weight_decay, &(p.nesterov as i32), &(p.first as i32)),
            None => Err(Error::invalid("sgd: momentum without a momentum buffer")),
        }
    }

    /// One Adam/AdamW step on the parameter `self` and its moments `m`, `v`, in place.
    pub fn adam_step(
        &mut self,
        grad: &Self,
        m: &mut Self,
        v: &mut Self,
        p: AdamParams,
    ) -> Result<()> {
        all_same_dev("adam", self, &[grad, m, v])?;
        let n = self.len();
        check_len("adam", "gradient", grad, n)?;
        check_len("adam", "first moment", m, n)?;
        check_len("adam", "second moment", v, n)?;
        if n == 0 {
            return Ok(());
        }
        let dev = self.dev.clone();
        launch!(dev, k::ADAM_STEP, elems(n);
            &mut self.buf, &grad.buf, &mut m.buf, &mut v.buf, &u(n), &p.lr, &p.beta1, &p.beta2,
            &p.eps, &p.l2_weight_decay, &p.decoupled_weight_decay, &p.bias_correction1,
            &p.bias_correction2_sqrt)
    }
}
