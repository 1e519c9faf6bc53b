//! Membership attacks on per-sample losses, for any task: they see one number per sample
//! (the loss the model was trained on), never the model, so they apply to classification,
//! regression and multi-label models alike, and ∇τ's stop test can call the cheap ones.
//!
//! Members (the forget set) are expected to have *lower* losses than non-members (unseen
//! data). Three attacks read the same losses:
//!
//! - **paper**: the ∇τ paper's attack, a logistic regression on the raw loss with the
//!   scikit-learn protocol of [`super::mia`]. Its number is the one published tables quote.
//!   On heavy-tailed losses (squared errors, the cross-entropy of a confident model) it is
//!   weak: a few huge losses pull its fitted threshold far from where the two groups
//!   actually differ.
//! - **log-loss**: the same protocol on `ln(loss + ε)` (see [`log_epsilon`]), which spreads
//!   the small losses where members and non-members differ and tames the tail.
//! - **threshold**: no fit at all, one threshold on the loss ("lower loss ⇒ member"). Its
//!   figures are the ROC AUC (the Mann-Whitney statistic), the true-positive rate at a 1 %
//!   false-positive rate (the figure Carlini et al., "Membership Inference Attacks From
//!   First Principles", 2022, argue for: an attack is dangerous if it identifies some members
//!   with confidence, even when its average accuracy is low), and the best threshold's
//!   balanced accuracy ([`super::membership::threshold_attack_accuracy`]).
//!
//! A one-feature attacker's score is a monotone function of the loss, so its ROC curve is the
//! loss's ROC curve read in the direction it learned: a monotone transform changes where a
//! fitted threshold falls (the accuracy) but not the ranking. The logistic attacks' AUC and
//! TPR are therefore computed on all samples from the ranking, in the direction their fits
//! point (lower loss ⇒ member unless the fitted coefficients say the opposite).
//!
//! [`LossAttacks::strongest_advantage`] sums this up in one number, the largest distance from
//! chance (0.5) among the unbiased figures: the two logistic attacks' held-out accuracies (how
//! far above 0.5) and the ROC AUCs. The best threshold's accuracy is left out of it: it is chosen on the very
//! samples it is scored on, so it reads `0.5 + D/2` (D the Kolmogorov-Smirnov distance)
//! above 0.5 even when there is no signal.
//!
//! The rank statistics are hand-written: they are a sort and a pass, and the crates that
//! offer them bring dependencies (ndarray, statrs) for a dozen lines.

use super::membership::threshold_attack_accuracy;
use super::mia::{mia_trace, MiaOptions};
use crate::error::{Error, Result};

/// The false-positive rate the audit reads the true-positive rate at (1 %).
pub const AUDIT_FPR: f64 = 0.01;

/// `ε` of the log-loss attack relative to the mean loss: see [`log_epsilon`].
const LOG_EPS_RELATIVE: f64 = 1e-4;

/// What one attack achieves. NaN where a figure does not apply or cannot be measured (see
/// [`tpr_at_fpr`] for how many non-members the TPR needs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttackScores {
    /// Balanced accuracy: held out (mean over the splits) for the logistic attacks, in-sample
    /// for the best threshold.
    pub accuracy: f64,
    /// ROC AUC of telling members from non-members (0.5: chance).
    pub auc: f64,
    /// True-positive rate at [`AUDIT_FPR`] false positives.
    pub tpr_at_1pct_fpr: f64,
}

/// The three attacks of this module on one pair of loss samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossAttacks {
    /// The paper's attack: logistic regression on the raw loss.
    pub paper: AttackScores,
    /// The same protocol on `ln(loss + ε)`.
    pub log_loss: AttackScores,
    /// One threshold on the loss, lower ⇒ member.
    pub threshold: AttackScores,
}

impl AttackScores {
    /// Every figure NaN: not measured.
    pub const UNMEASURED: AttackScores = AttackScores {
        accuracy: f64::NAN,
        auc: f64::NAN,
        tpr_at_1pct_fpr: f64::NAN,
    };
}

impl LossAttacks {
    /// Every attack unmeasured (too few samples to run them).
    pub const UNMEASURED: LossAttacks = LossAttacks {
        paper: AttackScores::UNMEASURED,
        log_loss: AttackScores::UNMEASURED,
        threshold: AttackScores::UNMEASURED,
    };

    /// The largest distance from chance among the attacks' unbiased figures, with its name:
    /// how far the two logistic attacks' held-out accuracies rise above 0.5, and `|AUC − 0.5|`;
    /// `("none", NaN)` when none was measured.
    ///
    /// A held-out accuracy below 0.5 counts as 0: the attacker's fit did worse than a coin on
    /// fresh samples, which is noise (on small balanced sets, holding samples out biases a
    /// near-flat fit slightly against them), not a way to tell members apart. An AUC below
    /// 0.5 does count: members then have the *higher* losses, itself a membership signal.
    pub fn strongest(&self) -> (&'static str, f64) {
        let above = |acc: f64| {
            if acc.is_nan() {
                acc
            } else {
                (acc - 0.5).max(0.0)
            }
        };
        let figures = [
            ("paper accuracy", above(self.paper.accuracy)),
            ("log-loss accuracy", above(self.log_loss.accuracy)),
            ("ROC AUC", (self.threshold.auc - 0.5).abs()),
            ("ROC AUC", (self.paper.auc - 0.5).abs()),
            ("ROC AUC", (self.log_loss.auc - 0.5).abs()),
        ];
        figures
            .iter()
            .copied()
            .filter(|(_, v)| !v.is_nan())
            .fold(("none", f64::NAN), |best, f| {
                if best.1.is_nan() || f.1 > best.1 {
                    f
                } else {
                    best
                }
            })
    }

    /// [`Self::strongest`]'s distance from chance: 0 when no attack tells the sets apart, 0.5
    /// when one separates them perfectly, NaN when none was measured.
    pub fn strongest_advantage(&self) -> f64 {
        self.strongest().1
    }
}

/// Whether either side is empty or holds a NaN (no ranking exists).
fn unrankable(members: &[f32], others: &[f32]) -> bool {
    members.is_empty() || others.is_empty() || members.iter().chain(others).any(|v| v.is_nan())
}

/// ROC AUC of the rule "lower loss ⇒ member": the probability that a random member's loss is
/// below a random non-member's, ties counting one half (the Mann-Whitney U statistic over
/// `|members|·|others|`). 1: every member below every non-member; 0.5: no signal; below 0.5:
/// members have the higher losses. NaN when either side is empty or holds a NaN.
///
/// O(n log n): one sort of the pooled losses, mid-ranks for ties.
pub fn roc_auc(members: &[f32], others: &[f32]) -> f64 {
    if unrankable(members, others) {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> = members
        .iter()
        .map(|&v| (v, true))
        .chain(others.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the non-members' ranks (1-based), each tie group getting its mean rank.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + 1 + j) as f64 / 2.0;
        let n_others = all[i..j].iter().filter(|(_, m)| !m).count();
        rank_sum += mid_rank * n_others as f64;
        i = j;
    }
    let (nm, no) = (members.len() as f64, others.len() as f64);
    (rank_sum - no * (no + 1.0) / 2.0) / (nm * no)
}

/// The fewest non-members [`tpr_at_fpr`] needs at `fpr`: the rate must allow at least one
/// false positive, or it would be the TPR at zero false positives, a stricter and noisier
/// figure. ⌈1/fpr⌉: 100 at 1 %.
pub fn min_nonmembers_for_fpr(fpr: f64) -> usize {
    if !(fpr > 0.0 && fpr <= 1.0) {
        return usize::MAX;
    }
    // The tolerance absorbs the rounding of 1/fpr (1/0.01 is not exactly 100 in binary).
    (1.0 / fpr - 1e-9).ceil() as usize
}

/// True-positive rate of "lower loss ⇒ member" at false-positive rate `fpr`: the largest
/// share of members a loss threshold flags while it flags at most `⌊fpr·|others|⌋`
/// non-members.
///
/// Conventions: no interpolation between ROC points (the operating point is one a real
/// threshold reaches; Carlini et al. read the ROC curve the same way, at the last point below
/// the rate); a member tied with the first non-member beyond the allowance is not counted
/// (the threshold must sit below that non-member).
///
/// NaN when either side is empty or holds a NaN, when `fpr` is not in (0, 1], or when there
/// are fewer than [`min_nonmembers_for_fpr`] non-members (100 at 1 %). Even at that minimum
/// the rate rests on a single non-member and is noisy; about `10/fpr` non-members (1000 at
/// 1 %) give it roughly ±30 % relative precision.
pub fn tpr_at_fpr(members: &[f32], others: &[f32], fpr: f64) -> f64 {
    if unrankable(members, others) || others.len() < min_nonmembers_for_fpr(fpr) {
        return f64::NAN;
    }
    let allowed = (fpr * others.len() as f64 + 1e-9).floor() as usize;
    if allowed >= others.len() {
        return 1.0;
    }
    let mut sorted = others.to_vec();
    sorted.sort_by(f32::total_cmp);
    // Every member strictly below the first non-member past the allowance can be flagged
    // with at most `allowed` non-members flagged beside it.
    let bound = sorted[allowed];
    let hits = members.iter().filter(|&&v| v < bound).count();
    hits as f64 / members.len() as f64
}

/// The `ε` of the log-loss attack's feature `ln(loss + ε)`: 10⁻⁴ times the mean of all the
/// losses (members and non-members pooled), or 1 if they are all zero.
///
/// Why relative: the logistic attacker has an unpenalised intercept, so `ln(k·loss + k·ε)` and
/// `ln(loss + ε)` differ by a constant it absorbs: with `ε` proportional to the losses, the
/// attack reads the same whatever the units of a regression target (dollars or thousands of
/// dollars). Why 10⁻⁴: it keeps exact zeros (a memorised sample's loss underflowing) finite,
/// and stops losses ten thousand times below the typical one — at the level of `f32`
/// rounding in the loss computation — from getting the leverage a bare logarithm gives them,
/// while leaving the transform strictly monotone and close to `ln` wherever losses differ in
/// earnest.
pub fn log_epsilon(members: &[f32], others: &[f32]) -> f64 {
    let n = members.len() + others.len();
    let mean = members.iter().chain(others).map(|&v| v as f64).sum::<f64>() / n.max(1) as f64;
    if mean > 0.0 && mean.is_finite() {
        (LOG_EPS_RELATIVE * mean).max(f64::MIN_POSITIVE)
    } else {
        1.0
    }
}

fn check_losses(v: &[f32], what: &str) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite() || *x < 0.0) {
        return Err(Error::NonFinite(format!(
            "membership attacks: {what} loss {i} is {} (losses must be finite and non-negative)",
            v[i]
        )));
    }
    Ok(())
}

/// The ROC figures of one direction: lower loss ⇒ member, or the reverse when `higher`.
fn roc_figures(members: &[f32], others: &[f32], higher: bool) -> (f64, f64) {
    if !higher {
        return (
            roc_auc(members, others),
            tpr_at_fpr(members, others, AUDIT_FPR),
        );
    }
    let neg = |v: &[f32]| v.iter().map(|x| -x).collect::<Vec<f32>>();
    let (m, o) = (neg(members), neg(others));
    (roc_auc(&m, &o), tpr_at_fpr(&m, &o, AUDIT_FPR))
}

/// One logistic attack (the paper's protocol, `seed`) on the features, with the ROC figures
/// of the direction its fits learned.
fn logistic_attack(
    members: &[f32],
    others: &[f32],
    features: (&[f32], &[f32]),
    seed: u64,
) -> Result<AttackScores> {
    let opts = MiaOptions {
        seed,
        ..MiaOptions::default()
    };
    let trace = mia_trace(features.0, features.1, &opts)?;
    // Members are class 1: a positive mean coefficient means "higher loss ⇒ member".
    let coef = trace.fits.iter().map(|f| f.coef[0]).sum::<f64>();
    let (auc, tpr) = roc_figures(members, others, coef > 0.0);
    Ok(AttackScores {
        accuracy: trace.result.accuracy_mean,
        auc,
        tpr_at_1pct_fpr: tpr,
    })
}

/// The three attacks on the losses of `members` (forget set) and `others` (unseen data),
/// seeded by `seed` (the logistic attacks' subsampling and splits).
///
/// Errors: a loss that is negative or not finite, or fewer than 3 samples on a side (the
/// logistic protocol's minimum, [`super::mia::mia_score`]).
pub fn loss_attacks(members: &[f32], others: &[f32], seed: u64) -> Result<LossAttacks> {
    check_losses(members, "member (forget-set)")?;
    check_losses(others, "non-member (test-set)")?;
    let paper = logistic_attack(members, others, (members, others), seed)?;
    let eps = log_epsilon(members, others);
    let log = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| (x as f64 + eps).ln() as f32).collect() };
    let log_loss = logistic_attack(members, others, (&log(members), &log(others)), seed)?;
    let (auc, tpr) = roc_figures(members, others, false);
    let threshold = AttackScores {
        accuracy: threshold_attack_accuracy(members, others) as f64,
        auc,
        tpr_at_1pct_fpr: tpr,
    };
    Ok(LossAttacks {
        paper,
        log_loss,
        threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::mia::mia_score;
    use crate::rng::Rng;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_of_known_orderings() {
        assert_eq!(roc_auc(&[0.1, 0.2], &[0.3, 0.4]), 1.0);
        assert_eq!(roc_auc(&[0.3, 0.4], &[0.1, 0.2]), 0.0);
        // Pairs (m, o) with m < o: 0.1 beats 0.2, 0.4; 0.3 beats 0.4: 3 of 4.
        assert!(close(roc_auc(&[0.1, 0.3], &[0.2, 0.4]), 0.75));
        // Interleaved 1..8: members 1,3,5,7 vs 2,4,6,8 win 4+3+2+1 = 10 of 16.
        let m = [1.0, 3.0, 5.0, 7.0];
        let o = [2.0, 4.0, 6.0, 8.0];
        assert!(close(roc_auc(&m, &o), 10.0 / 16.0));
        // Unequal sizes: 0.5 is below all three, 2.5 below one: 4 of 6.
        assert!(close(roc_auc(&[0.5, 2.5], &[1.0, 2.0, 3.0]), 4.0 / 6.0));
    }

    #[test]
    fn auc_counts_ties_as_half() {
        assert_eq!(roc_auc(&[1.0, 1.0], &[1.0, 1.0, 1.0]), 0.5);
        // m = 1 ties o = 1 (½) and beats o = 2 (1); m = 2 loses to o = 1 and ties o = 2 (½):
        // 2 of 4.
        assert!(close(roc_auc(&[1.0, 2.0], &[1.0, 2.0]), 0.5));
        // m = {0, 1}, o = {1, 1, 3}: 0 beats all (3); 1 ties two (1) and beats 3 (1): 5 of 6.
        assert!(close(roc_auc(&[0.0, 1.0], &[1.0, 1.0, 3.0]), 5.0 / 6.0));
    }

    #[test]
    fn auc_matches_the_pairwise_count_on_random_data() {
        let mut rng = Rng::new(3);
        // Rounded to a coarse grid, so that ties are common.
        let draw = |rng: &mut Rng, n: usize, shift: f32| -> Vec<f32> {
            (0..n)
                .map(|_| ((rng.normal() + shift) * 4.0).round() / 4.0)
                .collect()
        };
        let m = draw(&mut rng, 137, 0.0);
        let o = draw(&mut rng, 211, 0.4);
        let mut wins = 0.0;
        for &a in &m {
            for &b in &o {
                wins += if a < b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let want = wins / (m.len() * o.len()) as f64;
        assert!(
            close(roc_auc(&m, &o), want),
            "{} vs {want}",
            roc_auc(&m, &o)
        );
    }

    #[test]
    fn auc_without_a_ranking_is_nan() {
        assert!(roc_auc(&[], &[1.0]).is_nan());
        assert!(roc_auc(&[1.0], &[]).is_nan());
        assert!(roc_auc(&[f32::NAN], &[1.0]).is_nan());
    }

    #[test]
    fn tpr_at_fpr_on_constructed_samples() {
        // 200 non-members at 1..=200: 1 % allows two false positives, so the threshold sits
        // below the third non-member (3.0).
        let others: Vec<f32> = (1..=200).map(|v| v as f32).collect();
        // Members: 0.5, 1.5, 2.5 are below 3; 2.9999 too; 3.0 ties the bound; 10 and 50 not.
        let members = [0.5, 1.5, 2.5, 2.9999, 3.0, 10.0, 50.0, 100.0];
        assert!(close(tpr_at_fpr(&members, &others, 0.01), 4.0 / 8.0));
        // At 5 %: ten false positives, bound 11: six members below it.
        assert!(close(tpr_at_fpr(&members, &others, 0.05), 6.0 / 8.0));
        // Tied non-members at the bound: 100 copies of 1.0 and 100 of 2.0; one allowed FP
        // (at 0.5 %) puts the bound at the second 1.0, so only members below 1.0 count.
        let mut tied = vec![1.0f32; 100];
        tied.extend(vec![2.0f32; 100]);
        assert!(close(tpr_at_fpr(&[0.5, 1.0, 1.5], &tied, 0.005), 1.0 / 3.0));
        // Everything allowed: every member is flagged.
        assert_eq!(tpr_at_fpr(&[5.0], &others, 1.0), 1.0);
    }

    #[test]
    fn tpr_needs_enough_nonmembers() {
        assert_eq!(min_nonmembers_for_fpr(0.01), 100);
        assert_eq!(min_nonmembers_for_fpr(0.001), 1000);
        assert_eq!(min_nonmembers_for_fpr(0.0), usize::MAX);
        let others: Vec<f32> = (0..99).map(|v| v as f32).collect();
        assert!(tpr_at_fpr(&[0.0], &others, 0.01).is_nan());
        let others: Vec<f32> = (0..100).map(|v| v as f32).collect();
        // One false positive allowed (0.0): the member at -1 is below the bound 1.0.
        assert_eq!(tpr_at_fpr(&[-1.0], &others, 0.01), 1.0);
        assert!(tpr_at_fpr(&[], &others, 0.01).is_nan());
        assert!(tpr_at_fpr(&[0.0], &others, 1.5).is_nan());
    }

    fn lognormal(rng: &mut Rng, n: usize, mu: f32, sigma: f32) -> Vec<f32> {
        (0..n).map(|_| (mu + sigma * rng.normal()).exp()).collect()
    }

    /// Squared errors of Student-t residuals with 2 degrees of freedom (`z / sqrt(-ln U)`),
    /// scaled by `scale`: the heavy-tailed losses of a regression model.
    fn squared_t2_errors(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let t = rng.normal() / (-(1.0 - rng.uniform()).ln()).sqrt();
                (scale * t).powi(2)
            })
            .collect()
    }

    #[test]
    fn heavy_tails_defeat_the_raw_attack_not_the_log_and_rank_ones() {
        // Non-members' residuals 1.5 times the members'. With |t₂|'s distribution function
        // x/sqrt(2 + x²), the AUC is E[F(1.5|T|)] ≈ 0.600 (numerically); scikit-learn's
        // attacks on such samples (3 draws of 3000 a side) read 0.534-0.544 raw and
        // 0.573-0.577 on the log-loss.
        let mut rng = Rng::new(17);
        let members = squared_t2_errors(&mut rng, 3000, 1.0);
        let others = squared_t2_errors(&mut rng, 3000, 1.5);
        let a = loss_attacks(&members, &others, 5).unwrap();
        assert!((a.threshold.auc - 0.600).abs() < 0.015, "{a:?}");
        assert!(a.paper.accuracy < 0.555, "{a:?}");
        assert!(a.log_loss.accuracy > a.paper.accuracy + 0.02, "{a:?}");
        assert!(a.threshold.auc - 0.5 > 0.08, "{a:?}");
        // The rank figures do not depend on the transform or the fit.
        assert_eq!(a.log_loss.auc, a.threshold.auc);
        assert_eq!(a.log_loss.tpr_at_1pct_fpr, a.threshold.tpr_at_1pct_fpr);
        assert_eq!(a.strongest(), ("ROC AUC", a.threshold.auc - 0.5));
        // The paper's number is exactly the existing attack's.
        assert_eq!(
            a.paper.accuracy,
            mia_score(&members, &others, 5).unwrap().accuracy_mean
        );
    }

    #[test]
    fn log_attack_ignores_the_units_and_zero_losses() {
        let mut rng = Rng::new(23);
        let mut members = lognormal(&mut rng, 400, -1.0, 1.5);
        members[..40].iter_mut().for_each(|v| *v = 0.0);
        let others = lognormal(&mut rng, 500, 0.0, 1.5);
        let a = loss_attacks(&members, &others, 1).unwrap();
        let scale = |v: &[f32]| v.iter().map(|x| x * 1000.0).collect::<Vec<_>>();
        let b = loss_attacks(&scale(&members), &scale(&others), 1).unwrap();
        // One held-out prediction flipping by rounding moves the accuracy by 1/160.
        assert!(
            (a.log_loss.accuracy - b.log_loss.accuracy).abs() < 0.01,
            "{a:?} {b:?}"
        );
        assert_eq!(a.threshold, b.threshold);
        assert!(a.log_loss.accuracy > 0.6, "{a:?}");
        assert_eq!(log_epsilon(&[0.0], &[0.0]), 1.0);
        assert!(close(log_epsilon(&[1.0, 3.0], &[2.0]), 2e-4));
    }

    #[test]
    fn higher_member_losses_are_read_in_their_direction() {
        // Members with the *higher* losses: the logistic attacks learn it and their ROC
        // figures follow; the threshold attack's fixed rule reads an AUC near 0.
        let members: Vec<f32> = (0..200).map(|i| 10.0 + i as f32 * 0.01).collect();
        let others: Vec<f32> = (0..300).map(|i| 1.0 + i as f32 * 0.01).collect();
        let a = loss_attacks(&members, &others, 0).unwrap();
        assert_eq!(a.threshold.auc, 0.0);
        assert_eq!(a.threshold.tpr_at_1pct_fpr, 0.0);
        assert_eq!(a.threshold.accuracy, 1.0);
        for s in [a.paper, a.log_loss] {
            assert_eq!((s.accuracy, s.auc, s.tpr_at_1pct_fpr), (1.0, 1.0, 1.0));
        }
        assert_eq!(a.strongest_advantage(), 0.5);
        assert_eq!(LossAttacks::UNMEASURED.strongest().0, "none");
        // A held-out accuracy below chance is noise, not an attack.
        let below = LossAttacks {
            paper: AttackScores {
                accuracy: 0.42,
                auc: 0.47,
                tpr_at_1pct_fpr: 0.0,
            },
            ..LossAttacks::UNMEASURED
        };
        assert_eq!(below.strongest().0, "ROC AUC");
        assert!(close(below.strongest_advantage(), 0.03));
        assert!(LossAttacks::UNMEASURED.strongest_advantage().is_nan());
    }

    #[test]
    fn identical_samples_read_chance_and_the_seed_fixes_the_result() {
        let mut rng = Rng::new(4);
        let members = lognormal(&mut rng, 1500, 0.0, 1.0);
        let others = lognormal(&mut rng, 1500, 0.0, 1.0);
        let a = loss_attacks(&members, &others, 9).unwrap();
        assert_eq!(a, loss_attacks(&members, &others, 9).unwrap());
        // Under no signal the AUC's sd is sqrt(1/(6·1500)) ≈ 0.011 and one split's held-out
        // accuracy (600 rows) has sd 0.02: 0.04 is more than three of either.
        assert!(a.strongest_advantage() < 0.04, "{a:?}");
        assert!(a.threshold.tpr_at_1pct_fpr < 0.04, "{a:?}");
    }

    #[test]
    fn bad_losses_are_errors() {
        let ok = [0.1f32, 0.2, 0.3, 0.4];
        assert!(loss_attacks(&ok, &[0.1, f32::NAN, 0.3], 0).is_err());
        assert!(loss_attacks(&[-1.0, 0.2, 0.3], &ok, 0).is_err());
        assert!(loss_attacks(&ok[..2], &ok, 0).is_err());
        assert!(loss_attacks(&ok[..3], &ok, 0).is_ok());
    }
}
