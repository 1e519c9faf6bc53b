//! The membership-inference attack of the ∇τ paper's evaluation protocol, as its reference
//! code runs it with scikit-learn:
//!
//! 1. one feature per sample: the cross-entropy loss, or (second variant) the softmax
//!    entropy; forget-set samples are members (label 1), test samples non-members (label 0);
//! 2. the larger side is subsampled at random (without replacement) to the size of the
//!    smaller, so that 0.5 is chance level;
//! 3. the attacker is `LogisticRegression()` with sklearn's defaults (L2, C = 1, intercept,
//!    raw features) — see [`super::logistic`];
//! 4. the score is its mean test accuracy over 10 stratified shuffle splits with 20 % test
//!    (`StratifiedShuffleSplit(n_splits=10, test_size=0.2)` + `cross_val_score`).
//!
//! Every random choice comes from one seed, so a score is reproducible; [`mia_trace`] exposes
//! the exact rows, splits and fits so that `scripts/check_mia_sklearn.py` can redo them with
//! scikit-learn.

use super::logistic::{fit_logistic, LogisticFit};
use super::metrics::{per_sample_loss, softmax_entropy};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Which per-sample quantity the attacker sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MiaFeature {
    /// Cross-entropy loss against the true label.
    Loss,
    /// Entropy of the softmax output (needs no label).
    Entropy,
}

/// Knobs of the attack; `Default` is the paper's protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct MiaOptions {
    /// Number of stratified shuffle splits (10).
    pub n_splits: usize,
    /// Fraction of the balanced set held out per split (0.2).
    pub test_fraction: f64,
    /// Inverse L2 strength of the attacker (1.0, sklearn's default).
    pub c: f64,
    /// Seeds the subsampling and the splits.
    pub seed: u64,
}

impl Default for MiaOptions {
    fn default() -> Self {
        MiaOptions {
            n_splits: 10,
            test_fraction: 0.2,
            c: 1.0,
            seed: 0,
        }
    }
}

/// The attack's score.
#[derive(Clone, Debug, PartialEq)]
pub struct MiaResult {
    /// Mean test accuracy over the splits (≈ 0.5: no membership signal).
    pub accuracy_mean: f64,
    /// Population standard deviation of the split accuracies (NumPy's `std`, ddof = 0).
    pub accuracy_std: f64,
    /// Samples per class after balancing.
    pub n_per_class: usize,
    /// Test accuracy of each split.
    pub split_accuracies: Vec<f64>,
}

/// Train and test row indices of one split, each sorted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Everything the attack did, for cross-checking against another implementation.
#[derive(Clone, Debug)]
pub struct MiaTrace {
    /// The balanced rows: members first, then non-members.
    pub features: Vec<f64>,
    /// true = member.
    pub labels: Vec<bool>,
    /// Indices into the original member / non-member inputs of the rows kept.
    pub member_rows: Vec<usize>,
    pub nonmember_rows: Vec<usize>,
    pub splits: Vec<Split>,
    /// The attacker fitted on each split's training rows.
    pub fits: Vec<LogisticFit>,
    pub result: MiaResult,
}

/// Attack score with the paper's protocol (10 splits, 20 % test, C = 1) and `seed`.
///
/// Errors: an empty side, non-finite features, or fewer than 3 samples per class (too few
/// for a 20 % test set holding both classes).
pub fn mia_score(
    member_feature: &[f32],
    nonmember_feature: &[f32],
    seed: u64,
) -> Result<MiaResult> {
    let opts = MiaOptions {
        seed,
        ..MiaOptions::default()
    };
    Ok(mia_trace(member_feature, nonmember_feature, &opts)?.result)
}

/// Attack score computed from logits: member (forget-set) and non-member (test-set) logits
/// `[N, C]` with their labels, reduced to `feature`.
pub fn mia_from_logits(
    member_logits: &Tensor,
    member_labels: &[u32],
    nonmember_logits: &Tensor,
    nonmember_labels: &[u32],
    feature: MiaFeature,
    seed: u64,
) -> Result<MiaResult> {
    let f = |logits: &Tensor, labels: &[u32]| match feature {
        MiaFeature::Loss => per_sample_loss(logits, labels),
        MiaFeature::Entropy => {
            // Labels are unused by the entropy, but a count mismatch still betrays a bug.
            if labels.len() != logits.shape().first().copied().unwrap_or(0) {
                return Err(Error::shape(
                    "mia_from_logits",
                    format!("{} labels for logits {:?}", labels.len(), logits.shape()),
                ));
            }
            softmax_entropy(logits)
        }
    };
    mia_score(
        &f(member_logits, member_labels)?,
        &f(nonmember_logits, nonmember_labels)?,
        seed,
    )
}

/// Counts per class that sum to `n_draws`, as close to proportional to `counts` as possible:
/// floors first, then the leftovers to the classes with the largest remainders (ties broken
/// at random) — scikit-learn's `_approximate_mode`.
fn approximate_mode(counts: &[usize], n_draws: usize, rng: &mut Rng) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    let exact: Vec<f64> = counts
        .iter()
        .map(|&c| n_draws as f64 * c as f64 / total as f64)
        .collect();
    let mut out: Vec<usize> = exact.iter().map(|v| v.floor() as usize).collect();
    let mut left = n_draws - out.iter().sum::<usize>();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    rng.shuffle(&mut order);
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.partial_cmp(&ra).unwrap_or(std::cmp::Ordering::Equal)
    });
    for &k in &order {
        if left == 0 {
            break;
        }
        if out[k] < counts[k] {
            out[k] += 1;
            left -= 1;
        }
    }
    out
}

/// `n_splits` stratified shuffle splits of rows labelled `labels`, each holding out
/// ⌈test_fraction·n⌉ rows with the class proportions kept (sklearn's
/// `StratifiedShuffleSplit` sizing; the random streams differ from NumPy's).
pub fn stratified_shuffle_splits(
    labels: &[bool],
    n_splits: usize,
    test_fraction: f64,
    rng: &mut Rng,
) -> Result<Vec<Split>> {
    let n = labels.len();
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::invalid(format!(
            "test fraction must be in (0, 1), got {test_fraction}"
        )));
    }
    let n_test = (test_fraction * n as f64).ceil() as usize;
    let n_train = n - n_test.min(n);
    let classes: [Vec<usize>; 2] = [
        (0..n).filter(|&i| !labels[i]).collect(),
        (0..n).filter(|&i| labels[i]).collect(),
    ];
    let counts = [classes[0].len(), classes[1].len()];
    if counts.contains(&0) || n_test < 2 || n_train < 2 {
        return Err(Error::invalid(format!(
            "{n} samples ({} and {} per class) are too few for stratified splits with {test_fraction} held out; \
             both the train and the test part need both classes",
            counts[0], counts[1]
        )));
    }
    let mut splits = Vec::with_capacity(n_splits);
    for _ in 0..n_splits {
        let train_counts = approximate_mode(&counts, n_train, rng);
        let rest = [counts[0] - train_counts[0], counts[1] - train_counts[1]];
        let test_counts = approximate_mode(&rest, n_test, rng);
        let mut train = Vec::with_capacity(n_train);
        let mut test = Vec::with_capacity(n_test);
        for k in 0..2 {
            let mut idx = classes[k].clone();
            rng.shuffle(&mut idx);
            train.extend_from_slice(&idx[..train_counts[k]]);
            test.extend_from_slice(&idx[train_counts[k]..train_counts[k] + test_counts[k]]);
        }
        train.sort_unstable();
        test.sort_unstable();
        splits.push(Split { train, test });
    }
    Ok(splits)
}

fn check_side(v: &[f32], what: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid(format!(
            "membership inference: no {what} samples"
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite(format!(
            "membership inference: {what} feature {i} is {}",
            v[i]
        )));
    }
    Ok(())
}

/// The attack with all its intermediate results.
pub fn mia_trace(
    member_feature: &[f32],
    nonmember_feature: &[f32],
    opts: &MiaOptions,
) -> Result<MiaTrace> {
    check_side(member_feature, "member (forget-set)")?;
    check_side(nonmember_feature, "non-member (test-set)")?;
    if opts.n_splits == 0 {
        return Err(Error::invalid(
            "membership inference: n_splits must be at least 1",
        ));
    }
    let mut rng = Rng::new(opts.seed);
    // Separate streams, so that changing how one stage draws leaves the other alone.
    let mut sub_rng = rng.fork();
    let mut split_rng = rng.fork();
    let n = member_feature.len().min(nonmember_feature.len());
    let mut pick = |len: usize| -> Vec<usize> {
        let mut rows = sub_rng.permutation(len);
        rows.truncate(n);
        rows.sort_unstable();
        rows
    };
    let member_rows = pick(member_feature.len());
    let nonmember_rows = pick(nonmember_feature.len());
    let features: Vec<f64> = member_rows
        .iter()
        .map(|&i| member_feature[i] as f64)
        .chain(nonmember_rows.iter().map(|&i| nonmember_feature[i] as f64))
        .collect();
    let labels: Vec<bool> = (0..2 * n).map(|i| i < n).collect();
    let splits =
        stratified_shuffle_splits(&labels, opts.n_splits, opts.test_fraction, &mut split_rng)
            .map_err(|e| {
                Error::invalid(format!(
                    "membership inference with {n} samples per class after balancing: {e}"
                ))
            })?;
    let mut fits = Vec::with_capacity(splits.len());
    let mut accs = Vec::with_capacity(splits.len());
    for s in &splits {
        let xt: Vec<f64> = s.train.iter().map(|&i| features[i]).collect();
        let yt: Vec<bool> = s.train.iter().map(|&i| labels[i]).collect();
        let fit = fit_logistic(&xt, 1, &yt, opts.c)?;
        let xs: Vec<f64> = s.test.iter().map(|&i| features[i]).collect();
        let ys: Vec<bool> = s.test.iter().map(|&i| labels[i]).collect();
        accs.push(fit.accuracy(&xs, &ys));
        fits.push(fit);
    }
    let mean = accs.iter().sum::<f64>() / accs.len() as f64;
    let var = accs.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / accs.len() as f64;
    Ok(MiaTrace {
        features,
        labels,
        member_rows,
        nonmember_rows,
        splits,
        fits,
        result: MiaResult {
            accuracy_mean: mean,
            accuracy_std: var.sqrt(),
            n_per_class: n,
            split_accuracies: accs,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw(rng: &mut Rng, n: usize, f: impl Fn(f32) -> f32) -> Vec<f32> {
        (0..n).map(|_| f(rng.normal())).collect()
    }

    #[test]
    fn identical_distributions_score_near_chance() {
        let mut rng = Rng::new(11);
        let mut means = Vec::new();
        for seed in 0..5 {
            let a = draw(&mut rng, 2000, |z| (0.7 * z).exp());
            let b = draw(&mut rng, 2000, |z| (0.7 * z).exp());
            let r = mia_score(&a, &b, seed).unwrap();
            assert_eq!(r.n_per_class, 2000);
            assert_eq!(r.split_accuracies.len(), 10);
            // 800 test rows per split: one split's accuracy has sd ≈ 0.018 around 0.5.
            assert!((r.accuracy_mean - 0.5).abs() < 0.04, "{r:?}");
            means.push(r.accuracy_mean);
        }
        let overall = means.iter().sum::<f64>() / means.len() as f64;
        assert!((overall - 0.5).abs() < 0.025, "{means:?}");
    }

    #[test]
    fn separated_distributions_score_one_and_overlap_in_between() {
        let mut rng = Rng::new(5);
        // Members: near-zero training losses; non-members: losses around 2.
        let members = draw(&mut rng, 300, |z| 0.01 + 0.005 * z.abs());
        let nonmembers = draw(&mut rng, 500, |z| 2.0 + 0.3 * z);
        let r = mia_score(&members, &nonmembers, 1).unwrap();
        assert_eq!(r.accuracy_mean, 1.0, "{r:?}");
        assert_eq!(r.accuracy_std, 0.0);
        assert_eq!(r.n_per_class, 300);
        // Unit-variance Gaussians one sd apart: the Bayes accuracy is Φ(0.5) ≈ 0.691.
        let a = draw(&mut rng, 3000, |z| z);
        let b = draw(&mut rng, 3000, |z| z + 1.0);
        let r = mia_score(&a, &b, 2).unwrap();
        assert!((r.accuracy_mean - 0.691).abs() < 0.02, "{r:?}");
    }

    #[test]
    fn balancing_subsamples_the_larger_side_and_splits_are_stratified() {
        let mut rng = Rng::new(8);
        let members = draw(&mut rng, 37, |z| z);
        let nonmembers = draw(&mut rng, 250, |z| z + 0.5);
        let opts = MiaOptions {
            seed: 4,
            ..MiaOptions::default()
        };
        let t = mia_trace(&members, &nonmembers, &opts).unwrap();
        assert_eq!(t.result.n_per_class, 37);
        assert_eq!(t.member_rows, (0..37).collect::<Vec<_>>());
        assert_eq!(t.nonmember_rows.len(), 37);
        assert!(t.nonmember_rows.windows(2).all(|w| w[0] < w[1]));
        assert!(*t.nonmember_rows.last().unwrap() < 250);
        // A random subset of 250, not the first 37.
        assert!(*t.nonmember_rows.last().unwrap() > 100);
        for (k, &r) in t.nonmember_rows.iter().enumerate() {
            assert_eq!(t.features[37 + k], nonmembers[r] as f64);
        }
        assert_eq!(t.labels.iter().filter(|&&l| l).count(), 37);
        // 74 rows: ⌈14.8⌉ = 15 test rows, 59 train; 7 or 8 per class in each test part.
        for s in &t.splits {
            assert_eq!((s.train.len(), s.test.len()), (59, 15));
            let mut all: Vec<usize> = s.train.iter().chain(&s.test).copied().collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 74, "train and test overlap");
            let pos = s.test.iter().filter(|&&i| t.labels[i]).count();
            assert!(pos == 7 || pos == 8, "{pos} members in a test part");
        }
        let distinct: std::collections::HashSet<_> =
            t.splits.iter().map(|s| s.test.clone()).collect();
        assert_eq!(distinct.len(), 10, "splits should differ");
        // The swapped roles give the same balanced size.
        let r = mia_score(&nonmembers, &members, 4).unwrap();
        assert_eq!(r.n_per_class, 37);
    }

    #[test]
    fn the_seed_fixes_the_result() {
        let mut rng = Rng::new(9);
        let a = draw(&mut rng, 400, |z| z.abs());
        let b = draw(&mut rng, 900, |z| 1.3 * z.abs());
        let r1 = mia_score(&a, &b, 42).unwrap();
        assert_eq!(r1, mia_score(&a, &b, 42).unwrap());
        let r2 = mia_score(&a, &b, 43).unwrap();
        assert_ne!(r1.split_accuracies, r2.split_accuracies);
    }

    #[test]
    fn from_logits_uses_loss_or_entropy() {
        // Members: confident and correct (low loss, low entropy); non-members: unsure.
        let n = 50;
        let mut rng = Rng::new(2);
        let mut member = Vec::new();
        let mut nonmember = Vec::new();
        for _ in 0..n {
            member.extend([8.0 + rng.normal(), 0.0, 0.0]);
            nonmember.extend([0.5 + 0.3 * rng.normal(), 0.0, 0.0]);
        }
        let m = Tensor::from_vec(member, &[n, 3]).unwrap();
        let nm = Tensor::from_vec(nonmember, &[n, 3]).unwrap();
        let labels = vec![0u32; n];
        for f in [MiaFeature::Loss, MiaFeature::Entropy] {
            let r = mia_from_logits(&m, &labels, &nm, &labels, f, 0).unwrap();
            assert_eq!(r.accuracy_mean, 1.0, "{f:?}: {r:?}");
        }
        assert!(mia_from_logits(&m, &labels[1..], &nm, &labels, MiaFeature::Entropy, 0).is_err());
        assert!(mia_from_logits(&m, &labels[1..], &nm, &labels, MiaFeature::Loss, 0).is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let ok = [0.1f32, 0.2, 0.3, 0.4];
        assert!(matches!(
            mia_score(&[], &ok, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            mia_score(&ok, &[], 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            mia_score(&[0.1, f32::NAN, 0.3], &ok, 0),
            Err(Error::NonFinite(_))
        ));
        assert!(matches!(
            mia_score(&ok, &[f32::INFINITY], 0),
            Err(Error::NonFinite(_))
        ));
        // Two per class: a 20 % test part cannot hold both classes.
        let err = mia_score(&ok[..2], &ok, 0).unwrap_err().to_string();
        assert!(err.contains("too few"), "{err}");
        assert!(mia_score(&ok[..3], &ok, 0).is_ok());
        let bad = MiaOptions {
            n_splits: 0,
            ..MiaOptions::default()
        };
        assert!(mia_trace(&ok, &ok, &bad).is_err());
        let bad = MiaOptions {
            test_fraction: 1.0,
            ..MiaOptions::default()
        };
        assert!(mia_trace(&ok, &ok, &bad).is_err());
    }
}
