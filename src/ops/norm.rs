//! Normalisation layers with PyTorch's semantics: batch normalisation over the channel
//! dimension (BatchNorm1d on `[N, C]` / `[N, C, L]`, BatchNorm2d on `[N, C, H, W]`) in training
//! and evaluation mode, and layer normalisation over trailing dimensions.
//!
//! Statistics are accumulated in f64 with two passes (mean, then squared deviations), so
//! inputs with a large mean relative to their spread do not lose their variance to
//! cancellation. Backward rules are the full ones: in training mode the gradient flows
//! through the batch mean and variance.

use super::{host, same_device};
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::par_chunks_mut;
use crate::backend::cuda::{self, BatchNormParams, CudaStorage};
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Elements of work below which spawning threads costs more than it saves.
const PAR_MIN: usize = 1 << 15;

/// How [`Tape::batch_norm`] behaves (PyTorch's `training`, `momentum`, `eps`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Normalise with the batch's statistics and update the running ones.
    pub training: bool,
    /// Weight of the batch statistics in the running-statistics update.
    pub momentum: f32,
    /// Added to the variance before the square root.
    pub eps: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            training: false,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// The result of [`Tape::batch_norm`].
#[derive(Clone, Debug)]
pub struct BatchNormOutput {
    pub out: Var,
    /// Some only in training mode: the updated running statistics
    pub running_mean: Option<Tensor>,
    /// Some only in training mode: the updated running statistics
    pub running_var: Option<Tensor>,
}

/// Computes `f(i)` for every `i < count` into a flat `[a0, b0, a1, b1, ...]` buffer, on
/// several threads when `work` (elements touched in total) is large enough.
fn pairs(count: usize, work: usize, f: impl Fn(usize) -> (f32, f32) + Sync) -> Result<Vec<f32>> {
    let mut buf = crate::backend::cpu::pool::zeroed(2 * count)?;
    let min_len = if work >= PAR_MIN { 0 } else { usize::MAX };
    par_chunks_mut(&mut buf, 2, min_len, |i, c| {
        let (a, b) = f(i);
        c[0] = a;
        c[1] = b;
    });
    Ok(buf)
}

/// What a forward pass keeps for its backward: host statistics from the CPU path, or the
/// per-channel (batch norm) / per-row (layer norm) mean and invstd left on the device.
enum Saved<T> {
    Cpu(T),
    Cuda {
        mean: CudaStorage,
        invstd: CudaStorage,
    },
}

/// The device buffer of `t`, which the caller's device checks put on the GPU.
fn device_buf<'a>(t: &'a Tensor, op: &'static str) -> Result<&'a CudaStorage> {
    match t.storage() {
        Storage::Cuda(s) => Ok(s),
        Storage::Cpu(_) => Err(Error::invalid(format!(
            "{op}: a host tensor among CUDA inputs"
        ))),
    }
}

/// `t`'s device buffer, or a new one of `len` copies of `fill` on device `ordinal` (the
/// kernels always take a weight and a bias; non-affine layers get ones and zeros).
fn device_or_fill<'a>(
    t: Option<&'a Tensor>,
    op: &'static str,
    len: usize,
    fill: f32,
    ordinal: usize,
) -> Result<std::borrow::Cow<'a, CudaStorage>> {
    use std::borrow::Cow;
    match t {
        Some(t) => device_buf(t, op).map(Cow::Borrowed),
        None => CudaStorage::from_host(&vec![fill; len], ordinal).map(Cow::Owned),
    }
}

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::invalid(format!(
            "{op}: eps must be finite and non-negative, got {eps}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Batch normalisation
// ---------------------------------------------------------------------------------------

/// `[N, C, spatial...]` seen as `N` samples of `C` channel planes of `s` values each.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    s: usize,
}

impl Geom {
    /// Values per channel across the batch.
    fn per_channel(&self) -> usize {
        self.n * self.s
    }

    /// The channel `ch` planes of every sample, in batch order.
    fn planes<'a>(&self, d: &'a [f32], ch: usize) -> impl Iterator<Item = &'a [f32]> + Clone {
        let Geom { n, c, s } = *self;
        (0..n).map(move |ni| &d[(ni * c + ch) * s..][..s])
    }
}

fn bn_geometry(x: &Tensor) -> Result<Geom> {
    if !(2..=4).contains(&x.rank()) {
        return Err(Error::shape(
            "batch_norm",
            format!(
                "input must be [N, C], [N, C, L] or [N, C, H, W], got shape {:?}",
                x.shape()
            ),
        ));
    }
    Ok(Geom {
        n: x.dim(0),
        c: x.dim(1),
        s: x.shape()[2..].iter().product(),
    })
}

/// Fails unless `t` is a `[c]` vector on `x`'s device.
fn check_per_channel(x: &Tensor, t: &Tensor, c: usize, what: &str) -> Result<()> {
    same_device(x, t, "batch_norm")?;
    if t.shape() != [c] {
        return Err(Error::shape(
            "batch_norm",
            format!(
                "{what} has shape {:?}, expected [{c}] (one value per channel of input {:?})",
                t.shape(),
                x.shape()
            ),
        ));
    }
    Ok(())
}

/// Everything the forward pass produces; `invstd` is what backward needs besides `mean`.
struct BnForward {
    geom: Geom,
    out: Tensor,
    /// Per channel: (mean, invstd).
    stats: Saved<(Vec<f32>, Vec<f32>)>,
    running: Option<(Tensor, Tensor)>,
}

fn bn_forward(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    cfg: BatchNormConfig,
) -> Result<BnForward> {
    const OP: &str = "batch_norm";
    let g = bn_geometry(x)?;
    check_per_channel(x, running_mean, g.c, "running_mean")?;
    check_per_channel(x, running_var, g.c, "running_var")?;
    if let Some(w) = weight {
        check_per_channel(x, w, g.c, "weight")?;
    }
    if let Some(b) = bias {
        check_per_channel(x, b, g.c, "bias")?;
    }
    check_eps(OP, cfg.eps)?;
    let m = g.per_channel();
    if cfg.training {
        if m <= 1 {
            return Err(Error::invalid(format!(
                "batch_norm: Expected more than 1 value per channel when training, got input \
                 of shape {:?}",
                x.shape()
            )));
        }
        if !cfg.momentum.is_finite() {
            return Err(Error::invalid(format!(
                "batch_norm: momentum must be finite, got {}",
                cfg.momentum
            )));
        }
    }
    if let Storage::Cuda(xs) = x.storage() {
        return bn_forward_cuda(x, xs, g, weight, bias, running_mean, running_var, cfg);
    }
    let xd = host(x, OP)?;

    let (mean, var, running) = if cfg.training {
        let moments = pairs(g.c, xd.len(), |ch| {
            let sum: f64 = g.planes(xd, ch).flatten().map(|&v| v as f64).sum();
            let mean = sum / m as f64;
            let sq: f64 = g
                .planes(xd, ch)
                .flatten()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum();
            (mean as f32, (sq / m as f64) as f32)
        })?;
        let mean: Vec<f32> = moments.iter().step_by(2).copied().collect();
        let var: Vec<f32> = moments.iter().skip(1).step_by(2).copied().collect();
        // PyTorch normalises with the biased variance but tracks the unbiased one.
        let unbias = m as f32 / (m - 1) as f32;
        let mom = cfg.momentum;
        let (rm, rv) = (host(running_mean, OP)?, host(running_var, OP)?);
        let new_mean: Vec<f32> = rm
            .iter()
            .zip(&mean)
            .map(|(&r, &b)| (1.0 - mom) * r + mom * b)
            .collect();
        let new_var: Vec<f32> = rv
            .iter()
            .zip(&var)
            .map(|(&r, &b)| (1.0 - mom) * r + mom * b * unbias)
            .collect();
        let running = (
            Tensor::cpu(new_mean, vec![g.c]),
            Tensor::cpu(new_var, vec![g.c]),
        );
        (mean, var, Some(running))
    } else {
        let rv = host(running_var, OP)?;
        if let Some((ch, &v)) = rv
            .iter()
            .enumerate()
            .find(|&(_, &v)| !(v + cfg.eps > 0.0 && v.is_finite()))
        {
            return Err(Error::invalid(format!(
                "batch_norm: running_var[{ch}] = {v} (eps {}) is not a usable variance",
                cfg.eps
            )));
        }
        (host(running_mean, OP)?.to_vec(), rv.to_vec(), None)
    };

    let invstd: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + cfg.eps as f64).sqrt()) as f32)
        .collect();
    let w = match weight {
        Some(w) => host(w, OP)?.to_vec(),
        None => vec![1.0; g.c],
    };
    let b = match bias {
        Some(b) => host(b, OP)?.to_vec(),
        None => crate::backend::cpu::pool::zeroed(g.c)?,
    };
    let scale: Vec<f32> = invstd.iter().zip(&w).map(|(i, w)| i * w).collect();

    let mut out = crate::backend::cpu::pool::zeroed(xd.len())?;
    let sample = g.c * g.s;
    par_chunks_mut(&mut out, sample, PAR_MIN, |ni, o| {
        let xs = &xd[ni * sample..][..sample];
        for ch in 0..g.c {
            let (mu, k, beta) = (mean[ch], scale[ch], b[ch]);
            let range = ch * g.s..(ch + 1) * g.s;
            for (o, &v) in o[range.clone()].iter_mut().zip(&xs[range]) {
                *o = (v - mu) * k + beta;
            }
        }
    });
    Ok(BnForward {
        geom: g,
        out: Tensor::cpu(out, x.shape().to_vec()),
        stats: Saved::Cpu((mean, invstd)),
        running,
    })
}

/// The CUDA arm of [`bn_forward`], after its shape and value checks. The kernel updates
/// running statistics in place, so it gets fresh copies of them: the caller's tensors stay
/// untouched and the copies become the returned new running statistics, as on the CPU.
/// Unlike the CPU path, evaluation mode does not check the running variance for usable
/// values: that would copy it to the host and stall the device queue on every layer; a bad
/// variance shows up as non-finite outputs instead.
#[allow(clippy::too_many_arguments)]
fn bn_forward_cuda(
    x: &Tensor,
    xs: &CudaStorage,
    g: Geom,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    cfg: BatchNormConfig,
) -> Result<BnForward> {
    const OP: &str = "batch_norm";
    let dev = xs.ordinal();
    let w = device_or_fill(weight, OP, g.c, 1.0, dev)?;
    let b = device_or_fill(bias, OP, g.c, 0.0, dev)?;
    // The clones share the caller's buffers until `storage_mut` copies them.
    let (mut rm, mut rv) = (running_mean.clone(), running_var.clone());
    let (Storage::Cuda(rms), Storage::Cuda(rvs)) = (rm.storage_mut(), rv.storage_mut()) else {
        return Err(Error::invalid(format!(
            "{OP}: host running statistics for a CUDA input"
        )));
    };
    let p = BatchNormParams {
        train: cfg.training,
        momentum: cfg.momentum,
        eps: cfg.eps,
    };
    let o = cuda::batchnorm_forward(xs, &w, &b, rms, rvs, g.n, g.c, g.s, p)?;
    let running = cfg.training.then_some((rm, rv));
    Ok(BnForward {
        geom: g,
        out: Tensor::from_cuda(o.y, x.shape().to_vec()),
        stats: Saved::Cuda {
            mean: o.mean,
            invstd: o.invstd,
        },
        running,
    })
}

/// Batch normalisation in evaluation mode: normalises each channel (dim 1) of `x` with the
/// running statistics. `x` is `[N, C]`, `[N, C, L]` or `[N, C, H, W]`; every other argument
/// is `[C]`.
pub fn batch_norm_eval(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f32,
) -> Result<Tensor> {
    let cfg = BatchNormConfig {
        training: false,
        eps,
        ..Default::default()
    };
    Ok(bn_forward(x, weight, bias, running_mean, running_var, cfg)?.out)
}

/// Batch normalisation in training mode: normalises each channel with the batch's mean and
/// biased variance. Returns `(output, new running mean, new running variance)`, the running
/// statistics updated as PyTorch does (`(1 - momentum) * old + momentum * batch`, with the
/// unbiased batch variance).
pub fn batch_norm_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let cfg = BatchNormConfig {
        training: true,
        momentum,
        eps,
    };
    let f = bn_forward(x, weight, bias, running_mean, running_var, cfg)?;
    let (rm, rv) = f
        .running
        .expect("training mode always yields running statistics");
    Ok((f.out, rm, rv))
}

struct BatchNormBackward {
    geom: Geom,
    stats: Saved<(Vec<f32>, Vec<f32>)>,
    training: bool,
    has_weight: bool,
    has_bias: bool,
}

impl BackwardOp for BatchNormBackward {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "batch_norm";
        let g = self.geom;
        let w_idx = 1;
        let b_idx = 1 + self.has_weight as usize;
        let needs_w = self.has_weight && c.needs[w_idx];
        let needs_b = self.has_bias && c.needs[b_idx];
        let (mean, invstd) = match &self.stats {
            Saved::Cpu((m, i)) => (m, i),
            Saved::Cuda { mean, invstd } => {
                let xs = device_buf(c.inputs[0], OP)?;
                let weight = self.has_weight.then(|| c.inputs[w_idx]);
                let w = device_or_fill(weight, OP, g.c, 1.0, xs.ordinal())?;
                let (gx, gw, gb) = cuda::batchnorm_backward(
                    xs,
                    &w,
                    device_buf(c.grad, OP)?,
                    mean,
                    invstd,
                    g.n,
                    g.c,
                    g.s,
                    self.training,
                )?;
                let mut result =
                    vec![c.needs[0].then(|| Tensor::from_cuda(gx, c.inputs[0].shape().to_vec()))];
                if self.has_weight {
                    result.push(needs_w.then(|| Tensor::from_cuda(gw, vec![g.c])));
                }
                if self.has_bias {
                    result.push(needs_b.then(|| Tensor::from_cuda(gb, vec![g.c])));
                }
                return Ok(result);
            }
        };
        let xd = host(c.inputs[0], OP)?;
        let gd = host(c.grad, OP)?;
        let w = if self.has_weight {
            host(c.inputs[w_idx], OP)?.to_vec()
        } else {
            vec![1.0; g.c]
        };

        // Per channel: sum(dy) and sum(dy * xhat). In training mode dx depends on both
        // (the batch mean and variance are functions of x); in evaluation mode only the
        // parameter gradients do.
        let sums = if (self.training && c.needs[0]) || needs_w || needs_b {
            pairs(g.c, xd.len(), |ch| {
                let (mu, is) = (mean[ch] as f64, invstd[ch] as f64);
                let (mut sg, mut sgx) = (0.0f64, 0.0f64);
                for (xp, gp) in g.planes(xd, ch).zip(g.planes(gd, ch)) {
                    for (&xv, &gv) in xp.iter().zip(gp) {
                        sg += gv as f64;
                        sgx += gv as f64 * (xv as f64 - mu) * is;
                    }
                }
                (sg as f32, sgx as f32)
            })?
        } else {
            Vec::new()
        };

        let gx = if c.needs[0] {
            let m = g.per_channel() as f32;
            let sample = g.c * g.s;
            let mut out = crate::backend::cpu::pool::zeroed(xd.len())?;
            par_chunks_mut(&mut out, sample, PAR_MIN, |ni, o| {
                let xs = &xd[ni * sample..][..sample];
                let gs = &gd[ni * sample..][..sample];
                for ch in 0..g.c {
                    let range = ch * g.s..(ch + 1) * g.s;
                    let (mu, is) = (mean[ch], invstd[ch]);
                    let k = w[ch] * is;
                    let dst = o[range.clone()].iter_mut();
                    if self.training {
                        let mg = sums[2 * ch] / m;
                        let mgx = sums[2 * ch + 1] / m;
                        for ((o, &xv), &gv) in dst.zip(&xs[range.clone()]).zip(&gs[range]) {
                            *o = k * (gv - mg - (xv - mu) * is * mgx);
                        }
                    } else {
                        for (o, &gv) in dst.zip(&gs[range]) {
                            *o = k * gv;
                        }
                    }
                }
            });
            Some(Tensor::cpu(out, c.inputs[0].shape().to_vec()))
        } else {
            None
        };

        let per_channel = |offset: usize| {
            Tensor::cpu(
                sums.iter().skip(offset).step_by(2).copied().collect(),
                vec![g.c],
            )
        };
        let mut result = vec![gx];
        if self.has_weight {
            result.push(needs_w.then(|| per_channel(1)));
        }
        if self.has_bias {
            result.push(needs_b.then(|| per_channel(0)));
        }
        Ok(result)
    }
}

// ---------------------------------------------------------------------------------------
// Layer normalisation
// ---------------------------------------------------------------------------------------

/// `(rows, d)`: the number of normalised groups and the size of each.
fn ln_geometry(x: &Tensor, normalized_shape: &[usize]) -> Result<(usize, usize)> {
    let k = normalized_shape.len();
    if k == 0 {
        return Err(Error::shape(
            "layer_norm",
            "normalized_shape must have at least one dimension",
        ));
    }
    if k > x.rank() || x.shape()[x.rank() - k..] != *normalized_shape {
        return Err(Error::shape(
            "layer_norm",
            format!(
                "normalized_shape {normalized_shape:?} is not a suffix of input shape {:?}",
                x.shape()
            ),
        ));
    }
    let rows = x.shape()[..x.rank() - k].iter().product();
    Ok((rows, normalized_shape.iter().product()))
}

fn check_affine(
    x: &Tensor,
    t: Option<&Tensor>,
    normalized_shape: &[usize],
    what: &str,
) -> Result<()> {
    let Some(t) = t else { return Ok(()) };
    same_device(x, t, "layer_norm")?;
    if t.shape() != normalized_shape {
        return Err(Error::shape(
            "layer_norm",
            format!(
                "{what} has shape {:?}, expected normalized_shape {normalized_shape:?}",
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Layer normalisation's output and its per-row statistics (on the CPU, `[mean, invstd]`
/// pairs).
fn ln_forward(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<(Tensor, Saved<Vec<f32>>)> {
    const OP: &str = "layer_norm";
    let (rows, d) = ln_geometry(x, normalized_shape)?;
    check_affine(x, weight, normalized_shape, "weight")?;
    check_affine(x, bias, normalized_shape, "bias")?;
    check_eps(OP, eps)?;
    if let Storage::Cuda(xs) = x.storage() {
        let w = device_or_fill(weight, OP, d, 1.0, xs.ordinal())?;
        let b = device_or_fill(bias, OP, d, 0.0, xs.ordinal())?;
        let (y, mean, invstd) = cuda::layernorm_forward(xs, &w, &b, rows, d, eps)?;
        return Ok((
            Tensor::from_cuda(y, x.shape().to_vec()),
            Saved::Cuda { mean, invstd },
        ));
    }
    let xd = host(x, OP)?;
    let w = match weight {
        Some(w) => host(w, OP)?.to_vec(),
        None => vec![1.0; d],
    };
    let b = match bias {
        Some(b) => host(b, OP)?.to_vec(),
        None => crate::backend::cpu::pool::zeroed(d)?,
    };
    let stats = pairs(rows, xd.len(), |r| {
        let row = &xd[r * d..][..d];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
    })?;
    let mut out = crate::backend::cpu::pool::zeroed(xd.len())?;
    par_chunks_mut(&mut out, d, PAR_MIN, |r, o| {
        let (mu, is) = (stats[2 * r], stats[2 * r + 1]);
        let row = &xd[r * d..][..d];
        for (((o, &v), &w), &b) in o.iter_mut().zip(row).zip(&w).zip(&b) {
            *o = (v - mu) * is * w + b;
        }
    });
    Ok((Tensor::cpu(out, x.shape().to_vec()), Saved::Cpu(stats)))
}

/// Layer normalisation over the trailing dimensions `normalized_shape` (a suffix of `x`'s
/// shape), with the biased variance; `weight` and `bias` are shaped like `normalized_shape`.
pub fn layer_norm(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Result<Tensor> {
    Ok(ln_forward(x, normalized_shape, weight, bias, eps)?.0)
}

struct LayerNormBackward {
    d: usize,
    /// Per row: mean, invstd.
    stats: Saved<Vec<f32>>,
    has_weight: bool,
    has_bias: bool,
}

impl BackwardOp for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        const OP: &str = "layer_norm";
        let d = self.d;
        let w_idx = 1;
        let b_idx = 1 + self.has_weight as usize;
        let needs_w = self.has_weight && c.needs[w_idx];
        let needs_b = self.has_bias && c.needs[b_idx];
        let stats = match &self.stats {
            Saved::Cpu(s) => s,
            Saved::Cuda { mean, invstd } => {
                let xs = device_buf(c.inputs[0], OP)?;
                let weight = self.has_weight.then(|| c.inputs[w_idx]);
                let w = device_or_fill(weight, OP, d, 1.0, xs.ordinal())?;
                let rows = mean.len();
                let (gx, gw, gb) = cuda::layernorm_backward(
                    xs,
                    &w,
                    device_buf(c.grad, OP)?,
                    mean,
                    invstd,
                    rows,
                    d,
                )?;
                let mut result =
                    vec![c.needs[0].then(|| Tensor::from_cuda(gx, c.inputs[0].shape().to_vec()))];
                if self.has_weight {
                    result.push(
                        needs_w.then(|| Tensor::from_cuda(gw, c.inputs[w_idx].shape().to_vec())),
                    );
                }
                if self.has_bias {
                    result.push(
                        needs_b.then(|| Tensor::from_cuda(gb, c.inputs[b_idx].shape().to_vec())),
                    );
                }
                return Ok(result);
            }
        };
        let w = if self.has_weight {
            host(c.inputs[w_idx], OP)?.to_vec()
        } else {
            vec![1.0; d]
        };
        let xd = host(c.inputs[0], OP)?;
        let gd = host(c.grad, OP)?;

        let gx = if c.needs[0] {
            let mut out = crate::backend::cpu::pool::zeroed(xd.len())?;
            par_chunks_mut(&mut out, d, PAR_MIN, |r, o| {
                let (mu, is) = (stats[2 * r], stats[2 * r + 1]);
                let row = &xd[r * d..][..d];
                let grow = &gd[r * d..][..d];
                // dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
                // dxhat = dy * weight.
                let (mut s1, mut s2) = (0.0f64, 0.0f64);
                for ((&xv, &gv), &wv) in row.iter().zip(grow).zip(&w) {
                    let dxhat = (gv * wv) as f64;
                    s1 += dxhat;
                    s2 += dxhat * ((xv - mu) * is) as f64;
                }
                let (m1, m2) = ((s1 / d as f64) as f32, (s2 / d as f64) as f32);
                for (((o, &xv), &gv), &wv) in o.iter_mut().zip(row).zip(grow).zip(&w) {
                    *o = is * (gv * wv - m1 - (xv - mu) * is * m2);
                }
            });
            Some(Tensor::cpu(out, c.inputs[0].shape().to_vec()))
        } else {
            None
        };

        let (mut gw, mut gb) = (vec![0.0f64; d], vec![0.0f64; d]);
        if needs_w || needs_b {
            for (r, (row, grow)) in xd.chunks_exact(d).zip(gd.chunks_exact(d)).enumerate() {
                let (mu, is) = (stats[2 * r], stats[2 * r + 1]);
                for (((aw, ab), &xv), &gv) in gw.iter_mut().zip(&mut gb).zip(row).zip(grow) {
                    *aw += (gv * (xv - mu) * is) as f64;
                    *ab += gv as f64;
                }
            }
        }
        let shape = |t: &Tensor| t.shape().to_vec();
        let mut result = vec![gx];
        if self.has_weight {
            result.push(needs_w.then(|| {
                Tensor::cpu(
                    gw.iter().map(|&v| v as f32).collect(),
                    shape(c.inputs[w_idx]),
                )
            }));
        }
        if self.has_bias {
            result.push(needs_b.then(|| {
                Tensor::cpu(
                    gb.iter().map(|&v| v as f32).collect(),
                    shape(c.inputs[b_idx]),
                )
            }));
        }
        Ok(result)
    }
}

impl Tape {
    /// `x`: `[N, C]` (BatchNorm1d), `[N, C, L]` or `[N, C, H, W]` (BatchNorm2d); statistics
    /// per channel (dim 1); `weight`, `bias` and the running statistics are `[C]`.
    ///
    /// Training mode: normalise with the batch's biased variance, return running stats
    /// updated as PyTorch does (unbiased batch variance,
    /// `new = (1 - momentum) * old + momentum * batch`); needs more than one value per
    /// channel. Evaluation mode: normalise with the running stats (the input tensors), no
    /// update; backward then treats the stats as constants.
    pub fn batch_norm(
        &mut self,
        x: Var,
        weight: Option<Var>,
        bias: Option<Var>,
        running_mean: &Tensor,
        running_var: &Tensor,
        cfg: BatchNormConfig,
    ) -> Result<BatchNormOutput> {
        let f = bn_forward(
            self.value(x),
            weight.map(|w| self.value(w)),
            bias.map(|b| self.value(b)),
            running_mean,
            running_var,
            cfg,
        )?;
        let inputs: Vec<Var> = [Some(x), weight, bias].into_iter().flatten().collect();
        let BnForward {
            geom,
            out,
            stats,
            running,
        } = f;
        let out = self.push(out, &inputs, || {
            Box::new(BatchNormBackward {
                geom,
                stats,
                training: cfg.training,
                has_weight: weight.is_some(),
                has_bias: bias.is_some(),
            })
        });
        let (running_mean, running_var) = running.unzip();
        Ok(BatchNormOutput {
            out,
            running_mean,
            running_var,
        })
    }

    /// Normalises over the trailing dims given by `normalized_shape` (must be a non-empty
    /// suffix of `x`'s shape), `weight`/`bias` shaped like `normalized_shape`. PyTorch
    /// semantics (biased variance).
    pub fn layer_norm(
        &mut self,
        x: Var,
        normalized_shape: &[usize],
        weight: Option<Var>,
        bias: Option<Var>,
        eps: f32,
    ) -> Result<Var> {
        let (out, stats) = ln_forward(
            self.value(x),
            normalized_shape,
            weight.map(|w| self.value(w)),
            bias.map(|b| self.value(b)),
            eps,
        )?;
        let d = normalized_shape.iter().product();
        let inputs: Vec<Var> = [Some(x), weight, bias].into_iter().flatten().collect();
        Ok(self.push(out, &inputs, || {
            Box::new(LayerNormBackward {
                d,
                stats,
                has_weight: weight.is_some(),
                has_bias: bias.is_some(),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, check_gradients_at, GradCheck};
    use crate::rng::Rng;

    fn t(v: &[f32], s: &[usize]) -> Tensor {
        Tensor::from_slice(v, s).unwrap()
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= tol, "element {i}: {a} vs {b} ({got:?})");
        }
    }

    fn train(eps: f32) -> BatchNormConfig {
        BatchNormConfig {
            training: true,
            momentum: 0.1,
            eps,
        }
    }

    // 1/sqrt(1.25) = 0.894427191: [1,2,3,4] has mean 2.5, biased variance 1.25, so
    // xhat = [-1.5, -0.5, 0.5, 1.5] * 0.894427191.
    const XHAT_1234: [f32; 4] = [-1.341_640_8, -0.447_213_6, 0.447_213_6, 1.341_640_8];

    #[test]
    fn batch_norm_training_forward_and_running_stats() {
        // One channel, four samples; weight 2, bias 1: 2 * xhat + 1.
        let x = t(&[1.0, 2.0, 3.0, 4.0], &[4, 1]);
        let (y, rm, rv) = batch_norm_train(
            &x,
            Some(&t(&[2.0], &[1])),
            Some(&t(&[1.0], &[1])),
            &t(&[0.0], &[1]),
            &t(&[1.0], &[1]),
            0.1,
            0.0,
        )
        .unwrap();
        let want: Vec<f32> = XHAT_1234.iter().map(|v| 2.0 * v + 1.0).collect();
        assert_close(&y.to_vec().unwrap(), &want, 1e-6);
        // running mean 0.9 * 0 + 0.1 * 2.5 = 0.25; unbiased variance 5/3, so
        // running var 0.9 * 1 + 0.1 * 5/3 = 1.0666667.
        assert_close(&rm.to_vec().unwrap(), &[0.25], 1e-7);
        assert_close(&rv.to_vec().unwrap(), &[1.066_666_7], 1e-6);

        // Two channels of [N=2, C=2]: channel 0 = {1, 3} (mean 2, var 1), channel 1 =
        // {10, 30} (mean 20, var 100); both normalise to [-1, 1]. With momentum 0.5 and
        // running stats (1, 1) / (1, 2): mean -> (1.5, 10.5), unbiased var (2, 200) ->
        // (0.5 * 1 + 0.5 * 2, 0.5 * 2 + 0.5 * 200) = (1.5, 101).
        let x = t(&[1.0, 10.0, 3.0, 30.0], &[2, 2]);
        let (y, rm, rv) = batch_norm_train(
            &x,
            None,
            None,
            &t(&[1.0, 1.0], &[2]),
            &t(&[1.0, 2.0], &[2]),
            0.5,
            0.0,
        )
        .unwrap();
        assert_close(&y.to_vec().unwrap(), &[-1.0, -1.0, 1.0, 1.0], 1e-6);
        assert_close(&rm.to_vec().unwrap(), &[1.5, 10.5], 1e-6);
        assert_close(&rv.to_vec().unwrap(), &[1.5, 101.0], 1e-5);

        // 4-D [N=2, C=2, H=1, W=2]: channel 0 holds {1, 2, 3, 4} spread over both samples
        // (sample 0: 1, 2; sample 1: 3, 4), channel 1 holds {5, 5, 5, 5} (variance 0, so with
        // eps 1 it becomes (5 - 5) / 1 = 0).
        let x = t(&[1.0, 2.0, 5.0, 5.0, 3.0, 4.0, 5.0, 5.0], &[2, 2, 1, 2]);
        let (y, _, rv) = batch_norm_train(
            &x,
            None,
            None,
            &t(&[0.0, 0.0], &[2]),
            &t(&[1.0, 1.0], &[2]),
            0.1,
            1.0,
        )
        .unwrap();
        // With eps 1 channel 0 divides by sqrt(1.25 + 1) = 1.5: [-1, -1/3, 1/3, 1].
        let third = 1.0 / 3.0;
        assert_close(
            &y.to_vec().unwrap(),
            &[-1.0, -third, 0.0, 0.0, third, 1.0, 0.0, 0.0],
            1e-6,
        );
        assert_close(&rv.to_vec().unwrap(), &[1.066_666_7, 0.9], 1e-6);
    }

    #[test]
    fn batch_norm_training_is_mean_zero_unit_variance_on_awkward_sizes() {
        let mut rng = Rng::new(3);
        let x = Tensor::randn(&[7, 5, 3, 3], 4.0, &mut rng);
        let x = crate::ops::elementwise::add_scalar(&x, 100.0).unwrap();
        let (y, _, _) = batch_norm_train(
            &x,
            None,
            None,
            &Tensor::zeros(&[5]),
            &Tensor::full(&[5], 1.0),
            0.1,
            0.0,
        )
        .unwrap();
        let y = y.to_vec().unwrap();
        for ch in 0..5 {
            let vals: Vec<f64> = (0..7)
                .flat_map(|n| (0..9).map(move |s| (n * 5 + ch) * 9 + s))
                .map(|i| y[i] as f64)
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            assert!(mean.abs() < 1e-4, "channel {ch}: mean {mean}");
            assert!((var - 1.0).abs() < 1e-3, "channel {ch}: variance {var}");
        }
    }

    #[test]
    fn batch_norm_eval_uses_running_stats() {
        // running mean 2, running var 4 (eps 0): (x - 2) / 2 = [-0.5, 0, 0.5, 1]; then
        // weight 3, bias -1: [-2.5, -1, 0.5, 2].
        let x = t(&[1.0, 2.0, 3.0, 4.0], &[4, 1]);
        let (rm, rv) = (t(&[2.0], &[1]), t(&[4.0], &[1]));
        let y = batch_norm_eval(&x, None, None, &rm, &rv, 0.0).unwrap();
        assert_close(&y.to_vec().unwrap(), &[-0.5, 0.0, 0.5, 1.0], 1e-7);
        let y = batch_norm_eval(
            &x,
            Some(&t(&[3.0], &[1])),
            Some(&t(&[-1.0], &[1])),
            &rm,
            &rv,
            0.0,
        )
        .unwrap();
        assert_close(&y.to_vec().unwrap(), &[-2.5, -1.0, 0.5, 2.0], 1e-6);

        // Per channel in [N=1, C=2, L=3]: channel 0 stats (0, 1), channel 1 stats (10, 25).
        let x = t(&[1.0, 2.0, 3.0, 10.0, 15.0, 20.0], &[1, 2, 3]);
        let y = batch_norm_eval(
            &x,
            None,
            None,
            &t(&[0.0, 10.0], &[2]),
            &t(&[1.0, 25.0], &[2]),
            0.0,
        )
        .unwrap();
        assert_close(&y.to_vec().unwrap(), &[1.0, 2.0, 3.0, 0.0, 1.0, 2.0], 1e-6);

        // On a tape: no running stats come back, and one value per channel is fine.
        let mut tape = Tape::new();
        let xv = tape.var(t(&[6.0], &[1, 1]), 0);
        let o = tape
            .batch_norm(xv, None, None, &rm, &rv, BatchNormConfig::default())
            .unwrap();
        assert!(o.running_mean.is_none() && o.running_var.is_none());
        // default eps 1e-5: (6 - 2) / sqrt(4.00001) = 2 (1 - 1.25e-6)
        assert_close(&tape.value(o.out).to_vec().unwrap(), &[1.999_997_5], 1e-6);
    }

    #[test]
    fn batch_norm_tape_training_returns_stats_even_without_grad() {
        let mut tape = Tape::no_grad();
        let xv = tape.constant(t(&[1.0, 2.0, 3.0, 4.0], &[4, 1]));
        let o = tape
            .batch_norm(
                xv,
                None,
                None,
                &t(&[0.0], &[1]),
                &t(&[1.0], &[1]),
                train(0.0),
            )
            .unwrap();
        assert_close(&tape.value(o.out).to_vec().unwrap(), &XHAT_1234, 1e-6);
        assert_close(&o.running_mean.unwrap().to_vec().unwrap(), &[0.25], 1e-7);
        assert_close(
            &o.running_var.unwrap().to_vec().unwrap(),
            &[1.066_666_7],
            1e-6,
        );
    }

    #[test]
    fn batch_norm_rejects_bad_shapes_and_values() {
        let x = Tensor::zeros(&[4, 3]);
        let c3 = Tensor::zeros(&[3]);
        let ones3 = Tensor::full(&[3], 1.0);
        let c2 = Tensor::zeros(&[2]);
        let ev = |x: &Tensor, w: Option<&Tensor>, rm: &Tensor, rv: &Tensor| {
            batch_norm_eval(x, w, None, rm, rv, 1e-5)
        };
        assert!(ev(&x, None, &c3, &ones3).is_ok());
        let e = ev(&x, None, &c2, &ones3).unwrap_err().to_string();
        assert!(e.contains("running_mean") && e.contains("[3]"), "{e}");
        let e = ev(&x, None, &c3, &c2).unwrap_err().to_string();
        assert!(e.contains("running_var"), "{e}");
        let e = ev(&x, Some(&c2), &c3, &ones3).unwrap_err().to_string();
        assert!(e.contains("weight"), "{e}");
        let e = batch_norm_eval(&x, None, Some(&Tensor::zeros(&[3, 1])), &c3, &ones3, 1e-5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bias"), "{e}");
        assert!(ev(&Tensor::zeros(&[4]), None, &c3, &ones3).is_err());
        assert!(ev(&Tensor::zeros(&[1, 3, 1, 1, 1]), None, &c3, &ones3).is_err());
        let e = ev(&x, None, &c3, &t(&[1.0, -1.0, 1.0], &[3]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("running_var[1]"), "{e}");
        assert!(batch_norm_eval(&x, None, None, &c3, &ones3, -1.0).is_err());

        // Training needs more than one value per channel: N * spatial == 1 is refused.
        for shape in [&[1usize, 3][..], &[1, 3, 1], &[1, 3, 1, 1]] {
            let e = batch_norm_train(&Tensor::zeros(shape), None, None, &c3, &ones3, 0.1, 1e-5)
                .unwrap_err()
                .to_string();
            assert!(e.contains("Expected more than 1 value per channel"), "{e}");
        }
        assert!(batch_norm_train(
            &Tensor::zeros(&[1, 3, 2]),
            None,
            None,
            &c3,
            &ones3,
            0.1,
            1e-5
        )
        .is_ok());
        assert!(batch_norm_train(&x, None, None, &c3, &ones3, f32::NAN, 1e-5).is_err());
    }

    /// Runs the batchnorm gradient checks for `shape` with and without the affine parameters.
    fn bn_gradcheck(shape: &[usize], training: bool) {
        let c = shape[1];
        let mut rng = Rng::new(11);
        let rm = Tensor::randn(&[c], 0.5, &mut rng);
        let rv = Tensor::rand_uniform(&[c], 0.5, 2.0, &mut rng);
        let cfg = BatchNormConfig {
            training,
            momentum: 0.1,
            eps: 1e-5,
        };
        let gc = GradCheck::default();
        let (rm2, rv2) = (rm.clone(), rv.clone());
        check_gradients(&[shape, &[c], &[c]], gc, move |t, v| {
            Ok(t.batch_norm(v[0], Some(v[1]), Some(v[2]), &rm2, &rv2, cfg)?
                .out)
        });
        check_gradients(&[shape], gc, move |t, v| {
            Ok(t.batch_norm(v[0], None, None, &rm, &rv, cfg)?.out)
        });
    }

    #[test]
    fn batch_norm_gradients_match_finite_differences() {
        for shape in [
            &[5usize, 3][..],
            &[3, 1],
            &[2, 3, 5],
            &[2, 3, 2, 3],
            &[3, 2, 1, 3],
        ] {
            bn_gradcheck(shape, true);
            bn_gradcheck(shape, false);
        }
        // Weight only / bias only: the input order must still line up.
        let (rm, rv) = (Tensor::zeros(&[3]), Tensor::full(&[3], 1.0));
        let cfg = train(1e-5);
        check_gradients(&[&[4, 3], &[3]], GradCheck::default(), |t, v| {
            Ok(t.batch_norm(v[0], Some(v[1]), None, &rm, &rv, cfg)?.out)
        });
        check_gradients(&[&[4, 3], &[3]], GradCheck::default(), |t, v| {
            Ok(t.batch_norm(v[0], None, Some(v[1]), &rm, &rv, cfg)?.out)
        });
    }

    #[test]
    fn batch_norm_training_gradient_hand_values() {
        // Loss = sum(y * g) with g = [1, 0, 0, 0] on x = [1, 2, 3, 4] (eps 0): dbias = 1,
        // dweight = xhat[0] = -1.3416408, and
        // dx = invstd * (g - mean(g) - xhat * mean(g * xhat))
        //    = 0.894427 * ([1, 0, 0, 0] - 0.25 - xhat * (-0.3354102))
        //    = 0.894427 * [0.3, -0.4, -0.1, 0.2] = [0.2683282, -0.3577709, -0.0894427, 0.1788854].
        let mut tape = Tape::new();
        let x = tape.var(t(&[1.0, 2.0, 3.0, 4.0], &[4, 1]), 0);
        let w = tape.var(t(&[1.0], &[1]), 1);
        let b = tape.var(t(&[0.0], &[1]), 2);
        let o = tape
            .batch_norm(
                x,
                Some(w),
                Some(b),
                &t(&[0.0], &[1]),
                &t(&[1.0], &[1]),
                train(0.0),
            )
            .unwrap();
        let grads = tape
            .backward_with_seed(o.out, t(&[1.0, 0.0, 0.0, 0.0], &[4, 1]))
            .unwrap();
        assert_close(
            &grads.get(0).unwrap().to_vec().unwrap(),
            &[0.268_328_2, -0.357_770_9, -0.089_442_7, 0.178_885_4],
            1e-6,
        );
        assert_close(
            &grads.get(1).unwrap().to_vec().unwrap(),
            &[XHAT_1234[0]],
            1e-6,
        );
        assert_close(&grads.get(2).unwrap().to_vec().unwrap(), &[1.0], 1e-7);
    }

    #[test]
    fn large_inputs_take_the_threaded_path_and_match_a_naive_reference() {
        // 33 * 7 * 13 * 13 = 39039 elements, above PAR_MIN, so the per-channel statistics,
        // the normalisation and the backward all run split across threads.
        let (n, c, s) = (33usize, 7usize, 169usize);
        let mut rng = Rng::new(17);
        let x = Tensor::randn(&[n, c, 13, 13], 2.0, &mut rng);
        let w = Tensor::randn(&[c], 1.0, &mut rng);
        let b = Tensor::randn(&[c], 1.0, &mut rng);
        let seed = Tensor::randn(x.shape(), 1.0, &mut rng);
        let eps = 1e-5;
        let mut tape = Tape::new();
        let (xv, wv, bv) = (
            tape.var(x.clone(), 0),
            tape.var(w.clone(), 1),
            tape.var(b.clone(), 2),
        );
        let o = tape
            .batch_norm(
                xv,
                Some(wv),
                Some(bv),
                &Tensor::zeros(&[c]),
                &Tensor::full(&[c], 1.0),
                train(eps),
            )
            .unwrap();
        let y = tape.value(o.out).to_vec().unwrap();
        let grads = tape.backward_with_seed(o.out, seed.clone()).unwrap();
        let (gx, gw, gb) = (
            grads.get(0).unwrap().to_vec().unwrap(),
            grads.get(1).unwrap().to_vec().unwrap(),
            grads.get(2).unwrap().to_vec().unwrap(),
        );
        let (xd, wd, bd, gd) = (
            x.as_slice().unwrap(),
            w.as_slice().unwrap(),
            b.as_slice().unwrap(),
            seed.as_slice().unwrap(),
        );
        for ch in 0..c {
            let idx: Vec<usize> = (0..n)
                .flat_map(|ni| (0..s).map(move |si| (ni * c + ch) * s + si))
                .collect();
            let m = idx.len() as f64;
            let mean = idx.iter().map(|&i| xd[i] as f64).sum::<f64>() / m;
            let var = idx
                .iter()
                .map(|&i| (xd[i] as f64 - mean).powi(2))
                .sum::<f64>()
                / m;
            let is = 1.0 / (var + eps as f64).sqrt();
            let xhat = |i: usize| (xd[i] as f64 - mean) * is;
            let sg: f64 = idx.iter().map(|&i| gd[i] as f64).sum();
            let sgx: f64 = idx.iter().map(|&i| gd[i] as f64 * xhat(i)).sum();
            assert!((gb[ch] as f64 - sg).abs() < 1e-3, "dbias[{ch}]");
            assert!((gw[ch] as f64 - sgx).abs() < 1e-3, "dweight[{ch}]");
            for &i in &idx {
                let want_y = xhat(i) * wd[ch] as f64 + bd[ch] as f64;
                assert!((y[i] as f64 - want_y).abs() < 1e-4, "y[{i}]");
                let want_gx = wd[ch] as f64 * is * (gd[i] as f64 - sg / m - xhat(i) * sgx / m);
                assert!((gx[i] as f64 - want_gx).abs() < 1e-4, "dx[{i}]");
            }
        }

        // Layer norm over [rows, d] must equal each row normalised on its own (single-row
        // calls stay on one thread); the weight gradient is the sum of the rows' gradients.
        let (rows, d) = (1031usize, 37usize);
        let x = Tensor::randn(&[rows, d], 1.5, &mut rng);
        let w = Tensor::randn(&[d], 1.0, &mut rng);
        let seed = Tensor::randn(&[rows, d], 1.0, &mut rng);
        let run = |x: &Tensor, seed: &Tensor| {
            let mut tape = Tape::new();
            let (xv, wv) = (tape.var(x.clone(), 0), tape.var(w.clone(), 1));
            let y = tape.layer_norm(xv, &[d], Some(wv), None, eps).unwrap();
            let yv = tape.value(y).to_vec().unwrap();
            let g = tape.backward_with_seed(y, seed.clone()).unwrap();
            (
                yv,
                g.get(0).unwrap().to_vec().unwrap(),
                g.get(1).unwrap().to_vec().unwrap(),
            )
        };
        let (y, gx, gw) = run(&x, &seed);
        let mut gw_sum = vec![0.0f64; d];
        for r in 0..rows {
            let row = |t: &Tensor| t.as_slice().unwrap()[r * d..][..d].to_vec();
            let (yr, gxr, gwr) = run(&t(&row(&x), &[1, d]), &t(&row(&seed), &[1, d]));
            assert_eq!(&y[r * d..][..d], &yr[..], "row {r}");
            assert_eq!(&gx[r * d..][..d], &gxr[..], "row {r}");
            for (a, &v) in gw_sum.iter_mut().zip(&gwr) {
                *a += v as f64;
            }
        }
        for (j, (&a, &b)) in gw.iter().zip(&gw_sum).enumerate() {
            assert!((a as f64 - b).abs() < 1e-3, "dweight[{j}]: {a} vs {b}");
        }
    }

    #[test]
    fn layer_norm_forward_hand_values() {
        // Row [1, 2, 3, 4]: mean 2.5, var 1.25. Row [2, 4, 6, 8]: mean 5, var 5, and
        // (x - 5) / sqrt(5) gives the same xhat (scale invariance).
        let x = t(&[1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, 8.0], &[2, 4]);
        let y = layer_norm(&x, &[4], None, None, 0.0).unwrap();
        let both: Vec<f32> = XHAT_1234.iter().chain(&XHAT_1234).copied().collect();
        assert_close(&y.to_vec().unwrap(), &both, 1e-6);
        // Weight [1, 0, -1, 2] and bias [0, 1, 0, 1] per feature.
        let w = t(&[1.0, 0.0, -1.0, 2.0], &[4]);
        let b = t(&[0.0, 1.0, 0.0, 1.0], &[4]);
        let y = layer_norm(&x, &[4], Some(&w), Some(&b), 0.0).unwrap();
        let row = [XHAT_1234[0], 1.0, -XHAT_1234[2], 2.0 * XHAT_1234[3] + 1.0];
        let both: Vec<f32> = row.iter().chain(&row).copied().collect();
        assert_close(&y.to_vec().unwrap(), &both, 1e-6);
        // Two normalised dims: [2, 2, 2] over [2, 2] is the [2, 4] case regrouped.
        let y = layer_norm(&x.reshape(&[2, 2, 2]).unwrap(), &[2, 2], None, None, 0.0).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        let both: Vec<f32> = XHAT_1234.iter().chain(&XHAT_1234).copied().collect();
        assert_close(&y.to_vec().unwrap(), &both, 1e-6);
        // Whole-tensor normalisation and eps: [0, 2] has var 1, eps 3 -> (x - 1) / 2.
        let y = layer_norm(&t(&[0.0, 2.0], &[2]), &[2], None, None, 3.0).unwrap();
        assert_close(&y.to_vec().unwrap(), &[-0.5, 0.5], 1e-7);
    }

    #[test]
    fn layer_norm_keeps_precision_with_a_large_offset() {
        // x = 1000 + [1, 2, 3, 4]: f32 holds these exactly, and the two-pass f64 statistics
        // must recover xhat of [1, 2, 3, 4].
        let x = t(&[1001.0, 1002.0, 1003.0, 1004.0], &[1, 4]);
        let y = layer_norm(&x, &[4], None, None, 0.0).unwrap();
        assert_close(&y.to_vec().unwrap(), &XHAT_1234, 1e-5);
    }

    #[test]
    fn layer_norm_rejects_bad_shapes() {
        let x = Tensor::zeros(&[2, 3, 4]);
        assert!(layer_norm(&x, &[4], None, None, 1e-5).is_ok());
        assert!(layer_norm(&x, &[2, 3, 4], None, None, 1e-5).is_ok());
        let e = layer_norm(&x, &[3], None, None, 1e-5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a suffix") && e.contains("[3]"), "{e}");
        assert!(layer_norm(&x, &[1, 2, 3, 4], None, None, 1e-5).is_err());
        assert!(layer_norm(&x, &[], None, None, 1e-5).is_err());
        let e = layer_norm(&x, &[3, 4], Some(&Tensor::zeros(&[12])), None, 1e-5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("weight") && e.contains("[12]"), "{e}");
        let e = layer_norm(&x, &[4], None, Some(&Tensor::zeros(&[3])), 1e-5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bias"), "{e}");
        assert!(layer_norm(&x, &[4], None, None, f32::NAN).is_err());
        // Empty batches are fine and give empty outputs.
        let y = layer_norm(&Tensor::zeros(&[0, 5]), &[5], None, None, 1e-5).unwrap();
        assert_eq!(y.shape(), &[0, 5]);
    }

    #[test]
    fn layer_norm_gradients_match_finite_differences() {
        let gc = GradCheck::default();
        let cases: &[(&[usize], &[usize])] = &[
            (&[3, 5], &[5]),
            (&[9], &[9]),
            (&[2, 3, 4], &[4]),
            (&[2, 3, 4], &[3, 4]),
            (&[2, 2, 3], &[2, 2, 3]),
        ];
        for &(xs, ns) in cases {
            check_gradients(&[xs, ns, ns], gc, |t, v| {
                t.layer_norm(v[0], ns, Some(v[1]), Some(v[2]), 1e-5)
            });
            check_gradients(&[xs], gc, |t, v| t.layer_norm(v[0], ns, None, None, 1e-5));
            check_gradients(&[xs, ns], gc, |t, v| {
                t.layer_norm(v[0], ns, None, Some(v[1]), 1e-5)
            });
        }
        // Larger spread and offset rows, fixed inputs.
        let mut rng = Rng::new(5);
        let x = crate::ops::elementwise::add_scalar(&Tensor::randn(&[3, 7], 3.0, &mut rng), 5.0)
            .unwrap();
        let w = Tensor::randn(&[7], 1.0, &mut rng);
        check_gradients_at(&[x, w], gc, |t, v| {
            t.layer_norm(v[0], &[7], Some(v[1]), None, 1e-5)
        });
    }
}
