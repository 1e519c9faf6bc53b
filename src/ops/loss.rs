//! Losses. Each returns the **per-sample** loss vector `[N]` (unlearning and the membership
//! audit need one loss per sample); compose with [`Tape::mean`] for the usual scalar.
//!
//! - cross-entropy over class logits `[N, C]` with integer labels (softmax fused in);
//! - mean squared error against float targets `[N, ...]`, averaged per sample;
//! - binary cross-entropy with logits against float targets in [0, 1], averaged per sample.

use super::{host, same_device};
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::pool::try_alloc;
use crate::backend::cuda::RegressionLoss;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn rows(x: &Tensor, op: &'static str) -> Result<(usize, usize)> {
    if x.rank() < 1 {
        return Err(Error::shape(op, "input must have a batch dimension"));
    }
    let n = x.dim(0);
    Ok((n, x.numel().checked_div(n).unwrap_or(0)))
}

/// Checks class labels against the number of classes.
pub fn check_labels(labels: &[u32], n: usize, classes: usize, op: &'static str) -> Result<()> {
    if labels.len() != n {
        return Err(Error::shape(
            op,
            format!("{} labels for {n} samples", labels.len()),
        ));
    }
    if let Some((i, &l)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= classes)
    {
        return Err(Error::invalid(format!(
            "{op}: label {l} of sample {i} is out of range for {classes} classes"
        )));
    }
    Ok(())
}

/// Row-wise softmax of `[N, C]` logits (numerically stable), on the host.
pub fn softmax_rows(logits: &[f32], classes: usize) -> Result<Vec<f32>> {
    softmax_rows_and(logits, classes, |_, _, _| {})
}

/// [`softmax_rows`], calling `row_done(i, max, sum)` with each row's largest logit and its
/// sum of `exp(x - max)`, so that a caller needing the log-sum-exp (`max + ln(sum)`) does not
/// compute every exponential a second time.
fn softmax_rows_and(
    logits: &[f32],
    classes: usize,
    mut row_done: impl FnMut(usize, f32, f32),
) -> Result<Vec<f32>> {
    let mut out = crate::backend::cpu::pool::take(logits.len())?;
    for (i, (row, o)) in logits
        .chunks_exact(classes)
        .zip(out.chunks_exact_mut(classes))
        .enumerate()
    {
        let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0f32;
        for (oi, &x) in o.iter_mut().zip(row) {
            *oi = (x - m).exp();
            s += *oi;
        }
        for oi in o.iter_mut() {
            *oi /= s;
        }
        row_done(i, m, s);
    }
    Ok(out)
}

/// Per-sample cross-entropy `[N]` and the softmax probabilities `[N, C]` (kept for the
/// backward pass), on the logits' device.
pub fn cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<(Tensor, Tensor)> {
    let (n, c) = rows(logits, "cross_entropy")?;
    if logits.rank() != 2 {
        return Err(Error::shape(
            "cross_entropy",
            format!("logits must be [N, C], got {:?}", logits.shape()),
        ));
    }
    check_labels(labels, n, c, "cross_entropy")?;
    if let Storage::Cuda(s) = logits.storage() {
        let (loss, probs) = s.cross_entropy(labels, n, c)?;
        return Ok((
            Tensor::from_cuda(loss, vec![n]),
            Tensor::from_cuda(probs, vec![n, c]),
        ));
    }
    let x = host(logits, "cross_entropy")?;
    let mut loss = crate::backend::cpu::pool::take(n)?;
    let probs = softmax_rows_and(x, c, |i, m, s| {
        loss[i] = m + s.ln() - x[i * c + labels[i] as usize];
    })?;
    Ok((Tensor::cpu(loss, vec![n]), Tensor::cpu(probs, vec![n, c])))
}

fn check_targets(pred: &Tensor, target: &Tensor, op: &'static str) -> Result<()> {
    same_device(pred, target, op)?;
    if pred.shape() != target.shape() {
        return Err(Error::shape(
            op,
            format!(
                "prediction {:?} vs target {:?}",
                pred.shape(),
                target.shape()
            ),
        ));
    }
    Ok(())
}

/// The CUDA arm of the regression losses (`None` for host tensors).
fn regression_cuda(
    pred: &Tensor,
    target: &Tensor,
    n: usize,
    d: usize,
    kind: RegressionLoss,
) -> Result<Option<Tensor>> {
    match (pred.storage(), target.storage()) {
        (Storage::Cuda(p), Storage::Cuda(t)) => Ok(Some(Tensor::from_cuda(
            p.regression_loss(t, n, d, kind)?,
            vec![n],
        ))),
        _ => Ok(None),
    }
}

/// Per-sample mean squared error.
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_targets(pred, target, "mse")?;
    let (n, d) = rows(pred, "mse")?;
    if let Some(out) = regression_cuda(pred, target, n, d, RegressionLoss::Mse)? {
        return Ok(out);
    }
    let (p, t) = (host(pred, "mse")?, host(target, "mse")?);
    let out = (0..n)
        .map(|i| {
            let s: f32 = (i * d..(i + 1) * d)
                .map(|k| (p[k] - t[k]) * (p[k] - t[k]))
                .sum();
            s / d as f32
        })
        .collect();
    Ok(Tensor::cpu(out, vec![n]))
}

/// Per-sample binary cross-entropy with logits, in the overflow-free form
/// `max(x, 0) - x t + ln(1 + e^{-|x|})`.
pub fn bce_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    check_targets(logits, target, "bce_with_logits")?;
    let (n, d) = rows(logits, "bce_with_logits")?;
    if let Some(out) = regression_cuda(logits, target, n, d, RegressionLoss::BceWithLogits)? {
        return Ok(out);
    }
    let (x, t) = (
        host(logits, "bce_with_logits")?,
        host(target, "bce_with_logits")?,
    );
    let out = (0..n)
        .map(|i| {
            let s: f32 = (i * d..(i + 1) * d)
                .map(|k| x[k].max(0.0) - x[k] * t[k] + (-x[k].abs()).exp().ln_1p())
                .sum();
            s / d as f32
        })
        .collect();
    Ok(Tensor::cpu(out, vec![n]))
}

struct CrossEntropyBackward {
    probs: Tensor,
    labels: Vec<u32>,
}
impl BackwardOp for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let logits = c.inputs[0];
        let (n, k) = (logits.dim(0), logits.dim(1));
        if let (Storage::Cuda(p), Storage::Cuda(g)) = (self.probs.storage(), c.grad.storage()) {
            let out = p.cross_entropy_backward(&self.labels, g, n, k)?;
            return Ok(vec![Some(Tensor::from_cuda(out, vec![n, k]))]);
        }
        let g = host(c.grad, "cross_entropy")?;
        let probs = host(&self.probs, "cross_entropy")?;
        let mut out = try_alloc(probs.len(), "cross_entropy")?;
        out.extend_from_slice(probs);
        for i in 0..n {
            let row = &mut out[i * k..(i + 1) * k];
            row[self.labels[i] as usize] -= 1.0;
            for v in row.iter_mut() {
                *v *= g[i];
            }
        }
        Ok(vec![Some(Tensor::cpu(out, vec![n, k]))])
    }
}

struct RegressionBackward {
    bce: bool,
}
impl BackwardOp for RegressionBackward {
    fn name(&self) -> &'static str {
        if self.bce {
            "bce_with_logits"
        } else {
            "mse"
        }
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let n = c.inputs[0].dim(0);
        let d = c.inputs[0].numel().checked_div(n).unwrap_or(0);
        let shape = c.inputs[0].shape().to_vec();
        let storages = (
            c.inputs[0].storage(),
            c.inputs[1].storage(),
            c.grad.storage(),
        );
        if let (Storage::Cuda(x), Storage::Cuda(t), Storage::Cuda(g)) = storages {
            let kind = if self.bce {
                RegressionLoss::BceWithLogits
            } else {
                RegressionLoss::Mse
            };
            let (gx, gt) = x.regression_loss_backward(t, g, n, d, kind)?;
            return Ok(vec![
                c.needs[0].then(|| Tensor::from_cuda(gx, shape.clone())),
                c.needs[1].then(|| Tensor::from_cuda(gt, shape)),
            ]);
        }
        let (x, t) = (
            host(c.inputs[0], self.name())?,
            host(c.inputs[1], self.name())?,
        );
        let g = host(c.grad, self.name())?;
        let mut gx = crate::backend::cpu::pool::zeroed(x.len())?;
        let mut gt = crate::backend::cpu::pool::zeroed(x.len())?;
        for (i, &gi) in g.iter().enumerate().take(n) {
            let w = gi / d as f32;
            for k in i * d..(i + 1) * d {
                if self.bce {
                    let s = if x[k] >= 0.0 {
                        1.0 / (1.0 + (-x[k]).exp())
                    } else {
                        let e = x[k].exp();
                        e / (1.0 + e)
                    };
                    gx[k] = w * (s - t[k]);
                    gt[k] = -w * x[k];
                } else {
                    gx[k] = w * 2.0 * (x[k] - t[k]);
                    gt[k] = -gx[k];
                }
            }
        }
        Ok(vec![
            c.needs[0].then(|| Tensor::cpu(gx, shape.clone())),
            c.needs[1].then(|| Tensor::cpu(gt, shape)),
        ])
    }
}

impl Tape {
    /// Per-sample cross-entropy `[N]` of logits `[N, C]` against class labels.
    pub fn cross_entropy(&mut self, logits: Var, labels: &[u32]) -> Result<Var> {
        let (loss, probs) = cross_entropy(self.value(logits), labels)?;
        Ok(self.push(loss, &[logits], || {
            Box::new(CrossEntropyBackward {
                probs,
                labels: labels.to_vec(),
            })
        }))
    }

    /// Per-sample mean squared error `[N]` against `target` (same shape as `pred`).
    pub fn mse(&mut self, pred: Var, target: Var) -> Result<Var> {
        let out = mse(self.value(pred), self.value(target))?;
        Ok(self.push(out, &[pred, target], || {
            Box::new(RegressionBackward { bce: false })
        }))
    }

    /// Per-sample binary cross-entropy with logits `[N]` against targets in [0, 1].
    pub fn bce_with_logits(&mut self, logits: Var, target: Var) -> Result<Var> {
        let out = bce_with_logits(self.value(logits), self.value(target))?;
        Ok(self.push(out, &[logits, target], || {
            Box::new(RegressionBackward { bce: true })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, check_gradients_at, GradCheck};
    use crate::rng::Rng;

    #[test]
    fn forward_hand_values() {
        // ln(e^1 + e^2 + e^3) - x_y
        let logits = Tensor::from_slice(&[1.0, 2.0, 3.0, 0.0, 0.0, 0.0], &[2, 3]).unwrap();
        let (l, p) = cross_entropy(&logits, &[2, 0]).unwrap();
        let l = l.to_vec().unwrap();
        assert!((l[0] - 0.407_605_96).abs() < 1e-6, "{l:?}");
        assert!((l[1] - 3f32.ln()).abs() < 1e-6);
        assert_eq!(p.shape(), &[2, 3]);
        assert!((p.to_vec().unwrap()[3] - 1.0 / 3.0).abs() < 1e-6);
        assert!(cross_entropy(&logits, &[3, 0]).is_err());
        assert!(cross_entropy(&logits, &[0]).is_err());
        // huge logits stay finite
        let big = Tensor::from_slice(&[1000.0, -1000.0], &[1, 2]).unwrap();
        assert_eq!(
            cross_entropy(&big, &[1]).unwrap().0.to_vec().unwrap(),
            vec![2000.0]
        );

        let p = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        let t = Tensor::from_slice(&[0.0, 2.0, 1.0, 1.0], &[2, 2]).unwrap();
        assert_eq!(mse(&p, &t).unwrap().to_vec().unwrap(), vec![0.5, 6.5]);
        let x = Tensor::from_slice(&[0.0, 2.0], &[2, 1]).unwrap();
        let y = Tensor::from_slice(&[1.0, 0.0], &[2, 1]).unwrap();
        let b = bce_with_logits(&x, &y).unwrap().to_vec().unwrap();
        assert!(
            (b[0] - 2f32.ln()).abs() < 1e-6 && (b[1] - 2.126_928).abs() < 1e-5,
            "{b:?}"
        );
        assert!(mse(&p, &x).is_err());
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(5);
        for &(n, c) in &[(1, 2), (4, 3), (9, 10), (3, 17)] {
            let labels: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
            check_gradients(&[&[n, c]], GradCheck::default(), |t, v| {
                t.cross_entropy(v[0], &labels)
            });
            check_gradients(&[&[n, c]], GradCheck::default(), |t, v| {
                let l = t.cross_entropy(v[0], &labels)?;
                t.mean(l)
            });
            check_gradients(&[&[n, c], &[n, c]], GradCheck::default(), |t, v| {
                t.mse(v[0], v[1])
            });
            let targets = Tensor::rand_uniform(&[n, c], 0.0, 1.0, &mut rng);
            let logits = Tensor::randn(&[n, c], 2.0, &mut rng);
            check_gradients_at(&[logits, targets], GradCheck::default(), |t, v| {
                t.bce_with_logits(v[0], v[1])
            });
        }
    }
}
