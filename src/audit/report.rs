//! One audit row for a model: accuracy on the retain, forget and test sets, and the
//! membership-inference attack (forget = members, test = non-members) on the per-sample loss
//! and on the softmax entropy.

use super::metrics::{accuracy, softmax_entropy};
use super::mia::mia_score;
use crate::data::Dataset;
use crate::error::Result;
use crate::nn::{LossKind, Model};
use crate::tensor::Tensor;

/// The sets an audit looks at.
#[derive(Clone, Copy)]
pub struct AuditSets<'a> {
    pub retain: &'a Dataset,
    pub forget: &'a Dataset,
    /// Non-members for the attack (not the validation set ∇τ used as its target).
    pub test: &'a Dataset,
}

/// One row of the audit table. Accuracies and the entropy attack are NaN for models
/// without class labels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuditRow {
    pub retain_accuracy: f64,
    pub forget_accuracy: f64,
    pub test_accuracy: f64,
    /// Attack accuracy on the per-sample loss (≈ 0.5: the forget set looks unseen).
    pub mia_loss: f64,
    /// Attack accuracy on the softmax entropy.
    pub mia_entropy: f64,
    /// Samples per side the attack was run on (the smaller of the forget and test sets); 0
    /// when there were fewer than [`MIN_MIA_SAMPLES`] and both attack scores are NaN.
    pub mia_samples: usize,
}

/// The fewest forget (and test) samples the membership attack runs on: its 20 % test part
/// must hold both classes, with at least two samples, and its training part too. Below this
/// the attack scores are NaN and [`AuditRow::mia_samples`] is 0; the accuracies are still
/// computed. Even above it, a score from a handful of samples is noise: its standard error is
/// about `0.5 / sqrt(0.4 · mia_samples)` (0.25 at 10 samples), which is why the row reports
/// the count.
pub const MIN_MIA_SAMPLES: usize = 3;

const BATCH: usize = 512;

fn set_accuracy(model: &Model, w: &[Tensor], d: &Dataset) -> Result<(f64, Option<Tensor>)> {
    match d.y.classes() {
        Some(y) if model.loss_kind() == LossKind::CrossEntropy => {
            let logits = model.predict(w, &d.x, BATCH)?;
            Ok((accuracy(&logits, y)?, Some(logits)))
        }
        _ => Ok((f64::NAN, None)),
    }
}

/// Audits `weights` on the three sets with the paper's protocol (seeded).
pub fn audit_model(
    model: &Model,
    weights: &[Tensor],
    sets: AuditSets<'_>,
    seed: u64,
) -> Result<AuditRow> {
    let (retain_accuracy, _) = set_accuracy(model, weights, sets.retain)?;
    let (forget_accuracy, forget_logits) = set_accuracy(model, weights, sets.forget)?;
    let (test_accuracy, test_logits) = set_accuracy(model, weights, sets.test)?;
    let lf = model.losses(weights, sets.forget, BATCH)?;
    let lt = model.losses(weights, sets.test, BATCH)?;
    let mia_samples = lf.len().min(lt.len());
    if mia_samples < MIN_MIA_SAMPLES {
        return Ok(AuditRow {
            retain_accuracy,
            forget_accuracy,
            test_accuracy,
            mia_loss: f64::NAN,
            mia_entropy: f64::NAN,
            mia_samples: 0,
        });
    }
    let mia_loss = mia_score(&lf, &lt, seed)?.accuracy_mean;
    let mia_entropy = match (forget_logits, test_logits) {
        (Some(f), Some(t)) => {
            mia_score(&softmax_entropy(&f)?, &softmax_entropy(&t)?, seed)?.accuracy_mean
        }
        _ => f64::NAN,
    };
    Ok(AuditRow {
        retain_accuracy,
        forget_accuracy,
        test_accuracy,
        mia_loss,
        mia_entropy,
        mia_samples,
    })
}
