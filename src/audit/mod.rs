//! How forgetting is judged, following the ∇τ paper's protocol: accuracy on the retain,
//! forget and test sets, and the membership-inference attack (MIA) — a logistic regression
//! that tries to tell forget-set samples from test samples by their per-sample loss (or
//! softmax entropy). A score near 0.5 means the attacker cannot tell them apart, which is
//! what a model retrained from scratch without the forget set gives; retraining is the
//! reference every unlearning result is compared with. [`membership`] holds the cheaper
//! statistics that ∇τ's stop test measures during a run.

pub mod attacks;
pub mod logistic;
pub mod membership;
pub mod metrics;
pub mod mia;
pub mod report;

pub use attacks::{loss_attacks, roc_auc, tpr_at_fpr, AttackScores, LossAttacks, AUDIT_FPR};
pub use logistic::{fit_logistic, LogisticFit};
pub use membership::{indistinguishable_margin, threshold_attack_accuracy, LabelCheck};
pub use metrics::{accuracy, classification_margins, per_sample_loss, softmax_entropy};
pub use mia::{mia_from_logits, mia_score, MiaFeature, MiaOptions, MiaResult};
pub use report::{audit_model, AuditRow, AuditSets};
