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
}

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
    })
}
