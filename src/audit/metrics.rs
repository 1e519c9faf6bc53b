//! Per-set and per-sample metrics: from class logits `[N, C]` (accuracy, the membership
//! features), and from outputs against float targets (MSE and MAE for regression, F1 for
//! multi-label models).

use crate::error::{Error, Result};
use crate::ops::loss::{check_labels, cross_entropy, softmax_rows};
use crate::tensor::Tensor;

/// The logits as a host slice with their (N, C), checked to be a finite, non-empty `[N, C]`.
fn logits_rows<'a>(logits: &'a Tensor, op: &'static str) -> Result<(&'a [f32], usize, usize)> {
    if logits.rank() != 2 {
        return Err(Error::shape(
            op,
            format!("logits must be [N, C], got {:?}", logits.shape()),
        ));
    }
    let (n, c) = (logits.dim(0), logits.dim(1));
    if n == 0 || c == 0 {
        return Err(Error::invalid(format!(
            "{op}: logits {:?} hold no samples or no classes",
            logits.shape()
        )));
    }
    let x = logits.cpu_data(op)?;
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "{op}: logit {} of sample {} is {}",
            i % c,
            i / c,
            x[i]
        )));
    }
    Ok((x, n, c))
}

/// Index of the largest logit of each row (the first one on ties, like `argmax`).
pub fn predictions(logits: &Tensor) -> Result<Vec<u32>> {
    let (x, _, c) = logits_rows(logits, "predictions")?;
    Ok(x.chunks_exact(c)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect())
}

/// Fraction of samples whose largest logit is at their label.
pub fn accuracy(logits: &Tensor, labels: &[u32]) -> Result<f64> {
    let (_, n, c) = logits_rows(logits, "accuracy")?;
    check_labels(labels, n, c, "accuracy")?;
    let pred = predictions(logits)?;
    let correct = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(correct as f64 / n as f64)
}

/// Cross-entropy of each sample, `-ln softmax(logits)[label]` — the MIA's first feature.
pub fn per_sample_loss(logits: &Tensor, labels: &[u32]) -> Result<Vec<f32>> {
    logits_rows(logits, "per_sample_loss")?;
    let (loss, _) = cross_entropy(logits, labels)?;
    loss.to_vec()
}

/// Entropy (in nats) of each sample's softmax distribution — the MIA's second feature.
pub fn softmax_entropy(logits: &Tensor) -> Result<Vec<f32>> {
    let (x, _, c) = logits_rows(logits, "softmax_entropy")?;
    let p = softmax_rows(x, c)?;
    Ok(x.chunks_exact(c)
        .zip(p.chunks_exact(c))
        .map(|(row, p)| {
            // H = -Σ p·ln p with ln p = x - logsumexp(x): no ln(0) when a probability
            // underflows, and exact for one-hot-like rows.
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
            let h: f32 = -row
                .iter()
                .zip(p)
                .map(|(&v, &pi)| pi * (v - lse))
                .sum::<f32>();
            h.max(0.0)
        })
        .collect())
}

/// The outputs and the float targets as paired host vectors with the values per sample,
/// checked to have one shape, at least one sample and finite values.
fn paired(pred: &Tensor, target: &Tensor, op: &'static str) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    if pred.shape() != target.shape() || pred.rank() < 1 {
        return Err(Error::shape(
            op,
            format!("outputs {:?} vs targets {:?}", pred.shape(), target.shape()),
        ));
    }
    let n = pred.dim(0);
    let (p, t) = (pred.to_vec()?, target.to_vec()?);
    if n == 0 || p.is_empty() {
        return Err(Error::invalid(format!("{op}: no samples")));
    }
    for (what, v) in [("output", &p), ("target", &t)] {
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite(format!("{op}: {what} {i} is {}", v[i])));
        }
    }
    let per = p.len() / n;
    Ok((p, t, per))
}

/// Mean squared error over every output value: the mean of the `mse` loss's per-sample
/// values, which average over each sample's outputs.
pub fn mean_squared_error(pred: &Tensor, target: &Tensor) -> Result<f64> {
    let (p, t, _) = paired(pred, target, "mean_squared_error")?;
    let s: f64 = p
        .iter()
        .zip(&t)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    Ok(s / p.len() as f64)
}

/// Mean absolute error over every output value: in the target's units, and less swayed by a
/// few large errors than the MSE.
pub fn mean_absolute_error(pred: &Tensor, target: &Tensor) -> Result<f64> {
    let (p, t, _) = paired(pred, target, "mean_absolute_error")?;
    let s: f64 = p
        .iter()
        .zip(&t)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum();
    Ok(s / p.len() as f64)
}

/// F1 score of each label of a multi-label model, `2·TP / (2·TP + FP + FN)`: a label is
/// predicted where its logit is above 0 (probability above ½) and present where its target
/// is at least ½ (so soft targets count by their rounding). NaN for a label that is neither
/// present nor predicted in any sample: it has no errors and no hits to score.
pub fn per_label_f1(logits: &Tensor, target: &Tensor) -> Result<Vec<f64>> {
    let (p, t, per) = paired(logits, target, "per_label_f1")?;
    let mut counts = vec![(0usize, 0usize, 0usize); per]; // (TP, FP, FN)
    for (k, (&z, &y)) in p.iter().zip(&t).enumerate() {
        let c = &mut counts[k % per];
        match (z > 0.0, y >= 0.5) {
            (true, true) => c.0 += 1,
            (true, false) => c.1 += 1,
            (false, true) => c.2 += 1,
            (false, false) => {}
        }
    }
    Ok(counts
        .iter()
        .map(|&(tp, fp, fne)| {
            let d = 2 * tp + fp + fne;
            if d == 0 {
                f64::NAN
            } else {
                2.0 * tp as f64 / d as f64
            }
        })
        .collect())
}

/// Macro F1: the mean of [`per_label_f1`] over the labels it scores (NaN if none).
pub fn macro_f1(logits: &Tensor, target: &Tensor) -> Result<f64> {
    let f1 = per_label_f1(logits, target)?;
    let scored: Vec<f64> = f1.into_iter().filter(|v| !v.is_nan()).collect();
    if scored.is_empty() {
        return Ok(f64::NAN);
    }
    Ok(scored.iter().sum::<f64>() / scored.len() as f64)
}

/// Per row of `logits` `[N, C]` (on any device): the labelled class's logit minus the largest
/// other one (positive when the sample is classified correctly), and the class of that
/// largest other logit (the runner-up). ∇τ matches these margins between forget and unseen
/// data; unlike the functions above it does not check the logits, as it runs inside a step.
pub fn classification_margins(logits: &Tensor, labels: &[u32]) -> Result<(Vec<f32>, Vec<u32>)> {
    let c = logits.dim(1);
    let v = logits.to_vec()?;
    let mut margin = Vec::with_capacity(labels.len());
    let mut runner_up = Vec::with_capacity(labels.len());
    for (row, &y) in v.chunks_exact(c).zip(labels) {
        let others = row
            .iter()
            .copied()
            .enumerate()
            .filter(|&(k, _)| k != y as usize);
        let (k, best) = others.fold(
            (0, f32::NEG_INFINITY),
            |top, (k, z)| {
                if z > top.1 {
                    (k, z)
                } else {
                    top
                }
            },
        );
        margin.push(row[y as usize] - best);
        runner_up.push(k as u32);
    }
    Ok((margin, runner_up))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], n: usize, c: usize) -> Tensor {
        Tensor::from_slice(v, &[n, c]).unwrap()
    }

    #[test]
    fn accuracy_counts_argmax_hits_first_max_on_ties() {
        let l = t(
            &[2.0, 1.0, 0.0, 0.0, 5.0, 1.0, 3.0, 3.0, -1.0, 0.0, 0.0, 9.0],
            4,
            3,
        );
        assert_eq!(predictions(&l).unwrap(), vec![0, 1, 0, 2]);
        assert_eq!(accuracy(&l, &[0, 1, 1, 2]).unwrap(), 0.75);
        assert_eq!(accuracy(&l, &[1, 0, 1, 0]).unwrap(), 0.0);
        assert!(accuracy(&l, &[0, 1, 1]).is_err());
        assert!(accuracy(&l, &[0, 1, 3, 2]).is_err());
    }

    #[test]
    fn loss_and_entropy_match_hand_values() {
        let l = t(
            &[
                0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 100.0, 0.0, -100.0, 0.0,
            ],
            3,
            4,
        );
        let loss = per_sample_loss(&l, &[1, 3, 0]).unwrap();
        assert!((loss[0] - 4f32.ln()).abs() < 1e-6);
        let z: f64 = (1..=4).map(|k| (k as f64).exp()).sum();
        assert!((loss[1] as f64 - (z.ln() - 4.0)).abs() < 1e-5);
        assert!(loss[2].abs() < 1e-6);
        let h = softmax_entropy(&l).unwrap();
        assert!((h[0] - 4f32.ln()).abs() < 1e-6, "uniform entropy is ln C");
        let p: Vec<f64> = (1..=4).map(|k| (k as f64).exp() / z).collect();
        let want: f64 = -p.iter().map(|q| q * q.ln()).sum::<f64>();
        assert!((h[1] as f64 - want).abs() < 1e-5);
        assert!(h[2] >= 0.0 && h[2] < 1e-20, "one-hot entropy {}", h[2]);
    }

    #[test]
    fn margins_and_runner_ups() {
        let logits = t(&[2.0, 1.0, 0.5, 0.0, 3.0, 1.0], 2, 3);
        let (m, r) = classification_margins(&logits, &[0, 0]).unwrap();
        assert_eq!(m, vec![1.0, -3.0]);
        assert_eq!(r, vec![1, 1]);
        let (m, r) = classification_margins(&logits, &[2, 1]).unwrap();
        assert_eq!(m, vec![-1.5, 2.0]);
        assert_eq!(r, vec![0, 2]);
    }

    #[test]
    fn bad_logits_are_errors() {
        assert!(matches!(
            accuracy(&t(&[0.0, f32::NAN], 1, 2), &[0]),
            Err(Error::NonFinite(_))
        ));
        assert!(softmax_entropy(&t(&[f32::INFINITY, 0.0], 1, 2)).is_err());
        assert!(per_sample_loss(&Tensor::zeros(&[0, 3]), &[]).is_err());
        assert!(matches!(
            accuracy(&Tensor::zeros(&[6]), &[0; 6]),
            Err(Error::Shape { .. })
        ));
    }

    #[test]
    fn regression_errors_match_hand_values() {
        let p = t(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        let y = t(&[1.0, 0.0, 0.0, 4.0], 2, 2);
        // Errors 0, 2, 3, 0: squares sum to 13, absolutes to 5, over 4 values.
        assert_eq!(mean_squared_error(&p, &y).unwrap(), 13.0 / 4.0);
        assert_eq!(mean_absolute_error(&p, &y).unwrap(), 5.0 / 4.0);
        assert!(mean_squared_error(&p, &t(&[0.0; 2], 1, 2)).is_err());
        assert!(matches!(
            mean_absolute_error(&p, &t(&[0.0, 0.0, f32::NAN, 0.0], 2, 2)),
            Err(Error::NonFinite(_))
        ));
    }

    #[test]
    fn f1_per_label_and_macro() {
        // Three labels over four samples (logit > 0 predicts, target >= 0.5 is present).
        let z = t(
            &[
                1.0, -1.0, -1.0, //
                1.0, 1.0, -1.0, //
                -1.0, 1.0, -1.0, //
                -1.0, -1.0, -1.0,
            ],
            4,
            3,
        );
        let y = t(
            &[
                1.0, 0.0, 0.0, //
                0.0, 1.0, 0.0, //
                1.0, 0.7, 0.0, //
                0.0, 0.2, 0.0,
            ],
            4,
            3,
        );
        // Label 0: TP 1, FP 1, FN 1 → 2/4. Label 1: TP 2 (0.7 counts) → 1. Label 2: nothing.
        let f1 = per_label_f1(&z, &y).unwrap();
        assert_eq!(f1[..2], [0.5, 1.0]);
        assert!(f1[2].is_nan());
        assert_eq!(macro_f1(&z, &y).unwrap(), 0.75);
        assert!(macro_f1(&t(&[-1.0], 1, 1), &t(&[0.0], 1, 1))
            .unwrap()
            .is_nan());
    }
}
