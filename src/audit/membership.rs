//! Membership statistics a run can compute cheaply while it trains: how well one threshold
//! on the per-sample losses tells members from unseen data, how large a difference sampling
//! noise alone produces, and how two measured accuracies compare in standard errors.
//!
//! These are measurements, not decisions: ∇τ's stop test (`unlearn::nabla_tau::monitor`)
//! decides what passes. Unlike the logistic-regression attack of [`super::mia`], they need no
//! fitting, so a run can afford them at every membership check.

/// Coefficient of the two-sample Kolmogorov-Smirnov distance `c · sqrt((n + m) / (n m))`
/// used as the stopping margin. 0.87 is about the median of the distance between two samples
/// of one distribution: forgetting stops once the remaining difference is what sampling
/// noise alone typically produces. (At the usual 20 % level, 1.07, small forget sets stopped
/// before forgetting anything measurable on the digits data; the label-only test now guards
/// that case too.)
const KS_COEFFICIENT: f32 = 0.87;

/// Best balanced accuracy of a threshold telling `members` (lower losses) from `others`
/// (0.5 when either is empty).
pub fn threshold_attack_accuracy(members: &[f32], others: &[f32]) -> f32 {
    if members.is_empty() || others.is_empty() {
        return 0.5;
    }
    let mut all: Vec<(f32, bool)> = members
        .iter()
        .map(|&v| (v, true))
        .chain(others.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (nm, no) = (members.len() as f32, others.len() as f32);
    let (mut tp, mut fp) = (0.0f32, 0.0f32);
    let mut best = 0.5f32;
    for (i, &(v, is_member)) in all.iter().enumerate() {
        if is_member {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if i + 1 < all.len() && all[i + 1].0 == v {
            continue;
        }
        // predict "member" for loss <= v, or the opposite rule
        let acc = 0.5 * (tp / nm + (no - fp) / no);
        best = best.max(acc).max(1.0 - acc);
    }
    best
}

/// Accuracy margin above 0.5 below which the best-threshold membership test counts as
/// "cannot tell" for samples of sizes `n` and `m`: half the KS distance of
/// `KS_COEFFICIENT` (a best-threshold balanced accuracy is 0.5 + D/2), so small sets are
/// not held to a bar that sampling noise alone would fail; never below `floor`.
pub fn indistinguishable_margin(n: usize, m: usize, floor: f32) -> f32 {
    if n == 0 || m == 0 {
        return floor;
    }
    let (n, m) = (n as f32, m as f32);
    (0.5 * KS_COEFFICIENT * ((n + m) / (n * m)).sqrt()).max(floor)
}

/// Standard error of an accuracy `p` measured on `n` samples.
pub fn binomial_se(p: f32, n: usize) -> f32 {
    (p * (1.0 - p) / n.max(1) as f32).sqrt()
}

/// Pooled binomial standard error of the difference between two measured accuracies, `a`
/// on `n` samples and `b` on `m`.
pub fn accuracy_gap_se(a: f32, n: usize, b: f32, m: usize) -> f32 {
    let (n, m) = (n as f32, m as f32);
    let p = (a * n + b * m) / (n + m);
    (p * (1.0 - p) * (1.0 / n + 1.0 / m)).sqrt()
}

/// The label-only side of a membership check: a memorised forget set is recognised more
/// often than unseen data even when the loss distributions overlap within noise. Compares
/// the forget accuracy with the validation accuracy, and the validation accuracy with where
/// it started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelCheck {
    /// Forget and validation accuracy differ by at most one standard error.
    pub within_noise: bool,
    /// The forget set is recognised more than one standard error above validation data.
    pub recognised: bool,
    /// How far the validation accuracy has fallen since the start, in standard errors.
    pub damage: f32,
}

impl LabelCheck {
    /// `forget` and `val`: (accuracy, samples); `val_start`: the validation accuracy before
    /// the first step.
    pub fn new(forget: (f32, usize), val: (f32, usize), val_start: f32) -> Self {
        let ((af, n), (av, m)) = (forget, val);
        let se = accuracy_gap_se(af, n, av, m);
        LabelCheck {
            within_noise: (af - av).abs() <= se,
            recognised: af - av > se,
            damage: (val_start - av) / binomial_se(val_start, m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_attack() {
        assert_eq!(threshold_attack_accuracy(&[0.1, 0.2], &[0.8, 0.9]), 1.0);
        // Interleaved values: the best threshold (below 0.1, 0.3, 0.5 or 0.7) gets one
        // side one sample better than the other: (1/4 + 4/4) / 2.
        let a = threshold_attack_accuracy(&[0.1, 0.3, 0.5, 0.7], &[0.2, 0.4, 0.6, 0.8]);
        assert!((a - 0.625).abs() < 1e-6, "{a}");
        // Members with the higher losses are told apart just as well (the opposite rule).
        assert_eq!(threshold_attack_accuracy(&[0.8, 0.9], &[0.1, 0.2]), 1.0);
        // Identical samples cannot be told apart.
        assert_eq!(threshold_attack_accuracy(&[0.5, 0.5], &[0.5, 0.5]), 0.5);
        assert_eq!(threshold_attack_accuracy(&[], &[1.0]), 0.5);
    }

    #[test]
    fn margin_shrinks_with_the_sample_sizes() {
        assert!((indistinguishable_margin(6000, 6000, 0.0) - 0.00794).abs() < 1e-4);
        assert!(
            indistinguishable_margin(100, 100, 0.0) > indistinguishable_margin(1000, 1000, 0.0)
        );
        assert_eq!(indistinguishable_margin(1_000_000, 1_000_000, 0.02), 0.02);
        assert_eq!(indistinguishable_margin(0, 10, 0.01), 0.01);
    }

    #[test]
    fn standard_errors() {
        assert!((binomial_se(0.5, 100) - 0.05).abs() < 1e-6);
        assert_eq!(binomial_se(1.0, 10), 0.0);
        // Equal accuracies on equal sizes: the pooled error is sqrt(2) times one side's.
        let se = accuracy_gap_se(0.8, 400, 0.8, 400);
        assert!(
            (se - binomial_se(0.8, 400) * 2f32.sqrt()).abs() < 1e-6,
            "{se}"
        );
    }

    #[test]
    fn label_check_reads_recognition_and_damage() {
        // 2000 samples each: one standard error of the gap near 0.9 is about 0.95 points.
        let c = LabelCheck::new((0.95, 2000), (0.90, 2000), 0.90);
        assert!(c.recognised && !c.within_noise);
        assert_eq!(c.damage, 0.0);
        let c = LabelCheck::new((0.905, 2000), (0.90, 2000), 0.90);
        assert!(!c.recognised && c.within_noise);
        // Validation accuracy 3 points below its start on 2000 samples: about 4.5 errors.
        let c = LabelCheck::new((0.87, 2000), (0.87, 2000), 0.90);
        assert!(c.within_noise);
        assert!(
            (c.damage - 0.03 / binomial_se(0.9, 2000)).abs() < 1e-3,
            "{}",
            c.damage
        );
    }
}
