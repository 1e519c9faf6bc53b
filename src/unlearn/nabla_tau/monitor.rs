//! Adaptive mode's membership checks: what the forget set should come to resemble (the
//! [`Reference`], measured on validation data), and the stop test that decides when it does.
//!
//! The statistics (threshold attack, sampling-noise margins, label-only check) are the
//! audit's ([`crate::audit::membership`]); this module holds the policy: which samples are
//! looked at, when a check runs, and what counts as forgotten.
//!
//! - **Random forgetting** is forgotten once the losses pass the audit's attacks: a
//!   one-dimensional membership test (best threshold, balanced accuracy) can no longer tell
//!   forget from reference (accuracy within a sampling-noise margin of 0.5), the ROC AUC is
//!   within noise of 0.5, and (with enough reference samples) the true-positive rate at 1 %
//!   false positives within noise of 1 %. With class labels, the forget set's accuracy must
//!   also be within one standard error of the validation accuracy (a label-only attack), the
//!   validation accuracy within [`HEALTH_BAR`] standard errors of where it started (so a
//!   model merely damaged as a whole does not count as having forgotten), and the label-only
//!   part must hold again on validation samples the checks never looked at (a test repeated
//!   at every check otherwise tends to pass on a check sample that happens to look healthy).
//!   Without class labels (regression, multi-label) the model's health is judged by its
//!   validation loss. Squared errors are measured in nats (see [`nats_per_unit`]) wherever a
//!   gap is compared with a fixed size.
//! - **Class removal** (the forget set holds whole classes the retain set lacks) is done once
//!   the forget samples are no longer recognised ([`CLASS_GONE_ACCURACY`]).

use super::objective::{rank_targets, ForgetTarget};
use crate::audit::{
    indistinguishable_margin, roc_auc, threshold_attack_accuracy, tpr_at_fpr, LabelCheck, AUDIT_FPR,
};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::nn::{LossKind, Model};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The membership check looks at up to this many forget and reference samples (and keeps up
/// to as many further validation samples aside to confirm a pass). 2048 validation samples
/// measure an accuracy near 90 % to 0.7 points (one standard error), fine enough for the α
/// controller (see `CONTROLLER_RESOLUTION` in the schedule); a check costs about three steps'
/// work (see [`CHECK_MIN_STEPS`]).
pub(super) const CHECK_SAMPLES: usize = 2048;

/// Adaptive mode refreshes the reference and runs the stop test at the start of a
/// forget-epoch only once this many steps have passed since the last time: one refresh
/// evaluates up to ~4k samples (about three steps' work), so with small forget sets (a
/// handful of steps per epoch) refreshing every epoch nearly doubled the run time. Checks
/// every 12 steps instead brought the CNN's forget gaps at 15 % and 30 % to 2.6 and 2.4
/// points, left the MLP unchanged, but on the digits data let α climb until one seed lost
/// 3 test points.
pub(super) const CHECK_MIN_STEPS: usize = 25;

/// Random forgetting: the stop test passes only while the validation accuracy is at most
/// this many standard errors below where it started. Ascent first damages the model as a
/// whole, and a forget set that merely looks as bad as damaged validation data has not been
/// forgotten: measured on Fashion-MNIST with α₀ = 0.6 to 0.7, without the bar the run
/// stopped on such a model, and its forget accuracy came back from about 90 % to 96-98 %
/// once it recovered.
pub(super) const HEALTH_BAR: f32 = 2.0;

/// Class removal: the forget samples count as no longer recognised once at most this
/// fraction of them is classified as their (removed) class. A model that never saw a class
/// does not predict it (the digits test's retrained model: forget accuracy 0); the value
/// leaves room for a stray sample and was not tuned.
pub(super) const CLASS_GONE_ACCURACY: f32 = 0.01;

/// Median of a χ² variable with one degree of freedom: the median squared residual of a
/// Gaussian with variance σ² is this times σ². `nats_per_unit` estimates σ² as the median
/// squared validation error over it, which a few huge errors (the heavy tail squared errors
/// have) do not move as they move the mean.
const CHI2_1_MEDIAN: f32 = 0.4549;

/// The AUC side of the stop test passes while the ROC AUC of forget against reference losses
/// is within this many of its null standard errors of 0.5. 0.674 is the median of |Z| for a
/// standard normal Z: like the threshold test's margin (the median Kolmogorov-Smirnov
/// distance, see `indistinguishable_margin`), the remaining difference must be what sampling
/// noise alone typically gives. Chosen by that analogy, not tuned.
const AUC_NOISE_Z: f64 = 0.674;

/// The TPR side of the stop test is read only with at least this many reference samples:
/// the 1 % threshold then rests on at least 10 of them, where `tpr_at_fpr` has about ±30 %
/// relative precision (fewer make the figure mostly noise).
const TPR_MIN_REFERENCE: usize = 1000;

/// The TPR side passes while the forget set's true-positive rate at 1 % false positives is
/// at most 1 % plus this many binomial standard errors of a 1 % rate on the forget samples.
/// Flagged forget samples are a count of a few (4 ± 2 on 400 samples with no signal), so a
/// median-noise bar would fail on chance alone at almost every check; two standard errors
/// is the usual one-sided bar for a count. Not tuned.
const TPR_NOISE_Z: f64 = 2.0;

/// Nats per unit of the model's per-sample loss: 1 for the cross-entropies (already
/// negative log-likelihoods); for squared errors, a Gaussian likelihood's 1/(2σ²), with σ²
/// estimated from the validation losses (squared errors) as their median over
/// [`CHI2_1_MEDIAN`]. This is what lets one clamp and one stop test serve any loss: a squared
/// error's scale is the target's, arbitrary, while a gap in nats means the same on any task.
pub(super) fn nats_per_unit(kind: LossKind, val_losses_sorted: &[f32]) -> f32 {
    if kind != LossKind::Mse || val_losses_sorted.is_empty() {
        return 1.0;
    }
    let median = val_losses_sorted[val_losses_sorted.len() / 2];
    let sigma2 = median / CHI2_1_MEDIAN;
    if sigma2 > 0.0 && sigma2.is_finite() {
        1.0 / (2.0 * sigma2)
    } else {
        1.0
    }
}

/// The AUC side of the stop test: the ROC AUC of "lower loss ⇒ forget" against the
/// reference is within [`AUC_NOISE_Z`] null standard errors of 0.5 (the Mann-Whitney null
/// variance `(n + m + 1) / (12 n m)`), never tighter than `stop_margin`. A threshold attack
/// sees the one cut where the distributions differ most; the AUC sees a shift spread over
/// the whole range, which is what a log-loss attacker exploits.
pub(super) fn auc_alike(forget: &[f32], reference: &[f32], stop_margin: f32) -> bool {
    let (n, m) = (forget.len() as f64, reference.len() as f64);
    if n == 0.0 || m == 0.0 {
        return true;
    }
    let se = ((n + m + 1.0) / (12.0 * n * m)).sqrt();
    let auc = roc_auc(forget, reference);
    auc.is_nan() || (auc - 0.5).abs() <= (AUC_NOISE_Z * se).max(stop_margin as f64)
}

/// The TPR side of the stop test: with at least [`TPR_MIN_REFERENCE`] reference samples, the
/// share of forget samples below the reference's 1 % loss quantile is within
/// [`TPR_NOISE_Z`] binomial standard errors of 1 %: an attacker calibrated on unseen data
/// flags the forget set no more often than unseen data (Carlini et al.'s figure). Passes
/// with fewer reference samples, where the figure cannot be read.
pub(super) fn tpr_alike(forget: &[f32], reference: &[f32]) -> bool {
    if reference.len() < TPR_MIN_REFERENCE || forget.is_empty() {
        return true;
    }
    let tpr = tpr_at_fpr(forget, reference, AUDIT_FPR);
    let se = (AUDIT_FPR * (1.0 - AUDIT_FPR) / forget.len() as f64).sqrt();
    tpr.is_nan() || tpr <= AUDIT_FPR + TPR_NOISE_Z * se
}

/// Without class labels, the model's health is read off the validation loss: the stop test
/// passes only while the mean reference loss is at most [`HEALTH_BAR`] standard errors
/// (of the starting mean) above where it started, the loss-only counterpart of the label
/// check's damage bar (a model damaged as a whole makes any forget set look unseen).
pub(super) fn loss_healthy(mean_now: f32, (mean_start, se_start): (f32, f32)) -> bool {
    mean_now - mean_start <= HEALTH_BAR * se_start
}

/// Mean and standard error of the mean of `v`.
fn mean_se(v: &[f32]) -> (f32, f32) {
    let m = mean(v) as f64;
    let n = v.len().max(1) as f64;
    let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m as f32, (var / n).sqrt() as f32)
}

/// Whether a check is due after `step` steps, the last one having run at `last_check`.
pub(super) fn check_due(last_check: Option<usize>, step: usize) -> bool {
    last_check.is_none_or(|s| step - s >= CHECK_MIN_STEPS)
}

/// The loss side of the stop test: the best threshold on the losses tells `forget` from
/// `reference` no better than sampling noise would (the margin grows for small sets and is
/// never below `stop_margin`).
pub(super) fn losses_alike(forget: &[f32], reference: &[f32], stop_margin: f32) -> bool {
    let margin = indistinguishable_margin(forget.len(), reference.len(), stop_margin);
    threshold_attack_accuracy(forget, reference) <= 0.5 + margin
}

/// The label side of the stop test: forget and validation accuracy within noise of each
/// other, on a model that is still healthy (see [`HEALTH_BAR`]).
pub(super) fn labels_alike(check: &LabelCheck) -> bool {
    check.within_noise && check.damage <= HEALTH_BAR
}

/// Class removal's stop test on the forget samples' accuracy.
pub(super) fn class_gone(forget_accuracy: Option<f32>) -> bool {
    forget_accuracy.is_some_and(|a| a <= CLASS_GONE_ACCURACY)
}

/// Classes present in the forget set but absent from the retain set, when *every* forget
/// sample belongs to one of them (class removal); empty otherwise (random forgetting), and
/// without class labels.
pub(super) fn removed_classes(forget: &Dataset, retain: &Dataset) -> Vec<u32> {
    match (forget.y.classes(), retain.y.classes()) {
        (Some(f), Some(r)) => {
            let max = f.iter().chain(r).copied().max().unwrap_or(0) as usize;
            let mut in_retain = vec![false; max + 1];
            for &c in r {
                in_retain[c as usize] = true;
            }
            let mut out: Vec<u32> = f
                .iter()
                .copied()
                .filter(|&c| !in_retain[c as usize])
                .collect();
            out.sort_unstable();
            out.dedup();
            // Class removal only when *every* forget sample belongs to a removed class.
            if f.iter().all(|&c| !in_retain[c as usize]) {
                out
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// One evaluation pass over a set: the per-sample losses and, for class labels under
/// cross-entropy, the accuracy (from the same logits, so the stop test costs one forward
/// pass per set, not two).
struct Scored {
    losses: Vec<f32>,
    accuracy: Option<f32>,
    /// Per-sample classification margins; empty without class labels.
    margins: Vec<f32>,
}

fn score(model: &Model, w: &[Tensor], d: &Dataset, batch: usize) -> Result<Scored> {
    match d.y.classes() {
        Some(y) if model.loss_kind() == LossKind::CrossEntropy => {
            let logits = model.predict(w, &d.x, batch)?;
            Ok(Scored {
                losses: crate::audit::per_sample_loss(&logits, y)?,
                accuracy: Some(crate::audit::accuracy(&logits, y)? as f32),
                margins: crate::audit::classification_margins(&logits, y)?.0,
            })
        }
        _ => Ok(Scored {
            losses: model.losses(w, d, batch)?,
            accuracy: None,
            margins: Vec::new(),
        }),
    }
}

/// At most `max` samples of `d`, drawn without replacement (the whole set if smaller), and up
/// to `max` further samples disjoint from those (None when `d` has none left over).
fn sample_with_spare(d: &Dataset, max: usize, rng: &mut Rng) -> Result<(Dataset, Option<Dataset>)> {
    if d.len() <= max {
        return Ok((d.clone(), None));
    }
    let idx = rng.permutation(d.len());
    let spare = &idx[max..(2 * max).min(d.len())];
    Ok((d.subset(&idx[..max])?, Some(d.subset(spare)?)))
}

/// The samples the membership checks look at.
pub(super) struct CheckSamples {
    forget: Dataset,
    val: Dataset,
    /// Validation samples kept out of the checks, to confirm a pass on (taken by the
    /// monitor).
    spare_val: Option<Dataset>,
    /// `forget` is the whole forget set, in its order.
    whole_forget: bool,
}

impl CheckSamples {
    /// Draws up to [`CHECK_SAMPLES`] forget and validation samples, and as many spare ones.
    pub fn draw(forget: &Dataset, val: &Dataset, rng: &mut Rng) -> Result<Self> {
        let whole_forget = forget.len() <= CHECK_SAMPLES;
        let forget = sample_with_spare(forget, CHECK_SAMPLES, rng)?.0;
        let (val, spare_val) = sample_with_spare(val, CHECK_SAMPLES, rng)?;
        Ok(CheckSamples {
            forget,
            val,
            spare_val,
            whole_forget,
        })
    }
}

/// What the forget set should come to resemble, measured on validation data.
#[derive(Clone, Default)]
struct Reference {
    /// Losses, sorted ascending.
    losses: Vec<f32>,
    /// Margins, sorted ascending (random forgetting with class labels; otherwise empty).
    margins: Vec<f32>,
    /// Accuracy (random forgetting with class labels).
    accuracy: Option<f32>,
    /// Nats per unit of loss, from these losses (see [`nats_per_unit`]).
    nats_per_unit: f32,
}

/// The reference losses the forget losses should come to resemble and, for random
/// forgetting with class labels, the validation margins and accuracy from the same pass.
/// For class removal, the losses that validation samples of the kept classes get under a
/// forgotten label: how a model that never saw those classes treats them.
fn reference(
    model: &Model,
    w: &[Tensor],
    val: &Dataset,
    removed: &[u32],
    batch: usize,
    rng: &mut Rng,
) -> Result<Reference> {
    let (mut losses, mut margins, accuracy) = if removed.is_empty() {
        let s = score(model, w, val, batch)?;
        (s.losses, s.margins, s.accuracy)
    } else {
        let y = val.y.classes().expect("class removal implies class labels");
        let keep: Vec<usize> = (0..val.len())
            .filter(|&i| !removed.contains(&y[i]))
            .collect();
        if keep.is_empty() {
            return Err(Error::invalid(
                "class removal: the validation set has no samples of the kept classes",
            ));
        }
        let sub = val.subset(&keep)?;
        let relabel: Vec<u32> = (0..keep.len())
            .map(|_| removed[rng.below(removed.len())])
            .collect();
        let relabelled = Dataset::new(sub.x, Targets::Classes(relabel))?;
        (model.losses(w, &relabelled, batch)?, Vec::new(), None)
    };
    losses.sort_by(|a, b| a.total_cmp(b));
    margins.sort_by(|a, b| a.total_cmp(b));
    Ok(Reference {
        nats_per_unit: nats_per_unit(model.loss_kind(), &losses),
        losses,
        margins,
        accuracy,
    })
}

/// Whether the forget set has gone past its reference, the other way from a memorised one:
/// its accuracy more than one standard error *below* validation's (the label check neither
/// within noise nor recognised; the bar mirrors the one at which it counts as recognised).
/// Only the labels are read: the losses of a correlated forget set (one sender, one folder)
/// rightly end up above unseen data's, where a retrained model puts them
/// (docs/REPRODUCTION_TEXT.md), and a loss-side reading sent those runs back at every check.
pub(super) fn overshot(labels: Option<&LabelCheck>) -> bool {
    labels.is_some_and(|l| !l.within_noise && !l.recognised)
}

/// Mean of values, summed in f64 (0 for none).
pub(super) fn mean(v: &[f32]) -> f32 {
    (v.iter().map(|&x| x as f64).sum::<f64>() / v.len().max(1) as f64) as f32
}

/// What a membership check found.
pub(super) struct Checked {
    /// The stop test passed (random forgetting: and was confirmed on spare samples).
    pub forgotten: bool,
    /// Random forgetting with class labels: the label-only check (the α controller's input).
    pub labels: Option<LabelCheck>,
    /// Random forgetting: the forget set has gone past its reference (see [`overshot`]).
    pub overshot: bool,
}

/// Adaptive mode's membership checks over a run.
pub(super) struct Monitor<'a> {
    model: &'a Model,
    eval_batch: usize,
    stop_margin: f32,
    /// Class removal: the removed classes; empty for random forgetting.
    removed: Vec<u32>,
    samples: CheckSamples,
    /// Random forgetting with class labels: the spare validation samples and their accuracy
    /// before any step. The test runs at many checks on one noisy sample, so the check at
    /// which it first passes is biased towards one where that sample happens to look
    /// healthy: on Fashion-MNIST (MLP, 3 %) a run stopped with its check sample 1.1 points
    /// below where it started and the test set 2.0 points below.
    confirm: Option<(Dataset, f32)>,
    /// The validation accuracy before any step: the stop test's health bar.
    start_val_accuracy: Option<f32>,
    /// The mean reference loss and its standard error before any step: the health bar
    /// without class labels.
    start_val_loss: (f32, f32),
    /// The step at which the last check ran.
    last_check: Option<usize>,
    /// Draws the forgotten labels of class removal's reference.
    rng: Rng,
    refs: Reference,
    /// The margin term pushes only while the last check still recognised the forget set by
    /// its accuracy (see `MARGIN_WEIGHT` in the objective).
    push_margins: bool,
    /// Random forgetting with class labels, where the checks see the whole forget set: each
    /// forget sample's margin target at the last check, its margin ranked among the whole
    /// forget set's against the reference margins (see `SATURATED_MARGIN` in the objective).
    /// Ranked per batch, the targets of one sample change with the batch it is drawn in.
    kept_margins: Vec<f32>,
    /// The reference, `push_margins` and `kept_margins` of the check before the last, for
    /// [`Self::rewind`].
    previous: Option<(Reference, bool, Vec<f32>)>,
}

impl<'a> Monitor<'a> {
    /// Measures the reference (and the confirmation samples' accuracy) on the weights before
    /// any step.
    pub fn new(
        model: &'a Model,
        w: &[Tensor],
        mut samples: CheckSamples,
        removed: Vec<u32>,
        (eval_batch, stop_margin): (usize, f32),
        mut rng: Rng,
    ) -> Result<Self> {
        let refs = reference(model, w, &samples.val, &removed, eval_batch, &mut rng)?;
        let confirm = match (samples.spare_val.take(), refs.accuracy) {
            (Some(spare), Some(_)) => {
                let start = score(model, w, &spare, eval_batch)?.accuracy;
                start.map(|a| (spare, a))
            }
            _ => None,
        };
        Ok(Monitor {
            model,
            eval_batch,
            stop_margin,
            removed,
            start_val_accuracy: refs.accuracy,
            start_val_loss: mean_se(&refs.losses),
            samples,
            confirm,
            last_check: None,
            rng,
            refs,
            push_margins: true,
            kept_margins: Vec::new(),
            previous: None,
        })
    }

    /// One standard error of the checks' validation accuracy before any step (None without
    /// class labels).
    pub fn start_val_se(&self) -> Option<f32> {
        self.start_val_accuracy
            .map(|a| crate::audit::membership::binomial_se(a, self.samples.val.len()))
    }

    /// Whether the run removes whole classes.
    pub fn class_removal(&self) -> bool {
        !self.removed.is_empty()
    }

    /// τ: the mean reference loss.
    pub fn tau(&self) -> f32 {
        mean(&self.refs.losses)
    }

    /// The forget term's target: the reference losses by rank, and the reference margins
    /// while the margin term pushes.
    pub fn forget_target(&self) -> ForgetTarget<'_> {
        let margins = !self.refs.margins.is_empty() && self.push_margins;
        let kept = !self.kept_margins.is_empty();
        ForgetTarget::RankMatched {
            reference: &self.refs.losses,
            two_sided: self.removed.is_empty(),
            margins: margins.then_some(self.refs.margins.as_slice()),
            kept_margins: kept.then_some(self.kept_margins.as_slice()),
            nats_per_unit: self.refs.nats_per_unit,
        }
    }

    /// Runs a check after `step` steps if one is due (see [`CHECK_MIN_STEPS`]): refreshes
    /// the reference (the first check uses the one measured before any step) and runs the
    /// stop test.
    pub fn check(&mut self, w: &[Tensor], step: usize) -> Result<Option<Checked>> {
        if !check_due(self.last_check, step) {
            return Ok(None);
        }
        if self.last_check.is_some() {
            let kept = self.kept_margins.clone();
            self.previous = Some((self.refs.clone(), self.push_margins, kept));
            let v = &self.samples.val;
            self.refs = reference(
                self.model,
                w,
                v,
                &self.removed,
                self.eval_batch,
                &mut self.rng,
            )?;
        }
        self.last_check = Some(step);
        let forget = score(self.model, w, &self.samples.forget, self.eval_batch)?;
        if self.class_removal() {
            let forgotten = class_gone(forget.accuracy);
            return Ok(Some(Checked {
                forgotten,
                labels: None,
                overshot: false,
            }));
        }
        let n_forget = self.samples.forget.len();
        let labels = match (forget.accuracy, self.refs.accuracy, self.start_val_accuracy) {
            (Some(af), Some(av), Some(av0)) => Some(LabelCheck::new(
                (af, n_forget),
                (av, self.samples.val.len()),
                av0,
            )),
            _ => None,
        };
        if let Some(l) = &labels {
            self.push_margins = l.recognised;
            if self.samples.whole_forget && !self.refs.margins.is_empty() {
                self.kept_margins = rank_targets(&forget.margins, &self.refs.margins);
            }
        }
        let (lf, lv) = (&forget.losses, &self.refs.losses);
        let overshot = overshot(labels.as_ref());
        // The losses must pass what the audit's strongest attacks read (the best threshold,
        // the AUC, the TPR at 1 % FPR) on every task. Health is judged by the validation
        // accuracy with class labels (with the label-only attack, confirmed on spare
        // samples), by the validation loss without. The AUC and TPR sides were first added
        // for tasks without labels; with labels they changed no run of the Fashion-MNIST
        // seed table or the spam filters' (same figures to the last digit), and on the digits
        // test (5 seeds) took the mean test accuracy from 94.90 to 95.01 % and the paper's
        // attack from 0.4933 to 0.4925 (retraining 0.4725), forget accuracy unchanged.
        let forgotten = losses_alike(lf, lv, self.stop_margin)
            && auc_alike(lf, lv, self.stop_margin)
            && tpr_alike(lf, lv)
            && labels
                .as_ref()
                .map_or_else(|| loss_healthy(mean(lv), self.start_val_loss), labels_alike)
            && match (&self.confirm, forget.accuracy) {
                (Some((spare, start)), Some(af)) => {
                    let s = score(self.model, w, spare, self.eval_batch)?;
                    s.accuracy.is_some_and(|a| {
                        labels_alike(&LabelCheck::new((af, n_forget), (a, spare.len()), *start))
                    })
                }
                _ => true,
            };
        Ok(Some(Checked {
            forgotten,
            labels,
            overshot,
        }))
    }

    /// The weights went back to those of the previous check: so do the reference and the
    /// margin term's switch (the next check stays [`CHECK_MIN_STEPS`] after this one).
    pub fn rewind(&mut self) {
        if let Some((refs, push, kept)) = &self.previous {
            (self.refs, self.push_margins) = (refs.clone(), *push);
            self.kept_margins.clone_from(kept);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sample i holds the value i, so membership can be read off the inputs.
    fn numbered(n: usize, labels: Vec<u32>) -> Dataset {
        let x = Tensor::from_vec((0..n).map(|i| i as f32).collect(), &[n, 1]).unwrap();
        Dataset::classification(x, labels).unwrap()
    }

    #[test]
    fn the_spare_sample_is_disjoint_from_the_check_sample() {
        let ids = |d: &Dataset| -> Vec<usize> {
            let mut v: Vec<usize> = d.x.to_vec().unwrap().iter().map(|&x| x as usize).collect();
            v.sort_unstable();
            v
        };
        let mut rng = Rng::new(3);
        for (n, max, spare_len) in [
            (10, 4, Some(4)),
            (10, 6, Some(4)),
            (10, 10, None),
            (5, 8, None),
        ] {
            let (check, spare) =
                sample_with_spare(&numbered(n, vec![0; n]), max, &mut rng).unwrap();
            let check = ids(&check);
            assert_eq!(check.len(), max.min(n));
            assert_eq!(spare.as_ref().map(|s| s.len()), spare_len);
            if let Some(spare) = spare {
                let spare = ids(&spare);
                assert!(
                    spare.iter().all(|i| !check.contains(i)),
                    "{check:?} {spare:?}"
                );
                assert!(spare.windows(2).all(|w| w[0] < w[1]), "repeats: {spare:?}");
            }
        }
    }

    #[test]
    fn class_removal_is_detected_only_for_whole_classes() {
        let d = |labels: Vec<u32>| numbered(labels.len(), labels);
        let retain = d(vec![0, 1, 2, 0, 1, 2]);
        // Every forget sample of a class the retain set lacks: class removal.
        assert_eq!(removed_classes(&d(vec![3, 3, 5, 3]), &retain), vec![3, 5]);
        // One forget sample of a kept class makes it random forgetting.
        assert!(removed_classes(&d(vec![3, 3, 1]), &retain).is_empty());
        assert!(removed_classes(&d(vec![0, 1]), &retain).is_empty());
        // Without class labels there is nothing to detect.
        let values = |n: usize| {
            let x = Tensor::zeros(&[n, 1]);
            Dataset::new(x, Targets::Values(Tensor::zeros(&[n, 1]))).unwrap()
        };
        assert!(removed_classes(&values(3), &values(4)).is_empty());
    }

    #[test]
    fn checks_run_every_check_min_steps() {
        assert!(check_due(None, 0));
        assert!(check_due(None, 7));
        assert!(!check_due(Some(10), 10 + CHECK_MIN_STEPS - 1));
        assert!(check_due(Some(10), 10 + CHECK_MIN_STEPS));
    }

    #[test]
    fn loss_side_of_the_stop_test() {
        // Interleaved losses from one distribution: alike.
        let reference: Vec<f32> = (0..2000).map(|i| i as f32 / 1000.0).collect();
        let forget: Vec<f32> = (0..500).map(|i| (4 * i + 1) as f32 / 1000.0).collect();
        assert!(losses_alike(&forget, &reference, 0.01));
        // Forget losses all at the low end (memorised): told apart.
        let memorised: Vec<f32> = (0..500).map(|i| i as f32 / 2000.0).collect();
        assert!(!losses_alike(&memorised, &reference, 0.01));
        // The floor: a margin of 0.5 lets anything pass.
        assert!(losses_alike(&memorised, &reference, 0.5));
    }

    #[test]
    fn label_side_of_the_stop_test() {
        let check = |within_noise, damage| LabelCheck {
            within_noise,
            recognised: !within_noise,
            damage,
        };
        assert!(labels_alike(&check(true, 0.0)));
        assert!(labels_alike(&check(true, HEALTH_BAR)));
        // A damaged model does not pass, however alike its sets look.
        assert!(!labels_alike(&check(true, HEALTH_BAR + 0.1)));
        assert!(!labels_alike(&check(false, 0.0)));
        // From measured accuracies: 2048 samples each, forget 88.5 %, validation 88.0 %
        // (was 88.5 %): within noise and healthy.
        assert!(labels_alike(&LabelCheck::new(
            (0.885, 2048),
            (0.88, 2048),
            0.885
        )));
        // Validation fell 3 points: about 4 standard errors of damage.
        assert!(!labels_alike(&LabelCheck::new(
            (0.855, 2048),
            (0.855, 2048),
            0.885
        )));
    }

    #[test]
    fn squared_errors_are_converted_to_nats() {
        // Cross-entropies are nats already.
        assert_eq!(nats_per_unit(LossKind::CrossEntropy, &[0.1, 5.0]), 1.0);
        assert_eq!(nats_per_unit(LossKind::BceWithLogits, &[0.1, 5.0]), 1.0);
        // Squared errors of a unit Gaussian: median χ²₁ ≈ 0.455, so σ² ≈ 1 and 1/(2σ²) ≈ 0.5;
        // a heavy tail does not move the median.
        let mut v: Vec<f32> = (0..999).map(|i| (i as f32 + 0.5) / 999.0 * 0.91).collect();
        v.push(1e6);
        v.sort_by(f32::total_cmp);
        let k = nats_per_unit(LossKind::Mse, &v);
        assert!((k - 0.5).abs() < 0.01, "{k}");
        // The scale follows the target's units: errors 100× larger, 100× fewer nats per unit.
        let big: Vec<f32> = v.iter().map(|x| x * 100.0).collect();
        assert!((nats_per_unit(LossKind::Mse, &big) * 100.0 - k).abs() < 1e-4);
        // Degenerate validation losses fall back to 1.
        assert_eq!(nats_per_unit(LossKind::Mse, &[0.0, 0.0, 0.0]), 1.0);
        assert_eq!(nats_per_unit(LossKind::Mse, &[]), 1.0);
    }

    #[test]
    fn auc_and_tpr_sides_of_the_stop_test() {
        let reference: Vec<f32> = (0..2000).map(|i| i as f32).collect();
        // Interleaved: alike on both.
        let alike: Vec<f32> = (0..400).map(|i| (5 * i) as f32 + 0.5).collect();
        assert!(auc_alike(&alike, &reference, 0.01));
        assert!(tpr_alike(&alike, &reference));
        // Shifted down by a tenth of the range: the AUC sees it.
        let shifted: Vec<f32> = alike.iter().map(|x| (x - 200.0).max(0.0)).collect();
        assert!(!auc_alike(&shifted, &reference, 0.01));
        // A few forget samples far below every reference loss: the TPR sees them although
        // the AUC barely moves.
        let mut tail = alike.clone();
        for x in tail.iter_mut().take(20) {
            *x = -1.0;
        }
        assert!(!tpr_alike(&tail, &reference));
        // Below TPR_MIN_REFERENCE reference samples the TPR side is not read.
        assert!(tpr_alike(&tail, &reference[..TPR_MIN_REFERENCE - 1]));
    }

    #[test]
    fn overshoot_is_past_the_reference_not_short_of_it() {
        let check = |af, av| LabelCheck::new((af, 400), (av, 600), av);
        // Within noise, or still recognised: no overshoot.
        assert!(!overshot(Some(&check(0.98, 0.98))));
        assert!(!overshot(Some(&check(0.985, 0.98))));
        assert!(!overshot(Some(&check(1.0, 0.98))));
        // Forget accuracy 3 points below validation's (one standard error is about 1.1).
        assert!(overshot(Some(&check(0.95, 0.98))));
        // Without labels there is nothing to read.
        assert!(!overshot(None));
    }

    #[test]
    fn loss_health_bar() {
        // Quarters are exact in f32, so the bar itself is hit exactly.
        assert!(loss_healthy(1.0, (1.0, 0.25)));
        assert!(loss_healthy(1.0 + HEALTH_BAR * 0.25, (1.0, 0.25)));
        assert!(!loss_healthy(1.0 + HEALTH_BAR * 0.25 + 0.01, (1.0, 0.25)));
        // Improving is healthy.
        assert!(loss_healthy(0.5, (1.0, 0.25)));
        let (m, se) = mean_se(&[1.0, 3.0]);
        assert!(
            (m - 2.0).abs() < 1e-6 && (se - 1.0).abs() < 1e-6,
            "{m} {se}"
        );
    }

    #[test]
    fn class_removal_stop_test() {
        assert!(class_gone(Some(0.0)));
        assert!(class_gone(Some(CLASS_GONE_ACCURACY)));
        assert!(!class_gone(Some(0.05)));
        assert!(!class_gone(None));
    }

    #[test]
    fn mean_sums_in_f64() {
        assert_eq!(mean(&[]), 0.0);
        assert_eq!(mean(&[1.0, 2.0]), 1.5);
        // 1e8 + 1 + 1 − 1e8 loses the ones in f32 arithmetic, not in f64.
        assert_eq!(mean(&[1e8, 1.0, 1.0, -1e8]), 0.5);
    }
}
