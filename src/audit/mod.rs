//! How forgetting is judged: the task's metric on the retain, forget and test sets (accuracy
//! for classification, MSE and MAE for regression, macro F1 for multi-label models — see
//! [`TaskMetric`]), and membership-inference attacks (MIA) that try to tell forget-set
//! samples from test samples by their per-sample loss. The ∇τ paper's attack, a logistic
//! regression on the loss (or the softmax entropy), is [`mia`]; [`attacks`] adds the same
//! protocol on the log-loss and a threshold attack read as ROC AUC and TPR at 1 % FPR, which
//! stay strong where the losses are heavy-tailed. A score near chance means the attacker
//! cannot tell the sets apart, which is what a model retrained from scratch without the
//! forget set gives; retraining is the reference every unlearning result is compared with.
//! [`membership`] holds the cheaper statistics that ∇τ's stop test measures during a run.

pub mod attacks;
pub mod logistic;
pub mod membership;
pub mod metrics;
pub mod mia;
pub mod report;

pub use attacks::{loss_attacks, roc_auc, tpr_at_fpr, AttackScores, LossAttacks, AUDIT_FPR};
pub use logistic::{fit_logistic, LogisticFit};
pub use membership::{indistinguishable_margin, threshold_attack_accuracy, LabelCheck};
pub use metrics::{
    accuracy, classification_margins, macro_f1, mean_absolute_error, mean_squared_error,
    per_label_f1, per_sample_loss, softmax_entropy,
};
pub use mia::{mia_from_logits, mia_score, MiaFeature, MiaOptions, MiaResult};
pub use report::{audit_model, AuditRow, AuditSets, MetricScores, TaskMetric};
