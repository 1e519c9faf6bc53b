//! Normalisation launchers: batch norm over `[n, c, hw]` (per channel) and layer norm over
//! the last dimension, forward and backward, from two-pass statistics.

use super::memory::{all_same_dev, check_len, u, CudaStorage};
use super::{elems, rows};
use crate::backend::cuda::kernels::norm as k;
use crate::backend::cuda::BatchNormParams;
use crate::error::{Error, Result};

/// What batch norm's forward returns: the output and the statistics its backward needs.
#[derive(Debug)]
pub struct BatchNormOutput {
    pub y: CudaStorage,
    /// Per-channel mean used (batch mean in training, running mean in evaluation).
    pub mean: CudaStorage,
    /// Per-channel `1 / sqrt(var + eps)` used.
    pub invstd: CudaStorage,
}

/// Batch norm over `[n, c, hw]` (1-d: `hw = 1`; 2-d: `hw = h * w`). In training mode the
/// running estimates are updated in place (PyTorch's momentum rule, unbiased variance).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    x: &CudaStorage,
    weight: &CudaStorage,
    bias: &CudaStorage,
    running_mean: &mut CudaStorage,
    running_var: &mut CudaStorage,
    n: usize,
    c: usize,
    hw: usize,
    p: BatchNormParams,
) -> Result<BatchNormOutput> {
    all_same_dev("batchnorm", x, &[weight, bias, running_mean, running_var])?;
    check_len("batchnorm", "input", x, n * c * hw)?;
    check_len("batchnorm", "weight", weight, c)?;
    check_len("batchnorm", "bias", bias, c)?;
    check_len("batchnorm", "running mean", running_mean, c)?;
    check_len("batchnorm", "running variance", running_var, c)?;
    if p.train && n * hw == 0 {
        return Err(Error::invalid(
            "batchnorm: training mode needs at least one value per channel",
        ));
    }
    let dev = x.dev.clone();
    let mut mean = x.empty(c)?;
    let mut invstd = x.empty(c)?;
    let mut y = x.empty(x.len())?;
    if c == 0 {
        return Ok(BatchNormOutput { y, mean, invstd });
    }
    if p.train {
        launch!(dev, k::BN_TRAIN_STATS, rows(c);
            &x.buf, &mut mean.buf, &mut invstd.buf, &mut running_mean.buf, &mut running_var.buf,
            &u(n), &u(c), &u(hw), &p.momentum, &p.eps)?;
    } else {
        launch!(dev, k::BN_EVAL_STATS, elems(c);
            &running_mean.buf, &running_var.buf, &mut mean.buf, &mut invstd.buf, &u(c), &p.eps)?;
    }
    if !x.is_empty() {
        launch!(dev, k::BN_APPLY, elems(x.len());
            &x.buf, &mean.buf, &invstd.buf, &weight.buf, &bias.buf, &mut y.buf,
            &u(n), &u(c), &u(hw))?;
    }
    Ok(BatchNormOutput { y, mean, invstd })
}

/// Gradients (input, weight, bias) of batch norm from the forward's saved statistics.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    x: &CudaStorage,
    weight: &CudaStorage,
    grad: &CudaStorage,
    mean: &CudaStorage,
    invstd: &CudaStorage,
    n: usize,
    c: usize,
    hw: usize,
    train: bool,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    all_same_dev("batchnorm", x, &[weight, grad, mean, invstd])?;
    check_len("batchnorm", "input", x, n * c * hw)?;
    check_len("batchnorm", "output gradient", grad, n * c * hw)?;
    for (what, s) in [("weight", weight), ("mean", mean), ("invstd", invstd)] {
        check_len("batchnorm", what, s, c)?;
    }
    let dev = x.dev.clone();
    let mut gw = x.zeros_like_len(c)?;
    let mut gb = x.zeros_like_len(c)?;
    let mut gx = x.empty(x.len())?;
    if c == 0 || x.is_empty() {
        return Ok((gx, gw, gb));
    }
    launch!(dev, k::BN_BWD_REDUCE, rows(c);
        &x.buf, &grad.buf, &mean.buf, &invstd.buf, &mut gw.buf, &mut gb.buf, &u(n), &u(c), &u(hw))?;
    launch!(dev, k::BN_BWD_DX, elems(x.len());
        &x.buf, &grad.buf, &mean.buf, &invstd.buf, &weight.buf, &gw.buf, &gb.buf,
        &mut gx.buf, &u(n), &u(c), &u(hw), &(train as i32))?;
    Ok((gx, gw, gb))
}

/// Layer norm over the last dimension `d` of `rows` rows: (y, mean `[rows]`, invstd `[rows]`).
pub fn layernorm_forward(
    x: &CudaStorage,
    weight: &CudaStorage,
    bias: &CudaStorage,
    rows_n: usize,
    d: usize,
    eps: f32,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    all_same_dev("layernorm", x, &[weight, bias])?;
    check_len("layernorm", "input", x, rows_n * d)?;
    check_len("layernorm", "weight", weight, d)?;
    check_len("layernorm", "bias", bias, d)?;
    let mut y = x.empty(x.len())?;
    let mut mean = x.empty(rows_n)?;
    let mut invstd = x.empty(rows_n)?;
    if rows_n > 0 && d > 0 {
        launch!(x.dev, k::LAYERNORM_FWD, rows(rows_n);
            &x.buf, &weight.buf, &bias.buf, &mut y.buf, &mut mean.buf, &mut invstd.buf,
            &u(rows_n), &u(d), &eps)?;
    }
    Ok((y, mean, invstd))
}

/// Gradients (input, weight, bias) of layer norm from the forward's saved statistics.
pub fn layernorm_backward(
    x: &CudaStorage,
    weight: &CudaStorage,
    grad: &CudaStorage,
    mean: &CudaStorage,
    invstd: &CudaStorage,
    rows_n: usize,
    d: usize,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    all_same_dev("layernorm", x, &[weight, grad, mean, invstd])?;
    check_len("layernorm", "input", x, rows_n * d)?;
    check_len("layernorm", "output gradient", grad, rows_n * d)?;
    check_len("layernorm", "weight", weight, d)?;
    check_len("layernorm", "mean", mean, rows_n)?;
    check_len("layernorm", "invstd", invstd, rows_n)?;
    let mut gx = x.empty(x.len())?;
    let mut gw = x.zeros_like_len(d)?;
    let mut gb = x.zeros_like_len(d)?;
    if rows_n > 0 && d > 0 {
        launch!(x.dev, k::LAYERNORM_BWD_DX, rows(rows_n);
            &x.buf, &grad.buf, &weight.buf, &mean.buf, &invstd.buf, &mut gx.buf,
            &u(rows_n), &u(d))?;
        launch!(x.dev, k::LAYERNORM_BWD_PARAMS, elems(d);
            &x.buf, &grad.buf, &mean.buf, &invstd.buf, &mut gw.buf, &mut gb.buf,
            &u(rows_n), &u(d))?;
    }
    Ok((gx, gw, gb))
}
