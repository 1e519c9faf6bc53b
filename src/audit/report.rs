//! One audit row for a model: the task's metric on the retain, forget and test sets, and the
//! membership attacks (forget = members, test = non-members) on the per-sample loss — the
//! paper's, the log-loss and the threshold attacks of [`super::attacks`] — and on the
//! softmax entropy.

use super::attacks::{loss_attacks, LossAttacks};
use super::metrics::{
    accuracy, macro_f1, mean_absolute_error, mean_squared_error, softmax_entropy,
};
use super::mia::mia_score;
use crate::data::{Dataset, Targets};
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

/// How well a model does its task on a set; which one follows from the model's loss
/// ([`TaskMetric::for_loss`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskMetric {
    /// Share of samples whose largest logit is at their label (`cross_entropy`).
    Accuracy,
    /// Mean squared error over every output value (`mse`; its mean per-sample loss).
    Mse,
    /// Mean absolute error over every output value (`mse`, in the target's units).
    Mae,
    /// Mean over the labels of each label's F1 at logit 0 (`bce_with_logits`; see
    /// [`super::metrics::per_label_f1`]).
    MacroF1,
}

impl TaskMetric {
    /// Every metric, in the order of their C codes.
    pub const ALL: [TaskMetric; 4] = [
        TaskMetric::Accuracy,
        TaskMetric::Mse,
        TaskMetric::Mae,
        TaskMetric::MacroF1,
    ];

    /// Its short name, as tables and reports print it.
    pub fn name(self) -> &'static str {
        match self {
            TaskMetric::Accuracy => "accuracy",
            TaskMetric::Mse => "mse",
            TaskMetric::Mae => "mae",
            TaskMetric::MacroF1 => "macro_f1",
        }
    }

    /// Whether a larger value is a better model (accuracy, F1) or a worse one (errors).
    pub fn higher_is_better(self) -> bool {
        matches!(self, TaskMetric::Accuracy | TaskMetric::MacroF1)
    }

    /// The metrics an audit reports for a model trained with `loss`, the primary one first:
    /// accuracy for classification, MSE then MAE for regression, macro F1 for multi-label.
    pub fn for_loss(loss: LossKind) -> &'static [TaskMetric] {
        match loss {
            LossKind::CrossEntropy => &[TaskMetric::Accuracy],
            LossKind::Mse => &[TaskMetric::Mse, TaskMetric::Mae],
            LossKind::BceWithLogits => &[TaskMetric::MacroF1],
        }
    }

    /// The metric of `outputs` (the model's predictions `[N, ...]`) against `targets`; NaN
    /// when the targets are of the other kind (class labels for a regression metric, or the
    /// reverse).
    fn measure(self, outputs: &Tensor, targets: &Targets) -> Result<f64> {
        match (self, targets) {
            (TaskMetric::Accuracy, Targets::Classes(y)) => accuracy(outputs, y),
            (TaskMetric::Mse, Targets::Values(t)) => mean_squared_error(outputs, t),
            (TaskMetric::Mae, Targets::Values(t)) => mean_absolute_error(outputs, t),
            (TaskMetric::MacroF1, Targets::Values(t)) => macro_f1(outputs, t),
            _ => Ok(f64::NAN),
        }
    }
}

/// One metric on the three sets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricScores {
    pub metric: TaskMetric,
    pub retain: f64,
    pub forget: f64,
    pub test: f64,
}

/// One row of the audit table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AuditRow {
    /// Accuracies, for classification models (`cross_entropy` with class labels); NaN for
    /// others. For those models they are also [`Self::metric`]'s values.
    pub retain_accuracy: f64,
    pub forget_accuracy: f64,
    pub test_accuracy: f64,
    /// The task's primary metric ([`TaskMetric::for_loss`]).
    pub metric: MetricScores,
    /// The task's second metric, if it has one (MAE beside a regression's MSE).
    pub secondary: Option<MetricScores>,
    /// The paper's attack: held-out accuracy of a logistic regression on the per-sample loss
    /// (≈ 0.5: the forget set looks unseen). The same number as `attacks.paper.accuracy`,
    /// kept under the name published tables use.
    pub mia_loss: f64,
    /// The paper's attack on the softmax entropy (NaN for models without class labels).
    pub mia_entropy: f64,
    /// The attacks on the per-sample loss with their accuracy, ROC AUC and TPR at 1 % FPR,
    /// and [`LossAttacks::strongest_advantage`] as the one-number verdict.
    pub attacks: LossAttacks,
    /// Samples per side the logistic attacks were run on (the smaller of the forget and test
    /// sets); 0 when there were fewer than [`MIN_MIA_SAMPLES`] and every attack is NaN.
    pub mia_samples: usize,
}

impl AuditRow {
    /// The task's metrics, the primary one first.
    pub fn metrics(&self) -> impl Iterator<Item = &MetricScores> {
        std::iter::once(&self.metric).chain(self.secondary.as_ref())
    }

    /// The scores of `metric`, if this row reports it.
    pub fn metric_scores(&self, metric: TaskMetric) -> Option<&MetricScores> {
        self.metrics().find(|m| m.metric == metric)
    }
}

/// The fewest forget (and test) samples the membership attack runs on: its 20 % test part
/// must hold both classes, with at least two samples, and its training part too. Below this
/// the attack scores are NaN and [`AuditRow::mia_samples`] is 0; the accuracies are still
/// computed. Even above it, a score from a handful of samples is noise: its standard error is
/// about `0.5 / sqrt(0.4 · mia_samples)` (0.25 at 10 samples), which is why the row reports
/// the count.
pub const MIN_MIA_SAMPLES: usize = 3;

const BATCH: usize = 512;

/// The model's outputs on a set and the values of `metrics` on them.
fn measure_set(
    model: &Model,
    w: &[Tensor],
    d: &Dataset,
    metrics: &[TaskMetric],
) -> Result<(Tensor, Vec<f64>)> {
    let outputs = model.predict(w, &d.x, BATCH)?;
    let values = metrics
        .iter()
        .map(|m| m.measure(&outputs, &d.y))
        .collect::<Result<_>>()?;
    Ok((outputs, values))
}

/// Audits `weights` on the three sets (seeded): the task's metrics and every membership
/// attack.
pub fn audit_model(
    model: &Model,
    weights: &[Tensor],
    sets: AuditSets<'_>,
    seed: u64,
) -> Result<AuditRow> {
    let metrics = TaskMetric::for_loss(model.loss_kind());
    let (_, retain) = measure_set(model, weights, sets.retain, metrics)?;
    let (forget_out, forget) = measure_set(model, weights, sets.forget, metrics)?;
    let (test_out, test) = measure_set(model, weights, sets.test, metrics)?;
    let scores = |k: usize| MetricScores {
        metric: metrics[k],
        retain: retain[k],
        forget: forget[k],
        test: test[k],
    };
    let metric = scores(0);
    let secondary = (metrics.len() > 1).then(|| scores(1));
    let classification = metric.metric == TaskMetric::Accuracy;
    let acc = |v: f64| if classification { v } else { f64::NAN };
    let mut row = AuditRow {
        retain_accuracy: acc(metric.retain),
        forget_accuracy: acc(metric.forget),
        test_accuracy: acc(metric.test),
        metric,
        secondary,
        mia_loss: f64::NAN,
        mia_entropy: f64::NAN,
        attacks: LossAttacks::UNMEASURED,
        mia_samples: 0,
    };
    let lf = model.losses(weights, sets.forget, BATCH)?;
    let lt = model.losses(weights, sets.test, BATCH)?;
    let mia_samples = lf.len().min(lt.len());
    if mia_samples < MIN_MIA_SAMPLES {
        return Ok(row);
    }
    row.attacks = loss_attacks(&lf, &lt, seed)?;
    row.mia_loss = row.attacks.paper.accuracy;
    row.mia_samples = mia_samples;
    if classification && !metric.forget.is_nan() && !metric.test.is_nan() {
        row.mia_entropy = mia_score(
            &softmax_entropy(&forget_out)?,
            &softmax_entropy(&test_out)?,
            seed,
        )?
        .accuracy_mean;
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn spec(outputs: usize, loss: &str) -> String {
        format!(
            r#"{{"format": "gradtau.model/1", "input": {{"shape": [3]}},
             "nodes": [{{"name": "0", "op": "linear", "in_features": 3, "out_features": {outputs}}}],
             "loss": "{loss}"}}"#
        )
    }

    /// `n` samples of 3 inputs with float targets `[n, outputs]` from `target`.
    fn value_set(
        rng: &mut Rng,
        n: usize,
        outputs: usize,
        target: impl Fn(&[f32]) -> Vec<f32>,
    ) -> Dataset {
        let x: Vec<f32> = (0..n * 3).map(|_| rng.normal()).collect();
        let y: Vec<f32> = x.chunks_exact(3).flat_map(target).collect();
        Dataset::new(
            Tensor::from_vec(x, &[n, 3]).unwrap(),
            Targets::Values(Tensor::from_vec(y, &[n, outputs]).unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn regression_and_multi_label_models_get_their_metrics_and_the_attacks() {
        let mut rng = Rng::new(1);
        let model = Model::from_json(&spec(1, "mse")).unwrap();
        let w = model.init_weights(0);
        let set = |rng: &mut Rng, n| value_set(rng, n, 1, |r| vec![r[0] - r[1]]);
        let (retain, forget, test) = (set(&mut rng, 50), set(&mut rng, 40), set(&mut rng, 120));
        let sets = AuditSets {
            retain: &retain,
            forget: &forget,
            test: &test,
        };
        let row = audit_model(&model, &w, sets, 0).unwrap();
        assert_eq!(row.metric.metric, TaskMetric::Mse);
        assert_eq!(row.secondary.unwrap().metric, TaskMetric::Mae);
        // The MSE is the mean per-sample loss.
        let lf = model.losses(&w, &forget, 64).unwrap();
        let mean = lf.iter().map(|&v| v as f64).sum::<f64>() / lf.len() as f64;
        assert!((row.metric.forget - mean).abs() < 1e-5 * mean, "{row:?}");
        assert!(row.secondary.unwrap().test > 0.0);
        assert!(row.retain_accuracy.is_nan() && row.mia_entropy.is_nan());
        assert_eq!(row.mia_samples, 40);
        assert_eq!(row.mia_loss, row.attacks.paper.accuracy);
        assert!(!row.attacks.log_loss.accuracy.is_nan() && !row.attacks.threshold.auc.is_nan());
        assert!(
            row.attacks.threshold.tpr_at_1pct_fpr.is_finite(),
            "120 test samples suffice"
        );
        assert_eq!(row.metric_scores(TaskMetric::Mae), row.secondary.as_ref());
        assert!(row.metric_scores(TaskMetric::Accuracy).is_none());

        let model = Model::from_json(&spec(2, "bce_with_logits")).unwrap();
        let w = model.init_weights(0);
        let set = |rng: &mut Rng, n| {
            value_set(rng, n, 2, |r| {
                vec![(r[0] > 0.0) as u8 as f32, (r[1] + r[2] > 0.0) as u8 as f32]
            })
        };
        let (retain, forget, test) = (set(&mut rng, 60), set(&mut rng, 2), set(&mut rng, 60));
        let sets = AuditSets {
            retain: &retain,
            forget: &forget,
            test: &test,
        };
        let row = audit_model(&model, &w, sets, 0).unwrap();
        assert_eq!(row.metric.metric, TaskMetric::MacroF1);
        assert!(row.secondary.is_none());
        assert!((0.0..=1.0).contains(&row.metric.retain), "{row:?}");
        // Two forget samples: too few for the attacks, the metric is still measured.
        assert_eq!(row.mia_samples, 0);
        assert!(row.attacks.strongest_advantage().is_nan());
        assert!(row.mia_loss.is_nan());
    }

    #[test]
    fn metrics_follow_the_loss() {
        assert_eq!(
            TaskMetric::for_loss(LossKind::CrossEntropy),
            [TaskMetric::Accuracy]
        );
        assert_eq!(
            TaskMetric::for_loss(LossKind::Mse),
            [TaskMetric::Mse, TaskMetric::Mae]
        );
        assert_eq!(
            TaskMetric::for_loss(LossKind::BceWithLogits),
            [TaskMetric::MacroF1]
        );
        let names: Vec<_> = TaskMetric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["accuracy", "mse", "mae", "macro_f1"]);
        assert!(TaskMetric::Accuracy.higher_is_better() && !TaskMetric::Mae.higher_is_better());
        // A metric of the other target kind is not measured.
        let t = Tensor::from_slice(&[0.0, 1.0], &[2, 1]).unwrap();
        let classes = Targets::Classes(vec![0, 1]);
        assert!(TaskMetric::Mse.measure(&t, &classes).unwrap().is_nan());
        let values = Targets::Values(Tensor::from_slice(&[1.0, 1.0], &[2, 1]).unwrap());
        assert_eq!(TaskMetric::Mse.measure(&t, &values).unwrap(), 0.5);
        assert!(TaskMetric::Accuracy.measure(&t, &values).unwrap().is_nan());
    }
}
